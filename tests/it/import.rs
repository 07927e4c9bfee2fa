//! `hubrelay import` into a running `serve`: every row checked first (bad ones named by line and field, nothing
//! queued), then the valid rows queued and delivered by serve's worker, one contact per email with the file's last
//! row winning; a second run queues nothing, nor does the same rows in another file; a dry run sends nothing.

use std::path::Path;

use crate::harness::{hubrelay_in, Serve};

const EMAILS: usize = 40;

/// 120 rows over 40 contacts (three rows each, the last one newest), and two bad rows (lines 5 and 9) when `bad`.
fn csv(bad: bool) -> String {
    let mut file = String::from("email,first_name,vehicle_of_interest\n");
    for row in 0..120 {
        let line = file.lines().count() + 1;
        if bad && line == 5 {
            file.push_str("not-an-email,Bad,x\n");
        }
        if bad && line == 9 {
            file.push_str(",NoEmail,x\n");
        }
        file.push_str(&format!("imp{}@example.com,Row{row},Model {row}\n", row % EMAILS));
    }
    file
}

fn import(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    hubrelay_in(dir, &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_is_checked_whole_then_delivered_once() {
    let serve = Serve::start(&[("RUST_LOG", "error")]);
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("leads.csv");
    std::fs::write(&path, csv(true)).unwrap();
    let file = path.to_str().unwrap();
    let dir = serve.data_dir.path();

    // Bad rows: named by line and field, never by their content; nothing queued or sent.
    let calls = serve.sandbox_stats().await["requests"].as_u64().unwrap();
    let (ok, out) = import(dir, &[file]);
    assert!(!ok, "{out}");
    assert!(out.contains("120 valid rows for 40 contacts") && out.contains("2 bad"), "{out}");
    assert!(out.contains("line 5 `email`") && out.contains("line 9"), "{out}");
    assert!(!out.contains("not-an-email"), "a bad value is not repeated: {out}");
    assert!(out.contains("nothing queued"), "{out}");
    let (ok, out) = import(dir, &[file, "--dry-run", "--skip-invalid"]);
    assert!(ok && out.contains("dry run: nothing queued") && out.contains("HubSpot calls"), "{out}");
    assert_eq!(serve.sandbox_stats().await["requests"].as_u64().unwrap(), calls, "nothing was sent");

    // The valid rows: queued, then delivered by serve within the portal's budget.
    let (ok, out) = import(dir, &[file, "--skip-invalid"]);
    assert!(ok, "{out}");
    assert!(out.contains("120 rows queued, 0 already"), "{out}");
    assert!(out.contains("settled in") && out.contains("0 parked"), "{out}");
    for n in 0..EMAILS {
        let contact = serve.contact(&format!("imp{n}@example.com")).await.expect("a contact per email");
        // Row n + 80 is the contact's last row in the file.
        assert_eq!(contact["properties"]["firstname"], format!("Row{}", n + 80), "{contact}");
    }
    assert!(!out.contains("@example.com"), "no email in the output: {out}");
    // Each write carried its write id, and none was sent twice.
    let url = format!("{}/__sandbox/writes", serve.sandbox_url);
    let journal: serde_json::Value = serve.http.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(journal["marked"], journal["writes"], "{journal}");
    assert_eq!(journal["repeated_markers"], 0, "{journal}");

    // Run again: queued before. The same rows in another file: their leads are known, nothing is queued.
    let (ok, out) = import(dir, &[file, "--skip-invalid"]);
    assert!(ok && out.contains("queued by an earlier run"), "{out}");
    let copy = files.path().join("copy.csv");
    std::fs::write(&copy, csv(false)).unwrap();
    let calls = serve.sandbox_stats().await["requests"].as_u64().unwrap();
    let (ok, out) = import(dir, &[copy.to_str().unwrap()]);
    assert!(ok && out.contains("0 rows queued, 120 already"), "{out}");
    assert_eq!(serve.sandbox_stats().await["requests"].as_u64().unwrap(), calls, "nothing sent twice");
}

/// Extole's export of existing advocates' share links: every row set on its contact, 100 contacts a call (as
/// the worker batches leads), a lead for the same email kept whole, a second run queuing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extole_share_links_are_imported_onto_their_contacts_in_batches() {
    const LINKS: usize = 1_000;
    let serve = Serve::start(&[("RUST_LOG", "error")]);
    let dir = serve.data_dir.path();
    // A contact that exists already, with a lead's values.
    let lead = serde_json::json!({"email": "adv0@example.com", "first_name": "Ada", "vehicle_of_interest": "Model S"});
    let (status, _, body) = serve.post_lead(&lead, crate::harness::headers(&[])).await;
    assert_eq!(status, 200, "{body}");
    let mut file = String::from("email,share_code,share_link,company\n");
    for i in 0..LINKS {
        file.push_str(&format!("adv{i}@example.com,CODE{i},https://refer.example.com/r/{i},Acme\n"));
    }
    file.push_str("not-an-email,BAD,https://refer.example.com/r/bad,\n");
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("extole-share-links.csv");
    std::fs::write(&path, file).unwrap();
    let file = path.to_str().unwrap();

    let upserts = serve.sandbox_calls(crate::harness::UPSERT).await;
    let (ok, out) = import(dir, &[file, "--kind", "extole-share-links", "--skip-invalid"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{LINKS} valid rows for {LINKS} contacts (Extole share links), 1 bad")), "{out}");
    assert!(out.contains(&format!("line {} `email`", LINKS + 2)), "{out}");
    assert!(out.contains(&format!("{LINKS} rows queued")) && out.contains("0 parked"), "{out}");
    let calls = serve.sandbox_calls(crate::harness::UPSERT).await - upserts;
    assert!(calls <= (LINKS / 100 + 2) as u64, "{calls} batch calls for {LINKS} links");
    let contact = serve.contact("adv0@example.com").await.unwrap();
    assert_eq!(contact["properties"]["share_code"], "CODE0", "{contact}");
    assert_eq!(contact["properties"]["extole_app_type"], "hubspot", "{contact}");
    assert_eq!(contact["properties"]["firstname"], "Ada", "the lead's values stay: {contact}");
    let last = serve.contact(&format!("adv{}@example.com", LINKS - 1)).await.unwrap();
    assert_eq!(last["properties"]["share_link"], format!("https://refer.example.com/r/{}", LINKS - 1));

    let (ok, out) = import(dir, &[file, "--kind", "extole-share-links", "--skip-invalid"]);
    assert!(ok && out.contains("queued by an earlier run"), "{out}");
}

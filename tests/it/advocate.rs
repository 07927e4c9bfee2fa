//! HubSpot → impact.com Advocate participant sync against a running `serve` and the Advocate sandbox: a contact
//! created in HubSpot becomes a participant (its ids, referral code and share link written back onto the contact),
//! a name change updates the same participant, and a deletion deletes it — also a participant Advocate made, found
//! through the deleted contact HubSpot keeps archived.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::harness::{headers, Serve};
use hubrelay_sandbox::partners::{AdvocateSandbox, AdvocateSandboxOptions};

async fn app_webhook(serve: &Serve, event: Value) {
    let body = json!([event]).to_string().into_bytes();
    let (status, _, answer) = serve.post_to("/v1/referrals/hubspot", "application/json", body, headers(&[])).await;
    assert_eq!(status, 202, "{answer}");
}

async fn until<F: Fn(&[Value]) -> bool>(sb: &AdvocateSandbox, what: &str, done: F) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let participants = sb.participants();
        if done(&participants) {
            return participants;
        }
        assert!(Instant::now() < deadline, "{what}: {participants:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_become_participants_are_updated_and_deleted() {
    let sb = AdvocateSandbox::new(AdvocateSandboxOptions {
        tenant_alias: Some("acme-program".into()),
        api_key: Some("advocate-key".into()),
    });
    let handle = sb.serve_local().await.unwrap();
    let url = handle.url();
    let serve = Serve::start(&[
        ("IMPACT_ADVOCATE_TENANT_ALIAS", "acme-program"),
        ("IMPACT_ADVOCATE_API_KEY", "advocate-key"),
        ("IMPACT_ADVOCATE_BASE_URL", url.as_str()),
        ("RUST_LOG", "error"),
    ]);
    let (status, _, body) = serve
        .post_lead(&json!({"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"}), headers(&[]))
        .await;
    assert_eq!(status, 200, "{body}");
    let contact = body["contact_id"].as_str().unwrap().to_string();
    let id = contact.parse::<u64>().unwrap();
    let event = |kind: &str, at: i64, extra: Value| {
        let mut e = json!({"eventId": at, "subscriptionId": 5, "portalId": 62515, "occurredAt": at, "attemptNumber": 0,
                           "subscriptionType": kind, "objectId": id});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };

    // Created in HubSpot: a participant with the contact's id as user and account, its code written back.
    app_webhook(&serve, event("contact.creation", 1_765_000_000_000, json!({}))).await;
    let participants = until(&sb, "a participant for the contact", |p| p.len() == 1).await;
    assert_eq!(participants[0]["email"], "ada@example.com");
    assert_eq!(
        (participants[0]["id"].as_str(), participants[0]["accountId"].as_str()),
        (Some(contact.as_str()), Some(contact.as_str()))
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let written = loop {
        let c = serve.contact("ada@example.com").await.unwrap();
        if c["properties"]["advocate_referral_code"].is_string() || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let props = &written["properties"];
    assert_eq!(props["advocate_user_id"], contact.as_str(), "{written}");
    assert!(props["advocate_referral_code"].as_str().unwrap().starts_with("ADA"), "{written}");
    assert!(props["advocate_share_link"].as_str().unwrap().starts_with("https://"), "{written}");

    // A name changed in HubSpot: the same participant, updated.
    let patch = json!({"properties": {"firstname": "Augusta"}});
    let resp = serve
        .http
        .patch(format!("{}/crm/v3/objects/contacts/{contact}", serve.sandbox_url))
        .bearer_auth(crate::harness::SANDBOX_TOKEN)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    app_webhook(
        &serve,
        event(
            "contact.propertyChange",
            1_765_000_001_000,
            json!({"propertyName": "firstname", "propertyValue": "Augusta"}),
        ),
    )
    .await;
    until(&sb, "the participant renamed", |p| p.len() == 1 && p[0]["firstName"] == "Augusta").await;

    // Deleted in HubSpot: the participant goes too.
    app_webhook(&serve, event("contact.deletion", 1_765_000_002_000, json!({}))).await;
    until(&sb, "the participant deleted", |p| p.is_empty()).await;

    // The initial sync: a HubSpot contacts export imported, each contact a participant; other columns reported.
    let mut ids = Vec::new();
    for email in ["grace@example.com", "alan@example.com"] {
        let (_, _, body) = serve.post_lead(&json!({"email": email, "first_name": "Init"}), headers(&[])).await;
        ids.push((body["contact_id"].as_str().unwrap().to_string(), email));
    }
    let mut export = String::from("Record ID,First Name,Email,Lifecycle Stage\n");
    for (id, email) in &ids {
        export.push_str(&format!("{id},Init,{email},lead\n"));
    }
    export.push_str("abc,Bad,bad@example.com,lead\n");
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("hubspot-contacts.csv");
    std::fs::write(&path, export).unwrap();
    let (ok, out) = crate::harness::hubrelay_in(
        serve.data_dir.path(),
        &["import", path.to_str().unwrap(), "--kind", "advocate-participants", "--skip-invalid"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("columns not used: First Name, Lifecycle Stage") && out.contains("line 4 `hs_object_id`"),
        "{out}"
    );
    let participants = until(&sb, "two participants from the export", |p| p.len() == 2).await;
    let mut emails: Vec<&str> = participants.iter().filter_map(|p| p["email"].as_str()).collect();
    emails.sort();
    assert_eq!(emails, ["alan@example.com", "grace@example.com"]);

    // A contact whose form captured the `_saasquatch` cookie: its participant is attributed to the referrer, and
    // the code that referred it comes back onto the contact with the message links.
    let (_, _, body) = serve.post_lead(&json!({"email": "cy@example.com", "first_name": "Cy"}), headers(&[])).await;
    let cy = body["contact_id"].as_str().unwrap().to_string();
    let cookie =
        json!({"app.referralsaasquatch.com": {"acme-program_CODE": {"codes": {"referral-program": "ADA0042"}}}});
    let cookie = base64::engine::general_purpose::STANDARD.encode(cookie.to_string());
    let resp = serve
        .http
        .patch(format!("{}/crm/v3/objects/contacts/{cy}", serve.sandbox_url))
        .bearer_auth(crate::harness::SANDBOX_TOKEN)
        .json(&json!({"properties": {"advocate_referral_cookie": cookie}}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let mut creation = event("contact.creation", 1_765_000_003_000, json!({}));
    creation["objectId"] = json!(cy.parse::<u64>().unwrap());
    app_webhook(&serve, creation).await;
    let participants = until(&sb, "Cy's participant", |p| p.len() == 3).await;
    let participant = participants.iter().find(|p| p["email"] == "cy@example.com").unwrap();
    assert_eq!(participant["referredBy"]["code"], "ADA0042");
    let deadline = Instant::now() + Duration::from_secs(20);
    let written = loop {
        let c = serve.contact("cy@example.com").await.unwrap();
        if c["properties"]["advocate_referred_by_code"].is_string() || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(written["properties"]["advocate_referred_by_code"], "ADA0042", "{written}");
    assert!(written["properties"]["advocate_message_links"].as_str().unwrap().contains("SMS: https://"), "{written}");

    // A participant Advocate made (its own ids), mapped onto a contact: when the contact is deleted in HubSpot, which
    // keeps it archived with its Advocate ids, that participant is deleted.
    let (_, _, body) = serve.post_lead(&json!({"email": "dee@example.com", "first_name": "Dee"}), headers(&[])).await;
    let dee = body["contact_id"].as_str().unwrap().to_string();
    let made = serve
        .http
        .put(format!("{url}/api/v1/acme-program/open/account/adv-acct-9/user/adv-user-9"))
        .basic_auth("advocate-key", Some(""))
        .json(&json!({"id": "adv-user-9", "accountId": "adv-acct-9", "email": "dee@example.com"}))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success());
    let hubspot = |method: reqwest::Method, body: Option<Value>| {
        let request = serve
            .http
            .request(method, format!("{}/crm/v3/objects/contacts/{dee}", serve.sandbox_url))
            .bearer_auth(crate::harness::SANDBOX_TOKEN);
        match body {
            Some(b) => request.json(&b),
            None => request,
        }
    };
    let mapped = json!({"properties": {"advocate_user_id": "adv-user-9", "advocate_account_id": "adv-acct-9"}});
    assert!(hubspot(reqwest::Method::PATCH, Some(mapped)).send().await.unwrap().status().is_success());
    assert_eq!(hubspot(reqwest::Method::DELETE, None).send().await.unwrap().status(), 204);
    let mut deletion = event("contact.deletion", 1_765_000_004_000, json!({}));
    deletion["objectId"] = json!(dee.parse::<u64>().unwrap());
    app_webhook(&serve, deletion).await;
    let left = until(&sb, "Advocate's own participant deleted", |p| p.iter().all(|u| u["id"] != "adv-user-9")).await;
    assert_eq!(left.len(), 3, "the others stay: {left:?}");
}

/// `serve --advocate-sandbox` (here `HUBRELAY_ADVOCATE_SANDBOX=true`): the Advocate sandbox it starts gets a
/// participant for a contact created in HubSpot, listed at the URL the banner prints, and the contact its code; a
/// contact workflow's webhook after a rename updates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_an_advocate_sandbox_when_asked() {
    let serve = Serve::start(&[("HUBRELAY_ADVOCATE_SANDBOX", "true"), ("RUST_LOG", "error")]);
    let line = serve.wait_for_line("impact.com Advocate sandbox ");
    let url = line.split("Advocate sandbox ").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    assert!(line.contains(&format!("GET {url}/__sandbox/participants")), "{line}");

    let lead = json!({"email": "newcomer@example.com", "first_name": "Nia"});
    let (status, _, body) = serve.post_lead(&lead, headers(&[])).await;
    assert_eq!(status, 200, "{body}");
    let contact = body["contact_id"].as_str().unwrap().to_string();
    let id = contact.parse::<u64>().unwrap();
    app_webhook(
        &serve,
        json!({"eventId": 1, "subscriptionId": 5, "portalId": 62515, "occurredAt": 1_765_000_000_000_i64,
               "attemptNumber": 0, "subscriptionType": "contact.creation", "objectId": id}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let participants = loop {
        let listed: Vec<Value> =
            serve.http.get(format!("{url}/__sandbox/participants")).send().await.unwrap().json().await.unwrap();
        if !listed.is_empty() || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(participants.len(), 1, "{participants:?}");
    assert_eq!(participants[0]["email"], "newcomer@example.com");
    assert_eq!(participants[0]["id"], contact.as_str());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = serve.contact("newcomer@example.com").await.unwrap();
        if c["properties"]["advocate_referral_code"].as_str().is_some_and(|code| code.starts_with("NIA")) {
            break;
        }
        assert!(Instant::now() < deadline, "the code written back: {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Renamed in HubSpot, and a contact workflow's "Send a webhook" (all properties, the legacy shape) says so:
    // the same participant, renamed.
    let resp = serve
        .http
        .patch(format!("{}/crm/v3/objects/contacts/{contact}", serve.sandbox_url))
        .bearer_auth(crate::harness::SANDBOX_TOKEN)
        .json(&json!({"properties": {"firstname": "Niamh"}}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let workflow = json!({"vid": id, "canonical-vid": id, "properties": {
        "email": {"value": "newcomer@example.com"}, "firstname": {"value": "Niamh"}}});
    let body = workflow.to_string().into_bytes();
    let (status, _, answer) = serve.post_to("/v1/referrals/hubspot", "application/json", body, headers(&[])).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["actions"][0]["action"], "sync_participant", "{answer}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed: Vec<Value> =
            serve.http.get(format!("{url}/__sandbox/participants")).send().await.unwrap().json().await.unwrap();
        if listed.len() == 1 && listed[0]["firstName"] == "Niamh" {
            break;
        }
        assert!(Instant::now() < deadline, "the participant renamed: {listed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The guide's own import format, an `email` column only: each row's contact found by email; a row whose email
    // no contact has makes nothing.
    let (status, _, _) =
        serve.post_lead(&json!({"email": "imported@example.com", "first_name": "Ima"}), headers(&[])).await;
    assert_eq!(status, 200);
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("advocate-users.csv");
    std::fs::write(
        &path,
        "email,referralCode
Imported@Example.com,
nobody@example.com,
",
    )
    .unwrap();
    let (ok, out) = crate::harness::hubrelay_in(
        serve.data_dir.path(),
        &["import", path.to_str().unwrap(), "--kind", "advocate-participants"],
    );
    assert!(ok && out.contains("columns not used: referralCode"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let listed: Vec<Value> =
            serve.http.get(format!("{url}/__sandbox/participants")).send().await.unwrap().json().await.unwrap();
        if listed.len() >= 2 || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut emails: Vec<&str> = listed.iter().filter_map(|p| p["email"].as_str()).collect();
    emails.sort();
    assert_eq!(emails, ["imported@example.com", "newcomer@example.com"], "{listed:?}");
    let store = hubrelay_local::sqlite::SqliteStore::open(&serve.db_path()).unwrap();
    let filter = hubrelay_core::store::EventFilter {
        function: Some(hubrelay_core::domain::FunctionName::ReferralEvent),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = hubrelay_core::store::EventLog::list_events(&store, &filter).await.unwrap();
        let settled = events.iter().filter(|e| e.status != hubrelay_core::store::EventStatus::Retrying).count();
        if settled == events.len() {
            assert!(events.iter().any(|e| e.status == hubrelay_core::store::EventStatus::Superseded), "{events:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{events:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

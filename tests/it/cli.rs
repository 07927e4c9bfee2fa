//! The `hubrelay` command beyond `serve`: the standalone sandbox and `properties check|sync`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{self, SandboxProcess};

fn start_sandbox(token: &str) -> SandboxProcess {
    harness::start_sandbox(&["--token", token])
}

fn hubrelay(args: &[&str], url: &str, token: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(args)
        .args(["--hubspot-url", url, "--token", token])
        .env_remove("HUBRELAY_MAPPING")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn properties_check_then_sync_against_the_sandbox() {
    let sandbox = start_sandbox("cli-token");
    let (code, out, err) = hubrelay(&["properties", "check", "--mapping", "aimbase"], &sandbox.1, "cli-token");
    // 1: the check found properties to create (2 is for errors, as with the wrong token below).
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("aimbase_identifier") && out.contains("aimbase_dealername"), "{out}");
    assert!(err.contains("missing"), "{err}");

    let (code, out, err) = hubrelay(&["properties", "sync", "--mapping", "aimbase"], &sandbox.1, "cli-token");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created aimbase_identifier"), "{out}");
    // The referral flows' properties too (Extole share links, impact.com Advocate users).
    for name in
        ["share_code", "share_link", "extole_app_type", "advocate_code", "advocate_user_id", "advocate_account_id"]
    {
        assert!(out.contains(&format!("created {name}\n")), "{name} not created:\n{out}");
    }

    let (code, out, _) = hubrelay(&["properties", "check", "--mapping", "aimbase"], &sandbox.1, "cli-token");
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = hubrelay(&["properties", "sync", "--mapping", "aimbase"], &sandbox.1, "cli-token");
    assert_eq!(code, 0);
    assert!(out.contains("nothing to create"), "{out}");

    // The sandbox checks the token like HubSpot does.
    let (code, _, err) = hubrelay(&["properties", "check", "--mapping", "aimbase"], &sandbox.1, "wrong");
    assert_eq!(code, 2);
    assert!(err.contains("401"), "{err}");
}

#[test]
fn serve_refuses_a_broken_configuration_with_a_precise_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad_mapping = dir.path().join("mapping.toml");
    std::fs::write(
        &bad_mapping,
        "name = \"x\"\n[[field]]\nfrom = \"no_such_field\"\nproperty = \"p\"\ntype = \"string\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("HUBRELAY_MAPPING", &bad_mapping)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HUBRELAY_MAPPING") && err.contains("line 3"), "{err}");

    let out =
        Command::new(env!("CARGO_BIN_EXE_hubrelay")).args(["serve", "--listen", "not-an-address"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HUBRELAY_LISTEN"));

    // The Advocate sandbox beside a real portal (`1` reads as on, as `true` does).
    let out = Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("HUBRELAY_MAPPING")
        .env("HUBRELAY_ADVOCATE_SANDBOX", "1")
        .env("HUBSPOT_TOKEN", "pat-na1-real-portal")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--advocate-sandbox runs only with the HubSpot sandbox"), "{err}");
}

/// With no auth configured, `serve` makes a local token, keeps it in the data dir (its ready-to-paste curl reads the
/// file), and keeps using it after a restart. No secret appears in the banner in full.
#[test]
fn serve_without_auth_generates_and_keeps_a_local_token() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hubrelay"))
            .args(["serve", "--listen", "127.0.0.1:0", "--sandbox-listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env_remove("HUBRELAY_API_TOKENS")
            .env_remove("HUBRELAY_WEBHOOK_SECRETS")
            .env_remove("HUBSPOT_CLIENT_SECRET")
            .env_remove("HUBSPOT_TOKEN")
            .env_remove("HUBRELAY_CONFIG")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let done = line.trim_start().starts_with("-d '");
                lines.push(line);
                if done {
                    let _ = tx.send(lines.clone());
                }
            }
        });
        let banner = rx.recv_timeout(Duration::from_secs(60)).expect("banner");
        (child, banner)
    };
    let (mut first, banner) = start();
    let token = std::fs::read_to_string(dir.path().join("api-token")).unwrap().trim().to_string();
    assert!(token.starts_with("local-") && token.len() > 20, "{token}");
    let curl = banner.iter().find(|l| l.contains("curl -sS")).expect("a curl line");
    let token_file = dir.path().join("api-token");
    assert!(curl.contains(&format!("Authorization: Bearer $(cat {})", token_file.display())), "{curl}");
    let sandbox_token = std::fs::read_to_string(dir.path().join("sandbox-token")).unwrap();
    assert!(sandbox_token.starts_with("sandbox-"), "{sandbox_token}");
    for secret in [&token, &sandbox_token] {
        assert!(!banner.iter().any(|l| l.contains(secret.as_str())), "{secret} printed in full: {banner:#?}");
    }
    assert!(banner.iter().any(|l| l.contains("local API token") && l.contains("loca*")), "{banner:#?}");
    let url = banner[0].strip_prefix("hubrelay listening on ").unwrap().trim().to_string();
    let lead = r#"{"email":"local@example.com","vehicle_of_interest":"X"}"#;
    let post = |url: &str, token: &str| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            reqwest::Client::new()
                .post(format!("{url}/v1/leads"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(lead)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(post(&url, &token), 200);
    assert_eq!(post(&url, "not-the-token"), 401);
    let _ = first.kill();
    let _ = first.wait();

    let (mut second, banner) = start();
    assert!(banner.iter().any(|l| l.contains("kept in")), "the restart keeps the token: {banner:#?}");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), token);
    let url = banner[0].strip_prefix("hubrelay listening on ").unwrap().trim().to_string();
    assert_eq!(post(&url, &token), 200);
    let _ = second.kill();
    let _ = second.wait();
}

#[tokio::test]
async fn one_sandbox_serves_many_portals_each_with_its_hub_id_and_time_zone() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["sandbox", "--listen", "127.0.0.1:0", "--token", "many", "--portal", "1001"])
        .args(["--portal", "1002:America/Chicago:-360"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Read every line (the sandbox keeps printing), the URLs through a channel.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let url = line.strip_prefix("HubSpot sandbox listening on ").or_else(|| line.split(" on ").nth(1));
            if let Some(url) = url.filter(|u| u.starts_with("http://")) {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let urls: Vec<String> = (0..2).map(|_| rx.recv_timeout(Duration::from_secs(30)).expect("sandbox up")).collect();
    let details = |url: String| async move {
        let resp = reqwest::Client::new()
            .get(format!("{url}/account-info/v3/details"))
            .bearer_auth("many")
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        resp.json::<serde_json::Value>().await.unwrap()
    };
    let (first, second) = (details(urls[0].clone()).await, details(urls[1].clone()).await);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((first["portalId"].as_u64(), first["timeZone"].as_str()), (Some(1001), Some("UTC")), "{first}");
    assert_eq!((second["portalId"].as_u64(), second["timeZone"].as_str()), (Some(1002), Some("America/Chicago")));
    assert_eq!(second["utcOffsetMilliseconds"].as_i64(), Some(-360 * 60_000), "{second}");
    // Bad specs are refused with the reason.
    let out = Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["sandbox", "--portal", "1002:America/Chicago"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("ID:TIME_ZONE:OFFSET_MINUTES"));
}

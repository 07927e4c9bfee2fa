//! `infra/smoke-test` (what ops run against a freshly deployed stack), run here against `hubrelay serve`.

use std::process::Command;

use crate::harness::{Serve, TOKEN};

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn smoke(args: &[&str]) -> (bool, String) {
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/smoke-test"))
        .args(args)
        .output()
        .expect("run infra/smoke-test");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn the_smoke_test_passes_with_a_token_or_a_signature_and_fails_on_bad_credentials() {
    let serve = Serve::start(&[("HUBRELAY_WEBHOOK_SECRETS", WHSEC)]);
    let (ok, out) = smoke(&["--url", &serve.url, "--token", TOKEN]);
    assert!(ok, "{out}");
    assert!(out.contains("ok: delivered") && out.contains("ok: the repeat was replayed"), "{out}");
    let (ok, out) = smoke(&["--url", &serve.url, "--webhook-secret", WHSEC]);
    assert!(ok, "{out}");
    assert_eq!(serve.all_contacts().await.len(), 2, "one contact per run");

    let (ok, out) = smoke(&["--url", &serve.url, "--token", "wrong"]);
    assert!(!ok && out.contains("401") && out.contains("FAILED"), "{out}");
    let (ok, out) = smoke(&["--url", &serve.url]);
    assert!(!ok && out.contains("--token or --webhook-secret is required"), "{out}");
}

//! The HubSpot sandbox against HubSpot's official Python client (`hubspot-api-client`, pinned in
//! scripts/requirements-test.txt and installed by scripts/install-test-tools): every call hubrelay makes is
//! sent through the client and each answer, errors included, must deserialize into its models
//! (tests/conformance/official_client.py). The client speaks the legacy paths only; the dated routes hubrelay
//! uses are served by the same handlers, so their answers have the same shapes.

use std::path::PathBuf;

use hubrelay_sandbox::hubspot::{spawn, SandboxOptions};

const TOKEN: &str = "conformance-token";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_answers_as_hubspots_official_client_expects() {
    let python = std::env::var_os("HUBRELAY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".tools/venv/bin/python"));
    assert!(
        python.exists(),
        "{} not found: run scripts/install-test-tools (it installs hubspot-api-client), or set HUBRELAY_TEST_PYTHON",
        python.display()
    );
    let sandbox = spawn(
        SandboxOptions { token: Some(TOKEN.into()), ..SandboxOptions::default() },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let script = repo().join("tests/conformance/official_client.py");
    let url = sandbox.url();
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(&python)
            .arg(&script)
            .args(["--base-url", &url, "--token", TOKEN])
            .output()
            .expect("run the conformance script")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the official client refused sandbox answers:\n{stdout}\n{stderr}");
    assert!(stdout.lines().filter(|l| l.starts_with("PASS ")).count() >= 30, "too few checks ran:\n{stdout}");
    assert!(!stdout.contains("FAIL "), "{stdout}");
}

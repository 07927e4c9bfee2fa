//! `GET /openapi.json` against a real `serve`: the description validates as OpenAPI 3.1
//! (`openapi-spec-validator`, in the test venv), and schemathesis (its own pinned venv, both installed by
//! scripts/install-test-tools) fuzzes every operation it describes and finds no 5xx and no answer that
//! contradicts it: status codes, content types, headers and bodies.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{Serve, TOKEN};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tool(path: &str) -> PathBuf {
    let tool = repo().join(path);
    assert!(tool.exists(), "{} not found: run scripts/install-test-tools", tool.display());
    tool
}

/// The checks that say "no 5xx, and nothing the description contradicts" (a method it does not describe
/// included: a JSON 405).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,unsupported_method";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_description_validates_and_serve_answers_as_it_says() {
    let serve = Serve::start(&[("RUST_LOG", "error")]);
    let resp = reqwest::get(format!("{}/openapi.json", serve.url)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(doc["servers"][0]["url"], serve.url.as_str(), "the server is where serve is called");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let validator = tool(".tools/venv/bin/openapi-spec-validator");
    let out = tokio::task::block_in_place(|| Command::new(validator).arg(&file).output().unwrap());
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // A fixed seed and example count: the same requests on every run (about 4,500, some 20 s). One worker:
    // with two, Python 3.11's compile() in Hypothesis's threads fails now and then (a schemathesis runtime
    // error, not an answer of ours).
    let st = tool(".tools/schemathesis/bin/st");
    let report = dir.path().join("report");
    let out = tokio::task::block_in_place(|| {
        Command::new(st)
            .args(["run", &format!("{}/openapi.json", serve.url), "--checks", CHECKS])
            .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
            .args(["--max-examples", "25", "--seed", "20261207", "--workers", "1", "--no-color"])
            .args(["--phases", "examples,coverage,fuzzing", "--generation-database", "none"])
            .args(["--request-timeout", "20", "--max-failures", "20"])
            .arg("--report-dir")
            .arg(&report)
            .env("SCHEMATHESIS_HOOKS", "")
            .current_dir(dir.path())
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found problems:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // Every operation it loaded was tested (none skipped): "N selected / N total" and "Tested: N".
    let counts = stdout.split("Operations:").nth(1).and_then(|rest| rest.lines().next()).unwrap_or_default();
    let numbers: Vec<&str> = counts.split_whitespace().filter(|w| w.chars().all(|c| c.is_ascii_digit())).collect();
    assert!(numbers.len() == 2 && numbers[0] == numbers[1], "not every operation was selected: {counts}");
    assert!(stdout.contains(&format!("Tested: {}", numbers[0])), "not every operation was tested:\n{stdout}");
}

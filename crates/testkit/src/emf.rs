//! Checks EMF documents against AWS's specification with `tests/lambda/check_emf.py` (its published JSON
//! schema, `tests/lambda/emf-schema.json`, and the rules a schema cannot express), run by the test venv's Python
//! (`scripts/install-test-tools`; `HUBRELAY_TEST_PYTHON` overrides it).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Panics with the checker's report unless every document passes (and there is at least one).
pub fn assert_valid(documents: &[Value]) {
    let python = std::env::var_os("HUBRELAY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".tools/venv/bin/python"));
    assert!(python.exists(), "{} not found: run scripts/install-test-tools", python.display());
    let mut child = Command::new(&python)
        .arg(repo().join("tests/lambda/check_emf.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run check_emf.py");
    let lines: String = documents.iter().map(|d| format!("{d}\n")).collect();
    child.stdin.take().expect("stdin").write_all(lines.as_bytes()).expect("write the documents");
    let out = child.wait_with_output().expect("check_emf.py finished");
    assert!(
        out.status.success(),
        "EMF documents break the specification:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sum of `metric` over the documents whose root member `Function` is `function` (an array of values
/// counts as its length: the number of calls a latency metric holds).
pub fn total(documents: &[Value], function: &str, metric: &str) -> f64 {
    documents
        .iter()
        .filter(|d| d["Function"] == function)
        .filter_map(|d| match &d[metric] {
            Value::Array(values) => Some(values.len() as f64),
            v => v.as_f64(),
        })
        .sum()
}

//! The `hubrelay` command beyond `serve`: the standalone sandbox and `properties check|sync`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Sandbox(std::process::Child, String);

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sandbox(token: &str) -> Sandbox {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["sandbox", "--listen", "127.0.0.1:0", "--token", token])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start sandbox");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("HubSpot sandbox listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(30)).expect("sandbox did not start");
    Sandbox(child, url)
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
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("aimbase_identifier") && out.contains("aimbase_dealername"), "{out}");
    assert!(err.contains("missing"), "{err}");

    let (code, out, err) = hubrelay(&["properties", "sync", "--mapping", "aimbase"], &sandbox.1, "cli-token");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created aimbase_identifier"), "{out}");

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
}

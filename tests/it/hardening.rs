//! Issue 13's findings, each as a request a sender or an attacker could make (or a fault they could
//! cause) against the real `serve`: the answer expected, and nothing lost or duplicated.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubrelay_core::auth::sign_standard_webhook;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::harness::{headers, Serve, UPSERT};
use crate::status::aimbase_lead;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Finding 2: the same `activity_id` posted under three `Idempotency-Key`s is one engagement.
#[tokio::test]
async fn an_idempotency_key_header_cannot_split_one_activity_into_several() {
    let serve = Serve::start(&[("HUBRELAY_MAPPING", "aimbase")]);
    let contact_id = aimbase_lead(&serve, "hdr-1", "header-games@example.com").await;
    let call = json!({"lead_id": "hdr-1", "type": "Phone Call", "activity_id": "CRM-9", "body": "left a message"});
    let mut event_ids = Vec::new();
    for key in ["k-1", "k-2", "k-3"] {
        let (status, h, body) = serve
            .post_to(
                "/v1/leads/activities",
                "application/json",
                call.to_string().into_bytes(),
                headers(&[("idempotency-key", key)]),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(h.get("idempotent-replayed").is_some(), key != "k-1", "{key}");
        event_ids.push(body["event_id"].clone());
    }
    event_ids.dedup();
    assert_eq!(event_ids.len(), 1, "one event, answered three times");
    assert_eq!(serve.engagements(&contact_id, "calls", &[]).await.len(), 1);
}

/// Finding 2: a captured signed request replayed inside its window with a fresh `Idempotency-Key` (the
/// header is not signed) is the same event: the signed `webhook-id` is the key.
#[tokio::test]
async fn a_signed_request_replayed_with_a_fresh_key_is_not_delivered_again() {
    let serve = Serve::start(&[("HUBRELAY_WEBHOOK_SECRETS", WHSEC)]);
    let post_signed = |path: &'static str, body: Vec<u8>, id: &'static str, key: String| {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let sig = sign_standard_webhook(WHSEC, id, now, &body).unwrap();
        let h = headers(&[
            ("webhook-id", id),
            ("webhook-timestamp", &now.to_string()),
            ("webhook-signature", &sig),
            ("idempotency-key", &key),
        ]);
        let serve = &serve;
        async move { serve.post_to(path, "application/json", body, h).await }
    };
    let lead = json!({"email": "captured@example.com", "first_name": "Cap"}).to_string().into_bytes();
    for i in 0..3 {
        let (status, h, body) = post_signed("/v1/leads", lead.clone(), "msg_lead_1", format!("fresh-{i}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(h.get("idempotent-replayed").is_some(), i > 0);
    }
    assert_eq!(serve.sandbox_calls(UPSERT).await, 1, "one HubSpot write for one signed lead");
    let contact_id = serve.contact("captured@example.com").await.unwrap()["id"].as_str().unwrap().to_string();
    let note = json!({"contact_id": contact_id, "type": "Note", "body": "called back"}).to_string().into_bytes();
    for i in 0..3 {
        let (status, _, body) = post_signed("/v1/leads/activities", note.clone(), "msg_note_1", format!("n-{i}")).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(serve.engagements(&contact_id, "notes", &[]).await.len(), 1);
}

/// Finding 3: a duplicate of a request in flight hears `503` with `Retry-After` (a 4xx would make many
/// senders drop the lead), and the claim of a request cut off by `kill -9` is freed when `serve` starts
/// again, so the sender's retry is delivered at once.
#[tokio::test]
async fn a_claim_in_flight_answers_503_and_a_crashed_claim_is_freed_at_start() {
    let mut serve = Serve::start(&[]);
    serve.set_faults(json!({"latency_ms": 8000})).await;
    let lead = json!({"email": "in-flight@example.com", "first_name": "Fly"});
    let first = {
        let (http, url, body) = (serve.http.clone(), serve.url.clone(), lead.to_string());
        tokio::spawn(async move {
            http.post(format!("{url}/v1/leads"))
                .bearer_auth(crate::harness::TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let (status, h, body) = serve.post_lead(&lead, headers(&[])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("request_in_progress")), "{body}");
    assert_eq!(h.get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
    assert!(started.elapsed() >= Duration::from_secs(4), "it waited for the copy in flight first");

    // The first request is still waiting on HubSpot: kill the process under it.
    serve.kill();
    let _ = first.await;
    serve.restart();
    let started = Instant::now();
    let (status, _, body) = serve.post_lead(&lead, headers(&[])).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("delivered")), "{body}");
    assert!(started.elapsed() < Duration::from_secs(4), "no wait for the dead claim: {:?}", started.elapsed());
    assert!(serve.contact("in-flight@example.com").await.is_some());
}

/// Finding 4: when the event record cannot be written (a failing disk, here a trigger that fails every
/// insert into the event log), the sender hears 503 — never a 2xx without a record — and the key is free,
/// so its retry after the fault is delivered and recorded.
#[tokio::test]
async fn no_2xx_without_an_event_record_and_the_key_is_free_after_a_store_fault() {
    let serve = Serve::start(&[]);
    let db = failing_event_writes(&serve);
    let lead = json!({"email": "no-record@example.com", "first_name": "Rec"});
    let (status, _, body) = serve.post_lead(&lead, headers(&[])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("store_unavailable")), "{body}");
    let queued = json!({"email": "no-record-queued@example.com"});
    serve.set_faults(json!({"failure_rate": 1.0, "failure_status": 503})).await;
    let (status, _, body) = serve.post_lead(&queued, headers(&[])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("store_unavailable")), "{body}");
    serve.set_faults(json!({"failure_rate": 0.0})).await;
    let events: i64 = db.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap();
    assert_eq!(events, 0);

    db.execute_batch("DROP TRIGGER fail_events;").unwrap();
    let started = Instant::now();
    let (status, replayed, body) = serve.post_lead(&lead, headers(&[])).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("delivered")), "{body}");
    assert!(replayed.get("idempotent-replayed").is_none(), "the failed attempt stored no answer");
    assert!(started.elapsed() < Duration::from_secs(4), "the key was released, not left in progress");
    let event_id = body["event_id"].as_str().unwrap();
    let status: String =
        db.query_row("SELECT status FROM events WHERE event_id = ?1", [event_id], |r| r.get(0)).unwrap();
    assert_eq!(status, "delivered");
}

/// Finding 4 for referral webhooks: the action is queued, but its event record cannot be written. The sender hears
/// 503, not 202; its retry finds the action already queued (a duplicate, not a second sign-up), and the queued
/// action is sent to Extole once and recorded when the store works again.
#[tokio::test]
async fn a_referral_action_without_an_event_record_answers_503_and_its_retry_is_a_duplicate() {
    let serve = Serve::start(&[]);
    let db = failing_event_writes(&serve);
    let form = json!({"email": "referred@example.com", "advocate_code": "ADV-9", "firstname": "Ref"});
    let body = form.to_string().into_bytes();
    let (status, _, answer) =
        serve.post_to("/v1/referrals/hubspot", "application/json", body.clone(), headers(&[])).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (503, Some("store_unavailable")), "{answer}");

    db.execute_batch("DROP TRIGGER fail_events;").unwrap();
    let (status, _, answer) = serve.post_to("/v1/referrals/hubspot", "application/json", body, headers(&[])).await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("accepted")), "{answer}");
    assert_eq!(answer["actions"], json!([]), "nothing queued twice: {answer}");
    assert_eq!(answer["duplicates"][0]["action"], "extole_signup", "{answer}");
    let event_id = answer["duplicates"][0]["event_id"].as_str().expect("the first copy's event id").to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status: Option<String> =
            db.query_row("SELECT status FROM events WHERE event_id = ?1", [&event_id], |r| r.get(0)).ok();
        if status.as_deref() == Some("delivered") {
            break;
        }
        assert!(Instant::now() < deadline, "the queued action was not delivered and recorded: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent: i64 = db.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap();
    assert_eq!(sent, 1, "one event for the one action");
}

/// A connection to `serve`'s database with a trigger that fails every insert into the event log (a failing disk,
/// for that table only); `DROP TRIGGER fail_events` ends the fault.
fn failing_event_writes(serve: &Serve) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(serve.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute_batch(
        "CREATE TRIGGER fail_events BEFORE INSERT ON events BEGIN SELECT RAISE(FAIL, 'injected write failure'); END;",
    )
    .unwrap();
    db
}

/// Raw bytes to `serve` and what it answered (status, JSON body), reading until it closes or `wait` passes.
fn raw_exchange(url: &str, request: &[u8], wait: Duration) -> (u16, Value) {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&answer);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_string))
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    if length.is_some_and(|n| body.len() >= n) {
                        break;
                    }
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let json = serde_json::from_str(body).unwrap_or_else(|_| panic!("a non-JSON answer: {text:?}"));
    (status, json)
}

/// Findings 9 and 12: transport-level refusals in our JSON shape, an absurd `Content-Length` refused before
/// any body is sent, a malformed chunked body a 400 (not a 413).
#[tokio::test]
async fn transport_errors_are_json_and_absurd_lengths_are_refused_up_front() {
    let serve = Serve::start(&[]);
    let url = serve.url.clone();
    let auth = format!("Authorization: Bearer {}\r\n", crate::harness::TOKEN);
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(), 400, "malformed_request"),
        (b"BR@KEN /\r\n\r\n".to_vec(), 400, "malformed_request"),
        (
            format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(70 * 1024)).into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            format!("POST /v1/leads HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 999999999999\r\n\r\n")
                .into_bytes(),
            413,
            "payload_too_large",
        ),
        (
            format!("POST /v1/leads HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n")
                .into_bytes(),
            400,
            "invalid_body",
        ),
    ];
    for (request, status, code) in cases {
        let url = url.clone();
        let (got, body) =
            tokio::task::spawn_blocking(move || raw_exchange(&url, &request, Duration::from_secs(5))).await.unwrap();
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
}

/// A body over the size limit is answered 413, with `Connection: close`, before the rest of it is read. The
/// connection then reads and discards what the sender still sends before it closes: closed with unread bytes, the kernel would reset it,
/// and a client still writing its body (as HTTP clients do) would see "connection reset" or an incomplete
/// message instead of the 413.
#[tokio::test]
async fn a_body_still_arriving_after_its_413_is_read_not_reset() {
    let serve = Serve::start(&[]);
    let auth = format!("Authorization: Bearer {}\r\n", crate::harness::TOKEN);
    let body = format!("{{\"email\":\"a@b.co\",\"notes\":\"{}\"}}", "x".repeat(1024 * 1024));
    let declared = format!(
        "POST /v1/leads HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let chunked =
        format!("POST /v1/leads HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunked_body = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    // Through a pooling HTTP client: the 413 says `Connection: close`, so the client's next request goes on a
    // new connection instead of the one the server is closing (it failed as an incomplete message before).
    for _ in 0..10 {
        let (status, h, answer) = serve.post_raw("application/json", body.clone().into_bytes(), headers(&[])).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (413, Some("payload_too_large")), "{answer}");
        assert_eq!(h.get("connection").and_then(|v| v.to_str().ok()), Some("close"));
        let (status, _, answer) = serve.post_raw("application/json", b"{}".to_vec(), headers(&[])).await;
        assert_eq!(status, 422, "the next request is answered: {answer}");
    }
    for (head, body) in [(declared, body.clone()), (chunked, chunked_body)] {
        let url = serve.url.clone();
        let (written, status, answer) =
            tokio::task::spawn_blocking(move || streamed_exchange(&url, head.as_bytes(), body.as_bytes()))
                .await
                .unwrap();
        assert!(written.is_ok(), "the body's writes were cut off: {written:?}");
        assert_eq!((status, answer["error"]["code"].as_str()), (413, Some("payload_too_large")), "{answer}");
    }
}

/// Send `head`, then `body` in 64 KiB pieces 10 ms apart (a client still sending when the answer comes),
/// then read the answer to its end: (how the writes went, status, JSON body).
fn streamed_exchange(url: &str, head: &[u8], body: &[u8]) -> (std::io::Result<()>, u16, Value) {
    let mut stream = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let written = stream.write_all(head).and_then(|()| {
        body.chunks(64 * 1024).try_for_each(|piece| {
            std::thread::sleep(Duration::from_millis(10));
            stream.write_all(piece)
        })
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no answer: {text:?}"));
    let json = text.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok());
    (written, status, json.unwrap_or_else(|| panic!("a non-JSON answer: {text:?}")))
}

/// Finding 9: idle connections cannot starve `serve`. Over the connection cap a client hears a JSON 503;
/// idle connections are closed after the header read timeout, and the relay answers again.
#[tokio::test]
async fn idle_connections_are_capped_and_closed() {
    let serve = Arc::new(Serve::start(&[("HUBRELAY_MAX_CONNECTIONS", "40")]));
    let addr = serve.url.trim_start_matches("http://").to_string();
    let idle: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = serve.url.clone();
    let (status, body) = tokio::task::spawn_blocking(move || {
        raw_exchange(&url, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("too_many_connections")), "{body}");

    // Within the header read timeout (10 s) every idle connection is closed by the server...
    let closed = tokio::task::spawn_blocking(move || {
        idle.into_iter()
            .filter(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                match s.read(&mut [0u8; 64]) {
                    Ok(0) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                    Ok(_) => false,
                }
            })
            .count()
    })
    .await
    .unwrap();
    assert_eq!(closed, 40);
    // ...and the relay answers again.
    let (status, _, body) = serve.post_lead(&json!({"email": "after-idle@example.com"}), headers(&[])).await;
    assert_eq!(status, 200, "{body}");
}

/// One `serve` per data dir: it alone frees the claims a killed run left, so a second one must not start.
#[tokio::test]
async fn a_second_serve_on_the_same_data_dir_refuses_to_start() {
    let serve = Serve::start(&[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["serve", "--listen", "127.0.0.1:0", "--sandbox-listen", "127.0.0.1:0", "--data-dir"])
        .arg(serve.data_dir.path())
        .env("HUBRELAY_API_TOKENS", crate::harness::TOKEN)
        .env_remove("HUBSPOT_TOKEN")
        .env_remove("HUBRELAY_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another `hubrelay serve` is using the data dir"), "{stderr}");
    let (status, _, body) = serve.post_lead(&json!({"email": "still-one@example.com"}), headers(&[])).await;
    assert_eq!(status, 200, "the first one is unharmed: {body}");
}

/// Finding 13: a refused request is logged once, at info, with its code and the credentials it carried
/// masked — never the token itself.
#[tokio::test]
async fn a_refused_request_is_logged_once_with_masked_credentials() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["serve", "--listen", "127.0.0.1:0", "--sandbox-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("HUBRELAY_API_TOKENS", crate::harness::TOKEN)
        .env("RUST_LOG", "info")
        .env_remove("HUBSPOT_TOKEN")
        .env_remove("HUBRELAY_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let url_tx = tx.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("hubrelay listening on ") {
                let _ = url_tx.send(format!("url {}", url.trim()));
            }
        }
    });
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let url = loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("serve's banner");
        if let Some(url) = line.strip_prefix("url ") {
            break url.to_string();
        }
    };
    let secret = "stolen-or-stale-token-0123456789";
    let status = reqwest::Client::new()
        .post(format!("{url}/v1/leads"))
        .bearer_auth(secret)
        .header("content-type", "application/json")
        .body(r#"{"email":"refused@example.com"}"#)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) if line.contains("request refused") => refused.push(line),
            Ok(line) => assert!(!line.contains(secret), "a log line holds the token: {line}"),
            Err(_) if !refused.is_empty() => break,
            Err(_) => {}
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let line = &refused[0];
    assert!(line.contains("INFO") && line.contains("invalid_token") && line.contains("/v1/leads"), "{line}");
    assert!(line.contains("Bearer stol***") && !line.contains(secret), "{line}");
    assert!(!line.contains("refused@example.com"), "{line}");
}

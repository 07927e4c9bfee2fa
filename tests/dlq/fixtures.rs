//! Dead letters and event records built directly, and a runner for the real `hubrelay` binary.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hubrelay_core::domain::{AttemptOutcome, DeadLetterReason, DeliveryAttempt, FunctionName, RetryMessage};
use hubrelay_core::store::{EventRecord, EventStatus};
use serde_json::{json, Value};
use time::OffsetDateTime;

pub const EMAIL: &str = "jane.doe@example.com";

/// A dead-lettered lead received `age` ago, after `attempts` failed tries ending with `code`.
pub fn dead_letter(id: &str, age: Duration, attempts: u32, code: &str) -> (RetryMessage, DeadLetterReason) {
    let received = OffsetDateTime::now_utc() - age;
    let history = (1..=attempts)
        .map(|n| DeliveryAttempt {
            attempt: n,
            at: received + Duration::from_secs(u64::from(n - 1) * 5),
            outcome: if n == attempts { AttemptOutcome::Rejected } else { AttemptOutcome::Retryable },
            system: None,
            status: Some(if n == attempts { 400 } else { 503 }),
            correlation_id: Some(format!("corr-{id}-{n}")),
            error_code: Some(if n == attempts { code.to_string() } else { "hubspot_unavailable".to_string() }),
            error: Some(format!("attempt {n} failed for {EMAIL}")),
        })
        .collect();
    let message = RetryMessage {
        version: RetryMessage::UNSCOPED_VERSION,
        event_id: id.to_string(),
        function: FunctionName::LeadCaptured,
        idempotency_key: format!("idem-{id}"),
        received_at: received,
        event: json!({"email": EMAIL, "first_name": "Jane", "last_name": "Doe", "phone": "+1 555 0100",
                      "comment": "call me"}),
        attempts: history,
        not_before: received + Duration::from_secs(5),
        dead_letter_reason: None,
        schedule_offset: 0,
        redrives: 0,
        tenant: None,
        write_intent: None,
    };
    let reason = DeadLetterReason { code: code.to_string(), message: format!("Property refused for {EMAIL}") };
    (message, reason)
}

/// The event-log record matching a dead letter, with `status`.
pub fn record(m: &RetryMessage, reason: &DeadLetterReason, status: EventStatus) -> EventRecord {
    EventRecord {
        event_id: m.event_id.clone(),
        function: m.function,
        status,
        received_at: m.received_at,
        updated_at: m.attempts.last().map(|a| a.at).unwrap_or(m.received_at),
        next_attempt_at: None,
        attempts: m.attempts.clone(),
        contact_id: (status == EventStatus::Delivered).then(|| "1001".to_string()),
        email_masked: Some(hubrelay_core::pii::mask_email(EMAIL)),
        email_hash: None,
        reason: (status == EventStatus::DeadLettered).then(|| reason.clone()),
    }
}

/// Runs `hubrelay` with `args`, no inherited hubrelay/AWS settings, stdin closed, and `env` set.
pub fn hubrelay(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubrelay"));
    cmd.args(args).stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("HUBRELAY_") || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true").env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hubrelay")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs and expects success; returns stdout.
#[track_caller]
pub fn ok(args: &[&str], env: &[(&str, String)]) -> String {
    let out = hubrelay(args, env);
    assert!(out.status.success(), "hubrelay {args:?} failed ({}):\n{}\n{}", out.status, stdout(&out), stderr(&out));
    stdout(&out)
}

/// Runs with `--json` semantics and parses stdout.
#[track_caller]
pub fn ok_json(args: &[&str], env: &[(&str, String)]) -> Value {
    let text = ok(args, env);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("hubrelay {args:?}: not JSON ({e}):\n{text}"))
}

pub fn ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        v.as_array().unwrap().iter().map(|x| x["event_id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

pub fn strs(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    out.sort();
    out
}

pub fn path_arg(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

pub const HOUR: Duration = Duration::from_secs(3600);

//! `hubrelay events` / `hubrelay dlq` on a local data dir.

use std::time::Duration;

use hubrelay_core::store::{EventLog, EventStatus, RetryQueue};
use hubrelay_local::sqlite::SqliteStore;
use time::OffsetDateTime;

use crate::fixtures::*;

/// A data dir with dead letters: evt_a (property_doesnt_exist, 3 h old, 3 attempts), evt_b (invalid_option,
/// 30 min), evt_c (property_doesnt_exist, 2 d), evt_d (property_doesnt_exist, but delivered meanwhile per the
/// event log), plus a retrying and a delivered event that are not dead letters.
async fn data_dir() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("hubrelay.db")).unwrap();
    for (id, age, attempts, code, status) in [
        ("evt_a", 3 * HOUR, 3, "property_doesnt_exist", EventStatus::DeadLettered),
        ("evt_b", HOUR / 2, 1, "invalid_option", EventStatus::DeadLettered),
        ("evt_c", 48 * HOUR, 10, "property_doesnt_exist", EventStatus::DeadLettered),
        ("evt_d", 5 * HOUR, 2, "property_doesnt_exist", EventStatus::Delivered),
    ] {
        let (m, reason) = dead_letter(id, age, attempts, code);
        store.dead_letter(&m, &reason).await.unwrap();
        store.put_event(&record(&m, &reason, status)).await.unwrap();
    }
    let (mut retrying, reason) = dead_letter("evt_r", HOUR, 2, "hubspot_unavailable");
    retrying.not_before = OffsetDateTime::now_utc() + Duration::from_secs(300);
    store.enqueue(&retrying).await.unwrap();
    let mut rec = record(&retrying, &reason, EventStatus::Retrying);
    rec.next_attempt_at = Some(retrying.not_before);
    store.put_event(&rec).await.unwrap();
    let (delivered, reason) = dead_letter("evt_ok", 26 * HOUR, 1, "x");
    store.put_event(&record(&delivered, &reason, EventStatus::Delivered)).await.unwrap();
    (dir, store)
}

fn dd(dir: &tempfile::TempDir) -> Vec<(&'static str, String)> {
    vec![("HUBRELAY_DATA_DIR", path_arg(dir.path()))]
}

#[tokio::test]
async fn list_shows_every_dead_letter() {
    let (dir, _store) = data_dir().await;
    let env = dd(&dir);
    let list = ok_json(&["dlq", "list", "--json"], &env);
    assert_eq!(ids(&list), ["evt_a", "evt_b", "evt_c", "evt_d"]);
    let a = list.as_array().unwrap().iter().find(|x| x["event_id"] == "evt_a").unwrap();
    assert_eq!(a["function"], "lead-captured");
    assert_eq!(a["attempts"], 3);
    assert_eq!(a["last_error_code"], "property_doesnt_exist");
    assert_eq!(a["reason"]["code"], "property_doesnt_exist");
    let age = a["age_seconds"].as_u64().unwrap();
    assert!((3 * 3600..3 * 3600 + 120).contains(&age), "{age}");
    assert!(!list.to_string().contains(EMAIL), "no personal data in the list: {list}");

    // The table, via --data-dir instead of the environment.
    let table = ok(&["dlq", "list", "--data-dir", &path_arg(dir.path())], &[]);
    let header = table.lines().next().unwrap();
    for col in ["EVENT ID", "FUNCTION", "AGE", "ATTEMPTS", "LAST ERROR"] {
        assert!(header.contains(col), "{table}");
    }
    let row = table.lines().find(|l| l.starts_with("evt_c")).unwrap();
    assert!(
        row.contains("lead-captured")
            && row.contains("2d")
            && row.contains(" 10 ")
            && row.contains("property_doesnt_exist"),
        "{row}"
    );
    assert!(table.contains("4 dead-lettered"), "{table}");
}

#[tokio::test]
async fn show_masks_personal_data_unless_revealed() {
    let (dir, _store) = data_dir().await;
    let env = dd(&dir);
    let text = ok(&["dlq", "show", "evt_a"], &env);
    assert!(!text.contains(EMAIL) && !text.contains("Doe") && !text.contains("555 0100"), "{text}");
    assert!(text.contains("j***@e***.com"), "{text}");
    assert!(text.contains("property_doesnt_exist") && text.contains("corr-evt_a-3"), "{text}");
    assert!(text.contains("--reveal"), "{text}");

    let revealed = ok(&["dlq", "show", "evt_a", "--reveal"], &env);
    assert!(revealed.contains(EMAIL) && revealed.contains("Doe"), "{revealed}");

    let json = ok_json(&["dlq", "show", "evt_a", "--json"], &env);
    assert_eq!(json["masked"], true);
    assert_eq!(json["message"]["event"]["email"], "j***@e***.com");
    assert_eq!(json["message"]["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(json["message"]["dead_letter_reason"]["code"], "property_doesnt_exist");
    assert!(!json.to_string().contains(EMAIL));
    let json = ok_json(&["dlq", "show", "evt_a", "--json", "--reveal"], &env);
    assert_eq!(json["message"]["event"]["email"], EMAIL);

    let missing = hubrelay(&["dlq", "show", "evt_zz"], &env);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("evt_zz is not in the dead-letter queue"), "{}", stderr(&missing));
}

#[tokio::test]
async fn redrive_by_error_code_moves_only_those_and_skips_delivered() {
    let (dir, store) = data_dir().await;
    let env = dd(&dir);

    let dry = ok_json(&["dlq", "redrive", "--error-code", "property_doesnt_exist", "--dry-run", "--json"], &env);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(strs(&dry["moved"]), ["evt_a", "evt_c"]);
    assert_eq!(strs(&dry["already_delivered"]), ["evt_d"]);
    assert_eq!(dry["not_matched"], 1);
    assert_eq!(store.dead_letters().unwrap().len(), 4, "a dry run changes nothing");
    assert_eq!(store.queued().unwrap().len(), 1);
    let text = ok(&["dlq", "redrive", "--error-code", "property_doesnt_exist", "--dry-run"], &env);
    assert!(text.contains("would move  evt_a") && text.contains("would skip  evt_d"), "{text}");

    let before = OffsetDateTime::now_utc();
    let text = ok(&["dlq", "redrive", "--error-code", "property_doesnt_exist"], &env);
    assert!(text.contains("redrive: moved 2, skipped as delivered 1, not matched 1"), "summary missing:\n{text}");
    let after = OffsetDateTime::now_utc();

    // Only evt_b is left in the DLQ; evt_d (delivered) is gone from it without being queued.
    let left: Vec<String> = store.dead_letters().unwrap().into_iter().map(|m| m.event_id).collect();
    assert_eq!(left, ["evt_b"]);
    let queued = store.queued().unwrap();
    let mut queued_ids: Vec<&str> = queued.iter().map(|m| m.event_id.as_str()).collect();
    queued_ids.sort();
    assert_eq!(queued_ids, ["evt_a", "evt_c", "evt_r"]);
    for m in queued.iter().filter(|m| m.event_id != "evt_r") {
        let expected = if m.event_id == "evt_a" { 3 } else { 10 };
        assert_eq!(m.attempts.len(), expected, "history kept");
        assert_eq!(m.schedule_offset, expected as u32, "schedule restarted");
        assert_eq!(m.attempts_in_schedule(), 0);
        assert!(m.not_before >= before - Duration::from_secs(1) && m.not_before <= after, "due now");
        assert!(m.dead_letter_reason.is_none());
    }
    // The event log follows.
    let a = store.get_event("evt_a").await.unwrap().unwrap();
    assert_eq!(a.status, EventStatus::Retrying);
    assert!(a.reason.is_none());
    assert_eq!(store.get_event("evt_d").await.unwrap().unwrap().status, EventStatus::Delivered);

    // Nothing left to match.
    let again = ok_json(&["dlq", "redrive", "--error-code", "property_doesnt_exist", "--json"], &env);
    assert_eq!(again["moved"].as_array().unwrap().len(), 0);
    assert_eq!(again["not_matched"], 1);
}

#[tokio::test]
async fn redrive_by_ids_age_function_and_all() {
    let (dir, store) = data_dir().await;
    let env = dd(&dir);
    let report = ok_json(&["dlq", "redrive", "evt_b", "evt_nope", "--json"], &env);
    assert_eq!(strs(&report["moved"]), ["evt_b"]);
    assert_eq!(strs(&report["not_found"]), ["evt_nope"]);
    let report =
        ok_json(&["dlq", "redrive", "--older-than", "1d", "--function", "lead-captured", "--dry-run", "--json"], &env);
    assert_eq!(strs(&report["moved"]), ["evt_c"]);
    let report = ok_json(&["dlq", "redrive", "--all", "--json"], &env);
    assert_eq!(strs(&report["moved"]), ["evt_a", "evt_c"]);
    assert_eq!(strs(&report["already_delivered"]), ["evt_d"]);
    assert!(store.dead_letters().unwrap().is_empty());

    // An empty selection and --all with filters are refused.
    for args in [vec!["dlq", "redrive"], vec!["dlq", "redrive", "--all", "--error-code", "x"]] {
        let out = hubrelay(&args, &env);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("--all"), "{}", stderr(&out));
    }
    let out = hubrelay(&["dlq", "redrive", "--older-than", "soon"], &env);
    assert!(!out.status.success() && stderr(&out).contains("invalid duration"), "{}", stderr(&out));
}

#[tokio::test]
async fn purge_needs_confirmation() {
    let (dir, store) = data_dir().await;
    let env = dd(&dir);
    // stdin is not a terminal here: without --yes it refuses and changes nothing.
    let out = hubrelay(&["dlq", "purge", "evt_b"], &env);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("pass --yes"), "{}", stderr(&out));
    assert_eq!(store.dead_letters().unwrap().len(), 4);

    let text = ok(&["dlq", "purge", "evt_b", "--yes"], &env);
    assert!(text.contains("purged evt_b"), "{text}");
    let left: Vec<String> = store.dead_letters().unwrap().into_iter().map(|m| m.event_id).collect();
    assert_eq!(left, ["evt_a", "evt_c", "evt_d"]);
    assert!(store.queued().unwrap().iter().all(|m| m.event_id != "evt_b"));

    let out = hubrelay(&["dlq", "purge", "evt_b", "--yes"], &env);
    assert!(!out.status.success() && stderr(&out).contains("not in the dead-letter queue"), "{}", stderr(&out));
}

#[tokio::test]
async fn events_show_and_list() {
    let (dir, _store) = data_dir().await;
    let env = dd(&dir);
    let text = ok(&["events", "show", "evt_a"], &env);
    for needle in [
        "status       dead_lettered",
        "function     lead-captured",
        "received",
        "contact id   -",
        "j***@e***.com",
        "reason       property_doesnt_exist",
        "attempts     3",
        "corr-evt_a-1",
        "hubspot_unavailable",
        "503",
        "rejected",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    assert!(!text.contains(EMAIL), "{text}");
    let retrying = ok(&["events", "show", "evt_r"], &env);
    assert!(retrying.contains("status       retrying") && retrying.contains("(in "), "{retrying}");
    let delivered = ok_json(&["events", "show", "evt_ok", "--json"], &env);
    assert_eq!(delivered["status"], "delivered");
    assert_eq!(delivered["contact_id"], "1001");
    assert_eq!(delivered["attempts"][0]["correlation_id"], "corr-evt_ok-1");

    let all = ok_json(&["events", "list", "--json"], &env);
    assert_eq!(ids(&all), ["evt_a", "evt_b", "evt_c", "evt_d", "evt_ok", "evt_r"]);
    assert_eq!(all[0]["event_id"], "evt_b", "newest first");
    let dead = ok_json(&["events", "list", "--status", "dead_lettered", "--json"], &env);
    assert_eq!(ids(&dead), ["evt_a", "evt_b", "evt_c"]);
    let recent = ok_json(&["events", "list", "--since", "4h", "--json"], &env);
    assert_eq!(ids(&recent), ["evt_a", "evt_b", "evt_r"]);
    let limited = ok_json(&["events", "list", "--limit", "2", "--json", "--function", "lead-captured"], &env);
    assert_eq!(limited.as_array().unwrap().len(), 2);
    let table = ok(&["events", "list", "--status", "retrying"], &env);
    assert!(table.starts_with("EVENT ID") && table.contains("evt_r") && table.contains("next attempt in"), "{table}");
    assert!(!table.contains("evt_a"), "{table}");

    let out = hubrelay(&["events", "show", "evt_zz"], &env);
    assert!(!out.status.success() && stderr(&out).contains("no event evt_zz"), "{}", stderr(&out));
    let out = hubrelay(&["events", "list", "--status", "lost"], &env);
    assert!(!out.status.success() && stderr(&out).contains("unknown status"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_missing_store_is_an_error_not_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    for args in [vec!["dlq", "list"], vec!["events", "list"]] {
        let out = hubrelay(&args, &dd(&dir));
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("no hubrelay store"), "{}", stderr(&out));
    }
    assert!(!dir.path().join("hubrelay.db").exists());
}

//! `hubrelay events show|list`: the fate of accepted events (delivered, retrying, dead-lettered, superseded)
//! from the event log, locally (the `serve` store) or on AWS (the idempotency table).

use std::sync::Arc;

use hubrelay_aws::dynamodb::DynamoIdempotencyStore;
use hubrelay_core::dlq::{parse_duration, parse_function, parse_status};
use hubrelay_core::domain::{DeliveryAttempt, FunctionName};
use hubrelay_core::store::{EventFilter, EventLog, EventRecord, EventStatus};
use hubrelay_local::sqlite::SqliteStore;
use time::OffsetDateTime;

use crate::backend::{self, StoreArgs, Target};
use crate::output;

#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    #[command(subcommand)]
    action: Action,
    #[command(flatten, next_help_heading = "Backend (local store or AWS)")]
    store: StoreArgs,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// One event: status, next attempt, contact, and every delivery attempt
    Show {
        /// The event id (`evt_…`) from a 2xx answer, `events list` or a log line
        event_id: String,
        /// Print the record as JSON
        #[arg(long)]
        json: bool,
    },
    /// Events, newest first
    List {
        /// delivered, retrying, dead_lettered or superseded
        #[arg(long, value_parser = parse_status)]
        status: Option<EventStatus>,
        /// Function that accepted the event (lead-captured)
        #[arg(long, value_parser = parse_function)]
        function: Option<FunctionName>,
        /// Only events received within this long (30m, 2h, 1d, 1w)
        #[arg(long, value_parser = parse_duration, value_name = "AGE")]
        since: Option<std::time::Duration>,
        /// Only events received at or after this time (2026-12-07T01:00, UTC, or RFC 3339)
        #[arg(long, value_parser = hubrelay_core::dlq::parse_instant, value_name = "TIME")]
        from: Option<time::OffsetDateTime>,
        /// Only events received before this time (2026-12-07T02:00, UTC, or RFC 3339)
        #[arg(long, value_parser = hubrelay_core::dlq::parse_instant, value_name = "TIME")]
        until: Option<time::OffsetDateTime>,
        /// Only the events of this email (matched by its hash: records keep no email, only a masked one)
        #[arg(long)]
        email: Option<String>,
        /// At most this many (0: no limit)
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON (an array of records)
        #[arg(long)]
        json: bool,
    },
    /// Local store: make every retrying event due now (HubSpot is back, a portal was reconnected), instead of
    /// at its next scheduled attempt; the running serve's worker takes them within a second
    RetryNow,
}

/// The event log of the selected backend.
pub async fn event_log(store: &StoreArgs) -> Result<(Arc<dyn EventLog>, String), String> {
    match backend::resolve(store, None).await? {
        Target::Local(dir) => {
            let path = hubrelay_local::local_db_path(&dir);
            if !path.is_file() {
                return Err(format!(
                    "no hubrelay store at {} (is --data-dir / HUBRELAY_DATA_DIR the folder `hubrelay serve` uses?)",
                    path.display()
                ));
            }
            let store = SqliteStore::open(&path).map_err(|e| e.to_string())?;
            Ok((Arc::new(store), format!("local store {}", path.display())))
        }
        Target::Aws(aws) => {
            let table = aws.table()?.to_string();
            let client = aws_sdk_dynamodb::Client::new(&aws.config);
            let store = DynamoIdempotencyStore::new(client, table.clone());
            Ok(match &aws.tenant {
                Some(tenant) => {
                    (Arc::new(store.for_tenant(tenant)), format!("DynamoDB table {table}, tenant {tenant}"))
                }
                None => (Arc::new(store), format!("DynamoDB table {table}")),
            })
        }
    }
}

pub async fn run(args: EventsArgs) -> Result<(), String> {
    crate::backend::init_warn_logs();
    let now = OffsetDateTime::now_utc();
    match args.action {
        Action::RetryNow => retry_now(&args.store).await,
        Action::Show { event_id, json } => {
            let (log, source) = event_log(&args.store).await?;
            let record = log
                .get_event(&event_id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no event {event_id} in {source}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&record).map_err(|e| e.to_string())?);
            } else {
                print!("{}", show_text(&record, now));
            }
            Ok(())
        }
        Action::List { status, function, since, from, until, email, limit, json } => {
            let (log, source) = event_log(&args.store).await?;
            let email_hash = email
                .as_deref()
                .map(hubrelay_core::store::email_search_hash)
                .transpose()
                .map_err(|e| format!("--email: {e}"))?;
            let received_after = since.map(|d| now - d).max(from);
            let filter = EventFilter { status, function, received_after, received_before: until, email_hash, limit };
            let records = log.list_events(&filter).await.map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?);
                return Ok(());
            }
            if records.is_empty() {
                println!("no events match (in {source})");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = records.iter().map(|r| list_row(r, now)).collect();
            print!("{}", output::table(&["EVENT ID", "STATUS", "FUNCTION", "RECEIVED", "ATTEMPTS", "DETAIL"], &rows));
            if limit > 0 && records.len() == limit {
                println!("(first {limit}; --limit 0 for all)");
            }
            Ok(())
        }
    }
}

/// `events retry-now`: the local retry queue made due now (SQS messages keep their delay, so AWS has no such step).
async fn retry_now(store: &StoreArgs) -> Result<(), String> {
    let Target::Local(dir) = backend::resolve(store, None).await? else {
        return Err(
            "retry-now works on a local store: SQS keeps each message's delay (use `dlq redrive` for parked events)"
                .into(),
        );
    };
    let path = hubrelay_local::local_db_path(&dir);
    if !path.is_file() {
        return Err(format!("no hubrelay store at {}", path.display()));
    }
    let store = SqliteStore::open(&path).map_err(|e| e.to_string())?;
    let n = store.hasten_queue(OffsetDateTime::now_utc()).await.map_err(|e| e.to_string())?;
    println!("{n} retrying events are due now (local store {})", path.display());
    Ok(())
}

fn list_row(r: &EventRecord, now: OffsetDateTime) -> Vec<String> {
    let detail = match r.status {
        EventStatus::Delivered => format!("contact {}", output::or_dash(r.contact_id.as_deref())),
        EventStatus::Retrying => match r.next_attempt_at {
            Some(t) => format!("next attempt {}", output::relative(t, now)),
            None => "next attempt unknown".into(),
        },
        EventStatus::DeadLettered => {
            format!("dead-lettered: {}", output::or_dash(r.reason.as_ref().map(|x| x.code.as_str())))
        }
        EventStatus::Superseded => "a newer lead for the contact was applied".into(),
    };
    vec![
        r.event_id.clone(),
        r.status.as_str().into(),
        r.function.as_str().into(),
        format!("{} ago", output::age(output::since(r.received_at, now))),
        r.attempts.len().to_string(),
        detail,
    ]
}

fn show_text(r: &EventRecord, now: OffsetDateTime) -> String {
    let mut out = String::new();
    let mut field = |name: &str, value: String| out.push_str(&format!("{name:<13}{value}\n"));
    field("event", r.event_id.clone());
    field("status", r.status.as_str().into());
    field("function", r.function.as_str().into());
    field(
        "received",
        format!("{} ({} ago)", output::time(r.received_at), output::age(output::since(r.received_at, now))),
    );
    field("updated", output::time(r.updated_at));
    field(
        "next attempt",
        match r.next_attempt_at {
            Some(t) => format!("{} ({})", output::time(t), output::relative(t, now)),
            None => "-".into(),
        },
    );
    field("contact id", output::or_dash(r.contact_id.as_deref()));
    field("email", output::or_dash(r.email_masked.as_deref()));
    if let Some(reason) = &r.reason {
        field("reason", format!("{}: {}", reason.code, mask_text(&reason.message)));
    }
    out.push_str(&format!("attempts     {}\n", r.attempts.len()));
    if !r.attempts.is_empty() {
        out.push('\n');
        out.push_str(&attempts_table(&r.attempts, false));
    }
    out
}

/// Free text masked for display (emails inside error messages and the like).
pub fn mask_text(text: &str) -> String {
    match hubrelay_core::pii::mask_json(&serde_json::Value::String(text.to_string())) {
        serde_json::Value::String(s) => s,
        _ => String::new(),
    }
}

/// The attempts of an event as a table.
pub fn attempts_table(attempts: &[DeliveryAttempt], reveal: bool) -> String {
    let rows: Vec<Vec<String>> = attempts
        .iter()
        .map(|a| {
            let error = match (&a.error_code, &a.error) {
                (Some(code), Some(msg)) => format!("{code}: {}", if reveal { msg.clone() } else { mask_text(msg) }),
                (Some(code), None) => code.clone(),
                (None, Some(msg)) => {
                    if reveal {
                        msg.clone()
                    } else {
                        mask_text(msg)
                    }
                }
                (None, None) => "-".into(),
            };
            vec![
                a.attempt.to_string(),
                output::time(a.at),
                serde_json::to_value(a.outcome).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
                upstream(a.system.as_deref(), a.status),
                output::or_dash(a.correlation_id.as_deref()),
                error,
            ]
        })
        .collect();
    output::table(&["#", "TIME", "OUTCOME", "UPSTREAM", "CORRELATION ID", "ERROR"], &rows)
}

/// Who answered an attempt and with what status: `hubspot 503`, `extole 429`, `503` (older records name no
/// system), `-` (never sent).
fn upstream(system: Option<&str>, status: Option<u16>) -> String {
    match (system, status) {
        (Some(system), Some(status)) => format!("{system} {status}"),
        (Some(system), None) => format!("{system} (no answer)"),
        (None, Some(status)) => status.to_string(),
        (None, None) => "-".into(),
    }
}

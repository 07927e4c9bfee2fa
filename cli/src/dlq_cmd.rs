//! `hubrelay dlq list|show|redrive|purge`: the on-call tool for dead-lettered events, on the local store of
//! `hubrelay serve` or on the stack's SQS dead-letter queue. The logic lives in [`hubrelay_core::dlq`].

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use hubrelay_core::dlq::{parse_duration, parse_function, DeadLetter, DeadLetters, RedriveReport, Redriver, Selection};

use hubrelay_local::LocalDeadLetters;

use hubrelay_aws::dynamodb::DynamoIdempotencyStore;
use hubrelay_aws::SqsDeadLetters;
use hubrelay_core::domain::FunctionName;
use hubrelay_core::pii::mask_json;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::backend;
use crate::events_cmd::{attempts_table, mask_text};
use crate::output;

use crate::backend::{QueueArgs, StoreArgs, Target};

#[derive(clap::Args, Debug)]
pub struct DlqArgs {
    #[command(subcommand)]
    action: Action,
    #[command(flatten, next_help_heading = "Backend (local store or AWS)")]
    store: StoreArgs,
    #[command(flatten, next_help_heading = "Backend (local store or AWS)")]
    queues: QueueArgs,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Dead-lettered events, oldest first: event id, function, age (since received), attempts, last error code
    List {
        /// Print JSON (an array)
        #[arg(long)]
        json: bool,
    },
    /// One dead-lettered event with its attempts and payload (personal data masked unless --reveal)
    Show {
        /// The event id (`evt_…`) from `dlq list`
        event_id: String,
        /// Show personal data unmasked
        #[arg(long)]
        reveal: bool,
        /// Print the whole record as JSON
        #[arg(long)]
        json: bool,
    },
    /// Put dead-lettered events back on the retry queue with a restarted schedule; events the event log
    /// records as delivered are only removed from the dead-letter queue
    Redrive {
        /// These events (combine with filters to narrow further)
        event_ids: Vec<String>,
        /// Events whose dead-letter reason or last error has this code (e.g. property_doesnt_exist)
        #[arg(long, value_name = "CODE")]
        error_code: Option<String>,
        /// Events of this function (lead-captured)
        #[arg(long, value_parser = parse_function)]
        function: Option<FunctionName>,
        /// Events received more than this long ago (30m, 2h, 1d)
        #[arg(long, value_parser = parse_duration, value_name = "AGE")]
        older_than: Option<std::time::Duration>,
        /// Everything in the dead-letter queue
        #[arg(long)]
        all: bool,
        /// Only list what would move
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete one dead-lettered event for good (asks for confirmation)
    Purge {
        /// The event id (`evt_…`) from `dlq list`
        event_id: String,
        /// Do not ask (required when stdin is not a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

async fn backend(args: &DlqArgs, redrive: bool, dry_run: bool) -> Result<Box<dyn DeadLetters>, String> {
    match backend::resolve(&args.store, Some(&args.queues)).await? {
        Target::Local(dir) => Ok(Box::new(LocalDeadLetters::open(&dir).map_err(|e| e.to_string())?)),
        Target::Aws(aws) => {
            let sqs = aws_sdk_sqs::Client::new(&aws.config);
            let mut dlq = SqsDeadLetters::new(sqs, aws.dlq_url()?);
            // Letters are sealed with their people's keys, in the idempotency table.
            if let Ok(table) = aws.table() {
                let keys = DynamoIdempotencyStore::new(aws_sdk_dynamodb::Client::new(&aws.config), table);
                dlq = dlq.with_sealer(hubrelay_aws::sqs_seal::MessageSealer::new(keys));
            }
            if let Some(tenant) = &aws.tenant {
                dlq = dlq.for_tenant(tenant.clone());
            }
            if redrive {
                let table = aws.table()?;
                let events = DynamoIdempotencyStore::new(aws_sdk_dynamodb::Client::new(&aws.config), table);
                let events = match &aws.tenant {
                    Some(tenant) => events.for_tenant(tenant),
                    None => events,
                };
                dlq = dlq.with_event_log(Arc::new(events));
                if !dry_run || aws.queue_url.is_some() {
                    dlq = dlq.with_retry_queue(aws.queue_url()?);
                }
            }
            Ok(Box::new(dlq))
        }
    }
}

pub async fn run(args: DlqArgs) -> Result<(), String> {
    crate::backend::init_warn_logs();
    let now = OffsetDateTime::now_utc();
    match &args.action {
        Action::List { json } => {
            let dlq = backend(&args, false, false).await?;
            let letters = dlq.list().await.map_err(|e| e.to_string())?;
            if *json {
                let items: Vec<Value> = letters.iter().map(|l| summary_json(l, now)).collect();
                println!("{}", serde_json::to_string_pretty(&items).map_err(|e| e.to_string())?);
            } else if letters.is_empty() {
                println!("the dead-letter queue is empty ({})", dlq.describe());
            } else {
                let rows: Vec<Vec<String>> = letters
                    .iter()
                    .map(|l| {
                        vec![
                            l.event_id().to_string(),
                            l.function().as_str().to_string(),
                            output::age(l.age(now)),
                            l.attempts().to_string(),
                            output::or_dash(l.last_error_code()),
                        ]
                    })
                    .collect();
                print!("{}", output::table(&["EVENT ID", "FUNCTION", "AGE", "ATTEMPTS", "LAST ERROR"], &rows));
                println!("{} dead-lettered ({})", letters.len(), dlq.describe());
            }
            Ok(())
        }
        Action::Show { event_id, reveal, json } => {
            let dlq = backend(&args, false, false).await?;
            let letter = dlq
                .get(event_id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{event_id} is not in the dead-letter queue ({})", dlq.describe()))?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&full_json(&letter, now, *reveal)).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", show_text(&letter, now, *reveal));
            }
            Ok(())
        }
        Action::Redrive { event_ids, error_code, function, older_than, all, dry_run, json } => {
            let selection = Selection {
                event_ids: event_ids.clone(),
                error_code: error_code.clone(),
                function: *function,
                older_than: *older_than,
                all: *all,
            };
            selection.validate()?;
            let dlq = backend(&args, true, *dry_run).await?;
            let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} redriving [{bar:30}] {pos}/{len} {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            let report = {
                let bar = bar.clone();
                let mut progress = move |done: usize, total: usize| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                };
                Redriver::new(dlq.as_ref())
                    .run(&selection, *dry_run, now, &mut progress)
                    .await
                    .map_err(|e| e.to_string())?
            };
            bar.finish_and_clear();
            if *json {
                println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
            } else {
                print!("{}", report_text(&report, &dlq.describe()));
            }
            if report.failed.is_empty() {
                Ok(())
            } else {
                Err(format!("{} event(s) could not be redriven (see above)", report.failed.len()))
            }
        }
        Action::Purge { event_id, yes } => {
            if !*yes && !std::io::stdin().is_terminal() {
                return Err("refusing to purge without confirmation: stdin is not a terminal (pass --yes)".into());
            }
            let dlq = backend(&args, false, false).await?;
            let letter = dlq
                .get(event_id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{event_id} is not in the dead-letter queue ({})", dlq.describe()))?;
            if !*yes {
                eprint!(
                    "purge {} ({}, received {} ago, {} attempts, last error {}) from {}?\n\
                     The lead is deleted for good and will never reach HubSpot. [y/N] ",
                    letter.event_id(),
                    letter.function().as_str(),
                    output::age(letter.age(now)),
                    letter.attempts(),
                    output::or_dash(letter.last_error_code()),
                    dlq.describe(),
                );
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer).map_err(|e| format!("reading the answer: {e}"))?;
                if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
                    println!("not purged");
                    return Ok(());
                }
            }
            let removed = dlq.purge(event_id).await.map_err(|e| e.to_string())?;
            match removed {
                0 => Err(format!("{event_id} was no longer in the dead-letter queue")),
                1 => {
                    println!("purged {event_id}");
                    Ok(())
                }
                n => {
                    println!("purged {event_id} ({n} copies)");
                    Ok(())
                }
            }
        }
    }
}

/// One line of `dlq list --json`: no payload, the reason's message masked.
fn summary_json(l: &DeadLetter, now: OffsetDateTime) -> Value {
    json!({
        "event_id": l.event_id(),
        "function": l.function().as_str(),
        "received_at": output::time(l.received_at()),
        "dead_lettered_at": l.dead_lettered_at.map(output::time),
        "age_seconds": l.age(now).as_secs(),
        "attempts": l.attempts(),
        "last_error_code": l.last_error_code(),
        "reason": l.reason().map(|r| json!({"code": r.code, "message": mask_text(&r.message)})),
    })
}

/// `dlq show --json`: the whole message (payload and attempts), masked unless `reveal`.
fn full_json(l: &DeadLetter, now: OffsetDateTime, reveal: bool) -> Value {
    let message = serde_json::to_value(&l.message).unwrap_or(Value::Null);
    json!({
        "event_id": l.event_id(),
        "function": l.function().as_str(),
        "received_at": output::time(l.received_at()),
        "dead_lettered_at": l.dead_lettered_at.map(output::time),
        "age_seconds": l.age(now).as_secs(),
        "last_error_code": l.last_error_code(),
        "masked": !reveal,
        "message": if reveal { message } else { mask_json(&message) },
    })
}

fn show_text(l: &DeadLetter, now: OffsetDateTime, reveal: bool) -> String {
    let m = &l.message;
    let text = |s: &str| if reveal { s.to_string() } else { mask_text(s) };
    let mut out = String::new();
    let mut field = |name: &str, value: String| out.push_str(&format!("{name:<16}{value}\n"));
    field("event", m.event_id.clone());
    field("function", m.function.as_str().into());
    field("received", format!("{} ({} ago)", output::time(m.received_at), output::age(l.age(now))));
    field(
        "dead-lettered",
        l.dead_lettered_at
            .map(|t| format!("{} ({} ago)", output::time(t), output::age(output::since(t, now))))
            .unwrap_or_else(|| "-".into()),
    );
    field(
        "reason",
        match l.reason() {
            Some(r) => format!("{}: {}", r.code, text(&r.message)),
            None => "- (moved by SQS after repeated failed receives)".into(),
        },
    );
    field("idempotency key", text(&m.idempotency_key));
    field("attempts", format!("{} ({} in the current schedule)", m.attempts.len(), m.attempts_in_schedule()));
    out.push('\n');
    out.push_str(&attempts_table(&m.attempts, reveal));
    out.push_str(if reveal { "\nevent (unmasked):\n" } else { "\nevent (personal data masked; --reveal to show):\n" });
    let event = if reveal { m.event.clone() } else { mask_json(&m.event) };
    out.push_str(&serde_json::to_string_pretty(&event).unwrap_or_default());
    out.push('\n');
    out
}

fn report_text(r: &RedriveReport, source: &str) -> String {
    let mut out = String::new();
    let (move_verb, skip_verb) = if r.dry_run { ("would move", "would skip") } else { ("moved", "skipped") };
    if r.dry_run {
        out.push_str(&format!("dry run on {source}: nothing changed\n"));
    }
    for id in &r.moved {
        out.push_str(&format!("{move_verb:<12}{id}\n"));
    }
    for id in &r.already_delivered {
        out.push_str(&format!("{skip_verb:<12}{id}  (already delivered; removed from the dead-letter queue)\n"));
    }
    for id in &r.not_found {
        out.push_str(&format!("{:<12}{id}  (not in the dead-letter queue)\n", "not found"));
    }
    for f in &r.failed {
        out.push_str(&format!("{:<12}{}  {}\n", "FAILED", f.event_id, f.error));
    }
    out.push_str(&format!(
        "{}: {move_verb} {}, {skip_verb} as delivered {}, not matched {} (left in the dead-letter queue)",
        if r.dry_run { "dry run" } else { "redrive" },
        r.moved.len(),
        r.already_delivered.len(),
        r.not_matched,
    ));
    if !r.not_found.is_empty() {
        out.push_str(&format!(", not found {}", r.not_found.len()));
    }
    if r.duplicates_removed > 0 {
        out.push_str(&format!(", duplicate copies removed {}", r.duplicates_removed));
    }
    if r.unreadable > 0 {
        out.push_str(&format!(", unreadable {} (left in place)", r.unreadable));
    }
    if !r.failed.is_empty() {
        out.push_str(&format!(", failed {}", r.failed.len()));
    }
    out.push('\n');
    if !r.dry_run && !r.moved.is_empty() {
        out.push_str("the moved events are due now; follow them with `hubrelay events show <event_id>`\n");
    }
    out
}

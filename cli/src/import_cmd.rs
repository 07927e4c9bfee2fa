//! `hubrelay import FILE`: a backfill of leads (CSV with a header row, or JSON lines) into a `serve` data dir.
//! Every row is checked first, as a live lead is (`hubrelay_core::import`); a bad row is reported by line and
//! field, and stops the import unless `--skip-invalid`. The valid rows go onto the tenant's retry queue in chunks,
//! each with the import's cursor in the same transaction (`hubrelay_local::sqlite_imports`): the command resumes
//! where it stopped (Ctrl-C, a crash) and never queues a row twice; a row whose lead came in live already is not
//! queued again. `serve`'s retry worker delivers them in batches within the portal's budget, as live leads that
//! wait; this command follows them with an ETA until they are settled.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hubrelay_core::config::{Layer, RelaySettings};
use hubrelay_core::domain::RetryMessage;
use hubrelay_core::import::{self, Format, Kind, Validated};
use hubrelay_core::store::EventStatus;
use hubrelay_core::tenant::TenantId;
use hubrelay_local::sqlite::SqliteStore;
use hubrelay_local::sqlite_imports::{import_event_id, ImportItem};
use hubrelay_local::tenants::{tenant_dir, TenantRegistry};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::{CommandError, ConfigArg};

/// Rows queued per transaction.
const CHUNK: usize = 500;
/// Bad rows listed in full (the count says how many more).
const SHOWN_ERRORS: usize = 50;

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The file: CSV with a header row naming lead fields (email, first_name, product.year, …), or JSON lines
    /// (one lead body per line)
    file: PathBuf,
    /// csv or jsonl [default: from the file's extension]
    #[arg(long, value_parser = ["csv", "jsonl"])]
    format: Option<String>,
    /// What the rows are: `leads`, or `extole-share-links` (Extole's export: email, share_code, share_link,
    /// company, partner_user_id, extole_app_type), each row set on its contact as a live share-link webhook is
    /// or `advocate-participants` (a HubSpot contacts export: Record ID and Email; or Advocate's import format:
    /// an email column), each contact synced to its impact.com Advocate participant
    #[arg(long, default_value = "leads", value_parser = ["leads", "extole-share-links", "advocate-participants"])]
    kind: String,
    /// A column (CSV) or key (JSON lines) holding each row's own id: the row is then delivered once per id, as a
    /// live lead with that `lead_id` [default: a row's lead_id, else its content]
    #[arg(long, value_name = "COLUMN")]
    key_column: Option<String>,
    /// Check every row and say what the import would do; queue nothing
    #[arg(long)]
    dry_run: bool,
    /// Queue the valid rows even when some are bad (those are reported)
    #[arg(long)]
    skip_invalid: bool,
    /// Queue the rows and return, without following their delivery
    #[arg(long)]
    no_wait: bool,
    /// Data dir of `hubrelay serve` [env: HUBRELAY_DATA_DIR] [default: .hubrelay]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A tenant of the data dir (`hubrelay tenants list`): its mapping, its store, its portal
    #[arg(long, value_name = "ID")]
    tenant: Option<TenantId>,
    /// Mapping profile of the default tenant: a built-in name or a TOML file [default: chat-widget]
    #[arg(long, env = "HUBRELAY_MAPPING", hide_env_values = true)]
    mapping: Option<String>,
    /// AWS: a CloudFormation stack whose outputs name the table and the retry queue; the rows go onto its retry
    /// queue (the retry-worker delivers them) with the checkpoint in its table. Check against the stack's
    /// mapping: pass the same --mapping
    #[arg(long, value_name = "NAME", conflicts_with = "data_dir")]
    stack: Option<String>,
    /// AWS: the DynamoDB table holding the checkpoint [env: HUBRELAY_IDEMPOTENCY_TABLE with --queue-url]
    #[arg(long, value_name = "NAME", conflicts_with = "data_dir", requires = "queue_url")]
    table: Option<String>,
    /// AWS: the retry queue's URL
    #[arg(long, value_name = "URL", conflicts_with = "data_dir", requires = "table")]
    queue_url: Option<String>,
    #[command(flatten)]
    config: ConfigArg,
}

impl ImportArgs {
    /// Into an AWS stack rather than a `serve` data dir.
    fn to_aws(&self) -> bool {
        self.stack.is_some() || self.table.is_some() || self.queue_url.is_some()
    }
}

pub async fn run(args: ImportArgs) -> Result<(), CommandError> {
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| std::env::var(crate::backend::DATA_DIR_ENV).ok().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".hubrelay"));
    let bytes = std::fs::read(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let format = match args.format.as_deref() {
        Some("csv") => Format::Csv,
        Some(_) => Format::JsonLines,
        None => Format::from_path(&args.file.to_string_lossy())
            .ok_or("the file's format is not in its name (.csv, .jsonl): give --format csv or --format jsonl")?,
    };
    let (settings, store_dir, tenant) = if args.to_aws() {
        // The stack's tenants and settings live in AWS: rows are checked against --mapping.
        let layer = args.config.layers()?.merge(Layer { mapping: args.mapping.clone(), ..Layer::default() });
        let settings = RelaySettings::from_layer(&layer).map_err(|e| format!("configuration error: {e}"))?;
        let tenant = args.tenant.as_ref().map_or(hubrelay_core::domain::DEFAULT_TENANT.to_string(), |t| t.to_string());
        (settings, data_dir.clone(), tenant)
    } else {
        settings(&args, &data_dir)?
    };
    let kind = Kind::parse(&args.kind).unwrap_or(Kind::Leads);
    if kind == Kind::AdvocateParticipants && !settings.referral.config.create_participants {
        return Err("IMPACT_ADVOCATE_CREATE_PARTICIPANTS is off: the sync would create no participant for these \
                    contacts (switch it on for the import)"
            .into());
    }
    let validated = match kind {
        Kind::Leads => import::validate(format, &bytes, &settings.mapping, args.key_column.as_deref()),
        Kind::ExtoleShareLinks | Kind::AdvocateParticipants if args.key_column.is_some() => {
            return Err("--key-column is for leads: share links and participants are keyed by their content".into())
        }
        Kind::ExtoleShareLinks => import::validate_share_links(format, &bytes),
        Kind::AdvocateParticipants if format != Format::Csv => {
            return Err("a HubSpot contacts export is CSV: --kind advocate-participants takes --format csv".into())
        }
        Kind::AdvocateParticipants => import::validate_participants(&bytes),
    }
    .map_err(|e| e.to_string())?;
    report(&validated, &settings, kind);
    if !validated.errors.is_empty() && !args.skip_invalid {
        return Err(CommandError::check_failed(format!(
            "{} bad rows: nothing queued (fix them, or pass --skip-invalid to queue the {} valid ones)",
            validated.errors.len(),
            validated.rows.len()
        )));
    }
    if args.dry_run {
        println!("dry run: nothing queued");
        return Ok(());
    }
    if args.to_aws() {
        let import_key = import_key(&tenant, kind, &bytes, args.key_column.as_deref());
        let target = crate::import_aws::Target {
            stack: args.stack.clone(),
            table: args.table.clone(),
            queue_url: args.queue_url.clone(),
            tenant: args.tenant.clone().filter(|t| !t.is_default()),
        };
        return crate::import_aws::queue(target, &format!("imp_{import_key}"), &import_key, kind, &validated).await;
    }
    if !store_dir.join("hubrelay.db").exists() {
        return Err(format!(
            "no hubrelay store at {} (is --data-dir the folder `hubrelay serve` uses? start serve once)",
            store_dir.display()
        )
        .into());
    }
    let store = SqliteStore::open(&store_dir.join("hubrelay.db")).map_err(|e| e.to_string())?;
    let import_key = import_key(&tenant, kind, &bytes, args.key_column.as_deref());
    let import_id = format!("imp_{import_key}");
    queue(&store, &import_id, &import_key, kind, &validated).await?;
    if args.no_wait {
        println!("queued; `hubrelay serve` delivers them (follow with: hubrelay events list --status retrying)");
        return Ok(());
    }
    if !serve_running(&data_dir) {
        println!(
            "`hubrelay serve` is not running on {}: the rows wait on its queue and are delivered once it starts",
            data_dir.display()
        );
        return Ok(());
    }
    follow(&store, &import_key, validated.rows.len() as u64, &settings).await
}

/// The tenant's settings (the mapping its rows are checked against), its store's folder and its id.
fn settings(args: &ImportArgs, data_dir: &Path) -> Result<(RelaySettings, PathBuf, String), CommandError> {
    let mut layer = args.config.layers()?;
    match args.tenant.as_ref().filter(|t| !t.is_default()) {
        None => {
            layer = layer.merge(Layer { mapping: args.mapping.clone(), ..Layer::default() });
            let settings = RelaySettings::from_layer(&layer).map_err(|e| format!("configuration error: {e}"))?;
            Ok((settings, data_dir.to_path_buf(), hubrelay_core::domain::DEFAULT_TENANT.into()))
        }
        Some(id) => {
            if args.mapping.is_some() {
                return Err("--mapping is the default tenant's: a tenant's rows are checked against its own".into());
            }
            let registry = TenantRegistry::open(data_dir).map_err(|e| e.to_string())?;
            let tenant = registry.get(id).map_err(|e| e.to_string())?.tenant;
            let settings = tenant.relay_settings(&layer).map_err(|e| format!("configuration error: {e}"))?;
            Ok((settings, tenant_dir(data_dir, id), id.to_string()))
        }
    }
}

/// The import's identity: the tenant, the file's bytes and the key column. The same command resumes; an edited
/// file is another import (its rows already delivered are then counted as such, not queued again).
fn import_key(tenant: &str, kind: Kind, bytes: &[u8], key_column: Option<&str>) -> String {
    let mut hash = Sha256::new();
    hash.update(tenant.as_bytes());
    hash.update([0]);
    // Leads keep their earlier keys (an import started before kinds existed resumes).
    if kind != Kind::Leads {
        hash.update(kind.as_str().as_bytes());
        hash.update([0]);
    }
    hash.update(key_column.unwrap_or("").as_bytes());
    hash.update([0]);
    hash.update(bytes);
    hash.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn report(v: &Validated, settings: &RelaySettings, kind: Kind) {
    let what = match kind {
        Kind::Leads => format!("mapping `{}`", settings.mapping.name),
        Kind::ExtoleShareLinks => "Extole share links".to_string(),
        Kind::AdvocateParticipants => "Advocate participants".to_string(),
    };
    println!(
        "{} valid rows for {} contacts ({what}), {} bad, {} repeated in the file (imported once)",
        v.rows.len(),
        v.emails(),
        v.errors.len(),
        v.duplicates.len()
    );
    if !v.ignored_columns.is_empty() {
        println!("columns not used: {}", v.ignored_columns.join(", "));
    }
    for e in v.errors.iter().take(SHOWN_ERRORS) {
        let field = e.field.as_deref().map(|f| format!(" `{f}`")).unwrap_or_default();
        // The parser's messages may name the field again.
        let message =
            e.field.as_deref().and_then(|f| e.message.strip_prefix(&format!("`{f}`: "))).unwrap_or(&e.message);
        println!("  line {}{field}: {message} ({})", e.line, e.code);
    }
    if v.errors.len() > SHOWN_ERRORS {
        println!("  … and {} more bad rows", v.errors.len() - SHOWN_ERRORS);
    }
    // The worker writes up to 100 contacts a call; a contact's rows met in one pass are one write.
    let calls = v.emails().div_ceil(100).max(usize::from(!v.rows.is_empty()));
    let per_10s = settings.hubspot_rate_limit_per_10s.max(1) as usize;
    println!(
        "at least {calls} HubSpot calls: about {} at the portal's {per_10s} calls per 10 s, shared with live leads",
        hubrelay_core::display::age(Duration::from_secs((calls * 10).div_ceil(per_10s) as u64))
    );
}

async fn queue(
    store: &SqliteStore,
    import_id: &str,
    import_key: &str,
    kind: Kind,
    v: &Validated,
) -> Result<(), CommandError> {
    let now = OffsetDateTime::now_utc();
    let total = v.rows.len() as u64;
    let progress = store.start_import(import_id, kind.as_str(), total, now).await.map_err(|e| e.to_string())?;
    if progress.rows != total {
        return Err(format!("import {import_id} was started with {} rows, this file has {total}", progress.rows).into());
    }
    if progress.cursor == total {
        println!("import {import_id}: its {total} rows were queued by an earlier run");
        return Ok(());
    }
    let bar = bar("queuing", total);
    bar.set_position(progress.cursor);
    let mut cursor = progress.cursor;
    let mut last = progress;
    for chunk in v.rows[cursor as usize..].chunks(CHUNK) {
        let items = chunk
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let message = row_message(row, import_key, cursor + i as u64, now);
                let record = hubrelay_core::worker::event_record(
                    &message,
                    EventStatus::Retrying,
                    Some(message.not_before),
                    None,
                    None,
                    now,
                );
                Ok(ImportItem { key: row.key.clone(), message, record })
            })
            .collect::<Result<Vec<_>, String>>()?;
        last = store.queue_import_chunk(import_id, cursor, items, now).await.map_err(|e| e.to_string())?;
        cursor = last.cursor;
        bar.set_position(cursor);
    }
    bar.finish_and_clear();
    println!(
        "import {import_id}: {} rows queued, {} already delivered or queued before (live, or by an earlier run)",
        last.queued, last.already
    );
    Ok(())
}

/// Row `index`'s message: its event id derived from the import, received in file order (within a contact a later
/// row is a newer lead, and leads arriving live after the import are newer still).
pub(crate) fn row_message(row: &import::Row, import_key: &str, index: u64, now: OffsetDateTime) -> RetryMessage {
    let event_id = import_event_id(import_key, index);
    let mut message = RetryMessage::new(row.function(), &event_id, &row.key, row.event(), now);
    message.received_at = now + time::Duration::microseconds(row.line as i64);
    message
}

/// Follows the queued rows until none waits (Ctrl-C stops following; `serve` goes on delivering).
async fn follow(
    store: &SqliteStore,
    import_key: &str,
    rows: u64,
    settings: &RelaySettings,
) -> Result<(), CommandError> {
    let bar = bar("delivering", rows);
    let started = Instant::now();
    loop {
        let fates = store.import_fates(import_key).map_err(|e| e.to_string())?;
        let settled = fates.delivered + fates.superseded + fates.dead_lettered;
        bar.set_length(settled + fates.waiting);
        bar.set_position(settled);
        if fates.waiting == 0 {
            bar.finish_and_clear();
            println!(
                "settled in {}: {} delivered, {} superseded by a newer lead, {} parked or dead-lettered \
                 (hubrelay dlq list); HubSpot's limit: {} calls per 10 s",
                hubrelay_core::display::age(started.elapsed()),
                fates.delivered,
                fates.superseded,
                fates.dead_lettered,
                settings.hubspot_rate_limit_per_10s
            );
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c() => {
                bar.finish_and_clear();
                println!("stopped following: `hubrelay serve` delivers the {} rows still waiting", fates.waiting);
                return Ok(());
            }
        }
    }
}

pub(crate) fn bar(what: &str, len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} [{{bar:30}}] {{pos}}/{{len}} {{elapsed}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Whether a `hubrelay serve` holds the data dir (its lock file is taken).
fn serve_running(data_dir: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(data_dir.join("serve.lock")) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}

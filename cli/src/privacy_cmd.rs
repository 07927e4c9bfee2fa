//! `hubrelay privacy erase|receipts`: erase a person from a `serve` data dir (the default tenant's store or a
//! tenant's), and list the receipts. The same erasure as `POST /v1/privacy/erasure` (which can also ask HubSpot
//! for its GDPR delete); it works whether `serve` runs or not, as SQLite takes both.

use std::path::PathBuf;
use std::sync::Arc;

use hubrelay_core::privacy::{Eraser, ErasureSource, PersonalData, Subject};
use hubrelay_core::tenant::TenantId;
use hubrelay_local::sqlite::SqliteStore;
use hubrelay_local::tenants::tenant_dir;

use crate::CommandError;

#[derive(clap::Args, Debug)]
pub struct PrivacyArgs {
    #[command(subcommand)]
    command: PrivacyCommand,
}

#[derive(clap::Subcommand, Debug)]
enum PrivacyCommand {
    /// Erase every record hubrelay holds of a person (queued and dead-lettered messages, event records,
    /// idempotency answers, versions, links); prints the receipt, which names no one
    Erase(EraseArgs),
    /// The receipts of past erasures, newest first
    Receipts(ReceiptsArgs),
}

#[derive(clap::Args, Debug)]
struct Where {
    /// Data dir of `hubrelay serve` [env: HUBRELAY_DATA_DIR] [default: .hubrelay]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A tenant of the data dir (`hubrelay tenants list`) [default: the deployment's own]
    #[arg(long, value_name = "ID")]
    tenant: Option<TenantId>,
}

#[derive(clap::Args, Debug)]
struct EraseArgs {
    /// The person's email
    #[arg(long, required_unless_present = "contact_id")]
    email: Option<String>,
    /// The person's HubSpot contact id
    #[arg(long)]
    contact_id: Option<String>,
    #[command(flatten)]
    at: Where,
}

#[derive(clap::Args, Debug)]
struct ReceiptsArgs {
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    at: Where,
}

fn store(at: &Where) -> Result<SqliteStore, CommandError> {
    let data_dir = at
        .data_dir
        .clone()
        .or_else(|| std::env::var(crate::backend::DATA_DIR_ENV).ok().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".hubrelay"));
    let dir = match at.tenant.as_ref().filter(|t| !t.is_default()) {
        Some(id) => tenant_dir(&data_dir, id),
        None => data_dir,
    };
    let path = dir.join("hubrelay.db");
    if !path.exists() {
        return Err(format!(
            "no hubrelay store at {} (is --data-dir the folder `hubrelay serve` uses?)",
            dir.display()
        )
        .into());
    }
    SqliteStore::open(&path).map_err(|e| CommandError::from(e.to_string()))
}

pub async fn run(args: PrivacyArgs) -> Result<(), CommandError> {
    match args.command {
        PrivacyCommand::Erase(a) => {
            let store = Arc::new(store(&a.at)?);
            let subject = Subject { email: a.email, contact_id: a.contact_id };
            let receipt = Eraser::new(store, None)
                .erase(&subject, ErasureSource::Cli, None, false)
                .await
                .map_err(|e| CommandError::from(e.to_string()))?;
            println!("{}", serde_json::to_string_pretty(&receipt).unwrap_or_default());
            Ok(())
        }
        PrivacyCommand::Receipts(a) => {
            let receipts = store(&a.at)?.receipts(a.limit).await.map_err(|e| CommandError::from(e.to_string()))?;
            println!("{}", serde_json::to_string_pretty(&receipts).unwrap_or_default());
            Ok(())
        }
    }
}

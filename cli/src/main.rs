//! The `hubrelay` command: `serve` (the whole relay locally), `sandbox` (the HubSpot test double),
//! `doctor` (is a portal ready?), `properties` (create the custom properties the flows write), `events` (the fate of accepted events) and
//! `dlq` (the on-call tool for dead-lettered events).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod backend;
mod dlq_cmd;
mod doctor_cmd;
mod events_cmd;
mod import_aws;
mod import_cmd;
mod output;
mod portal;
mod privacy_cmd;
mod properties_cmd;
mod sandbox_cmd;
mod serve;
mod serve_console;
mod serve_oauth;
mod serve_referrals;
mod serve_tenants;
mod tenants_cmd;
mod tenants_partners;

#[derive(Parser)]
#[command(name = "hubrelay", version, about = "Relay leads and referral events to HubSpot, exactly once")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every handler in one process on a local SQLite store (and the HubSpot sandbox when no token is set).
    #[command(after_help = serve::SETTINGS_HELP)]
    Serve(serve::ServeArgs),
    /// Run the HubSpot sandbox on its own.
    Sandbox(sandbox_cmd::SandboxArgs),
    /// Check a HubSpot portal is ready: token, portal, scopes, custom properties (exit 1 when something needs fixing).
    Doctor(doctor_cmd::DoctorArgs),
    /// Check or create the custom contact properties hubrelay's flows write.
    Properties(properties_cmd::PropertiesArgs),
    /// Where accepted events stand: delivered, retrying (next attempt), dead-lettered, superseded.
    Events(events_cmd::EventsArgs),
    /// On-call: list, inspect, redrive or purge dead-lettered events (local store or the stack's SQS DLQ).
    Dlq(dlq_cmd::DlqArgs),
    /// Backfill leads from a CSV or JSON-lines file: every row checked first, then queued for serve to deliver.
    Import(import_cmd::ImportArgs),
    /// The portals one deployment relays to, each under /t/{tenant}/: add, list, show, update, remove, connect.
    Tenants(Box<tenants_cmd::TenantsArgs>),
    /// Erase a person from a data dir (GDPR), and list the receipts.
    Privacy(privacy_cmd::PrivacyArgs),
}

/// Settings file shared by the commands that read configuration.
#[derive(clap::Args, Clone, Debug)]
pub struct ConfigArg {
    /// TOML settings file (layered: defaults, then this file, then the environment, then flags).
    #[arg(long, env = "HUBRELAY_CONFIG", hide_env_values = true)]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The settings layers under a command's flags: the defaults, then this file, then the environment.
    pub fn layers(&self) -> Result<hubrelay_core::config::Layer, String> {
        use hubrelay_core::config::Layer;
        let mut layer = Layer::default();
        if let Some(path) = &self.config {
            layer = layer.merge(Layer::from_file(path).map_err(|e| e.to_string())?);
        }
        Ok(layer.merge(Layer::from_env(&|k| std::env::var(k).ok()).map_err(|e| e.to_string())?))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hubrelay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), CommandError> = runtime.block_on(async {
        let result = match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Sandbox(args) => sandbox_cmd::run(args).await,
            Command::Doctor(args) => return doctor_cmd::run(args).await,
            Command::Properties(args) => return properties_cmd::run(args).await,
            Command::Events(args) => events_cmd::run(args).await,
            Command::Dlq(args) => dlq_cmd::run(args).await,
            Command::Import(args) => return import_cmd::run(args).await,
            Command::Privacy(args) => return privacy_cmd::run(args).await,
            Command::Tenants(args) => tenants_cmd::run(*args).await,
        };
        result.map_err(CommandError::from)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hubrelay: {}", e.message);
            ExitCode::from(e.exit)
        }
    }
}

/// Why a command failed, and its exit status: 1 when a check found something to fix (`properties check`),
/// 2 for every error (bad arguments or settings, an unreachable store or API).
pub struct CommandError {
    pub message: String,
    pub exit: u8,
}

impl CommandError {
    pub fn check_failed(message: impl Into<String>) -> Self {
        CommandError { message: message.into(), exit: 1 }
    }
}

impl From<String> for CommandError {
    fn from(message: String) -> Self {
        CommandError { message, exit: 2 }
    }
}

impl From<&str> for CommandError {
    fn from(message: &str) -> Self {
        CommandError::from(message.to_string())
    }
}

/// Human-readable logs on stderr for the local commands.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: a log file or pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

//! `hubrelay sandbox`: the HubSpot test double on its own, for rehearsing outages and for other tools.

use std::path::PathBuf;

use hubrelay_sandbox::hubspot::{self as sandbox, Faults, SandboxOptions};

#[derive(clap::Args, Debug)]
pub struct SandboxArgs {
    /// Address to listen on
    #[arg(long, env = "HUBRELAY_SANDBOX_LISTEN", hide_env_values = true, default_value = "127.0.0.1:8090")]
    listen: String,
    /// Bearer token clients must send (default: any non-empty token)
    #[arg(long, env = "HUBRELAY_SANDBOX_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Folder for the sandbox's SQLite file (default: in memory)
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Requests allowed per rolling 10 s (HubSpot Professional: 190)
    #[arg(long, default_value_t = 190)]
    rate_limit: u32,
    /// Share of requests that fail (0.0 to 1.0)
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// HTTP status of injected failures
    #[arg(long, default_value_t = 503)]
    failure_status: u16,
    /// Added latency per request, in milliseconds
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

pub async fn run(args: SandboxArgs) -> Result<(), String> {
    crate::init_logs();
    if !(0.0..=1.0).contains(&args.failure_rate) {
        return Err("--failure-rate must be between 0.0 and 1.0".into());
    }
    let addr = args
        .listen
        .parse()
        .map_err(|_| format!("--listen: `{}` is not an address like 127.0.0.1:8090", args.listen))?;
    let db_path = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            Some(dir.join("sandbox.db"))
        }
        None => None,
    };
    let options = SandboxOptions {
        token: args.token.clone(),
        db_path,
        rate_limit_per_10s: args.rate_limit,
        faults: Faults {
            failure_rate: args.failure_rate,
            failure_status: args.failure_status,
            requests_per_10s: None,
            latency_ms: args.latency_ms,
        },
        ..SandboxOptions::default()
    };
    let handle = sandbox::spawn(options, addr).await.map_err(|e| e.to_string())?;
    println!("HubSpot sandbox listening on {}", handle.url());
    println!("  token: {}", if args.token.is_some() { "as given by --token" } else { "any bearer token" });
    println!("  faults: curl -X POST {}/__sandbox/faults -d '{{\"failure_rate\":0.5}}'", handle.url());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}

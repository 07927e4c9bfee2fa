//! `hubrelay sandbox`: the HubSpot test double on its own, for rehearsing outages and for other tools.

use std::path::PathBuf;
use std::time::Duration;

use hubrelay_sandbox::hubspot::{self as sandbox, Faults, OAuthApp, SandboxOptions};

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
    /// Turns on HubSpot's OAuth (2026-03) for an app with this client id: /oauth/authorize, /oauth/2026-03/token;
    /// the API then accepts the access tokens issued (and --token, if given)
    #[arg(long)]
    oauth_client_id: Option<String>,
    /// The OAuth app's client secret (required with --oauth-client-id)
    #[arg(long, env = "HUBRELAY_SANDBOX_OAUTH_CLIENT_SECRET", hide_env_values = true)]
    oauth_client_secret: Option<String>,
    /// Lifetime of OAuth access tokens, in seconds (HubSpot: 1800)
    #[arg(long, default_value_t = 1800)]
    access_token_lifetime: u64,
    /// OAuth token-endpoint requests allowed per rolling 10 s
    #[arg(long, default_value_t = 100)]
    token_rate_limit: u32,
}

/// The OAuth app, when `--oauth-client-id` is given.
fn oauth_app(args: &SandboxArgs) -> Result<Option<OAuthApp>, String> {
    let Some(client_id) = args.oauth_client_id.clone() else { return Ok(None) };
    if client_id.trim().is_empty() {
        return Err("--oauth-client-id must not be empty".into());
    }
    let client_secret = match &args.oauth_client_secret {
        Some(s) if !s.is_empty() => s.clone(),
        _ => {
            return Err("--oauth-client-id needs --oauth-client-secret (or HUBRELAY_SANDBOX_OAUTH_CLIENT_SECRET)".into())
        }
    };
    if args.access_token_lifetime == 0 {
        return Err("--access-token-lifetime must be at least 1 second".into());
    }
    Ok(Some(OAuthApp {
        client_id,
        client_secret,
        access_token_lifetime: Duration::from_secs(args.access_token_lifetime),
        token_requests_per_10s: args.token_rate_limit,
        ..OAuthApp::default()
    }))
}

/// `s` percent-encoded for a query value (RFC 3986 unreserved characters kept).
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
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
    let oauth = oauth_app(&args)?;
    let options = SandboxOptions {
        token: args.token.clone(),
        oauth: oauth.clone(),
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
    let token_line = match (&args.token, &oauth) {
        (Some(_), None) => "as given by --token",
        (Some(_), Some(_)) => "as given by --token, or an OAuth access token",
        (None, Some(_)) => "OAuth access tokens only",
        (None, None) => "any bearer token",
    };
    println!("  token: {token_line}");
    if let Some(app) = &oauth {
        println!(
            "  OAuth: install at {}/oauth/authorize?client_id={} (access tokens live {} s)",
            handle.url(),
            query_value(&app.client_id),
            app.access_token_lifetime.as_secs()
        );
    }
    println!("  faults: curl -X POST {}/__sandbox/faults -d '{{\"failure_rate\":0.5}}'", handle.url());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}

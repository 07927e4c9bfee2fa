//! `hubrelay sandbox`: the HubSpot test double on its own, for rehearsing outages and for other tools — one
//! portal, or many (`--portal`, each with its hub id, time zone, data and limits).

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
    /// A portal to serve: its hub id, optionally its time zone and UTC offset in minutes (`1002:America/Chicago:-360`).
    /// Repeat for many portals, each with its own data, limits and listener (the next ports after --listen, or
    /// free ports with port 0), all installable through the same OAuth app [default: one portal, 62515, UTC]
    #[arg(long = "portal", value_name = "ID[:TIME_ZONE:OFFSET_MINUTES]", value_parser = parse_portal)]
    portals: Vec<Portal>,
}

/// One portal of the sandbox.
#[derive(Debug, Clone, PartialEq)]
struct Portal {
    id: u64,
    time_zone: String,
    utc_offset_minutes: i32,
}

fn parse_portal(spec: &str) -> Result<Portal, String> {
    let mut parts = spec.splitn(3, ':');
    let id = parts.next().unwrap_or_default().trim();
    let id: u64 = id.parse().ok().filter(|id| *id > 0).ok_or(format!("`{id}` is not a hub id (a positive number)"))?;
    match (parts.next(), parts.next()) {
        (None, _) => Ok(Portal { id, time_zone: "UTC".into(), utc_offset_minutes: 0 }),
        (Some(tz), Some(offset)) if !tz.trim().is_empty() => {
            let utc_offset_minutes = offset
                .trim()
                .parse()
                .ok()
                .filter(|m: &i32| m.abs() <= 14 * 60)
                .ok_or(format!("`{offset}` is not a UTC offset in minutes (-840 to 840)"))?;
            Ok(Portal { id, time_zone: tz.trim().to_string(), utc_offset_minutes })
        }
        _ => Err(format!("`{spec}`: give the hub id alone, or ID:TIME_ZONE:OFFSET_MINUTES")),
    }
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
    let oauth = oauth_app(&args)?;
    let default = SandboxOptions::default();
    let portals = match args.portals.is_empty() {
        true => vec![Portal {
            id: default.portal_id,
            time_zone: default.time_zone.clone(),
            utc_offset_minutes: default.utc_offset_minutes,
        }],
        false => args.portals.clone(),
    };
    if let Some(p) = portals.iter().enumerate().find(|(i, p)| portals[..*i].iter().any(|q| q.id == p.id)) {
        return Err(format!("--portal {} is given twice", p.1.id));
    }
    if let Some(dir) = &args.data_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut handles = Vec::new();
    for (i, portal) in portals.iter().enumerate() {
        // One portal keeps `sandbox.db`; many have one file each.
        let db_path = args.data_dir.as_ref().map(|dir| match portals.len() {
            1 => dir.join("sandbox.db"),
            _ => dir.join(format!("sandbox-{}.db", portal.id)),
        });
        let mut listen: std::net::SocketAddr = addr;
        if listen.port() != 0 {
            let port = u16::try_from(i).ok().and_then(|i| addr.port().checked_add(i));
            listen.set_port(port.ok_or(format!("no port after {} for portal {}", addr.port(), portal.id))?);
        }
        let options = SandboxOptions {
            token: args.token.clone(),
            oauth: oauth.clone(),
            db_path,
            rate_limit_per_10s: args.rate_limit,
            portal_id: portal.id,
            time_zone: portal.time_zone.clone(),
            utc_offset_minutes: portal.utc_offset_minutes,
            faults: Faults {
                failure_rate: args.failure_rate,
                failure_status: args.failure_status,
                requests_per_10s: None,
                latency_ms: args.latency_ms,
                ..Faults::default()
            },
            ..SandboxOptions::default()
        };
        let handle = sandbox::spawn(options, listen).await.map_err(|e| format!("portal {}: {e}", portal.id))?;
        match i {
            0 => println!("HubSpot sandbox listening on {}", handle.url()),
            _ => println!("  and portal {} on {}", portal.id, handle.url()),
        }
        println!("  portal {}: time zone {} (UTC{:+} min)", portal.id, portal.time_zone, portal.utc_offset_minutes);
        handles.push(handle);
    }
    let handle = &handles[0];
    let token_line = match (&args.token, &oauth) {
        (Some(_), None) => "as given by --token",
        (Some(_), Some(_)) => "as given by --token, or an OAuth access token",
        (None, Some(_)) => "OAuth access tokens only",
        (None, None) => "any bearer token",
    };
    println!("  token: {token_line}");
    if let Some(app) = &oauth {
        println!(
            "  OAuth: install at {}/oauth/authorize?client_id={} (access tokens live {} s; each portal has its own install page)",
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

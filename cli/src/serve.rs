//! `hubrelay serve`: the relay in one local process — same handlers as the Lambdas, SQLite instead of
//! DynamoDB/SQS, and the HubSpot sandbox when no token is configured.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hubrelay_clients::HubSpotClient;
use hubrelay_clients::RateLimiter;
use hubrelay_core::config::{format_schedule, HubSpotTarget, Layer, RelaySettings, ServeSettings};
use hubrelay_core::hubspot::HubSpot;
use hubrelay_core::partners::{Extole, Impact};
use hubrelay_core::pii::mask_token;
use hubrelay_core::worker::ContactLocks;
use hubrelay_http::app_webhooks::AppWebhooks;
use hubrelay_http::transport::{self, Limits};
use hubrelay_http::{lead_routes, Relay, Stores, ACTIVITIES_PATH, STATUS_PATH};
use hubrelay_local::sqlite::SqliteStore;
use hubrelay_local::tenants::create_owner_only;
use hubrelay_local::turn::{ExtoleOutsideTurn, ImpactOutsideTurn, OutsideTurn, Turn};
use hubrelay_local::LocalWorker;
use hubrelay_local::WakingQueue;
use hubrelay_sandbox::hubspot::{self as sandbox, SandboxOptions};

use crate::ConfigArg;
use hubrelay_clients::notify::{notifications, Sending};
use hubrelay_clients::PartnerClients;
use hubrelay_core::domain::DEFAULT_TENANT;
use hubrelay_core::metrics::Metrics;
use hubrelay_core::notify::Notifications;
use hubrelay_http::metrics::metrics_routes;
use hubrelay_http::openapi::{openapi_routes, Deployment};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on [env: HUBRELAY_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long)]
    listen: Option<String>,
    /// Folder for the SQLite store (and the sandbox's data) [env: HUBRELAY_DATA_DIR] [default: .hubrelay]
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Address of the embedded HubSpot sandbox [env: HUBRELAY_SANDBOX_LISTEN] [default: 127.0.0.1:0, any free port]
    #[arg(long)]
    sandbox_listen: Option<String>,
    /// Sync HubSpot contacts to an impact.com Advocate sandbox started on 127.0.0.1 (instead of
    /// IMPACT_ADVOCATE_TENANT_ALIAS and _API_KEY)
    #[arg(
        long,
        env = "HUBRELAY_ADVOCATE_SANDBOX",
        hide_env_values = true,
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    advocate_sandbox: bool,
    #[command(flatten)]
    config: ConfigArg,
}

/// `serve --help`: the settings that have no flag (environment or the `--config` file's keys).
pub const SETTINGS_HELP: &str = "\
Settings (environment variables; the --config TOML file takes them too, see docs/configuration.md):
  Sender auth (none set: serve makes a local token and prints it)
    HUBRELAY_API_TOKENS       bearer tokens / X-Api-Key, comma-separated (two during a rotation)
    HUBRELAY_WEBHOOK_SECRETS  Standard Webhooks secrets (whsec_...), comma-separated
    HUBSPOT_CLIENT_SECRET     HubSpot v3 signatures (app client secret)
    HUBRELAY_PUBLIC_URL       the URL senders sign (HubSpot v3); default http://<listen>
  HubSpot (no token: the built-in sandbox)
    HUBSPOT_TOKEN (Service Key or project-app token), HUBSPOT_BASE_URL,
    HUBSPOT_API_VERSION (default 2026-09; v3 = legacy paths), HUBSPOT_TIMEOUT_SECS, HUBSPOT_RATE_LIMIT_PER_10S
  Tenants (`hubrelay tenants`; each under /t/{tenant}/) connected by OAuth install
    HUBSPOT_CLIENT_ID (the app's secret: the first of HUBSPOT_CLIENT_SECRET), HUBSPOT_OAUTH_AUTHORIZE_URL,
    HUBSPOT_OAUTH_SCOPES
  Leads
    HUBRELAY_MAPPING (chat-widget, aimbase or a TOML file), HUBRELAY_MAX_BODY_BYTES
  Retries
    HUBRELAY_RETRY_SCHEDULE (e.g. 5s,5m,30m), HUBRELAY_RETRY_JITTER (0.0 to 1.0)
  Referral programs (none set: the built-in Extole and impact sandboxes)
    EXTOLE_API_TOKEN, EXTOLE_BASE_URL, EXTOLE_WEBHOOK_SECRETS,
    IMPACT_ACCOUNT_SID, IMPACT_AUTH_TOKEN, IMPACT_CAMPAIGN_ID, IMPACT_BASE_URL, IMPACT_WEBHOOK_SECRETS
  impact.com Advocate participant sync (off unless set, or --advocate-sandbox)
    IMPACT_ADVOCATE_TENANT_ALIAS, IMPACT_ADVOCATE_API_KEY, IMPACT_ADVOCATE_BASE_URL,
    IMPACT_ADVOCATE_CREATE_PARTICIPANTS
  Outbound contact sync and notices
    HUBRELAY_OUTBOUND_URL, HUBRELAY_OUTBOUND_SECRET, HUBRELAY_NOTIFY_URL, HUBRELAY_NOTIFY_SECRET
  Privacy
    HUBRELAY_PERSONAL_DATA_RETENTION (default 15d)
";

pub async fn run(args: ServeArgs) -> Result<(), String> {
    crate::init_logs();
    let mut layer = args.config.layers()?;
    layer = layer.merge(Layer {
        listen: args.listen,
        data_dir: args.data_dir,
        sandbox_listen: args.sandbox_listen,
        ..Layer::default()
    });
    let aws_only: Vec<&str> = [
        ("HUBRELAY_IDEMPOTENCY_TABLE", layer.idempotency_table.is_some()),
        ("HUBRELAY_RETRY_QUEUE_URL", layer.retry_queue_url.is_some()),
        ("HUBRELAY_DLQ_URL", layer.dlq_url.is_some()),
        ("HUBRELAY_STAGE", layer.stage.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if !aws_only.is_empty() {
        eprintln!("hubrelay: serve keeps everything in its SQLite store; ignoring {}", aws_only.join(", "));
    }
    let mut settings = ServeSettings::from_layer(&layer).map_err(|e| format!("configuration error: {e}"))?;
    std::fs::create_dir_all(&settings.data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", settings.data_dir.display()))?;
    // Before HubSpot's properties are created: the sync's contact properties are created with the rest.
    // Only beside the HubSpot sandbox: a real portal's contacts would point at participants that vanish with it.
    if args.advocate_sandbox && !matches!(settings.relay.hubspot, HubSpotTarget::Sandbox) {
        return Err(
            "--advocate-sandbox runs only with the HubSpot sandbox (no HUBSPOT_TOKEN or HUBSPOT_REFRESH_TOKEN): \
                    a real portal's contacts would point at participants that vanish when serve stops"
                .into(),
        );
    }
    let advocate_sandbox = match args.advocate_sandbox {
        true => Some(crate::serve_referrals::start_advocate_sandbox(&mut settings.relay.referral).await?),
        false => None,
    };

    // A newcomer has configured nothing: give the local relay a token of its own rather than no auth.
    let auth = &mut settings.relay.auth;
    let own_token =
        if auth.api_tokens.is_empty() && auth.webhook_secrets.is_empty() && auth.hubspot_client_secrets.is_empty() {
            let token = local_token(&settings.data_dir)?;
            auth.api_tokens.push(token.token.clone());
            Some(token)
        } else {
            None
        };
    // Bound first, so the URL senders sign and OAuth redirects to names the real port (also for port 0).
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if auth.public_url.is_none() {
        auth.public_url = Some(format!("http://{addr}"));
    }
    // Refuse a bad auth configuration before anything starts.
    settings.relay.authenticator().map_err(|e| format!("configuration error: {e}"))?;
    // One `serve` per data dir: it alone may free the claims a crashed run left in progress.
    let _data_dir_lock = lock_data_dir(&settings.data_dir)?;
    let store = SqliteStore::open(&settings.data_dir.join("hubrelay.db")).map_err(|e| e.to_string())?;
    let orphans = store.release_orphaned_claims().await.map_err(|e| e.to_string())?;
    if orphans > 0 {
        tracing::warn!(
            orphans,
            "freed idempotency claims a previous run left in progress (their senders' retries go through)"
        );
    }

    // One budget for the token, shared by the inline path and the worker.
    let limiter = RateLimiter::new(settings.relay.hubspot_rate_limit_per_10s);
    let (hubspot, hubspot_line, _sandbox) = match crate::portal::api_client(
        &settings.relay,
        settings.relay.hubspot_timeout,
    )? {
        Some((client, credential)) => {
            let client = client.with_rate_limiter(limiter.clone(), None);
            // The portal's time zone times the daily limit's reset; read once, kept with the client.
            let portal = match client.portal().await {
                Ok(p) => format!("portal {}, time zone {}", p.portal_id, p.time_zone),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the portal's details (run `hubrelay doctor`)");
                    format!("portal not read: {}", e.code)
                }
            };
            let line = format!(
                "HubSpot API {} (API version {}; {portal}; {credential})",
                client.base_url(),
                settings.relay.hubspot_api_version,
            );
            (client, line, None)
        }
        None => {
            let token = match std::env::var("HUBRELAY_SANDBOX_TOKEN").ok().filter(|t| !t.is_empty()) {
                Some(t) => t,
                None => {
                    // Kept in the data dir (owner-only), so the banner need not print it.
                    let token = format!("sandbox-{}", uuid::Uuid::new_v4().simple());
                    write_secret(&settings.data_dir.join("sandbox-token"), &token)?;
                    token
                }
            };
            let options = SandboxOptions {
                token: Some(token.clone()),
                db_path: Some(settings.data_dir.join("sandbox.db")),
                ..SandboxOptions::default()
            };
            let handle = sandbox::spawn(options, settings.sandbox_listen).await.map_err(|e| format!("sandbox: {e}"))?;
            let client = HubSpotClient::new(&handle.url(), &token, settings.relay.hubspot_timeout)
                .map_err(|e| e.to_string())?
                .with_api_version(settings.relay.hubspot_api_version.clone())
                .with_rate_limiter(limiter.clone(), None);
            // The sandbox is a fresh portal: create the mapping's custom properties so the sample lead lands.
            let wanted = hubrelay_core::properties::required(&settings.relay.mapping, &settings.relay.referral.config);
            let created = hubrelay_core::properties::sync(&client, &wanted).await.map_err(|e| e.to_string())?;
            let line = format!(
                "HubSpot sandbox {} (no HUBSPOT_TOKEN set; sandbox token {}; {} custom properties created; faults: POST {}/__sandbox/faults)",
                handle.url(),
                sandbox_token_line(&settings.data_dir, &token),
                created.len(),
                handle.url()
            );
            (client, line, Some(handle))
        }
    };
    let store = Arc::new(store);
    let partners =
        Arc::new(crate::serve_referrals::start(&settings.relay.referral, settings.relay.hubspot_timeout).await?);
    // One tick at a time across every retry worker of this process (this one and each tenant's): backlogs
    // drain in turn and leave the rest of the machine to the request path.
    let worker_lane = Arc::new(tokio::sync::Semaphore::new(1));
    let modes = service_modes(&settings);
    // The process's counters (`GET /metrics`), each tenant's scoped to it.
    let metrics = Metrics::new();
    let probes = crate::serve_console::PortalProbes::default();
    let LocalRelay { app, worker: local, portal } = local_relay(
        &settings.relay,
        store.clone(),
        Portal { tenant: DEFAULT_TENANT.into(), client: hubspot, limiter, metrics: metrics.clone() },
        notifications(settings.relay.notify.as_ref(), DEFAULT_TENANT, Sending::Background)?,
        ContactLocks::new(),
        (Some(partners.extole.clone()), Some(partners.impact.clone())),
        worker_lane.clone(),
    )?;

    let wanted = hubrelay_core::properties::required(&settings.relay.mapping, &settings.relay.referral.config);
    probes.set(DEFAULT_TENANT, Some(crate::serve_console::Probe { client: portal, wanted }));

    let oauth_app =
        hubrelay_core::tenant::OAuthAppSettings::from_layer(&layer).map_err(|e| format!("configuration error: {e}"))?;
    // The other tenants, each under /t/{tenant}/ (`hubrelay tenants`), over the same deployment settings.
    let shared = crate::serve_tenants::Shared {
        base: layer.clone(),
        data_dir: settings.data_dir.clone(),
        oauth: oauth_app.clone(),
        worker_lane,
        metrics: metrics.clone(),
        probes: probes.clone(),
    };
    let mut tenants = crate::serve_tenants::TenantHost::open(shared, format!("http://{addr}"))?;
    let tenant_lines = tenants.sync().await;
    let public_url = settings.relay.auth.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let (console, console_line) =
        crate::serve_console::console(&settings.data_dir, &public_url, public_url.starts_with("https://"), probes)?;
    let app = app
        .merge(tenants.routes().router())
        .merge(metrics_routes(metrics))
        .merge(openapi_routes(Deployment::Serve, Some(&public_url)))
        .merge(Arc::new(console).routes());
    let app = match oauth_app {
        Some(oauth) => {
            // HubSpot's app webhooks for every connected portal, signed with the app's secret(s).
            let secrets = layer.hubspot_client_secrets.clone().unwrap_or_else(|| vec![oauth.client_secret.clone()]);
            let routes = tenants.routes();
            let hooks = AppWebhooks::new(
                secrets,
                &public_url,
                Arc::new(routes.clone()),
                Arc::new(routes),
                settings.relay.max_body_bytes,
            )
            .map_err(|e| format!("configuration error: {e}"))?;
            let install = crate::serve_oauth::install(oauth, &public_url, settings.data_dir.clone(), layer.clone())?;
            app.merge(Arc::new(install).routes()).merge(Arc::new(hooks).routes())
        }
        None => app.merge(crate::serve_oauth::not_configured()).merge(hubrelay_http::app_webhooks::not_configured()),
    };
    let tenants_stop = Arc::new(tokio::sync::Notify::new());
    let tenants_task = tokio::spawn(tenants.run(tenants_stop.clone()));

    let stop = Arc::new(tokio::sync::Notify::new());
    let worker_stop = stop.clone();
    let worker_task = tokio::spawn(local.run(async move { worker_stop.notified().await }));

    let mut referral_lines = crate::serve_referrals::banner_lines(addr, &partners.lines);
    referral_lines.extend(advocate_sandbox.as_ref().map(|(_, line)| line.clone()));
    referral_lines.push(console_line);
    print_banner(&settings, addr, &referral_lines, &tenant_lines, &hubspot_line, &modes, own_token.as_ref());
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signalled = stopping.clone();
    let limits = Limits { max_connections: settings.max_connections, ..Limits::default() };
    let server = transport::serve(listener, app, limits, async move {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!(
            "hubrelay: stopping: finishing the requests in flight (at most {} s; Ctrl-C again to stop now)",
            SHUTDOWN_GRACE.as_secs()
        );
        signalled.notify_one();
    });
    // Requests still waiting on HubSpot after the grace period are cut off: their senders got no answer
    // and retry, and anything already accepted is on the retry queue.
    let served = tokio::select! {
        served = server => served.map_err(|e| format!("server error: {e}")),
        _ = async {
            stopping.notified().await;
            tokio::select! {
                _ = tokio::time::sleep(SHUTDOWN_GRACE) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        } => Ok(()),
    };
    // Let the worker finish its tick, within the same grace: whatever it settled is stored, the rest stays
    // queued for the next start (its store writes are one transaction per tick).
    stop.notify_one();
    tenants_stop.notify_one();
    tokio::select! {
        _ = async { let _ = tokio::join!(worker_task, tenants_task); } => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => eprintln!("hubrelay: the retry worker's tick was cut off; its messages stay queued"),
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("hubrelay: stopped");
    served
}

/// A relay's portal: its HubSpot client, the budget its inline path and worker share, and its tenant's counters.
pub(crate) struct Portal {
    /// The tenant whose portal it is.
    pub tenant: String,
    pub client: HubSpotClient,
    pub limiter: Arc<RateLimiter>,
    pub metrics: Metrics,
}

/// One relay of this process — the default tenant's or a tenant's — over its own store: its routes, and its
/// retry worker, not started yet.
pub(crate) struct LocalRelay {
    pub app: axum::Router,
    pub worker: LocalWorker,
    /// Its portal's client within the portal's budget, for the console's check of the portal.
    pub portal: HubSpotClient,
}

/// Wires a relay: `hubspot` (its portal's client) and `limiter` (the portal's budget) for both paths — the
/// worker waits for a rate-limit slot as long as it takes; the inline path, with a sender waiting, waits at most
/// [`INLINE_SLOT_WAIT`] and queues the lead instead (the worker then sends it in a batch of up to 100) — the
/// inline micro-batching at the inline path's share of the budget, the worker on the process's `lane`, and a queue
/// that wakes the worker whenever the request path enqueues.
pub(crate) fn local_relay(
    settings: &RelaySettings,
    store: Arc<SqliteStore>,
    portal: Portal,
    notifications: Notifications,
    locks: Arc<ContactLocks>,
    partners: PartnerClients,
    lane: Arc<tokio::sync::Semaphore>,
) -> Result<LocalRelay, String> {
    let Portal { tenant, client: hubspot, limiter, metrics } = portal;
    let hubspot = hubspot.with_metrics(metrics.clone());
    let inline: Arc<dyn HubSpot> = Arc::new(hubspot.clone().with_rate_limiter(limiter.clone(), Some(INLINE_SLOT_WAIT)));
    // The worker's store work takes turns with the process's other workers; its HubSpot and partner calls do not.
    let turn = Turn::new(lane);
    let portal = hubspot.clone().with_rate_limiter(limiter.clone(), None);
    let worker_client: Arc<dyn HubSpot> = Arc::new(hubspot.with_rate_limiter(limiter, None));
    let worker_client: Arc<dyn HubSpot> = Arc::new(OutsideTurn::new(worker_client, turn.clone()));
    let mut relay = Relay::new(settings, Stores::new(store.clone(), store.clone()));
    if let Some(target) = &settings.outbound {
        let sender = hubrelay_clients::outbound::WebhookOutbound::new(target.clone(), &tenant)?;
        relay = relay.with_outbound(Arc::new(sender));
    }
    if let Some(a) = &settings.referral.advocate {
        let client = hubrelay_clients::advocate::AdvocateClient::new(
            &a.base_url,
            &a.tenant_alias,
            &a.api_key,
            settings.hubspot_timeout,
        )
        .map_err(|e| format!("impact.com Advocate: {}", e.message))?;
        relay = relay.with_advocate(Arc::new(client));
    }
    let relay = relay
        .with_metrics(metrics)
        .with_notifications(notifications)
        .with_contact_locks(locks)
        .with_personal_data(store.clone())
        .with_inline_batching(inline_call_interval(settings.hubspot_rate_limit_per_10s));
    let extole = partners.0.map(|e| Arc::new(ExtoleOutsideTurn(e, turn.clone())) as Arc<dyn Extole>);
    let impact = partners.1.map(|i| Arc::new(ImpactOutsideTurn(i, turn.clone())) as Arc<dyn Impact>);
    let worker = relay.retry_worker(worker_client, extole, impact).with_write_intents(store.clone());
    let worker =
        LocalWorker::new((*store).clone(), worker).with_turn(turn).with_retention(settings.personal_data_retention);
    let relay = relay.with_queue(Arc::new(WakingQueue::new(store, worker.waker())));
    let config_error = |e| format!("configuration error: {e}");
    let app = lead_routes(Arc::new(relay.lead_service(inline.clone()).map_err(config_error)?))
        .merge(relay.update_routes(inline).map_err(config_error)?)
        .merge(relay.referral_routes().map_err(config_error)?);
    Ok(LocalRelay { app, worker, portal })
}

/// How long Ctrl-C waits for requests in flight (an inline HubSpot call takes at most its timeout).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How long an inline call waits for a slot under `HUBSPOT_RATE_LIMIT_PER_10S` before the lead is queued.
const INLINE_SLOT_WAIT: Duration = Duration::from_millis(100);

fn service_modes(settings: &ServeSettings) -> String {
    let a = &settings.relay.auth;
    let mut modes = Vec::new();
    if !a.api_tokens.is_empty() {
        modes.push(format!("bearer token ({} valid)", a.api_tokens.len()));
    }
    if !a.webhook_secrets.is_empty() {
        modes.push(format!("Standard Webhooks signatures ({} secrets)", a.webhook_secrets.len()));
    }
    if !a.hubspot_client_secrets.is_empty() {
        modes.push("HubSpot v3 signatures".to_string());
    }
    modes.join(", ")
}

/// The inline path's share of the portal's budget: half, so the retry worker always has the other half
/// to drain its queue, however many leads arrive.
const INLINE_BUDGET_SHARE: u32 = 2;

/// However large the budget, inline calls start at most this often: under load each call then carries
/// every lead of the last 5 ms (at 2,000 leads/s about 10, 0.1 calls per lead) instead of a handful, which
/// spares HubSpot's CPU and ours; a lone lead is still sent at once, and no answer waits longer than this.
const MIN_INLINE_CALL_INTERVAL: Duration = Duration::from_millis(5);

/// The least time between two inline calls: one per `10 s / (limit / 2)` (200 ms at 100 calls per 10 s),
/// never less than [`MIN_INLINE_CALL_INTERVAL`].
fn inline_call_interval(limit_per_10s: u32) -> Duration {
    (Duration::from_secs(10) * INLINE_BUDGET_SHARE / limit_per_10s.max(1)).max(MIN_INLINE_CALL_INTERVAL)
}

/// The token `serve` made for itself, and whether this run made it or found it in the data dir.
struct LocalToken {
    token: String,
    generated: bool,
}

/// The local token: kept in the data dir so restarts keep working with the same curl.
fn local_token(data_dir: &Path) -> Result<LocalToken, String> {
    let path = data_dir.join("api-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(LocalToken { token: t, generated: false });
        }
    }
    let token = format!("local-{}", uuid::Uuid::new_v4().simple());
    write_secret(&path, &token)?;
    Ok(LocalToken { token, generated: true })
}

/// A secret kept in the data dir across restarts: read it, or make one (`{prefix}-<random>`) and keep it. Two
/// processes making it at once agree: the file is created exclusively, and the loser reads the winner's.
pub(crate) fn kept_secret(path: &Path, prefix: &str) -> Result<String, String> {
    let read = || std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(kept) = read() {
        return Ok(kept);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let secret = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    match create_owner_only(path, &secret) {
        Ok(()) => Ok(secret),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read().ok_or_else(|| format!("{} exists but is empty", path.display()))
        }
        Err(e) => Err(format!("cannot write {}: {e}", path.display())),
    }
}

/// Write a secret readable by its owner only.
fn write_secret(path: &Path, secret: &str) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    create_owner_only(path, secret).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Where the sandbox token is, masked (it is in the data dir when `serve` made it).
fn sandbox_token_line(data_dir: &Path, token: &str) -> String {
    let file = data_dir.join("sandbox-token");
    match std::fs::read_to_string(&file) {
        Ok(kept) if kept.trim() == token => format!("{} in {}", mask_token(token), file.display()),
        _ => format!("{} from HUBRELAY_SANDBOX_TOKEN", mask_token(token)),
    }
}

/// An exclusive lock on the data dir for as long as the returned file is open (the OS drops it when the
/// process dies, `kill -9` included).
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, String> {
    let path = data_dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another `hubrelay serve` is using the data dir {} (stop it, or pass a different --data-dir)",
            data_dir.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// The banner's ready-to-paste lead (the chat-widget shape).
const SAMPLE_LEAD: &str = r#"{"email":"jane@example.com","first_name":"Jane","last_name":"Doe","phone":"+1 555 0100","vehicle_of_interest":"2026 Model X","budget_range":"40-50k","priority":"high","origin_channel":"chat_widget","dealership":{"name":"Lakeside","slug":"lakeside"}}"#;

fn print_banner(
    settings: &ServeSettings,
    addr: std::net::SocketAddr,
    referral_lines: &[String],
    tenant_lines: &[String],
    hubspot: &str,
    modes: &str,
    local: Option<&LocalToken>,
) {
    let url = format!("http://{addr}");
    println!("hubrelay listening on {url}");
    println!("  POST {url}/v1/leads  (mapping profile: {})", settings.relay.mapping.name);
    println!("  POST {url}{STATUS_PATH}  POST {url}{ACTIVITIES_PATH}");
    referral_lines.iter().for_each(|l| println!("  {l}"));
    tenant_lines.iter().for_each(|l| println!("  {l}"));
    println!("  {hubspot}");
    println!("  auth: {modes}");
    println!("  data: {}", settings.data_dir.join("hubrelay.db").display());
    let relay = &settings.relay;
    println!(
        "  retries: {} (jitter ±{:.0} %); HubSpot calls at most {} per 10 s",
        format_schedule(&relay.retry_schedule),
        relay.retry_jitter.fraction * 100.0,
        relay.hubspot_rate_limit_per_10s
    );
    // Secrets stay out of the banner (terminals get shared and scrolled back): the curl reads the token file.
    let auth_header = match local {
        Some(LocalToken { token, generated }) => {
            let how = if *generated { "generated, stored in" } else { "kept in" };
            let file = settings.data_dir.join("api-token");
            println!("  local API token ({how} {}): {}", file.display(), mask_token(token));
            format!("Authorization: Bearer $(cat {})", file.display())
        }
        None => "Authorization: Bearer $HUBRELAY_API_TOKEN".to_string(),
    };
    println!("try:");
    println!(
        "  curl -sS {url}/v1/leads -H \"{auth_header}\" -H 'Content-Type: application/json' \\\n    -d '{SAMPLE_LEAD}'"
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

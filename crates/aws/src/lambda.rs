//! Wiring for the Lambda binaries: read settings and secrets once at init (cold start), build the AWS
//! clients and the service, and run it: a router behind API Gateway ([`run_http`]: `lead-captured`,
//! `status-update`, `activity`, `referral-event`, `oauth-install`, `operator-console`) or the SQS handler
//! ([`run_retry_worker`]).
//!
//! The runtimes are linked here, not in the binaries, so that every function has the same dependency graph:
//! `sam build` builds each function alone, and with identical graphs the shared crates compile once for all
//! seven (`scripts/check-layers` keeps it so).

use std::sync::Arc;

use crate::emf::Emf;
use axum::Router;
use hubrelay_clients::notify::{notifications, Sending, REQUEST_BUDGET, WORKER_BUDGET};
use hubrelay_clients::oauth::{OAuthApp, OAuthTokens};
use hubrelay_clients::HubSpotClient;
use hubrelay_core::budget::{budget_key, CallBudget, DailyCalls, Lane};
use hubrelay_core::config::{AwsResources, ConfigError, HubSpotTarget, Layer, RelaySettings};
use hubrelay_core::domain::FunctionName;
use hubrelay_core::hubspot::version::ApiVersion;
use hubrelay_core::hubspot::HubSpot;
use hubrelay_core::metrics::Metrics;
use hubrelay_core::sealed::SealingKey;
use hubrelay_core::tenant::{install_signing_key, OAuthAppSettings};
use hubrelay_http::oauth_install::OAuthInstall;
use hubrelay_http::openapi::{openapi_routes, Deployment};
use hubrelay_http::tenant_routes::tenant_routes;
use hubrelay_http::{common_routes, lead_routes, update_routes, Relay, Stores, ACTIVITIES_PATH, STATUS_PATH};

use crate::dynamodb::DynamoIdempotencyStore;
use crate::dynamodb_budget::{DynamoCallBudget, DynamoDailyCalls};
use crate::dynamodb_oauth::DynamoSharedToken;
use crate::dynamodb_retention::RetentionSweep;
use crate::dynamodb_tenants::DynamoTenants;
use crate::lambda_tenants::{
    AwsInstallRegistry, AwsPortals, Build, TenantApps, TenantCache, TenantParts, TenantWorker,
};
use crate::sdk::{sdk_config, secrets_from_lookup};
use crate::sqs::SqsRetryQueue;
use crate::sqs_worker::SqsWorker;
use hubrelay_http::app_webhooks::AppWebhooks;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Aws(String),
    #[error("{0} must be set")]
    Missing(&'static str),
    #[error("{TENANT_SECRETS_KEY} is not a tenant-secrets key (64 hex digits)")]
    TenantKey,
    #[error("HUBSPOT_TIMEOUT_SECS: {0} s leaves a request function no time to queue the event (its timeout is {FUNCTION_TIMEOUT_SECS} s): at most {MAX_INLINE_TIMEOUT_SECS} s")]
    InlineTimeout(u64),
}

/// The request functions' timeout (`template.yaml`, Globals).
pub const FUNCTION_TIMEOUT_SECS: u64 = 20;
/// The longest inline HubSpot call that still leaves a request function time to queue the event when HubSpot is
/// slow (the store writes and the SQS send take well under 5 s; a parked event's notice takes at most
/// `hubrelay_clients::notify::REQUEST_BUDGET`, 2 s, more).
pub const MAX_INLINE_TIMEOUT_SECS: u64 = FUNCTION_TIMEOUT_SECS - 5;

/// Refuses an inline HubSpot timeout the function's own timeout would cut off before the event is queued.
pub fn check_inline_timeout(timeout: std::time::Duration) -> Result<(), InitError> {
    match timeout.as_secs() {
        s if s > MAX_INLINE_TIMEOUT_SECS => Err(InitError::InlineTimeout(s)),
        _ => Ok(()),
    }
}

/// Settings that may live in SSM (secrets, and the public URL the stack writes there); each may name an SSM parameter through
/// `<NAME>_SSM_PARAMETER`.
const SECRETS: [&str; 14] = [
    "HUBSPOT_TOKEN",
    "HUBSPOT_REFRESH_TOKEN",
    "HUBRELAY_API_TOKENS",
    "HUBRELAY_WEBHOOK_SECRETS",
    "HUBSPOT_CLIENT_SECRET",
    "HUBRELAY_PUBLIC_URL",
    "EXTOLE_API_TOKEN",
    "EXTOLE_WEBHOOK_SECRETS",
    "IMPACT_AUTH_TOKEN",
    "IMPACT_WEBHOOK_SECRETS",
    "HUBRELAY_NOTIFY_SECRET",
    "HUBRELAY_OUTBOUND_SECRET",
    "IMPACT_ADVOCATE_API_KEY",
    TENANT_SECRETS_KEY,
];

/// The stack's tenant-secrets key (64 hex digits, an SSM SecureString under the stack's KMS key): with it,
/// the functions serve the tenants of the registry too (`/t/{tenant}/…`).
pub const TENANT_SECRETS_KEY: &str = "HUBRELAY_TENANT_SECRETS_KEY";

/// What every function starts from, read once at init: the settings (each secret resolved from SSM when
/// only `<NAME>_SSM_PARAMETER` is set), the stack's table and queues, and the relay built on them.
struct Init {
    layer: Layer,
    settings: RelaySettings,
    resources: AwsResources,
    table: DynamoIdempotencyStore,
    queue: SqsRetryQueue,
    relay: Relay,
    tenants: Option<DynamoTenants>,
    /// Signs OAuth install links and states (derived from the tenant-secrets key).
    install_key: Option<Vec<u8>>,
    /// The function's counters (each tenant's scoped to it), written as EMF after each invocation.
    emf: Arc<Emf>,
}

/// `lambda`: the function's name, the `Function` dimension of its HubSpot calls' metrics.
async fn init(lambda: &'static str) -> Result<Init, InitError> {
    let sdk = sdk_config().await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let secrets = secrets_from_lookup(&ssm, &SECRETS, |var| std::env::var(var).ok())
        .await
        .map_err(|e| InitError::Aws(e.to_string()))?;
    let env = |k: &str| secrets.get(k).cloned().or_else(|| std::env::var(k).ok());
    let layer = Layer::from_env(&env)?;
    let settings = RelaySettings::from_layer(&layer)?;
    check_inline_timeout(settings.hubspot_timeout)?;
    let resources = AwsResources::from_layer(&layer).map_err(InitError::Missing)?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = DynamoIdempotencyStore::new(dynamodb.clone(), resources.idempotency_table.clone());
    // Every message is sealed with its person's key (an erasure destroys the key: `crate::sqs_seal`).
    let queue = SqsRetryQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        resources.retry_queue_url.clone(),
        resources.dlq_url.clone(),
    )
    .with_sealer(crate::sqs_seal::MessageSealer::new(table.clone()));
    let (tenants, install_key) = match env(TENANT_SECRETS_KEY).filter(|k| !k.trim().is_empty()) {
        Some(hex) => {
            let key = SealingKey::from_hex(&hex).ok_or(InitError::TenantKey)?;
            let registry = DynamoTenants::new(dynamodb.clone(), resources.idempotency_table.clone(), Arc::new(key));
            (Some(registry), Some(install_signing_key(&hex)))
        }
        None => (None, None),
    };
    let metrics = Metrics::with_samples();
    let emf = Arc::new(Emf::from_env(metrics.clone(), lambda));
    let lane = if lambda == "retry-worker" { Lane::Worker } else { Lane::Inline };
    let notifications = notifications(settings.notify.as_ref(), hubrelay_core::domain::DEFAULT_TENANT, sending(lane))
        .map_err(InitError::Aws)?;
    // HubSpot's `contact.privacyDeletion` erases the person from the table (and their messages' keys).
    let relay = Relay::new(&settings, Stores::new(Arc::new(table.clone()), Arc::new(queue.clone())))
        .with_metrics(metrics)
        .with_notifications(notifications)
        .with_personal_data(Arc::new(table.clone()));
    let relay = with_outbound(relay, &settings, hubrelay_core::domain::DEFAULT_TENANT).map_err(InitError::Aws)?;
    Ok(Init { layer, settings, resources, table, queue, relay, tenants, install_key, emf })
}

/// Outbound contact sync, when `HUBRELAY_OUTBOUND_URL` is set: its sender, naming `tenant` in the bodies.
/// …and the impact.com Advocate participant sync, when `IMPACT_ADVOCATE_*` are set.
pub(crate) fn with_outbound(relay: Relay, settings: &RelaySettings, tenant: &str) -> Result<Relay, String> {
    let relay = match &settings.outbound {
        Some(target) => {
            relay.with_outbound(Arc::new(hubrelay_clients::outbound::WebhookOutbound::new(target.clone(), tenant)?))
        }
        None => relay,
    };
    Ok(match &settings.referral.advocate {
        Some(a) => {
            let client = hubrelay_clients::advocate::AdvocateClient::new(
                &a.base_url,
                &a.tenant_alias,
                &a.api_key,
                settings.hubspot_timeout,
            )
            .map_err(|e| e.message)?;
            relay.with_advocate(Arc::new(client))
        }
        None => relay,
    })
}

/// How a function's notices leave: awaited (a Lambda is frozen once it answers), within what its timeout leaves.
pub(crate) fn sending(lane: Lane) -> Sending {
    match lane {
        Lane::Inline => Sending::Within(REQUEST_BUDGET),
        Lane::Worker => Sending::Within(WORKER_BUDGET),
    }
}

/// How long the worker waits for a call from the shared budget before it reschedules the message (not counted
/// as an attempt). Request functions wait for none: a sender is waiting, so the event is queued instead.
pub const WORKER_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How a function's HubSpot clients are made: the real API (a Lambda never runs the embedded sandbox), every
/// call taken from the budget all the stack's functions share for the credential (in the idempotency table),
/// an OAuth portal's access token shared through the table too.
#[derive(Clone)]
pub struct HubSpotWiring {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    lane: Lane,
    timeout: std::time::Duration,
    api_version: ApiVersion,
    /// Where its clients count their calls.
    metrics: Metrics,
}

impl HubSpotWiring {
    /// A client of `target` with a budget of `rate_limit_per_10s`; `oauth` finishes an OAuth portal's tokens.
    pub fn client(
        &self,
        target: &HubSpotTarget,
        rate_limit_per_10s: u32,
        daily_budget: Option<u32>,
        oauth: impl FnOnce(OAuthTokens) -> OAuthTokens,
    ) -> Result<Arc<dyn HubSpot>, InitError> {
        Ok(Arc::new(self.hubspot_client(target, rate_limit_per_10s, daily_budget, oauth)?))
    }

    /// [`Self::client`] as the concrete client (the console reads its daily count).
    pub fn hubspot_client(
        &self,
        target: &HubSpotTarget,
        rate_limit_per_10s: u32,
        daily_budget: Option<u32>,
        oauth: impl FnOnce(OAuthTokens) -> OAuthTokens,
    ) -> Result<HubSpotClient, InitError> {
        let budget = |secret: &str| -> Arc<dyn CallBudget> {
            Arc::new(DynamoCallBudget::new(
                self.dynamodb.clone(),
                self.table.clone(),
                budget_key(secret),
                rate_limit_per_10s,
            ))
        };
        let max_wait = match self.lane {
            Lane::Inline => std::time::Duration::ZERO,
            Lane::Worker => WORKER_BUDGET_WAIT,
        };
        let daily = |secret: &str| -> Option<Arc<dyn DailyCalls>> {
            let limit = daily_budget?;
            Some(Arc::new(DynamoDailyCalls::new(self.dynamodb.clone(), &self.table, &budget_key(secret), limit)))
        };
        let (client, secret) = match target {
            HubSpotTarget::Api { base_url, token } => (
                HubSpotClient::new(base_url, token, self.timeout)
                    .map_err(|e| InitError::Aws(e.to_string()))?
                    .with_shared_budget(budget(token), self.lane, max_wait),
                token,
            ),
            HubSpotTarget::OAuth { base_url, client_id, client_secret, refresh_token } => {
                let shared =
                    DynamoSharedToken::new(self.dynamodb.clone(), &self.table, client_id, client_secret, refresh_token);
                let app = OAuthApp {
                    client_id: client_id.clone(),
                    client_secret: client_secret.clone(),
                    base_url: base_url.clone(),
                };
                let tokens = oauth(OAuthTokens::new(app, refresh_token.clone()).shared_through(Arc::new(shared)));
                let client = HubSpotClient::new(base_url, "", self.timeout)
                    .map_err(|e| InitError::Aws(e.to_string()))?
                    .with_oauth(Arc::new(tokens))
                    .with_shared_budget(budget(refresh_token), self.lane, max_wait);
                // A request function answers within its timeout: the token's time counts against the call's.
                let client = match self.lane {
                    Lane::Inline => client.with_oauth_deadline(self.timeout),
                    Lane::Worker => client,
                };
                (client, refresh_token)
            }
            HubSpotTarget::Sandbox => {
                return Err(InitError::Missing("HUBSPOT_TOKEN or HUBSPOT_REFRESH_TOKEN (or their _SSM_PARAMETER)"))
            }
        };
        let client = match daily(secret) {
            Some(calls) => client.with_daily_budget(calls),
            None => client,
        };
        Ok(client.with_api_version(self.api_version.clone()).with_metrics(self.metrics.clone()))
    }

    /// The same wiring, its clients counting for `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> HubSpotWiring {
        HubSpotWiring { metrics: self.metrics.for_tenant(tenant), ..self.clone() }
    }

    /// The counters its clients count in (a relay of the same tenant counts there too).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Which path its clients serve: a request function's or the worker's.
    pub fn lane(&self) -> Lane {
        self.lane
    }
}

impl Init {
    fn wiring(&self, lane: Lane) -> HubSpotWiring {
        HubSpotWiring {
            dynamodb: self.table.client().clone(),
            table: self.resources.idempotency_table.clone(),
            lane,
            timeout: self.settings.hubspot_timeout,
            api_version: self.settings.hubspot_api_version.clone(),
            metrics: self.relay.metrics().clone(),
        }
    }

    fn hubspot_client(&self, lane: Lane) -> Result<Arc<dyn HubSpot>, InitError> {
        // The default portal's refresh token refused: the same alarm as a tenant's (TenantNeedsReauthAlarm).
        let alarm = |tokens: OAuthTokens| {
            tokens.on_revoked(Arc::new(|e| {
                log_needs_reauth(
                    "default",
                    e,
                    "HubSpot refused the stack's refresh token (HubSpotRefreshTokenParameter): put a new one in the parameter and cold-start the functions; events stay queued",
                );
            }))
        };
        self.wiring(lane).client(&self.settings.hubspot, self.settings.hubspot_rate_limit_per_10s, None, alarm)
    }

    /// The registry's tenants, each built by `build` (`None` without a tenant-secrets key).
    fn tenants<T: Clone + Send + Sync + 'static>(
        &self,
        lane: Lane,
        build: Build<T>,
    ) -> Result<Option<TenantCache<T>>, InitError> {
        let Some(registry) = &self.tenants else { return Ok(None) };
        Ok(Some(TenantCache::new(
            registry.clone(),
            self.layer.clone(),
            OAuthAppSettings::from_layer(&self.layer)?,
            self.wiring(lane),
            self.table.clone(),
            self.queue.clone(),
            build,
        )))
    }

    /// `app` for the default tenant and, with tenants, `/t/{tenant}/…` built the same way for each.
    fn with_tenants(&self, app: Router, build: Build<Router>) -> Result<Router, InitError> {
        let app = match self.tenants(Lane::Inline, build)? {
            Some(tenants) => app.merge(tenant_routes(Arc::new(TenantApps(tenants)))),
            None => app,
        };
        Ok(self.emf_after_each(without_stage(app, self.resources.stage.as_deref())))
    }

    /// `app`, writing the function's EMF lines after each request.
    fn emf_after_each(&self, app: Router) -> Router {
        let emf = self.emf.clone();
        app.layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            let emf = emf.clone();
            async move {
                let response = next.run(req).await;
                emf.flush();
                response
            }
        }))
    }
}

/// What a function's `main` returns when init or the runtime fails (Lambda reports it and starts again).
pub type Error = lambda_runtime::Error;

/// Serves `app` to API Gateway (HTTP API, payload 2.0) until the runtime stops.
pub async fn run_http(app: Router) -> Result<(), Error> {
    lambda_http::run(app).await
}

/// Hands each batch from the retry queue to `worker` (`ReportBatchItemFailures`: the failed messages are
/// reported, the rest deleted), and each hourly scheduled event to its retention sweep.
pub async fn run_retry_worker(worker: SqsWorker) -> Result<(), Error> {
    use lambda_runtime::{service_fn, LambdaEvent};
    let worker = Arc::new(worker);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let worker = Arc::clone(&worker);
        async move {
            // Stop sweeping 10 s before Lambda's deadline: time to save the cursor and answer.
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default();
            let left = std::time::Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
            let deadline = std::time::Instant::now() + left.saturating_sub(std::time::Duration::from_secs(10));
            let now = time::OffsetDateTime::now_utc();
            worker.handle_invocation(event.payload, now, deadline).await.map_err(Error::from)
        }
    }))
    .await
}

/// The `lead-captured` function's router.
pub async fn lead_captured_app() -> Result<Router, InitError> {
    let init = init("lead-captured").await?;
    let service = init.relay.lead_service(init.hubspot_client(Lane::Inline)?)?;
    let build: Build<Router> = Arc::new(|parts: TenantParts| {
        let service = parts.relay.lead_service(parts.hubspot).map_err(|e| e.to_string())?;
        Ok(lead_routes(Arc::new(service)))
    });
    // The stack's OpenAPI description is served here (one small route; any function would do).
    let openapi = openapi_routes(Deployment::Aws, init.layer.public_url.as_deref());
    init.with_tenants(lead_routes(Arc::new(service)).merge(openapi), build)
}

/// The `status-update` function's router (`POST /v1/leads/status`).
pub async fn status_update_app() -> Result<Router, InitError> {
    update_app(FunctionName::StatusUpdate, STATUS_PATH).await
}

/// The `activity` function's router (`POST /v1/leads/activities`).
pub async fn activity_app() -> Result<Router, InitError> {
    update_app(FunctionName::Activity, ACTIVITIES_PATH).await
}

async fn update_app(function: FunctionName, path: &'static str) -> Result<Router, InitError> {
    let init = init(function.as_str()).await?;
    let service = init.relay.update_service(function, init.hubspot_client(Lane::Inline)?)?;
    let build: Build<Router> = Arc::new(move |parts: TenantParts| {
        let service = parts.relay.update_service(function, parts.hubspot).map_err(|e| e.to_string())?;
        Ok(update_routes(path, Arc::new(service)).merge(common_routes()))
    });
    init.with_tenants(update_routes(path, Arc::new(service)).merge(common_routes()), build)
}

/// The `retry-worker` function's handler: the same settings as `lead-captured` (it needs only the HubSpot
/// token, the mapping profile, the timeout and the retry schedule; no sender auth), the same table and
/// queues, and the partner clients of the partners configured. A tenant's messages go to that tenant's worker.
pub async fn retry_worker_app() -> Result<SqsWorker, InitError> {
    let init = init("retry-worker").await?;
    let (extole, impact) = crate::lambda_referrals::partners(&init.settings)?;
    let worker = init.relay.retry_worker(init.hubspot_client(Lane::Worker)?, extole, impact);
    // A tenant's referral actions go to its own partner accounts, never the deployment's.
    let build: Build<TenantWorker> = Arc::new(move |parts: TenantParts| {
        let (extole, impact) = crate::lambda_referrals::partners(&parts.settings).map_err(|e| e.to_string())?;
        let worker = Arc::new(parts.relay.retry_worker(parts.hubspot, extole, impact));
        Ok(TenantWorker { worker, connected: !parts.waiting_for_install, updated_at: parts.updated_at })
    });
    let sqs_worker = SqsWorker::new(worker, init.queue.clone())
        .with_emf(init.emf.clone())
        .with_settled_check(init.table.clone())
        .with_retention_sweep(Some(RetentionSweep::new(init.table.clone(), init.settings.personal_data_retention)));
    Ok(match init.tenants(Lane::Worker, build)? {
        Some(tenants) => sqs_worker.with_tenants(Arc::new(tenants)),
        None => sqs_worker,
    })
}

/// The `oauth-install` function's router (`GET /oauth/install`, `GET /oauth/callback`): a tenant's portal
/// connected through the stack's OAuth app, its refresh token stored (sealed) in the registry. It needs the
/// tenants (`HUBRELAY_TENANT_SECRETS_KEY`), the app (`HUBSPOT_CLIENT_ID`, `HUBSPOT_CLIENT_SECRET`) and the
/// stack's public URL (the redirect URL registered with the app).
pub async fn oauth_install_app() -> Result<Router, InitError> {
    let init = init("oauth-install").await?;
    let (Some(registry), Some(key)) = (init.tenants.clone(), init.install_key.clone()) else {
        return Err(InitError::Missing(TENANT_SECRETS_KEY));
    };
    let app = OAuthAppSettings::from_layer(&init.layer)?.ok_or(InitError::Missing("HUBSPOT_CLIENT_ID"))?;
    let public_url = init.layer.public_url.clone().ok_or(InitError::Missing("HUBRELAY_PUBLIC_URL"))?;
    let install = OAuthInstall::new(app, &public_url, key, Arc::new(AwsInstallRegistry(registry)), init.layer.clone());
    Ok(without_stage(Arc::new(install).routes().merge(common_routes()), init.resources.stage.as_deref()))
}

/// The `referral-event` function's router (`POST /v1/referrals/{hubspot,extole,impact}`, the same under
/// `/t/{tenant}/` with the tenant's program and partner webhook secrets, and `POST /v1/hubspot/app-webhooks`,
/// the HubSpot app's webhooks for every tenant's portal): it only verifies, splits and queues, so it needs no
/// partner credentials (the retry-worker sends), only the webhook secrets.
pub async fn referral_event_app() -> Result<Router, InitError> {
    let init = init("referral-event").await?;
    let app = init.relay.referral_routes()?.merge(common_routes());
    let build: Build<Router> = Arc::new(|parts: TenantParts| parts.relay.referral_routes().map_err(|e| e.to_string()));
    let (Some(registry), Some(tenants)) = (init.tenants.clone(), init.tenants(Lane::Inline, build)?) else {
        let app = app.merge(hubrelay_http::app_webhooks::not_configured());
        return Ok(init.emf_after_each(without_stage(app, init.resources.stage.as_deref())));
    };
    let tenants: Arc<TenantApps> = Arc::new(TenantApps(tenants));
    let app = app.merge(tenant_routes(tenants.clone()));
    let app = match (OAuthAppSettings::from_layer(&init.layer)?, &init.layer.public_url) {
        (Some(oauth), Some(public_url)) => {
            let secrets = init.layer.hubspot_client_secrets.clone().unwrap_or_else(|| vec![oauth.client_secret]);
            let portals = Arc::new(AwsPortals::new(registry));
            let hooks = AppWebhooks::new(secrets, public_url, portals, tenants, init.settings.max_body_bytes)
                .map_err(|e| InitError::Aws(format!("app webhooks: {e}")))?;
            app.merge(Arc::new(hooks).routes())
        }
        _ => app.merge(hubrelay_http::app_webhooks::not_configured()),
    };
    Ok(init.emf_after_each(without_stage(app, init.resources.stage.as_deref())))
}

/// The operators' tokens (`name:token,…`; a name may come twice during a rotation), read from SSM at init.
pub const CONSOLE_OPERATORS: &str = "HUBRELAY_CONSOLE_OPERATORS";

/// The `console` function's router: the operators' console (`/console/…`, its own HTTP API) over the stack's
/// table and queues. It needs no HubSpot credential and no sender's token: only the operators' tokens, the
/// table and the queues, and the tenant-secrets key when the stack has tenants.
pub async fn console_app() -> Result<Router, InitError> {
    let sdk = sdk_config().await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    // The HubSpot credentials only when the template gives them (for checking the stack's own portal).
    let names =
        [CONSOLE_OPERATORS, TENANT_SECRETS_KEY, "HUBSPOT_TOKEN", "HUBSPOT_REFRESH_TOKEN", "HUBSPOT_CLIENT_SECRET"];
    let secrets = secrets_from_lookup(&ssm, &names, |var| std::env::var(var).ok())
        .await
        .map_err(|e| InitError::Aws(e.to_string()))?;
    let env = |k: &str| secrets.get(k).cloned().or_else(|| std::env::var(k).ok());
    let spec = env(CONSOLE_OPERATORS).filter(|v| !v.trim().is_empty()).ok_or(InitError::Missing(CONSOLE_OPERATORS))?;
    let operators = hubrelay_console::auth::parse_operators(&spec)
        .map_err(|e| InitError::Aws(format!("{CONSOLE_OPERATORS}: {e}")))?;
    let layer = Layer::from_env(&env)?;
    let resources = AwsResources::from_layer(&layer).map_err(InitError::Missing)?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = DynamoIdempotencyStore::new(dynamodb.clone(), resources.idempotency_table.clone());
    let tenants = match env(TENANT_SECRETS_KEY).filter(|k| !k.trim().is_empty()) {
        Some(hex) => {
            let key = SealingKey::from_hex(&hex).ok_or(InitError::TenantKey)?;
            Some(DynamoTenants::new(dynamodb.clone(), resources.idempotency_table.clone(), Arc::new(key)))
        }
        None => None,
    };
    // Checking a portal: its clients as the functions make them, every call within the portal's shared budget.
    let stack = RelaySettings::from_layer(&layer)?;
    let wiring = HubSpotWiring {
        dynamodb: dynamodb.clone(),
        table: resources.idempotency_table.clone(),
        lane: Lane::Inline,
        timeout: stack.hubspot_timeout,
        api_version: stack.hubspot_api_version.clone(),
        metrics: Metrics::new(),
    };
    let portals = crate::console::PortalAccess {
        wiring,
        base: layer.clone(),
        stack: (stack.hubspot != HubSpotTarget::Sandbox).then_some(stack),
        oauth: OAuthAppSettings::from_layer(&layer)?,
    };
    let backend = crate::console::AwsConsole::new(
        table.clone(),
        aws_sdk_sqs::Client::new(&sdk),
        &resources.dlq_url,
        &resources.retry_queue_url,
        tenants,
    )
    .with_portals(portals);
    let audit = crate::console::DynamoAudit::new(table.clone());
    // Sessions are signed with a key derived from the operators' tokens: every instance of the function shares
    // it with no other secret to keep, and changing the tokens ends every session.
    let gate = hubrelay_console::auth::Gate::new(operators, hubrelay_console::auth::derived_key(&spec));
    let console = hubrelay_console::Console::new(Arc::new(backend), gate, Arc::new(audit), true);
    Ok(without_stage(Arc::new(console).routes().merge(common_routes()), resources.stage.as_deref()))
}

/// An HTTP API with a named stage sends `rawPath` with the stage in front (`/prod/v1/leads`), which
/// `lambda_http` passes on as it is: strip `/$HUBRELAY_STAGE` (set by the template) so the routes match.
/// Paths without the prefix (the `$default` stage) pass unchanged.
fn without_stage(app: Router, stage: Option<&str>) -> Router {
    let Some(prefix) = stage else {
        return app;
    };
    let prefix = format!("/{prefix}");
    // A layer on a router runs after its routing: rewrite in an outer router whose only route is the fallback.
    Router::new().fallback_service(app).layer(axum::middleware::map_request(move |req: axum::extract::Request| {
        let prefix = prefix.clone();
        async move { strip_prefix(req, &prefix) }
    }))
}

fn strip_prefix(mut req: axum::extract::Request, prefix: &str) -> axum::extract::Request {
    let Some(pq) = req.uri().path_and_query() else { return req };
    let rest = match pq.as_str().strip_prefix(prefix) {
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        Some(rest) if rest.is_empty() || rest.starts_with('?') => format!("/{rest}"),
        _ => return req,
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = rest.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// The log line `TenantNeedsReauthAlarm` counts: its metric filters match `$.fields.alarm` and take the
/// `Tenant` dimension from `$.fields.tenant` (the JSON logs of [`init_json_logs`]).
pub(crate) fn log_needs_reauth(tenant: &str, error: &dyn std::fmt::Display, message: &str) {
    tracing::error!(tenant, error = %error, alarm = "TenantNeedsReauth", "{message}");
}

/// JSON logs for CloudWatch; levels from `RUST_LOG` (default info), as `level` or `target=level,...`
/// directives: `Targets` takes those without EnvFilter's regex engine, which would add to every bootstrap.
pub fn init_json_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().json().without_time())
        .with(filter)
        .try_init();
}

/// `RUST_LOG` as a filter; unset, empty or unreadable means `info` (a typo must not silence the logs).
fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::filter::Targets {
    rust_log
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO))
}

#[cfg(test)]
mod tests {
    use super::{check_inline_timeout, log_filter, strip_prefix};
    use tracing::Level;

    #[test]
    fn the_inline_hubspot_call_leaves_the_function_time_to_queue() {
        assert!(check_inline_timeout(std::time::Duration::from_secs(10)).is_ok());
        assert!(check_inline_timeout(std::time::Duration::from_secs(15)).is_ok());
        let e = check_inline_timeout(std::time::Duration::from_secs(16)).unwrap_err().to_string();
        assert!(e.starts_with("HUBSPOT_TIMEOUT_SECS: 16 s leaves") && e.contains("at most 15 s"), "{e}");
    }

    #[test]
    fn the_needs_reauth_line_has_the_fields_the_alarms_metric_filters_read() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        // The layer init_json_logs installs, writing here.
        let subscriber = tracing_subscriber::fmt().json().without_time().with_writer(move || writer.clone()).finish();
        tracing::subscriber::with_default(subscriber, || {
            super::log_needs_reauth("acme", &"invalid_grant", "reconnect it")
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        // template.yaml: FilterPattern `{ $.fields.alarm = "TenantNeedsReauth" }`, dimension `$.fields.tenant`.
        assert_eq!(line["fields"]["alarm"], "TenantNeedsReauth", "{text}");
        assert_eq!(line["fields"]["tenant"], "acme", "{text}");
        assert_eq!(line["level"], "ERROR");
    }

    #[test]
    fn rust_log_sets_the_levels_and_anything_unreadable_means_info() {
        let f = log_filter(Some("warn,hubrelay=debug"));
        assert!(f.would_enable("hubrelay_core::worker", &Level::DEBUG));
        assert!(!f.would_enable("aws_smithy_runtime", &Level::INFO));
        assert!(f.would_enable("aws_smithy_runtime", &Level::WARN));
        for unreadable in [None, Some(""), Some("hubrelay=loud")] {
            let f = log_filter(unreadable);
            assert!(f.would_enable("hubrelay", &Level::INFO), "{unreadable:?}");
            assert!(!f.would_enable("hubrelay", &Level::DEBUG), "{unreadable:?}");
        }
    }

    fn path(uri: &str) -> String {
        let req = axum::extract::Request::builder().uri(uri).body(axum::body::Body::empty()).unwrap();
        strip_prefix(req, "/prod").uri().to_string()
    }

    #[test]
    fn the_stage_prefix_is_stripped_only_when_present() {
        assert_eq!(path("/prod/v1/leads"), "/v1/leads");
        assert_eq!(path("/prod/v1/leads?x=1"), "/v1/leads?x=1");
        assert_eq!(path("/v1/leads"), "/v1/leads");
        assert_eq!(path("/production/v1/leads"), "/production/v1/leads");
        assert_eq!(path("/prod"), "/");
    }
}

//! Wiring for the Lambda binaries: read settings and secrets once at init (cold start), build the AWS
//! clients and the service, hand back a router for `lambda_http::run`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;

use crate::aws::{sdk_config, secret_from_env};
use crate::config::{ConfigError, HubSpotTarget, Layer, RelaySettings};
use crate::domain::RetrySchedule;
use crate::hubspot::HubSpotClient;
use crate::store::dynamodb::DynamoIdempotencyStore;
use crate::store::sqs::SqsRetryQueue;

use super::leads::{LeadService, LeadServiceParts};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Aws(String),
    #[error("{0} must be set")]
    Missing(&'static str),
}

/// Settings that may live in SSM (secrets, and the public URL the stack writes there); each may name an SSM parameter through
/// `<NAME>_SSM_PARAMETER`.
const SECRETS: [&str; 5] = [
    "HUBSPOT_TOKEN",
    "HUBRELAY_API_TOKENS",
    "HUBRELAY_WEBHOOK_SECRETS",
    "HUBSPOT_CLIENT_SECRET",
    "HUBRELAY_PUBLIC_URL",
];

fn required(name: &'static str) -> Result<String, InitError> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or(InitError::Missing(name))
}

/// The `lead-captured` function's router.
pub async fn lead_captured_app() -> Result<Router, InitError> {
    let sdk = sdk_config().await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let mut secrets = HashMap::new();
    for name in SECRETS {
        if let Some(v) = secret_from_env(&ssm, name).await.map_err(|e| InitError::Aws(e.to_string()))? {
            secrets.insert(name, v);
        }
    }
    let env = |k: &str| secrets.get(k).cloned().or_else(|| std::env::var(k).ok());
    let settings = RelaySettings::from_layer(&Layer::from_env(&env)?)?;
    let (base_url, token) = match &settings.hubspot {
        HubSpotTarget::Api { base_url, token } => (base_url.clone(), token.clone()),
        HubSpotTarget::Sandbox => return Err(InitError::Missing("HUBSPOT_TOKEN (or HUBSPOT_TOKEN_SSM_PARAMETER)")),
    };
    let hubspot =
        HubSpotClient::new(&base_url, &token, settings.hubspot_timeout).map_err(|e| InitError::Aws(e.to_string()))?;
    let table = required("HUBRELAY_IDEMPOTENCY_TABLE")?;
    let queue_url = required("HUBRELAY_RETRY_QUEUE_URL")?;
    let dlq_url = required("HUBRELAY_DLQ_URL")?;
    let dynamo = Arc::new(DynamoIdempotencyStore::new(aws_sdk_dynamodb::Client::new(&sdk), table));
    let service = LeadService::new(LeadServiceParts {
        auth: settings.authenticator()?,
        mapping: settings.mapping.clone(),
        hubspot: Arc::new(hubspot),
        idempotency: dynamo.clone(),
        events: dynamo.clone(),
        versions: dynamo,
        queue: Arc::new(SqsRetryQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url, dlq_url)),
        schedule: RetrySchedule::default(),
        max_body_bytes: settings.max_body_bytes,
    });
    Ok(super::lead_routes(Arc::new(service)))
}

/// JSON logs for CloudWatch; level from `RUST_LOG` (default info).
pub fn init_json_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).without_time().try_init();
}

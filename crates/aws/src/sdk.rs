//! AWS plumbing shared by the Lambdas: the SDK configuration and secrets resolved at init.
//!
//! Secrets never sit in the template or in plain environment variables in production: the function gets the
//! *name* of an SSM SecureString parameter (`NAME_SSM_PARAMETER`) and reads it once, at cold start. Local runs and
//! tests may set `NAME` itself.

use std::collections::HashMap;

use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

/// The HTTPS client every AWS SDK client uses: hyper 1 + rustls on ring, the TLS stack reqwest (HubSpot,
/// partners) already links, so a bootstrap carries one TLS implementation (the SDK's default would add
/// aws-lc-rs). Certificates come from the system store, as with the SDK's default client.
pub fn http_client() -> aws_sdk_ssm::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// Shared SDK config from the default provider chain (region, credentials, retries), on [`http_client`].
///
/// The SDK honours `AWS_ENDPOINT_URL` (every service) and `AWS_ENDPOINT_URL_<SERVICE>` (`_DYNAMODB`, `_SQS`,
/// `_SSM`) when a service client is built from this config, so tests and local runs can point at a moto server
/// without code changes.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client()).load().await
}

#[derive(Debug, thiserror::Error)]
pub enum AwsConfigError {
    #[error("reading SSM parameter {parameter}: {message}")]
    Ssm { parameter: String, message: String },
    #[error("missing configuration: {0}")]
    Missing(String),
}

/// The environment-variable name that holds the SSM parameter name for secret `name`.
pub fn ssm_parameter_var(name: &str) -> String {
    format!("{name}_SSM_PARAMETER")
}

/// Resolve a secret the AWS way: for env var `name`, use `name` directly if set (and non-empty); else if
/// `name_SSM_PARAMETER` is set, read that SSM parameter (WithDecryption). `None` when neither is set.
pub async fn secret_from_env(ssm: &aws_sdk_ssm::Client, name: &str) -> Result<Option<String>, AwsConfigError> {
    secret_from_lookup(ssm, name, |var| std::env::var(var).ok()).await
}

/// [`secret_from_env`] with the environment given as a lookup function (tests, or a config map).
pub async fn secret_from_lookup(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, AwsConfigError> {
    Ok(secrets_from_lookup(ssm, &[name], lookup).await?.remove(name))
}

/// [`secret_from_lookup`] for several secrets: the SSM reads run concurrently, so a cold start waits for one
/// round trip, not one per secret. Secrets configured nowhere are absent from the map.
///
/// A parameter named `/aws/reference/secretsmanager/<secret>` is a Secrets Manager secret, which SSM returns
/// like a SecureString (same call, same decryption flag).
pub async fn secrets_from_lookup(
    ssm: &aws_sdk_ssm::Client,
    names: &[&str],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<HashMap<String, String>, AwsConfigError> {
    let non_empty = |v: Option<String>| v.filter(|v| !v.is_empty());
    let mut found = HashMap::new();
    let mut reads = tokio::task::JoinSet::new();
    for name in names {
        if let Some(value) = non_empty(lookup(name)) {
            found.insert(name.to_string(), value);
        } else if let Some(parameter) = non_empty(lookup(&ssm_parameter_var(name))) {
            let (ssm, name) = (ssm.clone(), name.to_string());
            reads.spawn(async move { read_parameter(&ssm, &parameter).await.map(|value| (name, value)) });
        }
    }
    while let Some(read) = reads.join_next().await {
        let (name, value) = read.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        found.insert(name, value);
    }
    Ok(found)
}

/// Like [`secret_from_env`], but a secret that is configured nowhere is an error naming both variables.
pub async fn required_secret(ssm: &aws_sdk_ssm::Client, name: &str) -> Result<String, AwsConfigError> {
    secret_from_env(ssm, name)
        .await?
        .ok_or_else(|| AwsConfigError::Missing(format!("set {name} or {}", ssm_parameter_var(name))))
}

/// A required plain environment variable (table names, queue URLs).
pub fn required_env(name: &str) -> Result<String, AwsConfigError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| AwsConfigError::Missing(format!("environment variable {name} is not set")))
}

/// Read one SSM parameter, decrypting SecureStrings.
pub async fn read_parameter(ssm: &aws_sdk_ssm::Client, parameter: &str) -> Result<String, AwsConfigError> {
    let out =
        ssm.get_parameter().name(parameter).with_decryption(true).send().await.map_err(|e| AwsConfigError::Ssm {
            parameter: parameter.to_owned(),
            message: aws_sdk_ssm::error::DisplayErrorContext(&e).to_string(),
        })?;
    out.parameter.and_then(|p| p.value).ok_or_else(|| AwsConfigError::Ssm {
        parameter: parameter.to_owned(),
        message: "the parameter has no value".to_owned(),
    })
}

//! AWS plumbing shared by the Lambdas: the SDK configuration and secrets resolved at init.
//!
//! Secrets never sit in the template or in plain environment variables in production: the function gets the
//! *name* of an SSM SecureString parameter (`NAME_SSM_PARAMETER`) and reads it once, at cold start. Local runs and
//! tests may set `NAME` itself.

/// Shared SDK config from the default provider chain (region, credentials, retries).
///
/// The SDK honours `AWS_ENDPOINT_URL` (every service) and `AWS_ENDPOINT_URL_<SERVICE>` (`_DYNAMODB`, `_SQS`,
/// `_SSM`) when a service client is built from this config, so tests and local runs can point at a moto server
/// without code changes.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
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
    let non_empty = |v: Option<String>| v.filter(|v| !v.is_empty());
    if let Some(value) = non_empty(lookup(name)) {
        return Ok(Some(value));
    }
    match non_empty(lookup(&ssm_parameter_var(name))) {
        Some(parameter) => read_parameter(ssm, &parameter).await.map(Some),
        None => Ok(None),
    }
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

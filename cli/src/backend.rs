//! Where `hubrelay events` and `hubrelay dlq` look: the local store of `hubrelay serve`, or the AWS stack.
//!
//! `--data-dir` picks the local store. Otherwise every AWS setting comes from its flag, else from the stack's
//! outputs (`--stack NAME`), else from its environment variable; when none is set, the local store in
//! `$HUBRELAY_DATA_DIR` (default `.hubrelay`) is used.

use std::path::PathBuf;

use hubrelay_local::tenants::{tenant_dir, TenantRegistry};

/// Selects the backend (shared by `events` and `dlq`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// Local data dir of `hubrelay serve` [env: HUBRELAY_DATA_DIR] [default: .hubrelay]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// AWS: the DynamoDB idempotency table holding the event log [env: HUBRELAY_IDEMPOTENCY_TABLE]
    #[arg(long, global = true, value_name = "NAME", conflicts_with = "data_dir")]
    pub table: Option<String>,
    /// AWS: a CloudFormation stack whose outputs name the table and queues (IdempotencyTableName,
    /// RetryQueueUrl, DeadLetterQueueUrl)
    #[arg(long, global = true, value_name = "NAME", conflicts_with = "data_dir")]
    pub stack: Option<String>,
    /// A tenant (`hubrelay tenants list`): its events and dead letters only [default: the routes without a prefix]
    #[arg(long, global = true, value_name = "ID")]
    pub tenant: Option<hubrelay_core::tenant::TenantId>,
}

/// The queues (for `dlq`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct QueueArgs {
    /// AWS: the retry queue's URL, where redriven events go [env: HUBRELAY_RETRY_QUEUE_URL]
    #[arg(long, global = true, value_name = "URL", conflicts_with = "data_dir")]
    pub queue_url: Option<String>,
    /// AWS: the dead-letter queue's URL [env: HUBRELAY_DLQ_URL]
    #[arg(long, global = true, value_name = "URL", conflicts_with = "data_dir")]
    pub dlq_url: Option<String>,
}

pub const TABLE_ENV: &str = "HUBRELAY_IDEMPOTENCY_TABLE";
pub const QUEUE_URL_ENV: &str = "HUBRELAY_RETRY_QUEUE_URL";
pub const DLQ_URL_ENV: &str = "HUBRELAY_DLQ_URL";
pub const DATA_DIR_ENV: &str = "HUBRELAY_DATA_DIR";

pub enum Target {
    Local(PathBuf),
    Aws(Box<Aws>),
}

pub struct Aws {
    pub config: aws_config::SdkConfig,
    /// A tenant of the stack's registry (`--tenant`): its slice of the table and its dead letters.
    pub tenant: Option<hubrelay_core::tenant::TenantId>,
    pub table: Option<String>,
    pub queue_url: Option<String>,
    pub dlq_url: Option<String>,
}

impl Aws {
    pub fn table(&self) -> Result<&str, String> {
        self.table.as_deref().ok_or_else(|| {
            format!("the idempotency table is needed here: pass --table NAME, --stack NAME or set {TABLE_ENV}")
        })
    }

    pub fn dlq_url(&self) -> Result<&str, String> {
        self.dlq_url.as_deref().ok_or_else(|| {
            format!("the dead-letter queue URL is needed here: pass --dlq-url URL, --stack NAME or set {DLQ_URL_ENV}")
        })
    }

    pub fn queue_url(&self) -> Result<&str, String> {
        self.queue_url.as_deref().ok_or_else(|| {
            format!("the retry queue URL is needed here: pass --queue-url URL, --stack NAME or set {QUEUE_URL_ENV}")
        })
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Picks the backend; `--stack` costs one `DescribeStacks` call. With `--tenant`, the tenant's own store.
pub async fn resolve(store: &StoreArgs, queues: Option<&QueueArgs>) -> Result<Target, String> {
    let target = resolve_default(store, queues).await?;
    let Some(tenant) = store.tenant.as_ref().filter(|t| !t.is_default()) else {
        return Ok(target);
    };
    match target {
        Target::Local(dir) => {
            let registry = TenantRegistry::exists(&dir).then(|| TenantRegistry::open(&dir)).transpose();
            let known = registry.map_err(|e| e.to_string())?.map(|r| r.get(tenant).is_ok()).unwrap_or(false);
            let folder = tenant_dir(&dir, tenant);
            // A removed tenant's events and dead letters stay in its folder, so that still counts.
            if !known && !folder.is_dir() {
                return Err(format!("no tenant {tenant} in {} (`hubrelay tenants list` names them)", dir.display()));
            }
            Ok(Target::Local(folder))
        }
        Target::Aws(mut aws) => {
            aws.tenant = Some(tenant.clone());
            Ok(Target::Aws(aws))
        }
    }
}

async fn resolve_default(store: &StoreArgs, queues: Option<&QueueArgs>) -> Result<Target, String> {
    if let Some(dir) = &store.data_dir {
        return Ok(Target::Local(dir.clone()));
    }
    let mut table = store.table.clone();
    let mut queue_url = queues.and_then(|q| q.queue_url.clone());
    let mut dlq_url = queues.and_then(|q| q.dlq_url.clone());
    let wants_queues = queues.is_some();

    let mut config = None;
    if let Some(stack) = &store.stack {
        let sdk = operator_sdk_config().await?;
        let outputs = stack_outputs(&sdk, stack).await?;
        let output = |key: &str| -> Result<String, String> {
            outputs.get(key).cloned().ok_or_else(|| format!("stack {stack} has no output {key}"))
        };
        if table.is_none() {
            table = Some(output("IdempotencyTableName")?);
        }
        if wants_queues && queue_url.is_none() {
            queue_url = Some(output("RetryQueueUrl")?);
        }
        if wants_queues && dlq_url.is_none() {
            dlq_url = Some(output("DeadLetterQueueUrl")?);
        }
        config = Some(sdk);
    }
    table = table.or_else(|| env(TABLE_ENV));
    if wants_queues {
        queue_url = queue_url.or_else(|| env(QUEUE_URL_ENV));
        dlq_url = dlq_url.or_else(|| env(DLQ_URL_ENV));
    }
    if table.is_none() && queue_url.is_none() && dlq_url.is_none() {
        let dir = env(DATA_DIR_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".hubrelay"));
        return Ok(Target::Local(dir));
    }
    let config = match config {
        Some(c) => c,
        None => operator_sdk_config().await?,
    };
    Ok(Target::Aws(Box::new(Aws { config, tenant: None, table, queue_url, dlq_url })))
}

/// The operator's AWS settings (profile, SSO, environment), refused in one line when they hold no
/// credentials, before any AWS call could fail with the SDK's whole error chain.
pub(crate) async fn operator_sdk_config() -> Result<aws_config::SdkConfig, String> {
    use aws_sdk_sqs::config::ProvideCredentials;
    let sdk = hubrelay_aws::sdk::sdk_config().await;
    let provider = sdk.credentials_provider().ok_or("no AWS credentials provider is configured")?;
    if let Err(e) = provider.provide_credentials().await {
        // The chain's first line names the cause (an expired SSO token, no provider enabled); the rest repeats it.
        let chain = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
        let why = chain.lines().next().unwrap_or_default().trim_end_matches(" Attempted:").trim_end_matches(['.', ':']);
        return Err(format!(
            "no AWS credentials ({why}): set AWS_PROFILE (after `aws sso login`) or AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, or use the local store with --data-dir"
        ));
    }
    Ok(sdk)
}

/// A stack's outputs by key.
pub(crate) async fn stack_outputs(
    sdk: &aws_config::SdkConfig,
    stack: &str,
) -> Result<std::collections::HashMap<String, String>, String> {
    let client = aws_sdk_cloudformation::Client::new(sdk);
    let out = client.describe_stacks().stack_name(stack).send().await.map_err(|e| {
        format!("CloudFormation DescribeStacks {stack}: {}", aws_sdk_cloudformation::error::DisplayErrorContext(&e))
    })?;
    let stack_info = out.stacks().first().ok_or_else(|| format!("stack {stack} not found"))?;
    Ok(stack_info
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect())
}

/// Warnings (e.g. unreadable dead letters) on stderr; no info chatter.
pub fn init_warn_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The SDK's credential chain warns once per provider it tries; the command reports the outcome itself.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,aws_config=error,aws_smithy_runtime=error"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

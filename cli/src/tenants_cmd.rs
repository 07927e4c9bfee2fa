//! `hubrelay tenants add|list|show|update|remove`: the portals a deployment relays to, each under
//! `/t/{tenant}/` — `hubrelay serve`'s (the registry in its data dir) or an AWS stack's (`--stack` / `--table`:
//! the registry in its table, sealed under the stack's tenant-secrets key). Secrets are read from files (never
//! from the command line, where shell history and `ps` would keep them) or generated and printed once;
//! listings mask them unless `show --reveal`.

use std::path::PathBuf;

use base64::Engine;
use hubrelay_core::pii::mask_token;
use hubrelay_core::tenant::{
    HubSpotAuth, MappingProfile, Tenant, TenantId, TenantSecrets, DEFAULT_TENANT_RATE_LIMIT_PER_10S, MAX_VALID_SECRETS,
};
use std::sync::Arc;

use hubrelay_aws::dynamodb_tenants::DynamoTenants;
use hubrelay_core::sealed::SealingKey;
use hubrelay_local::tenants::{tenant_dir, StoredTenant, TenantRegistry};
use serde_json::json;

use crate::output;
use crate::tenants_partners::PartnerArgs;

#[derive(clap::Args, Debug)]
pub struct TenantsArgs {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Where the tenant registry is: `serve`'s data dir, or an AWS stack's table.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Data dir of `hubrelay serve` [env: HUBRELAY_DATA_DIR] [default: .hubrelay]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// AWS: a CloudFormation stack whose outputs name the table and the tenant-secrets key's parameter
    #[arg(long, global = true, value_name = "NAME", conflicts_with = "data_dir")]
    pub stack: Option<String>,
    /// AWS: the stack's DynamoDB idempotency table (the registry's home) [env: HUBRELAY_IDEMPOTENCY_TABLE]
    #[arg(long, global = true, value_name = "NAME", conflicts_with = "data_dir")]
    pub table: Option<String>,
    /// AWS: the SSM SecureString parameter holding the stack's tenant-secrets key
    /// [env: HUBRELAY_TENANT_SECRETS_KEY_SSM_PARAMETER]
    #[arg(long, global = true, value_name = "NAME", conflicts_with = "data_dir")]
    pub key_parameter: Option<String>,
}

/// Where the tenants are kept.
pub(crate) enum Registry {
    Local { registry: Box<TenantRegistry>, dir: PathBuf },
    Aws { registry: DynamoTenants, table: String, install_key: Vec<u8>, public_url: Option<String> },
}

impl Registry {
    pub(crate) async fn open(args: &RegistryArgs) -> Result<Registry, String> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let aws = args.stack.is_some() || args.table.is_some() || args.key_parameter.is_some();
        if !aws {
            let dir = args.data_dir.clone().or_else(|| env("HUBRELAY_DATA_DIR").map(PathBuf::from));
            let dir = dir.unwrap_or_else(|| PathBuf::from(".hubrelay"));
            let registry = TenantRegistry::open(&dir).map_err(|e| e.to_string())?;
            return Ok(Registry::Local { registry: Box::new(registry), dir });
        }
        let sdk = crate::backend::operator_sdk_config().await?;
        let outputs = match &args.stack {
            Some(stack) => crate::backend::stack_outputs(&sdk, stack).await?,
            None => Default::default(),
        };
        let pick = |flag: &Option<String>, output: &str, var: &str| {
            flag.clone().or_else(|| outputs.get(output).cloned()).or_else(|| env(var))
        };
        let table = pick(&args.table, "IdempotencyTableName", crate::backend::TABLE_ENV)
            .ok_or("the idempotency table is needed: pass --table NAME or --stack NAME")?;
        let parameter =
            pick(&args.key_parameter, "TenantSecretsKeyParameter", "HUBRELAY_TENANT_SECRETS_KEY_SSM_PARAMETER")
                .filter(|p| !p.is_empty())
                .ok_or("the tenant-secrets key's SSM parameter is needed: pass --key-parameter NAME (deploy the stack with TenantSecretsKeyParameter)")?;
        let ssm = aws_sdk_ssm::Client::new(&sdk);
        let hex = hubrelay_aws::sdk::read_parameter(&ssm, &parameter).await.map_err(|e| e.to_string())?;
        let key = SealingKey::from_hex(&hex)
            .ok_or_else(|| format!("SSM parameter {parameter} does not hold a tenant-secrets key (64 hex digits)"))?;
        let registry = DynamoTenants::new(aws_sdk_dynamodb::Client::new(&sdk), &table, Arc::new(key));
        let install_key = hubrelay_core::tenant::install_signing_key(&hex);
        Ok(Registry::Aws { registry, table, install_key, public_url: outputs.get("PublicUrl").cloned() })
    }

    fn place(&self) -> String {
        match self {
            Registry::Local { dir, .. } => dir.display().to_string(),
            Registry::Aws { table, .. } => format!("table {table}"),
        }
    }

    async fn add(&self, tenant: &Tenant) -> Result<(), String> {
        match self {
            Registry::Local { registry, .. } => registry.add(tenant, now_secs()).map_err(|e| e.to_string()),
            Registry::Aws { registry, .. } => registry.add(tenant).await.map(|_| ()).map_err(|e| e.to_string()),
        }
    }

    async fn update(&self, read: &StoredTenant, tenant: &Tenant) -> Result<(), String> {
        match self {
            Registry::Local { registry, .. } => registry.update(read, tenant, now_secs()).map_err(|e| e.to_string()),
            Registry::Aws { registry, .. } => {
                registry.update(read, tenant).await.map(|_| ()).map_err(|e| e.to_string())
            }
        }
    }

    pub(crate) async fn get(&self, id: &TenantId) -> Result<StoredTenant, String> {
        match self {
            Registry::Local { registry, .. } => registry.get(id).map_err(|e| e.to_string()),
            Registry::Aws { registry, .. } => {
                registry.get(id).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("no tenant `{id}`"))
            }
        }
    }

    /// Every tenant by id, each readable or with why not (one bad row hides no other).
    async fn list(&self) -> Result<Vec<(String, Result<StoredTenant, String>)>, String> {
        let rows = match self {
            Registry::Local { registry, .. } => registry
                .list_rows()
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(id, row)| (id, row.map_err(|e| e.to_string())))
                .collect(),
            Registry::Aws { registry, .. } => registry
                .list()
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(id, row)| (id, row.map_err(|e| e.to_string())))
                .collect(),
        };
        Ok(rows)
    }

    async fn remove(&self, id: &TenantId) -> Result<(), String> {
        match self {
            Registry::Local { registry, .. } => registry.remove(id).map_err(|e| e.to_string()),
            Registry::Aws { registry, .. } => registry.remove(id).await.map_err(|e| e.to_string()),
        }
    }
}

/// `tenants init-key`: never overwrites (the tenants' secrets are sealed under the key it holds).
async fn init_key(args: &RegistryArgs, kms_key: Option<String>) -> Result<(), String> {
    let name = args.key_parameter.clone().ok_or("--key-parameter NAME: the SSM parameter to create")?;
    let sdk = crate::backend::operator_sdk_config().await?;
    let outputs = match &args.stack {
        Some(stack) => crate::backend::stack_outputs(&sdk, stack).await?,
        None => Default::default(),
    };
    let kms_key = kms_key
        .or_else(|| outputs.get("TenantSecretsKmsKeyArn").cloned())
        .ok_or("the KMS key is needed: pass --stack NAME (its TenantSecretsKmsKeyArn) or --kms-key KEY")?;
    let key: [u8; 32] = hubrelay_core::sealed::random_bytes().ok_or("no system randomness")?;
    let value: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let result = aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(&name)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .key_id(&kms_key)
        .value(value)
        .overwrite(false)
        .description("hubrelay tenant-secrets key: tenants' credentials in the table are sealed under it")
        .send()
        .await;
    match result {
        Ok(_) => {
            println!("created {name} (SecureString, KMS key {kms_key}); deploy with TenantSecretsKeyParameter={name}");
            Ok(())
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_already_exists()) => {
            Err(format!("{name} exists already: keep it (the tenants' secrets are sealed under the key it holds)"))
        }
        Err(e) => Err(format!("SSM PutParameter {name}: {}", aws_sdk_ssm::error::DisplayErrorContext(&e))),
    }
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Add a tenant (a running serve picks it up within a second or two)
    Add {
        id: TenantId,
        #[command(flatten)]
        settings: SettingsArgs,
        #[command(flatten)]
        credentials: CredentialArgs,
        #[command(flatten)]
        partners: PartnerArgs,
        /// Add it disabled (its routes answer 403 until `update --enable`)
        #[arg(long)]
        disabled: bool,
    },
    /// Every tenant, one line each (no secrets)
    List {
        #[arg(long)]
        json: bool,
    },
    /// One tenant: settings, routes, credentials (masked unless --reveal)
    Show {
        id: TenantId,
        /// Print the secrets in full (for handing a token to a sender)
        #[arg(long)]
        reveal: bool,
        #[arg(long)]
        json: bool,
    },
    /// Change a tenant; credentials rotate: add the new one, and once senders use it retire the old one
    Update {
        id: TenantId,
        #[command(flatten)]
        settings: SettingsArgs,
        #[command(flatten)]
        credentials: CredentialArgs,
        #[command(flatten)]
        partners: PartnerArgs,
        /// Keep only the newest API token (after a rotation); runs before any token is added
        #[arg(long)]
        retire_old_api_token: bool,
        /// Keep only the newest webhook secret (after a rotation); runs before any secret is added
        #[arg(long)]
        retire_old_webhook_secret: bool,
        /// Call the built-in sandbox instead of a HubSpot portal
        #[arg(long, conflicts_with_all = ["hubspot_token_file", "hubspot_base_url", "oauth"])]
        sandbox: bool,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    /// Remove a tenant from the registry: its routes answer 404; its events and dead letters stay in its folder
    Remove { id: TenantId },
    /// AWS: create the stack's tenant-secrets key, a random 256-bit key in the SSM SecureString named by
    /// --key-parameter, encrypted with the stack's KMS key (then deploy with TenantSecretsKeyParameter=NAME)
    InitKey {
        /// The KMS key (id, ARN or alias) [default: the stack's TenantSecretsKmsKeyArn output]
        #[arg(long, value_name = "KEY")]
        kms_key: Option<String>,
    },
    /// Print the install link that connects an OAuth tenant's portal (hand it to the portal's admin)
    Connect {
        id: TenantId,
        /// The URL HubSpot and the admin's browser reach the relay at [env: HUBRELAY_PUBLIC_URL] [default: serve's
        /// http://127.0.0.1:8080, a stack's PublicUrl output]
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
struct SettingsArgs {
    /// Mapping profile: a built-in name (chat-widget, aimbase) or a TOML file, stored with the tenant
    #[arg(long, value_name = "NAME|FILE")]
    mapping: Option<String>,
    /// The portal's hub id
    #[arg(long)]
    hub_id: Option<u64>,
    /// File holding the portal's HubSpot credential (none: a sandbox portal of its own under serve)
    #[arg(long, value_name = "FILE")]
    hubspot_token_file: Option<PathBuf>,
    /// Connect the portal through the deployment's OAuth app (`hubrelay tenants connect` prints the install link)
    #[arg(long, conflicts_with = "hubspot_token_file")]
    oauth: bool,
    /// File holding the portal's OAuth refresh token (one connected on another deployment, e.g. a local serve)
    #[arg(long, value_name = "FILE", conflicts_with = "hubspot_token_file")]
    oauth_refresh_token_file: Option<PathBuf>,
    /// What that credential is
    #[arg(long, value_enum, default_value_t = TokenKind::ServiceKey, requires = "hubspot_token_file")]
    hubspot_token_kind: TokenKind,
    /// Another HubSpot-compatible base URL (a test portal) [default: HubSpot's API]
    #[arg(long, value_name = "URL")]
    hubspot_base_url: Option<String>,
    /// HubSpot calls per rolling 10 s for this portal [default: 190, Professional/Enterprise]
    #[arg(long, value_name = "N")]
    rate_limit_per_10s: Option<u32>,
    /// HubSpot calls per day for this portal
    #[arg(long, value_name = "N")]
    daily_budget: Option<u32>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum TokenKind {
    ServiceKey,
    AppToken,
}

#[derive(clap::Args, Debug)]
struct CredentialArgs {
    /// Generate a sender API token and print it once
    #[arg(long)]
    new_api_token: bool,
    /// Add the sender API token held in this file
    #[arg(long, value_name = "FILE", conflicts_with = "new_api_token")]
    api_token_file: Option<PathBuf>,
    /// Generate a Standard Webhooks secret (whsec_…) and print it once
    #[arg(long)]
    new_webhook_secret: bool,
    /// Add the Standard Webhooks secret held in this file
    #[arg(long, value_name = "FILE", conflicts_with = "new_webhook_secret")]
    webhook_secret_file: Option<PathBuf>,
}

pub async fn run(args: TenantsArgs) -> Result<(), String> {
    if let Action::InitKey { kms_key } = &args.action {
        return init_key(&args.registry, kms_key.clone()).await;
    }
    let registry = Registry::open(&args.registry).await?;
    match args.action {
        Action::Add { id, settings, credentials, partners, disabled } => {
            let mut tenant = Tenant {
                id,
                hub_id: None,
                hubspot_base_url: None,
                mapping: MappingProfile::Builtin { name: hubrelay_core::config::DEFAULT_MAPPING.into() },
                rate_limit_per_10s: DEFAULT_TENANT_RATE_LIMIT_PER_10S,
                daily_budget: None,
                enabled: !disabled,
                needs_reauth: false,
                partners: Default::default(),
                secrets: TenantSecrets {
                    hubspot: HubSpotAuth::Sandbox,
                    api_tokens: vec![],
                    webhook_secrets: vec![],
                    partners: Default::default(),
                },
            };
            settings.apply(&mut tenant)?;
            partners.apply(&mut tenant)?;
            let mut printed = credentials.apply(&mut tenant.secrets)?;
            if tenant.secrets.api_tokens.is_empty() && tenant.secrets.webhook_secrets.is_empty() {
                let token = new_api_token();
                printed.push(("API token", token.clone()));
                tenant.secrets.api_tokens.push(token);
            }
            registry.add(&tenant).await?;
            println!("added tenant {} ({})", tenant.id, summary(&tenant));
            print_routes(&tenant.id);
            print_once(&printed);
            if matches!(tenant.secrets.hubspot, HubSpotAuth::OAuth { .. }) {
                println!("  connect its portal: hubrelay tenants connect {} (its events wait until then)", tenant.id);
            }
        }
        Action::List { json } => {
            let tenants = registry.list().await?;
            if json {
                let list: Vec<_> = tenants
                    .iter()
                    .map(|(id, row)| match row {
                        Ok(t) => describe(t, false),
                        Err(e) => json!({"id": id, "state": "unreadable", "error": e}),
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?);
            } else if tenants.is_empty() {
                println!("no tenants in {} (add one with `hubrelay tenants add ID`)", registry.place());
            } else {
                let rows: Vec<Vec<String>> = tenants
                    .iter()
                    .map(|(id, row)| {
                        let s = match row {
                            Ok(s) => s,
                            Err(e) => return vec![id.clone(), format!("UNREADABLE: {e}"), "-".into()],
                        };
                        let t = &s.tenant;
                        vec![
                            t.id.to_string(),
                            state(t).into(),
                            output::or_dash(t.hub_id),
                            t.secrets.hubspot.kind().replace('_', " "),
                            t.mapping.describe(),
                            t.rate_limit_per_10s.to_string(),
                            hubrelay_core::tenant::partners::describe(&t.partners, &t.secrets.partners),
                            credentials_line(&t.secrets),
                        ]
                    })
                    .collect();
                let header =
                    ["TENANT", "STATE", "HUB ID", "HUBSPOT", "MAPPING", "CALLS/10S", "PARTNERS", "SENDER CREDENTIALS"];
                print!("{}", output::table(&header, &rows));
            }
        }
        Action::Show { id, reveal, json } => {
            let stored = registry.get(&id).await?;
            let described = describe(&stored, reveal);
            if json {
                println!("{}", serde_json::to_string_pretty(&described).map_err(|e| e.to_string())?);
            } else {
                let t = &stored.tenant;
                println!("tenant {} ({})", t.id, state(t));
                println!("  hub id:       {}", output::or_dash(t.hub_id));
                println!("  HubSpot:      {}", described["hubspot"]["kind"].as_str().unwrap_or_default());
                if let Some(token) = described["hubspot"]["token"].as_str() {
                    println!("  credential:   {token}");
                }
                if let Some(token) = described["hubspot"]["refresh_token"].as_str() {
                    println!("  refresh token: {token}");
                }
                let base_url = match (&t.secrets.hubspot, &t.hubspot_base_url) {
                    (HubSpotAuth::Sandbox, _) => "a sandbox portal of its own, under serve",
                    (_, Some(url)) => url.as_str(),
                    (_, None) => "HubSpot's API",
                };
                println!("  base URL:     {base_url}");
                println!("  mapping:      {}", t.mapping.describe());
                println!("  calls/10 s:   {}", t.rate_limit_per_10s);
                println!("  daily budget: {}", output::or_dash(t.daily_budget));
                for token in described["api_tokens"].as_array().into_iter().flatten() {
                    println!("  API token:    {}", token.as_str().unwrap_or_default());
                }
                for secret in described["webhook_secrets"].as_array().into_iter().flatten() {
                    println!("  webhook secret: {}", secret.as_str().unwrap_or_default());
                }
                crate::tenants_partners::print(&described["partners"]);
                match &registry {
                    Registry::Local { dir, .. } => println!("  data:         {}", tenant_dir(dir, &t.id).display()),
                    Registry::Aws { table, .. } => println!("  data:         table {table}, items t:{}:…", t.id),
                }
                print_routes(&t.id);
            }
        }
        Action::Update {
            id,
            settings,
            credentials,
            partners,
            retire_old_api_token,
            retire_old_webhook_secret,
            sandbox,
            enable,
            disable,
        } => {
            let read = registry.get(&id).await?;
            let mut tenant = read.tenant.clone();
            if sandbox {
                tenant.secrets.hubspot = HubSpotAuth::Sandbox;
                tenant.hubspot_base_url = None;
            }
            settings.apply(&mut tenant)?;
            partners.apply(&mut tenant)?;
            if retire_old_api_token {
                keep_newest(&mut tenant.secrets.api_tokens);
            }
            if retire_old_webhook_secret {
                keep_newest(&mut tenant.secrets.webhook_secrets);
            }
            let printed = credentials.apply(&mut tenant.secrets)?;
            tenant.enabled = (tenant.enabled || enable) && !disable;
            registry.update(&read, &tenant).await?;
            println!("updated tenant {} ({})", tenant.id, summary(&tenant));
            print_once(&printed);
        }
        Action::Connect { id, public_url } => {
            let tenant = registry.get(&id).await?.tenant;
            if !matches!(tenant.secrets.hubspot, HubSpotAuth::OAuth { .. }) {
                return Err(format!(
                    "tenant {id} calls HubSpot with a {}: switch it first with `hubrelay tenants update {id} --oauth`",
                    tenant.secrets.hubspot.kind()
                ));
            }
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let from_env = || std::env::var("HUBRELAY_PUBLIC_URL").ok().filter(|v| !v.is_empty());
            let (link, public_url) = match &registry {
                Registry::Local { dir, .. } => {
                    let url = public_url.or_else(from_env).unwrap_or_else(|| "http://127.0.0.1:8080".into());
                    (crate::serve_oauth::install_link(dir, &url, &id, now)?, url)
                }
                Registry::Aws { install_key, public_url: stack_url, .. } => {
                    let url = public_url.or_else(|| stack_url.clone()).or_else(from_env).ok_or(
                        "the stack's public URL is needed: pass --stack NAME (its PublicUrl output) or --public-url URL",
                    )?;
                    (hubrelay_http::oauth_install::install_link(install_key, &url, &id, now), url)
                }
            };
            println!("{link}");
            eprintln!(
                "hand this link to an admin of the portal: it leads to HubSpot's install page, then back to {}/oauth/callback \
                 (register that as the app's redirect URL); the link works for 7 days; pin the portal with --hub-id so it connects no other",
                public_url.trim_end_matches('/')
            );
        }
        // Handled above, before a registry (which needs the key) is opened.
        Action::InitKey { .. } => return Err("init-key makes the key; it opens no registry".into()),
        Action::Remove { id } => {
            registry.remove(&id).await?;
            let kept = match &registry {
                Registry::Local { dir, .. } => tenant_dir(dir, &id).display().to_string(),
                // Queued messages of a removed tenant are dead-lettered (`unknown_tenant`) with their history.
                Registry::Aws { table, .. } => format!("table {table} (its queued events go to the DLQ)"),
            };
            println!("removed tenant {id}: its routes answer 404; its events and dead letters stay in {kept}");
        }
    }
    Ok(())
}

impl SettingsArgs {
    fn apply(self, tenant: &mut Tenant) -> Result<(), String> {
        if let Some(spec) = &self.mapping {
            tenant.mapping = MappingProfile::from_spec(spec)?;
        }
        if let Some(hub_id) = self.hub_id {
            tenant.hub_id = Some(hub_id);
        }
        if let Some(file) = &self.hubspot_token_file {
            let token = read_secret(file)?;
            tenant.secrets.hubspot = match self.hubspot_token_kind {
                TokenKind::ServiceKey => HubSpotAuth::ServiceKey { token },
                TokenKind::AppToken => HubSpotAuth::AppToken { token },
            };
        }
        if self.oauth {
            // On an OAuth tenant: clear `needs_reauth` and try its refresh token again (after fixing the app's
            // credentials, say); on another: wait for an install.
            if !matches!(tenant.secrets.hubspot, HubSpotAuth::OAuth { .. }) {
                tenant.secrets.hubspot = HubSpotAuth::OAuth { refresh_token: None };
            }
            tenant.needs_reauth = false;
        }
        if let Some(file) = &self.oauth_refresh_token_file {
            tenant.secrets.hubspot = HubSpotAuth::OAuth { refresh_token: Some(read_secret(file)?) };
            tenant.needs_reauth = false;
        }
        if let Some(url) = self.hubspot_base_url {
            tenant.hubspot_base_url = Some(url);
        }
        if let Some(rate) = self.rate_limit_per_10s {
            tenant.rate_limit_per_10s = rate;
        }
        if let Some(budget) = self.daily_budget {
            tenant.daily_budget = Some(budget);
        }
        Ok(())
    }
}

impl CredentialArgs {
    /// Adds the credentials asked for; returns the generated ones, to print once.
    fn apply(self, secrets: &mut TenantSecrets) -> Result<Vec<(&'static str, String)>, String> {
        let mut printed = Vec::new();
        let token = match (self.new_api_token, &self.api_token_file) {
            (true, _) => Some(new_api_token()).inspect(|t| printed.push(("API token", t.clone()))),
            (false, Some(file)) => Some(read_secret(file)?),
            (false, None) => None,
        };
        if let Some(token) = token {
            push_credential(&mut secrets.api_tokens, token, "API token", "--retire-old-api-token")?;
        }
        let secret = match (self.new_webhook_secret, &self.webhook_secret_file) {
            (true, _) => Some(new_webhook_secret()).inspect(|s| printed.push(("webhook secret", s.clone()))),
            (false, Some(file)) => Some(read_secret(file)?),
            (false, None) => None,
        };
        if let Some(secret) = secret {
            push_credential(&mut secrets.webhook_secrets, secret, "webhook secret", "--retire-old-webhook-secret")?;
        }
        Ok(printed)
    }
}

pub(crate) fn push_credential(
    list: &mut Vec<String>,
    value: String,
    what: &str,
    retire_flag: &str,
) -> Result<(), String> {
    if list.contains(&value) {
        return Err(format!("that {what} is already valid for this tenant"));
    }
    if list.len() >= MAX_VALID_SECRETS {
        return Err(format!(
            "{MAX_VALID_SECRETS} {what}s are valid already: retire the old one first ({retire_flag}, once its senders use the new one)"
        ));
    }
    list.push(value);
    Ok(())
}

pub(crate) fn keep_newest(list: &mut Vec<String>) {
    if list.len() > 1 {
        list.drain(..list.len() - 1);
    }
}

pub(crate) fn read_secret(file: &PathBuf) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let secret = text.trim().to_string();
    if secret.is_empty() || secret.contains(char::is_whitespace) {
        return Err(format!("{} must hold one secret on one line", file.display()));
    }
    Ok(secret)
}

fn new_api_token() -> String {
    format!("hrt_{}", hex_random::<20>())
}

fn new_webhook_secret() -> String {
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 24]>()))
}

fn hex_random<const N: usize>() -> String {
    rand::random::<[u8; N]>().iter().map(|b| format!("{b:02x}")).collect()
}

fn state(t: &Tenant) -> &'static str {
    match (&t.secrets.hubspot, t.enabled, t.needs_reauth) {
        (_, false, _) => "disabled",
        (HubSpotAuth::OAuth { refresh_token: None }, true, _) => "not connected",
        (HubSpotAuth::OAuth { .. }, true, true) => "needs reauth",
        _ => "enabled",
    }
}

fn credentials_line(s: &TenantSecrets) -> String {
    let count = |n: usize, one: &str| match n {
        0 => None,
        1 => Some(format!("1 {one}")),
        n => Some(format!("{n} {one}s (rotating)")),
    };
    [count(s.api_tokens.len(), "API token"), count(s.webhook_secrets.len(), "webhook secret")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
}

fn summary(t: &Tenant) -> String {
    format!(
        "{}, HubSpot {}, mapping {}, {} calls per 10 s; {}",
        state(t),
        t.secrets.hubspot.kind().replace('_', " "),
        t.mapping.describe(),
        t.rate_limit_per_10s,
        credentials_line(&t.secrets)
    )
}

/// A tenant as `list --json` and `show` print it: secrets masked unless revealed.
fn describe(stored: &StoredTenant, reveal: bool) -> serde_json::Value {
    let t = &stored.tenant;
    let shown = |s: &String| if reveal { s.clone() } else { mask_token(s) };
    let mut hubspot = json!({"kind": t.secrets.hubspot.kind()});
    if let Some(token) = t.secrets.hubspot.secret() {
        let key = if matches!(t.secrets.hubspot, HubSpotAuth::OAuth { .. }) { "refresh_token" } else { "token" };
        hubspot[key] = json!(shown(&token.to_string()));
    }
    json!({
        "id": t.id,
        "enabled": t.enabled,
        "state": state(t),
        "needs_reauth": t.needs_reauth,
        "hub_id": t.hub_id,
        "hubspot": hubspot,
        "hubspot_base_url": t.hubspot_base_url,
        "mapping": t.mapping.describe(),
        "rate_limit_per_10s": t.rate_limit_per_10s,
        "daily_budget": t.daily_budget,
        "api_tokens": t.secrets.api_tokens.iter().map(shown).collect::<Vec<_>>(),
        "webhook_secrets": t.secrets.webhook_secrets.iter().map(shown).collect::<Vec<_>>(),
        "partners": crate::tenants_partners::describe(t, reveal),
        "created_at": stored.created_at,
        "updated_at": stored.updated_at,
    })
}

fn print_routes(id: &TenantId) {
    println!("  routes: POST /t/{id}/v1/leads, /t/{id}/v1/leads/status, /t/{id}/v1/leads/activities, /t/{id}/v1/referrals/{{hubspot,extole,impact}}");
}

/// Generated secrets are shown this once; `show --reveal` prints them again.
fn print_once(printed: &[(&str, String)]) {
    for (what, value) in printed {
        println!("  new {what} (shown once here; `hubrelay tenants show ID --reveal` prints it again): {value}");
    }
}

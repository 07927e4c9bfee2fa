//! `hubrelay tenants add|update`'s referral-partner flags: the tenant's own Extole, impact.com and impact.com
//! Advocate accounts (a tenant never uses the deployment's), the secrets its partners sign their webhooks with,
//! and its own outbound endpoint. Secrets come from files, never from the command line.

use std::path::PathBuf;

use hubrelay_core::pii::mask_token;
use hubrelay_core::tenant::Tenant;
use serde_json::json;

use crate::tenants_cmd::{keep_newest, push_credential, read_secret};

#[derive(clap::Args, Debug, Default)]
pub struct PartnerArgs {
    /// File holding the tenant's Extole API token (its referral program's account)
    #[arg(long, value_name = "FILE")]
    extole_token_file: Option<PathBuf>,
    /// Another Extole-compatible base URL (a test account) [default: Extole's API]
    #[arg(long, value_name = "URL")]
    extole_base_url: Option<String>,
    /// Forget the tenant's Extole account (its Extole actions stop)
    #[arg(long, conflicts_with_all = ["extole_token_file", "extole_base_url"])]
    no_extole: bool,
    /// The tenant's impact.com Account SID
    #[arg(long, value_name = "SID", requires = "impact_auth_token_file")]
    impact_account_sid: Option<String>,
    /// File holding the tenant's impact.com auth token
    #[arg(long, value_name = "FILE")]
    impact_auth_token_file: Option<PathBuf>,
    /// Another impact.com-compatible base URL [default: impact.com's API]
    #[arg(long, value_name = "URL")]
    impact_base_url: Option<String>,
    /// The impact.com program (campaign) id its conversions go to
    #[arg(long, value_name = "ID")]
    impact_campaign_id: Option<String>,
    /// Forget the tenant's impact.com account (its impact actions stop)
    #[arg(long, conflicts_with_all = ["impact_account_sid", "impact_auth_token_file", "impact_base_url", "impact_campaign_id"])]
    no_impact: bool,
    /// Add the secret Extole signs the tenant's webhooks with (held in this file)
    #[arg(long, value_name = "FILE")]
    extole_webhook_secret_file: Option<PathBuf>,
    /// Keep only the newest Extole webhook secret (after a rotation); runs before one is added
    #[arg(long)]
    retire_old_extole_webhook_secret: bool,
    /// Add the secret impact.com signs the tenant's webhooks with (held in this file)
    #[arg(long, value_name = "FILE")]
    impact_webhook_secret_file: Option<PathBuf>,
    /// Keep only the newest impact.com webhook secret (after a rotation); runs before one is added
    #[arg(long)]
    retire_old_impact_webhook_secret: bool,
    /// The tenant's impact.com Advocate program (tenant alias): its HubSpot contacts become participants there
    #[arg(long, value_name = "ALIAS", requires = "advocate_api_key_file")]
    advocate_tenant_alias: Option<String>,
    /// File holding the Advocate program's API key
    #[arg(long, value_name = "FILE")]
    advocate_api_key_file: Option<PathBuf>,
    /// Another Advocate-compatible base URL [default: SaaSquatch's API]
    #[arg(long, value_name = "URL")]
    advocate_base_url: Option<String>,
    /// Whether a created or unmapped contact creates a participant (true or false) [default: true]
    #[arg(long, value_name = "BOOL")]
    advocate_create_participants: Option<bool>,
    /// Forget the tenant's Advocate program (its participant sync stops)
    #[arg(long, conflicts_with_all = ["advocate_tenant_alias", "advocate_api_key_file", "advocate_base_url", "advocate_create_participants"])]
    no_advocate: bool,
    /// Send the tenant's HubSpot contact changes here instead of the deployment's endpoint
    #[arg(long, value_name = "URL", requires = "outbound_secret_file")]
    outbound_url: Option<String>,
    /// File holding the secret the tenant's outbound changes are signed with (Standard Webhooks)
    #[arg(long, value_name = "FILE")]
    outbound_secret_file: Option<PathBuf>,
    /// Forget the tenant's own endpoint (its changes go to the deployment's again)
    #[arg(long, conflicts_with_all = ["outbound_url", "outbound_secret_file"])]
    no_outbound: bool,
}

impl PartnerArgs {
    pub fn apply(self, tenant: &mut Tenant) -> Result<(), String> {
        let (settings, secrets) = (&mut tenant.partners, &mut tenant.secrets.partners);
        if self.no_extole {
            settings.extole_base_url = None;
            secrets.extole_token = None;
        }
        if let Some(file) = &self.extole_token_file {
            secrets.extole_token = Some(read_secret(file)?);
        }
        if let Some(url) = self.extole_base_url {
            settings.extole_base_url = Some(url);
        }
        if self.no_impact {
            settings.impact_account_sid = None;
            settings.impact_base_url = None;
            settings.impact_campaign_id = None;
            secrets.impact_auth_token = None;
        }
        if let Some(sid) = self.impact_account_sid {
            settings.impact_account_sid = Some(sid);
        }
        if let Some(file) = &self.impact_auth_token_file {
            secrets.impact_auth_token = Some(read_secret(file)?);
        }
        if let Some(url) = self.impact_base_url {
            settings.impact_base_url = Some(url);
        }
        if let Some(campaign) = self.impact_campaign_id {
            settings.impact_campaign_id = Some(campaign);
        }
        if self.no_advocate {
            settings.advocate_tenant_alias = None;
            settings.advocate_base_url = None;
            settings.advocate_create_participants = None;
            secrets.advocate_api_key = None;
        }
        if let Some(alias) = self.advocate_tenant_alias {
            settings.advocate_tenant_alias = Some(alias);
        }
        if let Some(file) = &self.advocate_api_key_file {
            secrets.advocate_api_key = Some(read_secret(file)?);
        }
        if let Some(url) = self.advocate_base_url {
            settings.advocate_base_url = Some(url);
        }
        if let Some(on) = self.advocate_create_participants {
            settings.advocate_create_participants = Some(on);
        }
        if self.no_outbound {
            settings.outbound_url = None;
            secrets.outbound_secret = None;
        }
        if let Some(url) = self.outbound_url {
            settings.outbound_url = Some(url);
        }
        if let Some(file) = &self.outbound_secret_file {
            secrets.outbound_secret = Some(read_secret(file)?);
        }
        if self.retire_old_extole_webhook_secret {
            keep_newest(&mut secrets.extole_webhook_secrets);
        }
        if let Some(file) = &self.extole_webhook_secret_file {
            let list = &mut secrets.extole_webhook_secrets;
            push_credential(list, read_secret(file)?, "Extole webhook secret", "--retire-old-extole-webhook-secret")?;
        }
        if self.retire_old_impact_webhook_secret {
            keep_newest(&mut secrets.impact_webhook_secrets);
        }
        if let Some(file) = &self.impact_webhook_secret_file {
            let list = &mut secrets.impact_webhook_secrets;
            push_credential(list, read_secret(file)?, "impact webhook secret", "--retire-old-impact-webhook-secret")?;
        }
        Ok(())
    }
}

/// The tenant's partners as `show` and `list --json` print them: secrets masked unless revealed.
pub fn describe(tenant: &Tenant, reveal: bool) -> serde_json::Value {
    let (settings, secrets) = (&tenant.partners, &tenant.secrets.partners);
    let shown = |s: &String| if reveal { s.clone() } else { mask_token(s) };
    let extole = secrets.extole_token.as_ref().map(|token| {
        json!({"token": shown(token), "base_url": settings.extole_base_url.as_deref().unwrap_or("Extole's API")})
    });
    let impact = settings.impact_account_sid.as_ref().map(|sid| {
        json!({
            "account_sid": sid,
            "auth_token": secrets.impact_auth_token.as_ref().map(shown),
            "campaign_id": settings.impact_campaign_id,
            "base_url": settings.impact_base_url.as_deref().unwrap_or("impact.com's API"),
        })
    });
    let advocate = settings.advocate_tenant_alias.as_ref().map(|alias| {
        json!({
            "tenant_alias": alias,
            "api_key": secrets.advocate_api_key.as_ref().map(shown),
            "base_url": settings.advocate_base_url.as_deref().unwrap_or("SaaSquatch's API"),
            "create_participants": settings.advocate_create_participants.unwrap_or(true),
        })
    });
    let outbound = settings
        .outbound_url
        .as_ref()
        .map(|url| json!({"url": url, "secret": secrets.outbound_secret.as_ref().map(shown)}));
    json!({
        "extole": extole,
        "impact": impact,
        "advocate": advocate,
        "outbound": outbound,
        "extole_webhook_secrets": secrets.extole_webhook_secrets.iter().map(shown).collect::<Vec<_>>(),
        "impact_webhook_secrets": secrets.impact_webhook_secrets.iter().map(shown).collect::<Vec<_>>(),
    })
}

/// `show`'s lines for the partners.
pub fn print(described: &serde_json::Value) {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
    match described["extole"].as_object() {
        Some(e) => println!("  Extole:       {} (token {})", text(&e["base_url"]), text(&e["token"])),
        None => println!("  Extole:       - (no account: its Extole actions are not planned)"),
    }
    match described["impact"].as_object() {
        Some(i) => println!(
            "  impact.com:   {} (account {}, token {}, program {})",
            text(&i["base_url"]),
            text(&i["account_sid"]),
            text(&i["auth_token"]),
            text(&i["campaign_id"])
        ),
        None => println!("  impact.com:   - (no account: its impact actions are not planned)"),
    }
    match described["advocate"].as_object() {
        Some(a) => println!(
            "  Advocate:     {} (program {}, key {}, create participants {})",
            text(&a["base_url"]),
            text(&a["tenant_alias"]),
            text(&a["api_key"]),
            a["create_participants"]
        ),
        None => println!("  Advocate:     - (no program: no participant sync)"),
    }
    match described["outbound"].as_object() {
        Some(o) => println!("  Outbound:     {} (secret {})", text(&o["url"]), text(&o["secret"])),
        None => println!("  Outbound:     the deployment's endpoint, if it has one"),
    }
    for (key, what) in [("extole_webhook_secrets", "Extole"), ("impact_webhook_secrets", "impact.com")] {
        for secret in described[key].as_array().into_iter().flatten() {
            println!("  {what} webhook secret: {}", text(secret));
        }
    }
}

//! `hubrelay serve`'s referral partners: the configured Extole and impact.com APIs, or their sandboxes on
//! 127.0.0.1 when no credentials are set (one banner line each: `Extole sandbox <url> ...`).

use std::sync::Arc;
use std::time::Duration;

use hubrelay_clients::ExtoleClient;
use hubrelay_clients::ImpactClient;
use hubrelay_core::config::referral::{AdvocateTarget, ExtoleTarget, ImpactTarget, ReferralSettings};
use hubrelay_core::partners::{Extole, Impact};
use hubrelay_core::pii::mask_token;
use hubrelay_sandbox::partners::{
    AdvocateSandbox, AdvocateSandboxOptions, ExtoleSandbox, ExtoleSandboxOptions, ImpactSandbox, ImpactSandboxOptions,
};
use hubrelay_sandbox::ServerHandle;

pub struct Partners {
    pub extole: Arc<dyn Extole>,
    pub impact: Arc<dyn Impact>,
    /// Banner lines, one per partner.
    pub lines: Vec<String>,
    /// The sandboxes stop when these drop.
    _sandboxes: Vec<ServerHandle>,
}

fn secret() -> String {
    format!("sandbox-{}", uuid::Uuid::new_v4().simple())
}

pub async fn start(settings: &ReferralSettings, timeout: Duration) -> Result<Partners, String> {
    let mut sandboxes = Vec::new();
    let mut lines = Vec::new();
    let config = &settings.config;
    let onoff = |on: bool| if on { "" } else { "; switched off (HUBRELAY_REFERRAL_EXTOLE / _IMPACT)" };
    let extole: Arc<dyn Extole> = match &settings.extole {
        ExtoleTarget::Api { base_url, token } => {
            lines.push(format!("Extole API {base_url} (token {}){}", mask_token(token), onoff(config.extole_enabled)));
            Arc::new(ExtoleClient::new(base_url, token, timeout).map_err(|e| e.to_string())?)
        }
        ExtoleTarget::Sandbox => {
            let token = secret();
            let sandbox = ExtoleSandbox::new(ExtoleSandboxOptions { token: Some(token.clone()) });
            let handle = sandbox.serve_local().await.map_err(|e| format!("Extole sandbox: {e}"))?;
            let url = handle.url();
            lines.push(format!(
                "Extole sandbox {url} (no EXTOLE_API_TOKEN set; received: GET {url}/__sandbox/received; faults: POST {url}/__sandbox/faults){}",
                onoff(config.extole_enabled)
            ));
            sandboxes.push(handle);
            Arc::new(ExtoleClient::new(&url, &token, timeout).map_err(|e| e.to_string())?)
        }
    };
    let impact: Arc<dyn Impact> = match &settings.impact {
        ImpactTarget::Api { base_url, account_sid, auth_token } => {
            lines.push(format!(
                "impact API {base_url} (account {account_sid}, token {}){}",
                mask_token(auth_token),
                onoff(config.impact_enabled)
            ));
            Arc::new(ImpactClient::new(base_url, account_sid, auth_token, timeout).map_err(|e| e.to_string())?)
        }
        ImpactTarget::Sandbox => {
            let (sid, token) = ("IRsandbox".to_string(), secret());
            let sandbox = ImpactSandbox::new(ImpactSandboxOptions {
                account_sid: Some(sid.clone()),
                auth_token: Some(token.clone()),
                campaign_id: config.impact_campaign_id.clone(),
            });
            let handle = sandbox.serve_local().await.map_err(|e| format!("impact sandbox: {e}"))?;
            let url = handle.url();
            lines.push(format!(
                "impact sandbox {url} (no IMPACT_ACCOUNT_SID set; received: GET {url}/__sandbox/received; faults: POST {url}/__sandbox/faults){}",
                onoff(config.impact_enabled)
            ));
            sandboxes.push(handle);
            Arc::new(ImpactClient::new(&url, &sid, &token, timeout).map_err(|e| e.to_string())?)
        }
    };
    Ok(Partners { extole, impact, lines, _sandboxes: sandboxes })
}

/// The tenant alias of `serve --advocate-sandbox`'s program.
pub const ADVOCATE_SANDBOX_ALIAS: &str = "sandbox";

/// `serve --advocate-sandbox`: an impact.com Advocate sandbox on 127.0.0.1, and the participant sync (HubSpot
/// contacts → participants) pointed at it. Opt-in, unlike the other partners': it makes every HubSpot contact
/// change a participant upsert. Returns the sandbox (it stops when dropped) and its banner line.
pub async fn start_advocate_sandbox(settings: &mut ReferralSettings) -> Result<(ServerHandle, String), String> {
    if let Some(a) = &settings.advocate {
        return Err(format!(
            "--advocate-sandbox: an Advocate program is configured already (IMPACT_ADVOCATE_TENANT_ALIAS={}); drop one",
            a.tenant_alias
        ));
    }
    let api_key = secret();
    let sandbox = AdvocateSandbox::new(AdvocateSandboxOptions {
        tenant_alias: Some(ADVOCATE_SANDBOX_ALIAS.into()),
        api_key: Some(api_key.clone()),
    });
    let handle = sandbox.serve_local().await.map_err(|e| format!("Advocate sandbox: {e}"))?;
    let url = handle.url();
    settings.advocate =
        Some(AdvocateTarget { base_url: url.clone(), tenant_alias: ADVOCATE_SANDBOX_ALIAS.into(), api_key });
    settings.config.participant_sync = true;
    let creates = if settings.config.create_participants { "" } else { "; IMPACT_ADVOCATE_CREATE_PARTICIPANTS off" };
    let line = format!(
        "impact.com Advocate sandbox {url} (--advocate-sandbox; program `{ADVOCATE_SANDBOX_ALIAS}`; participants: GET {url}/__sandbox/participants){creates}"
    );
    Ok((handle, line))
}

/// The banner's referral lines: the routes, then one line per partner.
pub fn banner_lines(addr: std::net::SocketAddr, partners: &[String]) -> Vec<String> {
    use hubrelay_http::referrals::{EXTOLE_PATH, HUBSPOT_PATH, IMPACT_PATH};
    let url = format!("http://{addr}");
    let mut lines = vec![format!("POST {url}{HUBSPOT_PATH}  POST {url}{EXTOLE_PATH}  POST {url}{IMPACT_PATH}")];
    lines.extend(partners.iter().cloned());
    lines
}

//! A tenant's referral partners: its own Extole, impact.com and impact.com Advocate accounts and the secrets their
//! webhooks are signed with, and its own outbound endpoint. A tenant never uses the deployment's partner accounts
//! (a brand's referral events and participants are not another brand's); it takes only the deployment's program
//! settings (event names, stages, the advocate-code property), which name no account. A partner is on for a
//! tenant when the tenant has an account with it. The outbound endpoint is the operator's own system: a tenant
//! without one of its own sends its contact changes to the deployment's, each naming the tenant.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::referral::ReferralLayer;

/// Settings in the clear: where the tenant's partner accounts are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartnerSettings {
    /// Another Extole-compatible base URL (a test account) [default: Extole's API].
    pub extole_base_url: Option<String>,
    pub impact_account_sid: Option<String>,
    /// Another impact.com-compatible base URL [default: impact.com's API].
    pub impact_base_url: Option<String>,
    /// The impact.com program (campaign) its conversions are recorded in.
    pub impact_campaign_id: Option<String>,
    /// The tenant's impact.com Advocate (SaaSquatch) program, for the participant sync (its API key is a secret).
    pub advocate_tenant_alias: Option<String>,
    /// Another Advocate-compatible base URL [default: SaaSquatch's API].
    pub advocate_base_url: Option<String>,
    /// Whether a created or unmapped contact creates a participant [default: on].
    pub advocate_create_participants: Option<bool>,
    /// Where the tenant's HubSpot contact changes are sent (its signing secret is a secret) [default: the
    /// deployment's endpoint].
    pub outbound_url: Option<String>,
}

/// Sealed with the tenant's other secrets.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartnerSecrets {
    pub extole_token: Option<String>,
    pub impact_auth_token: Option<String>,
    /// Secrets Extole signs its webhooks to the tenant's `/t/{tenant}/v1/referrals/extole` with, newest last.
    pub extole_webhook_secrets: Vec<String>,
    /// Secrets impact.com (Advocate) signs its webhooks with, newest last.
    pub impact_webhook_secrets: Vec<String>,
    pub advocate_api_key: Option<String>,
    /// What the tenant's outbound changes are signed with (Standard Webhooks).
    pub outbound_secret: Option<String>,
}

impl fmt::Debug for PartnerSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartnerSecrets")
            .field("extole_token", &self.extole_token.is_some())
            .field("impact_auth_token", &self.impact_auth_token.is_some())
            .field("extole_webhook_secrets", &self.extole_webhook_secrets.len())
            .field("impact_webhook_secrets", &self.impact_webhook_secrets.len())
            .field("advocate_api_key", &self.advocate_api_key.is_some())
            .field("outbound_secret", &self.outbound_secret.is_some())
            .finish()
    }
}

/// The tenant's referral layer: its accounts and secrets over the deployment's program settings (`base`).
pub fn referral_layer(
    settings: &PartnerSettings,
    secrets: &PartnerSecrets,
    base: Option<&ReferralLayer>,
) -> ReferralLayer {
    let program = base.cloned().unwrap_or_default();
    ReferralLayer {
        extole_token: secrets.extole_token.clone(),
        extole_base_url: settings.extole_base_url.clone(),
        extole_webhook_secrets: Some(secrets.extole_webhook_secrets.clone()),
        impact_account_sid: settings.impact_account_sid.clone(),
        impact_auth_token: secrets.impact_auth_token.clone(),
        impact_base_url: settings.impact_base_url.clone(),
        impact_campaign_id: settings.impact_campaign_id.clone(),
        impact_webhook_secrets: Some(secrets.impact_webhook_secrets.clone()),
        extole_enabled: Some(secrets.extole_token.is_some()),
        impact_enabled: Some(settings.impact_account_sid.is_some()),
        // Its own Advocate program or none: never the deployment's (`..program` would lend it).
        advocate_tenant_alias: settings.advocate_tenant_alias.clone(),
        advocate_api_key: secrets.advocate_api_key.clone(),
        advocate_base_url: settings.advocate_base_url.clone(),
        advocate_create_participants: settings.advocate_create_participants,
        ..program
    }
}

/// What `tenants list` shows of a tenant's partners: `extole+impact`, `extole`, `-`.
pub fn describe(settings: &PartnerSettings, secrets: &PartnerSecrets) -> String {
    let mut on = Vec::new();
    if secrets.extole_token.is_some() {
        on.push("extole");
    }
    if settings.impact_account_sid.is_some() {
        on.push("impact");
    }
    if settings.advocate_tenant_alias.is_some() {
        on.push("advocate");
    }
    if settings.outbound_url.is_some() {
        on.push("outbound");
    }
    if on.is_empty() {
        "-".into()
    } else {
        on.join("+")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::referral::{ExtoleTarget, ImpactTarget, ReferralSettings};

    #[test]
    fn a_tenant_takes_the_deployments_program_but_never_its_accounts() {
        let base = ReferralLayer {
            extole_token: Some("deployment-extole".into()),
            impact_account_sid: Some("IRdeployment".into()),
            impact_auth_token: Some("deployment-impact".into()),
            impact_campaign_id: Some("77".into()),
            extole_webhook_secrets: Some(vec!["deployment-hook".into()]),
            stages: Some(vec!["contractsent".into()]),
            signup_event: Some("joined".into()),
            ..ReferralLayer::default()
        };
        let own = referral_layer(&PartnerSettings::default(), &PartnerSecrets::default(), Some(&base));
        let s = ReferralSettings::from_layer(Some(&own)).unwrap();
        assert!(s.extole == ExtoleTarget::Sandbox && s.impact == ImpactTarget::Sandbox);
        assert!(s.extole_webhook_secrets.is_empty());
        assert!(!s.config.extole_enabled && !s.config.impact_enabled, "no account, nothing planned for it");
        assert_eq!((s.config.stages.clone(), s.config.signup_event.as_str()), (vec!["contractsent".into()], "joined"));

        let settings = PartnerSettings {
            impact_account_sid: Some("IRacme".into()),
            impact_campaign_id: Some("12".into()),
            ..PartnerSettings::default()
        };
        let secrets = PartnerSecrets {
            extole_token: Some("acme-extole".into()),
            impact_auth_token: Some("acme-impact".into()),
            ..PartnerSecrets::default()
        };
        let s = ReferralSettings::from_layer(Some(&referral_layer(&settings, &secrets, Some(&base)))).unwrap();
        assert!(matches!(&s.extole, ExtoleTarget::Api { token, .. } if token == "acme-extole"));
        assert!(matches!(&s.impact, ImpactTarget::Api { account_sid, .. } if account_sid == "IRacme"));
        assert_eq!(s.config.impact_campaign_id.as_deref(), Some("12"));
        assert!(s.config.extole_enabled && s.config.impact_enabled);
        assert_eq!(describe(&settings, &secrets), "extole+impact");
        assert!(!format!("{secrets:?}").contains("acme-"));
    }

    #[test]
    fn a_tenant_syncs_participants_to_its_own_advocate_program_only() {
        let base = ReferralLayer {
            advocate_tenant_alias: Some("deployment-program".into()),
            advocate_api_key: Some("deployment-key".into()),
            advocate_create_participants: Some(false),
            ..ReferralLayer::default()
        };
        let none = referral_layer(&PartnerSettings::default(), &PartnerSecrets::default(), Some(&base));
        assert!(ReferralSettings::from_layer(Some(&none)).unwrap().advocate.is_none(), "never the deployment's");
        let settings = PartnerSettings { advocate_tenant_alias: Some("acme-program".into()), ..Default::default() };
        let secrets = PartnerSecrets { advocate_api_key: Some("acme-key".into()), ..Default::default() };
        let own = ReferralSettings::from_layer(Some(&referral_layer(&settings, &secrets, Some(&base)))).unwrap();
        let advocate = own.advocate.expect("its own program");
        assert_eq!((advocate.tenant_alias.as_str(), advocate.api_key.as_str()), ("acme-program", "acme-key"));
        assert!(own.config.create_participants, "its own switch (default on), not the deployment's");
        assert_eq!(describe(&settings, &secrets), "advocate");
        assert!(!format!("{secrets:?}").contains("acme-key"));
    }
}

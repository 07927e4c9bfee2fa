//! Referral settings: partner credentials and base URLs, partner webhook secrets, and the [`ReferralConfig`]
//! (event names, stages, targets). One `[referral]` table in the config file, or environment variables; the
//! layer merges field by field like the rest of [`crate::config::Layer`].

use serde::Deserialize;

use super::{split_list, ConfigError};
use crate::auth::partners::{PartnerScheme, PartnerSecretError, PartnerVerifier};
use crate::referral::ReferralConfig;

/// The `[referral]` table / environment layer; every field optional so layers merge.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReferralLayer {
    pub extole_token: Option<String>,
    pub extole_base_url: Option<String>,
    pub extole_webhook_secrets: Option<Vec<String>>,
    pub impact_account_sid: Option<String>,
    pub impact_auth_token: Option<String>,
    pub impact_base_url: Option<String>,
    pub impact_campaign_id: Option<String>,
    pub impact_webhook_secrets: Option<Vec<String>>,
    pub signup_event: Option<String>,
    pub converted_event: Option<String>,
    pub stages: Option<Vec<String>>,
    pub advocate_code_property: Option<String>,
    pub extole_enabled: Option<bool>,
    pub impact_enabled: Option<bool>,
    /// impact.com Advocate (SaaSquatch) participant sync: the tenant alias, API key and base URL.
    pub advocate_tenant_alias: Option<String>,
    pub advocate_api_key: Option<String>,
    pub advocate_base_url: Option<String>,
    /// The guide's switchable rule: a HubSpot contact created (or an unmapped one updated) creates a participant.
    pub advocate_create_participants: Option<bool>,
}

impl ReferralLayer {
    /// Fields set in `other` override ours.
    pub fn merge(mut self, other: ReferralLayer) -> ReferralLayer {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(
            extole_token,
            extole_base_url,
            extole_webhook_secrets,
            impact_account_sid,
            impact_auth_token,
            impact_base_url,
            impact_campaign_id,
            impact_webhook_secrets,
            signup_event,
            converted_event,
            stages,
            advocate_code_property,
            extole_enabled,
            impact_enabled,
            advocate_tenant_alias,
            advocate_api_key,
            advocate_base_url,
            advocate_create_participants
        );
        self
    }

    /// `EXTOLE_*`, `IMPACT_*` and `HUBRELAY_REFERRAL_*` variables; `None` when none is set. Blank values are unset.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<ReferralLayer>, ConfigError> {
        let text = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let list = |k: &str| text(k).map(|v| split_list(&v));
        let switch = |k: &'static str| -> Result<Option<bool>, ConfigError> {
            text(k)
                .map(|v| match v.to_ascii_lowercase().as_str() {
                    "on" | "true" | "1" | "yes" => Ok(true),
                    "off" | "false" | "0" | "no" => Ok(false),
                    _ => Err(ConfigError::Invalid { setting: k, message: format!("`{v}` is not on or off") }),
                })
                .transpose()
        };
        let layer = ReferralLayer {
            extole_token: text("EXTOLE_API_TOKEN"),
            extole_base_url: text("EXTOLE_BASE_URL"),
            extole_webhook_secrets: list("EXTOLE_WEBHOOK_SECRETS"),
            impact_account_sid: text("IMPACT_ACCOUNT_SID"),
            impact_auth_token: text("IMPACT_AUTH_TOKEN"),
            impact_base_url: text("IMPACT_BASE_URL"),
            impact_campaign_id: text("IMPACT_CAMPAIGN_ID"),
            impact_webhook_secrets: list("IMPACT_WEBHOOK_SECRETS"),
            signup_event: text("HUBRELAY_REFERRAL_SIGNUP_EVENT"),
            converted_event: text("HUBRELAY_REFERRAL_CONVERTED_EVENT"),
            stages: list("HUBRELAY_REFERRAL_STAGES"),
            advocate_code_property: text("HUBRELAY_REFERRAL_CODE_PROPERTY"),
            extole_enabled: switch("HUBRELAY_REFERRAL_EXTOLE")?,
            impact_enabled: switch("HUBRELAY_REFERRAL_IMPACT")?,
            advocate_tenant_alias: text("IMPACT_ADVOCATE_TENANT_ALIAS"),
            advocate_api_key: text("IMPACT_ADVOCATE_API_KEY"),
            advocate_base_url: text("IMPACT_ADVOCATE_BASE_URL"),
            advocate_create_participants: switch("IMPACT_ADVOCATE_CREATE_PARTICIPANTS")?,
        };
        Ok((layer != ReferralLayer::default()).then_some(layer))
    }
}

/// Where Extole calls go.
#[derive(Clone, PartialEq, Eq)]
pub enum ExtoleTarget {
    Api {
        base_url: String,
        token: String,
    },
    /// No token: `hubrelay serve` starts the Extole sandbox (a Lambda parks Extole actions as `not_configured`).
    Sandbox,
}

/// Where impact.com calls go.
#[derive(Clone, PartialEq, Eq)]
pub enum ImpactTarget {
    Api {
        base_url: String,
        account_sid: String,
        auth_token: String,
    },
    /// No Account SID: `hubrelay serve` starts the impact sandbox.
    Sandbox,
}

/// Where the Advocate participant sync goes (`IMPACT_ADVOCATE_TENANT_ALIAS` and `_API_KEY`; off without them).
#[derive(Clone, PartialEq, Eq)]
pub struct AdvocateTarget {
    pub base_url: String,
    pub tenant_alias: String,
    pub api_key: String,
}

/// SaaSquatch's API.
pub const ADVOCATE_DEFAULT_BASE_URL: &str = "https://app.referralsaasquatch.com";

/// Validated referral settings.
#[derive(Clone)]
pub struct ReferralSettings {
    pub config: ReferralConfig,
    pub extole: ExtoleTarget,
    pub impact: ImpactTarget,
    /// The Advocate participant sync, when configured.
    pub advocate: Option<AdvocateTarget>,
    pub extole_webhook_secrets: Vec<String>,
    pub impact_webhook_secrets: Vec<String>,
}

impl std::fmt::Debug for ReferralSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials never appear in debug output.
        f.debug_struct("ReferralSettings")
            .field("config", &self.config)
            .field("extole_api", &matches!(self.extole, ExtoleTarget::Api { .. }))
            .field("impact_api", &matches!(self.impact, ImpactTarget::Api { .. }))
            .finish_non_exhaustive()
    }
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { setting, message: message.into() }
}

fn url(setting: &'static str, v: Option<&String>, default: &str) -> Result<String, ConfigError> {
    let v = v.cloned().unwrap_or_else(|| default.to_string());
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(v.trim_end_matches('/').to_string())
    } else {
        Err(invalid(setting, format!("`{v}` is not an http(s) URL")))
    }
}

/// A name HubSpot and the partners accept: letters, digits, `_`, `-`, `.`.
fn check_name(setting: &'static str, v: &str) -> Result<(), ConfigError> {
    let ok = !v.is_empty() && v.len() <= 100 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(setting, format!("`{v}` must be 1 to 100 letters, digits, `_`, `-` or `.`")))
    }
}

impl ReferralSettings {
    pub fn from_layer(layer: Option<&ReferralLayer>) -> Result<ReferralSettings, ConfigError> {
        let empty = ReferralLayer::default();
        let l = layer.unwrap_or(&empty);
        let d = ReferralConfig::default();
        let mut config = ReferralConfig {
            signup_event: l.signup_event.clone().unwrap_or(d.signup_event),
            converted_event: l.converted_event.clone().unwrap_or(d.converted_event),
            stages: l.stages.clone().unwrap_or(d.stages),
            advocate_code_property: l.advocate_code_property.clone().unwrap_or(d.advocate_code_property),
            extole_enabled: l.extole_enabled.unwrap_or(true),
            impact_enabled: l.impact_enabled.unwrap_or(true),
            impact_campaign_id: l.impact_campaign_id.clone(),
            ..d
        };
        check_name("HUBRELAY_REFERRAL_SIGNUP_EVENT", &config.signup_event)?;
        check_name("HUBRELAY_REFERRAL_CONVERTED_EVENT", &config.converted_event)?;
        check_name("HUBRELAY_REFERRAL_CODE_PROPERTY", &config.advocate_code_property)?;
        if config.stages.is_empty() {
            return Err(invalid(
                "HUBRELAY_REFERRAL_STAGES",
                "is empty: name at least one deal stage id, e.g. closedwon",
            ));
        }
        for s in &config.stages {
            check_name("HUBRELAY_REFERRAL_STAGES", s)?;
        }
        if let Some(c) =
            config.impact_campaign_id.as_deref().filter(|c| c.is_empty() || !c.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("IMPACT_CAMPAIGN_ID", format!("`{c}` is not a numeric program (campaign) id")));
        }
        let extole = match &l.extole_token {
            Some(token) => ExtoleTarget::Api {
                base_url: url(
                    "EXTOLE_BASE_URL",
                    l.extole_base_url.as_ref(),
                    crate::partners::extole::DEFAULT_BASE_URL,
                )?,
                token: token.clone(),
            },
            None => ExtoleTarget::Sandbox,
        };
        let impact = match (&l.impact_account_sid, &l.impact_auth_token) {
            (Some(sid), Some(auth_token)) => {
                if config.impact_enabled && config.impact_campaign_id.is_none() {
                    return Err(invalid(
                        "IMPACT_CAMPAIGN_ID",
                        "required with IMPACT_ACCOUNT_SID (or switch impact off: HUBRELAY_REFERRAL_IMPACT=off)",
                    ));
                }
                ImpactTarget::Api {
                    base_url: url(
                        "IMPACT_BASE_URL",
                        l.impact_base_url.as_ref(),
                        crate::partners::impact::DEFAULT_BASE_URL,
                    )?,
                    account_sid: sid.clone(),
                    auth_token: auth_token.clone(),
                }
            }
            (Some(_), None) => return Err(invalid("IMPACT_AUTH_TOKEN", "required with IMPACT_ACCOUNT_SID")),
            (None, Some(_)) => return Err(invalid("IMPACT_ACCOUNT_SID", "required with IMPACT_AUTH_TOKEN")),
            (None, None) => {
                // The sandbox takes any campaign; give it one so conversions can be built.
                config.impact_campaign_id.get_or_insert_with(|| "1000".into());
                ImpactTarget::Sandbox
            }
        };
        let advocate = match (&l.advocate_tenant_alias, &l.advocate_api_key) {
            (Some(alias), Some(key)) => {
                check_name("IMPACT_ADVOCATE_TENANT_ALIAS", alias)?;
                Some(AdvocateTarget {
                    base_url: url("IMPACT_ADVOCATE_BASE_URL", l.advocate_base_url.as_ref(), ADVOCATE_DEFAULT_BASE_URL)?,
                    tenant_alias: alias.clone(),
                    api_key: key.clone(),
                })
            }
            (Some(_), None) => {
                return Err(invalid("IMPACT_ADVOCATE_API_KEY", "required with IMPACT_ADVOCATE_TENANT_ALIAS"))
            }
            (None, Some(_)) => {
                return Err(invalid("IMPACT_ADVOCATE_TENANT_ALIAS", "required with IMPACT_ADVOCATE_API_KEY"))
            }
            (None, None) => None,
        };
        config.participant_sync = advocate.is_some();
        config.create_participants = l.advocate_create_participants.unwrap_or(true);
        let settings = ReferralSettings {
            config,
            extole,
            impact,
            advocate,
            extole_webhook_secrets: l.extole_webhook_secrets.clone().unwrap_or_default(),
            impact_webhook_secrets: l.impact_webhook_secrets.clone().unwrap_or_default(),
        };
        settings.verifiers()?;
        Ok(settings)
    }

    /// The partner webhook verifiers (`None` where no secret is configured: that route then takes bearer tokens only).
    pub fn verifiers(&self) -> Result<(Option<PartnerVerifier>, Option<PartnerVerifier>), ConfigError> {
        let build = |setting: &'static str, scheme, secrets: &[String]| {
            if secrets.is_empty() {
                return Ok(None);
            }
            PartnerVerifier::new(scheme, secrets)
                .map(Some)
                .map_err(|e: PartnerSecretError| invalid(setting, e.to_string()))
        };
        Ok((
            build("EXTOLE_WEBHOOK_SECRETS", PartnerScheme::Extole, &self.extole_webhook_secrets)?,
            build("IMPACT_WEBHOOK_SECRETS", PartnerScheme::SaasquatchHook, &self.impact_webhook_secrets)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<ReferralSettings, String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let layer = ReferralLayer::from_env(&|k| map.get(k).cloned()).map_err(|e| e.to_string())?;
        ReferralSettings::from_layer(layer.as_ref()).map_err(|e| e.to_string())
    }

    #[test]
    fn nothing_set_means_sandboxes_and_the_guides_defaults() {
        let s = settings(&[]).unwrap();
        assert!(s.extole == ExtoleTarget::Sandbox && s.impact == ImpactTarget::Sandbox);
        assert_eq!((s.config.signup_event.as_str(), s.config.converted_event.as_str()), ("signed_up", "converted"));
        assert_eq!(s.config.stages, vec!["closedwon".to_string()]);
        assert_eq!(s.config.impact_campaign_id.as_deref(), Some("1000"));
        assert!(s.verifiers().unwrap().0.is_none());
    }

    #[test]
    fn credentials_select_the_apis() {
        let s = settings(&[
            ("EXTOLE_API_TOKEN", "ext-1"),
            ("IMPACT_ACCOUNT_SID", "IRabc"),
            ("IMPACT_AUTH_TOKEN", "tok"),
            ("IMPACT_CAMPAIGN_ID", "1234"),
            ("IMPACT_BASE_URL", "http://127.0.0.1:9/"),
            ("HUBRELAY_REFERRAL_STAGES", "closedwon, contractsent"),
            ("HUBRELAY_REFERRAL_EXTOLE", "off"),
        ])
        .unwrap();
        assert!(s.extole == ExtoleTarget::Api { base_url: "https://api.extole.io".into(), token: "ext-1".into() });
        assert!(matches!(&s.impact, ImpactTarget::Api { base_url, .. } if base_url == "http://127.0.0.1:9"));
        assert_eq!(s.config.stages, vec!["closedwon".to_string(), "contractsent".to_string()]);
        assert!(!s.config.extole_enabled && s.config.impact_enabled);
        assert!(!format!("{s:?}").contains("ext-1"));
    }

    #[test]
    fn errors_name_the_setting() {
        let err = |pairs: &[(&str, &str)]| settings(pairs).unwrap_err();
        assert!(err(&[("IMPACT_ACCOUNT_SID", "IRabc"), ("IMPACT_AUTH_TOKEN", "t")]).starts_with("IMPACT_CAMPAIGN_ID:"));
        assert_eq!(err(&[("IMPACT_ACCOUNT_SID", "IRabc")]), "IMPACT_AUTH_TOKEN: required with IMPACT_ACCOUNT_SID");
        assert_eq!(err(&[("HUBRELAY_REFERRAL_IMPACT", "maybe")]), "HUBRELAY_REFERRAL_IMPACT: `maybe` is not on or off");
        assert!(err(&[("EXTOLE_API_TOKEN", "t"), ("EXTOLE_BASE_URL", "ftp://x")]).starts_with("EXTOLE_BASE_URL:"));
        assert_eq!(
            err(&[("IMPACT_CAMPAIGN_ID", "abc")]),
            "IMPACT_CAMPAIGN_ID: `abc` is not a numeric program (campaign) id"
        );
        assert!(err(&[("HUBRELAY_REFERRAL_STAGES", "closed won")]).starts_with("HUBRELAY_REFERRAL_STAGES:"));
        assert!(err(&[("HUBRELAY_REFERRAL_STAGES", " , ")]).starts_with("HUBRELAY_REFERRAL_STAGES: is empty"));
    }
}

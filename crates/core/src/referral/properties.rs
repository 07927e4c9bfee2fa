//! The contact properties the referral flows read and write (Extole's guide creates `advocate_code`,
//! `share_code`, `share_link`, `extole_app_type`; the impact.com Advocate guide the Advocate ones): created when missing, like
//! the mapping profile's: [`crate::properties::required`] lists both.

use super::{
    ReferralConfig, ADVOCATE_ACCOUNT_ID, ADVOCATE_MESSAGE_LINKS, ADVOCATE_REFERRAL_CODE, ADVOCATE_REFERRAL_COOKIE,
    ADVOCATE_REFERRAL_STATUS, ADVOCATE_REFERRED_BY_CODE, ADVOCATE_SHARE_LINK, ADVOCATE_USER_ID,
};
use crate::hubspot::PropertyDefinition;

fn text(name: &str, label: &str) -> PropertyDefinition {
    PropertyDefinition {
        name: name.to_string(),
        label: label.to_string(),
        kind: "string".into(),
        field_type: "text".into(),
        group_name: "contactinformation".into(),
        options: Vec::new(),
    }
}

/// The referral contact properties the enabled programs write: Extole's (the advocate-code property its
/// sign-ups read, share links) when Extole is on, the Advocate ones when impact.com is on.
pub fn definitions(config: &ReferralConfig) -> Vec<PropertyDefinition> {
    let mut out = Vec::new();
    if config.extole_enabled {
        out.extend([
            text(&config.advocate_code_property, "Advocate code"),
            text("share_code", "Extole share code"),
            text("share_link", "Extole share link"),
            text("extole_app_type", "Extole app type"),
        ]);
    }
    if config.impact_enabled {
        out.extend([
            text(ADVOCATE_REFERRAL_CODE, "Advocate referral code"),
            text(ADVOCATE_SHARE_LINK, "Advocate share link"),
            text(ADVOCATE_REFERRED_BY_CODE, "Advocate referred-by code"),
            text(ADVOCATE_USER_ID, "Advocate user id"),
            text(ADVOCATE_ACCOUNT_ID, "Advocate account id"),
            PropertyDefinition {
                field_type: "textarea".into(),
                ..text(ADVOCATE_MESSAGE_LINKS, "Advocate message links")
            },
            text(ADVOCATE_REFERRAL_COOKIE, "Advocate referral cookie"),
            text(ADVOCATE_REFERRAL_STATUS, "Advocate referral status"),
        ]);
    }
    out
}

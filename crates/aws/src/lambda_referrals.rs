//! The referral parts of the Lambda wiring: the three routes of `referral-event`, and the delivery the
//! `retry-worker` uses (partner clients from the settings; a partner without credentials is left out, and
//! its actions are parked as `not_configured` until it is configured and they are redriven).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use crate::lambda::InitError;
use hubrelay_clients::ExtoleClient;
use hubrelay_clients::ImpactClient;
use hubrelay_core::config::RelaySettings;
use hubrelay_core::hubspot::HubSpot;
use hubrelay_core::partners::{Extole, Impact};
use hubrelay_core::referral::deliver::ReferralDelivery;
use hubrelay_core::referral::settings::{ExtoleTarget, ImpactTarget};
use hubrelay_http::intake::Intake;
use hubrelay_http::{referral_routes, ReferralService, ReferralSource};

/// How long a partner call may take (the worker Lambda handles a batch within its timeout).
const PARTNER_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn routes(settings: &RelaySettings, intake: impl Fn() -> Intake) -> Result<Router, InitError> {
    let (extole, impact) = settings.referral.verifiers()?;
    let config = &settings.referral.config;
    let service = |source, verifier| Arc::new(ReferralService::new(source, intake(), verifier, config.clone()));
    Ok(referral_routes(service(ReferralSource::HubSpot, None))
        .merge(referral_routes(service(ReferralSource::Extole, extole)))
        .merge(referral_routes(service(ReferralSource::Impact, impact))))
}

pub(super) fn delivery(settings: &RelaySettings, hubspot: Arc<dyn HubSpot>) -> Result<ReferralDelivery, InitError> {
    let r = &settings.referral;
    let extole: Option<Arc<dyn Extole>> = match &r.extole {
        ExtoleTarget::Api { base_url, token } => Some(Arc::new(
            ExtoleClient::new(base_url, token, PARTNER_TIMEOUT).map_err(|e| InitError::Aws(e.to_string()))?,
        )),
        ExtoleTarget::Sandbox => None,
    };
    let impact: Option<Arc<dyn Impact>> = match &r.impact {
        ImpactTarget::Api { base_url, account_sid, auth_token } => Some(Arc::new(
            ImpactClient::new(base_url, account_sid, auth_token, PARTNER_TIMEOUT)
                .map_err(|e| InitError::Aws(e.to_string()))?,
        )),
        ImpactTarget::Sandbox => None,
    };
    Ok(ReferralDelivery::new(hubspot, extole, impact, r.config.clone()))
}

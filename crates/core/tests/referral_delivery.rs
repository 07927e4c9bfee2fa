//! ReferralDelivery against the HubSpot and partner sandboxes.

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Arc;

use hubrelay_clients::ExtoleClient;
use hubrelay_clients::HubSpotClient;
use hubrelay_core::domain::{AttemptOutcome, ContactUpsert};
use hubrelay_core::hubspot::HubSpot;
use hubrelay_core::partners::Extole;
use hubrelay_core::referral::actions::ReferralAction;
use hubrelay_core::referral::deliver::*;
use hubrelay_core::referral::{ContactSignup, DealStage, ReferralConfig};
use hubrelay_sandbox::hubspot::SandboxOptions;
use hubrelay_sandbox::partners::{ExtoleSandbox, ExtoleSandboxOptions, PartnerFaults};
use time::OffsetDateTime;

#[tokio::test]
async fn partner_answers_decide_retry_or_park_and_contacts_without_code_are_skipped() {
    let token = "t".to_string();
    let hs = hubrelay_sandbox::hubspot::spawn(
        SandboxOptions { token: Some(token.clone()), ..Default::default() },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let hubspot = HubSpotClient::new(&hs.url(), &token, Duration::from_secs(5)).unwrap();
    let upsert = ContactUpsert { email: "nocode@example.com".into(), properties: BTreeMap::new() };
    let contact = hubspot.upsert_contact(&upsert).await.unwrap().id;
    let extole_sb = ExtoleSandbox::new(ExtoleSandboxOptions::default());
    let ext = extole_sb.serve_local().await.unwrap();
    let extole: Arc<dyn Extole> = Arc::new(ExtoleClient::new(&ext.url(), "x", Duration::from_secs(5)).unwrap());
    let config = ReferralConfig { impact_campaign_id: Some("1".into()), ..ReferralConfig::default() };
    let d = ReferralDelivery::new(Arc::new(hubspot), Some(extole), None, config);
    let now = OffsetDateTime::now_utc();

    // The code is read from HubSpot (the property does not even exist there): nothing to send.
    let by_id = ReferralAction::ExtoleSignup(ContactSignup { contact_id: Some(contact), ..Default::default() });
    assert!(matches!(d.deliver(&by_id, now).await.unwrap(), ReferralOutcome::Skipped { .. }));

    let deal = DealStage {
        deal_id: "42".into(),
        stage: "closedwon".into(),
        contact_email: Some("won@example.com".into()),
        ..Default::default()
    };
    let converted = ReferralAction::ExtoleConverted(deal.clone());
    extole_sb.set_faults(PartnerFaults { fail_next: 1, status: 503, retry_after_secs: Some(7) });
    let e = d.deliver(&converted, now).await.unwrap_err();
    assert_eq!((e.outcome(), e.retry_after_secs), (AttemptOutcome::Retryable, Some(7)));
    extole_sb.set_faults(PartnerFaults { fail_next: 1, status: 400, retry_after_secs: None });
    let e = d.deliver(&converted, now).await.unwrap_err();
    assert_eq!((e.outcome(), e.status), (AttemptOutcome::Rejected, Some(400)));
    assert!(e.message.contains("The request was refused"), "{e:?}");
    let sent = d.deliver(&converted, now).await.unwrap();
    assert_eq!(sent, ReferralOutcome::Sent { reference: "42".into() });

    let e = d.deliver(&ReferralAction::ImpactConversion(deal), now).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.outcome()), ("not_configured", AttemptOutcome::Rejected));
    let e = d.deliver_event(&serde_json::json!({"action": "nope"}), now).await.unwrap_err();
    assert_eq!(e.code, "unreadable_event");
}

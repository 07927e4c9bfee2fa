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
    let e = d.deliver_event(&serde_json::json!({"action": "nope"}), now, now).await.unwrap_err();
    assert_eq!(e.code, "unreadable_event");
}

/// One property of contact `id`, as the sandbox holds it now.
async fn contact_property(hubspot: &HubSpotClient, id: &str, name: &str) -> Option<String> {
    let c = hubspot.read_object("contacts", id, &[name], &[]).await.unwrap().unwrap();
    c.properties.get(name).cloned()
}

fn referral(webhook: &str, kind: &str, referred: &str, referrer: &str) -> ReferralAction {
    let body = serde_json::json!({"id": webhook, "type": kind, "tenantAlias": "t1", "live": true, "created": 1,
        "data": {"id": "r1", "referredUser": referred, "referredAccount": referred, "referrerUser": referrer,
                 "referrerAccount": referrer}});
    match hubrelay_core::referral::parse_advocate(body.to_string().as_bytes()).unwrap() {
        hubrelay_core::referral::AdvocateEvent::Update(u) => ReferralAction::UpdateAdvocateUser(u),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn advocate_user_events_wait_out_the_search_lag_and_never_create_a_contact() {
    use hubrelay_core::referral::{ADVOCATE_REFERRAL_CODE, ADVOCATE_REFERRAL_STATUS, ADVOCATE_REFERRED_BY_CODE};
    use hubrelay_sandbox::hubspot::Faults;
    let token = "t".to_string();
    let faults = Faults { search_lag_ms: 1_000, ..Faults::default() };
    let hs = hubrelay_sandbox::hubspot::spawn(
        SandboxOptions { token: Some(token.clone()), faults, ..Default::default() },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let hubspot = HubSpotClient::new(&hs.url(), &token, Duration::from_secs(5)).unwrap();
    let config = ReferralConfig::default();
    for def in hubrelay_core::referral::properties::definitions(&config) {
        hubspot.create_property(&def).await.unwrap();
    }
    let upsert = |email: &str, user: &str, code: &str| ContactUpsert {
        email: email.into(),
        properties: [("advocate_user_id", user), (ADVOCATE_REFERRAL_CODE, code)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    hubspot.upsert_contact(&upsert("bob@example.com", "u1", "BOB1")).await.unwrap();
    let cy = hubspot.upsert_contact(&upsert("cy@example.com", "u2", "CY2")).await.unwrap().id;
    let d = ReferralDelivery::new(Arc::new(hubspot.clone()), None, None, config);
    let now = OffsetDateTime::now_utc();

    // Just written: the index does not have them yet. Retried, not parked, and nothing created.
    let started = referral("wh_1", "referral.started", "u2", "u1");
    let e = d.deliver(&started, now).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.outcome()), ("contact_not_indexed", AttemptOutcome::Retryable), "{e:?}");
    // An hour on, no lag explains it: parked for a look.
    let e = d.deliver(&started, now - time::Duration::hours(2)).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.outcome()), ("contact_not_found", AttemptOutcome::Rejected));
    // Redriven just now, two hours after it arrived: the wait starts again from the redrive.
    let e = d.deliver_since(&started, now - time::Duration::hours(2), now).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.outcome()), ("contact_not_indexed", AttemptOutcome::Retryable), "{e:?}");

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let sent = d.deliver(&started, now).await.unwrap();
    assert_eq!(sent, ReferralOutcome::Sent { reference: cy.clone() });
    assert_eq!(contact_property(&hubspot, &cy, ADVOCATE_REFERRAL_STATUS).await.as_deref(), Some("started"));
    assert_eq!(
        contact_property(&hubspot, &cy, ADVOCATE_REFERRED_BY_CODE).await.as_deref(),
        Some("BOB1"),
        "the referrer's code, read off their contact"
    );

    // Converted, then a late `started`: the conversion stays (the contact is read as it is now, not as indexed).
    d.deliver(&referral("wh_2", "referral.converted", "u2", "u1"), now).await.unwrap();
    d.deliver(&referral("wh_3", "referral.started", "u2", "u1"), now).await.unwrap();
    assert_eq!(contact_property(&hubspot, &cy, ADVOCATE_REFERRAL_STATUS).await.as_deref(), Some("converted"));

    let e = d.deliver(&referral("wh_4", "referral.started", "u9", "u1"), now).await.unwrap_err();
    assert_eq!(e.code, "contact_not_indexed");
    assert_eq!(hs.sandbox.contact_count().unwrap(), 2, "an id never creates a contact");
}

//! The real `operator-console` bootstrap under a Lambda Runtime API emulator, invoked with API Gateway HTTP API
//! events as its own `$default`-stage API sends them (cookies apart, forms url-encoded), against moto server:
//! the operators' tokens come from an SSM SecureString; a sender's token does not sign in; an operator finds a
//! lead the retry-worker dead-lettered (another tenant's is not shown), redrives it after the preview, and finds
//! it back on the retry queue; the audit trail, kept in the DynamoDB table, names the operator; the portals page
//! lists the registry's tenant and checks each portal's properties with its own credential.

use hubrelay_testkit::runtime::{self, HttpAnswer, HttpRequest};
use hubrelay_testkit::worker::retry_message;

use std::path::Path;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use hubrelay_core::domain::{DeadLetterReason, RetryMessage, TenantId};
use hubrelay_core::store::RetryQueue;
use hubrelay_core::tenant::{HubSpotAuth, MappingProfile, Tenant, TenantSecrets};
use serde_json::json;

const OPERATOR_TOKEN: &str = "alice-console-token-0123456789";
const TENANT_KEY_HEX: &str = "5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5";

/// The value of the page's first hidden `csrf` input.
fn csrf(page: &HttpAnswer) -> String {
    let at = page.body.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    page.body[at..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_signs_in_and_redrives_a_dead_letter_on_aws() {
    let stage = runtime::aws_stage().await;
    let ssm = hubrelay_testkit::moto::ssm(hubrelay_testkit::moto::shared());
    let operators = hubrelay_testkit::moto::secure_parameter(&ssm, &format!("alice:{OPERATOR_TOKEN}")).await;

    // Two leads the retry-worker gave up on: the stack's, and a tenant's.
    // Sealed with their people's keys, as the stack's functions send them.
    let keys = hubrelay_aws::dynamodb::DynamoIdempotencyStore::new(stage.dynamo.clone(), &stage.table);
    let queue = hubrelay_aws::sqs::SqsRetryQueue::new(stage.sqs.clone(), &stage.queue_url, &stage.dlq_url)
        .with_sealer(hubrelay_aws::sqs_seal::MessageSealer::new(keys));
    let reason = DeadLetterReason { code: "retries_exhausted".into(), message: "HubSpot kept answering 503".into() };
    let now = time::OffsetDateTime::now_utc();
    let dead_lettered = |email: &str| retry_message(&json!({"email": email, "first_name": "Parked"}), now, 3, now);
    let ours = dead_lettered("parked@example.com");
    queue.dead_letter(&ours, &reason).await.unwrap();
    let dealer: TenantId = "dealer".parse().unwrap();
    let theirs = dead_lettered("dealer-lead@example.com").for_tenant(Some(dealer.clone()));
    queue.for_tenant(&dealer).dead_letter(&theirs, &reason).await.unwrap();

    // The stack's portal has every custom property its mapping and referral partners need.
    let stack = hubrelay_core::config::RelaySettings::from_layer(&Default::default()).unwrap();
    let wanted = hubrelay_core::properties::required(&stack.mapping, &stack.referral.config);
    let hs = hubrelay_clients::HubSpotClient::new(&stage.sandbox.url(), runtime::SANDBOX_TOKEN, Duration::from_secs(5));
    hubrelay_core::properties::sync(&hs.unwrap(), &wanted).await.unwrap();

    // A tenant in the registry, on a portal of its own that has none of its mapping's custom properties yet.
    let key = hubrelay_core::sealed::SealingKey::from_hex(TENANT_KEY_HEX).unwrap();
    let registry = hubrelay_aws::dynamodb_tenants::DynamoTenants::new(stage.dynamo.clone(), &stage.table, key.into());
    let bare =
        hubrelay_sandbox::hubspot::SandboxOptions { token: Some("dealer-portal-token".into()), ..Default::default() };
    let dealer_portal = hubrelay_sandbox::hubspot::spawn(bare, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    registry
        .add(&Tenant {
            id: dealer.clone(),
            hub_id: None,
            hubspot_base_url: Some(dealer_portal.url()),
            mapping: MappingProfile::Builtin { name: "chat-widget".into() },
            rate_limit_per_10s: 100,
            daily_budget: Some(500),
            enabled: true,
            needs_reauth: false,
            partners: Default::default(),
            secrets: TenantSecrets {
                hubspot: HubSpotAuth::ServiceKey { token: "dealer-portal-token".into() },
                api_tokens: vec!["dealer-sender-token".into()],
                webhook_secrets: Vec::new(),
                partners: Default::default(),
            },
        })
        .await
        .unwrap();
    let tenant_key = hubrelay_testkit::moto::secure_parameter(&ssm, TENANT_KEY_HEX).await;

    // As template.yaml sets it: the operators' tokens and the tenant key from SSM, the stack's HubSpot token (for
    // checking its portal), its own API on the `$default` stage; no sender's token.
    let mut env = stage.env.clone();
    env.retain(|(k, _)| !matches!(*k, "HUBRELAY_API_TOKENS" | "HUBRELAY_STAGE"));
    env.push(("HUBRELAY_CONSOLE_OPERATORS_SSM_PARAMETER", operators));
    env.push(("HUBRELAY_TENANT_SECRETS_KEY_SSM_PARAMETER", tenant_key));
    env.push(("HUBRELAY_STAGE", "$default".into()));
    let f = runtime::start(Path::new(env!("CARGO_BIN_EXE_operator-console")), "operator-console", &env).await;

    // Signed out: sent to the sign-in page. A sender's token is not an operator's.
    let page =
        runtime::invoke_request(&f, &HttpRequest { method: "GET", path: "/console/events", ..Default::default() })
            .await;
    assert_eq!((page.status, page.headers["location"].as_str()), (303, Some("/console/login")), "{page:?}");
    let refused = post_form(&f, "/console/login", &[], &format!("token={}", runtime::API_TOKEN)).await;
    assert_eq!(refused.status, 401);
    let signed_in = post_form(&f, "/console/login", &[], &format!("token={OPERATOR_TOKEN}")).await;
    assert_eq!(signed_in.status, 303, "{signed_in:?}");
    let cookie = signed_in.cookies.first().expect("a session cookie").clone();
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let cookies = [cookie.split(';').next().unwrap().to_string()];
    let get = |path: &'static str, query: &'static str| HttpRequest {
        method: "GET",
        path,
        query,
        cookies: &cookies,
        ..Default::default()
    };

    // The stack's dead letter is listed, masked; the tenant's is in the tenant's view only.
    let page = runtime::invoke_request(&f, &get("/console/dead-letters", "")).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains(&ours.event_id) && page.body.contains("hubspot_unavailable"), "{}", page.body);
    assert!(!page.body.contains(&theirs.event_id), "another tenant's dead letter");
    assert!(!page.body.contains("parked@example.com"), "emails are masked");
    let tenant_page = runtime::invoke_request(&f, &get("/console/dead-letters", "tenant=dealer")).await;
    assert!(tenant_page.body.contains(&theirs.event_id) && !tenant_page.body.contains(&ours.event_id));

    // The preview moves nothing; the confirmed redrive puts the lead back on the retry queue.
    let token = csrf(&page);
    let body = format!("csrf={token}&tenant=default&action=redrive&id={}", ours.event_id);
    let preview = post_form(&f, "/console/dead-letters/preview", &cookies, &body).await;
    assert!(preview.body.contains("1 back on the retry queue"), "{}", preview.body);
    assert!(stage.receive_queued().await.is_empty(), "the preview moved nothing");
    let body = format!("csrf={token}&tenant=default&id={}&confirm=yes", ours.event_id);
    let done = post_form(&f, "/console/dead-letters/redrive", &cookies, &body).await;
    assert!(done.body.contains("1 redriven"), "{}", done.body);
    let queued = stage.receive_queued().await;
    assert_eq!(queued.len(), 1);
    let requeued: RetryMessage = serde_json::from_str(&queued[0].1).unwrap();
    assert_eq!((requeued.event_id.as_str(), requeued.attempts.len()), (ours.event_id.as_str(), 3));

    // A form without the session's CSRF token does nothing.
    let body = format!("csrf=forged&tenant=dealer&id={}&confirm=yes", theirs.event_id);
    assert_eq!(post_form(&f, "/console/dead-letters/purge", &cookies, &body).await.status, 303);
    let tenant_page = runtime::invoke_request(&f, &get("/console/dead-letters", "tenant=dealer")).await;
    assert!(tenant_page.body.contains(&theirs.event_id), "not purged");

    // The privacy API (an operator's bearer token): the tenant's person erased; their letter can no longer be read,
    // so it is gone from the tenant's view, and the receipt names no one.
    let bearer = [("authorization", format!("Bearer {OPERATOR_TOKEN}")), ("content-type", "application/json".into())];
    let headers: Vec<(&str, &str)> = bearer.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The person is a contact in the tenant's portal too: HubSpot's GDPR delete is asked through the tenant's own
    // credential.
    let dealer_hs =
        hubrelay_clients::HubSpotClient::new(&dealer_portal.url(), "dealer-portal-token", Duration::from_secs(5))
            .unwrap();
    let person = hubrelay_core::domain::ContactUpsert {
        email: "dealer-lead@example.com".into(),
        properties: Default::default(),
    };
    hubrelay_core::hubspot::HubSpot::upsert_contact(&dealer_hs, &person).await.unwrap();
    let erasure =
        json!({"email": "dealer-lead@example.com", "tenant": "dealer", "hubspot_gdpr_delete": true}).to_string();
    let request = HttpRequest {
        method: "POST",
        path: "/v1/privacy/erasure",
        headers: &headers,
        body: &erasure,
        ..Default::default()
    };
    let erased = runtime::invoke_request(&f, &request).await;
    assert_eq!(erased.status, 200, "{erased:?}");
    assert!(erased.body.contains("\"message_keys\":1") && !erased.body.contains("dealer-lead"), "{}", erased.body);
    assert!(erased.body.contains("\"outcome\":\"deleted\""), "HubSpot GDPR-deleted the contact: {}", erased.body);
    let left = hubrelay_core::hubspot::HubSpot::read_contacts_by_email(
        &dealer_hs,
        &["dealer-lead@example.com".to_string()],
        &[],
    )
    .await
    .unwrap();
    assert!(left.is_empty(), "{left:?}");
    let tenant_page = runtime::invoke_request(&f, &get("/console/dead-letters", "tenant=dealer")).await;
    assert!(!tenant_page.body.contains(&theirs.event_id), "{}", tenant_page.body);
    let listing = HttpRequest {
        method: "GET",
        path: "/v1/privacy/erasures",
        query: "tenant=dealer",
        headers: &headers,
        ..Default::default()
    };
    let receipts = runtime::invoke_request(&f, &listing).await;
    assert!(receipts.status == 200 && receipts.body.contains("\"source\":\"api\""), "{receipts:?}");

    // The audit trail, in the table: who signed in and redrove what.
    let audit = runtime::invoke_request(&f, &get("/console/audit", "")).await;
    assert!(audit.body.contains("alice") && audit.body.contains("redrive") && audit.body.contains(&ours.event_id));
    let items = stage
        .dynamo
        .scan()
        .table_name(&stage.table)
        .filter_expression("begins_with(id, :p)")
        .expression_attribute_values(":p", AttributeValue::S("console-audit:".into()))
        .send()
        .await
        .unwrap();
    let actions: Vec<String> = items
        .items()
        .iter()
        .map(|i| serde_json::from_str::<serde_json::Value>(i["entry"].as_s().unwrap()).unwrap()["action"].to_string())
        .collect();
    for action in ["sign_in", "redrive_requested", "redrive"] {
        assert!(actions.contains(&format!("\"{action}\"")), "{actions:?}");
    }

    // The portals page lists the stack's own portal and the tenant; checking each asks its own portal.
    let portals = runtime::invoke_request(&f, &get("/console/portals", "")).await;
    assert!(portals.status == 200 && portals.body.contains("default"), "{portals:?}");
    assert!(portals.body.contains("<td>dealer</td>") && portals.body.contains("Service Key"), "{}", portals.body);
    let checked = post_form(&f, "/console/portals/check", &cookies, &format!("csrf={token}&tenant=default")).await;
    assert!(checked.body.contains("custom properties it needs exist"), "{}", checked.body);
    let checked = post_form(&f, "/console/portals/check", &cookies, &format!("csrf={token}&tenant=dealer")).await;
    assert!(checked.body.contains("lacks") && checked.body.contains("lead_priority"), "{}", checked.body);
    // Its calls today against its cap, read before the check's own call: the erasure's GDPR delete counted.
    assert!(checked.body.contains("1 of 500"), "{}", checked.body);
}

/// A form posted as a browser posts it.
async fn post_form(f: &runtime::Function, path: &str, cookies: &[String], body: &str) -> HttpAnswer {
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let request = HttpRequest { method: "POST", path, headers: &headers, cookies, body, ..Default::default() };
    runtime::invoke_request(f, &request).await
}

//! Tenants on the Lambdas: the real functions (`hubrelay_aws::lambda`) on moto with a tenant registry in the
//! table — two tenants, each with its own HubSpot portal (a sandbox) and mapping, next to the default one.
//! Leads land in their own tenant's portal with its mapping, inline and through the retry worker; a tenant's
//! credentials open no other tenant's routes; each tenant's events are its own; the registry keeps no secret in
//! the clear. Its own test binary: it sets process environment variables.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::Body;
use axum::http::Request;
use hubrelay_aws::dynamodb::DynamoIdempotencyStore;
use hubrelay_aws::dynamodb_tenants::{DynamoTenants, TenantStoreError};
use hubrelay_aws::lambda::{lead_captured_app, retry_worker_app, status_update_app};
use hubrelay_core::sealed::SealingKey;
use hubrelay_core::store::{EventFilter, EventLog};
use hubrelay_core::tenant::{HubSpotAuth, MappingProfile, Tenant, TenantSecrets};
use hubrelay_sandbox::hubspot::{Faults, SandboxHandle, SandboxOptions};
use hubrelay_testkit::moto;
use hubrelay_testkit::runtime::{self, API_TOKEN};
use hubrelay_testkit::worker::sqs_event;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tower::ServiceExt;

/// The tests set the functions' environment: one at a time.
static ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const KEY_HEX: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

async fn portal(token: &str, portal_id: u64, mapping: &str) -> SandboxHandle {
    let options = SandboxOptions { token: Some(token.into()), portal_id, ..SandboxOptions::default() };
    let sandbox = hubrelay_sandbox::hubspot::spawn(options, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = hubrelay_clients::HubSpotClient::new(&sandbox.url(), token, Duration::from_secs(5)).unwrap();
    let mapping = hubrelay_core::mapping::Mapping::builtin(mapping).unwrap();
    hubrelay_core::properties::sync(&client, &mapping.all_property_definitions()).await.unwrap();
    sandbox
}

fn tenant(id: &str, portal: &SandboxHandle, token: &str, mapping: &str, sender: &str) -> Tenant {
    Tenant {
        id: id.parse().unwrap(),
        hub_id: None,
        hubspot_base_url: Some(portal.url()),
        mapping: MappingProfile::Builtin { name: mapping.into() },
        rate_limit_per_10s: 100,
        daily_budget: None,
        enabled: true,
        needs_reauth: false,
        partners: Default::default(),
        secrets: TenantSecrets {
            hubspot: HubSpotAuth::ServiceKey { token: token.into() },
            api_tokens: vec![sender.into()],
            webhook_secrets: Vec::new(),
            partners: Default::default(),
        },
    }
}

/// The functions' environment for a stack with tenants and an OAuth app (`client_id`, its secret in SSM).
async fn stack_with_app_env(stage: &runtime::AwsStage, client_id: &str, client_secret: &str, public_url: &str) {
    let ssm = moto::ssm(moto::shared());
    let key_param = moto::secure_parameter(&ssm, KEY_HEX).await;
    let secret_param = moto::secure_parameter(&ssm, client_secret).await;
    for (k, v) in &stage.env {
        std::env::set_var(k, v);
    }
    std::env::set_var("HUBRELAY_TENANT_SECRETS_KEY_SSM_PARAMETER", &key_param);
    std::env::set_var("HUBSPOT_CLIENT_ID", client_id);
    std::env::set_var("HUBSPOT_CLIENT_SECRET_SSM_PARAMETER", &secret_param);
    std::env::set_var("HUBRELAY_PUBLIC_URL", public_url);
}

async fn post(app: &axum::Router, path: &str, token: &str, body: &Value) -> (u16, Value) {
    runtime::post_json(app, path, token, body).await
}

/// The message on the dead-letter queue whose body contains `needle`.
async fn dead_lettered(stage: &runtime::AwsStage, needle: &str) -> aws_sdk_sqs::types::Message {
    let received = stage
        .sqs
        .receive_message()
        .queue_url(&stage.dlq_url)
        .message_attribute_names("All")
        .max_number_of_messages(10)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap();
    received.messages().iter().find(|m| m.body().unwrap().contains(needle)).expect("in the DLQ").clone()
}

/// A lead as Aimbase sends it (the fields its profile requires).
fn aimbase(email: &str, lead_id: &str) -> Value {
    json!({"email": email, "lead_id": lead_id, "lead_date": "2026-12-01",
        "product": {"year": 2027, "name": "Sport 230", "brand": "Bayline"}, "dealer": {"name": "Harbor Marine"}})
}

/// The contact with `email` in `portal` (its `aimbase_identifier`), if there is one.
async fn contact(portal: &SandboxHandle, token: &str, email: &str) -> Option<Value> {
    let url =
        format!("{}/crm/v3/objects/contacts/{email}?idProperty=email&properties=aimbase_identifier", portal.url());
    let resp = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
    (resp.status() == 200).then_some(resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_has_its_portal_mapping_credentials_and_events() {
    let _env = ENV.lock().await;
    let stage = runtime::aws_stage().await;
    let (oem, dealer) = (portal("oem-token", 4101, "aimbase").await, portal("dealer-token", 4102, "chat-widget").await);
    let key = Arc::new(SealingKey::from_hex(KEY_HEX).unwrap());
    let registry = DynamoTenants::new(stage.dynamo.clone(), &stage.table, key);
    registry.add(&tenant("oem", &oem, "oem-token", "aimbase", "oem-sender")).await.unwrap();
    let dealer_row =
        registry.add(&tenant("dealer", &dealer, "dealer-token", "chat-widget", "dealer-sender")).await.unwrap();
    assert!(matches!(
        registry.add(&tenant("dealer", &dealer, "x", "chat-widget", "y")).await,
        Err(TenantStoreError::Exists(_))
    ));

    let ssm = moto::ssm(moto::shared());
    let key_param = moto::secure_parameter(&ssm, KEY_HEX).await;
    for (k, v) in &stage.env {
        std::env::set_var(k, v);
    }
    std::env::set_var("HUBRELAY_TENANT_SECRETS_KEY_SSM_PARAMETER", &key_param);
    let leads = lead_captured_app().await.expect("lead-captured init");
    let status = status_update_app().await.expect("status-update init");
    let worker = retry_worker_app().await.expect("retry-worker init");

    // Each lead lands in its own tenant's portal, mapped by that tenant's profile.
    let aimbase_lead = aimbase("oem-lead@example.com", "AIM-1");
    let (code, body) = post(&leads, "/prod/t/oem/v1/leads", "oem-sender", &aimbase_lead).await;
    assert_eq!(code, 200, "{body}");
    let found = contact(&oem, "oem-token", "oem-lead@example.com").await.expect("in the OEM's portal");
    assert_eq!(found["properties"]["aimbase_identifier"], "AIM-1");
    let (code, body) =
        post(&leads, "/prod/t/dealer/v1/leads", "dealer-sender", &json!({"email": "dealer-lead@example.com"})).await;
    assert_eq!(code, 200, "{body}");
    assert!(contact(&dealer, "dealer-token", "dealer-lead@example.com").await.is_some());
    for (portal, token, email) in [
        (&dealer, "dealer-token", "oem-lead@example.com"),
        (&oem, "oem-token", "dealer-lead@example.com"),
        (&stage.sandbox, runtime::SANDBOX_TOKEN, "oem-lead@example.com"),
        (&stage.sandbox, runtime::SANDBOX_TOKEN, "dealer-lead@example.com"),
    ] {
        assert!(contact(portal, token, email).await.is_none(), "{email} leaked into {}", portal.url());
    }
    // The same key in two tenants is two events.
    let (code, body) = post(&leads, "/prod/t/dealer/v1/leads", "dealer-sender", &aimbase_lead).await;
    assert_eq!(code, 200, "{body}");
    assert!(contact(&dealer, "dealer-token", "oem-lead@example.com").await.is_some());

    // A tenant's credentials open only its own routes; the default tenant's, only the default's.
    let lead = json!({"email": "nobody@example.com"});
    for (path, token) in [
        ("/prod/t/dealer/v1/leads", "oem-sender"),
        ("/prod/t/oem/v1/leads", "dealer-sender"),
        ("/prod/t/oem/v1/leads", API_TOKEN),
        ("/prod/v1/leads", "oem-sender"),
    ] {
        let (code, body) = post(&leads, path, token, &lead).await;
        assert_eq!(code, 401, "{path} with {token}: {body}");
    }
    let (code, body) = post(&leads, "/prod/t/ghost/v1/leads", "oem-sender", &lead).await;
    assert_eq!((code, body["error"]["code"].as_str()), (404, Some("unknown_tenant")), "{body}");
    let (code, body) =
        post(&status, "/prod/t/oem/v1/leads/status", "oem-sender", &json!({"lead_id": "AIM-1", "status": "working"}))
            .await;
    assert_eq!(code, 200, "a tenant's status update finds its own lead: {body}");

    // HubSpot down for the OEM: its lead is queued, marked with the tenant, and the worker delivers it there.
    oem.sandbox.set_faults(Faults { failure_rate: 1.0, failure_status: 503, ..Faults::default() });
    let queued = aimbase("oem-queued@example.com", "AIM-2");
    let (code, body) = post(&leads, "/prod/t/oem/v1/leads", "oem-sender", &queued).await;
    assert_eq!(code, 202, "{body}");
    oem.sandbox.set_faults(Faults::default());
    let received = stage
        .sqs
        .receive_message()
        .queue_url(&stage.queue_url)
        .message_attribute_names("All")
        .wait_time_seconds(10)
        .send()
        .await
        .unwrap();
    let message = &received.messages()[0];
    assert_eq!(message.message_attributes().unwrap()["tenant"].string_value(), Some("oem"));
    let body: Value = serde_json::from_str(message.body().unwrap()).unwrap();
    assert_eq!((body["tenant"].as_str(), body["version"].as_u64()), (Some("oem"), Some(2)));
    let arn = "arn:aws:sqs:us-east-1:123456789012:hubrelay-test-RetryQueue";
    let records = vec![(message.message_id().unwrap().to_string(), message.body().unwrap().to_string())];
    let due = OffsetDateTime::now_utc() + time::Duration::seconds(10);
    let response = worker.handle(sqs_event(arn, &records), due).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let found = contact(&oem, "oem-token", "oem-queued@example.com").await.expect("retried into the OEM's portal");
    assert_eq!(found["properties"]["aimbase_identifier"], "AIM-2");
    assert!(contact(&stage.sandbox, runtime::SANDBOX_TOKEN, "oem-queued@example.com").await.is_none());

    // A message of a tenant no longer in the registry is parked with its history, not sent anywhere.
    let mut ghost: Value = serde_json::from_str(message.body().unwrap()).unwrap();
    ghost["tenant"] = json!("ghost");
    ghost["event_id"] = json!("evt_0000000000000000000000000000ghost");
    let response = worker.handle(sqs_event(arn, &[("m-ghost".into(), ghost.to_string())]), due).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let parked = dead_lettered(&stage, "ghost").await;
    assert_eq!(parked.message_attributes().unwrap()["error_code"].string_value(), Some("unknown_tenant"));

    // Rewritten by code from before tenants (which drops the field it does not know): parked, never delivered
    // to the default portal.
    let mut stripped: Value = serde_json::from_str(message.body().unwrap()).unwrap();
    stripped.as_object_mut().unwrap().remove("tenant");
    stripped["event_id"] = json!("evt_00000000000000000000000000stripped");
    let response = worker.handle(sqs_event(arn, &[("m-stripped".into(), stripped.to_string())]), due).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let parked = dead_lettered(&stage, "stripped").await;
    assert_eq!(parked.message_attributes().unwrap()["error_code"].string_value(), Some("tenant_missing"));

    // Each tenant lists its own events; the default tenant lists none of theirs.
    let table = DynamoIdempotencyStore::new(stage.dynamo.clone(), &stage.table);
    let ids = |records: Vec<hubrelay_core::store::EventRecord>| -> std::collections::BTreeSet<String> {
        records.into_iter().map(|r| r.event_id).collect()
    };
    let all = EventFilter { limit: 1000, ..EventFilter::default() };
    let oem_events = ids(table.for_tenant(&"oem".parse().unwrap()).list_events(&all).await.unwrap());
    let dealer_events = ids(table.for_tenant(&"dealer".parse().unwrap()).list_events(&all).await.unwrap());
    let default_events = ids(table.list_events(&all).await.unwrap());
    // The OEM: two leads and a status update; the dealer: two leads.
    assert_eq!((oem_events.len(), dealer_events.len()), (3, 2), "{oem_events:?} {dealer_events:?}");
    assert!(oem_events.is_disjoint(&dealer_events) && oem_events.is_disjoint(&default_events));
    assert!(dealer_events.is_disjoint(&default_events));
    let one = oem_events.iter().next().unwrap();
    assert!(table.for_tenant(&"oem".parse().unwrap()).get_event(one).await.unwrap().is_some());
    assert!(table.for_tenant(&"dealer".parse().unwrap()).get_event(one).await.unwrap().is_none());
    assert!(table.get_event(one).await.unwrap().is_none());

    // Disabled: 403, on a cold start (a warm instance sees it within its recheck time).
    let disabled = Tenant { enabled: false, ..dealer_row.tenant.clone() };
    registry.update(&dealer_row, &disabled).await.unwrap();
    assert!(matches!(registry.update(&dealer_row, &disabled).await, Err(TenantStoreError::Changed(_))));
    let cold = lead_captured_app().await.unwrap();
    let (code, body) = post(&cold, "/prod/t/dealer/v1/leads", "dealer-sender", &lead).await;
    assert_eq!((code, body["error"]["code"].as_str()), (403, Some("tenant_disabled")), "{body}");
    // A disabled tenant's queued message waits: back on the retry queue, due 15 minutes on.
    let mut waiting: Value = serde_json::from_str(message.body().unwrap()).unwrap();
    waiting["tenant"] = json!("dealer");
    waiting["event_id"] = json!("evt_000000000000000000000000000dealer");
    // The dealer's own lead (the OEM's sealed event opens only under the OEM's key).
    waiting["event"] = json!({"email": "dealer-waiting@example.com", "first_name": "Dee"});
    let cold_worker = retry_worker_app().await.unwrap();
    let response = cold_worker.handle(sqs_event(arn, &[("m-dealer".into(), waiting.to_string())]), due).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let waited = stage.sqs.receive_message().queue_url(&stage.queue_url).send().await.unwrap();
    assert!(waited.messages().is_empty(), "due in 15 minutes, not now");
    let held = stage
        .sqs
        .get_queue_attributes()
        .queue_url(&stage.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    let delayed =
        &held.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed];
    assert_eq!(delayed, "1");

    // The registry's items hold no credential in the clear.
    let items = stage
        .dynamo
        .scan()
        .table_name(&stage.table)
        .filter_expression("begins_with(id, :p)")
        .expression_attribute_values(":p", AttributeValue::S("tenant:".into()))
        .send()
        .await
        .unwrap();
    let dump = format!("{:?}", items.items());
    assert_eq!(items.items().len(), 2);
    for secret in ["oem-token", "dealer-token", "oem-sender", "dealer-sender"] {
        assert!(!dump.contains(secret), "{secret} in the clear");
    }
    let listed = registry.list().await.unwrap();
    assert_eq!(listed.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["dealer", "oem"]);
    // Settings changed by someone who can write the table but has no key (a base URL of their own, to collect
    // the credential) make the tenant unreadable, not obeyed.
    let oem_item = AttributeValue::S("tenant:oem".into());
    let item = stage.dynamo.get_item().table_name(&stage.table).key("id", oem_item.clone()).send().await.unwrap();
    let settings = item.item().unwrap()["settings"].as_s().unwrap().clone();
    let tampered = settings.replace(&oem.url(), "https://collector.example.com");
    assert_ne!(tampered, settings);
    stage
        .dynamo
        .update_item()
        .table_name(&stage.table)
        .key("id", oem_item)
        .update_expression("SET settings = :s")
        .expression_attribute_values(":s", AttributeValue::S(tampered))
        .send()
        .await
        .unwrap();
    assert!(matches!(registry.get(&"oem".parse().unwrap()).await, Err(TenantStoreError::Sealed(_))));
    // Another key opens nothing.
    let wrong = DynamoTenants::new(stage.dynamo.clone(), &stage.table, Arc::new(SealingKey::from_bytes(&[1; 32])));
    assert!(matches!(wrong.get(&"oem".parse().unwrap()).await, Err(TenantStoreError::Sealed(_))));
}

/// A tenant connected by OAuth on the Lambdas: its lead goes out with the token refreshed from its stored
/// refresh token (shared through the table); once HubSpot refuses that refresh token the tenant is marked
/// `needs_reauth` in the registry and its leads are queued, not lost; other tenants go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_tenant_refreshes_through_the_table_and_is_marked_when_revoked() {
    let _env = ENV.lock().await;
    use hubrelay_sandbox::hubspot::OAuthApp as SandboxApp;
    let app = SandboxApp {
        client_id: "tenant-app".into(),
        client_secret: "tenant-app-secret".into(),
        ..SandboxApp::default()
    };
    let options = SandboxOptions { token: Some("admin".into()), oauth: Some(app), ..SandboxOptions::default() };
    let portal = hubrelay_sandbox::hubspot::spawn(options, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let admin = hubrelay_clients::HubSpotClient::new(&portal.url(), "admin", Duration::from_secs(5)).unwrap();
    let mapping = hubrelay_core::mapping::Mapping::builtin("chat-widget").unwrap();
    hubrelay_core::properties::sync(&admin, &mapping.all_property_definitions()).await.unwrap();
    // The install, as `hubrelay serve` would make it: approve, exchange the code.
    let refresh_token = hubrelay_testkit::oauth::refresh_token(&portal.url(), "tenant-app", "tenant-app-secret").await;
    let stage = runtime::aws_stage().await;
    let registry =
        DynamoTenants::new(stage.dynamo.clone(), &stage.table, Arc::new(SealingKey::from_hex(KEY_HEX).unwrap()));
    let mut connected = tenant("chain", &portal, "unused", "chat-widget", "chain-sender");
    connected.secrets.hubspot = HubSpotAuth::OAuth { refresh_token: Some(refresh_token.clone()) };
    registry.add(&connected).await.unwrap();
    stack_with_app_env(&stage, "tenant-app", "tenant-app-secret", "https://relay.example.com").await;
    let leads = lead_captured_app().await.expect("lead-captured init");

    let (code, body) =
        post(&leads, "/prod/t/chain/v1/leads", "chain-sender", &json!({"email": "chain-1@example.com"})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(portal.sandbox.oauth_stats().refresh_token_grants, 1);
    assert!(contact(&portal, "admin", "chain-1@example.com").await.is_some());
    // The portal's admin uninstalls the app: the next refresh is refused.
    portal.sandbox.revoke_refresh_tokens();
    let cold = lead_captured_app().await.expect("a new instance, with no token in memory");
    // The shared token is still good until it is due: expire it by asking for a refresh the way a 401 would.
    let shared = hubrelay_aws::dynamodb_oauth::DynamoSharedToken::new(
        stage.dynamo.clone(),
        &stage.table,
        "tenant-app",
        "tenant-app-secret",
        &refresh_token,
    );
    let item = AttributeValue::S(shared.key().to_string());
    stage.dynamo.delete_item().table_name(&stage.table).key("id", item).send().await.unwrap();
    let (code, body) =
        post(&cold, "/prod/t/chain/v1/leads", "chain-sender", &json!({"email": "chain-2@example.com"})).await;
    assert_eq!((code, body["status"].as_str()), (202, Some("queued")), "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stored = registry.get(&"chain".parse().unwrap()).await.unwrap().unwrap();
        if stored.tenant.needs_reauth {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the tenant was never marked needs_reauth");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The default tenant goes on.
    let (code, body) = post(&cold, "/prod/v1/leads", API_TOKEN, &json!({"email": "default-after@example.com"})).await;
    assert_eq!(code, 200, "{body}");

    // The queued lead, its next attempt an hour away (as late in the schedule), passes the worker: it waits.
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while records.is_empty() && std::time::Instant::now() < deadline {
        records.extend(stage.receive_queued().await.into_iter().filter(|(_, b)| b.contains("\"tenant\":\"chain\"")));
    }
    assert_eq!(records.len(), 1, "the tenant's queued lead");
    let mut message: Value = serde_json::from_str(&records[0].1).unwrap();
    let attempts = message["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.last().unwrap()["error_code"], "needs_reauth", "{message}");
    let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
    message["not_before"] = json!(later.format(&time::format_description::well_known::Rfc3339).unwrap());
    let waiting = vec![(records[0].0.clone(), message.to_string())];
    let arn = "arn:aws:sqs:us-east-1:123456789012:hubrelay-test-RetryQueue";
    let worker = retry_worker_app().await.expect("retry-worker init");
    let response = worker.handle(sqs_event(arn, &waiting), OffsetDateTime::now_utc()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert!(contact(&portal, "admin", "chain-2@example.com").await.is_none(), "not connected: it waits");
    // It waited: still retrying, no attempt added (not sent again, not parked).
    let event_id = message["event_id"].as_str().unwrap();
    let log = DynamoIdempotencyStore::new(stage.dynamo.clone(), &stage.table).for_tenant(&"chain".parse().unwrap());
    let record = log.get_event(event_id).await.unwrap().expect("its event record");
    assert_eq!((record.status, record.attempts.len()), (hubrelay_core::store::EventStatus::Retrying, attempts.len()));
    // The portal is connected again: the same message goes now, not an hour on.
    let reinstalled = hubrelay_testkit::oauth::refresh_token(&portal.url(), "tenant-app", "tenant-app-secret").await;
    let stored = registry.get(&"chain".parse().unwrap()).await.unwrap().unwrap();
    let mut again = stored.tenant.clone();
    again.secrets.hubspot = HubSpotAuth::OAuth { refresh_token: Some(reinstalled) };
    again.needs_reauth = false;
    registry.update(&stored, &again).await.unwrap();
    let worker = retry_worker_app().await.expect("retry-worker init");
    let response = worker.handle(sqs_event(arn, &waiting), OffsetDateTime::now_utc()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert!(contact(&portal, "admin", "chain-2@example.com").await.is_some(), "delivered once reconnected");
}

/// The stack's own install pages (`oauth-install`): a signed link → HubSpot's approve page → the callback stores
/// the tenant's refresh token and hub id in the registry → its leads go out with the granted token. A forged link
/// and a reused state are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_admin_connects_a_tenant_through_the_stacks_install_pages() {
    let _env = ENV.lock().await;
    use hubrelay_sandbox::hubspot::OAuthApp as SandboxApp;
    let app =
        SandboxApp { client_id: "stack-app".into(), client_secret: "stack-app-secret".into(), ..SandboxApp::default() };
    let options = SandboxOptions { token: Some("admin".into()), oauth: Some(app), ..SandboxOptions::default() };
    let portal = hubrelay_sandbox::hubspot::spawn(options, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let stage = runtime::aws_stage().await;
    let registry =
        DynamoTenants::new(stage.dynamo.clone(), &stage.table, Arc::new(SealingKey::from_hex(KEY_HEX).unwrap()));
    let mut waiting = tenant("marina", &portal, "unused", "chat-widget", "marina-sender");
    waiting.secrets.hubspot = HubSpotAuth::OAuth { refresh_token: None };
    waiting.hub_id = Some(SandboxOptions::default().portal_id);
    registry.add(&waiting).await.unwrap();
    let public_url = "https://relay.example.com/prod";
    stack_with_app_env(&stage, "stack-app", "stack-app-secret", public_url).await;
    std::env::set_var("HUBSPOT_OAUTH_AUTHORIZE_URL", format!("{}/oauth/authorize", portal.url()));
    let pages = hubrelay_aws::lambda::oauth_install_app().await.expect("oauth-install init");
    let get = |path: String| {
        let pages = pages.clone();
        async move {
            let resp = pages.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
            let status = resp.status().as_u16();
            let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_string());
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            (status, location, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let key = hubrelay_core::tenant::install_signing_key(KEY_HEX);
    let link = hubrelay_http::oauth_install::install_link(&key, public_url, &"marina".parse().unwrap(), now);
    let path = link.strip_prefix("https://relay.example.com").unwrap().to_string();
    // A link signed with another key opens nothing.
    let forged = hubrelay_http::oauth_install::install_link(b"guess", public_url, &"marina".parse().unwrap(), now);
    let (status, _, body) = get(forged.strip_prefix("https://relay.example.com").unwrap().to_string()).await;
    assert_eq!(status, 403, "{body}");

    let (status, location, _) = get(path).await;
    assert_eq!(status, 302);
    let authorize = location.unwrap();
    assert!(authorize.starts_with(&format!("{}/oauth/authorize?", portal.url())), "{authorize}");
    let form = hubrelay_testkit::oauth::query(&authorize);
    assert_eq!(form["redirect_uri"], format!("{public_url}/oauth/callback"));
    let callback = hubrelay_testkit::oauth::approve(&portal.url(), &form).await;
    let callback = callback.strip_prefix("https://relay.example.com").unwrap().to_string();
    let (status, _, page) = get(callback.clone()).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Tenant marina is connected to HubSpot portal"), "{page}");
    let (status, _, page) = get(callback).await;
    assert_eq!(status, 400, "a state is taken once: {page}");

    let connected = registry.get(&"marina".parse().unwrap()).await.unwrap().unwrap().tenant;
    assert!(matches!(connected.secrets.hubspot, HubSpotAuth::OAuth { refresh_token: Some(_) }));
    assert!(!connected.needs_reauth);
    let leads = lead_captured_app().await.expect("lead-captured init");
    let (code, body) =
        post(&leads, "/prod/t/marina/v1/leads", "marina-sender", &json!({"email": "boat@example.com"})).await;
    assert_eq!(code, 200, "{body}");
    assert!(contact(&portal, "admin", "boat@example.com").await.is_some());
}

/// A portal whose contacts can carry an advocate code (the referral program's property).
async fn referral_portal(token: &str, portal_id: u64) -> SandboxHandle {
    let sandbox = portal(token, portal_id, "chat-widget").await;
    let client = hubrelay_clients::HubSpotClient::new(&sandbox.url(), token, Duration::from_secs(5)).unwrap();
    let mapping = hubrelay_core::mapping::Mapping::builtin("chat-widget").unwrap();
    let wanted = hubrelay_core::properties::required(&mapping, &hubrelay_core::referral::ReferralConfig::default());
    hubrelay_core::properties::sync(&client, &wanted).await.unwrap();
    sandbox
}

/// A contact with an advocate code made in `portal` by its user, and HubSpot's app webhook event for it.
async fn coded_contact(portal: &SandboxHandle, portal_id: u64, token: &str, email: &str, code: &str) -> Value {
    let http = reqwest::Client::new();
    let body = json!({"properties": {"email": email, "firstname": "Ada", "advocate_code": code}});
    let url = format!("{}/crm/v3/objects/contacts", portal.url());
    let made: Value = http.post(url).bearer_auth(token).json(&body).send().await.unwrap().json().await.unwrap();
    let id: u64 = made["id"].as_str().unwrap().parse().unwrap();
    json!({"eventId": id, "subscriptionId": 9, "portalId": portal_id, "occurredAt": 1_764_000_000_000_i64,
        "subscriptionType": "contact.propertyChange", "objectId": id, "propertyName": "advocate_code",
        "propertyValue": code, "attemptNumber": 0})
}

async fn post_signed(app: &axum::Router, path: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = Request::post(path).header("content-type", "application/json");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = app.clone().oneshot(request.body(Body::from(body.to_vec())).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Sign-ups an Extole account received, by email.
async fn extole_signups(extole: &str) -> Vec<String> {
    let got: Value =
        reqwest::Client::new().get(format!("{extole}/__sandbox/received")).send().await.unwrap().json().await.unwrap();
    let signups =
        got.as_array().unwrap().iter().filter(|r| r["body"]["event_name"] == "signed_up" && r["status"] == 200);
    signups.map(|r| r["body"]["data"]["email"].as_str().unwrap().to_string()).collect()
}

/// The referral function with tenants: each tenant's partner webhooks are verified with its own secrets; the
/// HubSpot app's webhooks for many portals arrive at one URL and are split by `portalId`; the retry worker sends
/// each tenant's referral actions to its own Extole account. A portal is one tenant's (the registry refuses a
/// second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_webhooks_are_routed_by_portal_and_each_tenant_has_its_own_partners() {
    let _env = ENV.lock().await;
    use hubrelay_sandbox::partners::{ExtoleSandbox, ExtoleSandboxOptions};
    let stage = runtime::aws_stage().await;
    let (oem, dealer) = (referral_portal("oem-token", 4301).await, referral_portal("dealer-token", 4302).await);
    let extole = |token: &str| ExtoleSandbox::new(ExtoleSandboxOptions { token: Some(token.into()) });
    let oem_extole = extole("oem-extole").serve_local().await.unwrap();
    let dealer_extole = extole("dealer-extole").serve_local().await.unwrap();
    let registry =
        DynamoTenants::new(stage.dynamo.clone(), &stage.table, Arc::new(SealingKey::from_hex(KEY_HEX).unwrap()));
    let with_extole = |mut t: Tenant, portal: u64, url: String, token: &str, hook: &str| {
        t.hub_id = Some(portal);
        t.partners.extole_base_url = Some(url);
        t.secrets.partners.extole_token = Some(token.into());
        t.secrets.partners.extole_webhook_secrets = vec![hook.into()];
        t
    };
    let oem_tenant = tenant("oem", &oem, "oem-token", "chat-widget", "oem-sender");
    registry.add(&with_extole(oem_tenant, 4301, oem_extole.url(), "oem-extole", "oem-hook")).await.unwrap();
    let dealer_tenant = tenant("dealer", &dealer, "dealer-token", "chat-widget", "dealer-sender");
    let dealer_row = registry
        .add(&with_extole(dealer_tenant, 4302, dealer_extole.url(), "dealer-extole", "dealer-hook"))
        .await
        .unwrap();
    // A portal is one tenant's; moving a tenant to another portal frees its old one.
    let copy = Tenant { hub_id: Some(4301), ..tenant("copy", &oem, "x", "chat-widget", "copy-sender") };
    let taken = registry.add(&copy).await.unwrap_err();
    assert!(matches!(&taken, TenantStoreError::PortalTaken { portal: 4301, tenant } if tenant == "oem"), "{taken}");
    assert!(registry.get(&"copy".parse().unwrap()).await.unwrap().is_none(), "nothing of it was written");
    let moved =
        registry.update(&dealer_row, &Tenant { hub_id: Some(4399), ..dealer_row.tenant.clone() }).await.unwrap();
    assert_eq!(registry.tenant_of_portal(4302).await.unwrap(), None);
    registry.update(&moved, &dealer_row.tenant).await.unwrap();
    assert_eq!(registry.tenant_of_portal(4302).await.unwrap(), Some("dealer".parse().unwrap()));
    assert_eq!(registry.tenant_of_portal(4399).await.unwrap(), None);

    stack_with_app_env(&stage, "stack-app", "stack-app-secret", "https://relay.example.com").await;
    let referrals = hubrelay_aws::lambda::referral_event_app().await.expect("referral-event init");
    let worker = retry_worker_app().await.expect("retry-worker init");

    // A tenant's Extole webhooks are verified with its own secret, not another tenant's.
    let link = json!({"properties": {"email": "sharer@example.com", "share_code": "s1",
        "share_link": "https://refer.example.com/s1"}})
    .to_string();
    let signed = |key: &str| hubrelay_core::auth::extole_signature(key, link.as_bytes());
    let (code, body) = post_signed(
        &referrals,
        "/prod/t/oem/v1/referrals/extole",
        link.as_bytes(),
        &[("x-extole-signature", &signed("oem-hook"))],
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let (code, body) = post_signed(
        &referrals,
        "/prod/t/oem/v1/referrals/extole",
        link.as_bytes(),
        &[("x-extole-signature", &signed("dealer-hook"))],
    )
    .await;
    assert_eq!((code, body["error"]["code"].as_str()), (401, Some("invalid_signature")), "{body}");

    // One app webhook batch for both portals, signed with the app's secret at the one URL.
    let batch = json!([
        coded_contact(&oem, 4301, "oem-token", "oem-advocate@example.com", "ADV-O").await,
        coded_contact(&dealer, 4302, "dealer-token", "dealer-advocate@example.com", "ADV-D").await,
    ])
    .to_string();
    let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let uri = "https://relay.example.com/v1/hubspot/app-webhooks";
    let sig = hubrelay_core::auth::hubspot_v3_signature("stack-app-secret", "POST", uri, batch.as_bytes(), now_ms);
    let ts = now_ms.to_string();
    let signed_headers = [("x-hubspot-signature-v3", sig.as_str()), ("x-hubspot-request-timestamp", ts.as_str())];
    let (code, body) =
        post_signed(&referrals, "/prod/v1/hubspot/app-webhooks", batch.as_bytes(), &signed_headers).await;
    assert_eq!(code, 202, "{body}");
    let tenants: Vec<&str> =
        body["portals"].as_array().unwrap().iter().map(|p| p["tenant"].as_str().unwrap()).collect();
    assert_eq!(tenants, ["oem", "dealer"], "{body}");
    let (code, body) = post_signed(&referrals, "/prod/v1/hubspot/app-webhooks", batch.as_bytes(), &[]).await;
    assert_eq!(code, 401, "{body}");

    // The worker sends each tenant's actions with that tenant's partner account.
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while records.len() < 3 && std::time::Instant::now() < deadline {
        records.extend(stage.receive_queued().await);
    }
    assert_eq!(records.len(), 3, "a share link and two sign-ups: {records:?}");
    let arn = "arn:aws:sqs:us-east-1:123456789012:hubrelay-test-RetryQueue";
    let due = OffsetDateTime::now_utc() + time::Duration::seconds(10);
    let response = worker.handle(sqs_event(arn, &records), due).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(extole_signups(&oem_extole.url()).await, ["oem-advocate@example.com"]);
    assert_eq!(extole_signups(&dealer_extole.url()).await, ["dealer-advocate@example.com"]);
    let shared = contact(&oem, "oem-token", "sharer@example.com").await;
    assert!(shared.is_some(), "the share link landed in the OEM's portal");
    assert!(contact(&stage.sandbox, runtime::SANDBOX_TOKEN, "sharer@example.com").await.is_none());
}

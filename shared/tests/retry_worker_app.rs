//! The `retry-worker` wiring (`handler::lambda::retry_worker_app`, what `functions/retry-worker` runs) against
//! moto server and the HubSpot sandbox: init reads the HubSpot token from SSM and needs no sender auth; the
//! handler it returns delivers a fixture SQS event. Its own test binary: it sets process environment variables.

mod support;

use std::time::Duration;

use hubrelay::handler::lambda::{retry_worker_app, InitError};
use hubrelay::hubspot::HubSpotClient;
use hubrelay::mapping::Mapping;
use hubrelay::sandbox::{self, SandboxOptions};
use serde_json::json;
use support::moto;
use support::worker::{body, message_id, retry_message, sqs_event};
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread")]
async fn retry_worker_app_reads_its_settings_and_handles_an_sqs_event() {
    let server = moto::shared();
    let sqs = moto::sqs(server);
    let dynamo = moto::dynamodb(server);
    let ssm = moto::ssm(server);

    let table = moto::idempotency_table(&dynamo).await;
    let (queue_url, dlq_url) = moto::retry_queues(&sqs).await;
    let param = moto::secure_parameter(&ssm, "worker-app-token").await;

    let sandbox = sandbox::spawn(
        SandboxOptions { token: Some("worker-app-token".into()), ..SandboxOptions::default() },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let hs = HubSpotClient::new(&sandbox.url(), "worker-app-token", Duration::from_secs(5)).unwrap();
    hubrelay::properties::sync(&hs, &Mapping::builtin("chat-widget").unwrap()).await.unwrap();

    // What template.yaml gives the function: no sender auth settings at all.
    for (k, v) in [
        ("AWS_ENDPOINT_URL", server.endpoint()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", moto::REGION.into()),
        ("HUBSPOT_TOKEN_SSM_PARAMETER", param.clone()),
        ("HUBSPOT_BASE_URL", sandbox.url()),
        ("HUBRELAY_MAPPING", "chat-widget".into()),
        ("HUBRELAY_IDEMPOTENCY_TABLE", table.clone()),
        ("HUBRELAY_RETRY_QUEUE_URL", queue_url.clone()),
    ] {
        std::env::set_var(k, v);
    }
    for k in [
        "HUBSPOT_TOKEN",
        "HUBRELAY_API_TOKENS",
        "HUBRELAY_WEBHOOK_SECRETS",
        "HUBSPOT_CLIENT_SECRET",
        "HUBRELAY_DLQ_URL",
    ] {
        std::env::remove_var(k);
    }
    match retry_worker_app().await {
        Err(InitError::Missing(name)) => assert_eq!(name, "HUBRELAY_DLQ_URL"),
        Err(e) => panic!("unexpected init error: {e}"),
        Ok(_) => panic!("init must refuse to start without the DLQ"),
    }
    std::env::set_var("HUBRELAY_DLQ_URL", &dlq_url);
    let worker = retry_worker_app().await.expect("init");
    assert_eq!(worker.queue().queue_url(), queue_url);
    assert_eq!(worker.queue().dlq_url(), dlq_url);

    let now = OffsetDateTime::now_utc();
    let m = retry_message(&json!({"email": "app@example.com", "first_name": "Ann"}), now, 1, now);
    let arn = "arn:aws:sqs:us-east-1:123456789012:hubrelay-test-RetryQueue";
    let response = worker.handle(sqs_event(arn, &[(message_id(), body(&m))]), now).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(sandbox.sandbox.contact_count().unwrap(), 1);
    // The response is what Lambda reads back: `{"batchItemFailures":[]}`.
    assert_eq!(serde_json::to_value(&response).unwrap(), json!({"batchItemFailures": []}));
}

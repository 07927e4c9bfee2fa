//! The `retry-worker` wiring (`hubrelay_aws::lambda::retry_worker_app`, what `functions/retry-worker` runs) against
//! moto server and the HubSpot sandbox: init reads the HubSpot token from SSM and needs no sender auth; the
//! handler it returns delivers a fixture SQS event. Its own test binary: it sets process environment variables.

use hubrelay_aws::lambda::{retry_worker_app, InitError};
use hubrelay_testkit::runtime;
use hubrelay_testkit::worker::{body, message_id, retry_message, sqs_event};
use serde_json::json;
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread")]
async fn retry_worker_app_reads_its_settings_and_handles_an_sqs_event() {
    let stage = runtime::aws_stage().await;
    let (sandbox, queue_url, dlq_url) = (&stage.sandbox, stage.queue_url.clone(), stage.dlq_url.clone());
    // What template.yaml gives the function: no sender auth settings at all (and, first, no DLQ).
    let without = ["HUBRELAY_API_TOKENS", "HUBRELAY_DLQ_URL"];
    for (k, v) in stage.env.iter().filter(|(k, _)| !without.contains(k)) {
        std::env::set_var(k, v);
    }
    for k in ["HUBSPOT_TOKEN", "HUBRELAY_WEBHOOK_SECRETS", "HUBSPOT_CLIENT_SECRET"].iter().chain(&without) {
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

//! The real `referral-event` bootstrap under a Lambda Runtime API emulator, invoked with API Gateway HTTP API
//! events against moto server: a HubSpot workflow webhook for an advocate sign-up is answered 202 at once and its
//! Extole action waits on moto's SQS retry queue for the retry-worker; the same webhook again gets the same
//! answer and queues nothing.

use hubrelay_testkit::runtime;

use std::path::Path;
use std::time::Duration;

use hubrelay_core::domain::{FunctionName, RetryMessage};
use serde_json::json;

const AUTH: (&str, &str) = ("authorization", "Bearer bootstrap-token");

/// Every message on the queue: visible, in flight and delayed.
async fn messages_on(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let names = [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
        A::ApproximateNumberOfMessagesDelayed,
    ];
    let out = sqs.get_queue_attributes().queue_url(url).set_attribute_names(Some(names.to_vec())).send().await.unwrap();
    names.iter().map(|n| out.attributes().unwrap()[n].parse::<u64>().unwrap()).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bootstrap_queues_one_action_per_target_on_sqs() {
    let stage = runtime::aws_stage().await;
    let f = runtime::start(Path::new(env!("CARGO_BIN_EXE_referral-event")), "referral-event", &stage.env).await;

    let form = json!({"email": "advocate@example.com", "advocate_code": "BOOT1"}).to_string();
    let (status, body) = runtime::invoke_http(&f, "/v1/referrals/hubspot", &[AUTH], &form).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("accepted")), "{body}");
    let actions = body["actions"].as_array().expect("actions");
    assert_eq!(actions.len(), 1, "{body}");
    let event_id = actions[0]["event_id"].as_str().unwrap().to_string();

    // On the retry queue for the worker (after the queue's first delay).
    let mut queued = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while queued.is_empty() && std::time::Instant::now() < deadline {
        let out = stage.sqs.receive_message().queue_url(&stage.queue_url).wait_time_seconds(2).send().await.unwrap();
        queued.extend(out.messages().iter().map(|m| serde_json::from_str::<RetryMessage>(m.body().unwrap()).unwrap()));
    }
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!((queued[0].event_id.as_str(), queued[0].function), (event_id.as_str(), FunctionName::ReferralEvent));

    // HubSpot retrying the same webhook gets the same answer and queues nothing more.
    let (again_status, again) = runtime::invoke_http(&f, "/v1/referrals/hubspot", &[AUTH], &form).await;
    assert_eq!((again_status, &again), (status, &body));
    assert_eq!(messages_on(&stage.sqs, &stage.queue_url).await, 1, "still only the first action's message");

    let (status, body) = runtime::invoke_http(&f, "/v1/referrals/hubspot", &[AUTH], "{not json").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
}

//! Concurrent Lambdas share one HubSpot budget: four `lead-captured` instances and two `retry-worker` instances,
//! each built by its real init (`hubrelay_aws::lambda`), against moto server and a sandbox portal limited to 20
//! calls per 10 s. A burst far over the budget earns no 429: what the inline share can't take is queued, the
//! workers deliver it in batches, and every lead ends up a contact. Its own test binary: it sets process
//! environment variables.
//!
//! The same run measures larger loads (docs/performance.md, "Shared budget in AWS"); the figures are printed:
//!   BUDGET_RUN_LEADS=1000 BUDGET_RUN_RATE=50 BUDGET_RUN_PORTAL_LIMIT=100 BUDGET_RUN_INSTANCES=8 \
//!     cargo test -p hubrelay-aws --test shared_budget -- --nocapture
//! `BUDGET_RUN_BUDGET_LIMIT` sets the functions' `HUBSPOT_RATE_LIMIT_PER_10S` apart from the portal's (far above
//! it, it is the baseline: functions that do not share the portal's limit).

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use hubrelay_aws::lambda::{lead_captured_app, retry_worker_app};
use hubrelay_sandbox::hubspot::Faults;
use hubrelay_testkit::runtime::{self, API_TOKEN};
use hubrelay_testkit::worker::sqs_event;
use time::OffsetDateTime;
use tower::ServiceExt;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_functions_stay_inside_one_budget_and_deliver_every_lead() {
    let leads = knob("BUDGET_RUN_LEADS", 40) as usize;
    let rate = knob("BUDGET_RUN_RATE", 20);
    let portal_limit = knob("BUDGET_RUN_PORTAL_LIMIT", 20) as u32;
    let budget_limit = knob("BUDGET_RUN_BUDGET_LIMIT", u64::from(portal_limit));
    let instances = knob("BUDGET_RUN_INSTANCES", 4) as usize;
    let measuring = budget_limit > u64::from(portal_limit);
    let stage = runtime::aws_stage().await;
    for (k, v) in &stage.env {
        std::env::set_var(k, v);
    }
    std::env::set_var("HUBSPOT_RATE_LIMIT_PER_10S", budget_limit.to_string());
    let sandbox = &stage.sandbox.sandbox;
    // Setting the stage up called the portal: let those calls leave its 10 s window, then limit it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    sandbox.set_faults(Faults { requests_per_10s: Some(portal_limit), ..Faults::default() });
    let setup_calls = sandbox.stats().requests;
    let started = tokio::time::Instant::now();

    let mut apps = Vec::new();
    for _ in 0..instances {
        apps.push(lead_captured_app().await.expect("lead-captured init"));
    }
    // By default 40 leads in 2 s, spread over the four instances: the portal takes 20 calls per 10 s.
    let mut sent = Vec::new();
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    for i in 0..leads {
        let app = apps[i % apps.len()].clone();
        sent.push(tokio::spawn(async move {
            let body = serde_json::json!({"lead_id": format!("burst-{i}"), "email": format!("burst{i}@example.com"), "first_name": "Ann"});
            let req = Request::post("/v1/leads")
                .header("authorization", format!("Bearer {API_TOKEN}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            app.oneshot(req).await.unwrap().status().as_u16()
        }));
        tokio::time::sleep_until(started + gap * (i as u32 + 1)).await;
    }
    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    for s in sent {
        *answers.entry(s.await.unwrap()).or_default() += 1;
    }
    let delivered_inline = answers.get(&200).copied().unwrap_or(0);
    let queued = answers.get(&202).copied().unwrap_or(0);
    let accepted = delivered_inline + queued;
    if !measuring {
        assert_eq!(accepted, leads, "every lead accepted: {answers:?}");
    }
    let inline_429 = sandbox.stats().rate_limited;
    if !measuring {
        assert!(
            delivered_inline >= 1 && queued >= leads / 2,
            "the inline share is small, the rest queued: {answers:?}"
        );
        assert_eq!(inline_429, 0, "no 429 from the inline burst");
    }

    // Two worker instances take turns draining the queue as the event source mapping would: receive, handle, delete what is done.
    let workers = [retry_worker_app().await.expect("worker init"), retry_worker_app().await.expect("worker init")];
    let arn = "arn:aws:sqs:us-east-1:123456789012:hubrelay-test-RetryQueue";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90 + leads as u64 / 10);
    let mut drained = false;
    while sandbox.contact_count().unwrap() < accepted as u64 || !drained {
        drained = true;
        assert!(tokio::time::Instant::now() < deadline, "not drained: {} contacts", sandbox.contact_count().unwrap());
        for worker in &workers {
            // Batches of up to 100, as the event source mapping gathers them (BatchSize 100).
            let mut messages = Vec::new();
            while messages.len() < 100 {
                let out = stage
                    .sqs
                    .receive_message()
                    .queue_url(&stage.queue_url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(u8::from(messages.is_empty()).into())
                    .send()
                    .await
                    .unwrap();
                if out.messages().is_empty() {
                    break;
                }
                drained = false;
                messages.extend(out.messages().iter().cloned());
            }
            if messages.is_empty() {
                continue;
            }
            let records: Vec<(String, String)> =
                messages.iter().map(|m| (m.message_id().unwrap().to_owned(), m.body().unwrap().to_owned())).collect();
            let response = worker.handle(sqs_event(arn, &records), OffsetDateTime::now_utc()).await;
            let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
            for m in messages.iter().filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id())) {
                stage
                    .sqs
                    .delete_message()
                    .queue_url(&stage.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
    let stats = sandbox.stats();
    let all_delivered = started.elapsed();
    if !measuring {
        assert_eq!(stats.rate_limited, 0, "no 429 while the workers drained: {stats:?}");
    }
    let contacts = sandbox.contact_count().unwrap();
    assert!(contacts >= accepted as u64, "{contacts} contacts for {accepted} accepted leads");
    let calls = stats.requests - setup_calls;
    println!(
        "{leads} leads at {rate}/s from {instances} instances, portal {portal_limit}/10 s, budget {budget_limit}/10 s: \
         answers {answers:?}: {delivered_inline} delivered inline, {queued} queued; {contacts} contacts; {calls} HubSpot calls ({:.3} per lead), \
         429s: {inline_429} inline, {} in all; queue drained after {:.1} s",
        calls as f64 / leads as f64,
        stats.rate_limited,
        all_delivered.as_secs_f64()
    );
}

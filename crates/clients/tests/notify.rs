//! The notices' webhook against a receiver on loopback: a failing receiver is tried again (3 tries in all), and
//! a notice is sent once it is taken.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::post;
use hubrelay_clients::notify::{notifications, Sending, ATTEMPTS};
use hubrelay_core::config::NotifyTarget;
use hubrelay_core::domain::FunctionName;
use hubrelay_core::notify::NoticeKind;
use hubrelay_core::store::{EventRecord, EventStatus};

/// A receiver that answers 500 to its first `failures` requests, then 204; the number of requests it got.
async fn receiver(failures: usize) -> (String, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let app = axum::Router::new().route(
        "/notices",
        post(move || {
            let n = count.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < failures {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notices", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn record() -> EventRecord {
    let now = time::OffsetDateTime::now_utc();
    EventRecord {
        event_id: "evt_notice".into(),
        function: FunctionName::LeadCaptured,
        status: EventStatus::DeadLettered,
        received_at: now,
        updated_at: now,
        next_attempt_at: None,
        attempts: Vec::new(),
        contact_id: None,
        email_masked: None,
        email_hash: None,
        reason: None,
    }
}

async fn send_to(url: String) {
    let target = NotifyTarget { url, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into() };
    let notices = notifications(Some(&target), "acme", Sending::Within(std::time::Duration::from_secs(60))).unwrap();
    notices.send([(NoticeKind::DeadLettered, record())]).await;
}

#[tokio::test]
async fn a_failing_receiver_is_tried_again_until_it_takes_the_notice() {
    let (url, seen) = receiver(2).await;
    send_to(url).await;
    assert_eq!(seen.load(Ordering::SeqCst), 3, "two failures, then taken");
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_gets_three_tries() {
    let (url, seen) = receiver(usize::MAX).await;
    send_to(url).await;
    assert_eq!(seen.load(Ordering::SeqCst), ATTEMPTS as usize);
}

#[tokio::test]
async fn awaited_sends_stop_at_their_budget() {
    // A receiver that never answers: the sender gives up at the budget, not after 3 tries of 5 s.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notices", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let target = NotifyTarget { url, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into() };
    let notices = notifications(Some(&target), "acme", Sending::Within(std::time::Duration::from_millis(500))).unwrap();
    let started = std::time::Instant::now();
    notices.send([(NoticeKind::Parked, record())]).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
}

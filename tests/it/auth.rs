//! Every auth mode through the real server: bearer tokens (two during rotation), Standard Webhooks
//! signatures, HubSpot v3 signatures; missing, wrong and stale credentials get 401 with a JSON code.

use hubrelay_core::auth::{hubspot_v3_signature, sign_standard_webhook};
use serde_json::json;
use time::OffsetDateTime;

use crate::harness::{headers, Serve};

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WHSEC_OLD: &str = "whsec_c2VjcmV0LW9sZC1rZXktZm9yLXJvdGF0aW9u";
const HUBSPOT_SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";

fn lead(email: &str) -> Vec<u8> {
    json!({"email": email, "first_name": "A", "vehicle_of_interest": "X"}).to_string().into_bytes()
}

#[tokio::test]
async fn bearer_tokens_rotate_and_wrong_ones_are_refused() {
    let serve = Serve::start(&[]);
    for token in ["test-token-1", "test-token-2"] {
        let h = headers(&[("authorization", &format!("Bearer {token}"))]);
        let (status, _, body) = serve.post_raw("application/json", lead(&format!("{token}@example.com")), h).await;
        assert_eq!(status, 200, "{token}: {body}");
    }
    let (status, _, body) =
        serve.post_raw("application/json", lead("k@example.com"), headers(&[("x-api-key", "test-token-2")])).await;
    assert_eq!(status, 200, "{body}");

    let (status, _, body) =
        serve.post_raw("application/json", lead("x@example.com"), headers(&[("authorization", "Bearer nope")])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_token")));
    let (status, _, body) =
        serve.post_raw("application/json", lead("x@example.com"), headers(&[("x-no-auth", "1")])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("missing_credentials")));
    assert!(serve.all_contacts().await.iter().all(|c| c["properties"]["email"] != "x@example.com"));
}

#[tokio::test]
async fn standard_webhooks_signatures() {
    let serve = Serve::start(&[("HUBRELAY_WEBHOOK_SECRETS", &format!("{WHSEC_OLD},{WHSEC}"))]);
    let body = lead("svix@example.com");
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let sig = sign_standard_webhook(WHSEC, "msg_1", now, &body).unwrap();
    let ts = now.to_string();
    let h = headers(&[("webhook-id", "msg_1"), ("webhook-timestamp", &ts), ("webhook-signature", &sig)]);
    let (status, _, first) = serve.post_raw("application/json", body.clone(), h.clone()).await;
    assert_eq!(status, 200, "{first}");
    // The same webhook-id re-delivered is a replay, not a second write.
    let (status, rh, again) = serve.post_raw("application/json", body.clone(), h).await;
    assert_eq!(status, 200);
    assert_eq!(rh.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again["event_id"], first["event_id"]);

    // Rotation: a signature by the older secret, among other entries, is accepted too.
    let old = sign_standard_webhook(WHSEC_OLD, "msg_2", now, &body).unwrap();
    let h = headers(&[
        ("webhook-id", "msg_2"),
        ("webhook-timestamp", &ts),
        ("webhook-signature", &format!("v1,AAAA {old}")),
    ]);
    let (status, _, b) = serve.post_raw("application/json", body.clone(), h).await;
    assert_eq!(status, 200, "{b}");

    // Tampered body, stale timestamp.
    let h = headers(&[("webhook-id", "msg_3"), ("webhook-timestamp", &ts), ("webhook-signature", &sig)]);
    let (status, _, b) = serve.post_raw("application/json", lead("evil@example.com"), h).await;
    assert_eq!((status, b["error"]["code"].as_str()), (401, Some("invalid_signature")));
    let stale = now - 600;
    let sig = sign_standard_webhook(WHSEC, "msg_4", stale, &body).unwrap();
    let h = headers(&[("webhook-id", "msg_4"), ("webhook-timestamp", &stale.to_string()), ("webhook-signature", &sig)]);
    let (status, _, b) = serve.post_raw("application/json", body, h).await;
    assert_eq!((status, b["error"]["code"].as_str()), (401, Some("stale_timestamp")));
}

#[tokio::test]
async fn hubspot_v3_signatures() {
    let public = "https://relay.example.com";
    let serve = Serve::start(&[("HUBSPOT_CLIENT_SECRET", HUBSPOT_SECRET), ("HUBRELAY_PUBLIC_URL", public)]);
    let body = lead("workflow@example.com");
    let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let uri = format!("{public}/v1/leads");
    let sig = hubspot_v3_signature(HUBSPOT_SECRET, "POST", &uri, &body, now_ms);
    let ts = now_ms.to_string();
    let h = headers(&[("x-hubspot-signature-v3", &sig), ("x-hubspot-request-timestamp", &ts)]);
    let (status, _, b) = serve.post_raw("application/json", body.clone(), h).await;
    assert_eq!(status, 200, "{b}");

    let stale_ms = now_ms - 6 * 60 * 1000;
    let sig = hubspot_v3_signature(HUBSPOT_SECRET, "POST", &uri, &body, stale_ms);
    let h = headers(&[("x-hubspot-signature-v3", &sig), ("x-hubspot-request-timestamp", &stale_ms.to_string())]);
    let (status, _, b) = serve.post_raw("application/json", body.clone(), h).await;
    assert_eq!((status, b["error"]["code"].as_str()), (401, Some("stale_timestamp")));

    let sig = hubspot_v3_signature("another-secret", "POST", &uri, &body, now_ms);
    let h = headers(&[("x-hubspot-signature-v3", &sig), ("x-hubspot-request-timestamp", &ts)]);
    let (status, _, b) = serve.post_raw("application/json", body, h).await;
    assert_eq!((status, b["error"]["code"].as_str()), (401, Some("invalid_signature")));
}

//! The per-lead CPU path: signature check, parse, map (goal ≤ 50 µs per lead).
//! Run: `cargo bench -p hubrelay-core --bench lead_path`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use hubrelay_core::auth::{sign_standard_webhook, AuthConfig, Authenticator, RequestParts};
use hubrelay_core::lead::parse_json;
use hubrelay_core::mapping::Mapping;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn sample_lead() -> Vec<u8> {
    serde_json::json!({"lead_id": "aimbase_rollick-12345", "email": "jane@example.com", "first_name": "Jane",
        "last_name": "Doe", "phone": "+1 555 0100", "lead_date": "2026-11-20 -06:00", "type": "Quote",
        "source": "Website", "category": "Retail", "product": {"year": "2026", "name": "Model X", "brand": "Acme",
        "make": "Acme", "model": "X", "stock_number": "S123", "msrp": "45999", "display_price": "43999"},
        "comment": "Call after 5", "time_to_purchase": "0-3 months", "consent": {"sms": true, "email": false},
        "dealer": {"name": "Lakeside Motors", "id": "D-17"}, "dealership": {"name": "Lakeside", "slug": "lakeside"},
        "vehicle_of_interest": "2026 Model X", "budget_range": "40-50k", "priority": "high",
        "origin_channel": "chat_widget", "status": "new", "notes": "...", "hubspot_contact_id": null,
        "properties": {"company": "Acme Co"}})
    .to_string()
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let body = sample_lead();
    let now = time::OffsetDateTime::now_utc();
    let ts = now.unix_timestamp();
    let sig = sign_standard_webhook(SECRET, "msg_1", ts, &body).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("webhook-id", "msg_1".parse().unwrap());
    headers.insert("webhook-timestamp", ts.to_string().parse().unwrap());
    headers.insert("webhook-signature", sig.parse().unwrap());
    let auth = Authenticator::new(AuthConfig {
        api_tokens: vec![],
        webhook_secrets: vec![SECRET.into()],
        hubspot_client_secrets: vec![],
        public_url: None,
        replay_window: Duration::from_secs(300),
    })
    .unwrap();
    let aimbase = Mapping::builtin("aimbase").unwrap();
    let chat = Mapping::builtin("chat-widget").unwrap();

    let parts = RequestParts { method: "POST", path_and_query: "/v1/leads", headers: &headers, body: &body };
    c.bench_function("signature_check", |b| b.iter(|| auth.verify(black_box(&parts), now).unwrap()));
    c.bench_function("parse", |b| b.iter(|| parse_json(black_box(&body)).unwrap()));
    let lead = parse_json(&body).unwrap().lead;
    c.bench_function("map_aimbase", |b| b.iter(|| aimbase.apply(black_box(&lead)).unwrap()));
    c.bench_function("lead_path_total", |b| {
        b.iter(|| {
            auth.verify(black_box(&parts), now).unwrap();
            let parsed = parse_json(black_box(&body)).unwrap();
            let a = aimbase.apply(&parsed.lead).unwrap();
            let c = chat.apply(&parsed.lead).unwrap();
            (a, c, parsed.lead.canonical_json())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

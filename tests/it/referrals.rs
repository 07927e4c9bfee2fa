//! Referral programs through `hubrelay serve` with the HubSpot, Extole and impact sandboxes: sign-ups and won
//! deals reach the partners once however often HubSpot delivers the webhook, share links and Advocate users land
//! on contacts, bad signatures are refused, an Extole outage is retried and an impact refusal parked.

use std::time::{Duration, Instant};

use hubrelay_core::auth::hubspot_v3_signature;
use hubrelay_core::auth::partners::{extole_signature, hook_signature};
use hubrelay_core::partners::sha256_hex_email;
use hubrelay_core::store::{EventLog, EventStatus};
use hubrelay_local::sqlite::SqliteStore;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::harness::{headers, Serve, SANDBOX_TOKEN};

const EXTOLE_KEY: &str = "extole-webhook-key";
const HOOK_KEY: &str = "saasquatch-api-key";

async fn post(
    serve: &Serve,
    source: &str,
    body: &Value,
    extra: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let path = format!("/v1/referrals/{source}");
    serve.post_to(&path, "application/json", body.to_string().into_bytes(), headers(extra)).await
}

/// What a partner sandbox received (requests with their status and body), oldest first.
async fn received(serve: &Serve, url: &str) -> Vec<Value> {
    let v: Value = serve.http.get(format!("{url}/__sandbox/received")).send().await.unwrap().json().await.unwrap();
    v.as_array().cloned().unwrap_or_default()
}

async fn set_partner_faults(serve: &Serve, url: &str, faults: Value) {
    let resp = serve.http.post(format!("{url}/__sandbox/faults")).json(&faults).send().await.unwrap();
    assert!(resp.status().is_success());
}

/// Wait until the retry queue is empty, then a little longer for anything in flight.
async fn drained(serve: &Serve) -> SqliteStore {
    let store = SqliteStore::open(&serve.db_path()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.queued_count().unwrap() > 0 {
        assert!(Instant::now() < deadline, "referral actions still queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    store
}

/// A contact made through `POST /v1/leads`; its id.
async fn contact(serve: &Serve, email: &str) -> String {
    let lead = json!({"email": email, "first_name": "Bo", "last_name": "Buyer", "vehicle_of_interest": "X"});
    let (status, _, body) = serve.post_lead(&lead, headers(&[])).await;
    assert_eq!(status, 200, "{body}");
    body["contact_id"].as_str().unwrap().to_string()
}

async fn sandbox(serve: &Serve, method: reqwest::Method, path: &str, body: Value) -> Value {
    let url = format!("{}/crm/v3/objects/{path}", serve.sandbox_url);
    let resp = serve.http.request(method, url).bearer_auth(SANDBOX_TOKEN).json(&body).send().await.unwrap();
    assert!(resp.status().is_success(), "sandbox {path}: {}", resp.status());
    resp.json().await.unwrap()
}

/// A deal in the won stage, associated with `contact_id`; its id.
async fn won_deal(serve: &Serve, contact_id: &str) -> String {
    let body = json!({"properties": {"dealname": "Boat", "dealstage": "closedwon", "amount": "1500.50",
        "closedate": "2026-11-20T10:00:00Z", "hs_deal_stage_probability": "1.0"},
        "associations": [{"to": {"id": contact_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]}]});
    sandbox(serve, reqwest::Method::POST, "deals", body).await["id"].as_str().unwrap().to_string()
}

fn stage_change(deal_id: &str, attempt: u32) -> Value {
    json!([{"eventId": 77, "subscriptionId": 9, "portalId": 1, "occurredAt": 1_764_000_000_000_i64, "attemptNumber": attempt,
        "subscriptionType": "deal.propertyChange", "objectId": deal_id.parse::<u64>().unwrap(),
        "propertyName": "dealstage", "propertyValue": "closedwon", "changeSource": "CRM"}])
}

fn named<'a>(list: &'a [Value], event: &str) -> Vec<&'a Value> {
    list.iter().filter(|r| r["body"]["event_name"] == event).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signup_and_a_won_deal_reach_the_partners_once_however_often_hubspot_delivers() {
    let serve = Serve::start(&[("RUST_LOG", "error")]);
    // A form with an advocate code (workflow custom body), delivered twice.
    let form = json!({"email": "Friend@Example.com", "advocate_code": "ADV-42", "firstname": "Fran",
        "lastname": "Friend", "company": "Acme"});
    let (status, _, first) = post(&serve, "hubspot", &form, &[]).await;
    assert_eq!((status, first["status"].as_str()), (202, Some("accepted")), "{first}");
    assert_eq!(first["actions"][0]["action"], "extole_signup");
    let (status, replayed, again) = post(&serve, "hubspot", &form, &[]).await;
    assert_eq!((status, &again), (202, &first));
    assert_eq!(replayed.get("idempotent-replayed").unwrap(), "true");

    // An existing contact gets an advocate code: the app webhook carries ids only; the rest is read from HubSpot.
    let code_id = contact(&serve, "coded@example.com").await;
    let patch = json!({"properties": {"advocate_code": "ADV-7", "company": "Beta"}});
    sandbox(&serve, reqwest::Method::PATCH, &format!("contacts/{code_id}"), patch).await;
    let change = json!([{"eventId": 5, "subscriptionId": 8, "portalId": 1, "occurredAt": 1_764_000_000_000_i64,
        "subscriptionType": "contact.propertyChange", "objectId": code_id.parse::<u64>().unwrap(),
        "propertyName": "advocate_code", "propertyValue": "ADV-7", "attemptNumber": 0}]);
    let (status, _, body) = post(&serve, "hubspot", &change, &[]).await;
    assert_eq!(status, 202, "{body}");

    // A deal reaches closed won; HubSpot delivers the stage change three times at once, then retries it twice,
    // and a workflow sends the whole deal too.
    let buyer = contact(&serve, "buyer@example.com").await;
    let deal = won_deal(&serve, &buyer).await;
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let (url, body) = (serve.url.clone(), stage_change(&deal, 0));
            tokio::spawn(async move {
                let resp = reqwest::Client::new()
                    .post(format!("{url}/v1/referrals/hubspot"))
                    .bearer_auth(crate::harness::TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(answers.iter().all(|(s, b)| *s == 202 && b == &answers[0].1), "{answers:?}");
    let kinds: Vec<_> = answers[0].1["actions"].as_array().unwrap().iter().map(|a| a["action"].clone()).collect();
    assert_eq!(kinds, [json!("extole_converted"), json!("impact_conversion")]);
    for attempt in 1..=2 {
        let (status, _, body) = post(&serve, "hubspot", &stage_change(&deal, attempt), &[]).await;
        assert_eq!((status, &body), (202, &answers[0].1), "a retry is the same webhook");
    }
    let workflow = json!({"dealId": deal.parse::<u64>().unwrap(), "properties": {"dealstage": {"value": "closedwon"},
        "amount": {"value": "1500.50"}}, "associations": {"associatedVids": [buyer.parse::<u64>().unwrap()]}});
    let (status, _, body) = post(&serve, "hubspot", &workflow, &[]).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["event_ids"], json!([]), "already accepted: {body}");
    assert_eq!(body["duplicates"].as_array().unwrap().len(), 2, "{body}");
    drained(&serve).await;

    let extole = received(&serve, &serve.extole_url).await;
    let signups = named(&extole, "signed_up");
    assert_eq!(signups.len(), 2, "{signups:?}");
    let data = &signups[0]["body"]["data"];
    assert_eq!(data["email"], "friend@example.com");
    assert_eq!((data["advocate_code"].as_str(), data["first_name"].as_str()), (Some("ADV-42"), Some("Fran")));
    assert_eq!((data["company"].as_str(), data["extole_app_type"].as_str()), (Some("Acme"), Some("hubspot")));
    assert!(data["partner_conversion_id"].as_str().unwrap().len() <= 38);
    let data = &signups[1]["body"]["data"];
    assert_eq!((data["email"].as_str(), data["advocate_code"].as_str()), (Some("coded@example.com"), Some("ADV-7")));
    assert_eq!((data["first_name"].as_str(), data["company"].as_str()), (Some("Bo"), Some("Beta")));

    let converted = named(&extole, "converted");
    assert_eq!(converted.len(), 1, "sent once: {converted:?}");
    let data = &converted[0]["body"]["data"];
    assert_eq!(data["email"], "buyer@example.com");
    assert_eq!(data["partner_conversion_id"], format!("deal_closedwon_{deal}").as_str());
    assert_eq!((data["amount"].as_str(), data["product"].as_str()), (Some("1500.50"), Some("Boat")));

    let impact = received(&serve, &serve.impact_url).await;
    assert_eq!(impact.len(), 1, "sent once: {impact:?}");
    let form = &impact[0]["body"];
    assert_eq!(impact[0]["status"], 200);
    assert_eq!(form["CustomerEmail"], sha256_hex_email("buyer@example.com").as_str());
    assert_eq!(form["OrderId"], format!("deal_closedwon_{deal}").as_str());
    assert_eq!((form["EventTypeCode"].as_str(), form["CustomerId"].as_str()), (Some("deal_closedwon"), Some(&*deal)));
    assert_eq!((form["OrderSubTotal"].as_str(), form["Text2"].as_str()), (Some("1500.50"), Some("1.0")));
    assert!(form["Date3"].as_str().unwrap().starts_with("2026-11-20T10:00:00"), "{form}");
    assert!(!impact[0].to_string().contains("buyer@example.com"), "no plaintext email leaves");
}

#[tokio::test]
async fn share_links_and_advocate_users_land_on_contacts_and_bad_signatures_are_refused() {
    let public = "https://relay.example.com";
    let secret = "hubspot-app-secret";
    let serve = Serve::start(&[
        ("EXTOLE_WEBHOOK_SECRETS", EXTOLE_KEY),
        ("IMPACT_WEBHOOK_SECRETS", HOOK_KEY),
        ("HUBSPOT_CLIENT_SECRET", secret),
        ("HUBRELAY_PUBLIC_URL", public),
    ]);
    let existing = contact(&serve, "advocate@example.com").await;

    // Extole's created_share_link controller (signed) for an existing contact; the generic event for a new one.
    let link = json!({"properties": {"email": "advocate@example.com", "share_code": "bo42",
        "share_link": "https://refer.example.com/bo42", "company": "Acme", "extole_app_type": "hubspot"}});
    let sig = extole_signature(EXTOLE_KEY, link.to_string().as_bytes());
    let (status, _, body) = post(&serve, "extole", &link, &[("x-extole-signature", &sig)]).await;
    assert_eq!(status, 202, "{body}");
    let generic = json!({"event": "Share Link Created", "email": "newcomer@example.com", "partner_user_id": "u-9",
        "share_link": "https://refer.example.com/nc9", "share_code": "nc9"});
    let (status, _, body) = post(&serve, "extole", &generic, &[]).await;
    assert_eq!(status, 202, "bearer works too: {body}");

    // An Advocate user.created (signed with the tenant API key).
    let user = json!({"id": "wh-1", "type": "user.created", "tenantAlias": "t1", "live": true, "created": 1,
        "data": {"id": "usr-1", "accountId": "acc-1", "email": "advocate@example.com", "referralCode": "BOREF",
            "shareLinks": {"cleanShareLink": "https://ssqt.co/boref"}, "referredByReferralCode": "FRIEND1"}});
    let sig = hook_signature(HOOK_KEY, user.to_string().as_bytes());
    let (status, _, body) = post(&serve, "impact", &user, &[("x-hook-signature", &sig)]).await;
    assert_eq!(status, 202, "{body}");
    let other = json!({"id": "wh-2", "type": "reward.created", "data": {}});
    let sig = hook_signature(HOOK_KEY, other.to_string().as_bytes());
    let (status, _, body) = post(&serve, "impact", &other, &[("x-hook-signature", &sig)]).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ignored")), "{body}");
    drained(&serve).await;

    let p = serve.contact("advocate@example.com").await.unwrap();
    assert_eq!(p["id"], existing.as_str(), "updated, not created");
    let p = &p["properties"];
    assert_eq!(
        (p["share_code"].as_str(), p["share_link"].as_str()),
        (Some("bo42"), Some("https://refer.example.com/bo42"))
    );
    assert_eq!((p["company"].as_str(), p["extole_app_type"].as_str()), (Some("Acme"), Some("hubspot")));
    assert_eq!(
        (p["advocate_referral_code"].as_str(), p["advocate_share_link"].as_str()),
        (Some("BOREF"), Some("https://ssqt.co/boref"))
    );
    assert_eq!(
        (p["advocate_referred_by_code"].as_str(), p["advocate_user_id"].as_str()),
        (Some("FRIEND1"), Some("usr-1"))
    );
    assert_eq!(p["advocate_account_id"], "acc-1");
    let p = serve.contact("newcomer@example.com").await.expect("created")["properties"].clone();
    assert_eq!(p["share_link"], "https://refer.example.com/nc9");

    // Bad signatures: 401 with a JSON code, nothing queued.
    let (status, _, body) = post(&serve, "extole", &link, &[("x-extole-signature", &"0".repeat(64))]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_signature")), "{body}");
    let wrong = hook_signature("another-key", user.to_string().as_bytes());
    let (status, _, body) = post(&serve, "impact", &user, &[("x-hook-signature", &wrong)]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_signature")), "{body}");
    let form = json!({"email": "signed@example.com", "advocate_code": "S1"});
    let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let uri = format!("{public}/v1/referrals/hubspot");
    let bytes = form.to_string().into_bytes();
    for (key, want) in [("another-secret", 401), (secret, 202)] {
        let sig = hubspot_v3_signature(key, "POST", &uri, &bytes, now_ms);
        let h = [("x-hubspot-signature-v3", sig.as_str()), ("x-hubspot-request-timestamp", &now_ms.to_string())];
        let (status, _, body) = post(&serve, "hubspot", &form, &h).await;
        assert_eq!(status, want, "{body}");
    }
    let (status, _, body) = post(&serve, "hubspot", &json!([]), &[]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_payload")), "{body}");
}

#[tokio::test]
async fn an_extole_outage_is_retried_on_the_schedule_and_an_impact_refusal_is_parked() {
    let serve = Serve::start(&[("HUBRELAY_RETRY_SCHEDULE", "300ms,300ms,300ms"), ("HUBRELAY_RETRY_JITTER", "0")]);
    let buyer = contact(&serve, "won@example.com").await;
    let deal = won_deal(&serve, &buyer).await;
    set_partner_faults(&serve, &serve.extole_url, json!({"fail_next": 2, "status": 500})).await;
    set_partner_faults(&serve, &serve.impact_url, json!({"fail_next": 1, "status": 400})).await;
    let (status, _, body) = post(&serve, "hubspot", &stage_change(&deal, 0), &[]).await;
    assert_eq!(status, 202, "{body}");
    let ids: Vec<String> =
        body["actions"].as_array().unwrap().iter().map(|a| a["event_id"].as_str().unwrap().to_string()).collect();
    let store = drained(&serve).await;

    // Extole: two 500s, then delivered once, each retry on the schedule.
    let extole = received(&serve, &serve.extole_url).await;
    let statuses: Vec<_> = extole.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [500, 500, 200]);
    let record = store.get_event(&ids[0]).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Delivered);
    assert_eq!(record.attempts.len(), 3, "{:?}", record.attempts);
    assert_eq!(record.attempts[0].error_code.as_deref(), Some("extole_unavailable"));
    for pair in record.attempts.windows(2) {
        assert!(pair[1].at - pair[0].at >= time::Duration::milliseconds(290), "{:?}", record.attempts);
    }

    // impact: a 400 is parked at once with impact's own text, visible in `hubrelay dlq`.
    let dead = store.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, ids[1]);
    let reason = dead[0].dead_letter_reason.clone().unwrap();
    assert!(reason.message.contains("The conversion was refused (forced by the sandbox)"), "{reason:?}");
    assert_eq!(received(&serve, &serve.impact_url).await.len(), 1, "not retried");
    let dlq = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubrelay"))
            .arg("dlq")
            .args(args)
            .arg("--data-dir")
            .arg(serve.data_dir.path())
            .env_remove("HUBRELAY_DLQ_URL")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(dlq(&["list"]).contains(&ids[1]));
    let shown = dlq(&["show", &ids[1]]);
    assert!(shown.contains("forced by the sandbox") && shown.contains("referral-event"), "{shown}");
}

#[tokio::test]
async fn advocate_referral_events_find_their_contacts_by_user_id_once_search_has_them() {
    let serve = Serve::start(&[("IMPACT_WEBHOOK_SECRETS", HOOK_KEY)]);
    // HubSpot's index lags writes by seconds: longer than the first attempt, shorter than the 5-s retry.
    let faults = serve.http.post(format!("{}/__sandbox/faults", serve.sandbox_url));
    assert!(faults.json(&json!({"search_lag_ms": 3_000})).send().await.unwrap().status().is_success());
    let signed = |v: &Value| hook_signature(HOOK_KEY, v.to_string().as_bytes());
    let users =
        [("usr-0", "acc-0", "referrer@example.com", "REFR0"), ("usr-5", "acc-5", "friend@example.com", "FRND5")];
    for (i, (id, account, email, code)) in users.iter().enumerate() {
        let user = json!({"id": format!("wh-u{i}"), "type": "user.created", "tenantAlias": "t1", "live": true,
            "created": 1, "data": {"id": id, "accountId": account, "email": email, "referralCode": code,
                "messageLinks": {"referral-program": {"SMS": format!("https://ssqt.co/{code}/s"),
                                                      "EMAIL": format!("https://ssqt.co/{code}/e")}}}});
        let (status, _, body) = post(&serve, "impact", &user, &[("x-hook-signature", &signed(&user))]).await;
        assert_eq!(status, 202, "{body}");
    }
    // Sent at once: the friend's contact is being written and is not searchable yet.
    let converted = json!({"id": "wh-r1", "type": "referral.converted", "tenantAlias": "t1", "live": true,
        "created": 2, "data": {"id": "ref-1", "referredUser": "usr-5", "referredAccount": "acc-5",
            "referrerUser": "usr-0", "referrerAccount": "acc-0", "dateConverted": 2}});
    let (status, _, body) = post(&serve, "impact", &converted, &[("x-hook-signature", &signed(&converted))]).await;
    assert_eq!((status, body["actions"][0]["action"].as_str()), (202, Some("update_advocate_user")), "{body}");
    let event_id = body["event_ids"][0].as_str().unwrap().to_string();
    let store = drained(&serve).await;

    let record = store.get_event(&event_id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Delivered, "{:?}", record.attempts);
    assert_eq!(record.attempts[0].error_code.as_deref(), Some("contact_not_indexed"), "{:?}", record.attempts);
    let friend = serve.contact("friend@example.com").await.unwrap();
    let p = &friend["properties"];
    assert_eq!(p["advocate_referral_status"], "converted", "{friend}");
    assert_eq!(p["advocate_referred_by_code"], "REFR0", "the referrer's code, from their contact");
    let referrer = serve.contact("referrer@example.com").await.unwrap();
    assert_eq!(
        referrer["properties"]["advocate_message_links"],
        "EMAIL: https://ssqt.co/REFR0/e\nSMS: https://ssqt.co/REFR0/s"
    );
    assert!(referrer["properties"]["advocate_referral_status"].is_null(), "only the referred contact changes");
    let stats: Value =
        serve.http.get(format!("{}/__sandbox/stats", serve.sandbox_url)).send().await.unwrap().json().await.unwrap();
    let creates = stats["by_endpoint"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("POST") && k.contains("/objects/") && k.ends_with("/contacts"))
        .count();
    assert_eq!(creates, 0, "no contact created by id: {stats}");
}

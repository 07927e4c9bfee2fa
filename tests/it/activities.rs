//! Activities through `hubrelay serve`: each kind becomes the right engagement on the contact's timeline,
//! once, even when posted concurrently or retried after an outage.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::harness::Serve;
use crate::status::aimbase_lead;

#[tokio::test]
async fn each_kind_becomes_the_right_engagement_associated_with_the_contact() {
    let serve = Serve::start(&[("HUBRELAY_MAPPING", "aimbase")]);
    let contact_id = aimbase_lead(&serve, "act-1", "dealer-touch@example.com").await;
    let kinds = [
        ("Email", "emails", 197),
        ("Phone Call", "calls", 193),
        ("Appointment", "meetings", 199),
        ("Quote", "notes", 201),
        ("SMS", "communications", 82),
        ("Note", "notes", 201),
        ("Comment", "notes", 201),
    ];
    for (i, (kind, object, _)) in kinds.iter().enumerate() {
        let activity = json!({"lead_id": "act-1", "type": kind, "subject": format!("{kind} subject"),
            "body": format!("{kind} body"), "direction": "outbound", "duration_seconds": 300,
            "outcome": "completed", "author": "Sam Dealer", "occurred_at": format!("2026-11-21T1{i}:00:00Z")});
        let (status, _, body) = serve.post_activity(&activity).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!((body["status"].as_str(), body["engagement_type"].as_str()), (Some("delivered"), Some(*object)));
        assert_eq!(body["contact_id"], contact_id.as_str());
    }
    for (object, count) in [("emails", 1), ("calls", 1), ("meetings", 1), ("notes", 3), ("communications", 1)] {
        let found = serve.engagements(&contact_id, object, &["hs_timestamp"]).await;
        assert_eq!(found.len(), count, "{object}");
        let reverse = kinds.iter().find(|(_, o, _)| *o == object).unwrap().2;
        assert!(found.iter().all(|(_, types)| types == &vec![reverse]), "{object}: {found:?}");
    }
    let call = &serve
        .engagements(&contact_id, "calls", &["hs_call_direction", "hs_call_duration", "hs_call_status", "hs_call_body"])
        .await[0]
        .0;
    assert_eq!(call["properties"]["hs_call_direction"], "OUTBOUND");
    assert_eq!(call["properties"]["hs_call_duration"], "300000");
    assert_eq!(call["properties"]["hs_call_status"], "COMPLETED");
    assert_eq!(call["properties"]["hs_call_body"], "Phone Call body\n— Sam Dealer");
    let meeting = &serve
        .engagements(&contact_id, "meetings", &["hs_meeting_start_time", "hs_meeting_end_time", "hs_meeting_outcome"])
        .await[0]
        .0;
    assert_eq!(meeting["properties"]["hs_meeting_start_time"], "2026-11-21T12:00:00.000Z");
    assert_eq!(meeting["properties"]["hs_meeting_end_time"], "2026-11-21T12:05:00.000Z");
    assert_eq!(meeting["properties"]["hs_meeting_outcome"], "COMPLETED");
    let sms = &serve.engagements(&contact_id, "communications", &["hs_communication_channel_type"]).await[0].0;
    assert_eq!(sms["properties"]["hs_communication_channel_type"], "SMS");
    let email = &serve.engagements(&contact_id, "emails", &["hs_email_direction", "hs_email_subject"]).await[0].0;
    assert_eq!(email["properties"]["hs_email_direction"], "EMAIL");
    assert_eq!(email["properties"]["hs_email_subject"], "Email subject");
    let notes = serve.engagements(&contact_id, "notes", &["hs_note_body"]).await;
    let bodies: Vec<_> =
        notes.iter().map(|(n, _)| n["properties"]["hs_note_body"].as_str().unwrap().to_string()).collect();
    assert!(bodies.contains(&"Quote: Quote subject\nQuote body\n— Sam Dealer".to_string()), "{bodies:?}");

    // The profile's "last activity" properties follow the newest activity; the comment is kept as text.
    let p = serve.contact("dealer-touch@example.com").await.unwrap()["properties"].clone();
    assert_eq!(p["aimbase_last_activity_type"], "Comment");
    assert_eq!(p["aimbase_last_activity_date"], "2026-11-21T16:00:00.000Z");
    assert_eq!(p["aimbase_dealer_comment"], "Comment body");
    // An older activity arriving late adds its engagement but leaves "last activity" alone.
    let (_, _, body) = serve
        .post_activity(
            &json!({"contact_id": contact_id, "type": "note", "body": "late", "occurred_at": "2026-11-20T09:00:00Z"}),
        )
        .await;
    assert_eq!((body["status"].as_str(), body["skipped"].clone()), (Some("delivered"), json!(["last_activity"])));
    assert_eq!(serve.engagements(&contact_id, "notes", &[]).await.len(), 4);
    let p = serve.contact("dealer-touch@example.com").await.unwrap()["properties"].clone();
    assert_eq!(p["aimbase_last_activity_type"], "Comment");
}

#[tokio::test]
async fn the_same_activity_posted_three_times_concurrently_makes_one_engagement() {
    let serve = Arc::new(Serve::start(&[]));
    let (status, _, lead) =
        serve.post_lead(&json!({"email": "thrice@example.com"}), crate::harness::headers(&[])).await;
    assert_eq!(status, 200, "{lead}");
    let contact_id = lead["contact_id"].as_str().unwrap().to_string();
    let with_id =
        json!({"email": "thrice@example.com", "type": "call", "activity_id": "CRM-77", "body": "left a message"});
    let without_id = json!({"contact_id": contact_id, "type": "Note", "body": "asked for brochure",
        "occurred_at": "2026-11-22T09:30:00-05:00"});
    for (activity, object) in [(with_id, "calls"), (without_id, "notes")] {
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (serve, activity) = (serve.clone(), activity.clone());
            tasks.push(tokio::spawn(async move { serve.post_activity(&activity).await }));
        }
        let mut event_ids = Vec::new();
        for t in tasks {
            let (status, _, body) = t.await.unwrap();
            assert_eq!(status, 200, "{body}");
            event_ids.push(body["event_id"].clone());
        }
        event_ids.dedup();
        assert_eq!(event_ids.len(), 1, "every copy answered with the first one's event");
        assert_eq!(serve.engagements(&contact_id, object, &[]).await.len(), 1, "{object}");
    }
}

#[tokio::test]
async fn an_activity_refused_during_an_outage_is_created_once_by_the_worker() {
    let serve = Serve::start(&[]);
    let (_, _, lead) = serve.post_lead(&json!({"email": "later@example.com"}), crate::harness::headers(&[])).await;
    let contact_id = lead["contact_id"].as_str().unwrap().to_string();
    serve.set_faults(json!({"failure_rate": 1.0, "failure_status": 502})).await;
    let (status, _, body) =
        serve.post_activity(&json!({"contact_id": contact_id, "type": "appointment", "subject": "Sea trial"})).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")), "{body}");
    serve.set_faults(json!({"failure_rate": 0.0})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while serve.engagements(&contact_id, "meetings", &[]).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the worker never created the meeting");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(serve.engagements(&contact_id, "meetings", &[]).await.len(), 1);
}

#[tokio::test]
async fn malformed_activities_get_4xx_codes() {
    let serve = Serve::start(&[]);
    for (body, code, error) in [
        (json!({"email": "a@b.com"}), 422, "missing_field"),
        (json!({"email": "a@b.com", "type": "fax"}), 422, "invalid_value"),
        (json!({"email": "a@b.com", "type": "Working"}), 422, "wrong_endpoint"),
        (json!({"type": "note"}), 422, "missing_contact_reference"),
        (json!({"email": "a@b.com", "type": "note", "mood": "happy"}), 400, "unknown_field"),
        (
            json!({"ProspectActivity": {"EntryType": "Lead Status", "EntryDetail": "Sold", "PCHProspectId": "1"}}),
            422,
            "wrong_endpoint",
        ),
    ] {
        let (status, _, v) = serve.post_activity(&body).await;
        assert_eq!((status, v["error"]["code"].as_str()), (code, Some(error)), "{body}");
    }
}

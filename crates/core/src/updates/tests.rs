use serde_json::json;

use super::*;

fn status(v: serde_json::Value) -> Result<StatusUpdate, UpdateError> {
    parse_status_update(v.to_string().as_bytes())
}

fn activity(v: serde_json::Value) -> Result<Activity, UpdateError> {
    parse_activity(v.to_string().as_bytes())
}

#[test]
fn plain_status_update_reads_every_field() {
    let u = status(json!({
        "contact_id": 901, "status": "working", "lead_created_date": "2026-11-20 -06:00",
        "dealer": {"name": "Lakeside Marine", "id": "D-7"}, "rollick_score": "87.50",
        "changed_at": "2026-11-21T10:00:00Z", "update_id": "u-1"
    }))
    .unwrap();
    assert_eq!(u.contact.contact_id.as_deref(), Some("901"));
    assert_eq!(u.status, Some(LeadStatus::Working));
    assert_eq!(u.lead_created_date.as_deref(), Some("2026-11-20 -06:00"));
    assert_eq!((u.dealer_name.as_deref(), u.dealer_id.as_deref()), (Some("Lakeside Marine"), Some("D-7")));
    assert_eq!(u.rollick_score.as_deref(), Some("87.5"));
    assert_eq!(u.changed_at.unwrap().unix_timestamp(), 1_795_255_200);
    assert_eq!(u.update_id.as_deref(), Some("u-1"));
}

#[test]
fn aimbase_entries_normalise_like_the_plain_shape() {
    let plain = status(json!({"lead_id": "aimbase_rollick-12345", "status": "Sold",
        "changed_at": "2026-11-21T04:00:00-06:00", "author": "Jane"}))
    .unwrap();
    let aimbase = status(json!({"ProspectActivity": {
        "EntryDate": "2026-11-21T04:00:00-06:00", "SourceProspectId": "aimbase_rollick-12345",
        "EntryType": "Lead Status", "EntryDetail": "SOLD", "DealershipUser": "Jane"}}))
    .unwrap();
    assert_eq!(plain, aimbase);

    let reassigned = status(json!({"ProspectActivity": {"EntryType": "Dealer Reassignment",
        "EntryDetail": "Bayview Boats", "PCHProspectId": "77", "SourceProspectId": "s-1"}}))
    .unwrap();
    assert_eq!(reassigned.dealer_name.as_deref(), Some("Bayview Boats"));
    assert_eq!(reassigned.contact.lead_ids, vec!["s-1".to_string(), "77".to_string()]);
    let score = status(json!({"ProspectActivity": {"EntryType": "Rollick Score", "EntryDetail": "92",
        "HubSpotContactId": "5"}}))
    .unwrap();
    assert_eq!(score.rollick_score.as_deref(), Some("92"));
    assert_eq!(score.contact.contact_id.as_deref(), Some("5"));
}

#[test]
fn bad_status_updates_name_the_problem() {
    let cases = [
        (json!({"email": "a@b.com"}), "empty_update"),
        (json!({"status": "Working"}), "missing_contact_reference"),
        (json!({"email": "a@b.com", "status": "Shipped"}), "invalid_value"),
        (json!({"email": "a@b.com", "status": "Working", "colour": "red"}), "unknown_field"),
        (json!({"email": "a@b.com", "status": true}), "invalid_type"),
        (json!({"email": "a@b.com", "rollick_score": "high"}), "invalid_type"),
        (json!({"email": "a@b.com", "lead_created_date": "20/11/2026"}), "invalid_value"),
        (json!({"email": "not-an-email", "status": "Working"}), "invalid_value"),
        (json!({"email": "a@b.com", "status": "Sold", "lead_status": "Lost"}), "invalid_value"),
        (json!({"ProspectActivity": {"EntryType": "Phone Call", "HubSpotContactId": "1"}}), "wrong_endpoint"),
        (json!({"ProspectActivity": {"EntryType": "Status", "HubSpotContactId": "1"}}), "missing_field"),
        (json!({"ProspectActivity": {"EntryType": "Status", "EntryDetail": "Sold", "Extra": 1}}), "unknown_field"),
        (json!([1, 2]), "invalid_body"),
    ];
    for (body, code) in cases {
        let err = status(body.clone()).unwrap_err();
        assert_eq!(err.code(), code, "{body}: {err}");
    }
    assert_eq!(parse_status_update(b"{").unwrap_err().code(), "malformed_json");
    assert_eq!(parse_status_update(b" ").unwrap_err().code(), "empty_body");
}

#[test]
fn activities_parse_each_kind_and_shape() {
    for (name, kind) in [
        ("Email", ActivityKind::Email),
        ("Phone Call", ActivityKind::PhoneCall),
        ("appointment", ActivityKind::Appointment),
        ("QUOTE", ActivityKind::Quote),
        ("SMS", ActivityKind::Sms),
        ("note", ActivityKind::Note),
        ("Comment", ActivityKind::Comment),
    ] {
        let a = activity(json!({"email": "a@b.com", "type": name, "body": "hi"})).unwrap();
        assert_eq!(a.kind, kind, "{name}");
    }
    let a = activity(json!({"contact_id": "9", "type": "call", "direction": "outgoing", "duration_seconds": 90,
        "subject": "Follow-up", "outcome": "COMPLETED", "occurred_at": "2026-11-21T10:00:00Z", "activity_id": "A1"}))
    .unwrap();
    assert_eq!((a.direction, a.duration_ms), (Some(Direction::Outbound), Some(90_000)));
    let aimbase = activity(json!({"ProspectActivity": {"EntryType": "Note", "EntryDetail": "Called back",
        "EntryDate": "2026-11-21 09:00:00 -05:00", "PCHProspectId": "88", "DealershipUser": "Sam"}}))
    .unwrap();
    let plain = activity(json!({"lead_id": "88", "type": "note", "body": "Called back",
        "occurred_at": "2026-11-21T14:00:00Z", "author": "Sam"}))
    .unwrap();
    assert_eq!(aimbase, plain);
    // Aimbase echoes the HubSpot contact id back inside its own entry (ProspectExternalId / HubSpotContactId).
    for field in ["ProspectExternalId", "HubSpotContactId"] {
        let echoed = activity(json!({"ProspectActivity": {"EntryType": "Note", "EntryDetail": "Called back",
            "PCHProspectId": "88", field: "1001"}}))
        .unwrap();
        assert_eq!(echoed.contact.contact_id.as_deref(), Some("1001"), "{field}");
        assert_eq!(echoed.contact.lead_ids, vec!["88".to_string()], "{field}");
    }
}

#[test]
fn bad_activities_name_the_problem() {
    let cases = [
        (json!({"email": "a@b.com"}), "missing_field"),
        (json!({"email": "a@b.com", "type": "fax"}), "invalid_value"),
        (json!({"email": "a@b.com", "type": "Working"}), "wrong_endpoint"),
        (json!({"type": "note"}), "missing_contact_reference"),
        (json!({"email": "a@b.com", "type": "call", "direction": "sideways"}), "invalid_value"),
        (json!({"email": "a@b.com", "type": "call", "duration_seconds": -4}), "invalid_value"),
        (json!({"email": "a@b.com", "type": "note", "body": "x".repeat(MAX_BODY_CHARS + 1)}), "invalid_value"),
        (json!({"email": "a@b.com", "type": "note", "mood": "happy"}), "unknown_field"),
    ];
    for (body, code) in cases {
        let err = activity(body.clone()).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
    }
}

#[test]
fn status_changes_follow_the_profile_including_hubspot_fields() {
    let m = crate::mapping::Mapping::from_toml(
        "name = \"x\"\n[status]\ncreated_date_type = \"datetime\"\nscore_property = \"\"\n\
         [status.hs_lead_status]\nWorking = \"IN_PROGRESS\"\n[status.lifecyclestage]\nSold = \"customer\"\n",
        "x.toml",
    )
    .unwrap();
    let at = time::macros::datetime!(2026-11-21 10:00 UTC);
    let u = status(json!({"email": "a@b.com", "status": "working", "lead_created_date": "2026-11-20 -06:00",
        "rollick_score": 5}))
    .unwrap();
    let changes = status_changes(&m.status, &u, at);
    let fields: Vec<_> = changes.iter().map(|c| c.field).collect();
    assert_eq!(fields, ["status", "created_date"], "score is switched off");
    assert_eq!(changes[0].properties["aimbase_lead_status"], "Working");
    assert_eq!(changes[0].properties["hs_lead_status"], "IN_PROGRESS");
    assert!(!changes[0].properties.contains_key("lifecyclestage"));
    // datetime: the instant (local midnight at -06:00 = 06:00 UTC), not the calendar day.
    assert_eq!(changes[1].properties["aimbase_lead_created_date"], "1795154400000");
    let sold = status(json!({"email": "a@b.com", "status": "Sold"})).unwrap();
    assert_eq!(status_changes(&m.status, &sold, at)[0].properties["lifecyclestage"], "customer");
    // Same values → same fingerprint; other values → another.
    assert_eq!(changes[0].fingerprint(), status_changes(&m.status, &u, at)[0].fingerprint());
    assert_ne!(changes[0].fingerprint(), status_changes(&m.status, &sold, at)[0].fingerprint());
}

#[test]
fn bodies_are_strict_json_and_emails_normalised() {
    let e = parse_status_update(br#"{"email":"a@b.com","status":"Working","status":"Sold"}"#).unwrap_err();
    assert_eq!((e.code(), e.field(), e.is_syntax()), ("duplicate_key", Some("status"), true));
    let e = parse_activity(br#"{"email":"a@b.com","type":"note","body":"x","dealer":{"id":1,"id":2}}"#).unwrap_err();
    assert_eq!((e.code(), e.field()), ("duplicate_key", Some("dealer.id")));
    let e = parse_status_update(br#"{"email":"a@b.com","status":"Work\u0000ing"}"#).unwrap_err();
    assert_eq!((e.code(), e.field(), e.is_syntax()), ("nul_character", Some("status"), false));
    assert_eq!(parse_status_update(b"{\"email\":\"\xff\"}").unwrap_err().code(), "invalid_encoding");
    // The same contact as the lead that created it: NFC, ASCII domain, lower-case.
    let u = status(json!({"email": "JO\u{308}RG@Bücher.de", "status": "Working"})).unwrap();
    assert_eq!(u.contact.email.as_deref(), Some("j\u{f6}rg@xn--bcher-kva.de"));
    let e = status(json!({"email": "a\u{200B}@b.com", "status": "Working"})).unwrap_err();
    assert_eq!((e.code(), e.field()), ("invalid_value", Some("email")));
}

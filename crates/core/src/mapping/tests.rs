//! Tests of the mapping: both built-in profiles, `apply` and property definitions.

use std::collections::BTreeMap;

use super::apply::decimal;
use super::*;
use crate::lead::{parse_json, tests::SAMPLE};

fn sample() -> Lead {
    parse_json(SAMPLE.as_bytes()).unwrap().lead
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn aimbase() -> Mapping {
    Mapping::load("aimbase").unwrap()
}

fn chat() -> Mapping {
    Mapping::load("chat-widget").unwrap()
}

#[test]
fn builtins_parse_under_their_names() {
    for name in Mapping::builtin_names() {
        let m = Mapping::builtin(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(m.name, *name);
        assert_eq!(m.origin, format!("builtin:{name}"));
        assert_eq!(m.group, "contactinformation");
        assert_eq!(Mapping::load(name).unwrap(), m);
    }
    assert!(Mapping::builtin("nope").is_none());
}

#[test]
fn aimbase_maps_the_sample_lead() {
    let upsert = aimbase().apply(&sample()).unwrap();
    assert_eq!(upsert.email, "jane@example.com");
    let expected = map(&[
        ("email", "jane@example.com"),
        ("firstname", "Jane"),
        ("lastname", "Doe"),
        ("phone", "+1 555 0100"),
        ("aimbase_identifier", "aimbase_rollick-12345"),
        ("aimbase_date", "1795132800000"), // 2026-11-20T00:00Z, the sender's calendar date
        ("aimbase_type", "Quote"),
        ("aimbase_source", "Website"),
        ("aimbase_category", "Retail"),
        ("aimbase_prodyear", "2026"),
        ("aimbase_prodname", "Model X"),
        ("aimbase_prodbrand", "Acme"),
        ("aimbase_comment", "Call after 5"),
        ("aimbase_timetopurchase", "0-3 months"),
        ("aimbase_smsconsent", "true"),
        ("aimbase_emailconsent", "false"),
        ("aimbase_stock", "S123"),
        ("aimbase_dealername", "Lakeside Motors"),
        ("aimbase_msrp", "45999"),
        ("aimbase_displayprice", "43999"),
        ("lifecyclestage", "lead"),
        ("any_hubspot_property", "value"),
    ]);
    assert_eq!(upsert.properties, expected);
}

#[test]
fn chat_widget_maps_the_sample_lead() {
    let upsert = chat().apply(&sample()).unwrap();
    assert_eq!(upsert.email, "jane@example.com");
    let expected = map(&[
        ("email", "jane@example.com"),
        ("firstname", "Jane"),
        ("lastname", "Doe"),
        ("phone", "+1 555 0100"),
        ("vehicle_of_interest", "2026 Model X"),
        ("budget_range", "40-50k"),
        ("lead_priority", "high"),
        ("lead_origin_channel", "chat_widget"),
        ("dealership_name", "Lakeside"),
        ("dealership_slug", "lakeside"),
        ("hs_lead_status", "NEW"),
        ("message", "..."),
        ("lifecyclestage", "lead"),
        ("any_hubspot_property", "value"),
    ]);
    assert_eq!(upsert.properties, expected);
}

#[test]
fn required_fields() {
    let mut lead = sample();
    lead.email = None;
    let e = aimbase().apply(&lead).unwrap_err();
    assert_eq!((e.code, e.field.as_str()), ("missing_required_field", "email"));
    let e = chat().apply(&lead).unwrap_err();
    assert_eq!((e.code, e.field.as_str()), ("missing_required_field", "email"));

    for (field, clear) in [
        ("lead_id", (|l: &mut Lead| l.lead_id = None) as fn(&mut Lead)),
        ("lead_date", |l| l.lead_date = None),
        ("product.year", |l| l.product.year = None),
        ("product.name", |l| l.product.name = Some(String::new())),
        ("product.brand", |l| l.product.brand = None),
        ("dealer.name", |l| l.dealer.name = None),
    ] {
        let mut lead = sample();
        clear(&mut lead);
        let e = aimbase().apply(&lead).unwrap_err();
        assert_eq!((e.code, e.field.as_str()), ("missing_required_field", field));
        assert!(e.message.contains(field), "{e}");
    }

    // Optional fields are simply left out.
    let mut lead = sample();
    lead.comment = None;
    lead.consent = Default::default();
    let props = aimbase().apply(&lead).unwrap().properties;
    assert!(!props.contains_key("aimbase_comment"));
    assert!(!props.contains_key("aimbase_smsconsent"));

    let mut lead = sample();
    lead.email = Some("not-an-email".into());
    assert_eq!(aimbase().apply(&lead).unwrap_err().code, "invalid_email");
}

#[test]
fn enumerations() {
    let m = chat();
    let with = |priority: &str, status: &str| {
        let mut lead = sample();
        lead.priority = Some(priority.into());
        lead.status = Some(status.into());
        m.apply(&lead)
    };
    let p = with("HIGH", "Working").unwrap().properties;
    assert_eq!((p["lead_priority"].as_str(), p["hs_lead_status"].as_str()), ("high", "IN_PROGRESS"));
    let p = with("Low", "in progress").unwrap().properties;
    assert_eq!(p["hs_lead_status"], "IN_PROGRESS");
    let p = with("medium", "contacted").unwrap().properties;
    assert_eq!(p["hs_lead_status"], "CONNECTED");
    let p = with("medium", "Bad Timing").unwrap().properties;
    assert_eq!(p["hs_lead_status"], "BAD_TIMING");
    let p = with("medium", "open_deal").unwrap().properties;
    assert_eq!(p["hs_lead_status"], "OPEN_DEAL");

    let e = with("urgent", "new").unwrap_err();
    assert_eq!((e.code, e.field.as_str()), ("invalid_option", "priority"));
    assert!(e.message.contains("high, medium, low"), "{e}");
    let e = with("high", "sold").unwrap_err();
    assert_eq!((e.code, e.field.as_str()), ("invalid_option", "status"));
    assert!(e.message.contains("NEW, OPEN, IN_PROGRESS"), "{e}");
}

#[test]
fn aimbase_date_is_the_local_calendar_date_at_midnight_utc() {
    let m = aimbase();
    let date_of = |s: &str| {
        let mut lead = sample();
        lead.lead_date = Some(s.into());
        m.apply(&lead).map(|u| u.properties["aimbase_date"].clone())
    };
    // 2015-05-01 at -06:00 starts at 06:00 UTC, at +09:00 the day before in UTC: both are May 1st.
    assert_eq!(date_of("2015-05-01 -06:00").unwrap(), "1430438400000");
    assert_eq!(date_of("2015-05-01 +09:00").unwrap(), "1430438400000");
    assert_eq!(date_of("2015-05-01T23:30:00-06:00").unwrap(), "1430438400000");
    let e = date_of("05/01/2015").unwrap_err();
    assert_eq!((e.code, e.field.as_str()), ("invalid_date", "lead_date"));
}

#[test]
fn numbers_are_cleaned_up() {
    let m = aimbase();
    let msrp = |s: &str| {
        let mut lead = sample();
        lead.product.msrp = Some(s.into());
        m.apply(&lead).map(|u| u.properties["aimbase_msrp"].clone())
    };
    assert_eq!(msrp("$45,999").unwrap(), "45999");
    assert_eq!(msrp("45999.50").unwrap(), "45999.50");
    assert_eq!(msrp("$1,234,567.5").unwrap(), "1234567.5");
    let e = msrp("call us").unwrap_err();
    assert_eq!((e.code, e.field.as_str()), ("invalid_number", "product.msrp"));
    for bad in ["", "$", "45,5", "1,2345", ",999", "1e3", "12.", ".5", "4 5", "--1", "1.2.3"] {
        assert_eq!(decimal(bad), None, "{bad:?}");
    }
    assert_eq!(decimal("-$12.25").as_deref(), Some("-12.25"));
    assert_eq!(decimal("0").as_deref(), Some("0"));
}

#[test]
fn booleans() {
    let m = aimbase();
    let mut lead = sample();
    lead.consent.sms = Some(false);
    lead.consent.email = Some(true);
    let p = m.apply(&lead).unwrap().properties;
    assert_eq!((p["aimbase_smsconsent"].as_str(), p["aimbase_emailconsent"].as_str()), ("false", "true"));

    let custom = Mapping::from_toml(
        "name = \"t\"\n[[field]]\nfrom = \"comment\"\nproperty = \"opted_in\"\ntype = \"bool\"\n",
        "t",
    )
    .unwrap();
    let mut lead = sample();
    lead.comment = Some("Yes".into());
    assert_eq!(custom.apply(&lead).unwrap().properties["opted_in"], "true");
    lead.comment = Some("perhaps".into());
    assert_eq!(custom.apply(&lead).unwrap_err().code, "invalid_option");
}

#[test]
fn free_properties_pass_through_but_not_over_email() {
    let mut lead = sample();
    lead.properties = map(&[
        ("email", "evil@example.com"),
        ("EMAIL", "evil@example.com"),
        ("favourite_dealer", "Lakeside"),
        ("lifecyclestage", "customer"),
    ]);
    let u = aimbase().apply(&lead).unwrap();
    assert_eq!(u.email, "jane@example.com");
    assert_eq!(u.properties["email"], "jane@example.com");
    assert!(!u.properties.contains_key("EMAIL"));
    assert_eq!(u.properties["favourite_dealer"], "Lakeside");
    assert_eq!(u.properties["lifecyclestage"], "customer");
}

#[test]
fn properties_lists_everything_written() {
    let m = chat();
    let p = m.properties();
    assert_eq!(
        p,
        [
            "email",
            "firstname",
            "lastname",
            "phone",
            "vehicle_of_interest",
            "budget_range",
            "lead_priority",
            "lead_origin_channel",
            "dealership_name",
            "dealership_slug",
            "hs_lead_status",
            "message",
            "lifecyclestage",
        ]
    );
    assert_eq!(aimbase().properties().len(), 21);
}

#[test]
fn property_definitions_of_aimbase() {
    let defs = aimbase().property_definitions();
    let names: Vec<_> = defs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "aimbase_identifier",
            "aimbase_date",
            "aimbase_type",
            "aimbase_source",
            "aimbase_category",
            "aimbase_prodyear",
            "aimbase_prodname",
            "aimbase_prodbrand",
            "aimbase_comment",
            "aimbase_timetopurchase",
            "aimbase_smsconsent",
            "aimbase_emailconsent",
            "aimbase_stock",
            "aimbase_dealername",
            "aimbase_msrp",
            "aimbase_displayprice",
        ]
    );
    let get = |n: &str| defs.iter().find(|d| d.name == n).unwrap();
    let id = get("aimbase_identifier");
    assert_eq!(
        (id.label.as_str(), id.kind.as_str(), id.field_type.as_str(), id.group_name.as_str()),
        ("Aimbase Identifier", "string", "text", "contactinformation")
    );
    assert_eq!((get("aimbase_date").kind.as_str(), get("aimbase_date").field_type.as_str()), ("date", "date"));
    assert_eq!((get("aimbase_msrp").kind.as_str(), get("aimbase_msrp").field_type.as_str()), ("number", "number"));
    let sms = get("aimbase_smsconsent");
    assert_eq!((sms.kind.as_str(), sms.field_type.as_str()), ("bool", "booleancheckbox"));
    let values: Vec<_> = sms.options.iter().map(|o| o.value.as_str()).collect();
    assert_eq!(values, ["true", "false"]);
}

#[test]
fn property_definitions_of_chat_widget() {
    let defs = chat().property_definitions();
    let names: Vec<_> = defs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "vehicle_of_interest",
            "budget_range",
            "lead_priority",
            "lead_origin_channel",
            "dealership_name",
            "dealership_slug",
        ]
    );
    let priority = &defs[2];
    assert_eq!(priority.label, "Lead Priority");
    assert_eq!((priority.kind.as_str(), priority.field_type.as_str()), ("enumeration", "select"));
    let opts: Vec<_> = priority.options.iter().map(|o| (o.label.as_str(), o.value.as_str(), o.hidden)).collect();
    assert_eq!(opts, [("high", "high", false), ("medium", "medium", false), ("low", "low", false)]);
    assert_eq!(defs[0].label, "Vehicle of Interest");
}

#[test]
fn custom_profile_defaults_and_groups() {
    let m = Mapping::from_toml(
        r#"
name = "custom"
group = "dealer_info"
[[field]]
from = "dealer.id"
property = "dealer_external_id"
type = "string"
[[field]]
from = "lead_date"
property = "lead_received_at"
type = "datetime"
group = "timing"
[constants]
lead_origin_channel = "zapier"
lead_weight = 3
"#,
        "custom.toml",
    )
    .unwrap();
    let defs = m.property_definitions();
    let brief: Vec<_> =
        defs.iter().map(|d| (d.name.as_str(), d.label.as_str(), d.kind.as_str(), d.group_name.as_str())).collect();
    assert_eq!(
        brief,
        [
            ("dealer_external_id", "Dealer External Id", "string", "dealer_info"),
            ("lead_received_at", "Lead Received At", "datetime", "timing"),
            ("lead_origin_channel", "Lead Origin Channel", "string", "dealer_info"),
            ("lead_weight", "Lead Weight", "string", "dealer_info"),
        ]
    );
    let p = m.apply(&sample()).unwrap().properties;
    assert_eq!(p["lead_received_at"], "1795154400000"); // 2026-11-20T06:00Z
    assert_eq!(p["lead_weight"], "3");
}

#[test]
fn status_and_activity_sections_default_and_parse() {
    use crate::hubspot::EngagementKind;
    use crate::updates::{ActivityKind, LeadStatus};
    let chat = chat();
    assert_eq!(chat.status, StatusMapping::default());
    assert_eq!(chat.activity.object_for(ActivityKind::Sms), EngagementKind::Communication);
    assert_eq!(chat.activity.last_activity_date_property, None);
    let a = aimbase();
    assert_eq!(a.status.changed_at_property.as_deref(), Some("aimbase_status_changed_at"));
    assert_eq!(a.activity.comment_property.as_deref(), Some("aimbase_dealer_comment"));
    let names: Vec<_> = a.update_property_definitions().into_iter().map(|d| (d.name, d.kind)).collect();
    assert!(names.contains(&("aimbase_lead_status".into(), "enumeration".into())), "{names:?}");
    assert!(names.contains(&("aimbase_rollick_score".into(), "number".into())));
    assert!(names.contains(&("aimbase_lead_created_date".into(), "date".into())));
    assert!(a.all_property_definitions().iter().any(|d| d.name == "aimbase_identifier"));

    let m = Mapping::from_toml(
        r#"
name = "custom"
[status]
dealer_property = ""
created_date_type = "datetime"
[status.hs_lead_status]
working = "IN_PROGRESS"
[status.lifecyclestage]
Sold = "customer"
[activity]
quote = "tasks"
phone_call = "notes"
"#,
        "custom.toml",
    )
    .unwrap();
    assert_eq!(m.status.dealer_property, None);
    assert_eq!(m.status.hs_lead_status[&LeadStatus::Working], "IN_PROGRESS");
    assert_eq!(m.status.lifecyclestage[&LeadStatus::Sold], "customer");
    assert_eq!(m.activity.object_for(ActivityKind::Quote), EngagementKind::Task);
    assert_eq!(m.activity.object_for(ActivityKind::PhoneCall), EngagementKind::Note);

    for (toml, needle) in [
        ("[status.hs_lead_status]\nShipped = \"OPEN\"", "`Shipped` is not a lead status"),
        ("[activity]\nemail = \"calls\"", "`email` activities can become emails or notes"),
        ("[status]\ncreated_date_type = \"number\"", "must be date or datetime"),
        ("[status]\nscore_property = \"Bad Name\"", "not a valid HubSpot property name"),
        ("[activity]\nfax = \"notes\"", "unknown field"),
    ] {
        let err = Mapping::from_toml(&format!("name = \"x\"\n{toml}\n"), "x.toml").unwrap_err().to_string();
        assert!(err.contains(needle), "{toml}: {err}");
    }
}

#[test]
fn ignored_lists_what_the_profile_does_not_write() {
    let parsed = parse_json(SAMPLE.as_bytes()).unwrap();
    assert!(parsed.ignored.is_empty(), "the sample has no unknown keys");
    // chat-widget writes none of the Aimbase fields: each is reported, by the name the sender used.
    assert_eq!(
        chat().ignored(&parsed),
        [
            "category",
            "comment",
            "consent.email",
            "consent.sms",
            "dealer.id",
            "dealer.name",
            "lead_date",
            "product.brand",
            "product.display_price",
            "product.make",
            "product.model",
            "product.msrp",
            "product.name",
            "product.stock_number",
            "product.year",
            "source",
            "time_to_purchase",
            "type",
        ]
    );
    // aimbase writes them; it leaves out the chat-widget fields and the few the guide has no property for.
    assert_eq!(
        aimbase().ignored(&parsed),
        [
            "budget_range",
            "dealer.id",
            "dealership.name",
            "dealership.slug",
            "notes",
            "origin_channel",
            "priority",
            "product.make",
            "product.model",
            "status",
            "vehicle_of_interest",
        ]
    );
}

#[test]
fn ignored_keeps_aliases_unknown_keys_and_full_names() {
    let body = r#"{"email":"a@x.com","leadId":"L1","timeToPurchase":"soon","fullName":"Jane Doe",
        "product":{"stockNumber":"S1"},"favourite_colour":"red","properties":{"x":"1"}}"#;
    let parsed = parse_json(body.as_bytes()).unwrap();
    // lead_id is every profile's idempotency key, full_name fills first/last name, properties are always written.
    assert_eq!(chat().ignored(&parsed), ["favourite_colour", "product.stockNumber", "timeToPurchase"]);
    assert_eq!(aimbase().ignored(&parsed), ["favourite_colour"]);
    // A profile writing neither name leaves the full name unused.
    let bare = Mapping::from_toml(
        "name = \"bare\"\n[[field]]\nfrom = \"email\"\nproperty = \"email\"\ntype = \"string\"\n",
        "test",
    )
    .unwrap();
    assert_eq!(bare.ignored(&parsed), ["favourite_colour", "fullName", "product.stockNumber", "timeToPurchase"]);
}

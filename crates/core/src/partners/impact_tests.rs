//! Tests of the impact.com conversion builder and error classification.
use super::*;

const SHA: &str = "8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d";

fn base() -> ImpactConversion {
    ImpactConversion::new("1234", "2026-03-01T10:00:00Z", "deal_closedwon_42", "deal_closedwon", "42").unwrap()
}

#[test]
fn form_has_the_seed_fields_in_order() {
    let c = base()
        .with_customer_email_hash(SHA)
        .unwrap()
        .with_subtotal("12000.50", "usd")
        .unwrap()
        .with_date3("2026-02-28T00:00:00Z")
        .unwrap()
        .with_text2("1.0")
        .with_extra("Text1", "hubspot")
        .unwrap();
    let form = c.form();
    let keys: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "CampaignId",
            "EventDate",
            "OrderId",
            "EventTypeCode",
            "CustomerId",
            "CustomerEmail",
            "OrderSubTotal",
            "CurrencyCode",
            "Date3",
            "Text2",
            "Text1"
        ]
    );
    assert!(c.form().contains(&("CurrencyCode".into(), "USD".into())));
    let encoded = serde_urlencoded::to_string(c.form()).unwrap();
    assert!(encoded.contains("EventDate=2026-03-01T10%3A00%3A00Z"), "{encoded}");
}

#[test]
fn constructor_refuses_bad_required_fields() {
    let field = |r: Result<ImpactConversion, InvalidConversion>| r.unwrap_err().field;
    assert_eq!(field(ImpactConversion::new("", "2026-03-01T10:00:00Z", "o", "t", "c")), "CampaignId");
    assert_eq!(field(ImpactConversion::new("12a", "2026-03-01T10:00:00Z", "o", "t", "c")), "CampaignId");
    assert_eq!(field(ImpactConversion::new("1", "yesterday", "o", "t", "c")), "EventDate");
    assert_eq!(field(ImpactConversion::new("1", "2026-03-01T10:00:00Z", &"o".repeat(65), "t", "c")), "OrderId");
    assert_eq!(field(ImpactConversion::new("1", "2026-03-01T10:00:00Z", "o", " ", "c")), "EventTypeCode");
    assert_eq!(field(ImpactConversion::new("1", "2026-03-01T10:00:00Z", "o", "t", "")), "CustomerId");
    assert!(ImpactConversion::new("1", "2026-03-01T10:00:00Z", &"o".repeat(64), "t", "c").is_ok());
}

#[test]
fn optional_fields_are_checked() {
    assert_eq!(base().with_customer_email_hash("jane@example.com").unwrap_err().field, "CustomerEmail");
    assert!(base().with_customer_email_hash(&"a".repeat(40)).is_ok());
    assert_eq!(base().with_subtotal("12,000", "USD").unwrap_err().field, "OrderSubTotal");
    assert_eq!(base().with_subtotal("1e9", "USD").unwrap_err().field, "OrderSubTotal");
    assert_eq!(base().with_subtotal("10", "dollars").unwrap_err().field, "CurrencyCode");
    assert_eq!(base().with_date3("2026-02-28").unwrap_err().field, "Date3");
    assert!(base().with_extra("OrderId", "x").is_err());
    assert!(base().with_extra("Text 3", "x").is_err());
}

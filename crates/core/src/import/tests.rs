use super::*;

fn mapping() -> Mapping {
    Mapping::load("chat-widget").unwrap()
}

fn codes(v: &Validated) -> Vec<(u64, Option<&str>, &str)> {
    v.errors.iter().map(|e| (e.line, e.field.as_deref(), e.code.as_str())).collect()
}

#[test]
fn csv_rows_are_leads_as_a_form_posts_them() {
    let file = "\u{feff}email,first_name,product.year,properties.budget\n\
                ann@example.com,Ann,2026,\"10,000\"\n\
                \"bob@example.com\",\"Bob\nSmith\",,\n";
    let v = validate(Format::Csv, file.as_bytes(), &mapping(), None).unwrap();
    assert!(v.errors.is_empty(), "{:?}", v.errors);
    assert_eq!(v.rows.len(), 2);
    assert_eq!(v.rows[0].email, "ann@example.com");
    assert_eq!(v.rows[0].lead().unwrap().lead.product.year.as_deref(), Some("2026"));
    assert_eq!(v.rows[1].line, 3, "a record is named by its first line");
    assert_eq!(v.rows[1].lead().unwrap().lead.first_name.as_deref(), Some("Bob\nSmith"));
    assert_eq!(v.emails(), 2);
}

#[test]
fn a_rows_key_is_the_one_a_live_lead_gets() {
    let file = "email,first_name\nann@example.com,Ann\n";
    let row = &validate(Format::Csv, file.as_bytes(), &mapping(), None).unwrap().rows[0];
    let live = lead::parse_json(br#"{"email":"ann@example.com","first_name":"Ann"}"#).unwrap();
    assert_eq!(row.key, body_key(FunctionName::LeadCaptured, &live.lead.canonical_json()));
    let with_id = "lead_id,email\nL-7,ann@example.com\n";
    let row = &validate(Format::Csv, with_id.as_bytes(), &mapping(), None).unwrap().rows[0];
    assert_eq!(row.key, "lead-captured:lead:L-7");
    let own = "crm_id,email\n991,ann@example.com\n";
    let v = validate(Format::Csv, own.as_bytes(), &mapping(), Some("crm_id")).unwrap();
    assert_eq!(v.rows[0].key, "lead-captured:lead:991");
    assert!(v.rows[0].lead().unwrap().ignored.is_empty(), "the key column is not a lead field");
}

#[test]
fn bad_rows_are_named_by_line_and_field_and_never_echo_an_email() {
    let file = "email,first_name,status\n\
                ann@example.com,Ann,working\n\
                not-an-email,Bob,new\n\
                ,Carl,new\n\
                dan@example.com,Dan\n\
                eve@example.com,Eve,sleeping\n";
    let v = validate(Format::Csv, file.as_bytes(), &mapping(), None).unwrap();
    assert_eq!(v.rows.len(), 1);
    let found = codes(&v);
    assert_eq!(found.len(), 4, "{found:?}");
    assert_eq!(found[0].0, 3);
    assert_eq!(found[0].1, Some("email"));
    assert_eq!(found[1].0, 4);
    assert_eq!(found[2], (5, None, "malformed_row"));
    assert_eq!((found[3].0, found[3].1), (6, Some("status")), "an option the profile does not know");
    for e in &v.errors {
        assert!(!e.message.contains("example.com") && !e.message.contains("not-an-email"), "{e:?}");
    }
}

#[test]
fn the_same_lead_twice_is_imported_once() {
    let file = "email,first_name\nann@example.com,Ann\nbob@example.com,Bob\nann@example.com,Ann\n";
    let v = validate(Format::Csv, file.as_bytes(), &mapping(), None).unwrap();
    assert_eq!((v.rows.len(), v.duplicates.clone()), (2, vec![4]));
}

#[test]
fn json_lines_are_lead_bodies() {
    let file = "{\"email\":\"ann@example.com\",\"crm\":7}\r\n\n{\"email\":\"bob@example.com\",\"email\":\"x@y.z\"}\n[1]\n{\"email\":\"c@d.co\"}\n";
    let v = validate(Format::JsonLines, file.as_bytes(), &mapping(), Some("crm")).unwrap();
    assert_eq!(v.rows.len(), 1);
    assert_eq!((v.rows[0].line, v.rows[0].key.as_str()), (1, "lead-captured:lead:7"));
    let found = codes(&v);
    assert_eq!(found.iter().map(|e| e.0).collect::<Vec<_>>(), [3, 4, 5], "{found:?}");
    assert_eq!(found[0].2, "duplicate_key");
    assert_eq!(found[1].2, "invalid_body");
    assert_eq!((found[2].1, found[2].2), (Some("crm"), "missing_key"));
}

#[test]
fn a_file_without_a_header_or_the_key_column_is_refused_whole() {
    assert!(validate(Format::Csv, b"", &mapping(), None).is_err());
    let e = validate(Format::Csv, b"email\na@b.co\n", &mapping(), Some("id")).unwrap_err();
    assert!(e.0.contains("no column `id`"), "{e}");
    assert_eq!(Format::from_path("leads.CSV"), Some(Format::Csv));
    assert_eq!(Format::from_path("leads.ndjson"), Some(Format::JsonLines));
    assert_eq!(Format::from_path("leads.txt"), None);
}

#[test]
fn share_link_rows_are_the_upserts_a_live_share_link_makes() {
    let file = "email,share_code,share_link,company\n\
                Ann@Example.com,ANN1,https://refer.example.com/ann,Acme\n\
                bob@example.com,,https://refer.example.com/bob,\n\
                not-an-email,X1,,\n\
                carl@example.com,,,\n\
                ann@example.com,ANN1,https://refer.example.com/ann,Acme\n";
    let v = validate_share_links(Format::Csv, file.as_bytes()).unwrap();
    assert_eq!(v.rows.len(), 2, "{:?}", v.errors);
    assert_eq!(v.duplicates, [6], "the same link twice is imported once");
    assert_eq!(codes(&v), [(4, Some("email"), "invalid_email"), (5, Some("share_link"), "missing_required_field")]);
    assert_eq!(v.rows[0].function(), FunctionName::ReferralEvent);
    let event = v.rows[0].event();
    assert_eq!(event["action"], "upsert_contact");
    assert_eq!(event["email"], "ann@example.com");
    assert_eq!(event["properties"]["share_code"], "ANN1");
    assert_eq!(event["properties"]["extole_app_type"], "hubspot", "the guide's app type by default");
    assert!(v.rows[1].event()["properties"].get("share_code").is_none(), "absent cells are not written");
    for e in &v.errors {
        assert!(!e.message.contains("not-an-email"), "{e:?}");
    }
}

#[test]
fn a_share_link_file_with_a_column_it_does_not_use_is_refused_whole() {
    let file = "email,share_link,favourite_colour\nann@example.com,https://x.example/a,blue\n";
    let e = validate_share_links(Format::Csv, file.as_bytes()).unwrap_err();
    assert!(e.0.contains("favourite_colour"), "{e}");
    let lines =
        "{\"email\":\"ann@example.com\",\"share_code\":\"A\"}\n{\"email\":\"bob@example.com\",\"colour\":\"x\"}\n";
    let v = validate_share_links(Format::JsonLines, lines.as_bytes()).unwrap();
    assert_eq!((v.rows.len(), codes(&v)), (1, vec![(2, Some("colour"), "unknown_field")]));
}

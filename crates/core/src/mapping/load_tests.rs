//! Tests of loading profiles: TOML syntax, shape and semantic errors name the origin and the line.

use super::*;

fn err(source: &str) -> String {
    Mapping::from_toml(source, "test.toml").unwrap_err().to_string()
}

#[test]
fn toml_syntax_error_names_origin_and_line() {
    let e = err("name = \"x\"\n\n[[field]]\nfrom = \"email\nproperty = \"email\"\n");
    assert!(e.starts_with("mapping test.toml, line 4, column "), "{e}");
}

#[test]
fn shape_errors_name_the_line() {
    // A key the format does not have.
    let e = err("name = \"x\"\n[[field]]\nfrom = \"email\"\nproperty = \"email\"\ntype = \"string\"\nrequird = true\n");
    assert!(e.starts_with("mapping test.toml, line 6"), "{e}");
    assert!(e.contains("requird"), "{e}");
    // A missing key: the line of the table that lacks it.
    let e = err("name = \"x\"\n\n[[field]]\nfrom = \"email\"\ntype = \"string\"\n");
    assert!(e.contains("line "), "{e}");
    assert!(e.contains("property"), "{e}");
    // Wrong value type.
    let e =
        err("name = \"x\"\n[[field]]\nfrom = \"email\"\nproperty = \"email\"\ntype = \"string\"\nrequired = \"yes\"\n");
    assert!(e.starts_with("mapping test.toml, line 6"), "{e}");
    // An option that is neither a string nor a { value, label } table.
    let e =
        err("name = \"x\"\n[[field]]\nfrom = \"priority\"\nproperty = \"p\"\ntype = \"enumeration\"\noptions = [1]\n");
    assert!(e.starts_with("mapping test.toml, line 6"), "{e}");
    assert!(e.contains("an option: a string, or { value"), "{e}");
}

#[test]
fn semantic_errors_name_the_line() {
    let field = |body: &str| format!("name = \"x\"\n\n[[field]]\n{body}\n");
    let cases = [
        (
            field("from = \"product.colour\"\nproperty = \"colour\"\ntype = \"string\""),
            "mapping test.toml, line 4: unknown lead field `product.colour` (known: lead_id, email,",
        ),
        (
            field("from = \"comment\"\nproperty = \"comment\"\ntype = \"text\""),
            "mapping test.toml, line 6: unknown type `text` (known: string, number, bool, date, datetime, enumeration)",
        ),
        (
            field("from = \"priority\"\nproperty = \"lead_priority\"\ntype = \"enumeration\""),
            "mapping test.toml, line 6: enumeration `lead_priority` needs `options`",
        ),
        (
            field("from = \"priority\"\nproperty = \"lead_priority\"\ntype = \"string\"\noptions = [\"a\"]"),
            "mapping test.toml, line 7: `options` only applies to enumerations",
        ),
        (
            field("from = \"priority\"\nproperty = \"p\"\ntype = \"enumeration\"\noptions = [\"a\", \"A\"]"),
            "mapping test.toml, line 7: enumeration `p` lists option `A` twice",
        ),
        (
            field("from = \"priority\"\nproperty = \"p\"\ntype = \"enumeration\"\noptions = [\"a\"]\nvalues = { x = \"b\" }"),
            "mapping test.toml, line 8: `values` maps `x` to `b`, which is not an option of `p`",
        ),
        (
            field("from = \"comment\"\nproperty = \"Aimbase Comment\"\ntype = \"string\""),
            "mapping test.toml, line 5: `Aimbase Comment` is not a valid HubSpot property name",
        ),
        (
            field("from = \"comment\"\nproperty = \"email\"\ntype = \"string\""),
            "mapping test.toml, line 5: property `email` can only be mapped from the lead field `email`",
        ),
        (
            field("from = \"comment\"\nproperty = \"c\"\ntype = \"string\"\n\n[[field]]\nfrom = \"notes\"\nproperty = \"c\"\ntype = \"string\""),
            "mapping test.toml, line 10: duplicate property `c` (first written on line 5)",
        ),
        (
            field("from = \"comment\"\nproperty = \"c\"\ntype = \"string\"\n\n[constants]\nlifecyclestage = \"lead\"\nc = \"x\""),
            "mapping test.toml, line 10: duplicate property `c` (first written on line 5)",
        ),
        (
            "name = \"x\"\n[constants]\n\"Life Cycle\" = \"lead\"\n".to_string(),
            "mapping test.toml, line 3: `Life Cycle` is not a valid HubSpot property name",
        ),
        (
            "name = \"x\"\n[constants]\nemail = \"a@b.co\"\n".to_string(),
            "mapping test.toml, line 3: `email` cannot be a constant",
        ),
        (
            "name = \"x\"\n[constants]\nthing = [1]\n".to_string(),
            "mapping test.toml, line 3: constant `thing` must be a string, number or boolean",
        ),
        ("\n\nname = \"  \"\n".to_string(), "mapping test.toml, line 3: `name` cannot be empty"),
    ];
    for (source, expected) in cases {
        let e = err(&source);
        assert!(e.starts_with(expected), "got: {e}\nwanted: {expected}\nsource:\n{source}");
    }
}

#[test]
fn load_reads_files_and_reports_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.toml");
    std::fs::write(&path, "name = \"mine\"\n[[field]]\nfrom = \"email\"\nproperty = \"email\"\ntype = \"string\"\n")
        .unwrap();
    let spec = path.to_str().unwrap();
    let m = Mapping::load(spec).unwrap();
    assert_eq!((m.name.as_str(), m.origin.as_str()), ("mine", spec));

    std::fs::write(&path, "name = \"mine\"\n[[field]]\nfrom = \"emial\"\nproperty = \"email\"\ntype = \"string\"\n")
        .unwrap();
    let e = Mapping::load(spec).unwrap_err().to_string();
    assert!(e.starts_with(&format!("mapping {spec}, line 3: unknown lead field `emial`")), "{e}");

    let e = Mapping::load("aimbse").unwrap_err().to_string();
    assert!(e.starts_with("mapping aimbse: not a built-in mapping (aimbase, chat-widget)"), "{e}");
}

//! Contact property definitions: the built-in ones of a fresh portal, custom ones created through the API,
//! their JSON form and the validation of `POST /crm/v3/properties/contacts`.

use std::sync::LazyLock;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::ApiError;
use super::validate::iso_ms;
use hubrelay_core::hubspot::{PropertyDefinition, PropertyOption};

/// A property as the sandbox keeps it: the shared definition plus what HubSpot adds around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Property {
    pub def: PropertyDefinition,
    #[serde(default)]
    pub description: String,
    /// Values are set by HubSpot only (`hs_object_id`, `createdate`, `lastmodifieddate`).
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub hubspot_defined: bool,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub form_field: bool,
    #[serde(default)]
    pub created_ms: i64,
}

pub(crate) const TYPES: [&str; 7] = ["bool", "date", "datetime", "enumeration", "number", "phone_number", "string"];

/// Which `fieldType`s HubSpot's docs allow for each `type`.
fn field_types_for(kind: &str) -> &'static [&'static str] {
    match kind {
        "bool" => &["booleancheckbox"],
        "enumeration" => &["booleancheckbox", "checkbox", "radio", "select", "calculation_equation"],
        "date" | "datetime" => &["date"],
        "string" => &["file", "text", "textarea", "calculation_equation", "html", "signature"],
        "number" => &["number", "calculation_equation"],
        "phone_number" => &["phonenumber"],
        _ => &[],
    }
}

/// When HubSpot's own properties were "created" (any fixed date will do).
const BUILTIN_CREATED_MS: i64 = 1_565_059_312_000;

fn builtin(name: &str, label: &str, kind: &str, field_type: &str, group: &str, options: &[(&str, &str)]) -> Property {
    Property {
        def: PropertyDefinition {
            name: name.into(),
            label: label.into(),
            kind: kind.into(),
            field_type: field_type.into(),
            group_name: group.into(),
            options: options
                .iter()
                .map(|(label, value)| PropertyOption { label: (*label).into(), value: (*value).into(), hidden: false })
                .collect(),
        },
        description: String::new(),
        read_only: false,
        hubspot_defined: true,
        unique: false,
        form_field: true,
        created_ms: BUILTIN_CREATED_MS,
    }
}

fn read_only(mut p: Property) -> Property {
    p.read_only = true;
    p.form_field = false;
    p
}

/// The built-in contact properties of a fresh portal (the subset hubrelay cares about).
pub(crate) static BUILTINS: LazyLock<Vec<Property>> = LazyLock::new(|| {
    let info = "contactinformation";
    let text = |name: &str, label: &str| builtin(name, label, "string", "text", info, &[]);
    let mut email = text("email", "Email");
    email.unique = true;
    vec![
        email,
        text("firstname", "First Name"),
        text("lastname", "Last Name"),
        builtin("phone", "Phone Number", "string", "phonenumber", info, &[]),
        builtin("mobilephone", "Mobile Phone Number", "string", "phonenumber", info, &[]),
        text("company", "Company Name"),
        text("website", "Website URL"),
        text("address", "Street Address"),
        text("city", "City"),
        text("state", "State/Region"),
        text("zip", "Postal Code"),
        text("country", "Country/Region"),
        text("jobtitle", "Job Title"),
        builtin("message", "Message", "string", "textarea", info, &[]),
        builtin(
            "lifecyclestage",
            "Lifecycle Stage",
            "enumeration",
            "radio",
            info,
            &[
                ("Subscriber", "subscriber"),
                ("Lead", "lead"),
                ("Marketing Qualified Lead", "marketingqualifiedlead"),
                ("Sales Qualified Lead", "salesqualifiedlead"),
                ("Opportunity", "opportunity"),
                ("Customer", "customer"),
                ("Evangelist", "evangelist"),
                ("Other", "other"),
            ],
        ),
        builtin(
            "hs_lead_status",
            "Lead Status",
            "enumeration",
            "radio",
            "sales_properties",
            &[
                ("New", "NEW"),
                ("Open", "OPEN"),
                ("In Progress", "IN_PROGRESS"),
                ("Open Deal", "OPEN_DEAL"),
                ("Unqualified", "UNQUALIFIED"),
                ("Attempted to Contact", "ATTEMPTED_TO_CONTACT"),
                ("Connected", "CONNECTED"),
                ("Bad Timing", "BAD_TIMING"),
            ],
        ),
        read_only(builtin("hs_object_id", "Record ID", "number", "number", info, &[])),
        read_only(builtin("createdate", "Create Date", "datetime", "date", info, &[])),
        read_only(builtin("lastmodifieddate", "Last Modified Date", "datetime", "date", info, &[])),
        // Set by merges (`merge.rs`).
        read_only(builtin("hs_merged_object_ids", "Merged Contact IDs", "enumeration", "checkbox", info, &[])),
        read_only(builtin("hs_additional_emails", "Additional email addresses", "enumeration", "checkbox", info, &[])),
    ]
});

pub(crate) fn find_builtin(name: &str) -> Option<&'static Property> {
    BUILTINS.iter().find(|p| p.def.name == name)
}

/// The JSON HubSpot answers for one property.
pub(crate) fn to_json(p: &Property) -> Value {
    let options: Vec<Value> = p
        .def
        .options
        .iter()
        .enumerate()
        .map(|(i, o)| json!({"label": o.label, "value": o.value, "displayOrder": i, "hidden": o.hidden}))
        .collect();
    let at = iso_ms(p.created_ms);
    let mut v = json!({
        "name": p.def.name,
        "label": p.def.label,
        "type": p.def.kind,
        "fieldType": p.def.field_type,
        "description": p.description,
        "groupName": p.def.group_name,
        "options": options,
        "displayOrder": -1,
        "calculated": false,
        "externalOptions": false,
        "hasUniqueValue": p.unique,
        "hidden": false,
        "modificationMetadata": {
            "archivable": !p.hubspot_defined,
            "readOnlyDefinition": p.hubspot_defined,
            "readOnlyValue": p.read_only,
        },
        "formField": p.form_field,
        "createdAt": at,
        "updatedAt": at,
        "archived": false,
    });
    if p.hubspot_defined {
        v["hubspotDefined"] = json!(true);
    }
    v
}

fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// Validates a `POST /crm/v3/properties/contacts` body into a custom property.
/// Conflicts with existing names are the caller's job (they need the store).
pub(crate) fn parse_create(body: &Value, now_ms: i64) -> Result<Property, ApiError> {
    if !body.is_object() {
        return Err(ApiError::invalid_json("Cannot deserialize PropertyCreate from a non-object value"));
    }
    let required = ["name", "label", "type", "fieldType", "groupName"];
    let missing: Vec<&str> = required.iter().copied().filter(|k| str_field(body, k).is_none()).collect();
    if !missing.is_empty() {
        return Err(ApiError::invalid_json(format!(
            "Cannot build PropertyCreate, some of required attributes are not set [{}]",
            missing.join(", ")
        )));
    }
    let field = |k: &str| str_field(body, k).unwrap_or_default().to_string();
    let (name, kind, field_type) = (field("name"), field("type"), field("fieldType"));

    if !TYPES.contains(&kind.as_str()) {
        return Err(ApiError::invalid_json(format!(
            "Cannot deserialize value of type `PropertyType` from String \"{kind}\": not one of the values \
             accepted for Enum class: [{}]",
            TYPES.join(", ")
        )));
    }
    let valid_name = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_name {
        return Err(ApiError::validation(format!(
            "Property name '{name}' is invalid: it must start with a lowercase letter and contain only \
             lowercase letters, digits and underscores"
        )));
    }
    let allowed = field_types_for(&kind);
    if !allowed.contains(&field_type.as_str()) {
        return Err(ApiError::validation(format!(
            "fieldType '{field_type}' is not valid for type '{kind}'; allowed: [{}]",
            allowed.join(", ")
        )));
    }
    let options = parse_options(body.get("options"))?;
    if kind == "enumeration" && options.is_empty() {
        return Err(ApiError::validation(format!("Property '{name}' of type enumeration needs at least one option")));
    }
    Ok(Property {
        def: PropertyDefinition {
            name,
            label: field("label"),
            kind,
            field_type,
            group_name: field("groupName"),
            options,
        },
        description: body.get("description").and_then(Value::as_str).unwrap_or_default().to_string(),
        read_only: false,
        hubspot_defined: false,
        unique: body.get("hasUniqueValue").and_then(Value::as_bool).unwrap_or(false),
        form_field: body.get("formField").and_then(Value::as_bool).unwrap_or(false),
        created_ms: now_ms,
    })
}

fn parse_options(options: Option<&Value>) -> Result<Vec<PropertyOption>, ApiError> {
    let list = match options {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(ApiError::invalid_json("options must be an array of {label, value}")),
    };
    let mut out: Vec<PropertyOption> = Vec::with_capacity(list.len());
    for o in list {
        let (Some(label), Some(value)) =
            (o.get("label").and_then(Value::as_str), o.get("value").and_then(Value::as_str))
        else {
            return Err(ApiError::invalid_json(
                "Cannot build OptionInput, some of required attributes are not set [label, value]",
            ));
        };
        if out.iter().any(|x| x.value == value) {
            return Err(ApiError::validation(format!("Duplicate option value '{value}'")));
        }
        out.push(PropertyOption {
            label: label.into(),
            value: value.into(),
            hidden: o.get("hidden").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    Ok(out)
}

pub(crate) fn already_exists(name: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "OBJECT_ALREADY_EXISTS", format!("Property named '{name}' already exists."))
}

pub(crate) fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Property named '{name}' does not exist")).with("context", json!({"name": [name]}))
}

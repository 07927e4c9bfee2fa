//! Backfill imports: a file of leads (CSV with a header row, or JSON lines) read and validated row by row exactly as
//! live leads are (the same parser and the same mapping), every valid row given the idempotency key a live lead
//! would get, and every bad row reported by its line and field. Nothing here sends or stores anything: the
//! importer hands the valid rows to the same delivery path as live leads.
//!
//! - CSV: the header names each column with a lead field path (`email`, `first_name`, `product.year`,
//!   `dealer.name`, `properties.budget` …), with a form body's rules: values are text, empty cells are absent.
//!   A UTF-8 byte-order mark is skipped; quoted cells may hold commas and line breaks.
//! - JSON lines: one lead body per line, as `POST /v1/leads` takes it; blank lines are skipped.
//!
//! An error names the line (1-based, the file's own line numbers: a CSV record spanning lines is named by its
//! first), the field and a stable code; its message is masked, so a report never repeats an email or a phone.
//!
//! [`Kind::ExtoleShareLinks`]: Extole's one-time export of existing advocates' share links (`email`,
//! `share_code`, `share_link`, `company`, …), each row the upsert a live `created_share_link` webhook makes.

use std::collections::HashSet;

use crate::domain::FunctionName;
use crate::lead::{self, LeadError, ParsedLead};
use crate::mapping::Mapping;
use crate::pii::mask_message;
use crate::referral::actions::ReferralAction;
use crate::referral::ShareLink;
use crate::store::{body_key, sender_key};

/// How the rows of a file are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    /// The format a file's name says (`.csv`; `.jsonl`, `.ndjson`), if it says one.
    pub fn from_path(path: &str) -> Option<Format> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(Format::Csv)
        } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            Some(Format::JsonLines)
        } else {
            None
        }
    }
}

/// What a file's rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Leads, as `POST /v1/leads` takes them.
    Leads,
    /// Extole's export of share links: each row sets `share_code`, `share_link` (and `company`) on its contact.
    ExtoleShareLinks,
    /// A HubSpot contacts export (`Record ID`/`hs_object_id`, `Email`): each contact synced to an impact.com
    /// Advocate participant, the initial sync the Advocate guide leaves to a bulk import.
    AdvocateParticipants,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "leads" => Some(Kind::Leads),
            "extole-share-links" => Some(Kind::ExtoleShareLinks),
            "advocate-participants" => Some(Kind::AdvocateParticipants),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Leads => "leads",
            Kind::ExtoleShareLinks => "extole-share-links",
            Kind::AdvocateParticipants => "advocate-participants",
        }
    }
}

/// The columns (CSV) or keys (JSON lines) of a share-link row.
pub const SHARE_LINK_FIELDS: [&str; 6] =
    ["email", "share_code", "share_link", "company", "partner_user_id", "extole_app_type"];

/// A valid row: its line, the key it is delivered under, its contact's email and what it carries.
#[derive(Debug, Clone)]
pub struct Row {
    pub line: u64,
    pub key: String,
    /// The contact it writes (normalised).
    pub email: String,
    pub item: Item,
}

#[derive(Debug, Clone)]
pub enum Item {
    Lead(Box<ParsedLead>),
    ShareLink(ShareLink),
    /// A HubSpot contact to sync to its Advocate participant: by its id (a HubSpot contacts export), or by the
    /// row's email (Advocate's own import format, an `email` column).
    Participant {
        object_id: Option<String>,
    },
}

impl Row {
    /// The function its message is delivered as.
    pub fn function(&self) -> FunctionName {
        match self.item {
            Item::Lead(_) => FunctionName::LeadCaptured,
            Item::ShareLink(_) | Item::Participant { .. } => FunctionName::ReferralEvent,
        }
    }

    /// Its message's event: the lead, or the referral action a live share-link webhook queues.
    pub fn event(&self) -> serde_json::Value {
        match &self.item {
            Item::Lead(parsed) => serde_json::to_value(&parsed.lead).unwrap_or_default(),
            Item::ShareLink(link) => {
                serde_json::to_value(ReferralAction::UpsertContact(link.to_upsert())).unwrap_or_default()
            }
            Item::Participant { object_id: Some(object_id) } => serde_json::to_value(ReferralAction::SyncParticipant {
                object_id: object_id.clone(),
                created: true,
                occurred_at: 0,
            })
            .unwrap_or_default(),
            Item::Participant { object_id: None } => {
                serde_json::to_value(ReferralAction::SyncParticipantByEmail { email: self.email.clone() })
                    .unwrap_or_default()
            }
        }
    }

    /// The lead, for a lead row.
    pub fn lead(&self) -> Option<&ParsedLead> {
        match &self.item {
            Item::Lead(parsed) => Some(parsed),
            Item::ShareLink(_) | Item::Participant { .. } => None,
        }
    }
}

/// A row that cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub field: Option<String>,
    pub code: String,
    /// Masked: never an email or a phone.
    pub message: String,
}

/// What a whole file holds.
#[derive(Debug, Default)]
pub struct Validated {
    /// The valid rows, in file order, each key once (the first row with a key wins).
    pub rows: Vec<Row>,
    pub errors: Vec<RowError>,
    /// Valid rows whose key an earlier row already had (the same lead twice in the file).
    pub duplicates: Vec<u64>,
    /// Columns the import does not use (a HubSpot export carries many), reported rather than dropped silently.
    pub ignored_columns: Vec<String>,
}

impl Validated {
    /// How many different contacts the valid rows write.
    pub fn emails(&self) -> usize {
        self.rows.iter().map(|r| r.email.as_str()).collect::<HashSet<_>>().len()
    }
}

/// The file as a whole cannot be read (no header, not UTF-8 where the format needs it, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FileError(pub String);

/// Reads and validates every row of `bytes` against `mapping`. `key_column`: a column (CSV) or top-level key
/// (JSON lines) holding each row's own id, used as the lead's id (`lead-captured:lead:<id>`, as a live lead with
/// `lead_id`); without it a row's `lead_id`, else its content, makes its key.
pub fn validate(
    format: Format,
    bytes: &[u8],
    mapping: &Mapping,
    key_column: Option<&str>,
) -> Result<Validated, FileError> {
    let records = match format {
        Format::Csv => csv_records(bytes, key_column)?,
        Format::JsonLines => json_records(bytes, key_column),
    };
    let mut out = Validated::default();
    let mut seen = HashSet::new();
    for record in records {
        match record.and_then(|(line, parsed, own_key)| row(line, parsed, own_key, mapping)) {
            Ok(row) if !seen.insert(row.key.clone()) => out.duplicates.push(row.line),
            Ok(row) => out.rows.push(row),
            Err(e) => out.errors.push(e),
        }
    }
    Ok(out)
}

type Record = Result<(u64, ParsedLead, Option<String>), RowError>;

fn row(line: u64, parsed: ParsedLead, own_key: Option<String>, mapping: &Mapping) -> Result<Row, RowError> {
    let upsert = mapping.apply(&parsed.lead).map_err(|e| RowError {
        line,
        field: Some(e.field.clone()),
        code: e.code.to_string(),
        message: mask_message(&e.message),
    })?;
    let key = match own_key.or_else(|| parsed.lead.lead_id.clone()) {
        Some(id) => sender_key(FunctionName::LeadCaptured, "lead", &id),
        None => body_key(FunctionName::LeadCaptured, &parsed.lead.canonical_json()),
    };
    Ok(Row { line, key, email: upsert.email, item: Item::Lead(Box::new(parsed)) })
}

/// Reads and validates every row of a share-link export. Columns other than [`SHARE_LINK_FIELDS`] are refused
/// with the file (they would be dropped otherwise); `extole_app_type` defaults to `hubspot`, as the guide's.
pub fn validate_share_links(format: Format, bytes: &[u8]) -> Result<Validated, FileError> {
    let records = match format {
        Format::Csv => share_link_csv(bytes)?,
        Format::JsonLines => share_link_json(bytes),
    };
    let mut out = Validated::default();
    let mut seen = HashSet::new();
    for record in records {
        match record.and_then(|(line, fields)| share_link_row(line, fields)) {
            Ok(row) if !seen.insert(row.key.clone()) => out.duplicates.push(row.line),
            Ok(row) => out.rows.push(row),
            Err(e) => out.errors.push(e),
        }
    }
    Ok(out)
}

type LinkRecord = Result<(u64, Vec<(String, String)>), RowError>;

fn share_link_row(line: u64, fields: Vec<(String, String)>) -> Result<Row, RowError> {
    let get = |name: &str| {
        fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_string()).filter(|v| !v.is_empty())
    };
    let err = |field: &str, code: &str, message: &str| RowError {
        line,
        field: Some(field.into()),
        code: code.into(),
        message: message.into(),
    };
    let raw = get("email").ok_or_else(|| err("email", "missing_required_field", "a share link needs `email`"))?;
    let email = crate::email::normalize_email(&raw)
        .map_err(|_| err("email", "invalid_email", "`email` is not an email address"))?;
    let (share_code, share_link) = (get("share_code"), get("share_link"));
    if share_code.is_none() && share_link.is_none() {
        return Err(err("share_link", "missing_required_field", "a share link needs `share_link` or `share_code`"));
    }
    let link = ShareLink {
        email: email.clone(),
        share_code,
        share_link,
        company: get("company"),
        partner_user_id: get("partner_user_id"),
        extole_app_type: get("extole_app_type").or_else(|| Some("hubspot".into())),
    };
    let canonical = serde_json::to_string(&link.to_upsert()).unwrap_or_default();
    let key = body_key(FunctionName::ReferralEvent, &format!("extole-share-link\n{canonical}"));
    Ok(Row { line, key, email, item: Item::ShareLink(link) })
}

/// Reads a file for the Advocate participant sync: a HubSpot contacts export (each row's contact id, `Record ID`
/// or `hs_object_id`, and email), or Advocate's own import format (an `email` column; each row's contact found by
/// email when it is delivered). Other columns are listed in [`Validated::ignored_columns`].
pub fn validate_participants(bytes: &[u8]) -> Result<Validated, FileError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(bytes);
    let headers = reader.headers().map_err(|e| FileError(format!("the header row cannot be read: {e}")))?.clone();
    let names: Vec<String> = headers.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let find = |wanted: &[&str]| names.iter().position(|n| wanted.contains(&n.as_str()));
    // A HubSpot export names each contact by id; Advocate's own import format by its `email` only.
    let id_col = find(&["record id", "hs_object_id", "record_id"]);
    let email_col =
        find(&["email"]).ok_or_else(|| FileError("no `email` column: participants are matched by email".into()))?;
    let mut out = Validated {
        ignored_columns: headers
            .iter()
            .enumerate()
            .filter(|(i, h)| Some(*i) != id_col && *i != email_col && !h.trim().is_empty())
            .map(|(_, h)| h.trim().to_string())
            .collect(),
        ..Validated::default()
    };
    let mut seen = HashSet::new();
    for result in reader.records() {
        let record = match result {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                let message = "the row cannot be read as CSV".to_string();
                out.errors.push(RowError { line, field: None, code: "malformed_row".into(), message });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let err = |field: &str, code: &str, message: &str| RowError {
            line,
            field: Some(field.into()),
            code: code.into(),
            message: message.into(),
        };
        let id = id_col.map(|col| record.get(col).unwrap_or_default().trim());
        if id.is_some_and(|id| id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit())) {
            out.errors.push(err("hs_object_id", "invalid_id", "the contact id must be HubSpot's numeric id"));
            continue;
        }
        let email = match crate::email::normalize_email(record.get(email_col).unwrap_or_default()) {
            Ok(e) => e,
            Err(_) => {
                out.errors.push(err("email", "invalid_email", "`email` is not an email address"));
                continue;
            }
        };
        let names = match id {
            Some(id) => id.to_string(),
            None => format!("email:{}", crate::store::email_hash(&email)),
        };
        let key = body_key(FunctionName::ReferralEvent, &format!("advocate-participant\n{names}"));
        if !seen.insert(key.clone()) {
            out.duplicates.push(line);
            continue;
        }
        out.rows.push(Row { line, key, email, item: Item::Participant { object_id: id.map(String::from) } });
    }
    Ok(out)
}

fn share_link_csv(bytes: &[u8]) -> Result<Vec<LinkRecord>, FileError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(bytes);
    let headers = reader.headers().map_err(|e| FileError(format!("the header row cannot be read: {e}")))?.clone();
    let names: Vec<String> = headers.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    if let Some(unknown) = names.iter().find(|n| !n.is_empty() && !SHARE_LINK_FIELDS.contains(&n.as_str())) {
        return Err(FileError(format!(
            "column `{unknown}` is not a share-link field (the columns: {})",
            SHARE_LINK_FIELDS.join(", ")
        )));
    }
    if !names.iter().any(|n| n == "email") {
        return Err(FileError("the header row has no `email` column".into()));
    }
    let mut records = Vec::new();
    for result in reader.records() {
        match result {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                let pairs = names.iter().cloned().zip(record.iter().map(str::to_string)).collect();
                records.push(Ok((line, pairs)));
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                let message = "the row cannot be read as CSV (cells and header differ, or not UTF-8)".to_string();
                records.push(Err(RowError { line, field: None, code: "malformed_row".into(), message }));
            }
        }
    }
    Ok(records)
}

fn share_link_json(bytes: &[u8]) -> Vec<LinkRecord> {
    let mut records = Vec::new();
    for (line, text) in json_lines(bytes) {
        let malformed = |message: String| RowError { line, field: None, code: "malformed_json".into(), message };
        let record = match crate::json::parse_strict(text) {
            Ok(serde_json::Value::Object(map)) => match map.keys().find(|k| !SHARE_LINK_FIELDS.contains(&k.as_str())) {
                Some(unknown) => Err(RowError {
                    line,
                    field: Some(unknown.clone()),
                    code: "unknown_field".into(),
                    message: format!("`{unknown}` is not a share-link field ({})", SHARE_LINK_FIELDS.join(", ")),
                }),
                // A null is an absent value, not the text "null".
                None => Ok((
                    line,
                    map.into_iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k, v.as_str().map(String::from).unwrap_or_else(|| v.to_string())))
                        .collect(),
                )),
            },
            Ok(_) => Err(malformed("a line must be a JSON object".into())),
            Err(e) => Err(malformed(mask_message(&e.to_string()))),
        };
        records.push(record);
    }
    records
}

fn lead_error(line: u64, e: &LeadError) -> RowError {
    RowError {
        line,
        field: e.field().map(str::to_string),
        code: e.code().to_string(),
        message: mask_message(&e.to_string()),
    }
}

fn csv_records(bytes: &[u8], key_column: Option<&str>) -> Result<Vec<Record>, FileError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(bytes);
    let headers = reader.headers().map_err(|e| FileError(format!("the header row cannot be read: {e}")))?.clone();
    let names: Vec<String> = headers.iter().map(|h| h.trim().to_string()).collect();
    if names.iter().all(String::is_empty) {
        return Err(FileError("the file has no header row naming its columns".into()));
    }
    let key_index = match key_column {
        Some(column) => Some(
            names
                .iter()
                .position(|n| n == column)
                .ok_or_else(|| FileError(format!("no column `{column}` in the header row")))?,
        ),
        None => None,
    };
    let mut records = Vec::new();
    for result in reader.records() {
        let record = match result {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                let message = match e.kind() {
                    csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                        format!("{len} cells where the header names {expected_len}")
                    }
                    csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
                    _ => "the row cannot be read as CSV".to_string(),
                };
                let code =
                    if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) { "invalid_encoding" } else { "malformed_row" };
                records.push(Err(RowError { line, field: None, code: code.into(), message }));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let own_key = key_index.and_then(|i| record.get(i)).map(str::trim).filter(|k| !k.is_empty());
        if key_index.is_some() && own_key.is_none() {
            let column = key_column.unwrap_or_default();
            records.push(Err(RowError {
                line,
                field: Some(column.to_string()),
                code: "missing_key".into(),
                message: format!("the key column `{column}` is empty"),
            }));
            continue;
        }
        let pairs: Vec<(String, String)> = names
            .iter()
            .zip(record.iter())
            .enumerate()
            .filter(|(i, (name, _))| Some(*i) != key_index && !name.is_empty())
            .map(|(_, (name, value))| (name.clone(), value.to_string()))
            .collect();
        records.push(
            lead::parse_pairs(pairs)
                .map(|parsed| (line, parsed, own_key.map(str::to_string)))
                .map_err(|e| lead_error(line, &e)),
        );
    }
    Ok(records)
}

/// The non-blank lines of a JSON-lines file with their 1-based numbers (`\r\n` endings and a byte-order mark
/// taken off).
fn json_lines(bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    bytes.split(|b| *b == b'\n').enumerate().filter_map(|(i, text)| {
        let line = i as u64 + 1;
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let text = if line == 1 { text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text) } else { text };
        (!text.iter().all(u8::is_ascii_whitespace)).then_some((line, text))
    })
}

fn json_records(bytes: &[u8], key_column: Option<&str>) -> Vec<Record> {
    let mut records = Vec::new();
    for (line, text) in json_lines(bytes) {
        // The key is read off the line and taken out of the lead, which would refuse an unknown key.
        let (body, own_key) = match key_column {
            None => (text.to_vec(), None),
            Some(column) => match take_key(text, column) {
                Ok(taken) => taken,
                Err(e) => {
                    records.push(Err(RowError { line, ..e }));
                    continue;
                }
            },
        };
        records.push(lead::parse_json(&body).map(|parsed| (line, parsed, own_key)).map_err(|e| lead_error(line, &e)));
    }
    records
}

/// The line without its `column` key, and that key's value (text or a number).
fn take_key(text: &[u8], column: &str) -> Result<(Vec<u8>, Option<String>), RowError> {
    let missing =
        |code: &str, message: String| RowError { line: 0, field: Some(column.into()), code: code.into(), message };
    let Ok(serde_json::Value::Object(mut map)) = crate::json::parse_strict(text) else {
        // Not an object: the lead parser says what is wrong with it.
        return Ok((text.to_vec(), None));
    };
    let key = match map.remove(column) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err(missing("missing_key", format!("the key `{column}` is missing or empty"))),
    };
    let body = serde_json::to_vec(&map).map_err(|e| missing("malformed_json", e.to_string()))?;
    Ok((body, Some(key)))
}

#[cfg(test)]
mod tests;

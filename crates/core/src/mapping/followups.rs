//! A profile's optional follow-ups of a delivered lead: `[deal]` (a deal per lead in a pipeline and stage,
//! associated with the contact) and `[history]` (a note per lead on the contact's timeline).

use serde::Deserialize;
use toml::Spanned;

use super::parse::Source;
use super::MappingError;
use crate::lead::{FieldValue, Lead};

/// `[deal]`: what the deal of each lead looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DealMapping {
    /// The pipeline's internal id (`default` for the portal's first one).
    pub pipeline: String,
    /// The stage's internal id (`appointmentscheduled`, …).
    pub stage: String,
    /// The deal name: text with `{lead_field}` placeholders (`{first_name} {last_name} – {vehicle_of_interest}`).
    pub name: String,
    /// The lead field whose number becomes the deal's `amount`.
    pub amount_from: Option<String>,
    /// A HubSpot owner id for every deal (`hubspot_owner_id`).
    pub owner: Option<String>,
}

/// `[history]`: a note on the contact per accepted lead, listing what arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryMapping {
    pub note: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeal {
    pipeline: Spanned<String>,
    stage: Spanned<String>,
    name: Option<Spanned<String>>,
    amount_from: Option<Spanned<String>>,
    owner: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHistory {
    note: bool,
}

const DEFAULT_DEAL_NAME: &str = "{first_name} {last_name}";

/// The placeholders of a template: `{field}` names.
fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("`{{` without `}}` in `{template}`"))?;
        out.push(&after[..close]);
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("`}}` without `{{` in `{template}`"));
    }
    Ok(out)
}

pub(super) fn deal(src: &Source, raw: Option<&RawDeal>) -> Result<Option<DealMapping>, MappingError> {
    let Some(raw) = raw else { return Ok(None) };
    for id in [&raw.pipeline, &raw.stage] {
        if id.get_ref().trim().is_empty() {
            return Err(src.invalid(id.span(), "`pipeline` and `stage` are the internal ids HubSpot shows".into()));
        }
    }
    let name = raw.name.as_ref().map_or(DEFAULT_DEAL_NAME.to_string(), |n| n.get_ref().clone());
    if let Some(span) = raw.name.as_ref().map(Spanned::span) {
        for field in placeholders(&name).map_err(|m| src.invalid(span.clone(), m))? {
            if !Lead::is_known_field(field) {
                return Err(src.invalid(span, format!("unknown lead field `{{{field}}}` in the deal name")));
            }
        }
    }
    if let Some(from) = &raw.amount_from {
        if !Lead::is_known_field(from.get_ref()) {
            return Err(src.invalid(from.span(), format!("unknown lead field `{}` for the amount", from.get_ref())));
        }
    }
    Ok(Some(DealMapping {
        pipeline: raw.pipeline.get_ref().trim().to_string(),
        stage: raw.stage.get_ref().trim().to_string(),
        name,
        amount_from: raw.amount_from.as_ref().map(|a| a.get_ref().clone()),
        owner: raw.owner.as_ref().map(|o| o.get_ref().trim().to_string()).filter(|o| !o.is_empty()),
    }))
}

pub(super) fn history(raw: Option<&RawHistory>) -> HistoryMapping {
    HistoryMapping { note: raw.is_some_and(|h| h.note) }
}

fn text(lead: &Lead, field: &str) -> Option<String> {
    match lead.field(field)? {
        FieldValue::Text(s) => Some(s),
        FieldValue::Bool(b) => Some(b.to_string()),
    }
}

impl DealMapping {
    /// The deal's name for `lead`: placeholders filled (absent fields empty), spaces collapsed; `Lead` when
    /// nothing is left.
    pub fn name_for(&self, lead: &Lead) -> String {
        let mut out = String::new();
        let mut rest = self.name.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').unwrap_or(after.len());
            out.push_str(&text(lead, &after[..close]).unwrap_or_default());
            rest = after.get(close + 1..).unwrap_or("");
        }
        out.push_str(rest);
        let name = out.split_whitespace().collect::<Vec<_>>().join(" ");
        let name = name.trim_matches(|c: char| c == '-' || c == '–' || c.is_whitespace()).to_string();
        if name.is_empty() {
            "Lead".to_string()
        } else {
            name
        }
    }

    /// The amount: the field's number (`$45,999` → `45999`), or none when absent or not a number.
    pub fn amount_for(&self, lead: &Lead) -> Option<String> {
        let raw = text(lead, self.amount_from.as_deref()?)?;
        let clean: String = raw.chars().filter(|c| !matches!(c, '$' | ',' | ' ')).collect();
        clean.parse::<f64>().ok().filter(|n| n.is_finite()).map(|_| clean)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Mapping;
    use crate::lead::parse_json;

    fn profile(extra: &str) -> Result<Mapping, super::MappingError> {
        Mapping::from_toml(&format!("name = \"t\"\n{extra}"), "test.toml")
    }

    #[test]
    fn a_deal_section_is_checked_and_fills_its_name_and_amount_from_the_lead() {
        let m = profile(
            "[deal]\npipeline = \"default\"\nstage = \"appointmentscheduled\"\n\
             name = \"{first_name} {last_name} – {vehicle_of_interest}\"\namount_from = \"product.msrp\"\nowner = \"77\"\n",
        )
        .unwrap();
        let deal = m.deal.clone().unwrap();
        let lead = parse_json(
            br#"{"email":"a@b.co","first_name":"Jo","product":{"msrp":"$45,999"},"vehicle_of_interest":"Model X"}"#,
        )
        .unwrap()
        .lead;
        assert_eq!(deal.name_for(&lead), "Jo – Model X");
        assert_eq!(deal.amount_for(&lead).as_deref(), Some("45999"));
        assert_eq!(deal.owner.as_deref(), Some("77"));
        let bare = parse_json(br#"{"email":"a@b.co"}"#).unwrap().lead;
        assert_eq!((deal.name_for(&bare).as_str(), deal.amount_for(&bare)), ("Lead", None));
        assert!(profile("").unwrap().deal.is_none());
    }

    #[test]
    fn a_bad_deal_or_history_section_names_its_line() {
        let unknown = profile("[deal]\npipeline = \"default\"\nstage = \"s\"\nname = \"{nope}\"\n").unwrap_err();
        assert!(unknown.to_string().contains("line 5") && unknown.to_string().contains("{nope}"), "{unknown}");
        let amount = profile("[deal]\npipeline = \"default\"\nstage = \"s\"\namount_from = \"price\"\n").unwrap_err();
        assert!(amount.to_string().contains("`price`"), "{amount}");
        let missing = profile("[deal]\npipeline = \"default\"\n").unwrap_err();
        assert!(missing.to_string().contains("stage"), "{missing}");
        assert!(profile("[history]\nnote = true\n").unwrap().history.note);
        assert!(profile("[history]\nnotes = true\n").is_err());
    }
}

//! The `[status]` and `[activity]` sections of a mapping profile: which contact properties a status update
//! writes, which engagement object each activity kind becomes, and the optional "last activity"
//! properties (the Aimbase guide's "Defined by OEM"). Absent sections take the Aimbase guide's defaults.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::parse::{check_property_name, Source};
use super::{MappingError, PropertyType};
use crate::hubspot::EngagementKind;
use crate::lifecycle::{ActivityKind, LeadStatus};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStatus {
    status_property: Option<Spanned<String>>,
    created_date_property: Option<Spanned<String>>,
    created_date_type: Option<Spanned<String>>,
    dealer_property: Option<Spanned<String>>,
    dealer_id_property: Option<Spanned<String>>,
    score_property: Option<Spanned<String>>,
    changed_at_property: Option<Spanned<String>>,
    hs_lead_status: Option<Spanned<BTreeMap<String, String>>>,
    lifecyclestage: Option<Spanned<BTreeMap<String, String>>>,
    lifecycle_backwards: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawActivity {
    email: Option<Spanned<String>>,
    phone_call: Option<Spanned<String>>,
    appointment: Option<Spanned<String>>,
    quote: Option<Spanned<String>>,
    sms: Option<Spanned<String>>,
    note: Option<Spanned<String>>,
    comment: Option<Spanned<String>>,
    last_activity_date_property: Option<Spanned<String>>,
    last_activity_type_property: Option<Spanned<String>>,
    comment_property: Option<Spanned<String>>,
}

/// Where a status update's values go. `None` turns a value off (sent values are then ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMapping {
    pub status_property: Option<String>,
    pub created_date_property: Option<String>,
    /// `date` (midnight UTC of the sender's calendar day) or `datetime`.
    pub created_date_type: PropertyType,
    pub dealer_property: Option<String>,
    pub dealer_id_property: Option<String>,
    pub score_property: Option<String>,
    /// A datetime property set to when the status changed.
    pub changed_at_property: Option<String>,
    /// Status → `hs_lead_status` value (statuses not listed leave it alone).
    pub hs_lead_status: BTreeMap<LeadStatus, String>,
    /// Status → `lifecyclestage` value.
    pub lifecyclestage: BTreeMap<LeadStatus, String>,
    /// `lifecycle_backwards = true`: a status may move the lifecycle stage back (e.g. Lost → `lead` after
    /// `opportunity`), which HubSpot allows only by clearing it first; otherwise (the default) HubSpot keeps the
    /// later stage, as it does for any plain write.
    pub lifecycle_backwards: bool,
}

impl Default for StatusMapping {
    fn default() -> Self {
        StatusMapping {
            status_property: Some("aimbase_lead_status".into()),
            created_date_property: Some("aimbase_lead_created_date".into()),
            created_date_type: PropertyType::Date,
            dealer_property: Some("dealer_assignment_aimbase".into()),
            dealer_id_property: None,
            score_property: Some("aimbase_rollick_score".into()),
            changed_at_property: None,
            hs_lead_status: BTreeMap::new(),
            lifecyclestage: BTreeMap::new(),
            lifecycle_backwards: false,
        }
    }
}

/// What each activity kind becomes, and which contact properties an activity updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityMapping {
    pub objects: BTreeMap<ActivityKind, EngagementKind>,
    /// A datetime property set to the newest activity's time.
    pub last_activity_date_property: Option<String>,
    /// A text property set to the newest activity's kind (`Phone Call`).
    pub last_activity_type_property: Option<String>,
    /// A text property set to the newest comment's text.
    pub comment_property: Option<String>,
}

impl Default for ActivityMapping {
    fn default() -> Self {
        let objects = ActivityKind::ALL.into_iter().map(|k| (k, allowed_objects(k)[0])).collect();
        ActivityMapping {
            objects,
            last_activity_date_property: None,
            last_activity_type_property: None,
            comment_property: None,
        }
    }
}

impl ActivityMapping {
    pub fn object_for(&self, kind: ActivityKind) -> EngagementKind {
        self.objects.get(&kind).copied().unwrap_or(allowed_objects(kind)[0])
    }
}

/// The engagement objects each kind may become; the first is the default.
pub fn allowed_objects(kind: ActivityKind) -> &'static [EngagementKind] {
    use EngagementKind::*;
    match kind {
        ActivityKind::Email => &[Email, Note],
        ActivityKind::PhoneCall => &[Call, Note],
        ActivityKind::Appointment => &[Meeting, Note, Task],
        ActivityKind::Sms => &[Communication, Note],
        ActivityKind::Quote | ActivityKind::Note | ActivityKind::Comment => &[Note, Task],
    }
}

/// A property setting: `""` turns it off.
fn property(
    src: &Source,
    raw: &Option<Spanned<String>>,
    default: Option<String>,
) -> Result<Option<String>, MappingError> {
    match raw {
        None => Ok(default),
        Some(p) if p.get_ref().trim().is_empty() => Ok(None),
        Some(p) => {
            check_property_name(src, p)?;
            Ok(Some(p.get_ref().clone()))
        }
    }
}

fn status_table(
    src: &Source,
    raw: &Option<Spanned<BTreeMap<String, String>>>,
) -> Result<BTreeMap<LeadStatus, String>, MappingError> {
    let Some(raw) = raw else { return Ok(BTreeMap::new()) };
    let mut out = BTreeMap::new();
    for (from, to) in raw.get_ref() {
        let status = LeadStatus::parse(from).ok_or_else(|| {
            let known: Vec<_> = LeadStatus::ALL.iter().map(|s| s.as_str()).collect();
            src.invalid(raw.span(), format!("`{from}` is not a lead status ({})", known.join(", ")))
        })?;
        if to.trim().is_empty() || out.insert(status, to.trim().to_string()).is_some() {
            return Err(src.invalid(raw.span(), format!("status `{from}` is empty or listed twice")));
        }
    }
    Ok(out)
}

pub(super) fn status(src: &Source, raw: Option<&RawStatus>) -> Result<StatusMapping, MappingError> {
    let d = StatusMapping::default();
    let Some(r) = raw else { return Ok(d) };
    let created_date_type = match &r.created_date_type {
        None => d.created_date_type,
        Some(t) => match PropertyType::parse(t.get_ref()) {
            Some(k @ (PropertyType::Date | PropertyType::Datetime)) => k,
            _ => return Err(src.invalid(t.span(), format!("`{}` must be date or datetime", t.get_ref()))),
        },
    };
    Ok(StatusMapping {
        status_property: property(src, &r.status_property, d.status_property)?,
        created_date_property: property(src, &r.created_date_property, d.created_date_property)?,
        created_date_type,
        dealer_property: property(src, &r.dealer_property, d.dealer_property)?,
        dealer_id_property: property(src, &r.dealer_id_property, d.dealer_id_property)?,
        score_property: property(src, &r.score_property, d.score_property)?,
        changed_at_property: property(src, &r.changed_at_property, d.changed_at_property)?,
        hs_lead_status: status_table(src, &r.hs_lead_status)?,
        lifecyclestage: status_table(src, &r.lifecyclestage)?,
        lifecycle_backwards: r.lifecycle_backwards.unwrap_or(d.lifecycle_backwards),
    })
}

pub(super) fn activity(src: &Source, raw: Option<&RawActivity>) -> Result<ActivityMapping, MappingError> {
    let d = ActivityMapping::default();
    let Some(r) = raw else { return Ok(d) };
    let mut objects = d.objects.clone();
    let settings = [
        (ActivityKind::Email, &r.email),
        (ActivityKind::PhoneCall, &r.phone_call),
        (ActivityKind::Appointment, &r.appointment),
        (ActivityKind::Quote, &r.quote),
        (ActivityKind::Sms, &r.sms),
        (ActivityKind::Note, &r.note),
        (ActivityKind::Comment, &r.comment),
    ];
    for (kind, setting) in settings {
        let Some(s) = setting else { continue };
        let choices = allowed_objects(kind);
        let object = choices.iter().find(|o| o.object_path() == s.get_ref().trim()).ok_or_else(|| {
            let names: Vec<_> = choices.iter().map(|o| o.object_path()).collect();
            src.invalid(s.span(), format!("`{}` activities can become {}", kind.key(), names.join(" or ")))
        })?;
        objects.insert(kind, *object);
    }
    Ok(ActivityMapping {
        objects,
        last_activity_date_property: property(src, &r.last_activity_date_property, None)?,
        last_activity_type_property: property(src, &r.last_activity_type_property, None)?,
        comment_property: property(src, &r.comment_property, None)?,
    })
}

/// The custom properties the status and activity settings write (HubSpot's own are filtered by the caller).
pub(super) fn property_definitions(
    status: &StatusMapping,
    activity: &ActivityMapping,
    group: &str,
) -> Vec<crate::hubspot::PropertyDefinition> {
    let statuses: Vec<_> = LeadStatus::ALL.iter().map(|s| super::option(s.as_str(), s.as_str())).collect();
    let kinds: Vec<_> = ActivityKind::ALL.iter().map(|k| super::option(k.label(), k.label())).collect();
    let wanted = [
        (&status.status_property, PropertyType::Enumeration, statuses),
        (&status.created_date_property, status.created_date_type, Vec::new()),
        (&status.dealer_property, PropertyType::String, Vec::new()),
        (&status.dealer_id_property, PropertyType::String, Vec::new()),
        (&status.score_property, PropertyType::Number, Vec::new()),
        (&status.changed_at_property, PropertyType::Datetime, Vec::new()),
        (&activity.last_activity_date_property, PropertyType::Datetime, Vec::new()),
        (&activity.last_activity_type_property, PropertyType::Enumeration, kinds),
        (&activity.comment_property, PropertyType::String, Vec::new()),
    ];
    wanted
        .into_iter()
        .filter_map(|(name, kind, options)| {
            let name = name.as_ref()?;
            Some(crate::hubspot::PropertyDefinition {
                name: name.clone(),
                label: super::label_from_name(name),
                kind: kind.as_str().to_string(),
                field_type: kind.field_type().to_string(),
                group_name: group.to_string(),
                options,
            })
        })
        .collect()
}

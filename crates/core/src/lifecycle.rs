//! The vocabulary of a lead's life after capture: the lead statuses of Aimbase's lifecycle and the kinds of
//! dealer activity. Status updates and activities carry them; mapping profiles map them onto
//! HubSpot.

use serde::{Deserialize, Serialize};

/// The lead statuses of Aimbase's lifecycle (the Aimbase guide), in lifecycle order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LeadStatus {
    Pending,
    Viewed,
    Assigned,
    Working,
    Sold,
    Lost,
    Abandoned,
}

impl LeadStatus {
    pub const ALL: [LeadStatus; 7] = [
        LeadStatus::Pending,
        LeadStatus::Viewed,
        LeadStatus::Assigned,
        LeadStatus::Working,
        LeadStatus::Sold,
        LeadStatus::Lost,
        LeadStatus::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeadStatus::Pending => "Pending",
            LeadStatus::Viewed => "Viewed",
            LeadStatus::Assigned => "Assigned",
            LeadStatus::Working => "Working",
            LeadStatus::Sold => "Sold",
            LeadStatus::Lost => "Lost",
            LeadStatus::Abandoned => "Abandoned",
        }
    }

    /// Case-insensitive.
    pub fn parse(s: &str) -> Option<LeadStatus> {
        let s = s.trim();
        LeadStatus::ALL.into_iter().find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    Email,
    PhoneCall,
    Appointment,
    Quote,
    Sms,
    Note,
    Comment,
}

impl ActivityKind {
    pub const ALL: [ActivityKind; 7] = [
        ActivityKind::Email,
        ActivityKind::PhoneCall,
        ActivityKind::Appointment,
        ActivityKind::Quote,
        ActivityKind::Sms,
        ActivityKind::Note,
        ActivityKind::Comment,
    ];

    /// The Aimbase guide's name.
    pub fn label(self) -> &'static str {
        match self {
            ActivityKind::Email => "Email",
            ActivityKind::PhoneCall => "Phone Call",
            ActivityKind::Appointment => "Appointment",
            ActivityKind::Quote => "Quote",
            ActivityKind::Sms => "SMS",
            ActivityKind::Note => "Note",
            ActivityKind::Comment => "Comment",
        }
    }

    /// The configuration key (`phone_call`).
    pub fn key(self) -> &'static str {
        match self {
            ActivityKind::Email => "email",
            ActivityKind::PhoneCall => "phone_call",
            ActivityKind::Appointment => "appointment",
            ActivityKind::Quote => "quote",
            ActivityKind::Sms => "sms",
            ActivityKind::Note => "note",
            ActivityKind::Comment => "comment",
        }
    }

    /// Case, spaces and punctuation are ignored: `Phone Call`, `phone_call`, `PHONECALL`, `call`.
    pub fn parse(s: &str) -> Option<ActivityKind> {
        Some(match normalise(s).as_str() {
            "email" => ActivityKind::Email,
            "phonecall" | "call" | "phone" => ActivityKind::PhoneCall,
            "appointment" | "meeting" => ActivityKind::Appointment,
            "quote" => ActivityKind::Quote,
            "sms" | "text" | "textmessage" => ActivityKind::Sms,
            "note" => ActivityKind::Note,
            "comment" => ActivityKind::Comment,
            _ => return None,
        })
    }
}

/// `Dealer Reassignment` → `dealerreassignment`.
pub(crate) fn normalise(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// Where a default HubSpot lifecycle stage sits in HubSpot's order (`subscriber` first, `evangelist` last);
/// `None` for `other` and a portal's own stages, which have no order hubrelay knows.
pub fn lifecycle_rank(stage: &str) -> Option<u8> {
    const ORDER: [&str; 7] =
        ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist"];
    ORDER.iter().position(|s| s.eq_ignore_ascii_case(stage.trim())).map(|p| p as u8)
}

#[cfg(test)]
mod lifecycle_order {
    use super::lifecycle_rank;

    #[test]
    fn stages_rank_in_hubspot_order_and_custom_ones_do_not() {
        assert!(lifecycle_rank("lead") < lifecycle_rank("customer"));
        assert!(lifecycle_rank("opportunity") > lifecycle_rank("salesqualifiedlead"));
        assert_eq!(lifecycle_rank("other"), None);
        assert_eq!(lifecycle_rank("1234567"), None);
    }
}

//! Writes whose answer never came back. The worker sends each contact write with a write id in a marker
//! property, and records the id on the write's queued messages before the call. A message that comes due
//! again still holding the id (the worker was killed during the call, or HubSpot answered a timeout or a 5xx)
//! is an uncertain write: one batch read of the marker tells whether it landed. If it did, the message is
//! settled as delivered without writing again; otherwise it is sent as usual.

use async_trait::async_trait;

use crate::hubspot::PropertyDefinition;
use crate::store::StoreError;

pub use crate::hubspot::WRITE_MARKER_PROPERTY;

/// Where the worker records, before a HubSpot call, which write each message's contact is being sent with.
#[async_trait]
pub trait WriteIntents: Send + Sync {
    /// `(event id, write id)` pairs, stored at once; kept until the message's fate is stored (which replaces
    /// or removes it). Absent events are ignored.
    async fn record_intents(&self, intents: &[(String, String)]) -> Result<(), StoreError>;
}

/// The marker property's definition (a hubrelay property, created by `hubrelay properties sync`).
pub fn marker_definition() -> PropertyDefinition {
    PropertyDefinition {
        name: WRITE_MARKER_PROPERTY.into(),
        label: "hubrelay write id".into(),
        kind: "string".into(),
        field_type: "text".into(),
        group_name: "contactinformation".into(),
        options: Vec::new(),
    }
}

/// Whether a failed write may still have been applied: no answer at all, an internal error, a gateway's error
/// or timeout (502, 504, and the 52x of HubSpot's CDN). A 503 says the request was not taken; a 429, a conflict
/// or a refusal, that it was not applied.
pub fn uncertain(status: Option<u16>) -> bool {
    match status {
        None => true,
        Some(s) => matches!(s, 500 | 502 | 504) || (520..600).contains(&s),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_lost_answer_or_a_server_or_gateway_error_leaves_a_write_uncertain() {
        for status in [None, Some(500), Some(502), Some(504), Some(524)] {
            assert!(super::uncertain(status), "{status:?}");
        }
        for status in [Some(400), Some(409), Some(423), Some(429), Some(477), Some(501), Some(503)] {
            assert!(!super::uncertain(status), "{status:?}");
        }
    }
}

//! Extole's events API: `POST {base}/v5/events` with a bearer access token and a JSON
//! `{"event_name": ..., "data": {...}}` body, answered `{"id": ...}`. Errors are
//! `{code, http_status_code, message, parameters, unique_id}`; 429 and 5xx are transient, other 4xx are not.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::PartnerError;

/// Default Extole API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.extole.io";

/// One Extole event. Data values travel as strings (dates ISO-8601, amounts as decimal text), the way Extole's
/// HubSpot guide sends them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtoleEvent {
    pub event_name: String,
    pub data: BTreeMap<String, String>,
}

impl ExtoleEvent {
    pub fn new(event_name: impl Into<String>) -> Self {
        ExtoleEvent { event_name: event_name.into(), data: BTreeMap::new() }
    }

    /// Adds `key` unless `value` is empty after trimming (Extole treats an empty value as a value).
    pub fn with(mut self, key: &str, value: impl AsRef<str>) -> Self {
        let value = value.as_ref().trim();
        if !value.is_empty() {
            self.data.insert(key.to_owned(), value.to_owned());
        }
        self
    }
}

/// Extole's answer to an accepted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtoleAccepted {
    pub id: String,
}

#[async_trait]
pub trait Extole: Send + Sync {
    async fn send_event(&self, event: &ExtoleEvent) -> Result<ExtoleAccepted, PartnerError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_serialises_like_extoles_guide() {
        let e =
            ExtoleEvent::new("signed_up").with("email", "a@x.com").with("company", "  ").with("advocate_code", "c1");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"event_name":"signed_up","data":{"email":"a@x.com","advocate_code":"c1"}})
        );
    }
}

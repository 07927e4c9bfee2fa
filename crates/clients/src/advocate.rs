//! impact.com Advocate (SaaSquatch) participants: `PUT {base}/api/v1/{tenantAlias}/open/account/{accountId}/user/{userId}`
//! (create or update, JSON, answering the user object with its referral codes and share links) and `DELETE
//! {base}/api/v1/{tenantAlias}/account/{accountId}/user/{userId}`, HTTP Basic with the tenant's API key as the user.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use hubrelay_core::partners::advocate::{answer_of, AdvocateParticipants, Participant, ParticipantAnswer};
use hubrelay_core::partners::PartnerError;

use crate::partner_http::{client, send, Answer};

const PARTNER: &str = "advocate";

#[derive(Clone)]
pub struct AdvocateClient {
    http: reqwest::Client,
    base_url: String,
    tenant_alias: String,
    api_key: String,
}

impl std::fmt::Debug for AdvocateClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdvocateClient")
            .field("base_url", &self.base_url)
            .field("tenant_alias", &self.tenant_alias)
            .finish_non_exhaustive()
    }
}

/// A path segment, percent-encoded (ids come from HubSpot, but an email-shaped id must not break the path).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl AdvocateClient {
    pub fn new(base_url: &str, tenant_alias: &str, api_key: &str, timeout: Duration) -> Result<Self, PartnerError> {
        Ok(AdvocateClient {
            http: client(PARTNER, timeout)?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            tenant_alias: tenant_alias.trim().to_owned(),
            api_key: api_key.to_owned(),
        })
    }

    fn error(status: u16, body: &Value, retry_after_secs: Option<u64>) -> PartnerError {
        let message =
            body.get("message").and_then(Value::as_str).map_or_else(|| format!("HTTP {status}"), String::from);
        let code = PartnerError::generic_code(PARTNER, status).unwrap_or_else(|| format!("{PARTNER}_{status}"));
        PartnerError { partner: PARTNER, status: Some(status), code, message, retry_after_secs }
    }
}

#[async_trait]
impl AdvocateParticipants for AdvocateClient {
    async fn upsert_participant(&self, p: &Participant) -> Result<ParticipantAnswer, PartnerError> {
        let url = format!(
            "{}/api/v1/{}/open/account/{}/user/{}",
            self.base_url,
            segment(&self.tenant_alias),
            segment(&p.account_id),
            segment(&p.user_id)
        );
        let mut body = json!({"id": p.user_id, "accountId": p.account_id, "email": p.email});
        if let Some(f) = &p.first_name {
            body["firstName"] = json!(f);
        }
        if let Some(l) = &p.last_name {
            body["lastName"] = json!(l);
        }
        if let Some(c) = &p.referral_cookie {
            body["cookies"] = json!(c);
        }
        let request = self.http.put(&url).basic_auth(&self.api_key, Some("")).json(&body);
        let Answer { status, retry_after, body } = send(PARTNER, request).await?;
        if !(200..300).contains(&status) {
            return Err(Self::error(status, &body, retry_after));
        }
        Ok(answer_of(&body))
    }

    async fn delete_participant(&self, account_id: &str, user_id: &str) -> Result<bool, PartnerError> {
        let url = format!(
            "{}/api/v1/{}/account/{}/user/{}",
            self.base_url,
            segment(&self.tenant_alias),
            segment(account_id),
            segment(user_id)
        );
        let Answer { status, retry_after, body } =
            send(PARTNER, self.http.delete(&url).basic_auth(&self.api_key, Some(""))).await?;
        match status {
            200..=299 => Ok(true),
            404 => Ok(false),
            s => Err(Self::error(s, &body, retry_after)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubrelay_sandbox::partners::{AdvocateSandbox, AdvocateSandboxOptions};

    #[tokio::test]
    async fn participants_are_upserted_read_back_with_their_code_and_deleted_once() {
        let sb = AdvocateSandbox::new(AdvocateSandboxOptions {
            tenant_alias: Some("t1".into()),
            api_key: Some("KEY".into()),
        });
        let handle = sb.serve_local().await.unwrap();
        let client = AdvocateClient::new(&handle.url(), "t1", "KEY", Duration::from_secs(5)).unwrap();
        let p = Participant {
            account_id: "1001".into(),
            user_id: "1001".into(),
            email: "ann@example.com".into(),
            first_name: Some("Ann".into()),
            last_name: None,
            referral_cookie: None,
        };
        let first = client.upsert_participant(&p).await.unwrap();
        assert!(first.referral_code.as_deref().is_some_and(|c| c.starts_with("ANN")), "{first:?}");
        assert!(first.share_link.is_some());
        let again =
            client.upsert_participant(&Participant { last_name: Some("Lee".into()), ..p.clone() }).await.unwrap();
        assert_eq!(again, first, "an update keeps the code and link");
        assert_eq!(sb.participants().len(), 1);
        assert!(client.delete_participant("1001", "1001").await.unwrap());
        assert!(!client.delete_participant("1001", "1001").await.unwrap(), "a second delete finds none");
        let wrong = AdvocateClient::new(&handle.url(), "t1", "nope", Duration::from_secs(5)).unwrap();
        let e = wrong.upsert_participant(&p).await.unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (Some(401), "advocate_unauthorized"));
    }

    #[tokio::test]
    async fn a_referral_cookie_attributes_the_new_participant() {
        use base64::Engine;
        let sb = AdvocateSandbox::new(AdvocateSandboxOptions { tenant_alias: Some("t1".into()), api_key: None });
        let handle = sb.serve_local().await.unwrap();
        let client = AdvocateClient::new(&handle.url(), "t1", "KEY", Duration::from_secs(5)).unwrap();
        let cookie = serde_json::json!({"app.referralsaasquatch.com": {"t1_CODE": {"codes": {"p": "BOB1234"}}}});
        let cookie = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(cookie.to_string());
        let p = Participant {
            account_id: "7".into(),
            user_id: "7".into(),
            email: "cy@example.com".into(),
            first_name: Some("Cy".into()),
            last_name: None,
            referral_cookie: Some(cookie),
        };
        let answer = client.upsert_participant(&p).await.unwrap();
        assert_eq!(answer.referred_by_code.as_deref(), Some("BOB1234"));
        assert!(answer.message_links.as_deref().is_some_and(|l| l.starts_with("EMAIL: https://")), "{answer:?}");
        let unreadable = Participant { user_id: "8".into(), referral_cookie: Some("%%%".into()), ..p };
        assert_eq!(client.upsert_participant(&unreadable).await.unwrap().referred_by_code, None);
        let stored = &sb.participants();
        let sent = stored.iter().find(|u| u["id"] == "7").unwrap();
        assert_eq!(sent["referredBy"]["code"], "BOB1234");
    }
}

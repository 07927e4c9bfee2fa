//! [`SharedTokenStore`] on DynamoDB: one OAuth portal's access token, shared by every Lambda of the stack, and
//! the lease one of them holds while it refreshes it. One item in the idempotency table:
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `id` | S | [`token_key`](hubrelay_core::shared_token::token_key) of the app and refresh token (partition key) |
//! | `sealed` | B | the access token, sealed (ChaCha20-Poly1305) under a key derived from the refresh token and the app's client secret |
//! | `refresh_at`, `expires_at` | N, N | epoch ms: when the token should be refreshed, when it expires |
//! | `lease_owner`, `lease_until` | S, N | who is refreshing, until when (epoch ms) |
//! | `expiration` | N | epoch seconds, a day after the last write; the table's TTL attribute |
//!
//! Reads are strongly consistent, so a process that waited for a lease to end reads the token it left.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use hubrelay_core::sealed::SealingKey;
use hubrelay_core::shared_token::{sealing_key, token_key, SharedToken, SharedTokenStore};
use hubrelay_core::store::StoreError;

/// How long the item outlives its last write.
const KEEP_SECS: i64 = 24 * 3600;

pub struct DynamoSharedToken {
    client: aws_sdk_dynamodb::Client,
    table: String,
    key: String,
    sealing: SealingKey,
}

impl std::fmt::Debug for DynamoSharedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoSharedToken").field("table", &self.table).field("key", &self.key).finish()
    }
}

fn millis(t: OffsetDateTime) -> String {
    (t.unix_timestamp_nanos() / 1_000_000).to_string()
}

impl DynamoSharedToken {
    /// The shared token of the portal `refresh_token` belongs to, for the app `client_id` / `client_secret`.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        client_id: &str,
        client_secret: &str,
        refresh_token: &str,
    ) -> DynamoSharedToken {
        DynamoSharedToken {
            client,
            table: table.into(),
            key: token_key(client_id, refresh_token),
            sealing: sealing_key(client_secret, refresh_token),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        operation: &str,
        e: &SdkError<E, R>,
    ) -> StoreError {
        StoreError::Unavailable(format!("DynamoDB {operation} on table {}: {}", self.table, DisplayErrorContext(e)))
    }

    fn expiration(now: OffsetDateTime) -> AttributeValue {
        AttributeValue::N((now.unix_timestamp() + KEEP_SECS).to_string())
    }
}

#[async_trait]
impl SharedTokenStore for DynamoSharedToken {
    async fn current(&self) -> Result<Option<SharedToken>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(self.key.clone()))
            .consistent_read(true)
            .projection_expression("sealed, refresh_at, expires_at")
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", &e))?;
        let Some(item) = out.item else { return Ok(None) };
        let (Some(AttributeValue::B(sealed)), Some(AttributeValue::N(at))) =
            (item.get("sealed"), item.get("refresh_at"))
        else {
            return Ok(None); // a lease without a token yet
        };
        // A token sealed under another key (the app's secret rotated) is as good as none: refresh.
        let Some(access_token) = self.sealing.open(&self.key, sealed.as_ref()).and_then(|p| String::from_utf8(p).ok())
        else {
            return Ok(None);
        };
        let time = |name: &str, value: &str| {
            value
                .parse::<i128>()
                .ok()
                .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok())
                .ok_or_else(|| StoreError::Corrupt(format!("{}: {name} `{value}`", self.key)))
        };
        let refresh_at = time("refresh_at", at)?;
        // Written before `expires_at` was kept: good until it is due.
        let expires_at = match item.get("expires_at") {
            Some(AttributeValue::N(v)) => time("expires_at", v)?,
            _ => refresh_at,
        };
        Ok(Some(SharedToken { access_token, refresh_at, expires_at }))
    }

    async fn lease(&self, owner: &str, now: OffsetDateTime, until: OffsetDateTime) -> Result<bool, StoreError> {
        let values = HashMap::from([
            (":owner".to_string(), AttributeValue::S(owner.to_string())),
            (":until".to_string(), AttributeValue::N(millis(until))),
            (":now".to_string(), AttributeValue::N(millis(now))),
            (":exp".to_string(), Self::expiration(now)),
        ]);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(self.key.clone()))
            .update_expression("SET lease_owner = :owner, lease_until = :until, expiration = :exp")
            .condition_expression("attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :owner")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(self.unavailable("UpdateItem", &e)),
        }
    }

    async fn store(&self, token: &SharedToken, owner: &str) -> Result<(), StoreError> {
        let sealed = self
            .sealing
            .seal(&self.key, token.access_token.as_bytes())
            .ok_or_else(|| StoreError::Unavailable("no system randomness to seal the access token".into()))?;
        let values = HashMap::from([
            (":sealed".to_string(), AttributeValue::B(Blob::new(sealed))),
            (":at".to_string(), AttributeValue::N(millis(token.refresh_at))),
            (":until".to_string(), AttributeValue::N(millis(token.expires_at))),
            (":exp".to_string(), Self::expiration(OffsetDateTime::now_utc())),
            (":owner".to_string(), AttributeValue::S(owner.to_string())),
        ]);
        // Only while still holding the lease: one that ran out may have passed to a process now refreshing.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(self.key.clone()))
            .update_expression(
                "SET sealed = :sealed, refresh_at = :at, expires_at = :until, expiration = :exp REMOVE lease_owner, lease_until",
            )
            .condition_expression("lease_owner = :owner")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Err(
                StoreError::Unavailable(format!("{}: the refresh lease ran out before the token was stored", self.key)),
            ),
            Err(e) => Err(self.unavailable("UpdateItem", &e)),
        }
    }

    async fn release(&self, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(self.key.clone()))
            .update_expression("REMOVE lease_owner, lease_until")
            .condition_expression("lease_owner = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.unavailable("UpdateItem", &e)),
        }
    }
}

//! The per-person keys that seal retry and dead-letter messages on SQS (see `hubrelay_core::message_seal`), in the
//! idempotency table, in the message's tenant scope:
//!
//! | item | attributes |
//! |---|---|
//! | `subject_key:<key name>` | `key` B (32 random bytes), `key_id` S, `expiration` N (30 days after the last use) |
//! | the same, after an erasure | `erased` S (the receipt id), `expiration` N: no key |
//!
//! Sealing is one `UpdateItem` (the key created if missing or erased, its expiry pushed on); opening is one
//! consistent `GetItem`; sealing again what was opened (a retry, a dead letter, a redrive) and passing a sealed
//! message on (a disabled tenant's) is one conditional `UpdateItem` on the same key id, which pushes its expiry
//! on. So a message's key lives as long as the message: a message is **erased** only when its key carries the
//! erasure's mark or was replaced after it; a key simply missing (another table, a key that expired unused) is an
//! error that keeps the message, never a reason to drop it. No key is cached across calls: a Lambda holding a key
//! an erasure destroyed would seal a later lead under it. The table is encrypted at rest (KMS).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use time::OffsetDateTime;

use crate::dynamodb::DynamoIdempotencyStore;
use hubrelay_core::domain::RetryMessage;
use hubrelay_core::message_seal::{self, SubjectKey};
use hubrelay_core::sealed::{random_bytes, SealingKey};
use hubrelay_core::store::StoreError;
use hubrelay_core::tenant::TenantId;

/// How long a key lives after its last use.
const KEY_TTL: time::Duration = time::Duration::days(30);

/// What opening a message found.
#[derive(Debug)]
pub enum Opened {
    /// It was not sealed (written before sealing, or by a queue without it).
    Plain(RetryMessage),
    /// Opened: the message with its event.
    Opened(RetryMessage),
    /// Its key is gone: its person was erased. Nothing in it can be read.
    Erased,
}

/// Seals and opens a stack's retry messages with per-subject keys.
#[derive(Debug, Clone)]
pub struct MessageSealer {
    store: DynamoIdempotencyStore,
}

/// The key item id of `subject` (scoped by the store).
pub(crate) fn key_item(subject: &str) -> String {
    format!("subject_key:{}", message_seal::key_name(subject))
}

fn subject_key(item: &HashMap<String, AttributeValue>) -> Option<SubjectKey> {
    let bytes: [u8; 32] = item.get("key")?.as_b().ok()?.as_ref().try_into().ok()?;
    let id = item.get("key_id")?.as_s().ok()?.clone();
    Some(SubjectKey { id, key: SealingKey::from_bytes(&bytes) })
}

impl MessageSealer {
    /// Keys in `store`'s table; each message's in its tenant's scope.
    pub fn new(store: DynamoIdempotencyStore) -> Self {
        MessageSealer { store }
    }

    fn scoped(&self, tenant: Option<&TenantId>) -> DynamoIdempotencyStore {
        match tenant {
            Some(tenant) => self.store.for_tenant(tenant),
            None => self.store.clone(),
        }
    }

    /// `subject`'s key in `store`, created on first use, its expiry pushed on.
    async fn key(store: &DynamoIdempotencyStore, subject: &str) -> Result<SubjectKey, StoreError> {
        let no_randomness = || StoreError::Unavailable("no randomness for a message key".into());
        let fresh: [u8; 32] = random_bytes().ok_or_else(no_randomness)?;
        let key_id: String =
            random_bytes::<12>().ok_or_else(no_randomness)?.iter().map(|b| format!("{b:02x}")).collect();
        let expiration = (OffsetDateTime::now_utc() + KEY_TTL).unix_timestamp();
        let out = store
            .client()
            .update_item()
            .table_name(store.table())
            .key("id", store.id(&key_item(subject)))
            // A key an erasure marked is replaced: what was sealed under the old one stays unreadable.
            .update_expression(
                "SET #k = if_not_exists(#k, :k), key_id = if_not_exists(key_id, :kid), expiration = :exp REMOVE erased",
            )
            .expression_attribute_names("#k", "key")
            .expression_attribute_values(":k", AttributeValue::B(fresh.to_vec().into()))
            .expression_attribute_values(":kid", AttributeValue::S(key_id))
            .expression_attribute_values(":exp", AttributeValue::N(expiration.to_string()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| store.unavailable("UpdateItem", &e))?;
        out.attributes
            .as_ref()
            .and_then(subject_key)
            .ok_or_else(|| StoreError::Corrupt("a message key item is unreadable".into()))
    }

    /// `m` with its event sealed under its subject's key (created on first use). A sealed message is left as it is.
    pub async fn seal(&self, m: &RetryMessage) -> Result<RetryMessage, StoreError> {
        Ok(self.seal_many(std::slice::from_ref(m)).await?.remove(0))
    }

    /// Many messages sealed, one key call per subject, the calls side by side (a backfill import's chunk).
    pub async fn seal_many(&self, messages: &[RetryMessage]) -> Result<Vec<RetryMessage>, StoreError> {
        let mut wanted: HashMap<(Option<TenantId>, String), Option<SubjectKey>> = HashMap::new();
        for m in messages.iter().filter(|m| message_seal::sealed_parts(m).is_none()) {
            wanted.insert((m.tenant.clone(), message_seal::subject_of(m)), None);
        }
        let mut calls = tokio::task::JoinSet::new();
        for (tenant, subject) in wanted.keys() {
            let store = self.scoped(tenant.as_ref());
            let (tenant, subject) = (tenant.clone(), subject.clone());
            calls.spawn(async move {
                let key = Self::key(&store, &subject).await;
                ((tenant, subject), key)
            });
        }
        while let Some(joined) = calls.join_next().await {
            let (slot, key) = joined.map_err(|e| StoreError::Unavailable(format!("message key task: {e}")))?;
            wanted.insert(slot, Some(key?));
        }
        messages
            .iter()
            .map(|m| {
                if message_seal::sealed_parts(m).is_some() {
                    return Ok(m.clone());
                }
                let subject = message_seal::subject_of(m);
                let key = wanted
                    .get(&(m.tenant.clone(), subject.clone()))
                    .and_then(Option::as_ref)
                    .ok_or_else(|| StoreError::Unavailable("a message key was not fetched".into()))?;
                message_seal::seal(m, &subject, key)
                    .ok_or_else(|| StoreError::Unavailable("no randomness to seal a message".into()))
            })
            .collect()
    }

    /// `subject`'s key `key_id`, its expiry pushed on; `None` when an erasure marked or replaced it.
    async fn live_key(
        store: &DynamoIdempotencyStore,
        subject: &str,
        key_id: &str,
    ) -> Result<Option<SubjectKey>, StoreError> {
        let expiration = (OffsetDateTime::now_utc() + KEY_TTL).unix_timestamp();
        let result = store
            .client()
            .update_item()
            .table_name(store.table())
            .key("id", store.id(&key_item(subject)))
            .update_expression("SET expiration = :exp")
            .condition_expression("key_id = :kid AND attribute_not_exists(erased)")
            .expression_attribute_values(":kid", AttributeValue::S(key_id.to_string()))
            .expression_attribute_values(":exp", AttributeValue::N(expiration.to_string()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.attributes.as_ref().and_then(subject_key)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                // Marked or replaced by an erasure: gone. Not there at all: not ours to call erased.
                let out = store
                    .client()
                    .get_item()
                    .table_name(store.table())
                    .key("id", store.id(&key_item(subject)))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| store.unavailable("GetItem", &e))?;
                match out.item {
                    Some(_) => Ok(None),
                    None => Err(StoreError::Unavailable(format!(
                        "no key {} in table {} (another table, or a key that expired unused)",
                        key_item(subject),
                        store.table()
                    ))),
                }
            }
            Err(e) => Err(store.unavailable("UpdateItem", &e)),
        }
    }

    /// `m` (opened) sealed again under the key it was sealed with, `key_id`; `None` when that key is gone — its
    /// person was erased while the message was being worked on, and nothing of it may go back on a queue.
    pub async fn reseal(&self, m: &RetryMessage, key_id: &str) -> Result<Option<RetryMessage>, StoreError> {
        let subject = message_seal::subject_of(m);
        let store = self.scoped(m.tenant.as_ref());
        match Self::live_key(&store, &subject, key_id).await? {
            Some(key) => message_seal::seal(m, &subject, &key)
                .map(Some)
                .ok_or_else(|| StoreError::Unavailable("no randomness to seal a message".into())),
            None => Ok(None),
        }
    }

    /// A sealed message passed on as it is (a disabled tenant's): its key's expiry pushed on. `false` when its
    /// person was erased meanwhile.
    pub async fn keep_alive(&self, m: &RetryMessage) -> Result<bool, StoreError> {
        let Some((subject, key_id, _)) = message_seal::sealed_parts(m) else { return Ok(true) };
        let store = self.scoped(m.tenant.as_ref());
        Ok(Self::live_key(&store, &subject, &key_id).await?.is_some())
    }

    /// `m` opened with its subject's key; [`Opened::Erased`] when an erasure marked the key or replaced it. A key
    /// that is simply not there is an error (the message is kept): erasures leave their mark.
    pub async fn open(&self, m: &RetryMessage) -> Result<Opened, StoreError> {
        let Some((subject, key_id, _)) = message_seal::sealed_parts(m) else {
            return Ok(Opened::Plain(m.clone()));
        };
        let store = self.scoped(m.tenant.as_ref());
        let out = store
            .client()
            .get_item()
            .table_name(store.table())
            .key("id", store.id(&key_item(&subject)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store.unavailable("GetItem", &e))?;
        let Some(item) = out.item else {
            return Err(StoreError::Unavailable(format!(
                "no key {} for event {} in table {} (another table, or a key that expired unused)",
                key_item(&subject),
                m.event_id,
                store.table()
            )));
        };
        if item.contains_key("erased") {
            return Ok(Opened::Erased);
        }
        let key = subject_key(&item)
            .ok_or_else(|| StoreError::Corrupt(format!("key {} is unreadable", key_item(&subject))))?;
        if key.id != key_id {
            // Replaced after an erasure (a key is only made where there is none, or an erased one).
            return Ok(Opened::Erased);
        }
        message_seal::open(m, &key)
            .map(Opened::Opened)
            .ok_or_else(|| StoreError::Corrupt(format!("event {} does not open with its key (altered?)", m.event_id)))
    }
}

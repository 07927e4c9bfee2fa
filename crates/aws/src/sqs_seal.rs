//! The per-person keys that seal retry and dead-letter messages on SQS (see `hubrelay_core::message_seal`), in the
//! idempotency table, in the message's tenant scope:
//!
//! | item | attributes |
//! |---|---|
//! | `subject_key:<subject>` | `key` B (32 random bytes), `key_id` S, `expiration` N (30 days after the last seal) |
//!
//! Sealing is one `UpdateItem` (the key created if missing, its expiry pushed on); opening is one consistent
//! `GetItem`. No key is cached across calls: a Lambda holding a key an erasure destroyed would seal a later lead
//! under it, and that lead would be dropped as erased. A message's key outlives it: retries end within 3 days
//! and the DLQ keeps a message 14 days, a redrive sealing it again. The table is encrypted at rest (KMS).

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
    format!("subject_key:{subject}")
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
            .update_expression(
                "SET #k = if_not_exists(#k, :k), key_id = if_not_exists(key_id, :kid), expiration = :exp",
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

    /// `m` (opened) sealed again under the key it was sealed with, `key_id`; `None` when that key is gone — its
    /// person was erased while the message was being worked on, and nothing of it may go back on a queue.
    pub async fn reseal(&self, m: &RetryMessage, key_id: &str) -> Result<Option<RetryMessage>, StoreError> {
        let subject = message_seal::subject_of(m);
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
        match out.item.as_ref().and_then(subject_key).filter(|k| k.id == key_id) {
            Some(key) => message_seal::seal(m, &subject, &key)
                .map(Some)
                .ok_or_else(|| StoreError::Unavailable("no randomness to seal a message".into())),
            None => Ok(None),
        }
    }

    /// `m` opened with its subject's key; [`Opened::Erased`] when the key is gone or replaced.
    pub async fn open(&self, m: &RetryMessage) -> Result<Opened, StoreError> {
        let Some((subject, _, _)) = message_seal::sealed_parts(m) else {
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
        let Some(key) = out.item.as_ref().and_then(subject_key) else {
            return Ok(Opened::Erased);
        };
        Ok(match message_seal::open(m, &key) {
            Some(opened) => Opened::Opened(opened),
            None => Opened::Erased,
        })
    }
}

//! The update ledger and lead links on DynamoDB, in the idempotency table under their own prefixes:
//!
//! | item | attributes |
//! |---|---|
//! | `ledger:<contact id>` | `lease_owner` S, `lease_until` N (epoch ms), `v_<group>` S (`<ms>|<fingerprint>`), `expiration` |
//! | `lead:<lead id>` | `contact_id` S, `linked_at` N, `expiration` (written by the retry worker; an inline delivery links on its key item) |
//!
//! The lease is one conditional `UpdateItem` (free, expired or ours), so two Lambdas never write one
//! contact's status at once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue};
use time::OffsetDateTime;

use crate::dynamodb::DynamoIdempotencyStore;
use hubrelay_core::domain::FunctionName;
use hubrelay_core::store::{sender_key, AppliedVersion, LeadLinks, Lease, StoreError, UpdateLedger, UPDATE_STATE_TTL};

fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn expiration(now: OffsetDateTime) -> AttributeValue {
    n((now + UPDATE_STATE_TTL).unix_timestamp())
}

/// Value groups become attribute names: only `[a-z_]` is accepted, so nothing can inject into expressions.
fn version_attribute(group: &str) -> Result<String, StoreError> {
    if !group.is_empty() && group.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        Ok(format!("v_{group}"))
    } else {
        Err(StoreError::Corrupt(format!("value group `{group}` is not [a-z_]+")))
    }
}

fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

#[async_trait]
impl UpdateLedger for DynamoIdempotencyStore {
    async fn lease(
        &self,
        contact_id: &str,
        owner: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("id", self.id(&format!("ledger:{contact_id}")))
            .update_expression("SET lease_owner = :o, lease_until = :u, expiration = :exp")
            .condition_expression("attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :o")
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":u", n(millis(now) + ttl.as_millis() as i64))
            .expression_attribute_values(":now", n(millis(now)))
            .expression_attribute_values(":exp", expiration(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let item = match result {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => return Ok(Lease::Busy),
            Err(e) => return Err(self.unavailable("UpdateItem", &e)),
        };
        let mut versions = BTreeMap::new();
        for (name, value) in &item {
            if let Some(group) = name.strip_prefix("v_") {
                let text = value.as_s().map_err(|_| StoreError::Corrupt(format!("ledger {name} is not a string")))?;
                versions.insert(group.to_string(), AppliedVersion::decode(text)?);
            }
        }
        Ok(Lease::Granted(versions))
    }

    async fn commit(
        &self,
        contact_id: &str,
        owner: &str,
        applied: &BTreeMap<String, AppliedVersion>,
    ) -> Result<(), StoreError> {
        let key = format!("ledger:{contact_id}");
        let mut sets = vec!["expiration = :exp".to_string()];
        let mut request = self.client().update_item().table_name(self.table()).key("id", self.id(&key));
        for (i, (group, version)) in applied.iter().enumerate() {
            sets.push(format!("{} = :v{i}", version_attribute(group)?));
            request = request.expression_attribute_values(format!(":v{i}"), s(&version.encode()));
        }
        let result = request
            .update_expression(format!("SET {} REMOVE lease_owner, lease_until", sets.join(", ")))
            .condition_expression("lease_owner = :o")
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":exp", expiration(OffsetDateTime::now_utc()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => {
                // Our lease expired and another writer holds the contact: it saw the values as they were
                // before us and will record its own. Record ours only where newer, leaving its lease alone.
                self.record_if_newer(&key, applied).await
            }
            Err(e) => Err(self.unavailable("UpdateItem", &e)),
        }
    }

    async fn release(&self, contact_id: &str, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("id", self.id(&format!("ledger:{contact_id}")))
            .update_expression("REMOVE lease_owner, lease_until")
            .condition_expression("lease_owner = :o")
            .expression_attribute_values(":o", s(owner))
            .send()
            .await;
        // Not (or no longer) the lease's owner: nothing to give up.
        self.updated_or_already(result)
    }
}

impl DynamoIdempotencyStore {
    async fn record_if_newer(&self, key: &str, applied: &BTreeMap<String, AppliedVersion>) -> Result<(), StoreError> {
        for (group, version) in applied {
            let attribute = version_attribute(group)?;
            let result = self
                .client()
                .update_item()
                .table_name(self.table())
                .key("id", self.id(key))
                .update_expression(format!("SET {attribute} = :v"))
                .condition_expression(format!("attribute_not_exists({attribute}) OR {attribute} < :v"))
                .expression_attribute_values(":v", s(&version.encode()))
                .send()
                .await;
            // A newer version already recorded for this group fails the condition and stands.
            self.updated_or_already(result)?;
        }
        Ok(())
    }
}

#[async_trait]
impl LeadLinks for DynamoIdempotencyStore {
    async fn link(&self, lead_id: &str, contact_id: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        self.client()
            .put_item()
            .table_name(self.table())
            .item("id", self.id(&format!("lead:{lead_id}")))
            .item("contact_id", s(contact_id))
            .item("linked_at", n(millis(now)))
            .item("expiration", expiration(now))
            .send()
            .await
            .map_err(|e| self.unavailable("PutItem", &e))?;
        Ok(())
    }

    async fn contact_for(&self, lead_id: &str) -> Result<Option<String>, StoreError> {
        // Linked by an inline delivery (on the lead's key item) or by the retry worker and merges (`lead:` item):
        // both in one request, the newer link wins.
        let keys = [sender_key(FunctionName::LeadCaptured, "lead", lead_id), format!("lead:{lead_id}")];
        let mut wanted =
            KeysAndAttributes::builder().consistent_read(true).projection_expression("contact_id, linked_at");
        for key in &keys {
            wanted = wanted.keys(HashMap::from([("id".to_string(), self.id(key))]));
        }
        let wanted = wanted.build().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut request = HashMap::from([(self.table().to_string(), wanted)]);
        let mut found = Vec::new();
        // Keys DynamoDB left unprocessed (throttling) are asked again after a pause, a few times.
        for round in 0..4u32 {
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(25 << round)).await;
            }
            let out = self
                .client()
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(|e| self.unavailable("BatchGetItem", &e))?;
            found.extend(out.responses.and_then(|mut r| r.remove(self.table())).unwrap_or_default());
            match out.unprocessed_keys {
                Some(rest) if !rest.is_empty() => request = rest,
                _ => {
                    let linked_at = |item: &HashMap<String, AttributeValue>| {
                        item.get("linked_at").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok())
                    };
                    let newest = found
                        .iter()
                        .filter(|item| item.contains_key("contact_id"))
                        .max_by_key(|item| linked_at(item).unwrap_or(0));
                    return Ok(newest.and_then(|i| i.get("contact_id")).and_then(|v| v.as_s().ok()).cloned());
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "DynamoDB BatchGetItem on table {}: lead {lead_id}'s links stayed unprocessed",
            self.table()
        )))
    }

    async fn record_merge(&self, merged: &str, survivor: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        self.client()
            .put_item()
            .table_name(self.table())
            .item("id", self.id(&format!("merged:{merged}")))
            .item("survivor_id", s(survivor))
            .item("merged_at", n(millis(now)))
            .item("expiration", expiration(now))
            .send()
            .await
            .map_err(|e| self.unavailable("PutItem", &e))?;
        Ok(())
    }

    async fn merged_into(&self, contact_id: &str) -> Result<Option<String>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("id", self.id(&format!("merged:{contact_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", &e))?;
        Ok(out.item.as_ref().and_then(|i| i.get("survivor_id")).and_then(|v| v.as_s().ok()).cloned())
    }
}

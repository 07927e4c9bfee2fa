//! Erasure and retention on the idempotency table (see `hubrelay_core::privacy`), for the operator console and the
//! retry worker of a stack. One scan of the tenant's scope finds what names the person — event records by email
//! hash or contact id (and, from those, the other's), key items by their contact and lead link, the contact's
//! version, lead links, update ledgers — and each is deleted. Their messages on SQS cannot be edited or found by
//! content: the person's message keys (`sqs_seal`) are deleted, which leaves every copy unreadable, and workers
//! and DLQ tools drop them when they meet them.
//!
//! An erased event's `event:<id>` item becomes a tombstone (`erased`, no record) for [`EVENT_TTL`], and event
//! records are written only where there is none, so a worker pass that was in flight cannot write one back. A
//! receipt (`erasure:<receipt id>`, no TTL) names no one.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use time::OffsetDateTime;

use crate::dynamodb::{DynamoIdempotencyStore, EVENT_TTL};
use crate::dynamodb_events::scan_all;
use crate::dynamodb_retention::stored_record;
use crate::sqs_seal::key_item;
use hubrelay_core::privacy::{ErasureCounts, ErasureReceipt, PersonalData, Subject};
use hubrelay_core::store::{contact_key, email_hash, EventRecord, StoreError};

type Item = HashMap<String, AttributeValue>;

/// How long an erased key's mark stays: longer than any message sealed under it can live (retries end within 3
/// days, the DLQ keeps a letter 14, and every pass over a message pushes its key's expiry on by 30).
const ERASED_KEY_TTL: time::Duration = time::Duration::days(30);

/// The prefix of a lead's key item (`sender_key(LeadCaptured, "lead", id)`), which holds its inline lead link.
const LEAD_KEY_PREFIX: &str = "lead-captured:lead:";

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn record_of(item: &Item) -> Option<EventRecord> {
    stored_record(item).map(|stored| stored.record)
}

/// What names the person, grown from the records that name them.
#[derive(Default)]
struct Person {
    hashes: BTreeSet<String>,
    contacts: BTreeSet<String>,
    /// `contact:<sha256>` item ids of the person's emails (their versions, and the key items' `contact`).
    contact_keys: BTreeSet<String>,
    lead_ids: BTreeSet<String>,
}

impl Person {
    fn names(&self, record: &EventRecord) -> bool {
        record.email_hash.as_ref().is_some_and(|h| self.hashes.contains(h))
            || record.contact_id.as_ref().is_some_and(|c| self.contacts.contains(c))
    }
}

impl DynamoIdempotencyStore {
    /// This scope's item id without the scope (`None` for another scope's item).
    fn local_id<'a>(&self, item: &'a Item) -> Option<&'a str> {
        self.unscoped(text(item, "id")?)
    }

    /// An id of this scope (an item's, or one an item refers to, as a key item's `contact`) without the scope.
    fn unscoped<'a>(&self, id: &'a str) -> Option<&'a str> {
        let scope = match self.id("") {
            AttributeValue::S(s) => s,
            _ => String::new(),
        };
        id.strip_prefix(scope.as_str())
    }

    /// The contact version a key item carries (`contact`, a scoped `contact:<sha256>` id), unscoped.
    fn contact_of<'a>(&self, item: &'a Item) -> Option<&'a str> {
        self.unscoped(text(item, "contact")?)
    }

    async fn delete_item(&self, local: &str) -> Result<bool, StoreError> {
        let out = self
            .client()
            .delete_item()
            .table_name(self.table())
            .key("id", self.id(local))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.unavailable("DeleteItem", &e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn put_receipt(&self, receipt: &ErasureReceipt) -> Result<(), StoreError> {
        let json = serde_json::to_string(receipt).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.client()
            .put_item()
            .table_name(self.table())
            .item("id", self.id(&format!("erasure:{}", receipt.receipt_id)))
            .item("receipt", AttributeValue::S(json))
            .send()
            .await
            .map_err(|e| self.unavailable("PutItem", &e))?;
        Ok(())
    }

    async fn scope_items(&self) -> Result<Vec<Item>, StoreError> {
        let values = HashMap::from([(":scope".to_string(), self.scope_value())]);
        scan_all(self, self.scope_condition(), values, false).await
    }
}

#[async_trait]
impl PersonalData for DynamoIdempotencyStore {
    async fn erase(&self, subject: &Subject, receipt: &ErasureReceipt) -> Result<ErasureCounts, StoreError> {
        let mut person = Person::default();
        if let Some(email) = subject.email.as_deref().filter(|e| !e.trim().is_empty()) {
            person.hashes.insert(email_hash(email));
            person.contact_keys.insert(contact_key(email));
        }
        if let Some(id) = subject.contact_id.as_deref().filter(|c| !c.trim().is_empty()) {
            person.contacts.insert(id.trim().to_string());
        }
        let items = self.scope_items().await?;
        // A record by contact id gives the email hash, which finds the records of events not delivered yet (and
        // the other way round): twice covers both directions.
        for _ in 0..2 {
            for item in &items {
                let Some(record) = record_of(item) else { continue };
                if person.names(&record) {
                    person.hashes.extend(record.email_hash.clone());
                    person.contacts.extend(record.contact_id.clone());
                    person.contact_keys.extend(self.contact_of(item).map(String::from));
                }
            }
        }
        let mut counts = ErasureCounts::default();
        let mut tombstones = Vec::new();
        for item in &items {
            let Some(local) = self.local_id(item) else { continue };
            let record = record_of(item);
            let named = record.as_ref().is_some_and(|r| person.names(r));
            let linked = text(item, "contact_id").is_some_and(|c| person.contacts.contains(c));
            if let Some(event_id) = local.strip_prefix("event:") {
                if named {
                    tombstones.push(event_id.to_string());
                }
            } else if item.contains_key("event_record") || item.contains_key("status") {
                // A key item: its answer, its event's record, the contact version and lead link it carries.
                let versioned = self.contact_of(item).is_some_and(|c| person.contact_keys.contains(c));
                if named || linked || versioned {
                    if let Some(lead) = local.strip_prefix(LEAD_KEY_PREFIX).filter(|_| linked) {
                        person.lead_ids.insert(lead.to_string());
                    }
                    if self.delete_item(local).await? {
                        counts.idempotency_records += 1;
                    }
                    if let Some(r) = &record {
                        tombstones.push(r.event_id.clone());
                    }
                }
            } else if person.contact_keys.contains(local) {
                counts.contact_versions += u64::from(self.delete_item(local).await?);
            } else if let Some(lead) = local.strip_prefix("lead:").filter(|_| linked) {
                person.lead_ids.insert(lead.to_string());
                counts.lead_links += u64::from(self.delete_item(local).await?);
            } else if local.strip_prefix("ledger:").is_some_and(|c| person.contacts.contains(c)) {
                counts.ledger_entries += u64::from(self.delete_item(local).await?);
            }
        }
        // Their messages on SQS: each key is replaced by the erasure's mark, which leaves every copy sealed under it
        // unreadable, and tells the workers and DLQ tools that meet one that it was erased (a key merely missing
        // is an error that keeps the message). The events' own keys too (what names the person by none of these).
        tombstones.sort();
        tombstones.dedup();
        let subjects = person
            .hashes
            .iter()
            .map(|h| format!("email:{h}"))
            .chain(person.contacts.iter().map(|c| format!("contact:{c}")))
            .chain(person.lead_ids.iter().map(|l| format!("lead:{l}")))
            .chain(tombstones.iter().map(|e| format!("event:{e}")));
        let marked_until = (OffsetDateTime::now_utc() + ERASED_KEY_TTL).unix_timestamp();
        for subject in subjects.collect::<Vec<_>>() {
            let out = self
                .client()
                .put_item()
                .table_name(self.table())
                .item("id", self.id(&key_item(&subject)))
                .item("erased", AttributeValue::S(receipt.receipt_id.clone()))
                .item("expiration", AttributeValue::N(marked_until.to_string()))
                .return_values(ReturnValue::AllOld)
                .send()
                .await
                .map_err(|e| self.unavailable("PutItem", &e))?;
            counts.message_keys += u64::from(out.attributes.is_some_and(|old| old.contains_key("key")));
        }
        let expiration = (OffsetDateTime::now_utc() + EVENT_TTL).unix_timestamp();
        for event_id in &tombstones {
            self.client()
                .put_item()
                .table_name(self.table())
                .item("id", self.id(&format!("event:{event_id}")))
                .item("erased", AttributeValue::S(receipt.receipt_id.clone()))
                .item("expiration", AttributeValue::N(expiration.to_string()))
                .send()
                .await
                .map_err(|e| self.unavailable("PutItem", &e))?;
        }
        counts.event_records += tombstones.len() as u64;
        // The retention sweep's cursor names the item it stopped at, which may be one of the person's (an id
        // made of their email's hash): the next pass starts from the beginning instead.
        self.client()
            .delete_item()
            .table_name(self.table())
            .key("id", AttributeValue::S(crate::dynamodb_retention::CURSOR_ID.to_string()))
            .send()
            .await
            .map_err(|e| self.unavailable("DeleteItem", &e))?;
        let mut stored = receipt.clone();
        stored.counts = counts.clone();
        self.put_receipt(&stored).await?;
        Ok(counts)
    }

    async fn update_receipt(&self, receipt: &ErasureReceipt) -> Result<(), StoreError> {
        self.put_receipt(receipt).await
    }

    async fn receipts(&self, limit: usize) -> Result<Vec<ErasureReceipt>, StoreError> {
        let values = HashMap::from([(":prefix".to_string(), self.id("erasure:"))]);
        let items = scan_all(self, "begins_with(id, :prefix)", values, false).await?;
        let mut receipts: Vec<ErasureReceipt> =
            items.iter().filter_map(|i| serde_json::from_str(text(i, "receipt")?).ok()).collect();
        receipts.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.receipt_id.cmp(&a.receipt_id)));
        receipts.truncate(limit);
        Ok(receipts)
    }

    async fn scrub_events_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let mut scrubbed = 0;
        for item in self.scope_items().await? {
            let (Some(local), Some(stored)) = (self.local_id(&item), stored_record(&item)) else { continue };
            let Some(record) = crate::dynamodb_retention::scrubbed(stored.record.clone(), cutoff) else { continue };
            if self.write_scrubbed(self.id(local), &stored, &record).await? {
                scrubbed += 1;
            }
        }
        Ok(scrubbed)
    }

    async fn is_erased(&self, event_id: &str) -> Result<bool, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("id", self.id(&format!("event:{event_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", &e))?;
        Ok(out.item.is_some_and(|i| i.contains_key("erased")))
    }
}

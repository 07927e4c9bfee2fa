//! [`CallBudget`] on DynamoDB: the HubSpot budget every Lambda of a stack shares (see `hubrelay_core::budget`).
//!
//! One item per slot in the idempotency table:
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `id` | S | `budget:<token hash>:<slot number>` (partition key) |
//! | `n` | N | calls taken in the slot (the cap when HubSpot said the window is spent) |
//! | `expiration` | N | epoch seconds, an hour after the slot; the table's TTL attribute |
//!
//! Taking a call is one conditional `UpdateItem` (`ADD n 1` if `n` is under the lane's cap): atomic across
//! functions, and slots are separate items, so no item is written more than `cap` times a second plus refusals.
//! An instance that was refused remembers the slot is full and asks again only in the next one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;

use hubrelay_core::budget::{BudgetRefused, CallBudget, DailyCalls, Lane, SlotPlan};

/// How long a slot's item outlives the slot (TTL deletes it lazily).
const KEEP: Duration = Duration::from_secs(3600);

/// Unix time in milliseconds (a parameter so tests can step through slots).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

#[derive(Clone)]
pub struct DynamoCallBudget {
    client: aws_sdk_dynamodb::Client,
    table: String,
    key: String,
    plan: SlotPlan,
    clock: Clock,
    /// What this instance already knows: per lane, the last slot found full (or paused through).
    known_full: Arc<Mutex<HashMap<Lane, u64>>>,
}

impl std::fmt::Debug for DynamoCallBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoCallBudget")
            .field("table", &self.table)
            .field("key", &self.key)
            .field("plan", &self.plan)
            .finish()
    }
}

fn system_clock() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl DynamoCallBudget {
    /// The budget named `key` (`hubrelay_core::budget::budget_key` of the token), `limit_per_10s` calls.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        key: impl Into<String>,
        limit_per_10s: u32,
    ) -> Self {
        DynamoCallBudget {
            client,
            table: table.into(),
            key: key.into(),
            plan: SlotPlan::for_limit(limit_per_10s),
            clock: Arc::new(system_clock),
            known_full: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn plan(&self) -> SlotPlan {
        self.plan
    }

    /// The item id of `slot`.
    pub fn slot_id(&self, slot: u64) -> String {
        format!("{}:{slot}", self.key)
    }

    fn known_full(&self) -> std::sync::MutexGuard<'_, HashMap<Lane, u64>> {
        self.known_full.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remember that `lane` (and, for the worker's full cap, the inline lane too) has nothing left through `slot`.
    fn remember_full(&self, lane: Lane, slot: u64) {
        let mut known = self.known_full();
        let lanes: &[Lane] = match lane {
            Lane::Worker => &[Lane::Worker, Lane::Inline],
            Lane::Inline => &[Lane::Inline],
        };
        for l in lanes {
            let e = known.entry(*l).or_insert(slot);
            *e = (*e).max(slot);
        }
    }

    /// An `UpdateItem` of `slot`'s item that also sets its TTL (`:exp` in `expression`).
    fn slot_update(&self, slot: u64, expression: &str) -> UpdateItemFluentBuilder {
        let slot_end_ms = (slot + 1) * self.plan.slot.as_millis() as u64;
        let expiration = AttributeValue::N(((slot_end_ms / 1000) + KEEP.as_secs()).to_string());
        self.client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(self.slot_id(slot)))
            .update_expression(expression)
            .expression_attribute_values(":exp", expiration)
    }

    fn refused(&self, slot: u64, now: u64, reason: String) -> BudgetRefused {
        BudgetRefused { retry_in: self.plan.until_end_of(slot, now).max(Duration::from_millis(1)), reason }
    }
}

#[async_trait]
impl CallBudget for DynamoCallBudget {
    async fn take(&self, lane: Lane) -> Result<(), BudgetRefused> {
        let now = (self.clock)();
        let slot = self.plan.slot_of(now);
        if let Some(&full) = self.known_full().get(&lane) {
            if full >= slot {
                return Err(self.refused(
                    full,
                    now,
                    format!("the shared HubSpot budget is spent until slot {full} ends"),
                ));
            }
        }
        let cap = self.plan.cap_for(lane, slot);
        if cap == 0 {
            // One call per slot and this one is the worker's: the inline path may try the next.
            return Err(self.refused(slot, now, "this slot of the shared HubSpot budget is the worker's".into()));
        }
        let result = self
            .slot_update(slot, "ADD n :one SET expiration = :exp")
            .condition_expression("attribute_not_exists(n) OR n < :cap")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":cap", AttributeValue::N(cap.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(ctx)) if ctx.err().is_conditional_check_failed_exception() => {
                self.remember_full(lane, slot);
                Err(self.refused(
                    slot,
                    now,
                    format!("the shared HubSpot budget has no call left in this slot ({cap} for this lane)"),
                ))
            }
            Err(e) => match lane {
                // A sender is waiting: queue the event (the worker sends it) rather than call unmetered.
                Lane::Inline => Err(self.refused(
                    slot,
                    now,
                    format!("the shared HubSpot budget could not be read: {}", DisplayErrorContext(&e)),
                )),
                // The worker's calls are few (batches of up to 100) and HubSpot's 429 still paces it: call.
                Lane::Worker => {
                    tracing::warn!(error = %DisplayErrorContext(&e), "shared HubSpot budget unreadable; the worker calls unmetered");
                    Ok(())
                }
            },
        }
    }

    async fn spent(&self, pause: Duration) {
        let now = (self.clock)();
        let (first, last) = (self.plan.slot_of(now), self.plan.slot_of(now + pause.as_millis() as u64));
        self.remember_full(Lane::Worker, last);
        for slot in first..=last {
            let result = self
                .slot_update(slot, "SET n = :full, expiration = :exp")
                .expression_attribute_values(":full", AttributeValue::N(self.plan.cap.to_string()))
                .send()
                .await;
            if let Err(e) = result {
                // The other functions will each meet HubSpot's 429 themselves: slower, not wrong.
                tracing::warn!(error = %DisplayErrorContext(&e), "could not mark the shared HubSpot budget spent");
                return;
            }
        }
    }
}

/// [`DailyCalls`] on DynamoDB: a tenant's daily budget shared by every function of the stack. One item per day,
/// `daily:<credential hash>:<day>` (`n`: calls taken), one conditional `UpdateItem` per call, deleted by TTL two
/// days on.
#[derive(Debug, Clone)]
pub struct DynamoDailyCalls {
    client: aws_sdk_dynamodb::Client,
    table: String,
    key: String,
    limit: u32,
}

impl DynamoDailyCalls {
    /// `key`: `hubrelay_core::budget::budget_key` of the credential (the portal's), `limit` calls per day.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, key: &str, limit: u32) -> Self {
        let key = format!("daily:{}", key.trim_start_matches("budget:"));
        DynamoDailyCalls { client, table: table.into(), key, limit }
    }
}

#[async_trait]
impl DailyCalls for DynamoDailyCalls {
    async fn take(&self, day: i64) -> Result<bool, String> {
        let expiration = (day + 3) * 86_400;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(format!("{}:{day}", self.key)))
            .update_expression("ADD n :one SET expiration = :exp")
            .condition_expression("attribute_not_exists(n) OR n < :limit")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":limit", AttributeValue::N(self.limit.to_string()))
            .expression_attribute_values(":exp", AttributeValue::N(expiration.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(format!("DynamoDB UpdateItem on table {}: {}", self.table, DisplayErrorContext(&e))),
        }
    }

    async fn taken(&self, day: i64) -> Result<u32, String> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(format!("{}:{day}", self.key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| format!("DynamoDB GetItem on table {}: {}", self.table, DisplayErrorContext(&e)))?
            .item;
        Ok(item.and_then(|i| i.get("n").and_then(|n| n.as_n().ok()).and_then(|n| n.parse().ok())).unwrap_or(0))
    }

    fn limit(&self) -> u32 {
        self.limit
    }
}

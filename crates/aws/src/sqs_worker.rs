//! The `retry-worker` Lambda's handler: one SQS batch of [`RetryMessage`]s → one [`RetryWorker::process`]
//! pass (so the batch merges into HubSpot batch calls) → each message's fate applied on SQS → the ids of the
//! records that must come back in `batchItemFailures` (the event source mapping has `ReportBatchItemFailures`).
//!
//! A record counts as done (SQS deletes it) once its fate is durable: delivered or superseded (recorded by
//! the worker), or its successor sent to the retry queue or the DLQ. Only records whose successor could not be
//! sent are reported as failures, never the whole batch through an error: SQS then makes the *original* message
//! visible again after the visibility timeout, and after `maxReceiveCount` receives moves it to the DLQ itself.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use time::OffsetDateTime;

use crate::dynamodb_retention::RetentionSweep;
use crate::lambda_tenants::{Resolved, TenantWorker, Tenants};
use crate::sqs::{PreparedMessage, SqsRetryQueue};
use crate::sqs_seal::Opened;
use hubrelay_core::domain::{DeadLetterReason, RetryMessage};
use hubrelay_core::metrics::EventOutcome;
use hubrelay_core::tenant::TenantId;
use hubrelay_core::worker::{Disposition, RetryWorker};

/// The code of the dead-letter reason for a body that is not a [`RetryMessage`] this worker understands.
pub const UNREADABLE_MESSAGE: &str = "unreadable_message";

pub struct SqsWorker {
    worker: RetryWorker,
    queue: SqsRetryQueue,
    /// The workers of the tenants whose messages share the queue.
    tenants: Option<Arc<dyn Tenants<TenantWorker>>>,
    /// Writes the batch's metrics when it is handled.
    emf: Option<Arc<crate::emf::Emf>>,
    /// The table whose event records say which events are settled: their copies are dropped, not sent again.
    events: Option<crate::dynamodb::DynamoIdempotencyStore>,
    /// Clears old event records of personal data when the hourly schedule invokes the function.
    retention: Option<RetentionSweep>,
}

/// Why an invocation failed as a whole (Lambda records it; the schedule comes again in an hour).
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("not an SQS batch or a scheduled event: {0}")]
    Unrecognised(String),
    #[error("retention sweep: {0}")]
    Sweep(#[from] hubrelay_core::store::StoreError),
}

/// How long a disabled tenant's message waits before it is looked at again (SQS's longest delay).
const DISABLED_TENANT_DELAY: time::Duration = time::Duration::seconds(crate::sqs::MAX_DELAY_SECONDS as i64);

/// The code of the dead-letter reason for a tenant's message that lost its tenant.
pub const TENANT_MISSING: &str = "tenant_missing";

/// The code of the dead-letter reason for a message of a tenant no longer in the registry.
pub const UNKNOWN_TENANT: &str = "unknown_tenant";

/// What one record of the batch needs sent, if anything.
struct Pending {
    message_id: String,
    send: PreparedMessage,
    event_id: Option<String>,
}

impl SqsWorker {
    pub fn new(worker: RetryWorker, queue: SqsRetryQueue) -> Self {
        SqsWorker { worker, queue, tenants: None, emf: None, events: None, retention: None }
    }

    /// Drop a record whose event is delivered or superseded already (by its record in `table`): SQS delivers at
    /// least once, and an import resumed after a crash sends its last chunk again.
    pub fn with_settled_check(mut self, table: crate::dynamodb::DynamoIdempotencyStore) -> Self {
        self.events = Some(table);
        self
    }

    /// Run `sweep` when EventBridge's schedule invokes the function (`None`: no sweep; the event is acknowledged).
    pub fn with_retention_sweep(mut self, sweep: Option<RetentionSweep>) -> Self {
        self.retention = sweep;
        self
    }

    /// One invocation: a batch from the retry queue (`Records`), answered with its failures, or the hourly
    /// `Scheduled Event`, which runs the retention sweep until `deadline`.
    pub async fn handle_invocation(
        &self,
        payload: serde_json::Value,
        now: OffsetDateTime,
        deadline: std::time::Instant,
    ) -> Result<serde_json::Value, InvocationError> {
        let unrecognised = |e: String| InvocationError::Unrecognised(e);
        if payload.get("Records").is_some() {
            let event: SqsEvent = serde_json::from_value(payload).map_err(|e| unrecognised(e.to_string()))?;
            let response = self.handle(event, now).await;
            return serde_json::to_value(response).map_err(|e| unrecognised(e.to_string()));
        }
        if payload.get("detail-type").and_then(|v| v.as_str()) != Some("Scheduled Event") {
            return Err(unrecognised("no `Records` and no `detail-type: Scheduled Event`".into()));
        }
        let Some(sweep) = &self.retention else {
            return Ok(serde_json::json!({"retentionSweep": null}));
        };
        let report = sweep.run(now, deadline).await?;
        tracing::info!(
            scanned = report.scanned,
            scrubbed = report.scrubbed,
            finished = report.finished,
            "retention sweep"
        );
        Ok(serde_json::json!({ "retentionSweep": report.to_json() }))
    }

    /// Write the metrics counted while handling a batch (the workers', and parks of unknown tenants) after it.
    pub fn with_emf(mut self, emf: Arc<crate::emf::Emf>) -> Self {
        self.emf = Some(emf);
        self
    }

    /// Deliver each tenant's messages with that tenant's worker.
    pub fn with_tenants(mut self, tenants: Arc<dyn Tenants<TenantWorker>>) -> Self {
        self.tenants = Some(tenants);
        self
    }

    pub fn worker(&self) -> &RetryWorker {
        &self.worker
    }

    pub fn queue(&self) -> &SqsRetryQueue {
        &self.queue
    }

    /// Handle one SQS event. Never fails as a whole: failures are per record, by `messageId`.
    pub async fn handle(&self, event: SqsEvent, now: OffsetDateTime) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        let mut pending: Vec<Pending> = Vec::new();
        let mut counts = Counts::default();
        // The key each opened message was sealed with, by event id: its successor is sealed under that key only.
        let mut keys: HashMap<String, String> = HashMap::new();
        // (messageId, message) of every readable record, in batch order.
        let mut readable: Vec<(String, RetryMessage)> = Vec::new();

        for record in event.records {
            let message_id = record.message_id.unwrap_or_default();
            let body = record.body.unwrap_or_default();
            match read(&body) {
                Ok(message) => readable.push((message_id, message)),
                // An unreadable body is a deterministic failure: retrying it can only fail again. Reporting it
                // as a batch item failure would let SQS move it to the DLQ after maxReceiveCount (5 receives,
                // ~30 min at a 360 s visibility timeout) but with no reason attached. So it goes to the DLQ at
                // once, byte for byte, with `error_code = unreadable_message`; only if that send fails is it
                // reported, and SQS's redrive policy is the backstop.
                Err(reason) => {
                    tracing::error!(message_id, code = %reason.code, error = %reason.message, "unreadable retry message");
                    match PreparedMessage::unreadable(&body, &reason) {
                        Ok(send) => pending.push(Pending { message_id, send, event_id: None }),
                        Err(e) => {
                            tracing::error!(message_id, error = %e, "cannot dead-letter the unreadable message");
                            response.add_failure(message_id);
                        }
                    }
                }
            }
        }

        let count = readable.len();
        // A tenant's messages go to its worker; the default tenant's (no tenant) to this one.
        let mut groups: BTreeMap<Option<TenantId>, Vec<(String, RetryMessage)>> = BTreeMap::new();
        for (message_id, message) in readable {
            groups.entry(message.tenant.clone()).or_default().push((message_id, message));
        }
        for (tenant, group) in groups {
            let Some(tenant) = tenant else {
                let group = self.opened(group, &mut keys, &mut response, &mut counts).await;
                let group = self.unsettled(group, None, &mut response, &mut counts).await;
                self.process(&self.worker, group, now, &keys, &mut pending, &mut response, &mut counts).await;
                continue;
            };
            let resolved = match &self.tenants {
                Some(tenants) => tenants.resolve(&tenant).await,
                None => Resolved::Unknown,
            };
            match resolved {
                Resolved::Ready(TenantWorker { worker, connected, updated_at }) => {
                    let group = self.opened(group, &mut keys, &mut response, &mut counts).await;
                    let mut group = self.unsettled(group, Some(&tenant), &mut response, &mut counts).await;
                    if connected {
                        hasten_reconnected(&mut group, updated_at, now);
                    }
                    self.process(&worker, group, now, &keys, &mut pending, &mut response, &mut counts).await
                }
                // Waits, unchanged (no attempt counted), until the tenant is enabled or removed.
                Resolved::Disabled => {
                    for (message_id, mut message) in group {
                        counts.not_yet_due += 1;
                        message.not_before = message.not_before.max(now + DISABLED_TENANT_DELAY);
                        // Passed on sealed, as it came: its key must outlive it, however long the tenant waits.
                        let alive = match self.queue.sealer() {
                            Some(sealer) => sealer.keep_alive(&message).await,
                            None => Ok(true),
                        };
                        let send = match alive {
                            Ok(true) => self.successor(&message, now, None, &keys).await,
                            Ok(false) => Ok(None),
                            Err(e) => Err(e),
                        };
                        push(&mut pending, &mut response, &mut counts, message_id, send, &message);
                    }
                }
                // Parked with its history: a redrive delivers it once the tenant is back.
                Resolved::Unknown => {
                    for (message_id, message) in group {
                        counts.dead_letter += 1;
                        let reason = DeadLetterReason {
                            code: UNKNOWN_TENANT.into(),
                            message: format!("tenant {tenant} is not in the registry (removed, or not added here)"),
                        };
                        tracing::error!(event_id = %message.event_id, tenant = %tenant, "message of an unknown tenant dead-lettered");
                        if let Some(emf) = &self.emf {
                            emf.metrics().for_tenant(tenant.as_str()).event(message.function, EventOutcome::Parked);
                        }
                        let send = self.successor(&message, now, Some(&reason), &keys).await;
                        push(&mut pending, &mut response, &mut counts, message_id, send, &message);
                    }
                }
                // SQS hands them over again after the visibility timeout.
                Resolved::Unavailable => {
                    for (message_id, _) in group {
                        response.add_failure(message_id);
                    }
                }
            }
        }

        let sends: Vec<PreparedMessage> = pending.iter().map(|p| p.send.clone()).collect();
        let results = self.queue.send_many(&sends).await;
        for (p, result) in pending.into_iter().zip(results) {
            if let Err(e) = result {
                tracing::error!(
                    message_id = %p.message_id,
                    event_id = p.event_id.as_deref().unwrap_or(""),
                    error = %e,
                    "re-send failed: the record stays on the queue"
                );
                response.add_failure(p.message_id);
            }
        }
        tracing::info!(
            records = count,
            delivered = counts.delivered,
            superseded = counts.superseded,
            not_yet_due = counts.not_yet_due,
            retry = counts.retry,
            dead_letter = counts.dead_letter,
            erased = counts.erased,
            settled_copies = counts.settled_copies,
            failures = response.batch_item_failures.len(),
            "retry batch handled"
        );
        if let Some(emf) = &self.emf {
            emf.flush();
        }
        response
    }

    /// The records opened with their people's keys, to be delivered. A record whose key is gone (its person was
    /// erased) is dropped unread: SQS deletes it. One whose key cannot be read now comes back later. (Records
    /// that are only passed on — a disabled or unknown tenant's — stay sealed as they came.)
    async fn opened(
        &self,
        group: Vec<(String, RetryMessage)>,
        keys: &mut HashMap<String, String>,
        response: &mut SqsBatchResponse,
        counts: &mut Counts,
    ) -> Vec<(String, RetryMessage)> {
        let Some(sealer) = self.queue.sealer() else { return group };
        let mut opened = Vec::with_capacity(group.len());
        for (message_id, message) in group {
            if let Some((_, key_id, _)) = hubrelay_core::message_seal::sealed_parts(&message) {
                keys.insert(message.event_id.clone(), key_id);
            }
            match sealer.open(&message).await {
                Ok(Opened::Plain(m) | Opened::Opened(m)) => opened.push((message_id, m)),
                Ok(Opened::Erased) => {
                    counts.erased += 1;
                    tracing::info!(event_id = %message.event_id, "message of an erased person dropped");
                }
                Err(e) => {
                    tracing::error!(message_id, error = %e, "cannot open the message: it stays on the queue");
                    response.add_failure(message_id);
                }
            }
        }
        opened
    }

    /// The records whose events are not settled yet; the copies of settled ones are dropped (SQS deletes them).
    /// When the table cannot answer, every record comes back later.
    async fn unsettled(
        &self,
        group: Vec<(String, RetryMessage)>,
        tenant: Option<&TenantId>,
        response: &mut SqsBatchResponse,
        counts: &mut Counts,
    ) -> Vec<(String, RetryMessage)> {
        let Some(table) = &self.events else { return group };
        let table = match tenant {
            Some(t) => table.for_tenant(t),
            None => table.clone(),
        };
        let ids: Vec<String> = group.iter().map(|(_, m)| m.event_id.clone()).collect();
        match table.settled_events(&ids).await {
            Ok(settled) => group
                .into_iter()
                .filter(|(_, m)| {
                    let copy = settled.contains(&m.event_id);
                    if copy {
                        counts.settled_copies += 1;
                        tracing::info!(event_id = %m.event_id, "a copy of a settled event dropped");
                    }
                    !copy
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, records = group.len(), "cannot tell settled events: the records come back");
                for (message_id, _) in group {
                    response.add_failure(message_id);
                }
                Vec::new()
            }
        }
    }

    /// What goes back on a queue for `message`: sealed again, to the retry queue or (with a reason) the DLQ. A
    /// message that came sealed is sealed under the same key only: `None` when its person was erased meanwhile.
    async fn successor(
        &self,
        message: &RetryMessage,
        now: OffsetDateTime,
        dead_letter: Option<&DeadLetterReason>,
        keys: &HashMap<String, String>,
    ) -> Result<Option<PreparedMessage>, hubrelay_core::store::StoreError> {
        let key_id =
            keys.get(&message.event_id).filter(|_| hubrelay_core::message_seal::sealed_parts(message).is_none());
        let sealed = match (self.queue.sealer(), key_id) {
            (Some(sealer), Some(key_id)) => match sealer.reseal(&self.queue.stamped(message), key_id).await? {
                Some(sealed) => sealed,
                None => return Ok(None),
            },
            _ => self.queue.outgoing(message).await?,
        };
        match dead_letter {
            Some(reason) => PreparedMessage::dead_letter(&sealed, reason).map(Some),
            None => PreparedMessage::retry(&sealed, now).map(Some),
        }
    }

    /// One worker's pass over its records; what each needs sent goes to `pending`.
    #[allow(clippy::too_many_arguments)]
    async fn process(
        &self,
        worker: &RetryWorker,
        readable: Vec<(String, RetryMessage)>,
        now: OffsetDateTime,
        keys: &HashMap<String, String>,
        pending: &mut Vec<Pending>,
        response: &mut SqsBatchResponse,
        counts: &mut Counts,
    ) {
        let messages: Vec<RetryMessage> = readable.iter().map(|(_, m)| m.clone()).collect();
        let count = messages.len();
        match worker.process(messages, now).await {
            Err(e) => {
                // Nothing is known to be durable: every readable record comes back (after the visibility
                // timeout). What was already written to HubSpot is an upsert of the same data: harmless to repeat.
                tracing::error!(error = %e, records = count, "store error: the whole batch will be retried");
                for (message_id, _) in readable {
                    response.add_failure(message_id);
                }
            }
            Ok(outcomes) => {
                // Outcomes carry event ids, not positions: match them to records by event id, in batch order.
                // Two records with one event id (a redriven copy next to the original) may swap their
                // dispositions; each successor is built from the disposition, so no event is lost either way.
                let mut by_event: HashMap<String, VecDeque<usize>> = HashMap::new();
                for (i, (_, m)) in readable.iter().enumerate() {
                    by_event.entry(m.event_id.clone()).or_default().push_back(i);
                }
                let mut matched = vec![false; readable.len()];
                for outcome in outcomes {
                    let Some(i) = by_event.get_mut(&outcome.event_id).and_then(VecDeque::pop_front) else {
                        tracing::error!(event_id = %outcome.event_id, "outcome for an event not in the batch");
                        continue;
                    };
                    matched[i] = true;
                    let (message_id, original) = &readable[i];
                    let send = match outcome.disposition {
                        Disposition::Delivered { .. } => {
                            counts.delivered += 1;
                            continue;
                        }
                        Disposition::Superseded => {
                            counts.superseded += 1;
                            continue;
                        }
                        // The delay chain: back on the retry queue unchanged (same not_before), for at most
                        // 900 s; a fresh message, so a fresh retention clock and receive count.
                        Disposition::NotYetDue => {
                            counts.not_yet_due += 1;
                            self.successor(original, now, None, keys).await
                        }
                        Disposition::Retry(m) => {
                            counts.retry += 1;
                            self.successor(&m, now, None, keys).await
                        }
                        Disposition::DeadLetter(m, reason) => {
                            counts.dead_letter += 1;
                            self.successor(&m, now, Some(&reason), keys).await
                        }
                    };
                    push(pending, response, counts, message_id.clone(), send, original);
                }
                for (i, (message_id, m)) in readable.iter().enumerate() {
                    if !matched[i] {
                        tracing::error!(event_id = %m.event_id, "no outcome for a record: it will be retried");
                        response.add_failure(message_id.clone());
                    }
                }
            }
        }
    }
}

/// A connected tenant's messages that waited only for its portal to be connected again (their last attempt
/// failed `needs_reauth`, before the tenant's last change — the reconnect) are due now, not at their next
/// scheduled attempt: each passes the worker at least every 15 minutes (SQS's longest delay), so a reconnect
/// delivers them within that, whatever the schedule's gap. A failure after the tenant's last change waits its turn.
fn hasten_reconnected(group: &mut [(String, RetryMessage)], tenant_changed_ms: i64, now: OffsetDateTime) {
    for (_, message) in group.iter_mut() {
        let Some(last) = message.attempts.last() else { continue };
        let failed_ms = i64::try_from(last.at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        let waited = last.error_code.as_deref() == Some(NEEDS_REAUTH) && failed_ms < tenant_changed_ms;
        if waited && message.not_before > now {
            message.not_before = now;
        }
    }
}

/// The failure of a call held back because the portal's refresh token was refused.
const NEEDS_REAUTH: &str = "needs_reauth";

/// `send` for the record `message_id`; nothing when its person was erased meanwhile (`None`: SQS deletes the
/// record); or, when it could not be built, the record back to SQS.
fn push(
    pending: &mut Vec<Pending>,
    response: &mut SqsBatchResponse,
    counts: &mut Counts,
    message_id: String,
    send: Result<Option<PreparedMessage>, hubrelay_core::store::StoreError>,
    original: &RetryMessage,
) {
    match send {
        Ok(Some(send)) => pending.push(Pending { message_id, send, event_id: Some(original.event_id.clone()) }),
        Ok(None) => {
            counts.erased += 1;
            tracing::info!(event_id = %original.event_id, "its person was erased meanwhile: nothing goes back");
        }
        Err(e) => {
            tracing::error!(event_id = %original.event_id, error = %e, "cannot build the successor message");
            response.add_failure(message_id);
        }
    }
}

#[derive(Default)]
struct Counts {
    delivered: usize,
    superseded: usize,
    not_yet_due: usize,
    retry: usize,
    dead_letter: usize,
    /// Records of erased people, dropped.
    erased: usize,
    /// Copies of events already delivered or superseded, dropped.
    settled_copies: usize,
}

/// A record's body as a [`RetryMessage`] of a format version this worker knows.
fn read(body: &str) -> Result<RetryMessage, DeadLetterReason> {
    let message: RetryMessage = serde_json::from_str(body).map_err(|e| DeadLetterReason {
        code: UNREADABLE_MESSAGE.into(),
        message: format!("not a retry message: {e}"),
    })?;
    if message.version > RetryMessage::VERSION {
        // A newer worker wrote it (a rollback): reading it with the old format could drop fields.
        return Err(DeadLetterReason {
            code: UNREADABLE_MESSAGE.into(),
            message: format!(
                "message format version {} is newer than this worker's ({})",
                message.version,
                RetryMessage::VERSION
            ),
        });
    }
    if message.version >= RetryMessage::VERSION && message.tenant.is_none() {
        // Only a tenant's messages are written in this format: one without its tenant was rewritten by code
        // from before tenants (a redrive with an older `hubrelay`). Delivering it would send a tenant's event to
        // the default portal; parked, its body still names the event for an operator.
        return Err(DeadLetterReason {
            code: TENANT_MISSING.into(),
            message: "a tenant's message (format version 2) lost its tenant (rewritten by an older hubrelay?)".into(),
        });
    }
    Ok(message)
}

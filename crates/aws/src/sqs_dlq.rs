//! [`DeadLetters`] on SQS: the dead-letter queue of the stack, the retry queue redrives go to, and the event
//! log (the idempotency table) that tells which events were delivered meanwhile.
//!
//! SQS has no "peek": listing receives every message with a short visibility timeout and then releases them
//! (`ChangeMessageVisibility` 0). A redrive or purge first receives everything (keeping it invisible while it
//! works), then handles the selected messages one by one — check the event log, `SendMessage` to the retry
//! queue, `DeleteMessage` from the DLQ, in that order — and finally releases the rest. For thousands of
//! messages SQS's own `StartMessageMoveTask` is the bulk alternative (see `infra/runbook.md`).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName};
use hubrelay_core::tenant::TenantId;
use time::OffsetDateTime;

use crate::sqs::SqsRetryQueue;
use crate::sqs_seal::{MessageSealer, Opened};
use hubrelay_core::dlq::{DeadLetter, DeadLetters, Held, SharedEventLog, TakeError};
use hubrelay_core::domain::RetryMessage;
use hubrelay_core::store::{EventLog, RetryQueue, StoreError};

/// Visibility timeout of messages only looked at (`list`, `show`); they are released right after anyway.
const LOOK_VISIBILITY_SECONDS: i32 = 30;
/// Visibility timeout while a redrive or purge works through the queue.
const WORK_VISIBILITY_SECONDS: i32 = 900;

#[derive(Clone)]
pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    dlq_url: String,
    retry_queue_url: Option<String>,
    events: Option<SharedEventLog>,
    receive_wait_seconds: i32,
    /// Whose letters: a tenant's, or (`None`) the default tenant's.
    tenant: Option<TenantId>,
    /// Opens sealed letters (and seals redriven ones); letters of erased people are deleted on sight.
    sealer: Option<MessageSealer>,
    /// The key each opened letter was sealed with, by event id: a redrive seals it under that key only.
    opened_keys: std::sync::Arc<std::sync::Mutex<HashMap<String, String>>>,
}

/// One message received from the DLQ.
struct Received {
    message_id: String,
    receipt: String,
    letter: Result<DeadLetter, String>,
}

impl Received {
    fn event_id(&self) -> Option<&str> {
        self.letter.as_ref().ok().map(|l| l.event_id())
    }
}

fn sqs_err<E>(what: &str, e: &aws_sdk_sqs::error::SdkError<E>) -> StoreError
where
    E: std::error::Error + 'static,
{
    StoreError::Unavailable(format!("SQS {what}: {}", DisplayErrorContext(e)))
}

impl std::fmt::Debug for SqsDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsDeadLetters")
            .field("dlq_url", &self.dlq_url)
            .field("retry_queue_url", &self.retry_queue_url)
            .field("event_log", &self.events.is_some())
            .finish_non_exhaustive()
    }
}

impl SqsDeadLetters {
    /// Works on the dead-letter queue at `dlq_url`; listing, showing and purging need nothing else.
    pub fn new(client: aws_sdk_sqs::Client, dlq_url: impl Into<String>) -> Self {
        SqsDeadLetters {
            client,
            dlq_url: dlq_url.into(),
            retry_queue_url: None,
            events: None,
            receive_wait_seconds: 1,
            tenant: None,
            sealer: None,
            opened_keys: Default::default(),
        }
    }

    /// Open sealed letters with their people's keys, and seal redriven ones again. A letter whose key is gone
    /// (its person was erased) can never be read or delivered: it is deleted when met.
    pub fn with_sealer(mut self, sealer: MessageSealer) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// Only `tenant`'s dead letters (the queue is the stack's): listed, shown, purged and redriven.
    pub fn for_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// This view's letters: its tenant's, or (the default view) those of no tenant and the unreadable ones.
    fn in_scope(&self, r: &Received) -> bool {
        match &r.letter {
            Ok(letter) => letter.message.tenant == self.tenant,
            Err(_) => self.tenant.is_none(),
        }
    }

    /// The retry queue redriven messages go to (needed by `redrive`).
    pub fn with_retry_queue(mut self, url: impl Into<String>) -> Self {
        self.retry_queue_url = Some(url.into());
        self
    }

    /// The event log that says which events are delivered (needed by `redrive`).
    pub fn with_event_log(mut self, events: SharedEventLog) -> Self {
        self.events = Some(events);
        self
    }

    /// Long-polling wait of each ReceiveMessage (default 1 s; 0 = short polling, which samples only some
    /// SQS servers and may miss messages of a small queue).
    pub fn with_receive_wait(mut self, seconds: i32) -> Self {
        self.receive_wait_seconds = seconds.clamp(0, 20);
        self
    }

    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    /// Receives every message (deduplicated by MessageId), or stops after the batch holding `until`.
    /// Everything received stays invisible for `visibility` seconds unless released.
    async fn scan(&self, visibility: i32, until: Option<&str>) -> Result<Vec<Received>, StoreError> {
        let mut received: Vec<Received> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        loop {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .visibility_timeout(visibility)
                .wait_time_seconds(self.receive_wait_seconds)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await;
            let out = match out {
                Ok(out) => out,
                Err(e) => {
                    self.release_all(&received).await;
                    return Err(sqs_err("ReceiveMessage", &e));
                }
            };
            if out.messages().is_empty() {
                break;
            }
            let mut found = false;
            for m in out.messages() {
                let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else { continue };
                let letter = decode(m);
                found |= until.is_some_and(|u| letter.as_ref().is_ok_and(|l| l.event_id() == u));
                let r = Received { message_id: id.to_string(), receipt: receipt.to_string(), letter };
                match index.get(id) {
                    // Seen before (its visibility ran out mid-scan): keep the newest receipt handle.
                    Some(&i) => received[i] = r,
                    None => {
                        index.insert(id.to_string(), received.len());
                        received.push(r);
                    }
                }
            }
            if found {
                break;
            }
        }
        let (received, others): (Vec<Received>, Vec<Received>) = received.into_iter().partition(|r| self.in_scope(r));
        self.release_all(&others).await;
        let received = self.opened(received).await;
        for r in &received {
            if let Err(e) = &r.letter {
                tracing::warn!(message_id = %r.message_id, error = %e, "unreadable message in the dead-letter queue");
            }
        }
        Ok(received)
    }

    /// The letters opened with their people's keys; those of erased people deleted and left out.
    async fn opened(&self, received: Vec<Received>) -> Vec<Received> {
        let Some(sealer) = &self.sealer else { return received };
        let mut kept = Vec::with_capacity(received.len());
        for mut r in received {
            let Ok(letter) = &mut r.letter else {
                kept.push(r);
                continue;
            };
            if let Some((_, key_id, _)) = hubrelay_core::message_seal::sealed_parts(&letter.message) {
                let mut keys = self.opened_keys.lock().unwrap_or_else(|e| e.into_inner());
                keys.insert(letter.event_id().to_string(), key_id);
            }
            match sealer.open(&letter.message).await {
                Ok(Opened::Plain(m)) | Ok(Opened::Opened(m)) => {
                    letter.message = m;
                    kept.push(r);
                }
                Ok(Opened::Erased) => {
                    let event_id = letter.event_id().to_string();
                    match self.delete(&r.receipt).await {
                        Ok(()) => tracing::info!(event_id, "dead letter of an erased person deleted"),
                        Err(e) => tracing::warn!(event_id, error = %e, "could not delete an erased person's letter"),
                    }
                }
                Err(e) => {
                    // Shown as unreadable for now; it opens once the table answers again.
                    r.letter = Err(format!("its key could not be read: {e}"));
                    kept.push(r);
                }
            }
        }
        kept
    }

    /// Makes messages visible again at once (best effort: they reappear after their timeout anyway).
    async fn release_all(&self, messages: &[Received]) {
        let receipts: Vec<&str> = messages.iter().map(|r| r.receipt.as_str()).collect();
        self.release_receipts(&receipts).await;
    }

    async fn release_receipts(&self, receipts: &[&str]) {
        for chunk in receipts.chunks(10) {
            let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*r)
                        .visibility_timeout(0)
                        .build()
                        .ok()
                })
                .collect();
            let result = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.dlq_url)
                .set_entries(Some(entries))
                .send()
                .await;
            match result {
                Ok(out) if !out.failed().is_empty() => {
                    tracing::warn!(
                        failed = out.failed().len(),
                        "could not release some dead letters; they reappear after their visibility timeout"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %DisplayErrorContext(&e), "could not release dead letters; they reappear after their visibility timeout")
                }
            }
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), StoreError> {
        self.client
            .delete_message()
            .queue_url(&self.dlq_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| sqs_err("DeleteMessage", &e))?;
        Ok(())
    }
}

fn decode(m: &aws_sdk_sqs::types::Message) -> Result<DeadLetter, String> {
    let body = m.body().ok_or("message without body")?;
    let message: RetryMessage = serde_json::from_str(body).map_err(|e| format!("not a hubrelay retry message: {e}"))?;
    let dead_lettered_at = m
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok());
    Ok(DeadLetter { message, dead_lettered_at })
}

fn sort_oldest_first(letters: &mut [DeadLetter]) {
    letters.sort_by(|a, b| {
        a.dead_lettered_at
            .cmp(&b.dead_lettered_at)
            .then(a.received_at().cmp(&b.received_at()))
            .then_with(|| a.event_id().cmp(b.event_id()))
    });
}

#[async_trait]
impl DeadLetters for SqsDeadLetters {
    fn describe(&self) -> String {
        format!("SQS {}", self.dlq_url)
    }

    async fn list(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let received = self.scan(LOOK_VISIBILITY_SECONDS, None).await?;
        self.release_all(&received).await;
        let mut seen = HashSet::new();
        let mut letters: Vec<DeadLetter> = received
            .into_iter()
            .filter_map(|r| r.letter.ok())
            .filter(|l| seen.insert(l.event_id().to_string()))
            .collect();
        sort_oldest_first(&mut letters);
        Ok(letters)
    }

    async fn get(&self, event_id: &str) -> Result<Option<DeadLetter>, StoreError> {
        let received = self.scan(LOOK_VISIBILITY_SECONDS, Some(event_id)).await?;
        self.release_all(&received).await;
        Ok(received.into_iter().filter_map(|r| r.letter.ok()).find(|l| l.event_id() == event_id))
    }

    async fn purge(&self, event_id: &str) -> Result<usize, StoreError> {
        let received = self.scan(WORK_VISIBILITY_SECONDS, Some(event_id)).await?;
        let (matching, others): (Vec<&Received>, Vec<&Received>) =
            received.iter().partition(|r| r.event_id() == Some(event_id));
        let mut removed = 0;
        let mut error = None;
        for r in &matching {
            match self.delete(&r.receipt).await {
                Ok(()) => removed += 1,
                Err(e) => error = Some(e),
            }
        }
        self.release_receipts(&others.iter().map(|r| r.receipt.as_str()).collect::<Vec<_>>()).await;
        match error {
            Some(e) if removed == 0 => Err(e),
            _ => Ok(removed),
        }
    }

    fn event_log(&self) -> Result<&dyn EventLog, StoreError> {
        self.events.as_deref().ok_or_else(|| {
            StoreError::Unavailable(
                "a redrive needs the event log (the idempotency table) to skip delivered events".into(),
            )
        })
    }

    fn check_redrive(&self, dry_run: bool) -> Result<(), StoreError> {
        match (&self.retry_queue_url, dry_run) {
            (None, false) => Err(StoreError::Unavailable("a redrive needs the retry queue URL".into())),
            _ => Ok(()),
        }
    }

    /// Receives everything, invisible while the redrive works.
    async fn hold(&self) -> Result<Vec<Held>, StoreError> {
        let received = self.scan(WORK_VISIBILITY_SECONDS, None).await?;
        Ok(received.into_iter().map(|r| Held { handle: r.receipt, letter: r.letter }).collect())
    }

    /// `SendMessage` to the retry queue, then `DeleteMessage` from the DLQ, in that order.
    async fn take(&self, held: &Held, requeue: Option<&RetryMessage>) -> Result<bool, TakeError> {
        let Some(message) = requeue else {
            self.delete(&held.handle).await.map_err(TakeError::NotRequeued)?;
            return Ok(true);
        };
        let url = self.retry_queue_url.as_ref().ok_or_else(|| {
            TakeError::NotRequeued(StoreError::Unavailable("a redrive needs the retry queue URL".into()))
        })?;
        let mut retry = SqsRetryQueue::new(self.client.clone(), url.clone(), self.dlq_url.clone());
        let key_id = self.opened_keys.lock().unwrap_or_else(|e| e.into_inner()).get(&message.event_id).cloned();
        let message = match (&self.sealer, key_id) {
            // Opened from a sealed letter: sealed again under its own key only. Gone (its person was erased since
            // it was opened): nothing goes back, and the letter goes.
            (Some(sealer), Some(key_id)) => {
                match sealer.reseal(message, &key_id).await.map_err(TakeError::NotRequeued)? {
                    Some(sealed) => sealed,
                    None => {
                        self.delete(&held.handle).await.map_err(TakeError::NotRemoved)?;
                        return Ok(true);
                    }
                }
            }
            (Some(sealer), None) => {
                retry = retry.with_sealer(sealer.clone());
                message.clone()
            }
            (None, _) => message.clone(),
        };
        retry.enqueue(&message).await.map_err(TakeError::NotRequeued)?;
        self.delete(&held.handle).await.map_err(TakeError::NotRemoved)?;
        Ok(true)
    }

    async fn release(&self, held: &[&Held]) {
        let receipts: Vec<&str> = held.iter().map(|h| h.handle.as_str()).collect();
        self.release_receipts(&receipts).await;
    }
}

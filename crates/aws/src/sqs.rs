//! [`RetryQueue`] on SQS: the retry queue (per-message `DelaySeconds`) and its dead-letter queue.
//!
//! The body is the JSON of the [`RetryMessage`]; message attributes (`event_id`, `function`, `attempt`,
//! `tenant` for a tenant's event, and `error_code` on the DLQ) let an operator filter without parsing bodies. Delays longer than SQS's 15 minutes
//! are chained: the message carries `not_before` and the worker re-sends it until that time has come.
//!
//! With a [`MessageSealer`] (every Lambda of a stack has one) each message's event is sealed with its person's key
//! before it is sent, so an erasure that destroys the key leaves no readable copy on either queue.

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use time::OffsetDateTime;

use hubrelay_core::domain::{DeadLetterReason, RetryMessage};
use hubrelay_core::store::{RetryQueue, StoreError};
use hubrelay_core::tenant::TenantId;

use crate::sqs_seal::MessageSealer;

/// SQS's largest per-message delay (15 minutes).
pub const MAX_DELAY_SECONDS: i32 = 900;

/// The largest message we send: 256 KiB, body and attributes together.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// SQS's largest batch (`SendMessageBatch` entries).
pub const MAX_BATCH_ENTRIES: usize = 10;

#[derive(Debug, Clone)]
pub struct SqsRetryQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: String,
    /// The tenant whose events this queue takes (they share the stack's queues): stamped on each message.
    tenant: Option<TenantId>,
    /// Seals each message's event with its person's key (`None`: sent as they are).
    sealer: Option<MessageSealer>,
}

/// Which of the two queues a [`PreparedMessage`] goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Retry,
    DeadLetter,
}

/// A message ready to send: destination, body, `DelaySeconds` and message attributes, size-checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedMessage {
    pub destination: Destination,
    pub body: String,
    pub delay_seconds: i32,
    /// (name, data type, value); never an empty value (SQS rejects those).
    pub attributes: Vec<(String, &'static str, String)>,
}

impl PreparedMessage {
    /// For the retry queue, delayed until `message.not_before` as seen at `now` (capped at 900 s: the worker
    /// re-sends a message that arrives before its time, with the same `not_before`: the delay chain).
    pub fn retry(message: &RetryMessage, now: OffsetDateTime) -> Result<PreparedMessage, StoreError> {
        PreparedMessage::build(
            Destination::Retry,
            body_json(message)?,
            delay_seconds(message.not_before, now),
            message,
            &[],
        )
    }

    /// For the dead-letter queue, with `dead_letter_reason` in the body and `error_code` as an attribute.
    pub fn dead_letter(message: &RetryMessage, reason: &DeadLetterReason) -> Result<PreparedMessage, StoreError> {
        let mut message = message.clone();
        message.dead_letter_reason = Some(reason.clone());
        let body = body_json(&message)?;
        PreparedMessage::build(Destination::DeadLetter, body, 0, &message, &[("error_code", reason.code.clone())])
    }

    /// A body the worker could not read as a [`RetryMessage`], for the dead-letter queue **byte for byte**
    /// (so nothing is lost or reinterpreted), the reason in the attributes `error_code` and `error`
    /// (truncated), and `event_id` when the body is JSON with one.
    pub fn unreadable(body: &str, reason: &DeadLetterReason) -> Result<PreparedMessage, StoreError> {
        let event_id = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("event_id").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let error: String = reason.message.chars().take(1024).collect();
        let mut attributes = vec![
            ("event_id".to_owned(), "String", event_id),
            ("error_code".to_owned(), "String", reason.code.clone()),
            ("error".to_owned(), "String", error),
        ];
        attributes.retain(|(_, _, value)| !value.is_empty());
        let prepared = PreparedMessage {
            destination: Destination::DeadLetter,
            body: body.to_owned(),
            delay_seconds: 0,
            attributes,
        };
        prepared.check_size("an unreadable message")?;
        Ok(prepared)
    }

    fn build(
        destination: Destination,
        body: String,
        delay_seconds: i32,
        message: &RetryMessage,
        extra: &[(&str, String)],
    ) -> Result<PreparedMessage, StoreError> {
        let mut attributes = vec![
            ("event_id".to_owned(), "String", message.event_id.clone()),
            ("function".to_owned(), "String", message.function.as_str().to_owned()),
            ("attempt".to_owned(), "Number", message.attempts.len().to_string()),
            ("tenant".to_owned(), "String", message.tenant.as_ref().map(ToString::to_string).unwrap_or_default()),
        ];
        attributes.extend(extra.iter().map(|(name, value)| ((*name).to_owned(), "String", value.clone())));
        // SQS rejects empty attribute values; an empty one carries nothing anyway.
        attributes.retain(|(_, _, value)| !value.is_empty());
        let prepared = PreparedMessage { destination, body, delay_seconds, attributes };
        prepared.check_size(&format!("event {}", message.event_id))?;
        Ok(prepared)
    }

    /// Body plus attribute names, types and values: what SQS counts against its size limit.
    pub fn size(&self) -> usize {
        self.body.len()
            + self.attributes.iter().map(|(name, ty, value)| name.len() + ty.len() + value.len()).sum::<usize>()
    }

    fn check_size(&self, what: &str) -> Result<(), StoreError> {
        let size = self.size();
        if size > MAX_MESSAGE_BYTES {
            return Err(StoreError::Unavailable(format!(
                "message too large for SQS: {what} is {size} bytes, the limit is {MAX_MESSAGE_BYTES}"
            )));
        }
        Ok(())
    }

    fn attribute_values(&self) -> Result<Vec<(String, MessageAttributeValue)>, StoreError> {
        self.attributes
            .iter()
            .map(|(name, ty, value)| {
                MessageAttributeValue::builder()
                    .data_type(*ty)
                    .string_value(value)
                    .build()
                    .map(|v| (name.clone(), v))
                    .map_err(|e| StoreError::Unavailable(format!("SQS message attribute {name}: {e}")))
            })
            .collect()
    }
}

impl SqsRetryQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>, dlq_url: impl Into<String>) -> Self {
        SqsRetryQueue { client, queue_url: queue_url.into(), dlq_url: dlq_url.into(), tenant: None, sealer: None }
    }

    /// Seal every message's event with its person's key before it is sent.
    pub fn with_sealer(mut self, sealer: MessageSealer) -> Self {
        self.sealer = Some(sealer);
        self
    }

    pub fn sealer(&self) -> Option<&MessageSealer> {
        self.sealer.as_ref()
    }

    /// `message` as it goes on a queue: stamped with the queue's tenant, its event sealed.
    pub async fn outgoing(&self, message: &RetryMessage) -> Result<RetryMessage, StoreError> {
        let stamped = self.stamped(message);
        match &self.sealer {
            Some(sealer) => sealer.seal(&stamped).await,
            None => Ok(stamped),
        }
    }

    /// The same queues taking `tenant`'s events: each message carries the tenant, so the worker delivers it
    /// to that tenant's portal (and a redrive keeps it).
    pub fn for_tenant(&self, tenant: &TenantId) -> Self {
        SqsRetryQueue { tenant: Some(tenant.clone()), ..self.clone() }
    }

    /// `message` stamped with this queue's tenant (when it has one).
    pub fn stamped(&self, message: &RetryMessage) -> RetryMessage {
        match &self.tenant {
            Some(_) => message.clone().for_tenant(self.tenant.clone()),
            None => message.clone(),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    fn url(&self, destination: Destination) -> &str {
        match destination {
            Destination::Retry => &self.queue_url,
            Destination::DeadLetter => &self.dlq_url,
        }
    }

    /// [`RetryQueue::enqueue`] with the delay computed at `now` rather than the wall clock.
    pub async fn enqueue_at(&self, message: &RetryMessage, now: OffsetDateTime) -> Result<(), StoreError> {
        self.send(&PreparedMessage::retry(&self.outgoing(message).await?, now)?).await
    }

    /// Many messages onto the retry queue with `SendMessageBatch` (≤ 10 a request), each stamped with the
    /// queue's tenant (a backfill import). `Err` when any of them was not sent.
    pub async fn enqueue_many(&self, messages: &[RetryMessage], now: OffsetDateTime) -> Result<(), StoreError> {
        let stamped: Vec<RetryMessage> = messages.iter().map(|m| self.stamped(m)).collect();
        let sealed = match &self.sealer {
            Some(sealer) => sealer.seal_many(&stamped).await?,
            None => stamped,
        };
        let prepared = sealed.iter().map(|m| PreparedMessage::retry(m, now)).collect::<Result<Vec<_>, _>>()?;
        for result in self.send_many(&prepared).await {
            result?;
        }
        Ok(())
    }

    /// One `SendMessage` (the inline path: one message, lowest latency).
    pub async fn send(&self, message: &PreparedMessage) -> Result<(), StoreError> {
        let queue = self.url(message.destination);
        let request = self
            .client
            .send_message()
            .queue_url(queue)
            .message_body(&message.body)
            .delay_seconds(message.delay_seconds)
            .set_message_attributes(Some(message.attribute_values()?.into_iter().collect()));
        request
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("SQS SendMessage to {queue}: {}", DisplayErrorContext(&e))))?;
        Ok(())
    }

    /// Send many messages with `SendMessageBatch` (≤ 10 entries and ≤ 256 KiB per request), one result per
    /// message in the same order: a failed entry (or a failed request) fails only its own messages.
    pub async fn send_many(&self, messages: &[PreparedMessage]) -> Vec<Result<(), StoreError>> {
        let mut results: Vec<Option<Result<(), StoreError>>> = (0..messages.len()).map(|_| None).collect();
        for destination in [Destination::Retry, Destination::DeadLetter] {
            let indices: Vec<usize> = (0..messages.len()).filter(|&i| messages[i].destination == destination).collect();
            for chunk in batches(&indices, messages) {
                for (i, result) in self.send_batch(destination, &chunk, messages).await {
                    results[i] = Some(result);
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Unavailable("message was not sent".into()))))
            .collect()
    }

    async fn send_batch(
        &self,
        destination: Destination,
        chunk: &[usize],
        messages: &[PreparedMessage],
    ) -> Vec<(usize, Result<(), StoreError>)> {
        let queue = self.url(destination);
        let mut entries = Vec::with_capacity(chunk.len());
        let mut results = Vec::with_capacity(chunk.len());
        let mut sent = Vec::with_capacity(chunk.len());
        for (n, &i) in chunk.iter().enumerate() {
            let m = &messages[i];
            let entry = m.attribute_values().and_then(|attributes| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{n}"))
                    .message_body(&m.body)
                    .delay_seconds(m.delay_seconds)
                    .set_message_attributes(Some(attributes.into_iter().collect()))
                    .build()
                    .map_err(|e| StoreError::Unavailable(format!("SQS batch entry: {e}")))
            });
            match entry {
                Ok(entry) => {
                    entries.push(entry);
                    sent.push((format!("m{n}"), i));
                }
                Err(e) => results.push((i, Err(e))),
            }
        }
        if entries.is_empty() {
            return results;
        }
        match self.client.send_message_batch().queue_url(queue).set_entries(Some(entries)).send().await {
            Ok(out) => {
                for (id, i) in sent {
                    if out.successful().iter().any(|s| s.id() == id) {
                        results.push((i, Ok(())));
                    } else {
                        let why = out
                            .failed()
                            .iter()
                            .find(|f| f.id() == id)
                            .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or("")))
                            .unwrap_or_else(|| "no result for this entry".into());
                        results
                            .push((i, Err(StoreError::Unavailable(format!("SQS SendMessageBatch to {queue}: {why}")))));
                    }
                }
            }
            Err(e) => {
                let why = format!("SQS SendMessageBatch to {queue}: {}", DisplayErrorContext(&e));
                results.extend(sent.into_iter().map(|(_, i)| (i, Err(StoreError::Unavailable(why.clone())))));
            }
        }
        results
    }
}

/// Split `indices` into `SendMessageBatch` requests: ≤ 10 entries and ≤ 256 KiB in all.
fn batches(indices: &[usize], messages: &[PreparedMessage]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut size = 0;
    for &i in indices {
        let s = messages[i].size();
        match out.last_mut() {
            Some(last) if last.len() < MAX_BATCH_ENTRIES && size + s <= MAX_MESSAGE_BYTES => {
                last.push(i);
                size += s;
            }
            _ => {
                out.push(vec![i]);
                size = s;
            }
        }
    }
    out
}

/// The message body: the JSON of `message`. U+FFFE and U+FFFF are valid in JSON but not in SQS bodies, so they
/// travel escaped (serde_json only ever writes them inside strings, where `\uFFFE` is the same text).
fn body_json(message: &RetryMessage) -> Result<String, StoreError> {
    let json = serde_json::to_string(message)
        .map_err(|e| StoreError::Unavailable(format!("serialising retry message {}: {e}", message.event_id)))?;
    if json.contains(['\u{FFFE}', '\u{FFFF}']) {
        Ok(json.replace('\u{FFFE}', "\\ufffe").replace('\u{FFFF}', "\\uffff"))
    } else {
        Ok(json)
    }
}

/// The SQS DelaySeconds for a message: seconds until not_before (rounded up, so it is never delivered early),
/// clamped to 0..=900 (SQS's limit; longer delays are chained by the worker re-sending with the same not_before).
pub fn delay_seconds(not_before: OffsetDateTime, now: OffsetDateTime) -> i32 {
    let wait = not_before - now;
    if wait <= time::Duration::ZERO {
        return 0;
    }
    let mut secs = wait.whole_seconds();
    if wait.subsec_nanoseconds() > 0 {
        secs += 1;
    }
    secs.min(i64::from(MAX_DELAY_SECONDS)) as i32
}

#[async_trait]
impl RetryQueue for SqsRetryQueue {
    async fn enqueue(&self, message: &RetryMessage) -> Result<(), StoreError> {
        self.enqueue_at(message, OffsetDateTime::now_utc()).await
    }

    async fn dead_letter(&self, message: &RetryMessage, reason: &DeadLetterReason) -> Result<(), StoreError> {
        self.send(&PreparedMessage::dead_letter(&self.outgoing(message).await?, reason)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(destination: Destination, body_len: usize) -> PreparedMessage {
        PreparedMessage { destination, body: "x".repeat(body_len), delay_seconds: 0, attributes: Vec::new() }
    }

    #[test]
    fn batches_hold_at_most_ten_entries_and_256_kib() {
        let small: Vec<PreparedMessage> = (0..23).map(|_| prepared(Destination::Retry, 100)).collect();
        let indices: Vec<usize> = (0..small.len()).collect();
        let sizes: Vec<usize> = batches(&indices, &small).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 3]);

        // 100 KiB each: two fit in 256 KiB, a third does not.
        let big: Vec<PreparedMessage> = (0..5).map(|_| prepared(Destination::Retry, 100 * 1024)).collect();
        let chunks = batches(&[0, 1, 2, 3, 4], &big);
        assert_eq!(chunks, vec![vec![0, 1], vec![2, 3], vec![4]]);
    }

    #[test]
    fn an_unreadable_body_is_kept_verbatim_with_its_reason() {
        let reason = DeadLetterReason { code: "unreadable_message".into(), message: "not a retry message".into() };
        let p = PreparedMessage::unreadable("{\"event_id\":\"evt_1\",\"version\":7}", &reason).unwrap();
        assert_eq!(p.destination, Destination::DeadLetter);
        assert_eq!(p.body, "{\"event_id\":\"evt_1\",\"version\":7}");
        let names: Vec<&str> = p.attributes.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["event_id", "error_code", "error"]);
        let p = PreparedMessage::unreadable("garbage", &reason).unwrap();
        assert!(p.attributes.iter().all(|(n, _, _)| n != "event_id"));
    }
}

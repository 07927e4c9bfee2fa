//! [`RetryQueue`] on SQS: the retry queue (per-message `DelaySeconds`) and its dead-letter queue.
//!
//! The body is the JSON of the [`RetryMessage`]; message attributes (`event_id`, `function`, `attempt`, and
//! `error_code` on the DLQ) let an operator filter without parsing bodies. Delays longer than SQS's 15 minutes
//! are chained: the message carries `not_before` and the worker re-sends it until that time has come.

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageAttributeValue;
use time::OffsetDateTime;

use super::{RetryQueue, StoreError};
use crate::domain::{DeadLetterReason, RetryMessage};

/// SQS's largest per-message delay (15 minutes).
pub const MAX_DELAY_SECONDS: i32 = 900;

/// The largest message we send: 256 KiB, body and attributes together.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct SqsRetryQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: String,
}

impl SqsRetryQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>, dlq_url: impl Into<String>) -> Self {
        SqsRetryQueue { client, queue_url: queue_url.into(), dlq_url: dlq_url.into() }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    async fn send(
        &self,
        queue: &str,
        message: &RetryMessage,
        delay: i32,
        extra: &[(&str, String)],
    ) -> Result<(), StoreError> {
        let body = body_json(message)?;
        let mut attributes = vec![
            ("event_id", "String", message.event_id.clone()),
            ("function", "String", message.function.as_str().to_owned()),
            ("attempt", "Number", message.attempts.len().to_string()),
        ];
        attributes.extend(extra.iter().map(|(name, value)| (*name, "String", value.clone())));
        // SQS rejects empty attribute values; an empty one carries nothing anyway.
        attributes.retain(|(_, _, value)| !value.is_empty());

        let size =
            body.len() + attributes.iter().map(|(name, ty, value)| name.len() + ty.len() + value.len()).sum::<usize>();
        if size > MAX_MESSAGE_BYTES {
            return Err(StoreError::Unavailable(format!(
                "message too large for SQS: event {} is {size} bytes, the limit is {MAX_MESSAGE_BYTES}",
                message.event_id
            )));
        }

        let mut request = self.client.send_message().queue_url(queue).message_body(body).delay_seconds(delay);
        for (name, ty, value) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type(ty)
                .string_value(value)
                .build()
                .map_err(|e| StoreError::Unavailable(format!("SQS message attribute {name}: {e}")))?;
            request = request.message_attributes(name, value);
        }
        request
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("SQS SendMessage to {queue}: {}", DisplayErrorContext(&e))))?;
        Ok(())
    }
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
        let delay = delay_seconds(message.not_before, OffsetDateTime::now_utc());
        self.send(&self.queue_url, message, delay, &[]).await
    }

    async fn dead_letter(&self, message: &RetryMessage, reason: &DeadLetterReason) -> Result<(), StoreError> {
        let mut message = message.clone();
        message.dead_letter_reason = Some(reason.clone());
        self.send(&self.dlq_url, &message, 0, &[("error_code", reason.code.clone())]).await
    }
}

//! Retry messages sealed per person (crypto-shredding), for queues where one message cannot be edited or found by
//! content (SQS): a message's event is sealed with its subject's key, and an erasure destroys the key, which leaves
//! every copy of that person's messages (queued, in flight, dead-lettered) unreadable. A worker or DLQ tool that
//! meets a message whose key is gone drops it.
//!
//! The subject is whoever the message names first: the email's [`email_hash`], else the HubSpot contact id, else
//! the lead id, else the event alone. The envelope replaces `event`:
//! `{"sealed": {"subject", "key_id", "data": base64(nonce ‖ ciphertext ‖ tag)}}`, with the event id, subject and
//! key id as associated data (a sealed event copied onto another message does not open).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::domain::RetryMessage;
use crate::sealed::SealingKey;
use crate::store::{email_hash, event_email};

/// One subject's key and its id (a key replaced after an erasure has another id, so nothing sealed under the old
/// one opens with the new).
pub struct SubjectKey {
    pub id: String,
    pub key: SealingKey,
}

/// Whom a message's personal data belongs to: `email:<hash>`, `contact:<id>`, `lead:<id>` or `event:<id>`.
pub fn subject_of(m: &RetryMessage) -> String {
    let event = &m.event;
    let emails = [event_email(event), event.pointer("/properties/email").and_then(Value::as_str)];
    if let Some(email) = emails.into_iter().flatten().find(|e| !e.trim().is_empty()) {
        return format!("email:{}", email_hash(email));
    }
    // An erasure's own action names the contact it erases: sealed on its own, so that erasure leaves it readable.
    if event.get("action").and_then(Value::as_str) != Some("erase_contact") {
        for key in ["contact_id", "hs_object_id", "objectId", "object_id"] {
            let id =
                event.get(key).and_then(|v| v.as_str().map(String::from).or_else(|| v.as_u64().map(|n| n.to_string())));
            if let Some(id) = id.filter(|i| !i.is_empty()) {
                return format!("contact:{id}");
            }
        }
        let lead = event.get("lead_id").or_else(|| event.get("lead_ids").and_then(|l| l.get(0)));
        if let Some(lead) = lead.and_then(Value::as_str).filter(|l| !l.is_empty()) {
            return format!("lead:{lead}");
        }
    }
    format!("event:{}", m.event_id)
}

/// Where a subject's key is kept: a hash of the subject, so the key's record does not carry the email's hash
/// that event records are searched by.
pub fn key_name(subject: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("hubrelay message key|{subject}").as_bytes()))
}

/// The envelope's parts when `m`'s event is sealed: (subject, key id, sealed bytes).
pub fn sealed_parts(m: &RetryMessage) -> Option<(String, String, Vec<u8>)> {
    let sealed = m.event.get("sealed")?;
    let text = |k: &str| sealed.get(k).and_then(Value::as_str).map(String::from);
    let data = STANDARD.decode(text("data")?).ok()?;
    Some((text("subject")?, text("key_id")?, data))
}

fn record(m: &RetryMessage, subject: &str, key_id: &str) -> String {
    format!("{}|{subject}|{key_id}", m.event_id)
}

/// `m` with its event sealed under `key` for `subject` (`None` only without randomness).
pub fn seal(m: &RetryMessage, subject: &str, key: &SubjectKey) -> Option<RetryMessage> {
    let plain = serde_json::to_vec(&m.event).ok()?;
    let data = key.key.seal(&record(m, subject, &key.id), &plain)?;
    let mut sealed = m.clone();
    sealed.event = json!({"sealed": {"subject": subject, "key_id": key.id, "data": STANDARD.encode(data)}});
    Some(sealed)
}

/// `m` with its event opened; `None` when `key` is not the one it was sealed with (or it was altered).
pub fn open(m: &RetryMessage, key: &SubjectKey) -> Option<RetryMessage> {
    let (subject, key_id, data) = sealed_parts(m)?;
    if key_id != key.id {
        return None;
    }
    let plain = key.key.open(&record(m, &subject, &key_id), &data)?;
    let mut opened = m.clone();
    opened.event = serde_json::from_slice(&plain).ok()?;
    Some(opened)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FunctionName;

    fn message(event: Value) -> RetryMessage {
        RetryMessage::new(FunctionName::LeadCaptured, "evt_1", "k", event, time::OffsetDateTime::UNIX_EPOCH)
    }

    fn key(id: &str, byte: u8) -> SubjectKey {
        SubjectKey { id: id.into(), key: SealingKey::from_bytes(&[byte; 32]) }
    }

    #[test]
    fn the_subject_is_the_email_then_the_contact_then_the_lead() {
        let by_email = message(json!({"email": "Ann@Example.com", "contact_id": "7"}));
        assert_eq!(subject_of(&by_email), format!("email:{}", email_hash("ann@example.com")));
        assert_eq!(subject_of(&message(json!({"objectId": 7}))), "contact:7");
        assert_eq!(subject_of(&message(json!({"lead_ids": ["L1", "L2"]}))), "lead:L1");
        assert_eq!(subject_of(&message(json!({"action": "erase_contact", "object_id": "7"}))), "event:evt_1");
        let upsert = message(json!({"action": "upsert_contact", "email": "ann@example.com"}));
        assert_eq!(subject_of(&upsert), subject_of(&by_email));
    }

    #[test]
    fn a_sealed_event_holds_nothing_readable_and_opens_only_with_its_key() {
        let m = message(json!({"email": "ann@example.com", "phone": "+44 20 7946 0000"}));
        let subject = subject_of(&m);
        let sealed = seal(&m, &subject, &key("k1", 1)).unwrap();
        let text = serde_json::to_string(&sealed).unwrap();
        assert!(!text.contains("ann@") && !text.contains("7946"), "{text}");
        assert_eq!(open(&sealed, &key("k1", 1)).unwrap().event, m.event);
        assert!(open(&sealed, &key("k2", 1)).is_none(), "another key id");
        assert!(open(&sealed, &key("k1", 2)).is_none(), "another key under the same id");
        let mut moved = sealed.clone();
        moved.event_id = "evt_2".into();
        assert!(open(&moved, &key("k1", 1)).is_none(), "copied onto another message");
        assert!(sealed_parts(&m).is_none());
    }
}

//! Idempotency claims in flight, held in the memory of the process that owns the database.
//!
//! Only `hubrelay serve` claims keys, and only one `serve` runs on a data dir (it holds the dir's lock and
//! frees at start-up whatever a killed run left). A claim is there to make a concurrent duplicate wait while
//! the first copy is delivered; it answers nobody and means nothing after a crash, so it needs no write: the
//! key's durable record is written once, with the answer ([`crate::SqliteStore`]'s `complete`). That saves
//! every request a round trip through the writer thread and a commit, and the idempotency index a page
//! written twice.
//!
//! A claim is freed when its answer is committed or its request gives the key back; one whose request never
//! came back (cancelled mid-way) counts as orphaned after [`IN_PROGRESS_TTL`], like a durable one would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hubrelay_core::store::IN_PROGRESS_TTL;

/// The claims this process holds, by idempotency key.
#[derive(Default)]
pub(crate) struct Claims {
    held: Mutex<Held>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Held {
    by_key: HashMap<String, Claim>,
    /// Orphaned claims are dropped when the map reaches this size (then set to twice what is left).
    prune_at: usize,
}

struct Claim {
    id: u64,
    payload_hash: String,
    /// Unix milliseconds; after it the claim counts as orphaned.
    expires_ms: i64,
}

/// What [`Claims::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// The key is this caller's now (the claim's id, to give it back with [`Claims::give_back`]).
    Taken(u64),
    /// Another request's claim (its id) holds the key, for the same payload.
    InProgress(u64),
    /// Another request's claim (its id) holds the key, for another payload.
    Conflict(u64),
}

const MIN_PRUNE_AT: usize = 1024;

impl Claims {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // Nothing here can leave the map half-changed, so a panic elsewhere while it was held is no reason
        // to stop claiming.
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Claim `key` for a request carrying `payload_hash`, unless a live claim holds it.
    pub(crate) fn take(&self, key: &str, payload_hash: &str, now_ms: i64) -> Take {
        let mut held = self.held();
        if let Some(claim) = held.by_key.get(key).filter(|c| c.expires_ms >= now_ms) {
            return if claim.payload_hash == payload_hash {
                Take::InProgress(claim.id)
            } else {
                Take::Conflict(claim.id)
            };
        }
        if held.by_key.len() >= held.prune_at {
            held.by_key.retain(|_, c| c.expires_ms >= now_ms);
            held.prune_at = (held.by_key.len() * 2).max(MIN_PRUNE_AT);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let expires_ms = now_ms + IN_PROGRESS_TTL.as_millis() as i64;
        held.by_key.insert(key.to_owned(), Claim { id, payload_hash: payload_hash.to_owned(), expires_ms });
        Take::Taken(id)
    }

    /// Undo [`Claims::take`] (the key turned out to be answered already), or end a claim whose answer is
    /// stored but whose request was cancelled before ending it: frees the key if the claim `id` still holds it.
    pub(crate) fn give_back(&self, key: &str, id: u64) {
        let mut held = self.held();
        if held.by_key.get(key).is_some_and(|c| c.id == id) {
            held.by_key.remove(key);
        }
    }

    /// The payload hash the claim on `key` was taken with, if one holds it.
    pub(crate) fn payload_hash(&self, key: &str) -> Option<String> {
        self.held().by_key.get(key).map(|c| c.payload_hash.clone())
    }

    /// Free `key`: its answer is stored, or its request gives up.
    pub(crate) fn end(&self, key: &str) {
        self.held().by_key.remove(key);
    }

    /// Free every claim; how many there were.
    pub(crate) fn clear(&self) -> usize {
        let mut held = self.held();
        let n = held.by_key.len();
        held.by_key.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL_MS: i64 = IN_PROGRESS_TTL.as_millis() as i64;

    #[test]
    fn a_held_key_is_in_progress_or_a_conflict_until_ended_or_orphaned() {
        let claims = Claims::default();
        let Take::Taken(_) = claims.take("k", "h1", 0) else { panic!("a free key is taken") };
        assert!(matches!(claims.take("k", "h1", 10), Take::InProgress(_)));
        assert!(matches!(claims.take("k", "h2", 10), Take::Conflict(_)));
        assert_eq!(claims.payload_hash("k").as_deref(), Some("h1"));
        assert!(matches!(claims.take("k", "h1", TTL_MS), Take::InProgress(_)), "live up to its expiry");
        assert!(matches!(claims.take("k", "h2", TTL_MS + 1), Take::Taken(_)), "orphaned after it");
        assert_eq!(claims.payload_hash("k").as_deref(), Some("h2"));
        claims.end("k");
        assert!(matches!(claims.take("k", "h1", TTL_MS + 2), Take::Taken(_)));
        assert_eq!(claims.clear(), 1);
        assert_eq!(claims.payload_hash("k"), None);
    }

    #[test]
    fn giving_back_frees_only_the_claim_still_held() {
        let claims = Claims::default();
        let Take::Taken(first) = claims.take("k", "h", 0) else { panic!() };
        // The first claim was orphaned and taken over: its late give-back leaves the new one alone.
        let Take::Taken(second) = claims.take("k", "h", TTL_MS + 1) else { panic!() };
        claims.give_back("k", first);
        assert_eq!(claims.take("k", "h", TTL_MS + 2), Take::InProgress(second));
        claims.give_back("k", second);
        assert!(matches!(claims.take("k", "h", TTL_MS + 3), Take::Taken(_)));
    }

    #[test]
    fn orphaned_claims_are_pruned_as_the_map_grows() {
        let claims = Claims::default();
        for i in 0..MIN_PRUNE_AT {
            claims.take(&format!("old{i}"), "h", 0);
        }
        // Past the TTL the next claim prunes every orphan.
        claims.take("new", "h", TTL_MS + 1);
        assert_eq!(claims.held().by_key.len(), 1);
        assert_eq!(claims.held().prune_at, MIN_PRUNE_AT);
    }
}

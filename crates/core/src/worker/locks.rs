//! Per-contact locks for one process: while the worker checks a contact's newest applied lead, writes
//! it and records the write, no inline delivery for the same email may slip in between (else an older
//! retried lead could land after a newer inline one and overwrite it).
//!
//! The worker locks its batch's contacts exclusively ([`ContactLocks::lock`]); inline deliveries share
//! ([`ContactLocks::share`]), so concurrent inline leads for one email do not wait for each other. Waiters
//! are served fairly (a waiting worker is not starved by a stream of inline leads).
//!
//! `hubrelay serve` shares one [`ContactLocks`] between the HTTP path and its worker. Keys are hashes of
//! the lower-cased email; entries disappear when nobody holds or waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::store::contact_key;

#[derive(Debug, Default)]
pub struct ContactLocks {
    map: Mutex<HashMap<String, Arc<RwLock<()>>>>,
}

/// Held locks; dropping it releases them.
#[derive(Debug)]
pub struct ContactGuard {
    locks: Arc<ContactLocks>,
    held: Vec<(String, Held)>,
}

#[derive(Debug)]
enum Held {
    Exclusive(#[allow(dead_code)] OwnedRwLockWriteGuard<()>),
    Shared(#[allow(dead_code)] OwnedRwLockReadGuard<()>),
}

impl ContactLocks {
    pub fn new() -> Arc<ContactLocks> {
        Arc::new(ContactLocks::default())
    }

    fn entry(&self, key: &str) -> Arc<RwLock<()>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).entry(key.to_string()).or_default().clone()
    }

    /// Locks every email exclusively (duplicates and case ignored), always in the same order so two
    /// callers cannot deadlock.
    pub async fn lock<I, S>(self: &Arc<Self>, emails: I) -> ContactGuard
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut keys: Vec<String> = emails.into_iter().map(|e| contact_key(e.as_ref())).collect();
        keys.sort();
        keys.dedup();
        let mut guard = ContactGuard { locks: self.clone(), held: Vec::with_capacity(keys.len()) };
        for key in keys {
            let lock = self.entry(&key);
            guard.held.push((key, Held::Exclusive(lock.write_owned().await)));
        }
        guard
    }

    /// Locks one email shared with other shared holders (inline deliveries), excluding [`ContactLocks::lock`].
    pub async fn share(self: &Arc<Self>, email: &str) -> ContactGuard {
        let key = contact_key(email);
        let lock = self.entry(&key);
        let held = Held::Shared(lock.read_owned().await);
        ContactGuard { locks: self.clone(), held: vec![(key, held)] }
    }

    /// Emails with an entry (held or waited for).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for ContactGuard {
    fn drop(&mut self) {
        let mut map = self.locks.map.lock().unwrap_or_else(|e| e.into_inner());
        for (key, guard) in self.held.drain(..) {
            drop(guard);
            // Only the map's own reference left: nobody holds or waits for it.
            if map.get(&key).is_some_and(|m| Arc::strong_count(m) == 1) {
                map.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn same_email_waits_other_emails_do_not() {
        let locks = ContactLocks::new();
        let held = locks.lock(["A@x.com", "b@x.com", "a@x.com"]).await;
        assert_eq!(locks.len(), 2);
        // Another email goes through at once.
        drop(locks.lock(["c@x.com"]).await);
        // The same email (any case) waits.
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move { drop(l2.lock(["a@X.com"]).await) });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        drop(held);
        waiter.await.unwrap();
        assert!(locks.is_empty(), "entries are cleaned up");
    }

    #[tokio::test(start_paused = true)]
    async fn shared_holders_do_not_wait_for_each_other_but_exclude_the_worker() {
        let locks = ContactLocks::new();
        let a = locks.share("a@x.com").await;
        let b = locks.share("A@x.com").await; // at once
        let l2 = locks.clone();
        let worker = tokio::spawn(async move { drop(l2.lock(["a@x.com"]).await) });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!worker.is_finished());
        // A new shared holder queues behind the waiting worker (no starvation).
        let l3 = locks.clone();
        let late = tokio::spawn(async move { drop(l3.share("a@x.com").await) });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!late.is_finished());
        drop((a, b));
        worker.await.unwrap();
        late.await.unwrap();
        assert!(locks.is_empty());
    }

    #[tokio::test]
    async fn overlapping_sets_do_not_deadlock() {
        let locks = ContactLocks::new();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let locks = locks.clone();
            tasks.push(tokio::spawn(async move {
                let emails = if i % 2 == 0 { ["a@x.com", "b@x.com"] } else { ["b@x.com", "a@x.com"] };
                let _g = locks.lock(emails).await;
                tokio::task::yield_now().await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(locks.is_empty());
    }
}

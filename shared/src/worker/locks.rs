//! Per-contact locks for one process: while the worker checks a contact's newest applied lead, writes
//! it and records the write, no inline delivery for the same email may slip in between (else an older
//! retried lead could land after a newer inline one and overwrite it).
//!
//! `hubrelay serve` shares one [`ContactLocks`] between the HTTP path and its worker. Keys are hashes of
//! the lower-cased email; entries disappear when nobody holds or waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::store::contact_key;

#[derive(Debug, Default)]
pub struct ContactLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held locks; dropping it releases them.
#[derive(Debug)]
pub struct ContactGuard {
    locks: Arc<ContactLocks>,
    held: Vec<(String, OwnedMutexGuard<()>)>,
}

impl ContactLocks {
    pub fn new() -> Arc<ContactLocks> {
        Arc::new(ContactLocks::default())
    }

    /// Locks every email (duplicates and case ignored), always in the same order so two callers cannot
    /// deadlock.
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
            let mutex = self.map.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default().clone();
            guard.held.push((key, mutex.lock_owned().await));
        }
        guard
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

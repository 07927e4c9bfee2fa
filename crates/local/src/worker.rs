//! The retry worker inside `hubrelay serve`: the same [`RetryWorker`] logic as the `retry-worker` Lambda,
//! polling the SQLite retry queue instead of receiving SQS batches.
//!
//! Crash safety: a message leaves the retry queue only in the transaction that stores its fate (removed
//! after delivery, replaced by its updated copy on retry, moved to the dead-letter table), and only after
//! the worker has written the event's record. A `kill -9` at any point leaves every message either still
//! queued — it is processed again after the restart, and a write it was in flight with is reconciled by its
//! write id rather than sent twice (`hubrelay_core::worker::intents`) — or settled.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::sqlite::{QueueChange, SqliteStore};
use crate::turn::Turn;
use hubrelay_core::domain::{DeadLetterReason, RetryMessage};
use hubrelay_core::privacy::PersonalData;
use hubrelay_core::store::{RetryQueue, StoreError};
use hubrelay_core::worker::{Disposition, RetryWorker};

/// How many due messages one tick takes: enough for ten full HubSpot batches even when every email has
/// several queued leads.
pub const DEFAULT_BATCH_LIMIT: usize = 1000;

/// The longest the worker sleeps when the queue has nothing due (it wakes earlier for the next due
/// message or when the HTTP path enqueues).
pub const DEFAULT_IDLE_INTERVAL: Duration = Duration::from_millis(250);

pub struct LocalWorker {
    store: SqliteStore,
    worker: RetryWorker,
    wake: Arc<Notify>,
    batch_limit: usize,
    idle_interval: Duration,
    /// Its place among the process's other workers: one tick's store work at a time ([`LocalWorker::with_turn`]).
    turn: Option<Arc<Turn>>,
    /// How long event records keep what they hold of a person ([`LocalWorker::with_retention`]).
    retention: Option<Duration>,
}

/// How often the worker clears personal data older than the retention from event records.
const RETENTION_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Due messages taken from the queue.
    pub fetched: usize,
    pub delivered: usize,
    pub superseded: usize,
    pub retried: usize,
    pub dead_lettered: usize,
    pub not_yet_due: usize,
}

impl TickReport {
    /// Whether any message moved on (so more work may be waiting right away).
    pub fn progressed(&self) -> bool {
        self.fetched > self.not_yet_due
    }
}

impl LocalWorker {
    pub fn new(store: SqliteStore, worker: RetryWorker) -> Self {
        LocalWorker {
            store,
            worker,
            wake: Arc::new(Notify::new()),
            batch_limit: DEFAULT_BATCH_LIMIT,
            idle_interval: DEFAULT_IDLE_INTERVAL,
            turn: None,
            retention: None,
        }
    }

    /// Clear the masked email and its hash from event records older than `retention`, at start and hourly
    /// (`HUBRELAY_PERSONAL_DATA_RETENTION`).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// One retention sweep; returns how many records it cleared.
    pub async fn sweep_personal_data(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let Some(retention) = self.retention else { return Ok(0) };
        self.store.scrub_events_before(now - retention).await
    }

    pub fn with_batch_limit(mut self, limit: usize) -> Self {
        self.batch_limit = limit.max(1);
        self
    }

    /// Take turns with the other workers of the process (one per tenant, each with its [`Turn`] of one lane): a
    /// tick's store work runs only in the worker's turn, handed round in order, so backlogs drain one tick at a
    /// time and the rest of the machine stays with the request path (a tenant's 100,000-lead backlog does not slow
    /// another's fresh leads). Give the worker's HubSpot client the same turn ([`crate::turn::OutsideTurn`]): its
    /// calls then run outside the turn, and the workers wait on their portals at once.
    pub fn with_turn(mut self, turn: Arc<Turn>) -> Self {
        self.turn = Some(turn);
        self
    }

    pub fn with_idle_interval(mut self, interval: Duration) -> Self {
        self.idle_interval = interval;
        self
    }

    /// Notify this to make the worker look at the queue now (see [`WakingQueue`]).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// One pass: take up to the batch limit of due messages, decide their fate, store it. On a store
    /// error nothing is settled: the messages stay queued and the next tick tries again.
    pub async fn tick(&self, now: OffsetDateTime) -> Result<TickReport, StoreError> {
        // A read on this thread: reads never wait for the writer.
        let due = self.store.due(now, self.batch_limit)?;
        let mut report = TickReport { fetched: due.len(), ..TickReport::default() };
        if due.is_empty() {
            return Ok(report);
        }
        let outcomes = self.worker.process(due, now).await?;
        let mut changes = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match outcome.disposition {
                Disposition::Delivered { .. } => {
                    report.delivered += 1;
                    changes.push(QueueChange::Remove(outcome.event_id));
                }
                Disposition::Superseded => {
                    report.superseded += 1;
                    changes.push(QueueChange::Remove(outcome.event_id));
                }
                Disposition::NotYetDue => report.not_yet_due += 1,
                Disposition::Retry(message) => {
                    report.retried += 1;
                    changes.push(QueueChange::Requeue(message));
                }
                Disposition::DeadLetter(message, reason) => {
                    report.dead_lettered += 1;
                    changes.push(QueueChange::DeadLetter(message, reason));
                }
            }
        }
        self.store.settle(changes).await?;
        tracing::debug!(?report, "retry worker tick");
        Ok(report)
    }

    /// Tick until `shutdown` completes (a tick in progress is finished first): at once again after a
    /// tick that moved messages, else when the next message falls due, the HTTP path enqueues, or the
    /// idle interval passes — whichever comes first.
    pub async fn run<F>(self, shutdown: F)
    where
        F: Future<Output = ()> + Send,
    {
        tokio::pin!(shutdown);
        let mut swept: Option<std::time::Instant> = None;
        loop {
            if self.retention.is_some() && swept.is_none_or(|at| at.elapsed() >= RETENTION_SWEEP_EVERY) {
                swept = Some(std::time::Instant::now());
                match self.sweep_personal_data(OffsetDateTime::now_utc()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(records = n, "personal data past its retention cleared from event records"),
                    Err(e) => tracing::warn!(error = %e, "retention sweep failed; tried again in an hour"),
                }
            }
            if let Some(turn) = &self.turn {
                tokio::select! {
                    biased;
                    _ = &mut shutdown => return,
                    _ = turn.take() => {}
                }
            }
            let ticked = self.tick(OffsetDateTime::now_utc()).await;
            if let Some(turn) = &self.turn {
                turn.give_back();
            }
            let pause = match ticked {
                Ok(report) if report.progressed() => Duration::ZERO,
                Ok(_) => self.until_next_due().await,
                Err(e) => {
                    tracing::error!(error = %e, "retry worker: store unavailable; messages stay queued");
                    self.idle_interval
                }
            };
            let woken = self.wake.notified();
            tokio::select! {
                biased;
                _ = &mut shutdown => return,
                _ = woken => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn until_next_due(&self) -> Duration {
        match self.store.next_due().ok().flatten() {
            Some(at) => {
                let wait: Duration = (at - OffsetDateTime::now_utc()).try_into().unwrap_or(Duration::ZERO);
                // Not before a millisecond (the queue keeps millisecond times), not after the idle interval.
                wait.clamp(Duration::from_millis(1), self.idle_interval.max(Duration::from_millis(1)))
            }
            None => self.idle_interval,
        }
    }
}

/// A [`RetryQueue`] that wakes the local worker whenever the HTTP path enqueues.
pub struct WakingQueue {
    inner: Arc<dyn RetryQueue>,
    wake: Arc<Notify>,
}

impl WakingQueue {
    pub fn new(inner: Arc<dyn RetryQueue>, wake: Arc<Notify>) -> Self {
        WakingQueue { inner, wake }
    }
}

#[async_trait]
impl RetryQueue for WakingQueue {
    async fn enqueue(&self, message: &RetryMessage) -> Result<(), StoreError> {
        self.inner.enqueue(message).await?;
        self.wake.notify_one();
        Ok(())
    }

    async fn dead_letter(&self, message: &RetryMessage, reason: &DeadLetterReason) -> Result<(), StoreError> {
        self.inner.dead_letter(message, reason).await
    }
}

//! Micro-batching for the inline path: leads that arrive while the previous call is being paced share one
//! `batch/upsert`, and each caller still gets its own result (its contact id, or its own error).
//!
//! Calls start at most once per `min_interval`, so under load the inline path spends a bounded share of
//! the portal's budget however many leads arrive: at 100 calls per 10 s and half of it for the inline path
//! (one call per 200 ms), 50 leads/s cost 0.1 calls per lead, 500 leads/s 0.01 — and the retry worker keeps
//! the other half to drain its queue. A lone lead is sent at once: pacing only waits when a call started
//! less than `min_interval` ago.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::domain::{AttemptOutcome, ContactUpsert, UpsertedContact};
use crate::hubspot::{HubSpot, HubSpotError};
use crate::missing_properties::MissingProperties;

/// HubSpot's limit of inputs per batch call.
const MAX_INPUTS: usize = 100;
/// Calls in flight at once (a slow HubSpot must not stall every lead behind one call).
const MAX_IN_FLIGHT: usize = 4;

type Answer = Result<UpsertedContact, HubSpotError>;

struct Job {
    upsert: ContactUpsert,
    reply: oneshot::Sender<Answer>,
}

/// The inline path's way to HubSpot's batch upsert: [`UpsertBatcher::upsert`] one contact, answered alone.
pub struct UpsertBatcher {
    jobs: mpsc::UnboundedSender<Job>,
}

impl UpsertBatcher {
    /// Start the batching task on the current Tokio runtime; it ends when the batcher is dropped.
    pub fn spawn(hubspot: Arc<dyn HubSpot>, min_interval: Duration, missing: Arc<MissingProperties>) -> Arc<Self> {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(hubspot, min_interval, missing, rx));
        Arc::new(UpsertBatcher { jobs })
    }

    /// Create or update one contact, in the next batch.
    pub async fn upsert(&self, upsert: ContactUpsert) -> Answer {
        let (reply, answer) = oneshot::channel();
        let stopped = || HubSpotError::new(None, "hubspot_unreachable", "not sent: the relay is stopping");
        self.jobs.send(Job { upsert, reply }).map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn run(
    hubspot: Arc<dyn HubSpot>,
    min_interval: Duration,
    missing: Arc<MissingProperties>,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    // Contacts with a call in flight: a later lead for one waits for it, so the newer values land last.
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut next_start = Instant::now();
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(job) => waiting.push_back(job),
                None => return,
            }
        }
        tokio::time::sleep_until(next_start).await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        while let Ok(job) = rx.try_recv() {
            waiting.push_back(job);
        }
        let batch = {
            let mut busy = busy.lock().unwrap_or_else(|p| p.into_inner());
            let mut batch = Vec::new();
            let mut later = VecDeque::new();
            let mut taken = HashSet::new();
            for job in waiting.drain(..) {
                let email = job.upsert.email.to_lowercase();
                if job.reply.is_closed() {
                    continue; // its request is gone (the sender hung up)
                }
                if batch.len() < MAX_INPUTS && !busy.contains(&email) && taken.insert(email) {
                    batch.push(job);
                } else {
                    later.push_back(job);
                }
            }
            busy.extend(taken);
            waiting = later;
            batch
        };
        if batch.is_empty() {
            // Everything waiting is for a contact in flight (or gone): wait for a call to end or a new lead.
            drop(permit);
            tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => waiting.push_back(job),
                    None if waiting.is_empty() => return,
                    // Shutting down with leads still waiting for a contact in flight: recv() now returns at
                    // once, so pause instead of spinning until those calls end.
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                },
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
            continue;
        }
        next_start = Instant::now() + min_interval;
        let (hubspot, missing, busy) = (hubspot.clone(), missing.clone(), busy.clone());
        tokio::spawn(async move {
            let emails: Vec<String> = batch.iter().map(|j| j.upsert.email.to_lowercase()).collect();
            deliver(hubspot.as_ref(), batch, &missing).await;
            let mut busy = busy.lock().unwrap_or_else(|p| p.into_inner());
            emails.iter().for_each(|e| {
                busy.remove(e);
            });
            drop(permit);
        });
    }
}

/// One call for `batch`, each job answered with its own result. A call refused whole cannot say whose
/// input it was: when it names properties the portal lacks, the inputs carrying one get the refusal and
/// the rest go again together; otherwise the batch is halved until the refused input stands alone.
fn deliver<'a>(
    hubspot: &'a dyn HubSpot,
    batch: Vec<Job>,
    missing: &'a MissingProperties,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let inputs: Vec<ContactUpsert> = batch.iter().map(|j| j.upsert.clone()).collect();
        match hubspot.upsert_contacts(&inputs).await {
            Ok(results) => {
                let mut results = results.into_iter();
                for job in batch {
                    let answer = results.next().unwrap_or_else(|| {
                        Err(HubSpotError::new(
                            None,
                            "unexpected_response",
                            "batch upsert answered no result for this input",
                        ))
                    });
                    let _ = job.reply.send(answer);
                }
            }
            Err(e) if e.outcome() == AttemptOutcome::Rejected && batch.len() > 1 => {
                let (refused, rest): (Vec<Job>, Vec<Job>) = if missing.learn(&e) {
                    batch.into_iter().partition(|j| missing.carried_by(&j.upsert).is_some())
                } else {
                    (Vec::new(), batch)
                };
                for job in refused {
                    let _ = job.reply.send(Err(e.clone()));
                }
                if rest.is_empty() {
                    return;
                }
                if rest.len() == inputs.len() {
                    let mut left = rest;
                    let right = left.split_off(left.len() / 2);
                    deliver(hubspot, left, missing).await;
                    deliver(hubspot, right, missing).await;
                } else {
                    deliver(hubspot, rest, missing).await;
                }
            }
            Err(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    })
}

//! The redrive decision, written once for every dead-letter queue: skip what the event log says was
//! delivered, put the rest back on the retry queue with a restarted schedule, then remove it from the
//! dead-letter queue — and put the event log back when a move fails. The queues ([`DeadLetters`]) only hold,
//! take and release their copies.

use std::collections::{HashMap, HashSet};

use time::OffsetDateTime;

use super::{
    check_log, missing_ids, restore_log, retrying_record, DeadLetters, Held, Progress, RedriveFailure, RedriveReport,
    Selection, TakeError,
};
use crate::store::StoreError;

/// Redrives the selected dead letters of one queue (see the module docs of [`crate::dlq`]).
pub struct Redriver<'a> {
    letters: &'a dyn DeadLetters,
}

impl<'a> Redriver<'a> {
    pub fn new(letters: &'a dyn DeadLetters) -> Self {
        Redriver { letters }
    }

    /// With `dry_run` nothing changes: the report says what a redrive would do.
    pub async fn run(
        &self,
        selection: &Selection,
        dry_run: bool,
        now: OffsetDateTime,
        progress: Progress<'_>,
    ) -> Result<RedriveReport, StoreError> {
        let events = self.letters.event_log()?;
        self.letters.check_redrive(dry_run)?;
        let held = self.letters.hold().await?;
        let mut report = RedriveReport {
            dry_run,
            not_found: missing_ids(selection, held.iter().filter_map(Held::event_id)),
            ..Default::default()
        };
        // Group the selected copies by event (first seen first); everything else is released at the end.
        let mut release: Vec<&Held> = Vec::new();
        let mut order: Vec<&str> = Vec::new();
        let mut copies: HashMap<&str, Vec<&Held>> = HashMap::new();
        let mut unmatched_events = HashSet::new();
        for h in &held {
            match &h.letter {
                Err(_) => {
                    report.unreadable += 1;
                    release.push(h);
                }
                Ok(l) if selection.matches(l, now) => {
                    let id = l.event_id();
                    copies.entry(id).or_insert_with(|| {
                        order.push(id);
                        Vec::new()
                    });
                    copies.get_mut(id).expect("inserted above").push(h);
                }
                Ok(l) => {
                    unmatched_events.insert(l.event_id());
                    release.push(h);
                }
            }
        }
        report.not_matched = unmatched_events.len();

        let total = order.len();
        progress(0, total);
        for (i, event_id) in order.iter().enumerate() {
            let copies = &copies[event_id];
            let first = copies[0];
            let letter = first.letter.as_ref().expect("only readable letters are selected");
            let result: Result<(), String> = async {
                let check = check_log(events, event_id).await.map_err(|e| e.to_string())?;
                if check.delivered {
                    // Already delivered meanwhile: only the dead-letter copy goes.
                    if dry_run || self.letters.take(first, None).await.map_err(|e| e.into_store_error().to_string())? {
                        report.already_delivered.push(event_id.to_string());
                    }
                    return Ok(());
                }
                if dry_run {
                    report.moved.push(event_id.to_string());
                    return Ok(());
                }
                let mut message = letter.message.clone();
                message.redrive(now);
                events
                    .put_event(&retrying_record(check.previous.as_ref(), &message, now))
                    .await
                    .map_err(|e| e.to_string())?;
                match self.letters.take(first, Some(&message)).await {
                    Ok(true) => {
                        report.moved.push(event_id.to_string());
                        Ok(())
                    }
                    Ok(false) => {
                        restore_log(events, check.previous).await;
                        Err("the dead letter changed while redriving (purged or dead-lettered again): run again".into())
                    }
                    Err(TakeError::NotRequeued(e)) => {
                        restore_log(events, check.previous).await;
                        Err(e.to_string())
                    }
                    // Sent: from here on a failure leaves a duplicate in the dead-letter queue, never a loss.
                    Err(TakeError::NotRemoved(e)) => {
                        report.moved.push(event_id.to_string());
                        let e = StoreError::Unavailable(format!(
                            "moved to the retry queue, but the DLQ copy could not be deleted (a later redrive will \
                             find it delivered and remove it): {e}"
                        ));
                        Err(e.to_string())
                    }
                }
            }
            .await;
            match result {
                Ok(()) => {
                    for dup in &copies[1..] {
                        if dry_run {
                            report.duplicates_removed += 1;
                            continue;
                        }
                        match self.letters.take(dup, None).await {
                            Ok(_) => report.duplicates_removed += 1,
                            Err(e) => report.failed.push(RedriveFailure {
                                event_id: event_id.to_string(),
                                error: e.into_store_error().to_string(),
                            }),
                        }
                    }
                }
                Err(e) => {
                    report.failed.push(RedriveFailure { event_id: event_id.to_string(), error: e });
                    if !report.moved.iter().any(|m| m == event_id) {
                        release.extend(copies.iter().copied());
                    }
                }
            }
            if dry_run {
                release.extend(copies.iter().copied());
            }
            progress(i + 1, total);
        }
        self.letters.release(&release).await;
        Ok(report)
    }
}

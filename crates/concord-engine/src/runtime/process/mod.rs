//! The processor: journal entries → entity state → outbox items, one batch per transaction.
//!
//! For each pending journal entry, in journal order, the `Planner` (`planner.rs`) takes three
//! steps:
//! - `resolve.rs` — its canonical key (xref, else the natural key — correlation; order-scoped
//!   records are keyed `{order}:{id}`); drop it if stale or if it reports an ERP order that
//!   cancel-and-replace superseded; refuse an order-scoped record whose order changed;
//! - `merge.rs` — merge it under field ownership (conflicts audited), tracking the order
//!   lifecycle, and add the entity (and the stock pool's ledger figure) to the batch;
//! - `plan.rs` — when the entity changed, plan a delivery to every destination of every flow
//!   that takes this kind from this source: order-scoped routing, jq filter, jq outbound
//!   mapping, skip when the destination already has (or is about to get) the same hash, park
//!   when dependencies are unknown there.
//!
//! `cache.rs` holds the batch's store reads (prefetched in a few batched calls) and the overlay
//! of what earlier entries of the batch decided; `planner.rs` the batch's decisions and the
//! entry's walk through the steps. This file is the loop: batches, and the isolation of an
//! entry that fails.
//!
//! Architecture invariant: exactly one processor runs per store, and it commits everything it
//! decided for a batch in one `Store::apply`, together with the journal status. A crash between
//! batches re-processes nothing twice and loses nothing: unprocessed entries stay pending. One
//! entry that cannot be processed never stalls the journal: a failed batch is retried one entry
//! at a time, and an entry that keeps failing alone becomes an inbound dead letter (`run`).
//!
//! Dead-letter replay is not here: it lives in `replay.rs`, which reuses `operation` so that a
//! replayed delivery gets the same write operation the planner would give it.

mod cache;
mod merge;
mod plan;
mod planner;
mod resolve;

pub(super) use plan::{operation, set_reference};
pub(super) use planner::Planner;

use super::{EngineError, Inner};
use concord_core::retry::Backoff;
use concord_store::{
    Direction, JournalEntry, JournalStatus, NewDeadLetter, ProcessBatch, StoreError,
};
use futures::FutureExt;
use std::sync::Arc;
use std::time::Duration;

/// Attempts at one journal entry processed alone before it is set aside as an inbound dead
/// letter (see [`isolate`]).
pub(crate) const ENTRY_ATTEMPTS: u32 = 5;

/// Run until shutdown.
///
/// A batch that fails is not retried whole forever: its entries are processed one at a time
/// ([`isolate`]), so that one entry that cannot be processed holds up nothing but itself, and
/// only for [`ENTRY_ATTEMPTS`] tries.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    let batch_size = inner.config.engine.batch_size.max(1);
    let backoff = Backoff {
        base_ms: u64::try_from(inner.config.engine.backoff_base.as_millis()).unwrap_or(u64::MAX),
        cap_ms: u64::try_from(inner.config.engine.backoff_cap.as_millis()).unwrap_or(u64::MAX),
    };
    let mut failing = Failing::default();
    loop {
        if inner.is_shutting_down() {
            return;
        }
        let notified = inner.journal_notify.notified();
        let wait = match guarded(step(&inner, batch_size)).await {
            Ok(0) => {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            Ok(_) => None,
            // Stopped mid-batch by the shutdown (nothing of the batch was committed).
            Err(StepError::Engine(EngineError::ShuttingDown)) => return,
            Err(e) if e.is_systemic() => {
                tracing::error!(error = %e, "processing failed; retrying in 1 s");
                Some(Duration::from_secs(1))
            }
            Err(e) => {
                tracing::warn!(error = %e, "a batch of journal entries failed; processing them one at a time");
                isolate(&inner, batch_size, &mut failing, &backoff).await
            }
        };
        if let Some(wait) = wait {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Why processing a batch (or one entry) failed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A bug met on the way (in a mapping, the merge, the store's apply…): caught so that one
    /// entry cannot take the processor down again at every restart.
    #[error("processing panicked: {0}")]
    Panic(String),
}

impl StepError {
    /// A failure of the store as a whole rather than of what was being processed: no entry is
    /// to blame, so none is counted against or set aside.
    fn is_systemic(&self) -> bool {
        matches!(
            self,
            StepError::Engine(
                EngineError::ShuttingDown
                    | EngineError::Store(
                        StoreError::Closed
                            | StoreError::Busy
                            | StoreError::Open { .. }
                            | StoreError::Conflict(_)
                            | StoreError::Unavailable(_)
                    )
            )
        )
    }
}

/// Run a processing step with its panics caught.
async fn guarded<T>(
    f: impl std::future::Future<Output = Result<T, EngineError>>,
) -> Result<T, StepError> {
    match std::panic::AssertUnwindSafe(f).catch_unwind().await {
        Ok(r) => Ok(r?),
        Err(panic) => Err(StepError::Panic(super::supervise::panic_message(
            panic.as_ref(),
        ))),
    }
}

/// The journal entry that last failed alone, and how many times in a row it did.
#[derive(Debug, Default)]
struct Failing {
    id: Option<i64>,
    attempts: u32,
}

impl Failing {
    /// Count a failure of entry `id`; returns its failures in a row.
    fn record(&mut self, id: i64) -> u32 {
        if self.id != Some(id) {
            *self = Failing {
                id: Some(id),
                attempts: 0,
            };
        }
        self.attempts += 1;
        self.attempts
    }
}

/// After a batch failed: process the pending entries one at a time, in journal order, up to
/// the first one that fails alone. The entries before it are committed; it is tried again after
/// a backoff (returned), still ahead of every later entry, so changes keep their order; once it
/// has failed [`ENTRY_ATTEMPTS`] times in a row it is set aside — journaled as rejected with an
/// inbound dead letter giving the reason — and the entries after it flow on. A systemic
/// failure (the store closed) stops the round without blaming any entry.
async fn isolate(
    inner: &Inner,
    batch_size: usize,
    failing: &mut Failing,
    backoff: &Backoff,
) -> Option<Duration> {
    let entries = match inner.store.pending_journal(batch_size).await {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!(error = %e, "processing failed; retrying in 1 s");
            return Some(Duration::from_secs(1));
        }
    };
    for entry in entries {
        let id = entry.id;
        let error = match guarded(step_entries(inner, vec![entry.clone()])).await {
            Ok(_) => {
                if failing.id == Some(id) {
                    *failing = Failing::default();
                }
                continue;
            }
            Err(e) if e.is_systemic() => {
                tracing::error!(error = %e, "processing failed; retrying in 1 s");
                return Some(Duration::from_secs(1));
            }
            Err(e) => e,
        };
        let attempts = failing.record(id);
        if attempts < ENTRY_ATTEMPTS {
            let wait = Duration::from_millis(backoff.delay_ms(attempts - 1, fastrand::f64()));
            tracing::warn!(journal_id = id, endpoint = %entry.endpoint, kind = %entry.kind,
                external_id = %entry.external_id, attempts, error = %error,
                "journal entry failed on its own; trying it again");
            return Some(wait.max(Duration::from_millis(10)));
        }
        let reason = format!("processing failed {attempts} times: {error}");
        let batch = ProcessBatch {
            journal: vec![(id, JournalStatus::Rejected, Some(reason.clone()), None)],
            dead_letters: vec![NewDeadLetter {
                direction: Direction::Inbound,
                endpoint: entry.endpoint.clone(),
                kind: entry.kind,
                key: entry.external_id.clone(),
                payload: entry.payload.clone(),
                reason: reason.clone(),
                journal_id: Some(id),
                // An inbound entry that could not be processed at all: no flow is to blame.
                flow: None,
                at: inner.now(),
            }],
            ..ProcessBatch::default()
        };
        if let Err(e) = inner.store.apply(batch, inner.now()).await {
            tracing::error!(journal_id = id, error = %e, "could not set the failing journal entry aside; retrying in 1 s");
            return Some(Duration::from_secs(1));
        }
        *failing = Failing::default();
        super::Stats::add(&inner.stats.rejected, 1);
        metrics::counter!("concord_dead_letters_total", "endpoint" => entry.endpoint.clone(), "kind" => entry.kind.as_str()).increment(1);
        tracing::error!(journal_id = id, endpoint = %entry.endpoint, kind = %entry.kind,
            external_id = %entry.external_id, %reason,
            "journal entry set aside as an inbound dead letter; the entries after it go on");
    }
    None
}

/// Process one batch of pending journal entries. Returns how many were processed.
pub(crate) async fn step(inner: &Inner, batch_size: usize) -> Result<usize, EngineError> {
    let entries = inner.store.pending_journal(batch_size).await?;
    step_entries(inner, entries).await
}

/// Process these journal entries as one batch (one `Store::apply`).
async fn step_entries(inner: &Inner, entries: Vec<JournalEntry>) -> Result<usize, EngineError> {
    if entries.is_empty() {
        return Ok(0);
    }
    let n = entries.len();
    let now = inner.now();
    let mut planner = Planner::new(inner, now);
    planner.prefetch(&entries).await?;
    for entry in entries {
        planner.entry(entry).await?;
    }
    let (batch, dests) = planner.finish();
    let planned = batch.items.len() as u64;
    let conflicts = batch.audit.iter().filter(|a| a.event == "conflict").count() as u64;
    let index_updates = match &inner.prices {
        Some(_) => super::pricing::updates_of(&batch.entities),
        None => Vec::new(),
    };
    inner.store.apply(batch, now).await?;
    // The price index follows the store, only once the batch is committed.
    if let Some(index) = &inner.prices {
        index.apply(
            index_updates
                .iter()
                .map(|(k, key, v)| (*k, key.as_str(), v)),
        );
    }
    super::Stats::add(&inner.stats.processed, n as u64);
    super::Stats::add(&inner.stats.planned, planned);
    super::Stats::add(&inner.stats.conflicts, conflicts);
    inner.wake(dests);
    Ok(n)
}

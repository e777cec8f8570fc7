//! Retention: every hour the engine deletes history older than `[store] retention` from the
//! tables that grow with traffic — delivery attempts, resolved alert episodes whose
//! notifications were delivered, the audit trail, delivered outbox items and journal entries
//! that are processed and no longer referred to, and stored reconciliation runs
//! (`Store::prune_history`). A backlog goes in
//! batches so other writes are not held up.
//!
//! Must never delete what is still live, owed or referred to (open episodes, owed
//! notifications, pending journal entries, unfinished outbox items, what an open dead letter
//! needs: the store keeps those), nor entities, xrefs, dead letters, the ledger or the order
//! lifecycle.

use super::{EngineError, Inner};
use concord_store::{Pruned, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// How often the loop prunes.
const EVERY: Duration = Duration::from_secs(3600);
/// Most rows of each table one store call deletes.
const BATCH: usize = 5_000;

/// Delete history older than the retention, in batches until nothing old is left.
pub(crate) async fn prune(inner: &Inner) -> Result<Pruned, EngineError> {
    let keep = i64::try_from(inner.config.store.retention.as_millis()).unwrap_or(i64::MAX);
    let before = inner.now().saturating_sub(keep);
    let mut total = Pruned::default();
    loop {
        let p = inner.store.prune_history(before, BATCH).await?;
        total.add(p);
        if !p.any_full(BATCH) {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// The retention task: prune at start, then every [`EVERY`], until shutdown.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        match prune(&inner).await {
            Ok(p) if p != Pruned::default() => tracing::info!(
                delivery_attempts = p.delivery_attempts,
                alert_episodes = p.alert_episodes,
                audit = p.audit,
                outbox_items = p.outbox_items,
                journal = p.journal,
                reconcile_runs = p.reconcile_runs,
                "pruned history older than [store] retention"
            ),
            Ok(_) => {}
            // A store without retention support keeps everything.
            Err(EngineError::Store(StoreError::Unsupported(_))) => return,
            Err(e) => tracing::warn!(error = %e, "pruning old history failed; trying again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

impl super::Engine {
    /// Delete history older than `[store] retention` now (the engine also does it every hour):
    /// delivery attempts, resolved and notified alert episodes, audit events, delivered outbox
    /// items, unreferenced processed journal entries and reconciliation runs. Returns what went.
    pub async fn prune_history(&self) -> Result<Pruned, EngineError> {
        prune(&self.inner).await
    }
}

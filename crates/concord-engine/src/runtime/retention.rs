//! Retention: every hour the engine deletes history older than `[store] retention` from the
//! tables that grow with traffic — delivery attempts and resolved alert episodes whose
//! notifications were delivered (`Store::prune_history`). A backlog goes in batches so other
//! writes are not held up.
//!
//! Must never delete what is still live or owed (open episodes, owed notifications: the store
//! keeps those) nor anything the sync path needs (journal, entities, outbox, dead letters,
//! ledger, order lifecycle are not pruned here).

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
        total.delivery_attempts += p.delivery_attempts;
        total.alert_episodes += p.alert_episodes;
        if p.delivery_attempts < BATCH as u64 && p.alert_episodes < BATCH as u64 {
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
    /// delivery attempts and resolved, notified alert episodes. Returns what went.
    pub async fn prune_history(&self) -> Result<Pruned, EngineError> {
        prune(&self.inner).await
    }
}

//! Retention on PostgreSQL (`Store::prune_history`): old delivery attempts, resolved and
//! notified alert episodes, the audit trail, delivered (`done`) outbox items, finished
//! journal entries nothing refers to and finished reconciliation runs — at most `batch` rows of
//! each per call; then the stats deltas are folded (`stats.rs`).
//!
//! Must never delete anything still owed, live or referred to (see `sqlite/retention.rs`, whose
//! rules this mirrors statement by statement): outbox items go before journal entries in the
//! same transaction, so an entry whose items were all delivered goes with them.

use super::codec::db;
use crate::{Pruned, Result};
use concord_core::Millis;
use tokio_postgres::Transaction;

const PRUNE_ATTEMPTS: &str = "DELETE FROM delivery_attempts WHERE id IN
     (SELECT id FROM delivery_attempts WHERE at < $1 ORDER BY id LIMIT $2)";

const PRUNE_EPISODES: &str = "DELETE FROM alert_episodes WHERE id IN
     (SELECT id FROM alert_episodes
       WHERE resolved_at IS NOT NULL AND resolved_at < $1
         AND notified_firing = 1 AND notified_resolved = 1
       ORDER BY id LIMIT $2)";

const PRUNE_AUDIT: &str = "DELETE FROM audit WHERE id IN
     (SELECT id FROM audit WHERE at < $1 ORDER BY at LIMIT $2)";

const PRUNE_OUTBOX: &str = "DELETE FROM outbox WHERE id IN
     (SELECT id FROM outbox WHERE state = 'done' AND updated_at < $1
       ORDER BY updated_at LIMIT $2)";

/// Only the statuses known to be finished are listed: a status added later stays until it is
/// named here.
const PRUNE_JOURNAL: &str = "DELETE FROM journal WHERE id IN
     (SELECT j.id FROM journal j
       WHERE j.received_at < $1 AND j.status IN ('processed', 'rejected')
         AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.journal_id = j.id)
         AND NOT EXISTS (SELECT 1 FROM dead_letters d
                          WHERE d.journal_id = j.id AND d.state = 'open')
       ORDER BY j.received_at LIMIT $2)";

/// Reconciliation runs finished before $1, oldest first, at most $2. Nothing refers to a run.
const PRUNE_RECONCILE_RUNS: &str = "DELETE FROM reconcile_runs WHERE id IN
     (SELECT id FROM reconcile_runs WHERE finished_at < $1 ORDER BY finished_at LIMIT $2)";

pub(crate) async fn prune(tx: &Transaction<'_>, before: Millis, batch: usize) -> Result<Pruned> {
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    let mut counts = [0u64; 6];
    for (i, (sql, what)) in [
        (PRUNE_ATTEMPTS, "prune old delivery attempts"),
        (PRUNE_EPISODES, "prune resolved alert episodes"),
        (PRUNE_AUDIT, "prune old audit events"),
        (PRUNE_OUTBOX, "prune delivered outbox items"),
        (PRUNE_JOURNAL, "prune processed journal entries"),
        (PRUNE_RECONCILE_RUNS, "prune old reconciliation runs"),
    ]
    .into_iter()
    .enumerate()
    {
        counts[i] = tx
            .execute(sql, &[&before, &batch])
            .await
            .map_err(db(what))?;
    }
    // Retention runs periodically: fold the stats deltas its deletes (and everyone's writes
    // since) appended, so `stats` keeps summing few rows even when nobody reads it.
    super::stats::fold(tx).await?;
    let [delivery_attempts, alert_episodes, audit, outbox_items, journal, reconcile_runs] = counts;
    Ok(Pruned {
        delivery_attempts,
        alert_episodes,
        audit,
        outbox_items,
        journal,
        reconcile_runs,
    })
}

//! Retention of tables that otherwise grow without limit: `delivery_attempts` (one row per
//! delivery attempt, written by `settle`), resolved `alert_episodes`, the `audit` trail,
//! delivered (`done`) `outbox` items, `journal` entries that are fully processed and stored
//! `reconcile_runs` (their reports can be large: every drifted key of a run). The engine
//! calls [`prune`] periodically with `now - [store] retention`.
//!
//! Must never delete anything still owed, live or referred to: an open alert episode, or a
//! resolved one whose resolution notification has not been delivered; an outbox item that is
//! not `done` (pending, in flight, parked, dead — a dead letter refers to a dead one); a journal
//! entry that is pending, or that an outbox item or an open dead letter (whose replay reads
//! it) still refers to. Outbox items go before journal entries in the same call, so an entry
//! whose items were all delivered long ago goes with them. Closed dead letters and order events
//! keep the id of a pruned entry as history (a lookup finds nothing). Entities, xrefs, hashes,
//! dead letters, the ledger and the order lifecycle are not touched here.

use super::codec::db;
use crate::{Pruned, Result};
use concord_core::Millis;
use rusqlite::{params, Connection};

/// Audit events recorded before ?1, oldest first, at most ?2.
pub(crate) const PRUNE_AUDIT: &str = "DELETE FROM audit WHERE id IN
     (SELECT id FROM audit INDEXED BY audit_at WHERE at < ?1 ORDER BY at LIMIT ?2)";

/// Outbox items delivered before ?1, at most ?2 (only `done`: a dead item is what a dead
/// letter refers to, the others are unfinished).
pub(crate) const PRUNE_OUTBOX: &str = "DELETE FROM outbox WHERE id IN
     (SELECT id FROM outbox INDEXED BY outbox_done
       WHERE state = 'done' AND updated_at < ?1 ORDER BY updated_at LIMIT ?2)";

/// Journal entries received before ?1 that are finished and referred to by no outbox item and
/// no open dead letter, at most ?2. Only the statuses known to be finished are listed: a status
/// added later stays until it is named here.
pub(crate) const PRUNE_JOURNAL: &str = "DELETE FROM journal WHERE id IN
     (SELECT j.id FROM journal j INDEXED BY journal_received
       WHERE j.received_at < ?1 AND j.status IN ('processed', 'rejected')
         AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.journal_id = j.id)
         AND NOT EXISTS (SELECT 1 FROM dead_letters d
                          WHERE d.journal_id = j.id AND d.state = 'open')
       ORDER BY j.received_at LIMIT ?2)";

/// Reconciliation runs finished before ?1, oldest first, at most ?2. Nothing refers to a run.
pub(crate) const PRUNE_RECONCILE_RUNS: &str = "DELETE FROM reconcile_runs WHERE id IN
     (SELECT id FROM reconcile_runs INDEXED BY reconcile_runs_finished
       WHERE finished_at < ?1 ORDER BY finished_at LIMIT ?2)";

/// Delete delivery attempts made before `before`, alert episodes resolved (and notified)
/// before `before`, old audit events, delivered items, finished journal entries and
/// reconciliation runs finished before `before`, at most `batch` rows of each (the writer is
/// shared: a large backlog is pruned over several calls).
pub(crate) fn prune(conn: &Connection, before: Millis, batch: usize) -> Result<Pruned> {
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    let delivery_attempts = conn
        .prepare_cached(
            "DELETE FROM delivery_attempts WHERE id IN
                 (SELECT id FROM delivery_attempts WHERE at < ?1 ORDER BY id LIMIT ?2)",
        )
        .and_then(|mut s| s.execute(params![before, batch]))
        .map_err(db("prune old delivery attempts"))?;
    let alert_episodes = conn
        .prepare_cached(
            "DELETE FROM alert_episodes WHERE id IN
                 (SELECT id FROM alert_episodes
                   WHERE resolved_at IS NOT NULL AND resolved_at < ?1
                     AND notified_firing = 1 AND notified_resolved = 1
                   ORDER BY id LIMIT ?2)",
        )
        .and_then(|mut s| s.execute(params![before, batch]))
        .map_err(db("prune resolved alert episodes"))?;
    let audit = conn
        .prepare_cached(PRUNE_AUDIT)
        .and_then(|mut s| s.execute(params![before, batch]))
        .map_err(db("prune old audit events"))?;
    let outbox_items = conn
        .prepare_cached(PRUNE_OUTBOX)
        .and_then(|mut s| s.execute(params![before, batch]))
        .map_err(db("prune delivered outbox items"))?;
    let journal = conn
        .prepare_cached(PRUNE_JOURNAL)
        .and_then(|mut s| s.execute(params![before, batch]))
        .map_err(db("prune processed journal entries"))?;
    let reconcile_runs = conn
        .prepare_cached(PRUNE_RECONCILE_RUNS)
        .and_then(|mut s| s.execute(params![before, batch]))
        .map_err(db("prune old reconciliation runs"))?;
    Ok(Pruned {
        delivery_attempts: delivery_attempts as u64,
        alert_episodes: alert_episodes as u64,
        audit: audit as u64,
        outbox_items: outbox_items as u64,
        journal: journal as u64,
        reconcile_runs: reconcile_runs as u64,
    })
}

#[cfg(test)]
mod tests {
    use crate::alerts::{AlertNotice, AlertObservation};
    use crate::{SqliteStore, Store};
    use rusqlite::params;

    fn obs(rule: &str, subject: &str) -> AlertObservation {
        AlertObservation {
            rule: rule.into(),
            subject: subject.into(),
            value: 1.0,
            summary: "s".into(),
            since: 0,
        }
    }

    async fn count(store: &SqliteStore, table: &'static str) -> i64 {
        store
            .read(move |c| {
                c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                    .map_err(super::db("count"))
            })
            .await
            .expect("count")
    }

    /// Pruning runs every hour over tables that grow with traffic: every statement must find
    /// its rows and check its references by index, never by scanning.
    #[test]
    fn prune_statements_use_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("concord.db");
        drop(SqliteStore::open(&path).expect("open"));
        let conn = rusqlite::Connection::open(&path).expect("conn");
        for (sql, index) in [
            (super::PRUNE_AUDIT, "audit_at"),
            (super::PRUNE_OUTBOX, "outbox_done"),
            (super::PRUNE_JOURNAL, "journal_received"),
            (super::PRUNE_RECONCILE_RUNS, "reconcile_runs_finished"),
        ] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("explain")
                .query_map(params![1_000, 10], |r| r.get::<_, String>(3))
                .expect("plan")
                .collect::<rusqlite::Result<_>>()
                .expect("plan rows");
            let plan = plan.join("\n");
            assert!(plan.contains(index), "{index}: {plan}");
            assert!(!plan.contains("SCAN"), "no full scan: {plan}");
        }
    }

    /// Old history goes, recent history and anything still open or owed stays; a backlog is
    /// pruned in batches.
    #[tokio::test]
    async fn prunes_old_attempts_and_notified_resolved_episodes_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("concord.db")).expect("open");
        // Delivery attempts at t = 100, 200, 300, 400, 5000.
        store
            .write(|c, _| {
                for at in [100i64, 200, 300, 400, 5000] {
                    c.execute(
                        "INSERT INTO delivery_attempts (item_id, dest, kind, key, op, at, outcome)
                         VALUES (1, 'erp', 'order', 'web/1', 'create', ?1, 'delivered')",
                        params![at],
                    )
                    .map_err(super::db("insert attempt"))?;
                }
                Ok(())
            })
            .await
            .expect("attempts");
        // Episodes: resolved and notified at 1000 (old), resolved at 1000 but its resolution
        // not yet delivered (owed), resolved and notified at 9000 (recent), still open.
        for (rule, resolve_at, notify) in [
            ("old", Some(1000), true),
            ("owed", Some(1000), false),
            ("recent", Some(9000), true),
            ("open", None, true),
        ] {
            let e = store
                .observe_alert(obs(rule, ""), 10)
                .await
                .expect("observe");
            store
                .mark_alert_notified(e.id, AlertNotice::Firing, 20)
                .await
                .expect("firing notified");
            if let Some(at) = resolve_at {
                store.resolve_alert(rule, "", at).await.expect("resolve");
                if notify {
                    store
                        .mark_alert_notified(e.id, AlertNotice::Resolved, at)
                        .await
                        .expect("resolved notified");
                }
            }
        }

        let first = store.prune_history(4000, 3).await.expect("prune");
        assert_eq!((first.delivery_attempts, first.alert_episodes), (3, 1));
        let second = store.prune_history(4000, 3).await.expect("prune");
        assert_eq!((second.delivery_attempts, second.alert_episodes), (1, 0));
        // The alert bookkeeping wrote no audit, outbox or journal rows to prune.
        let third = store.prune_history(4000, 3).await.expect("prune");
        assert_eq!(third, crate::Pruned::default());
        assert_eq!(
            count(&store, "delivery_attempts").await,
            1,
            "the recent one stays"
        );
        let left: Vec<String> = store
            .alert_episodes(false, 10)
            .await
            .expect("episodes")
            .into_iter()
            .map(|e| e.rule)
            .collect();
        let mut left_sorted = left.clone();
        left_sorted.sort();
        assert_eq!(left_sorted, ["open", "owed", "recent"], "{left:?}");
    }
}

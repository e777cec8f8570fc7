//! Retention of history tables that otherwise grow without limit: `delivery_attempts` (one row
//! per delivery attempt, written by `settle`) and resolved `alert_episodes`. The engine calls
//! [`prune`] periodically with `now - [store] retention`.
//!
//! Must never delete anything still owed or still live: an open alert episode, or a resolved one
//! whose resolution notification has not been delivered, stays whatever its age. The journal,
//! entities, outbox, dead letters, the ledger and the order lifecycle are not touched here.

use super::codec::db;
use crate::{Pruned, Result};
use concord_core::Millis;
use rusqlite::{params, Connection};

/// Delete delivery attempts made before `before` and alert episodes resolved (and notified)
/// before `before`, at most `batch` rows of each (the writer is shared: a large backlog is
/// pruned over several calls).
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
    Ok(Pruned {
        delivery_attempts: delivery_attempts as u64,
        alert_episodes: alert_episodes as u64,
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

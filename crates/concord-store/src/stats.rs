//! The figures of [`Store::stats`](crate::Store::stats) assembled from counted groups, shared by
//! both backends: the maintained counters (`stats_counts` on SQLite, summed `stats_deltas` on
//! PostgreSQL) and the fresh `COUNT(*)`s of [`Store::recount_stats`](crate::Store::recount_stats)
//! both come as rows of (table, destination, state, count), so one function turns either into a
//! [`StoreStats`] and the two can be compared exactly.
//!
//! Also the SQL both backends share to count those groups from the rows themselves: the
//! migrations' backfill, `recount_stats` and `concord store copy`'s rebuild run it.
//!
//! This module must never query a database itself, and never treat a negative count (a counter
//! that drifted below its rows) as anything but an error.

use crate::codec;
use crate::{ItemState, QueueStats, Result, StoreStats};
use concord_core::Millis;
use std::collections::BTreeMap;

/// Every counted group, from the rows themselves: (tbl, dest, state, n). `dest` is '' for the
/// journal (state = status) and for dead letters. Cost grows with the tables: for migrations,
/// rebuilds and checks, never for a loop.
pub(crate) const COUNT_ROWS_SQL: &str = "
    SELECT 'journal' AS tbl, '' AS dest, status AS state, COUNT(*) AS n
        FROM journal GROUP BY status
    UNION ALL
    SELECT 'outbox', dest, state, COUNT(*) FROM outbox GROUP BY dest, state
    UNION ALL
    SELECT 'dead_letters', '', state, COUNT(*) FROM dead_letters GROUP BY state";

/// The oldest unfinished item of every destination, from the rows (a scan of the unfinished
/// items): `recount_stats`' reference for the index-served figure of `stats`.
pub(crate) const OLDEST_FROM_ROWS_SQL: &str = "
    SELECT dest, MIN(captured_at) FROM outbox
     WHERE state IN ('pending', 'inflight', 'parked') GROUP BY dest";

/// One counted group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub tbl: String,
    pub dest: String,
    pub state: String,
    pub n: i64,
}

/// The destinations with at least one unfinished (pending, in-flight or parked) item.
pub(crate) fn unfinished_dests(groups: &[Group]) -> Vec<String> {
    let mut dests: Vec<String> = groups
        .iter()
        .filter(|g| {
            g.tbl == "outbox"
                && g.n > 0
                && matches!(g.state.as_str(), "pending" | "inflight" | "parked")
        })
        .map(|g| g.dest.clone())
        .collect();
    dests.sort();
    dests.dedup();
    dests
}

/// [`StoreStats`] from counted groups (groups of 0 are skipped; a negative one is an error) and
/// the oldest unfinished `captured_at` per destination.
pub(crate) fn assemble(groups: Vec<Group>, oldest: Vec<(String, Millis)>) -> Result<StoreStats> {
    let mut stats = StoreStats::default();
    let mut queues: BTreeMap<String, QueueStats> = BTreeMap::new();
    for g in groups {
        let n = codec::count(g.n)?;
        if n == 0 {
            continue;
        }
        match g.tbl.as_str() {
            "journal" => {
                stats.journal_total += n;
                match g.state.as_str() {
                    "pending" => stats.journal_pending += n,
                    "rejected" => stats.journal_rejected += n,
                    _ => {}
                }
            }
            "dead_letters" => {
                if g.state == "open" {
                    stats.dead_letters_open += n;
                }
            }
            "outbox" => {
                let q = queues.entry(g.dest.clone()).or_insert_with(|| QueueStats {
                    dest: g.dest.clone(),
                    ..QueueStats::default()
                });
                match codec::item_state(&g.state)? {
                    ItemState::Pending => q.pending += n,
                    ItemState::Inflight => q.inflight += n,
                    ItemState::Parked => q.parked += n,
                    ItemState::Done => q.done += n,
                    ItemState::Dead => q.dead += n,
                }
            }
            other => {
                return Err(codec::decode_err(format_args!(
                    "a stats counter of unknown table {other}"
                )))
            }
        }
    }
    for (dest, at) in oldest {
        if let Some(q) = queues.get_mut(&dest) {
            q.oldest_captured_at = Some(at);
        }
    }
    stats.queues = queues.into_values().collect();
    Ok(stats)
}

//! `Store::stats` on PostgreSQL: the maintained counters of schema migration 15 (`stats_deltas`,
//! appended to by statement-level triggers on the journal, the outbox and the dead letters),
//! summed per group, plus one index seek per destination for its oldest unfinished item; the
//! fresh counts of `Store::recount_stats`; and the fold that keeps the delta rows few.
//!
//! Folding replaces the deltas it deletes by their sums in one statement, so a sum never
//! changes: rows appended meanwhile by other transactions are not visible to it and stay, and
//! two folds at once never delete (or re-add) the same row twice. This module must never
//! update a counter row in place (that row lock would serialise every writer), and never write
//! a counter that was not derived from the deltas or from the rows themselves.

use super::codec::{db, get};
use crate::stats::{self, Group};
use crate::{Result, StoreStats};
use concord_core::Millis;
use tokio_postgres::GenericClient;

/// When `stats` summed more delta rows than this, the store folds them right after.
pub(crate) const FOLD_ABOVE: i64 = 512;

/// Replace every visible delta row by one row per group with a non-zero sum.
pub(crate) const FOLD_SQL: &str = "
    WITH gone AS (DELETE FROM stats_deltas RETURNING tbl, dest, state, n)
    INSERT INTO stats_deltas (tbl, dest, state, n)
    SELECT tbl, dest, state, SUM(n)::BIGINT FROM gone
     GROUP BY tbl, dest, state HAVING SUM(n) <> 0";

/// Throw every delta away and count the rows afresh (`concord store copy`, after its `COPY`s,
/// inside its transaction that holds every table locked).
pub(crate) fn rebuild_sql() -> String {
    format!(
        "DELETE FROM stats_deltas;
         INSERT INTO stats_deltas (tbl, dest, state, n) {};",
        stats::COUNT_ROWS_SQL
    )
}

fn group(row: &tokio_postgres::Row) -> Result<Group> {
    Ok(Group {
        tbl: get(row, 0)?,
        dest: get(row, 1)?,
        state: get(row, 2)?,
        n: get(row, 3)?,
    })
}

/// Every figure from the snapshot `c` is (call inside `PgStore::read_tx`), and how many delta
/// rows were summed (the caller folds when there are more than [`FOLD_ABOVE`]).
pub(crate) async fn stats<C: GenericClient + Sync>(c: &C) -> Result<(StoreStats, i64)> {
    let rows = c
        .query(
            "SELECT tbl, dest, state, SUM(n)::BIGINT, COUNT(*) FROM stats_deltas
              GROUP BY tbl, dest, state HAVING SUM(n) <> 0",
            &[],
        )
        .await
        .map_err(db("sum stats counters"))?;
    let mut summed = 0i64;
    let mut counted = Vec::with_capacity(rows.len());
    for r in &rows {
        summed = summed.saturating_add(get::<i64>(r, 4)?);
        counted.push(group(r)?);
    }
    let dests = stats::unfinished_dests(&counted);
    // One MIN per destination, each served by `outbox_open_captured` (a single index seek).
    let oldest = c
        .query(
            r#"SELECT u.d, (SELECT MIN(o.captured_at) FROM outbox o
                           WHERE o.dest = u.d COLLATE "C"
                             AND o.state IN ('pending', 'inflight', 'parked'))
                 FROM unnest($1::text[]) AS u(d)"#,
            &[&dests],
        )
        .await
        .map_err(db("oldest unfinished item"))?;
    let mut firsts = Vec::with_capacity(oldest.len());
    for r in &oldest {
        let dest: String = get(r, 0)?;
        let at: Option<Millis> = get(r, 1)?;
        if let Some(at) = at {
            firsts.push((dest, at));
        }
    }
    Ok((stats::assemble(counted, firsts)?, summed))
}

/// The same figures counted from the rows (`Store::recount_stats`): cost grows with history.
pub(crate) async fn recount<C: GenericClient + Sync>(c: &C) -> Result<StoreStats> {
    let rows = c
        .query(stats::COUNT_ROWS_SQL, &[])
        .await
        .map_err(db("count journal, outbox and dead letters"))?;
    let counted = rows.iter().map(group).collect::<Result<Vec<_>>>()?;
    let oldest = c
        .query(stats::OLDEST_FROM_ROWS_SQL, &[])
        .await
        .map_err(db("oldest unfinished item"))?;
    let mut firsts = Vec::with_capacity(oldest.len());
    for r in &oldest {
        firsts.push((get::<String>(r, 0)?, get::<Millis>(r, 1)?));
    }
    stats::assemble(counted, firsts)
}

/// Fold the deltas (see the module docs); returns how many rows (one per group) it wrote.
pub(crate) async fn fold<C: GenericClient + Sync>(c: &C) -> Result<u64> {
    c.execute(FOLD_SQL, &[])
        .await
        .map_err(db("fold stats counters"))
}

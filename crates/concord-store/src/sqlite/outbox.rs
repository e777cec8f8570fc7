//! Delivery on SQLite: claiming due outbox items under a lease and settling their outcomes
//! (`Store::claim`, `settle`, `recover_expired`).
//!
//! A claim never lets an item overtake an unfinished earlier item of its key, nor two items of
//! a key be in flight ([`claim_sql`]). A settlement applies only while its item is in flight
//! under the claim's token, and everything it implies — the attempt log, an order's acceptance
//! (its reservations and its lifecycle row), the written hash, the xref, a dead letter, a
//! refused amend's fallback ([`super::amend`]) — commits with it; what it implies is
//! [`crate::sync::settle`]'s decision.
//!
//! Runs on the writer thread inside the job's savepoint; must never open, commit or roll back a
//! transaction itself.

use super::amend::amend_refused;
use super::apply::insert_xref;
use super::codec::{self, db};
use super::writer::WriterCtx;
use super::{ledger, orders, writes};
use crate::sync::settle::{self as decide, Skipped};
use crate::{Claimed, ItemId, ItemState, Result, Settlement, Xref};
use concord_core::Millis;
use rusqlite::{params, Connection, OptionalExtension};

/// Due pending items of `?1` at `?2` in enqueue order, minus any with an earlier unfinished item
/// of its key (no overtaking) or an in-flight one (one in flight per key); at most `?3`. Since an
/// earlier pending item of the key blocks the later ones, one claim never returns two items of a
/// key.
pub(crate) fn claim_sql() -> String {
    format!(
        "SELECT {cols} FROM outbox o
         WHERE o.dest = ?1 AND o.state = 'pending' AND o.next_at <= ?2
           AND o.flow NOT IN (SELECT flow FROM paused_flows)
           AND NOT EXISTS (
               SELECT 1 FROM outbox p
               WHERE p.dest = o.dest AND p.kind = o.kind AND p.key = o.key
                 AND p.state IN ('pending', 'inflight', 'parked')
                 AND (p.id < o.id OR p.state = 'inflight'))
         ORDER BY o.id LIMIT ?3",
        cols = codec::ITEM_COLS
            .split(", ")
            .map(|c| format!("o.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub(crate) fn claim(
    conn: &Connection,
    ctx: &mut WriterCtx,
    dest: &str,
    limit: usize,
    now: Millis,
    lease_until: Millis,
) -> Result<Vec<Claimed>> {
    let sql = claim_sql();
    let raws = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(params![dest, now, codec::limit(limit)], codec::raw_item)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("select items to claim"))?;
    let mut claimed = Vec::with_capacity(raws.len());
    for raw in raws {
        let mut item = codec::outbox_item(conn, raw)?;
        let token = ctx.next_token();
        conn.prepare_cached(
            "UPDATE outbox SET state = 'inflight', token = ?2, lease_until = ?3, updated_at = ?4
             WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![item.id, token, lease_until, now]))
        .map_err(db("mark item in flight"))?;
        item.state = ItemState::Inflight;
        item.updated_at = now;
        claimed.push(crate::Claimed { item, token });
    }
    Ok(claimed)
}

/// A claimed item as its settlement reads it (still in flight under the settlement's token).
pub(crate) struct Held {
    pub(crate) dest: String,
    pub(crate) kind: String,
    pub(crate) key: String,
    pub(crate) op: String,
    pub(crate) payload: String,
    pub(crate) hash: String,
    pub(crate) flow: String,
    pub(crate) attempts: i64,
    pub(crate) journal_id: Option<i64>,
    pub(crate) captured_at: Millis,
    /// When the item was claimed (the attempt's start).
    pub(crate) claimed_at: Millis,
}

pub(crate) fn settle(
    conn: &Connection,
    ctx: &mut WriterCtx,
    outcomes: &[Settlement],
) -> Result<usize> {
    let mut applied = 0;
    for outcome in outcomes {
        let (id, token) = decide::target(outcome);
        // The token check is the whole point: a worker whose lease expired (and whose item was
        // re-claimed by another) settles nothing.
        let held: Option<Held> = conn
            .prepare_cached(
                "SELECT dest, kind, key, op, payload, hash, flow, attempts, journal_id,
                        captured_at, updated_at
                 FROM outbox WHERE id = ?1 AND state = 'inflight' AND token = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![id, token], |r| {
                    Ok(Held {
                        dest: r.get(0)?,
                        kind: r.get(1)?,
                        key: r.get(2)?,
                        op: r.get(3)?,
                        payload: r.get(4)?,
                        hash: r.get(5)?,
                        flow: r.get(6)?,
                        attempts: r.get(7)?,
                        journal_id: r.get(8)?,
                        captured_at: r.get(9)?,
                        claimed_at: r.get(10)?,
                    })
                })
                .optional()
            })
            .map_err(db("read claimed item"))?;
        let Some(held) = held else { continue };
        // Every applied settlement is one delivery attempt in the log (an order's history).
        let attempt = decide::attempt(outcome, held.claimed_at);
        orders::log_attempt(
            conn,
            id,
            &held.dest,
            &held.kind,
            &held.key,
            &held.op,
            attempt.at,
            attempt.outcome,
            attempt.error,
        )?;
        match outcome {
            Settlement::Delivered {
                external_id,
                version,
                at,
                ..
            } => delivered(
                conn,
                ctx,
                id,
                &held,
                external_id.as_deref(),
                version.as_deref(),
                *at,
            )?,
            Settlement::Retry {
                next_at,
                error,
                count,
                ..
            } => {
                conn.prepare_cached(
                    "UPDATE outbox SET state = 'pending', token = NULL, lease_until = NULL,
                         next_at = ?2, last_error = ?3, attempts = attempts + ?4
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, next_at, error, i64::from(*count)]))
                .map_err(db("schedule retry"))?;
            }
            Settlement::Dead { reason, at, .. } => dead_letter(conn, id, &held, reason, *at)?,
            Settlement::AmendRefused {
                reason,
                fallback,
                at,
                ..
            } => amend_refused(conn, ctx, id, &held, reason, *fallback, *at)?,
            Settlement::Skipped { reason, at, .. } => {
                finish_item(conn, id, "done", None, *at)?;
                let skipped = Skipped {
                    id,
                    dest: &held.dest,
                    kind: codec::kind(&held.kind)?,
                    key: &held.key,
                    op: &held.op,
                    flow: &held.flow,
                    reason,
                    at: *at,
                };
                writes::record_audit(conn, &[skipped.event()])?;
            }
        }
        applied += 1;
    }
    Ok(applied)
}

/// A delivered item: done; for an order the destination now has, its acceptance; the written
/// hash; the xref of the record at the destination (re-pointed by an order's create).
fn delivered(
    conn: &Connection,
    ctx: &mut WriterCtx,
    id: ItemId,
    held: &Held,
    external_id: Option<&str>,
    version: Option<&str>,
    at: Millis,
) -> Result<()> {
    finish_item(conn, id, "done", None, at)?;
    if decide::accepts_order(&held.kind, &held.op) {
        ledger::accept::mark_accepted(conn, ctx, &held.key, &held.dest, at, version)?;
        orders::accept(conn, &held.key, &held.dest, at)?;
    }
    conn.prepare_cached(
        "INSERT INTO hashes (dest, kind, key, planned, written) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (dest, kind, key) DO UPDATE SET written = excluded.written",
    )
    .and_then(|mut s| s.execute(params![held.dest, held.kind, held.key, held.hash]))
    .map_err(db("record written hash"))?;
    if let Some(external_id) = external_id {
        if decide::repoints_xref(&held.kind, &held.op) {
            conn.prepare_cached(
                "DELETE FROM xref WHERE endpoint = ?1 AND kind = ?2 AND key = ?3
                   AND external_id <> ?4",
            )
            .and_then(|mut s| s.execute(params![held.dest, held.kind, held.key, external_id]))
            .map_err(db("re-point an order's xref"))?;
        }
        let xref = Xref {
            endpoint: held.dest.clone(),
            kind: codec::kind(&held.kind)?,
            external_id: external_id.to_owned(),
            key: held.key.clone(),
        };
        insert_xref(conn, &xref, at)?;
    }
    Ok(())
}

/// Move a held item to the dead-letter queue with `reason` (nothing was written).
pub(crate) fn dead_letter(
    conn: &Connection,
    id: ItemId,
    held: &Held,
    reason: &str,
    at: Millis,
) -> Result<()> {
    finish_item(conn, id, "dead", Some(reason), at)?;
    conn.prepare_cached(
        "INSERT INTO dead_letters (direction, endpoint, kind, key, op, flow, payload,
             reason, attempts, journal_id, item_id, state, created_at, updated_at)
         VALUES ('outbound', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'open', ?11, ?11)",
    )
    .and_then(|mut s| {
        s.execute(params![
            held.dest,
            held.kind,
            held.key,
            held.op,
            held.flow,
            held.payload,
            reason,
            held.attempts,
            held.journal_id,
            id,
            at
        ])
    })
    .map_err(db("dead-letter item"))?;
    // Nothing was written: forget the plan so an equal state later is sent again.
    conn.prepare_cached(
        "UPDATE hashes SET planned = written WHERE dest = ?1 AND kind = ?2 AND key = ?3",
    )
    .and_then(|mut s| s.execute(params![held.dest, held.kind, held.key]))
    .map_err(db("reset planned hash"))?;
    Ok(())
}

/// End an item's attempt in `state` (`done`, `dead`), keeping its last error unless `error`
/// says more.
pub(crate) fn finish_item(
    conn: &Connection,
    id: ItemId,
    state: &str,
    error: Option<&str>,
    at: Millis,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET state = ?2, token = NULL, lease_until = NULL,
             last_error = COALESCE(?3, last_error), updated_at = ?4
         WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id, state, error, at]))
    .map_err(db("finish item"))?;
    Ok(())
}

pub(crate) fn recover_expired(conn: &Connection, before: Millis) -> Result<usize> {
    conn.prepare_cached(
        "UPDATE outbox SET state = 'pending', token = NULL, lease_until = NULL
         WHERE state = 'inflight' AND lease_until < ?1",
    )
    .and_then(|mut s| s.execute([before]))
    .map_err(db("recover expired leases"))
}

#[cfg(test)]
mod tests {
    use super::claim_sql;
    use crate::SqliteStore;
    use rusqlite::Connection;

    /// The claim query must stay index-driven however many done rows pile up: done rows are
    /// kept, so a scan of `outbox` would grow without bound.
    #[test]
    fn claim_query_uses_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("concord.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        let sql = format!("EXPLAIN QUERY PLAN {}", claim_sql());
        let plan: Vec<String> = conn
            .prepare(&sql)
            .unwrap()
            .query_map(rusqlite::params!["shop", 0, 10], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("outbox_dest_state"), "plan: {plan}");
        assert!(plan.contains("outbox_open_key"), "plan: {plan}");
        assert!(!plan.contains("SCAN"), "no full scan: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
    }
}

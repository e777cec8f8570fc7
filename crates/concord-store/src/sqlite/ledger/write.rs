//! Writing a ledger plan on SQLite: each [`Step`] of a [`crate::ledger`] decision as the
//! statement that stores it, in order, plus the dirty-SKU marks.
//!
//! The invariant this file keeps, whatever the order of calls: at every position, `held` is the
//! sum of the unreleased non-backorder lines there and `backordered` the sum of the unreleased
//! backorder lines. Every line step moves its position by [`Step::position_change`] in the same
//! job, through [`add_to_position`]; a release is conditional on `released_at IS NULL` (and a
//! re-hold on it being set), so each contribution is added once and removed once.
//!
//! Must never: decide what to write (that is the plan's), skip a step whose guard finds the row
//! changed (the single writer makes that impossible; if it happens the job fails and writes
//! nothing), or compute a figure in SQL.

use super::super::codec::{self, db};
use super::super::writer::WriterCtx;
use crate::ledger::{PositionChange, Step};
use crate::{DirtySku, Result, StoreError};
use concord_core::Millis;
use rusqlite::{params, Connection, OptionalExtension};

/// Write `steps` in order, at `now`.
pub(crate) fn write(
    conn: &Connection,
    ctx: &mut WriterCtx,
    steps: &[Step],
    now: Millis,
) -> Result<()> {
    for step in steps {
        write_step(conn, ctx, step, now)?;
        if let Some(change) = step.position_change()? {
            add_to_position(conn, &change, now)?;
        }
    }
    Ok(())
}

/// Run one statement; `what` names it for errors. Returns the rows changed.
fn exec(conn: &Connection, sql: &str, args: impl rusqlite::Params, what: &str) -> Result<usize> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute(args))
        .map_err(db(what))
}

/// A conditional write changed nothing: the row is not as the decision saw it.
fn moved(what: &str, id: &str, seq: i64) -> StoreError {
    StoreError::Db(format!(
        "{what}: line {seq} of reservation {id} changed under the decision"
    ))
}

fn write_step(conn: &Connection, ctx: &mut WriterCtx, step: &Step, now: Millis) -> Result<()> {
    match step {
        Step::InsertReservation(r) => {
            exec(
                conn,
                "INSERT INTO reservations
                     (id, channel, client_key, state, source, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    r.id,
                    r.channel,
                    r.client_key,
                    codec::reservation_state_str(r.state),
                    r.source,
                    r.created_at,
                    r.expires_at
                ],
                "insert reservation",
            )?;
        }
        Step::InsertLine(l) => {
            exec(
                conn,
                "INSERT INTO reservation_lines
                     (reservation_id, seq, sku, location, quantity, backorder)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    l.reservation_id,
                    l.seq,
                    l.sku,
                    l.location,
                    l.quantity,
                    l.backorder
                ],
                "insert reservation line",
            )?;
        }
        Step::ReleaseLine(l) => {
            let what = "release reservation line";
            let changed = exec(
                conn,
                "UPDATE reservation_lines SET released_at = ?3
                 WHERE reservation_id = ?1 AND seq = ?2 AND released_at IS NULL",
                params![l.reservation_id, l.seq, now],
                what,
            )?;
            if changed == 0 {
                return Err(moved(what, &l.reservation_id, l.seq));
            }
        }
        Step::HoldAgain(l) => {
            let what = "hold a released line again";
            let changed = exec(
                conn,
                "UPDATE reservation_lines SET released_at = NULL
                 WHERE reservation_id = ?1 AND seq = ?2 AND released_at IS NOT NULL",
                params![l.reservation_id, l.seq],
                what,
            )?;
            if changed == 0 {
                return Err(moved(what, &l.reservation_id, l.seq));
            }
        }
        Step::ShrinkLine { line, by } => {
            exec(
                conn,
                "UPDATE reservation_lines SET quantity = quantity - ?3
                 WHERE reservation_id = ?1 AND seq = ?2",
                params![line.reservation_id, line.seq, by],
                "shrink reservation line",
            )?;
        }
        Step::DeleteLine(l) => {
            exec(
                conn,
                "DELETE FROM reservation_lines WHERE reservation_id = ?1 AND seq = ?2",
                params![l.reservation_id, l.seq],
                "remove reservation line",
            )?;
        }
        Step::Commit { id, order } => {
            exec(
                conn,
                "UPDATE reservations SET state = 'committed', order_key = ?2, expires_at = NULL,
                     committed_at = ?3
                 WHERE id = ?1",
                params![id, order, now],
                "commit reservation",
            )?;
        }
        Step::End { id, to } => {
            exec(
                conn,
                "UPDATE reservations SET state = ?2, ended_at = ?3, expires_at = NULL
                 WHERE id = ?1",
                params![id, codec::reservation_state_str(*to), now],
                "end reservation",
            )?;
        }
        Step::FinishIfReleased(id) => {
            exec(
                conn,
                "UPDATE reservations SET state = 'released', ended_at = ?2, expires_at = NULL
                 WHERE id = ?1 AND state IN ('held', 'committed')
                   AND NOT EXISTS (SELECT 1 FROM reservation_lines
                                   WHERE reservation_id = ?1 AND released_at IS NULL)",
                params![id, now],
                "mark reservation released",
            )?;
        }
        Step::Revive(id) => {
            exec(
                conn,
                "UPDATE reservations SET state = 'committed', ended_at = NULL
                 WHERE id = ?1 AND state = 'released'",
                [id],
                "take an order's released reservation back",
            )?;
        }
        Step::StampAcceptance { id, at, version } => {
            exec(
                conn,
                "UPDATE reservations SET accepted_at = ?2, accepted_version = ?3
                 WHERE id = ?1 AND accepted_at IS NULL",
                params![id, at, version],
                "mark reservations accepted",
            )?;
        }
        Step::ClearAcceptance(id) => {
            exec(
                conn,
                "UPDATE reservations SET accepted_at = NULL, accepted_version = NULL WHERE id = ?1",
                [id],
                "clear a reservation's acceptance",
            )?;
        }
        Step::MarkDirty(sku) => mark_dirty(conn, ctx, sku, now)?,
    }
    Ok(())
}

/// Apply `change` to its position, creating it (no stock of its own yet) when it does not
/// exist — unless it must exist already, which fails the job (reserving created the position:
/// without it the invariant cannot hold). The sums are checked by
/// [`crate::ledger::add_to_position`].
fn add_to_position(conn: &Connection, change: &PositionChange<'_>, now: Millis) -> Result<()> {
    let current: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT held, backordered FROM stock_levels WHERE sku = ?1 AND location = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![change.sku, change.location], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })
        .map_err(db(change.what))?;
    if change.must_exist && current.is_none() {
        return Err(StoreError::Db(format!(
            "ledger position ({}, {}) of reservation {} is missing",
            change.sku, change.location, change.reservation_id
        )));
    }
    let (held, backordered) = crate::ledger::add_to_position(current, change)?;
    exec(
        conn,
        "INSERT INTO stock_levels
             (sku, location, on_hand, committed, held, backordered, incoming, version, updated_at)
         VALUES (?1, ?2, 0, 0, ?3, ?4, '[]', NULL, ?5)
         ON CONFLICT (sku, location) DO UPDATE SET held = excluded.held,
             backordered = excluded.backordered, updated_at = excluded.updated_at",
        params![change.sku, change.location, held, backordered, now],
        change.what,
    )?;
    Ok(())
}

/// Mark `sku` dirty with a fresh generation; the first unresolved mark's time is kept, so the
/// oldest-first listing never starves a SKU that keeps changing.
pub(crate) fn mark_dirty(
    conn: &Connection,
    ctx: &mut WriterCtx,
    sku: &str,
    now: Millis,
) -> Result<()> {
    let generation = ctx.next_generation();
    exec(
        conn,
        "INSERT INTO ats_dirty (sku, generation, marked_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (sku) DO UPDATE SET generation = excluded.generation",
        params![sku, generation, now],
        "mark SKU dirty",
    )?;
    Ok(())
}

/// Clear a dirty mark unless it was set again since the planner read it.
pub(crate) fn clean(conn: &Connection, dirty: &DirtySku) -> Result<()> {
    exec(
        conn,
        "DELETE FROM ats_dirty WHERE sku = ?1 AND generation = ?2",
        params![dirty.sku, dirty.generation],
        "clear dirty SKU",
    )?;
    Ok(())
}

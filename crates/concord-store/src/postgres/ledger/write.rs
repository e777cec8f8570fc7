//! Writing a ledger plan on PostgreSQL: each [`Step`] of a [`crate::ledger`] decision as the
//! statement that stores it, in order, plus the dirty-SKU marks.
//!
//! The invariant this file keeps: at every position, `held` is the sum of the unreleased
//! non-backorder lines there and `backordered` the sum of the unreleased backorder lines. Every
//! line step moves its position by [`Step::position_change`] in the same transaction, through
//! [`crate::ledger::add_to_position`] (checked Rust arithmetic; the new figures are written as
//! values, never computed in SQL). Every write is conditional on the row being as the decision
//! saw it (a release on `released_at IS NULL`, a shrink on the quantity it read, a commit on
//! `held`, …); a guard that finds the row changed fails the transaction with
//! [`StoreError::Conflict`] — the transaction helper runs it again on fresh rows.
//!
//! Must never: decide what to write (that is the plan's), skip a step whose guard fails, or
//! compute a figure in SQL. Runs inside the caller's transaction with the locks of
//! [`super::lock`] held; never opens or ends one.

use super::super::codec::{self, db, get};
use super::super::next_token;
use crate::ledger::{PositionChange, Step};
use crate::{DirtySku, Result, StoreError};
use concord_core::Millis;
use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

/// Write `steps` in order, at `now`.
pub(crate) async fn write(tx: &Transaction<'_>, steps: &[Step], now: Millis) -> Result<()> {
    for step in steps {
        write_step(tx, step, now).await?;
        if let Some(change) = step.position_change()? {
            add_to_position(tx, &change, now).await?;
        }
    }
    Ok(())
}

/// Run one statement; `what` names it for errors. Returns the rows changed.
async fn exec(
    tx: &Transaction<'_>,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
    what: &str,
) -> Result<u64> {
    tx.execute(sql, args).await.map_err(db(what))
}

/// A conditional write changed nothing: the row is not as the decision saw it.
fn moved(what: &str, row: &str) -> StoreError {
    StoreError::Conflict(format!("{what}: {row} changed under the decision"))
}

/// `changed` must be 1.
fn guarded(changed: u64, what: &str, row: impl FnOnce() -> String) -> Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(moved(what, &row()))
    }
}

async fn write_step(tx: &Transaction<'_>, step: &Step, now: Millis) -> Result<()> {
    let line_name = |id: &str, seq: i64| format!("line {seq} of reservation {id}");
    match step {
        Step::InsertReservation(r) => {
            exec(
                tx,
                "INSERT INTO reservations
                     (id, channel, client_key, state, source, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &r.id,
                    &r.channel,
                    &r.client_key,
                    &codec::reservation_state_str(r.state),
                    &r.source,
                    &r.created_at,
                    &r.expires_at,
                ],
                "insert reservation",
            )
            .await?;
        }
        Step::InsertLine(l) => {
            exec(
                tx,
                "INSERT INTO reservation_lines
                     (reservation_id, seq, sku, location, quantity, backorder)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &l.reservation_id,
                    &l.seq,
                    &l.sku,
                    &l.location,
                    &l.quantity,
                    &i64::from(l.backorder),
                ],
                "insert reservation line",
            )
            .await?;
        }
        Step::ReleaseLine(l) => {
            let what = "release reservation line";
            let changed = exec(
                tx,
                "UPDATE reservation_lines SET released_at = $3
                 WHERE reservation_id = $1 AND seq = $2 AND released_at IS NULL",
                &[&l.reservation_id, &l.seq, &now],
                what,
            )
            .await?;
            guarded(changed, what, || line_name(&l.reservation_id, l.seq))?;
        }
        Step::HoldAgain(l) => {
            let what = "hold a released line again";
            let changed = exec(
                tx,
                "UPDATE reservation_lines SET released_at = NULL
                 WHERE reservation_id = $1 AND seq = $2 AND released_at IS NOT NULL",
                &[&l.reservation_id, &l.seq],
                what,
            )
            .await?;
            guarded(changed, what, || line_name(&l.reservation_id, l.seq))?;
        }
        Step::ShrinkLine { line, by } => {
            let what = "shrink reservation line";
            let quantity = line.quantity.checked_sub(*by).ok_or_else(|| {
                StoreError::OutOfRange(format!(
                    "{}: {} − {by}",
                    line_name(&line.reservation_id, line.seq),
                    line.quantity
                ))
            })?;
            let changed = exec(
                tx,
                "UPDATE reservation_lines SET quantity = $3
                 WHERE reservation_id = $1 AND seq = $2 AND quantity = $4
                   AND released_at IS NULL",
                &[&line.reservation_id, &line.seq, &quantity, &line.quantity],
                what,
            )
            .await?;
            guarded(changed, what, || line_name(&line.reservation_id, line.seq))?;
        }
        Step::DeleteLine(l) => {
            let what = "remove reservation line";
            let changed = exec(
                tx,
                "DELETE FROM reservation_lines
                 WHERE reservation_id = $1 AND seq = $2 AND quantity = $3
                   AND released_at IS NULL",
                &[&l.reservation_id, &l.seq, &l.quantity],
                what,
            )
            .await?;
            guarded(changed, what, || line_name(&l.reservation_id, l.seq))?;
        }
        Step::Commit { id, order } => {
            let what = "commit reservation";
            let changed = exec(
                tx,
                "UPDATE reservations SET state = 'committed', order_key = $2, expires_at = NULL,
                     committed_at = $3
                 WHERE id = $1 AND state = 'held'",
                &[id, order, &now],
                what,
            )
            .await?;
            guarded(changed, what, || format!("reservation {id}"))?;
        }
        Step::End { id, to } => {
            let what = "end reservation";
            let changed = exec(
                tx,
                "UPDATE reservations SET state = $2, ended_at = $3, expires_at = NULL
                 WHERE id = $1 AND state IN ('held', 'committed')",
                &[id, &codec::reservation_state_str(*to), &now],
                what,
            )
            .await?;
            guarded(changed, what, || format!("reservation {id}"))?;
        }
        Step::FinishIfReleased(id) => {
            // Conditional by design: the reservation's lines elsewhere decide. Exact, because
            // every writer of its lines holds its row lock (see `lock`).
            exec(
                tx,
                "UPDATE reservations SET state = 'released', ended_at = $2, expires_at = NULL
                 WHERE id = $1 AND state IN ('held', 'committed')
                   AND NOT EXISTS (SELECT 1 FROM reservation_lines
                                   WHERE reservation_id = $1 AND released_at IS NULL)",
                &[id, &now],
                "mark reservation released",
            )
            .await?;
        }
        Step::Revive(id) => {
            // A no-op for a reservation in any other state (the step's contract).
            exec(
                tx,
                "UPDATE reservations SET state = 'committed', ended_at = NULL
                 WHERE id = $1 AND state = 'released'",
                &[id],
                "take an order's released reservation back",
            )
            .await?;
        }
        Step::StampAcceptance { id, at, version } => {
            let what = "mark reservation accepted";
            let changed = exec(
                tx,
                "UPDATE reservations SET accepted_at = $2, accepted_version = $3
                 WHERE id = $1 AND accepted_at IS NULL",
                &[id, at, version],
                what,
            )
            .await?;
            guarded(changed, what, || format!("reservation {id}"))?;
        }
        Step::ClearAcceptance(id) => {
            exec(
                tx,
                "UPDATE reservations SET accepted_at = NULL, accepted_version = NULL
                 WHERE id = $1",
                &[id],
                "clear a reservation's acceptance",
            )
            .await?;
        }
        Step::MarkDirty(sku) => mark_dirty(tx, sku, now).await?,
    }
    Ok(())
}

/// Apply `change` to its position, creating it (no stock of its own yet) when it does not
/// exist — unless it must exist already, which fails the transaction. The caller holds the
/// SKU's lock, so the figures read here are the ones the new ones replace.
async fn add_to_position(
    tx: &Transaction<'_>,
    change: &PositionChange<'_>,
    now: Millis,
) -> Result<()> {
    let current = match tx
        .query_opt(
            "SELECT held, backordered FROM stock_levels WHERE sku = $1 AND location = $2",
            &[&change.sku, &change.location],
        )
        .await
        .map_err(db(change.what))?
    {
        Some(r) => Some((get::<i64>(&r, 0)?, get::<i64>(&r, 1)?)),
        None => None,
    };
    if change.must_exist && current.is_none() {
        return Err(StoreError::Db(format!(
            "ledger position ({}, {}) of reservation {} is missing",
            change.sku, change.location, change.reservation_id
        )));
    }
    let (held, backordered) = crate::ledger::add_to_position(current, change)?;
    exec(
        tx,
        "INSERT INTO stock_levels
             (sku, location, on_hand, committed, held, backordered, incoming, version, updated_at)
         VALUES ($1, $2, 0, 0, $3, $4, '[]', NULL, $5)
         ON CONFLICT (sku, location) DO UPDATE SET held = excluded.held,
             backordered = excluded.backordered, updated_at = excluded.updated_at",
        &[&change.sku, &change.location, &held, &backordered, &now],
        change.what,
    )
    .await?;
    Ok(())
}

/// Mark `sku` dirty with a fresh generation (from `concord_tokens`, unique across instances);
/// the first unresolved mark's time is kept, so the oldest-first listing never starves a SKU
/// that keeps changing.
pub(crate) async fn mark_dirty(tx: &Transaction<'_>, sku: &str, now: Millis) -> Result<()> {
    let generation = next_token(tx).await?;
    exec(
        tx,
        "INSERT INTO ats_dirty (sku, generation, marked_at) VALUES ($1, $2, $3)
         ON CONFLICT (sku) DO UPDATE SET generation = excluded.generation",
        &[&sku, &generation, &now],
        "mark SKU dirty",
    )
    .await?;
    Ok(())
}

/// Clear a dirty mark unless it was set again since the planner read it (a concurrent mark
/// changes the generation; the delete re-checks the row it waited for).
pub(crate) async fn clean(tx: &Transaction<'_>, dirty: &DirtySku) -> Result<()> {
    exec(
        tx,
        "DELETE FROM ats_dirty WHERE sku = $1 AND generation = $2",
        &[&dirty.sku, &dirty.generation],
        "clear dirty SKU",
    )
    .await?;
    Ok(())
}

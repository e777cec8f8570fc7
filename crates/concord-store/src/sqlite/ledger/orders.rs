//! Reservation transitions and an order's reservations on SQLite: commit, cancel, expiry, an
//! order's cancellation, its re-hold for cancel-and-replace and an edit's adjustment — the rows
//! loaded here, every choice made by [`crate::ledger::transitions`] and
//! [`crate::ledger::orders`].
//!
//! Runs on the writer thread inside the job's savepoint. Must never choose a reservation, a
//! line or a quantity here.

use super::super::codec::{self, db};
use super::super::writer::WriterCtx;
use super::{accept, lines_of, load_positions, order_reservations, reload, write};
use crate::ledger::orders::{self as decide, Adjust, Reheld};
use crate::ledger::transitions::{self, Cancel, Commit};
use crate::{AdjustOutcome, AdjustRequest, Reservation, ReservationState, Result, TransitionError};
use concord_core::Millis;
use rusqlite::{Connection, OptionalExtension};

/// Held reservations due to expire at `?1`. Without statistics SQLite would rather walk
/// `reservations_state`; the partial expiry index is the one that reads only what is due.
pub(crate) const DUE_RESERVATIONS: &str = "SELECT id FROM reservations
     INDEXED BY reservations_expiry
     WHERE state = 'held' AND expires_at <= ?1 ORDER BY expires_at, id";

fn state_of(conn: &Connection, id: &str) -> Result<Option<(ReservationState, Option<String>)>> {
    let raw: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT state, order_key FROM reservations WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(db("read reservation state"))?;
    raw.map(|(state, order)| Ok((codec::reservation_state(&state)?, order)))
        .transpose()
}

pub(crate) fn commit_reservation(
    conn: &Connection,
    ctx: &mut WriterCtx,
    id: &str,
    order: &str,
    now: Millis,
) -> Result<std::result::Result<Reservation, TransitionError>> {
    let current = state_of(conn, id)?;
    let current = current.as_ref().map(|(s, o)| (*s, o.as_deref()));
    match transitions::commit(current, order) {
        Err(refused) => Ok(Err(refused)),
        Ok(Commit::Unchanged) => Ok(Ok(reload(conn, id)?)),
        Ok(Commit::Commit) => {
            let commit = [crate::ledger::Step::Commit {
                id: id.to_owned(),
                order: order.to_owned(),
            }];
            write::write(conn, ctx, &commit, now)?;
            accept::apply_known_acceptance(conn, ctx, id, order, now)?;
            Ok(Ok(reload(conn, id)?))
        }
    }
}

/// End reservation `id` in `to`, releasing its unreleased lines.
fn end(
    conn: &Connection,
    ctx: &mut WriterCtx,
    id: &str,
    to: ReservationState,
    now: Millis,
) -> Result<()> {
    let open = lines_of(conn, id, true)?;
    write::write(conn, ctx, &transitions::end(id, to, &open), now)
}

pub(crate) fn cancel_reservation(
    conn: &Connection,
    ctx: &mut WriterCtx,
    id: &str,
    now: Millis,
) -> Result<std::result::Result<Reservation, TransitionError>> {
    let current = state_of(conn, id)?.map(|(state, _)| state);
    match transitions::cancel(current) {
        Err(refused) => Ok(Err(refused)),
        Ok(Cancel::Unchanged) => Ok(Ok(reload(conn, id)?)),
        Ok(Cancel::Cancel) => {
            end(conn, ctx, id, ReservationState::Cancelled, now)?;
            Ok(Ok(reload(conn, id)?))
        }
    }
}

pub(crate) fn expire_reservations(
    conn: &Connection,
    ctx: &mut WriterCtx,
    now: Millis,
) -> Result<Vec<Reservation>> {
    let due: Vec<String> = conn
        .prepare_cached(DUE_RESERVATIONS)
        .and_then(|mut s| {
            s.query_map([now], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("find due reservations"))?;
    let mut expired = Vec::with_capacity(due.len());
    for id in due {
        end(conn, ctx, &id, ReservationState::Expired, now)?;
        expired.push(reload(conn, &id)?);
    }
    Ok(expired)
}

/// The order was cancelled (by the channel or the ERP): every active reservation committed to
/// it is cancelled, releasing its unreleased lines. Returns how many reservations it ended.
pub(crate) fn cancel_order_reservations(
    conn: &Connection,
    ctx: &mut WriterCtx,
    order: &str,
    now: Millis,
) -> Result<usize> {
    let (steps, ended) = decide::cancel(&order_reservations(conn, order)?);
    write::write(conn, ctx, &steps, now)?;
    Ok(ended)
}

/// Cancel-and-replace is planned for `order`: hold its released lines again and clear its
/// acceptance ([`crate::ledger::orders::rehold`]). Returns the units held again per (SKU,
/// location).
pub(crate) fn rehold_order(
    conn: &Connection,
    ctx: &mut WriterCtx,
    order: &str,
    now: Millis,
) -> Result<Reheld> {
    let (steps, reheld) = decide::rehold(&order_reservations(conn, order)?);
    write::write(conn, ctx, &steps, now)?;
    Ok(reheld)
}

/// An edit before shipment ([`crate::ledger::orders::adjust`]), after the re-hold the request
/// may ask for: the re-hold stands even when the increase is then short.
pub(crate) fn adjust_order_reservation(
    conn: &Connection,
    ctx: &mut WriterCtx,
    req: &AdjustRequest,
) -> Result<AdjustOutcome> {
    let reheld = if req.rehold {
        rehold_order(conn, ctx, &req.order, req.now)?
    } else {
        Reheld::new()
    };
    let order = order_reservations(conn, &req.order)?;
    let positions = load_positions(conn, &decide::adjust_positions(&order, req)?)?;
    match decide::adjust(&order, req, &reheld, &positions)? {
        Adjust::NoReservation => Ok(AdjustOutcome::NoReservation),
        Adjust::Short(shortages) => Ok(AdjustOutcome::Short(shortages)),
        Adjust::Adjusted { id, steps } => {
            write::write(conn, ctx, &steps, req.now)?;
            Ok(AdjustOutcome::Adjusted(Box::new(reload(conn, &id)?)))
        }
    }
}

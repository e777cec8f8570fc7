//! Reservation transitions and an order's reservations on PostgreSQL: commit, cancel, expiry,
//! an order's cancellation, its re-hold for cancel-and-replace and an edit's adjustment — the
//! rows loaded and locked here, every choice made by [`crate::ledger::transitions`] and
//! [`crate::ledger::orders`].
//!
//! Locks ([`super::lock`]): an operation on an order takes the order's lock, then the SKUs of
//! its reservations' lines (and of the edit's quantities), then the reservation rows; one on a
//! reservation takes its lines' SKUs, then its row. Each re-reads what it decides on after
//! locking. Runs inside a transaction it is given; must never choose a reservation, a line or a
//! quantity here.

use super::super::codec::{self, db, get};
use super::lock::{lock_order, lock_reservations, Locked};
use super::{accept, load, write};
use crate::ledger::orders::{self as decide, Adjust, OrderReservation, Reheld};
use crate::ledger::transitions::{self, Cancel, Commit};
use crate::ledger::Step;
use crate::{AdjustOutcome, AdjustRequest, Reservation, ReservationState, Result, TransitionError};
use concord_core::Millis;
use tokio_postgres::Transaction;

/// Lock reservations `ids` in the ledger's order: their lines' SKUs (plus `extra`), then their
/// rows; then check that their lines did not gain a SKU meanwhile.
async fn lock_set<'e>(
    tx: &Transaction<'_>,
    locked: &mut Locked,
    ids: &[String],
    extra: impl IntoIterator<Item = &'e str>,
    what: &str,
) -> Result<()> {
    let mut skus = load::line_skus(tx, ids).await?;
    skus.extend(extra.into_iter().map(str::to_owned));
    locked.skus(tx, skus.iter().map(String::as_str)).await?;
    lock_reservations(tx, ids).await?;
    let now = load::line_skus(tx, ids).await?;
    locked.covers(now.iter().map(String::as_str), what)
}

/// Lock order `order` and its reservations (see [`lock_set`]); returns them as they are now,
/// oldest first, with all their lines.
async fn lock_order_reservations<'e>(
    tx: &Transaction<'_>,
    locked: &mut Locked,
    order: &str,
    extra: impl IntoIterator<Item = &'e str>,
) -> Result<Vec<OrderReservation>> {
    lock_order(tx, order).await?;
    let ids = load::order_reservation_ids(tx, order).await?;
    lock_set(tx, locked, &ids, extra, "lock an order's reservations").await?;
    load::order_reservations(tx, order).await
}

/// State and order of a reservation (its row locked by the caller).
async fn state_of(
    tx: &Transaction<'_>,
    id: &str,
) -> Result<Option<(ReservationState, Option<String>)>> {
    let row = tx
        .query_opt(
            "SELECT state, order_key FROM reservations WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(db("read reservation state"))?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some((codec::reservation_state(get(&r, 0)?)?, get(&r, 1)?))),
    }
}

pub(crate) async fn commit_reservation(
    tx: &Transaction<'_>,
    id: &str,
    order: &str,
    now: Millis,
) -> Result<std::result::Result<Reservation, TransitionError>> {
    // The order's lock first: an acceptance of the order is either before this commit (and
    // taken over below) or after it (and finds this reservation).
    lock_order(tx, order).await?;
    let mut locked = Locked::default();
    lock_set(
        tx,
        &mut locked,
        &[id.to_owned()],
        [],
        "commit a reservation",
    )
    .await?;
    let current = state_of(tx, id).await?;
    let current = current.as_ref().map(|(s, o)| (*s, o.as_deref()));
    match transitions::commit(current, order) {
        Err(refused) => Ok(Err(refused)),
        Ok(Commit::Unchanged) => Ok(Ok(load::reload(tx, id).await?)),
        Ok(Commit::Commit) => {
            let commit = [Step::Commit {
                id: id.to_owned(),
                order: order.to_owned(),
            }];
            write::write(tx, &commit, now).await?;
            accept::apply_known_acceptance(tx, id, order, now).await?;
            Ok(Ok(load::reload(tx, id).await?))
        }
    }
}

/// End reservation `id` (locked) in `to`, releasing its unreleased lines.
async fn end(tx: &Transaction<'_>, id: &str, to: ReservationState, now: Millis) -> Result<()> {
    let open = load::line_rows(tx, id, true).await?;
    write::write(tx, &transitions::end(id, to, &open), now).await
}

pub(crate) async fn cancel_reservation(
    tx: &Transaction<'_>,
    id: &str,
    now: Millis,
) -> Result<std::result::Result<Reservation, TransitionError>> {
    let mut locked = Locked::default();
    lock_set(
        tx,
        &mut locked,
        &[id.to_owned()],
        [],
        "cancel a reservation",
    )
    .await?;
    let current = state_of(tx, id).await?.map(|(state, _)| state);
    match transitions::cancel(current) {
        Err(refused) => Ok(Err(refused)),
        Ok(Cancel::Unchanged) => Ok(Ok(load::reload(tx, id).await?)),
        Ok(Cancel::Cancel) => {
            end(tx, id, ReservationState::Cancelled, now).await?;
            Ok(Ok(load::reload(tx, id).await?))
        }
    }
}

/// Held reservations due at `$1`, in expiry order; with `$2` non-null, only among those ids.
const DUE: &str = "SELECT id FROM reservations
     WHERE state = 'held' AND expires_at <= $1 AND ($2::text[] IS NULL OR id = ANY($2))
     ORDER BY expires_at, id";

async fn due(tx: &Transaction<'_>, now: Millis, among: Option<&[String]>) -> Result<Vec<String>> {
    let rows = tx
        .query(DUE, &[&now, &among])
        .await
        .map_err(db("find due reservations"))?;
    rows.iter().map(|r| get(r, 0)).collect()
}

pub(crate) async fn expire_reservations(
    tx: &Transaction<'_>,
    now: Millis,
) -> Result<Vec<Reservation>> {
    let seen = due(tx, now, None).await?;
    if seen.is_empty() {
        return Ok(Vec::new());
    }
    let mut locked = Locked::default();
    lock_set(tx, &mut locked, &seen, [], "expire reservations").await?;
    // Decide on the locked rows: another instance may have expired, committed or cancelled
    // some meanwhile; those are no longer due.
    let ids = due(tx, now, Some(&seen)).await?;
    let mut expired = Vec::with_capacity(ids.len());
    for id in ids {
        end(tx, &id, ReservationState::Expired, now).await?;
        expired.push(load::reload(tx, &id).await?);
    }
    Ok(expired)
}

/// The order was cancelled (by the channel or the ERP): every active reservation committed to
/// it is cancelled, releasing its unreleased lines. Returns how many reservations it ended.
pub(crate) async fn cancel_order_reservations(
    tx: &Transaction<'_>,
    order: &str,
    now: Millis,
) -> Result<usize> {
    let mut locked = Locked::default();
    let reservations = lock_order_reservations(tx, &mut locked, order, []).await?;
    let (steps, ended) = decide::cancel(&reservations);
    write::write(tx, &steps, now).await?;
    Ok(ended)
}

/// Cancel-and-replace is planned for `order`: hold its released lines again and clear its
/// acceptance ([`crate::ledger::orders::rehold`]). Returns the units held again per (SKU,
/// location).
pub(crate) async fn rehold_order(tx: &Transaction<'_>, order: &str, now: Millis) -> Result<Reheld> {
    let mut locked = Locked::default();
    let reservations = lock_order_reservations(tx, &mut locked, order, []).await?;
    let (steps, reheld) = decide::rehold(&reservations);
    write::write(tx, &steps, now).await?;
    Ok(reheld)
}

/// An edit before shipment ([`crate::ledger::orders::adjust`]), after the re-hold the request
/// may ask for: the re-hold stands even when the increase is then short.
pub(crate) async fn adjust_order_reservation(
    tx: &Transaction<'_>,
    req: &AdjustRequest,
) -> Result<AdjustOutcome> {
    let mut locked = Locked::default();
    // Every SKU the edit may grow is one of its quantities: lock them with the lines' SKUs.
    let mut order = lock_order_reservations(
        tx,
        &mut locked,
        &req.order,
        req.quantities.iter().map(|(sku, _)| sku.as_str()),
    )
    .await?;
    let reheld = if req.rehold {
        let (steps, reheld) = decide::rehold(&order);
        write::write(tx, &steps, req.now).await?;
        order = load::order_reservations(tx, &req.order).await?;
        reheld
    } else {
        Reheld::new()
    };
    let keys = decide::adjust_positions(&order, req)?;
    locked.covers(keys.iter().map(|(sku, _)| sku.as_str()), "adjust an order")?;
    let positions = load::positions(tx, &keys).await?;
    match decide::adjust(&order, req, &reheld, &positions)? {
        Adjust::NoReservation => Ok(AdjustOutcome::NoReservation),
        Adjust::Short(shortages) => Ok(AdjustOutcome::Short(shortages)),
        Adjust::Adjusted { id, steps } => {
            write::write(tx, &steps, req.now).await?;
            Ok(AdjustOutcome::Adjusted(Box::new(
                load::reload(tx, &id).await?,
            )))
        }
    }
}

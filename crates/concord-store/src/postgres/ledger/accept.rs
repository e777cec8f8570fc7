//! An order's acceptance on PostgreSQL: remembered per (order, source) in
//! `order_acceptances`, and stamped on its reservations — with the releases it makes at once —
//! as [`crate::ledger::accept`] decides.
//!
//! Runs inside the caller's transaction (`settle` for a delivered order; `commit_reservation`).
//! Locks: the order's lock (so a reservation committed to it concurrently is either seen here
//! or sees this acceptance), the SKUs of its reservations' lines, then the reservation rows.
//! Must never pick a watermark or a line to release here.

use super::super::codec::{db, get};
use super::lock::{lock_order, lock_reservations, Locked};
use super::{load, write};
use crate::ledger::accept::{accept, Acceptance, Accepting};
use crate::Result;
use concord_core::Millis;
use tokio_postgres::Transaction;

/// The active reservations of order `$1` from source `$2`, by id.
const ACCEPTED_ORDER: &str = "SELECT id FROM reservations
     WHERE order_key = $1 AND source = $2 AND state IN ('held', 'committed') ORDER BY id";

async fn accepted_order(tx: &Transaction<'_>, order: &str, source: &str) -> Result<Vec<String>> {
    let rows = tx
        .query(ACCEPTED_ORDER, &[&order, &source])
        .await
        .map_err(db("find the reservations of an accepted order"))?;
    rows.iter().map(|r| get(r, 0)).collect()
}

/// A delivered order: its active reservations from `source` are now accepted by the ERP (the
/// first acceptance is kept, both in `order_acceptances` and on each reservation).
pub(crate) async fn mark_accepted(
    tx: &Transaction<'_>,
    order: &str,
    source: &str,
    at: Millis,
    version: Option<&str>,
) -> Result<()> {
    lock_order(tx, order).await?;
    tx.execute(
        "INSERT INTO order_acceptances (order_key, source, accepted_at, version)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        &[&order, &source, &at, &version],
    )
    .await
    .map_err(db("remember order acceptance"))?;
    let seen = accepted_order(tx, order, source).await?;
    if seen.is_empty() {
        return Ok(());
    }
    let mut locked = Locked::default();
    let skus = load::line_skus(tx, &seen).await?;
    locked.skus(tx, skus.iter().map(String::as_str)).await?;
    lock_reservations(tx, &seen).await?;
    // Decide on the locked rows: one may have ended meanwhile (none can join: the order lock).
    let ids = accepted_order(tx, order, source).await?;
    locked.covers(
        load::line_skus(tx, &ids).await?.iter().map(String::as_str),
        "accept an order",
    )?;
    let mut reservations = Vec::with_capacity(ids.len());
    for id in &ids {
        reservations.push(accepting(tx, id).await?);
    }
    let acceptance = Acceptance {
        at,
        version: version.map(str::to_owned),
    };
    write::write(tx, &accept(&reservations, Some(&acceptance)), at).await
}

/// A reservation just committed to `order` (the caller holds the order's lock, its SKUs' and
/// its row's): if the ERP accepted that order already, it takes over the first acceptance.
pub(crate) async fn apply_known_acceptance(
    tx: &Transaction<'_>,
    id: &str,
    order: &str,
    now: Millis,
) -> Result<()> {
    let known = tx
        .query_opt(
            "SELECT a.accepted_at, a.version FROM order_acceptances a
             JOIN reservations r ON r.source = a.source
             WHERE r.id = $1 AND a.order_key = $2",
            &[&id, &order],
        )
        .await
        .map_err(db("read a known order acceptance"))?
        .map(|r| {
            Ok::<_, crate::StoreError>(Acceptance {
                at: get(&r, 0)?,
                version: get(&r, 1)?,
            })
        })
        .transpose()?;
    let reservation = accepting(tx, id).await?;
    write::write(tx, &accept(&[reservation], known.as_ref()), now).await
}

/// Reservation `id` as an acceptance reads it: its acceptance so far and its unreleased lines,
/// each with its position's stored version.
async fn accepting(tx: &Transaction<'_>, id: &str) -> Result<Accepting> {
    let r = tx
        .query_one(
            "SELECT accepted_at, accepted_version FROM reservations WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(db("read a reservation's acceptance"))?;
    let at: Option<Millis> = get(&r, 0)?;
    let version: Option<String> = get(&r, 1)?;
    let accepted = at.map(|at| Acceptance { at, version });
    let mut open = Vec::new();
    for line in load::line_rows(tx, id, true).await? {
        let figure = load::position_version(tx, &line.sku, &line.location).await?;
        open.push((line, figure));
    }
    Ok(Accepting {
        id: id.to_owned(),
        accepted,
        open,
    })
}

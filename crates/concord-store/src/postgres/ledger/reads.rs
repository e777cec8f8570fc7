//! The ledger's read-only views on PostgreSQL: one reservation, reservations by state or SKU,
//! the next expiry, the dirty SKUs, the oversold positions.
//!
//! Each runs inside one read-only snapshot (`PgStore::read_tx`) or as one statement. Must never
//! write, and never derive a figure in SQL: positions are returned as stored, and "oversold" is
//! decided by `Position::free`, in Rust.

use super::super::codec::{self, db, get};
use super::load::{self, RES_COLS};
use crate::{DirtySku, Reservation, ReservationState, Result, StockLevel};
use concord_core::inventory::Position;
use concord_core::Millis;
use tokio_postgres::GenericClient;

/// Reservations, newest first (`row_seq` breaks ties), optionally only in `state` / with a
/// line of `sku`.
pub(crate) async fn reservations<C: GenericClient + Sync>(
    c: &C,
    state: Option<ReservationState>,
    sku: Option<&str>,
    limit: usize,
) -> Result<Vec<Reservation>> {
    let state = state.map(codec::reservation_state_str);
    let rows = c
        .query(
            &format!(
                "SELECT {RES_COLS} FROM reservations
                 WHERE ($1::text IS NULL OR state = $1)
                   AND ($2::text IS NULL
                        OR id IN (SELECT reservation_id FROM reservation_lines WHERE sku = $2))
                 ORDER BY created_at DESC, row_seq DESC LIMIT $3"
            ),
            &[&state, &sku, &codec::limit(limit)],
        )
        .await
        .map_err(db("read reservations"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(load::with_lines(c, load::reservation_row(r)?).await?);
    }
    Ok(out)
}

/// Earliest `expires_at` among held reservations.
pub(crate) async fn next_expiry<C: GenericClient + Sync>(c: &C) -> Result<Option<Millis>> {
    let r = c
        .query_one(
            "SELECT MIN(expires_at) FROM reservations WHERE state = 'held'",
            &[],
        )
        .await
        .map_err(db("read next expiry"))?;
    get(&r, 0)
}

/// SKUs marked dirty, oldest mark first.
pub(crate) async fn dirty_skus<C: GenericClient + Sync>(
    c: &C,
    limit: usize,
) -> Result<Vec<DirtySku>> {
    let rows = c
        .query(
            "SELECT sku, generation FROM ats_dirty ORDER BY marked_at, sku COLLATE \"C\"
             LIMIT $1",
            &[&codec::limit(limit)],
        )
        .await
        .map_err(db("read dirty SKUs"))?;
    rows.iter()
        .map(|r| {
            Ok(DirtySku {
                sku: get(r, 0)?,
                generation: get(r, 1)?,
            })
        })
        .collect()
}

/// Positions whose ERP on-hand is below what is committed plus held, sorted by SKU then
/// location; at most the positions of `limit` SKUs. The SQL only pre-selects candidate SKUs
/// with a comparison that cannot overflow (`on_hand < committed + held` is computed as
/// NUMERIC); the exact test is `Position::free`, in Rust.
pub(crate) async fn oversold_positions<C: GenericClient + Sync>(
    c: &C,
    limit: usize,
) -> Result<Vec<StockLevel>> {
    let rows = c
        .query(
            "SELECT DISTINCT sku COLLATE \"C\" AS sku FROM stock_levels
             WHERE on_hand::numeric < committed::numeric + held::numeric
             ORDER BY 1 LIMIT $1",
            &[&codec::limit(limit)],
        )
        .await
        .map_err(db("find oversold positions"))?;
    let skus = rows
        .iter()
        .map(|r| get(r, 0))
        .collect::<Result<Vec<String>>>()?;
    Ok(load::levels(c, &skus)
        .await?
        .into_iter()
        .filter(|l| {
            Position {
                on_hand: l.on_hand,
                committed: l.committed,
                held: l.held,
            }
            .free()
                < 0
        })
        .collect())
}

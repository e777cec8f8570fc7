//! Loading the ledger rows a decision reads, and decoding them: reservations with their lines,
//! an order's reservations, positions.
//!
//! Generic over the client, so a read-only snapshot and a write transaction load alike. Must
//! never lock (that is [`super::lock`]'s, in its order), write, or derive a figure.

use super::super::codec::{self, db, get};
use crate::ledger::orders::OrderReservation;
use crate::ledger::{incoming_total, LineRow, PositionRow, Positions};
use crate::{Reservation, ReservationLine, Result, StockLevel, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::{GenericClient, Row};

pub(crate) const RES_COLS: &str = "id, channel, client_key, state, source, order_key, \
     created_at, expires_at, committed_at, accepted_at, accepted_version, ended_at";

/// A reservation row of [`RES_COLS`], without its lines.
pub(crate) fn reservation_row(r: &Row) -> Result<Reservation> {
    Ok(Reservation {
        id: get(r, 0)?,
        channel: get(r, 1)?,
        client_key: get(r, 2)?,
        state: codec::reservation_state(get(r, 3)?)?,
        lines: Vec::new(),
        source: get(r, 4)?,
        order: get(r, 5)?,
        created_at: get(r, 6)?,
        expires_at: get(r, 7)?,
        committed_at: get(r, 8)?,
        accepted_at: get(r, 9)?,
        accepted_version: get(r, 10)?,
        ended_at: get(r, 11)?,
    })
}

/// A reservation row with its lines loaded.
pub(crate) async fn with_lines<C: GenericClient + Sync>(
    c: &C,
    mut r: Reservation,
) -> Result<Reservation> {
    let rows = c
        .query(
            "SELECT sku, location, quantity, backorder, released_at FROM reservation_lines
             WHERE reservation_id = $1 ORDER BY seq",
            &[&r.id],
        )
        .await
        .map_err(db("read reservation lines"))?;
    r.lines = rows
        .iter()
        .map(|l| {
            Ok(ReservationLine {
                sku: get(l, 0)?,
                location: get(l, 1)?,
                quantity: get(l, 2)?,
                backorder: get::<i64>(l, 3)? != 0,
                released_at: get(l, 4)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(r)
}

/// One reservation with its lines.
pub(crate) async fn reservation<C: GenericClient + Sync>(
    c: &C,
    id: &str,
) -> Result<Option<Reservation>> {
    let row = c
        .query_opt(
            &format!("SELECT {RES_COLS} FROM reservations WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(db("read reservation"))?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some(with_lines(c, reservation_row(&r)?).await?)),
    }
}

/// A reservation that must exist (this transaction just found or wrote it).
pub(crate) async fn reload<C: GenericClient + Sync>(c: &C, id: &str) -> Result<Reservation> {
    reservation(c, id)
        .await?
        .ok_or_else(|| StoreError::Db(format!("reservation {id} vanished mid-transaction")))
}

/// Lines of reservation `id` by `seq`: all of them, or only the unreleased ones.
pub(crate) async fn line_rows<C: GenericClient + Sync>(
    c: &C,
    id: &str,
    unreleased_only: bool,
) -> Result<Vec<LineRow>> {
    let rows = c
        .query(
            "SELECT seq, sku, location, quantity, backorder, released_at IS NOT NULL
             FROM reservation_lines
             WHERE reservation_id = $1 AND (NOT $2 OR released_at IS NULL) ORDER BY seq",
            &[&id, &unreleased_only],
        )
        .await
        .map_err(db("read reservation lines"))?;
    rows.iter()
        .map(|r| {
            Ok(LineRow {
                reservation_id: id.to_owned(),
                seq: get(r, 0)?,
                sku: get(r, 1)?,
                location: get(r, 2)?,
                quantity: get(r, 3)?,
                backorder: get::<i64>(r, 4)? != 0,
                released: get(r, 5)?,
            })
        })
        .collect()
}

/// The SKUs of every line (released ones included) of these reservations.
pub(crate) async fn line_skus<C: GenericClient + Sync>(
    c: &C,
    ids: &[String],
) -> Result<BTreeSet<String>> {
    if ids.is_empty() {
        return Ok(BTreeSet::new());
    }
    let rows = c
        .query(
            "SELECT DISTINCT sku FROM reservation_lines WHERE reservation_id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(db("read the SKUs of reservations"))?;
    rows.iter().map(|r| get(r, 0)).collect()
}

/// Ids of the reservations committed to `order`, oldest first (`row_seq` breaks ties).
pub(crate) async fn order_reservation_ids<C: GenericClient + Sync>(
    c: &C,
    order: &str,
) -> Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT id FROM reservations WHERE order_key = $1 ORDER BY created_at, row_seq",
            &[&order],
        )
        .await
        .map_err(db("find the reservations of an order"))?;
    rows.iter().map(|r| get(r, 0)).collect()
}

/// Every reservation committed to `order`, oldest first, with all its lines.
pub(crate) async fn order_reservations<C: GenericClient + Sync>(
    c: &C,
    order: &str,
) -> Result<Vec<OrderReservation>> {
    let rows = c
        .query(
            "SELECT id, state FROM reservations WHERE order_key = $1
             ORDER BY created_at, row_seq",
            &[&order],
        )
        .await
        .map_err(db("find the reservations of an order"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: String = get(r, 0)?;
        out.push(OrderReservation {
            state: codec::reservation_state(get(r, 1)?)?,
            lines: line_rows(c, &id, false).await?,
            id,
        });
    }
    Ok(out)
}

/// The positions a decision routes over (a position never seen has no stock).
pub(crate) async fn positions<C: GenericClient + Sync>(
    c: &C,
    keys: &BTreeSet<(String, String)>,
) -> Result<Positions> {
    let mut out = Positions::default();
    if keys.is_empty() {
        return Ok(out);
    }
    let (skus, locations): (Vec<&str>, Vec<&str>) =
        keys.iter().map(|(s, l)| (s.as_str(), l.as_str())).unzip();
    let rows = c
        .query(
            "SELECT s.sku, s.location, s.on_hand, s.committed, s.held, s.backordered, s.incoming
             FROM stock_levels s
             JOIN unnest($1::text[], $2::text[]) AS k(sku, location)
               ON s.sku = k.sku AND s.location = k.location",
            &[&skus, &locations],
        )
        .await
        .map_err(db("read ledger positions"))?;
    for r in &rows {
        let sku: &str = get(r, 0)?;
        let location: &str = get(r, 1)?;
        out.insert(
            sku,
            location,
            PositionRow {
                on_hand: get(r, 2)?,
                committed: get(r, 3)?,
                held: get(r, 4)?,
                backordered: get(r, 5)?,
                incoming: incoming_total(&codec::json(get(r, 6)?)?),
            },
        );
    }
    Ok(out)
}

/// The stored figure's version at a position (`None`: no position, or no figure yet).
pub(crate) async fn position_version<C: GenericClient + Sync>(
    c: &C,
    sku: &str,
    location: &str,
) -> Result<Option<String>> {
    Ok(c.query_opt(
        "SELECT version FROM stock_levels WHERE sku = $1 AND location = $2",
        &[&sku, &location],
    )
    .await
    .map_err(db("read position version"))?
    .map(|r| get::<Option<String>>(&r, 0))
    .transpose()?
    .flatten())
}

/// Positions of these SKUs (every location) as stored, sorted by SKU then location in byte
/// order (as SQLite's binary collation sorts them, whatever the database's collation).
pub(crate) async fn levels<C: GenericClient + Sync>(
    c: &C,
    skus: &[String],
) -> Result<Vec<StockLevel>> {
    let skus: Vec<&str> = skus
        .iter()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if skus.is_empty() {
        return Ok(Vec::new());
    }
    let rows = c
        .query(
            "SELECT sku, location, on_hand, committed, held, backordered, incoming, version,
                    updated_at
             FROM stock_levels WHERE sku = ANY($1)",
            &[&skus],
        )
        .await
        .map_err(db("read ledger positions"))?;
    let mut out = BTreeMap::new();
    for r in &rows {
        let level = StockLevel {
            sku: get(r, 0)?,
            location: get(r, 1)?,
            on_hand: get(r, 2)?,
            committed: get(r, 3)?,
            held: get(r, 4)?,
            backordered: get(r, 5)?,
            incoming: codec::json(get(r, 6)?)?,
            version: get(r, 7)?,
            updated_at: get(r, 8)?,
        };
        out.insert((level.sku.clone(), level.location.clone()), level);
    }
    Ok(out.into_values().collect())
}

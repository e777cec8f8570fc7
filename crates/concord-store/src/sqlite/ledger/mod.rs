//! The stock ledger and reservations of design §5 on SQLite: loading the rows a decision of
//! [`crate::ledger`] reads, and writing the steps it returns.
//!
//! One file per operation: [`reserve`], [`levels`] (ERP figures and the releases they make),
//! [`accept`] (an order's acceptance), [`orders`] (commit, cancel, expiry, an order's
//! cancellation, re-hold and edit), [`reads`] (the read-only views); [`write`](mod@write) is the only code
//! that changes a ledger row, by applying a plan's steps. This file holds the loaders those
//! share.
//!
//! Write functions run on the writer thread inside the job's savepoint, like everything the
//! writer runs; since there is one writer, the rows a decision was given cannot change before
//! its steps are written, without any locking of its own — which is what makes a reservation
//! atomic with respect to every other reservation and ledger update. Read functions run on the
//! reader pool, each inside one read transaction.
//!
//! This module must never decide: routing, watermarks, transitions, edits and re-holds are
//! [`crate::ledger`]'s; here is SQL only. It must never compute a ledger figure in SQL either
//! (SQLite turns an integer sum that overflows into a REAL, silently): `held` and `backordered`
//! change only through [`write::write`], checked in Rust, and migration 8's triggers refuse
//! any non-integer figure a future statement might still compute.

pub(crate) mod accept;
pub(crate) mod levels;
pub(crate) mod orders;
pub(crate) mod reads;
pub(crate) mod reserve;
pub(crate) mod write;

use super::codec::{self, db};
use crate::ledger::orders::OrderReservation;
use crate::ledger::{LineRow, PositionRow, Positions};
use crate::{Reservation, ReservationLine, Result, StoreError};
use concord_core::Millis;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::BTreeSet;

pub(crate) use write::clean;

pub(crate) const RES_COLS: &str = "id, channel, client_key, state, source, order_key, created_at, \
     expires_at, committed_at, accepted_at, accepted_version, ended_at";

pub(crate) struct RawReservation {
    id: String,
    channel: String,
    client_key: String,
    state: String,
    source: String,
    order: Option<String>,
    created_at: Millis,
    expires_at: Option<Millis>,
    committed_at: Option<Millis>,
    accepted_at: Option<Millis>,
    accepted_version: Option<String>,
    ended_at: Option<Millis>,
}

pub(crate) fn raw_reservation(r: &Row<'_>) -> rusqlite::Result<RawReservation> {
    Ok(RawReservation {
        id: r.get(0)?,
        channel: r.get(1)?,
        client_key: r.get(2)?,
        state: r.get(3)?,
        source: r.get(4)?,
        order: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        committed_at: r.get(8)?,
        accepted_at: r.get(9)?,
        accepted_version: r.get(10)?,
        ended_at: r.get(11)?,
    })
}

/// Decode a reservation row and load its lines.
pub(crate) fn reservation_from(conn: &Connection, raw: RawReservation) -> Result<Reservation> {
    let lines = conn
        .prepare_cached(
            "SELECT sku, location, quantity, backorder, released_at FROM reservation_lines
             WHERE reservation_id = ?1 ORDER BY seq",
        )
        .and_then(|mut s| {
            s.query_map([&raw.id], |r| {
                Ok(ReservationLine {
                    sku: r.get(0)?,
                    location: r.get(1)?,
                    quantity: r.get(2)?,
                    backorder: r.get(3)?,
                    released_at: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read reservation lines"))?;
    Ok(Reservation {
        state: codec::reservation_state(&raw.state)?,
        id: raw.id,
        channel: raw.channel,
        client_key: raw.client_key,
        lines,
        source: raw.source,
        order: raw.order,
        created_at: raw.created_at,
        expires_at: raw.expires_at,
        committed_at: raw.committed_at,
        accepted_at: raw.accepted_at,
        accepted_version: raw.accepted_version,
        ended_at: raw.ended_at,
    })
}

/// One reservation with its lines (callers wanting a snapshot wrap this in a transaction).
pub(crate) fn load_reservation(conn: &Connection, id: &str) -> Result<Option<Reservation>> {
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {RES_COLS} FROM reservations WHERE id = ?1"
        ))
        .and_then(|mut s| s.query_row([id], raw_reservation).optional())
        .map_err(db("read reservation"))?;
    raw.map(|raw| reservation_from(conn, raw)).transpose()
}

/// Load a reservation that must exist (it was just found or written by this job).
pub(crate) fn reload(conn: &Connection, id: &str) -> Result<Reservation> {
    load_reservation(conn, id)?
        .ok_or_else(|| StoreError::Db(format!("reservation {id} vanished mid-transaction")))
}

/// One position as the decisions read it (a position never seen has no stock).
fn read_position(conn: &Connection, sku: &str, location: &str) -> Result<PositionRow> {
    let raw: Option<(i64, i64, i64, i64, String)> = conn
        .prepare_cached(
            "SELECT on_hand, committed, held, backordered, incoming FROM stock_levels
             WHERE sku = ?1 AND location = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![sku, location], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()
        })
        .map_err(db("read ledger position"))?;
    Ok(match raw {
        None => PositionRow::default(),
        Some((on_hand, committed, held, backordered, incoming)) => PositionRow {
            on_hand,
            committed,
            held,
            backordered,
            incoming: crate::ledger::incoming_total(&codec::json(&incoming)?),
        },
    })
}

/// The positions a decision routes over (its own list, sorted by (SKU, location)).
pub(crate) fn load_positions(
    conn: &Connection,
    keys: &BTreeSet<(String, String)>,
) -> Result<Positions> {
    let mut positions = Positions::default();
    for (sku, location) in keys {
        positions.insert(sku, location, read_position(conn, sku, location)?);
    }
    Ok(positions)
}

/// Lines of reservation `id` by `seq`: all of them, or only the unreleased ones.
pub(crate) fn lines_of(conn: &Connection, id: &str, unreleased_only: bool) -> Result<Vec<LineRow>> {
    let sql = if unreleased_only {
        "SELECT seq, sku, location, quantity, backorder, released_at IS NOT NULL
         FROM reservation_lines WHERE reservation_id = ?1 AND released_at IS NULL ORDER BY seq"
    } else {
        "SELECT seq, sku, location, quantity, backorder, released_at IS NOT NULL
         FROM reservation_lines WHERE reservation_id = ?1 ORDER BY seq"
    };
    conn.prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map([id], |r| {
                Ok(LineRow {
                    reservation_id: id.to_owned(),
                    seq: r.get(0)?,
                    sku: r.get(1)?,
                    location: r.get(2)?,
                    quantity: r.get(3)?,
                    backorder: r.get(4)?,
                    released: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read reservation lines"))
}

/// The reservations committed to order `?1`, oldest first (the rowid breaks ties).
pub(crate) const ORDER_RESERVATIONS: &str =
    "SELECT id, state FROM reservations WHERE order_key = ?1 ORDER BY created_at, rowid";

/// Every reservation committed to `order`, oldest first, with all its lines.
pub(crate) fn order_reservations(conn: &Connection, order: &str) -> Result<Vec<OrderReservation>> {
    let rows: Vec<(String, String)> = conn
        .prepare_cached(ORDER_RESERVATIONS)
        .and_then(|mut s| {
            s.query_map([order], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("find the reservations of an order"))?;
    rows.into_iter()
        .map(|(id, state)| {
            Ok(OrderReservation {
                state: codec::reservation_state(&state)?,
                lines: lines_of(conn, &id, false)?,
                id,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{accept, levels, orders, ORDER_RESERVATIONS};
    use crate::SqliteStore;
    use rusqlite::Connection;

    /// The ledger's per-position and expiry queries must stay index-driven: released lines and
    /// ended reservations are kept as history and must never be scanned.
    #[test]
    fn ledger_queries_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("concord.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        let plan = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> String {
            conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(params, |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap()
                .join("\n")
        };
        let p = plan(levels::RELEASABLE_LINES, &[&"A", &"WH1"]);
        assert!(p.contains("reservation_lines_open"), "plan: {p}");
        assert!(!p.contains("SCAN"), "no full scan: {p}");
        let p = plan(orders::DUE_RESERVATIONS, &[&1_000]);
        assert!(p.contains("reservations_expiry"), "plan: {p}");
        assert!(!p.contains("SCAN"), "no full scan: {p}");
        let args: [&dyn rusqlite::ToSql; 2] = [&"web/1", &"erp"];
        for (sql, n) in [(ORDER_RESERVATIONS, 1), (accept::ACCEPTED_ORDER, 2)] {
            let p = plan(sql, &args[..n]);
            assert!(p.contains("reservations_order"), "plan: {p}");
            assert!(!p.contains("SCAN"), "no full scan: {p}");
        }
    }
}

//! The ledger's read-only views on SQLite: one reservation, reservations by state or SKU,
//! positions by SKU, the next expiry and the dirty SKUs.
//!
//! Runs on the reader pool; a read of several rows runs inside one read transaction (one
//! snapshot). Must never write, and never derive a figure: positions are returned as stored.

use super::super::codec::{self, db};
use super::{load_reservation, raw_reservation, reservation_from, RES_COLS};
use crate::{DirtySku, Reservation, ReservationState, Result, StockLevel};
use concord_core::Millis;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection};
use std::collections::BTreeSet;

pub(crate) fn reservation(conn: &Connection, id: &str) -> Result<Option<Reservation>> {
    let tx = conn
        .unchecked_transaction()
        .map_err(db("begin reservation snapshot"))?;
    let out = load_reservation(&tx, id)?;
    tx.rollback().map_err(db("end reservation snapshot"))?;
    Ok(out)
}

pub(crate) fn reservations(
    conn: &Connection,
    state: Option<ReservationState>,
    sku: Option<&str>,
    limit: usize,
) -> Result<Vec<Reservation>> {
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    if let Some(state) = state {
        args.push(SqlValue::Text(
            codec::reservation_state_str(state).to_owned(),
        ));
        clauses.push(format!("state = ?{}", args.len()));
    }
    if let Some(sku) = sku {
        args.push(SqlValue::Text(sku.to_owned()));
        clauses.push(format!(
            "id IN (SELECT reservation_id FROM reservation_lines WHERE sku = ?{})",
            args.len()
        ));
    }
    args.push(SqlValue::Integer(codec::limit(limit)));
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT {RES_COLS} FROM reservations {filter}
         ORDER BY created_at DESC, rowid DESC LIMIT ?{}",
        args.len()
    );
    let tx = conn
        .unchecked_transaction()
        .map_err(db("begin reservations snapshot"))?;
    let raws = tx
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(params_from_iter(args), raw_reservation)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read reservations"))?;
    let out = raws
        .into_iter()
        .map(|raw| reservation_from(&tx, raw))
        .collect::<Result<Vec<_>>>()?;
    tx.rollback().map_err(db("end reservations snapshot"))?;
    Ok(out)
}

pub(crate) fn levels(conn: &Connection, skus: &[String]) -> Result<Vec<StockLevel>> {
    let skus: BTreeSet<&str> = skus.iter().map(String::as_str).collect();
    let tx = conn
        .unchecked_transaction()
        .map_err(db("begin levels snapshot"))?;
    let mut out = Vec::new();
    for sku in skus {
        let raws = tx
            .prepare_cached(
                "SELECT location, on_hand, committed, held, backordered, incoming, version,
                        updated_at
                 FROM stock_levels WHERE sku = ?1 ORDER BY location",
            )
            .and_then(|mut s| {
                s.query_map([sku], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Millis>(7)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(db("read ledger positions"))?;
        for (location, on_hand, committed, held, backordered, incoming, version, updated_at) in raws
        {
            out.push(StockLevel {
                sku: sku.to_owned(),
                location,
                on_hand,
                committed,
                held,
                backordered,
                incoming: codec::json(&incoming)?,
                version,
                updated_at,
            });
        }
    }
    tx.rollback().map_err(db("end levels snapshot"))?;
    Ok(out)
}

pub(crate) fn next_expiry(conn: &Connection) -> Result<Option<Millis>> {
    conn.prepare_cached(
        "SELECT MIN(expires_at) FROM reservations INDEXED BY reservations_expiry
         WHERE state = 'held'",
    )
    .and_then(|mut s| s.query_row([], |r| r.get(0)))
    .map_err(db("read next expiry"))
}

pub(crate) fn dirty_skus(conn: &Connection, limit: usize) -> Result<Vec<DirtySku>> {
    conn.prepare_cached("SELECT sku, generation FROM ats_dirty ORDER BY marked_at, sku LIMIT ?1")
        .and_then(|mut s| {
            s.query_map([codec::limit(limit)], |r| {
                Ok(DirtySku {
                    sku: r.get(0)?,
                    generation: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read dirty SKUs"))
}

//! `Store::update_levels` (and `ProcessBatch::levels`) on SQLite: ERP figures stored, and the
//! accepted lines each one releases — judged and chosen by [`crate::ledger::release`].
//!
//! Runs on the writer thread inside the job's savepoint. Must never compare versions or decide
//! a release here; the only figure it computes is `free` for the outcome, with
//! `concord_core::inventory::Position::free`, never in SQL.

use super::super::codec::{db, to_json};
use super::super::writer::WriterCtx;
use super::write;
use crate::ledger::release::{self, Figure, Releasable};
use crate::ledger::LineRow;
use crate::{LevelOutcome, LevelUpdate, Result};
use concord_core::inventory::Position;
use concord_core::Millis;
use rusqlite::{params, Connection, OptionalExtension};

/// Accepted, still active, unreleased lines at one position (`?1` SKU, `?2` location): the
/// candidates for release by a figure there.
pub(crate) const RELEASABLE_LINES: &str =
    "SELECT l.reservation_id, l.seq, l.quantity, l.backorder, r.accepted_at, r.accepted_version
     FROM reservation_lines l JOIN reservations r ON r.id = l.reservation_id
     WHERE l.sku = ?1 AND l.location = ?2 AND l.released_at IS NULL
       AND r.state IN ('held', 'committed') AND r.accepted_at IS NOT NULL";

/// Apply ERP figures in order. `grace: None` disables the time-based release fallback.
pub(crate) fn update_levels(
    conn: &Connection,
    ctx: &mut WriterCtx,
    updates: &[LevelUpdate],
    grace: Option<i64>,
    now: Millis,
) -> Result<Vec<LevelOutcome>> {
    let mut out = Vec::with_capacity(updates.len());
    for u in updates {
        out.push(update_level(conn, ctx, u, grace, now)?);
    }
    Ok(out)
}

fn update_level(
    conn: &Connection,
    ctx: &mut WriterCtx,
    u: &LevelUpdate,
    grace: Option<i64>,
    now: Millis,
) -> Result<LevelOutcome> {
    let stored: Option<Option<String>> = conn
        .prepare_cached("SELECT version FROM stock_levels WHERE sku = ?1 AND location = ?2")
        .and_then(|mut s| {
            s.query_row(params![u.sku, u.location], |r| r.get(0))
                .optional()
        })
        .map_err(db("read position version"))?;
    match release::judge(stored.flatten().as_deref(), &u.version) {
        Figure::Stale => return Ok(LevelOutcome::Stale),
        Figure::Repeat => {
            return Ok(LevelOutcome::Applied {
                released: Vec::new(),
                free: free_at(conn, &u.sku, &u.location)?,
            })
        }
        Figure::Apply => {}
    }
    conn.prepare_cached(
        "INSERT INTO stock_levels
             (sku, location, on_hand, committed, held, backordered, incoming, version, updated_at)
         VALUES (?1, ?2, ?3, ?4, 0, 0, ?5, ?6, ?7)
         ON CONFLICT (sku, location) DO UPDATE SET on_hand = excluded.on_hand,
             committed = excluded.committed, incoming = excluded.incoming,
             version = excluded.version, updated_at = excluded.updated_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            u.sku,
            u.location,
            u.on_hand,
            u.committed,
            to_json(&u.incoming),
            u.version,
            now
        ])
    })
    .map_err(db("apply ledger figure"))?;
    let open = conn
        .prepare_cached(RELEASABLE_LINES)
        .and_then(|mut s| {
            s.query_map(params![u.sku, u.location], |r| {
                Ok(Releasable {
                    line: LineRow {
                        reservation_id: r.get(0)?,
                        seq: r.get(1)?,
                        sku: u.sku.clone(),
                        location: u.location.clone(),
                        quantity: r.get(2)?,
                        backorder: r.get(3)?,
                        released: false,
                    },
                    accepted_at: r.get(4)?,
                    accepted_version: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read releasable lines"))?;
    let decided = release::by_figure(u, grace, &open);
    write::write(conn, ctx, &decided.steps, now)?;
    Ok(LevelOutcome::Applied {
        released: decided.released,
        free: free_at(conn, &u.sku, &u.location)?,
    })
}

/// `free` of a position, computed in Rust (`Position::free`), not in SQL (see the module docs).
fn free_at(conn: &Connection, sku: &str, location: &str) -> Result<i64> {
    conn.prepare_cached(
        "SELECT on_hand, committed, held FROM stock_levels WHERE sku = ?1 AND location = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![sku, location], |r| {
            Ok(Position {
                on_hand: r.get(0)?,
                committed: r.get(1)?,
                held: r.get(2)?,
            }
            .free())
        })
    })
    .map_err(db("read free stock"))
}

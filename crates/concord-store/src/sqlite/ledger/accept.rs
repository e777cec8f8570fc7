//! An order's acceptance on SQLite: remembered per (order, source) in `order_acceptances`, and
//! stamped on its reservations — with the releases it makes at once — as
//! [`crate::ledger::accept`] decides.
//!
//! Runs on the writer thread inside the job's savepoint (from `settle`, for a delivered order,
//! and from `commit_reservation`). Must never pick a watermark or a line to release here.

use super::super::codec::db;
use super::super::writer::WriterCtx;
use super::{lines_of, write};
use crate::ledger::accept::{accept, Acceptance, Accepting};
use crate::Result;
use concord_core::Millis;
use rusqlite::{params, Connection, OptionalExtension};

/// The active reservations of order `?1` from source `?2`.
pub(crate) const ACCEPTED_ORDER: &str = "SELECT id FROM reservations
     WHERE order_key = ?1 AND source = ?2 AND state IN ('held', 'committed')";

/// A delivered order: its active reservations from `source` are now accepted by the ERP (the
/// first acceptance is kept, both in `order_acceptances` and on each reservation).
pub(crate) fn mark_accepted(
    conn: &Connection,
    ctx: &mut WriterCtx,
    order: &str,
    source: &str,
    at: Millis,
    version: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO order_acceptances (order_key, source, accepted_at, version)
         VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![order, source, at, version]))
    .map_err(db("remember order acceptance"))?;
    let ids: Vec<String> = conn
        .prepare_cached(ACCEPTED_ORDER)
        .and_then(|mut s| {
            s.query_map(params![order, source], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("find the reservations of an accepted order"))?;
    let reservations = ids
        .iter()
        .map(|id| accepting(conn, id))
        .collect::<Result<Vec<_>>>()?;
    let acceptance = Acceptance {
        at,
        version: version.map(str::to_owned),
    };
    write::write(conn, ctx, &accept(&reservations, Some(&acceptance)), at)
}

/// A reservation just committed to `order`: if the ERP accepted that order already, it takes
/// over the first acceptance (its time and watermark).
pub(crate) fn apply_known_acceptance(
    conn: &Connection,
    ctx: &mut WriterCtx,
    id: &str,
    order: &str,
    now: Millis,
) -> Result<()> {
    let known: Option<Acceptance> = conn
        .prepare_cached(
            "SELECT a.accepted_at, a.version FROM order_acceptances a
             JOIN reservations r ON r.source = a.source
             WHERE r.id = ?1 AND a.order_key = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![id, order], |r| {
                Ok(Acceptance {
                    at: r.get(0)?,
                    version: r.get(1)?,
                })
            })
            .optional()
        })
        .map_err(db("read a known order acceptance"))?;
    let reservation = accepting(conn, id)?;
    write::write(conn, ctx, &accept(&[reservation], known.as_ref()), now)
}

/// Reservation `id` as an acceptance reads it: its acceptance so far and its unreleased lines,
/// each with its position's stored version.
fn accepting(conn: &Connection, id: &str) -> Result<Accepting> {
    let (at, version): (Option<Millis>, Option<String>) = conn
        .prepare_cached("SELECT accepted_at, accepted_version FROM reservations WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(db("read a reservation's acceptance"))?;
    let accepted = at.map(|at| Acceptance { at, version });
    let mut open = Vec::new();
    for line in lines_of(conn, id, true)? {
        let figure: Option<String> = conn
            .prepare_cached("SELECT version FROM stock_levels WHERE sku = ?1 AND location = ?2")
            .and_then(|mut s| {
                s.query_row(params![line.sku, line.location], |r| r.get(0))
                    .optional()
            })
            .map_err(db("read position version"))?
            .flatten();
        open.push((line, figure));
    }
    Ok(Accepting {
        id: id.to_owned(),
        accepted,
        open,
    })
}

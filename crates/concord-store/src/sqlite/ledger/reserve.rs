//! `Store::reserve` on SQLite: the client-key lookup, the positions the request routes over,
//! then [`crate::ledger::reserve`]'s decision written as it is.
//!
//! Runs on the writer thread inside the job's savepoint. Must never route, check a quantity or
//! compute what a position can give: that is the decision's.

use super::super::codec::db;
use super::super::writer::WriterCtx;
use super::{load_positions, reload, write};
use crate::ledger::reserve::{self, Decision};
use crate::{ReserveOutcome, ReserveRequest, Result};
use rusqlite::{params, Connection, OptionalExtension};

pub(crate) fn reserve(
    conn: &Connection,
    ctx: &mut WriterCtx,
    req: &ReserveRequest,
) -> Result<ReserveOutcome> {
    reserve::check(req)?;
    // The key names the checkout, not its content: a key used before answers what it made.
    let existing: Option<String> = conn
        .prepare_cached("SELECT id FROM reservations WHERE channel = ?1 AND client_key = ?2")
        .and_then(|mut s| {
            s.query_row(params![req.channel, req.client_key], |r| r.get(0))
                .optional()
        })
        .map_err(db("look up client key"))?;
    if let Some(id) = existing {
        return Ok(ReserveOutcome::Existing(reload(conn, &id)?));
    }
    let positions = load_positions(conn, &reserve::positions(req))?;
    match reserve::decide(req, &positions)? {
        Decision::Short(shortages) => Ok(ReserveOutcome::Short(shortages)),
        Decision::Reserve { reservation, steps } => {
            write::write(conn, ctx, &steps, req.now)?;
            Ok(ReserveOutcome::Reserved(*reservation))
        }
    }
}

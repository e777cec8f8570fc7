//! The stock ledger and reservations of design §5 on SQLite.
//!
//! Write functions (`reserve`, `update_levels`, transitions, acceptance, dirty marks) run on the
//! writer thread inside the job's savepoint, like everything in [`super::writes`]; since there is
//! one writer, each call is atomic with respect to every other reservation and ledger update
//! without any locking of its own. Read functions run on the reader pool.
//!
//! The invariant this module keeps, whatever the order of calls: at every position, `held` is the
//! sum of the unreleased non-backorder lines there and `backordered` the sum of the unreleased
//! backorder lines. A line's contribution is added once when it is reserved and removed once,
//! by the only statement that sets its `released_at` (guarded by `released_at IS NULL`).
//! `rehold_order` (cancel-and-replace) is the only way back: it clears `released_at` and adds
//! the contribution again in the same write, so each hold is released once.
//!
//! Contract choices (the trait leaves them open):
//! - A figure whose version *equals* the stored one is a re-delivery of the same figure: it is
//!   `Applied` with nothing released and nothing changed (the ledger already has it), not
//!   `Stale`. An unchanged figure cannot show that the ERP now includes an order, so it must not
//!   release anything, not even through the time-based fallback.
//! - `reserve` with a (channel, client key) already used returns the stored reservation as
//!   `Existing`, even when the new request's lines differ: the key names the checkout, not its
//!   content.
//! - A delivered order marks its reservations accepted once: the first acceptance is the
//!   watermark; later deliveries of the same order (updates) do not move it. Lines whose
//!   position's stored figure is already newer than the watermark (the ERP's figure overtook
//!   the settlement) are released right then, by version only. Cancel-and-replace clears the
//!   watermark (`rehold_order`): the replacement's acceptance sets it again.
//! - The backorder allowance of a SKU is `min(backorder_limit, Σ incoming) − Σ backordered`
//!   over the request's feeds: the limit caps the SKU's outstanding backorders, not each request (incoming lots with a positive integer `quantity`;
//!   anything else in `incoming` counts as nothing).
//!
//! Arithmetic: SQLite turns an integer sum that overflows into a REAL, silently — a `held`
//! column that stopped being an integer made every later read of the position fail. So no
//! figure is computed in SQL here: `held` and `backordered` change only through
//! [`add_to_position`] (checked in Rust; an overflow is [`StoreError::OutOfRange`] and the job
//! writes nothing), derived figures (`free`, what a location can give) come from
//! `concord_core::inventory`, and migration 8's triggers refuse any non-integer figure a future
//! statement might still compute.

use super::codec::{self, db, to_json};
use super::writer::WriterCtx;
use crate::inventory::compare_versions;
use crate::{
    DirtySku, LevelOutcome, LevelUpdate, Reservation, ReservationLine, ReservationState,
    ReserveOutcome, ReserveRequest, Result, StockLevel, StoreError, TransitionError,
};
use concord_core::inventory::{
    backorder_allowance, route, sellable, sum_non_negative, Backorderable, Candidate, Position,
    RouteError,
};
use concord_core::Millis;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

const RES_COLS: &str = "id, channel, client_key, state, source, order_key, created_at, \
     expires_at, committed_at, accepted_at, accepted_version, ended_at";

struct RawReservation {
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

fn raw_reservation(r: &Row<'_>) -> rusqlite::Result<RawReservation> {
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
fn reservation_from(conn: &Connection, raw: RawReservation) -> Result<Reservation> {
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
fn reload(conn: &Connection, id: &str) -> Result<Reservation> {
    load_reservation(conn, id)?
        .ok_or_else(|| StoreError::Db(format!("reservation {id} vanished mid-transaction")))
}

// ---- writes ----

/// Mark `sku` dirty with a fresh generation; the first unresolved mark's time is kept, so the
/// oldest-first listing never starves a SKU that keeps changing.
pub(crate) fn mark_dirty(
    conn: &Connection,
    ctx: &mut WriterCtx,
    sku: &str,
    now: Millis,
) -> Result<()> {
    let generation = ctx.next_generation();
    conn.prepare_cached(
        "INSERT INTO ats_dirty (sku, generation, marked_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (sku) DO UPDATE SET generation = excluded.generation",
    )
    .and_then(|mut s| s.execute(params![sku, generation, now]))
    .map_err(db("mark SKU dirty"))?;
    Ok(())
}

/// Clear a dirty mark unless it was set again since the planner read it.
pub(crate) fn clean(conn: &Connection, dirty: &DirtySku) -> Result<()> {
    conn.prepare_cached("DELETE FROM ats_dirty WHERE sku = ?1 AND generation = ?2")
        .and_then(|mut s| s.execute(params![dirty.sku, dirty.generation]))
        .map_err(db("clear dirty SKU"))?;
    Ok(())
}

/// Accepted, still active, unreleased lines at one position (`?1` SKU, `?2` location): the
/// candidates for release by a figure there.
pub(crate) const RELEASABLE_LINES: &str =
    "SELECT l.reservation_id, l.seq, l.quantity, l.backorder, r.accepted_at, r.accepted_version
     FROM reservation_lines l JOIN reservations r ON r.id = l.reservation_id
     WHERE l.sku = ?1 AND l.location = ?2 AND l.released_at IS NULL
       AND r.state IN ('held', 'committed') AND r.accepted_at IS NOT NULL";

/// Held reservations due to expire at `?1`. Without statistics SQLite would rather walk
/// `reservations_state`; the partial expiry index is the one that reads only what is due.
pub(crate) const DUE_RESERVATIONS: &str = "SELECT id FROM reservations
     INDEXED BY reservations_expiry
     WHERE state = 'held' AND expires_at <= ?1 ORDER BY expires_at, id";

/// What `reserve` needs of one position.
#[derive(Default, Clone, Copy)]
struct Pos {
    on_hand: i64,
    committed: i64,
    held: i64,
    backordered: i64,
    /// Σ of the incoming lots' quantities.
    incoming: i64,
}

impl Pos {
    fn position(&self) -> Position {
        Position {
            on_hand: self.on_hand,
            committed: self.committed,
            held: self.held,
        }
    }
}

/// Add `held` and `backordered` (either may be negative) to the position (`sku`, `location`),
/// creating it (no stock of its own yet) when it does not exist; returns whether it existed.
/// The only way these two columns change: the sums are checked here, so an overflow is an
/// error that undoes the job (the writer's savepoint), never a REAL in the ledger. `what` names
/// the operation for errors.
fn add_to_position(
    conn: &Connection,
    sku: &str,
    location: &str,
    held: i64,
    backordered: i64,
    now: Millis,
    what: &'static str,
) -> Result<bool> {
    let current: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT held, backordered FROM stock_levels WHERE sku = ?1 AND location = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![sku, location], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db(what))?;
    let (h0, b0) = current.unwrap_or((0, 0));
    let (Some(h), Some(b)) = (h0.checked_add(held), b0.checked_add(backordered)) else {
        return Err(StoreError::OutOfRange(format!(
            "{what}: held {h0} + {held} or backordered {b0} + {backordered} at ({sku}, {location}) overflows"
        )));
    };
    conn.prepare_cached(
        "INSERT INTO stock_levels
             (sku, location, on_hand, committed, held, backordered, incoming, version, updated_at)
         VALUES (?1, ?2, 0, 0, ?3, ?4, '[]', NULL, ?5)
         ON CONFLICT (sku, location) DO UPDATE SET held = excluded.held,
             backordered = excluded.backordered, updated_at = excluded.updated_at",
    )
    .and_then(|mut s| s.execute(params![sku, location, h, b, now]))
    .map_err(db(what))?;
    Ok(current.is_some())
}

/// Σ of the positive integer `quantity` of each incoming lot; anything else counts as nothing
/// (the safe direction: fewer backorders).
fn incoming_total(incoming: &Value) -> i64 {
    incoming.as_array().map_or(0, |lots| {
        lots.iter()
            .filter_map(|lot| lot.get("quantity").and_then(Value::as_i64))
            .filter(|q| *q > 0)
            .fold(0i64, |acc, q| acc.saturating_add(q))
    })
}

fn read_pos(conn: &Connection, sku: &str, location: &str) -> Result<Pos> {
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
        // A position never seen has no stock.
        None => Pos::default(),
        Some((on_hand, committed, held, backordered, incoming)) => Pos {
            on_hand,
            committed,
            held,
            backordered,
            incoming: incoming_total(&codec::json(&incoming)?),
        },
    })
}

pub(crate) fn reserve(
    conn: &Connection,
    ctx: &mut WriterCtx,
    req: &ReserveRequest,
) -> Result<ReserveOutcome> {
    if let Some(line) = req.lines.iter().find(|l| l.quantity < 1) {
        // A negative line would lower `held`: refuse it outright rather than route it.
        return Err(StoreError::Unsupported(if line.quantity == 0 {
            "reservation lines of quantity 0"
        } else {
            "reservation lines of negative quantity"
        }));
    }
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

    // Positions of every feed of every requested SKU, read once.
    let feeds: HashMap<&str, &[crate::Feed]> = req
        .feeds
        .iter()
        .rev() // the first entry of a repeated SKU wins
        .map(|(sku, feeds)| (sku.as_str(), feeds.as_slice()))
        .collect();
    let mut positions: HashMap<(&str, &str), Pos> = HashMap::new();
    for line in &req.lines {
        for feed in feeds.get(line.sku.as_str()).copied().unwrap_or_default() {
            let key = (line.sku.as_str(), feed.location.as_str());
            if let std::collections::hash_map::Entry::Vacant(e) = positions.entry(key) {
                e.insert(read_pos(conn, key.0, key.1)?);
            }
        }
    }
    let pos =
        |sku: &str, location: &str| positions.get(&(sku, location)).copied().unwrap_or_default();
    let candidates = |sku: &str| -> Vec<Candidate> {
        feeds
            .get(sku)
            .copied()
            .unwrap_or_default()
            .iter()
            .map(|f| Candidate {
                location: f.location.clone(),
                // A negative buffer keeps nothing back; it never adds to what is free.
                available: sellable(&pos(sku, &f.location).position(), f.buffer.max(0)),
            })
            .collect()
    };
    let backorderable = |sku: &str| -> Option<Backorderable> {
        let limit = req.backorder_limit?;
        let feeds = feeds.get(sku).copied().unwrap_or_default();
        let location = feeds
            .iter()
            .find(|f| pos(sku, &f.location).incoming > 0)?
            .location
            .clone();
        let incoming = sum_non_negative(feeds.iter().map(|f| pos(sku, &f.location).incoming));
        let backordered = sum_non_negative(feeds.iter().map(|f| pos(sku, &f.location).backordered));
        Some(Backorderable {
            quantity: backorder_allowance(limit, incoming, backordered),
            location,
        })
    };
    let allocations = match route(&req.lines, &candidates, &backorderable) {
        Ok(a) => a,
        Err(RouteError::Short(shortages)) => return Ok(ReserveOutcome::Short(shortages)),
        Err(e @ RouteError::Invalid { .. }) => return Err(StoreError::OutOfRange(e.to_string())),
    };

    conn.prepare_cached(
        "INSERT INTO reservations (id, channel, client_key, state, source, created_at, expires_at)
         VALUES (?1, ?2, ?3, 'held', ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            req.id,
            req.channel,
            req.client_key,
            req.source,
            req.now,
            req.expires_at
        ])
    })
    .map_err(db("insert reservation"))?;
    let mut lines = Vec::with_capacity(allocations.len());
    let mut skus = BTreeSet::new();
    for (seq, a) in allocations.into_iter().enumerate() {
        conn.prepare_cached(
            "INSERT INTO reservation_lines
                 (reservation_id, seq, sku, location, quantity, backorder)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                req.id,
                codec::limit(seq),
                a.sku,
                a.location,
                a.quantity,
                a.backorder
            ])
        })
        .map_err(db("insert reservation line"))?;
        let (held, backordered) = if a.backorder {
            (0, a.quantity)
        } else {
            (a.quantity, 0)
        };
        add_to_position(
            conn,
            &a.sku,
            &a.location,
            held,
            backordered,
            req.now,
            "raise held",
        )?;
        skus.insert(a.sku.clone());
        lines.push(ReservationLine {
            sku: a.sku,
            location: a.location,
            quantity: a.quantity,
            backorder: a.backorder,
            released_at: None,
        });
    }
    for sku in &skus {
        mark_dirty(conn, ctx, sku, req.now)?;
    }
    Ok(ReserveOutcome::Reserved(Reservation {
        id: req.id.clone(),
        channel: req.channel.clone(),
        client_key: req.client_key.clone(),
        state: ReservationState::Held,
        lines,
        source: req.source.clone(),
        order: None,
        created_at: req.now,
        expires_at: Some(req.expires_at),
        committed_at: None,
        accepted_at: None,
        accepted_version: None,
        ended_at: None,
    }))
}

/// An unreleased line, as the release paths need it.
struct OpenLine {
    reservation_id: String,
    seq: i64,
    sku: String,
    location: String,
    quantity: i64,
    backorder: bool,
}

/// Release one line: set `released_at` and remove its contribution from the position, exactly
/// once. Returns whether this call released it.
fn release_line(conn: &Connection, line: &OpenLine, now: Millis) -> Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE reservation_lines SET released_at = ?3
             WHERE reservation_id = ?1 AND seq = ?2 AND released_at IS NULL",
        )
        .and_then(|mut s| s.execute(params![line.reservation_id, line.seq, now]))
        .map_err(db("release reservation line"))?;
    if changed == 0 {
        return Ok(false);
    }
    let minus = line.quantity.checked_neg().ok_or_else(|| {
        StoreError::OutOfRange(format!(
            "line of reservation {} has quantity {}",
            line.reservation_id, line.quantity
        ))
    })?;
    let (held, backordered) = if line.backorder {
        (0, minus)
    } else {
        (minus, 0)
    };
    let existed = add_to_position(
        conn,
        &line.sku,
        &line.location,
        held,
        backordered,
        now,
        "lower held",
    )?;
    if !existed {
        // Reserving created the position; without it the invariant cannot hold: undo the job.
        return Err(StoreError::Db(format!(
            "ledger position ({}, {}) of reservation {} is missing",
            line.sku, line.location, line.reservation_id
        )));
    }
    Ok(true)
}

/// Release every unreleased line of a reservation; returns the SKUs touched.
fn release_all(conn: &Connection, id: &str, now: Millis) -> Result<BTreeSet<String>> {
    let open = conn
        .prepare_cached(
            "SELECT seq, sku, location, quantity, backorder FROM reservation_lines
             WHERE reservation_id = ?1 AND released_at IS NULL ORDER BY seq",
        )
        .and_then(|mut s| {
            s.query_map([id], |r| {
                Ok(OpenLine {
                    reservation_id: id.to_owned(),
                    seq: r.get(0)?,
                    sku: r.get(1)?,
                    location: r.get(2)?,
                    quantity: r.get(3)?,
                    backorder: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read unreleased lines"))?;
    let mut skus = BTreeSet::new();
    for line in &open {
        if release_line(conn, line, now)? {
            skus.insert(line.sku.clone());
        }
    }
    Ok(skus)
}

/// End an active reservation in `to` (expired, cancelled), releasing its lines.
fn end(
    conn: &Connection,
    ctx: &mut WriterCtx,
    id: &str,
    to: ReservationState,
    now: Millis,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE reservations SET state = ?2, ended_at = ?3, expires_at = NULL WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id, codec::reservation_state_str(to), now]))
    .map_err(db("end reservation"))?;
    for sku in release_all(conn, id, now)? {
        mark_dirty(conn, ctx, &sku, now)?;
    }
    Ok(())
}

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
    match state_of(conn, id)? {
        None => Ok(Err(TransitionError::NotFound)),
        Some((ReservationState::Held, _)) => {
            conn.prepare_cached(
                "UPDATE reservations SET state = 'committed', order_key = ?2, expires_at = NULL,
                     committed_at = ?3
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, order, now]))
            .map_err(db("commit reservation"))?;
            apply_known_acceptance(conn, ctx, id, order, now)?;
            Ok(Ok(reload(conn, id)?))
        }
        Some((ReservationState::Committed, Some(o))) if o == order => Ok(Ok(reload(conn, id)?)),
        Some((state, _)) => Ok(Err(TransitionError::WrongState(state))),
    }
}

pub(crate) fn cancel_reservation(
    conn: &Connection,
    ctx: &mut WriterCtx,
    id: &str,
    now: Millis,
) -> Result<std::result::Result<Reservation, TransitionError>> {
    match state_of(conn, id)? {
        None => Ok(Err(TransitionError::NotFound)),
        Some((state, _)) if state.is_active() => {
            end(conn, ctx, id, ReservationState::Cancelled, now)?;
            Ok(Ok(reload(conn, id)?))
        }
        Some((ReservationState::Cancelled, _)) => Ok(Ok(reload(conn, id)?)),
        Some((state, _)) => Ok(Err(TransitionError::WrongState(state))),
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
    let ids = active_of_order(conn, order)?;
    for id in &ids {
        end(conn, ctx, id, ReservationState::Cancelled, now)?;
    }
    Ok(ids.len())
}

/// Active reservations committed to `order`, oldest first.
fn active_of_order(conn: &Connection, order: &str) -> Result<Vec<String>> {
    conn.prepare_cached(
        "SELECT id FROM reservations WHERE order_key = ?1 AND state IN ('held', 'committed')
         ORDER BY created_at, rowid",
    )
    .and_then(|mut s| {
        s.query_map([order], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()
    })
    .map_err(db("find the reservations of an order"))
}

/// The order's most recent reservation that ended because the ERP's figures took it over.
fn released_of_order(conn: &Connection, order: &str) -> Result<Option<String>> {
    conn.prepare_cached(
        "SELECT id FROM reservations WHERE order_key = ?1 AND state = 'released'
         ORDER BY created_at DESC, rowid DESC LIMIT 1",
    )
    .and_then(|mut s| s.query_row([order], |r| r.get(0)).optional())
    .map_err(db("find the released reservation of an order"))
}

/// Cancel-and-replace is planned for `order`: between the ERP applying the cancel (its
/// committed drops) and accepting the replacement, neither side would hold the order. So the
/// order's released lines are held again (an order whose reservation ended as `released` gets
/// it back as `committed`) and the acceptance watermark is cleared: only the acceptance of the
/// replacement (its create's version) releases them again, never the figure showing the
/// cancel. Idempotent: a second call finds no released lines and a cleared watermark.
///
/// Returns the quantity held again per (SKU, location): until the ERP applies the cancel its
/// stored figure still commits those units too, so an increase in the same edit may count them
/// as available again (they are the order's either way).
pub(crate) fn rehold_order(
    conn: &Connection,
    ctx: &mut WriterCtx,
    order: &str,
    now: Millis,
) -> Result<HashMap<(String, String), i64>> {
    let mut ids = active_of_order(conn, order)?;
    if ids.is_empty() {
        ids = released_of_order(conn, order)?.into_iter().collect();
        for id in &ids {
            revive_released(
                conn,
                id,
                "take an order's released reservation back for a replacement",
            )?;
        }
    }
    let mut touched = BTreeSet::new();
    let mut reheld: HashMap<(String, String), i64> = HashMap::new();
    for id in &ids {
        let released: Vec<(i64, String, String, i64, bool)> = conn
            .prepare_cached(
                "SELECT seq, sku, location, quantity, backorder FROM reservation_lines
                 WHERE reservation_id = ?1 AND released_at IS NOT NULL ORDER BY seq",
            )
            .and_then(|mut s| {
                s.query_map([id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(db("read released lines of an order"))?;
        for (seq, sku, location, quantity, backorder) in released {
            conn.prepare_cached(
                "UPDATE reservation_lines SET released_at = NULL
                 WHERE reservation_id = ?1 AND seq = ?2",
            )
            .and_then(|mut s| s.execute(params![id, seq]))
            .map_err(db("hold a released line again"))?;
            let (held, backordered) = if backorder {
                (0, quantity)
            } else {
                (quantity, 0)
            };
            add_to_position(
                conn,
                &sku,
                &location,
                held,
                backordered,
                now,
                "raise held for a replacement",
            )?;
            let again = reheld.entry((sku.clone(), location)).or_default();
            *again = again.saturating_add(held);
            touched.insert(sku);
        }
        clear_acceptance(conn, id, "clear acceptance for a replacement")?;
    }
    for sku in &touched {
        mark_dirty(conn, ctx, sku, now)?;
    }
    Ok(reheld)
}

/// Take an order's `released` reservation back as `committed` (a replacement or an edit makes
/// it the order's again). No-op for a reservation in any other state.
fn revive_released(conn: &Connection, id: &str, what: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE reservations SET state = 'committed', ended_at = NULL
         WHERE id = ?1 AND state = 'released'",
    )
    .and_then(|mut s| s.execute([id]))
    .map_err(db(what))?;
    Ok(())
}

/// Clear a reservation's acceptance watermark: only a later acceptance releases its lines again.
fn clear_acceptance(conn: &Connection, id: &str, what: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE reservations SET accepted_at = NULL, accepted_version = NULL WHERE id = ?1",
    )
    .and_then(|mut s| s.execute([id]))
    .map_err(db(what))?;
    Ok(())
}

/// An edit before shipment: bring the reservations committed to `req.order` to the new
/// quantities. A SKU's current quantity is the sum of its lines (released ones included: the
/// ERP's figures hold those). Decreases shrink unreleased lines (newest first), lowering `held`;
/// what the unreleased lines cannot give back is the ERP's to release when it applies the edit.
/// Increases are routed over `req.feeds` like a reservation (no backorders) and added as new
/// lines of the oldest reservation; when the pool cannot cover one, nothing changes
/// (`Short`). After an increase the reservations' acceptance is cleared, so that only the ERP's
/// acceptance of the edited order (the next delivery) releases lines again. Idempotent: applying
/// the same quantities again changes nothing. An order whose reservation already ended as
/// `released` (the ERP's figures hold all of it) is adjusted on that reservation, taken back to
/// `committed` when an increase adds lines to it.
pub(crate) fn adjust_order_reservation(
    conn: &Connection,
    ctx: &mut WriterCtx,
    req: &crate::AdjustRequest,
) -> Result<crate::AdjustOutcome> {
    let reheld = if req.rehold {
        rehold_order(conn, ctx, &req.order, req.now)?
    } else {
        HashMap::new()
    };
    let mut ids = active_of_order(conn, &req.order)?;
    // Once the ERP's figures took the whole order over, its reservation ended as `released`;
    // an edit still goes through the pool: the latest such reservation is the order's again
    // (its released lines count as what the ERP holds) and an increase is added to it.
    let mut revive = false;
    if ids.is_empty() {
        ids = released_of_order(conn, &req.order)?.into_iter().collect();
        revive = true;
    }
    let Some(first) = ids.first().cloned() else {
        return Ok(crate::AdjustOutcome::NoReservation);
    };
    struct L {
        rid: String,
        seq: i64,
        sku: String,
        location: String,
        quantity: i64,
        backorder: bool,
        released: bool,
    }
    let mut lines: Vec<L> = Vec::new();
    for id in &ids {
        let mut got = conn
            .prepare_cached(
                "SELECT seq, sku, location, quantity, backorder, released_at IS NOT NULL
                 FROM reservation_lines WHERE reservation_id = ?1 ORDER BY seq",
            )
            .and_then(|mut s| {
                s.query_map([id], |r| {
                    Ok(L {
                        rid: id.clone(),
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
            .map_err(db("read the lines of an order's reservation"))?;
        lines.append(&mut got);
    }
    let mut current: BTreeMap<String, i64> = BTreeMap::new();
    for l in &lines {
        let c = current.entry(l.sku.clone()).or_default();
        *c = c.checked_add(l.quantity).ok_or_else(|| {
            StoreError::OutOfRange(format!(
                "the reservation lines of `{}` for {} add up past the ledger's range",
                req.order, l.sku
            ))
        })?;
    }
    let target: BTreeMap<String, i64> = req.quantities.iter().cloned().collect();
    let skus: BTreeSet<String> = current.keys().chain(target.keys()).cloned().collect();
    let mut grow: Vec<concord_core::inventory::Line> = Vec::new();
    let mut shrink: Vec<(String, i64)> = Vec::new();
    for sku in &skus {
        let (cur, want) = (
            current.get(sku).copied().unwrap_or(0),
            target.get(sku).copied().unwrap_or(0).max(0),
        );
        match want.cmp(&cur) {
            // want ≥ 0 and cur ≥ 0 (sums of positive lines), so neither difference overflows.
            Ordering::Greater => grow.push(concord_core::inventory::Line {
                sku: sku.clone(),
                quantity: want - cur,
            }),
            Ordering::Less => shrink.push((sku.clone(), cur - want)),
            Ordering::Equal => {}
        }
    }
    let mut touched = BTreeSet::new();
    if !grow.is_empty() {
        let feeds: HashMap<&str, &[crate::Feed]> = req
            .feeds
            .iter()
            .rev()
            .map(|(sku, f)| (sku.as_str(), f.as_slice()))
            .collect();
        let mut positions: HashMap<(String, String), Pos> = HashMap::new();
        for l in &grow {
            for f in feeds.get(l.sku.as_str()).copied().unwrap_or_default() {
                let k = (l.sku.clone(), f.location.clone());
                if let std::collections::hash_map::Entry::Vacant(e) = positions.entry(k) {
                    e.insert(read_pos(conn, &l.sku, &f.location)?);
                }
            }
        }
        let candidates = |sku: &str| -> Vec<Candidate> {
            feeds
                .get(sku)
                .copied()
                .unwrap_or_default()
                .iter()
                .map(|f| {
                    let k = (sku.to_string(), f.location.clone());
                    let p = positions.get(&k).copied().unwrap_or_default();
                    // Units just held again are still in the ERP's committed: count them once.
                    let again = reheld.get(&k).copied().unwrap_or(0);
                    let mut position = p.position();
                    position.held = position.held.saturating_sub(again);
                    Candidate {
                        location: f.location.clone(),
                        available: sellable(&position, f.buffer.max(0)),
                    }
                })
                .collect()
        };
        let allocations = match route(&grow, &candidates, &|_| None) {
            Ok(a) => a,
            Err(RouteError::Short(shortages)) => return Ok(crate::AdjustOutcome::Short(shortages)),
            Err(e @ RouteError::Invalid { .. }) => {
                return Err(StoreError::OutOfRange(e.to_string()))
            }
        };
        let seq: i64 = conn
            .prepare_cached(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM reservation_lines WHERE reservation_id = ?1",
            )
            .and_then(|mut s| s.query_row([&first], |r| r.get(0)))
            .map_err(db("next reservation line"))?;
        for (a, seq) in allocations.into_iter().zip(seq..) {
            conn.prepare_cached(
                "INSERT INTO reservation_lines
                     (reservation_id, seq, sku, location, quantity, backorder)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0)",
            )
            .and_then(|mut s| s.execute(params![first, seq, a.sku, a.location, a.quantity]))
            .map_err(db("insert reservation line"))?;
            add_to_position(
                conn,
                &a.sku,
                &a.location,
                a.quantity,
                0,
                req.now,
                "raise held",
            )?;
            touched.insert(a.sku);
        }
        if revive {
            revive_released(
                conn,
                &first,
                "take an order's released reservation back for an edit",
            )?;
        }
        for id in &ids {
            clear_acceptance(conn, id, "clear acceptance after an increase")?;
        }
    }
    for (sku, mut cut) in shrink {
        for l in lines
            .iter()
            .rev()
            .filter(|l| l.sku == sku && !l.released && l.quantity > 0)
        {
            if cut == 0 {
                break;
            }
            let take = cut.min(l.quantity);
            cut -= take;
            if take == l.quantity {
                conn.prepare_cached(
                    "DELETE FROM reservation_lines WHERE reservation_id = ?1 AND seq = ?2",
                )
                .and_then(|mut s| s.execute(params![l.rid, l.seq]))
                .map_err(db("remove reservation line"))?;
            } else {
                conn.prepare_cached(
                    "UPDATE reservation_lines SET quantity = quantity - ?3
                     WHERE reservation_id = ?1 AND seq = ?2",
                )
                .and_then(|mut s| s.execute(params![l.rid, l.seq, take]))
                .map_err(db("shrink reservation line"))?;
            }
            // 0 < take ≤ the line's quantity: its negation cannot overflow.
            let (held, backordered) = if l.backorder { (0, -take) } else { (-take, 0) };
            add_to_position(
                conn,
                &l.sku,
                &l.location,
                held,
                backordered,
                req.now,
                "lower held",
            )?;
            touched.insert(sku.clone());
        }
    }
    for sku in &touched {
        mark_dirty(conn, ctx, sku, req.now)?;
    }
    Ok(crate::AdjustOutcome::Adjusted(Box::new(reload(
        conn, &first,
    )?)))
}

/// A delivered order: its reservations from `source` are now accepted by the ERP (first
/// acceptance wins).
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
    conn.prepare_cached(
        "UPDATE reservations SET accepted_at = ?3, accepted_version = ?4
         WHERE order_key = ?1 AND source = ?2 AND state IN ('held', 'committed')
           AND accepted_at IS NULL",
    )
    .and_then(|mut s| s.execute(params![order, source, at, version]))
    .map_err(db("mark reservations accepted"))?;
    release_already_included(
        conn,
        ctx,
        "r.order_key = ?1 AND r.source = ?2",
        params![order, source],
        at,
    )
}

/// A reservation just committed to `order`: if the ERP accepted that order already, take over
/// the first acceptance (its time and watermark).
fn apply_known_acceptance(
    conn: &Connection,
    ctx: &mut WriterCtx,
    id: &str,
    order: &str,
    now: Millis,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE reservations SET (accepted_at, accepted_version) =
             (SELECT a.accepted_at, a.version FROM order_acceptances a
               WHERE a.order_key = ?2 AND a.source = reservations.source)
         WHERE id = ?1 AND accepted_at IS NULL
           AND EXISTS (SELECT 1 FROM order_acceptances a
                        WHERE a.order_key = ?2 AND a.source = reservations.source)",
    )
    .and_then(|mut s| s.execute(params![id, order]))
    .map_err(db("apply a known order acceptance"))?;
    release_already_included(conn, ctx, "r.id = ?1", params![id], now)
}

/// Release the accepted, active lines (of the reservations `filter` selects, over `r`) whose
/// position's stored figure already includes their order: the ERP's figure can reach the ledger
/// before the delivery that carries the acceptance watermark is settled (the ERP commits the
/// stock, its webhook races the worker's settlement), and a re-delivery of that same figure
/// releases nothing (module docs), so without this the line would stay held — available-to-sell
/// low by its quantity — until the next stock change at that position. Only comparable versions
/// decide here: the time-based fallback needs the figure's capture time, which the ledger does
/// not keep, so lines without a comparable watermark wait for the next figure as before.
fn release_already_included(
    conn: &Connection,
    ctx: &mut WriterCtx,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
    now: Millis,
) -> Result<()> {
    let sql = format!(
        "SELECT l.reservation_id, l.seq, l.sku, l.location, l.quantity, l.backorder,
                r.accepted_version, p.version
         FROM reservation_lines l
         JOIN reservations r ON r.id = l.reservation_id
         JOIN stock_levels p ON p.sku = l.sku AND p.location = l.location
         WHERE {filter} AND l.released_at IS NULL
           AND r.state IN ('held', 'committed') AND r.accepted_at IS NOT NULL
           AND r.accepted_version IS NOT NULL AND p.version IS NOT NULL
         ORDER BY l.reservation_id, l.seq"
    );
    let open = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(args, |r| {
                Ok((
                    OpenLine {
                        reservation_id: r.get(0)?,
                        seq: r.get(1)?,
                        sku: r.get(2)?,
                        location: r.get(3)?,
                        quantity: r.get(4)?,
                        backorder: r.get(5)?,
                    },
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read lines the ledger already includes"))?;
    let mut released = BTreeSet::new();
    let mut touched = BTreeSet::new();
    for (line, accepted_version, figure_version) in &open {
        let includes =
            compare_versions(figure_version, accepted_version) == Some(Ordering::Greater);
        if includes && release_line(conn, line, now)? {
            released.insert(line.reservation_id.clone());
            touched.insert(line.sku.clone());
        }
    }
    for id in &released {
        finish_if_released(conn, id, now)?;
    }
    for sku in &touched {
        mark_dirty(conn, ctx, sku, now)?;
    }
    Ok(())
}

/// A reservation whose lines are all released becomes `Released`.
fn finish_if_released(conn: &Connection, id: &str, now: Millis) -> Result<()> {
    conn.prepare_cached(
        "UPDATE reservations SET state = 'released', ended_at = ?2, expires_at = NULL
         WHERE id = ?1 AND state IN ('held', 'committed')
           AND NOT EXISTS (SELECT 1 FROM reservation_lines
                           WHERE reservation_id = ?1 AND released_at IS NULL)",
    )
    .and_then(|mut s| s.execute(params![id, now]))
    .map_err(db("mark reservation released"))?;
    Ok(())
}

/// Does the figure `(version, captured_at)` include an order accepted at `accepted_at` with
/// `accepted_version`? Comparable versions decide alone; otherwise only time can, when a grace
/// is given.
fn passes_watermark(
    version: &str,
    captured_at: Millis,
    accepted_at: Millis,
    accepted_version: Option<&str>,
    grace: Option<i64>,
) -> bool {
    match accepted_version.and_then(|a| compare_versions(version, a)) {
        Some(order) => order == Ordering::Greater,
        None => grace.is_some_and(|g| captured_at >= accepted_at.saturating_add(g)),
    }
}

/// Apply ERP figures (see `Store::update_levels`). `grace: None` disables the time-based
/// release fallback.
pub(crate) fn update_levels(
    conn: &Connection,
    ctx: &mut WriterCtx,
    updates: &[crate::LevelUpdate],
    grace: Option<i64>,
    now: Millis,
) -> Result<Vec<LevelOutcome>> {
    let mut out = Vec::with_capacity(updates.len());
    for u in updates {
        out.push(update_level(conn, ctx, u, grace, now)?);
    }
    Ok(out)
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
    if let Some(Some(stored)) = &stored {
        match compare_versions(&u.version, stored) {
            Some(Ordering::Less) => return Ok(LevelOutcome::Stale),
            // The same figure again: the ledger has it already (see the module docs).
            Some(Ordering::Equal) => {
                return Ok(LevelOutcome::Applied {
                    released: Vec::new(),
                    free: free_at(conn, &u.sku, &u.location)?,
                })
            }
            _ => {}
        }
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

    // Accepted, still active lines at this position: the candidates for release.
    let open = conn
        .prepare_cached(RELEASABLE_LINES)
        .and_then(|mut s| {
            s.query_map(params![u.sku, u.location], |r| {
                Ok((
                    OpenLine {
                        reservation_id: r.get(0)?,
                        seq: r.get(1)?,
                        sku: u.sku.clone(),
                        location: u.location.clone(),
                        quantity: r.get(2)?,
                        backorder: r.get(3)?,
                    },
                    r.get::<_, Millis>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read releasable lines"))?;
    let mut released: BTreeMap<String, i64> = BTreeMap::new();
    for (line, accepted_at, accepted_version) in &open {
        let includes = passes_watermark(
            &u.version,
            u.captured_at,
            *accepted_at,
            accepted_version.as_deref(),
            grace,
        );
        if includes && release_line(conn, line, now)? {
            let r = released.entry(line.reservation_id.clone()).or_default();
            *r = r.saturating_add(line.quantity);
        }
    }
    for id in released.keys() {
        // Released once nothing is left unreleased anywhere.
        finish_if_released(conn, id, now)?;
    }
    mark_dirty(conn, ctx, &u.sku, now)?;
    Ok(LevelOutcome::Applied {
        released: released.into_iter().collect(),
        free: free_at(conn, &u.sku, &u.location)?,
    })
}

// ---- reads ----

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

//! A refused amend settled on SQLite (`Settlement::AmendRefused`): the order's lifecycle facts
//! and the later items of its key read on the writer, the fallback planned by
//! [`crate::sync::amend`], and written in the settlement's transaction — so the replacement
//! number is never given out twice.
//!
//! Runs on the writer thread inside the job's savepoint; must never plan anything here.

use super::codec::{self, db, to_json};
use super::enqueue::enqueue;
use super::outbox::{dead_letter, finish_item, Held};
use super::writer::WriterCtx;
use super::{ledger, orders};
use crate::sync::amend::{self as decide, Later, Plan, Refused, ReplacementItem};
use crate::{EditFallback, ItemId, Result};
use concord_core::Millis;
use rusqlite::{params, Connection};

pub(crate) fn amend_refused(
    conn: &Connection,
    ctx: &mut WriterCtx,
    id: ItemId,
    held: &Held,
    reason: &str,
    fallback: EditFallback,
    at: Millis,
) -> Result<()> {
    let lifecycle = orders::lifecycle_facts(conn, &held.key)?;
    // Items of the key planned after the refused one (later edits, a cancellation) still wait.
    let later = conn
        .prepare_cached(
            "SELECT id, op, payload FROM outbox
             WHERE dest = ?1 AND kind = ?2 AND key = ?3 AND id > ?4
               AND state IN ('pending', 'parked')
             ORDER BY id",
        )
        .and_then(|mut s| {
            s.query_map(params![held.dest, held.kind, held.key, id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read later items of an order"))?
        .into_iter()
        .map(|(id, op, payload)| {
            Ok(Later {
                id,
                op,
                payload: codec::json(&payload)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let refused = Refused {
        id,
        dest: &held.dest,
        key: &held.key,
        flow: &held.flow,
        journal_id: held.journal_id,
        captured_at: held.captured_at,
        payload: codec::json(&held.payload)?,
        reason,
        fallback,
        at,
    };
    let replace = match decide::plan(&refused, lifecycle.as_ref(), &later) {
        Plan::Reject { reason, event } => {
            dead_letter(conn, id, held, &reason, at)?;
            if let Some(event) = event {
                orders::record_event(conn, &held.key, &event)?;
            }
            return Ok(());
        }
        Plan::CancelAndReplace(replace) => replace,
    };
    for superseded in &replace.superseded {
        finish_item(
            conn,
            *superseded,
            "done",
            Some(&replace.superseded_note),
            at,
        )?;
    }
    conn.prepare_cached(
        "UPDATE outbox SET op = 'cancel', payload = ?2, hash = ?3, state = 'pending',
             token = NULL, lease_until = NULL, next_at = ?4, attempts = 0, last_error = ?5,
             coalesce = 0, updated_at = ?4
         WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            to_json(&replace.cancel),
            replace.cancel_hash,
            at,
            reason
        ])
    })
    .map_err(db("turn a refused amend into a cancel"))?;
    if let Some(replacement) = &replace.replacement {
        match &replacement.item {
            ReplacementItem::Rewrite { id, payload, hash } => {
                conn.prepare_cached(
                    "UPDATE outbox SET op = 'create', payload = ?2, hash = ?3, coalesce = 0,
                         updated_at = ?4
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, to_json(payload), hash, at]))
                .map_err(db("turn a later edit into the replacement"))?;
            }
            ReplacementItem::Enqueue(item) => {
                enqueue(conn, item, at)?;
            }
        }
        orders::set_replacement(
            conn,
            &held.key,
            &replacement.reference,
            replacement.replacements,
            at,
        )?;
        // Between the cancel and the replacement's acceptance the order is held here again.
        ledger::orders::rehold_order(conn, ctx, &held.key, at)?;
    }
    conn.prepare_cached(
        "INSERT INTO hashes (dest, kind, key, planned) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (dest, kind, key) DO UPDATE SET planned = excluded.planned",
    )
    .and_then(|mut s| s.execute(params![held.dest, held.kind, held.key, replace.planned]))
    .map_err(db("set planned hash"))?;
    if let Some(event) = &replace.event {
        orders::record_event(conn, &held.key, event)?;
    }
    Ok(())
}

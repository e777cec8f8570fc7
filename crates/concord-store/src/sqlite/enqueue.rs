//! An outbox item enqueued on SQLite: dependencies looked up, then coalesced into the pending
//! item of its key or inserted (pending or parked), and the key's planned hash set — each
//! choice [`crate::sync::enqueue`]'s.
//!
//! Runs on the writer thread inside the job's savepoint (from `apply`, a dead-letter replay or a
//! refused amend); must never open, commit or roll back a transaction itself.

use super::codec::{self, db, to_json};
use crate::sync::enqueue::{self as decide, Newest};
use crate::{ItemId, NewItem, Result};
use concord_core::{Kind, Millis};
use rusqlite::{params, Connection, OptionalExtension};

/// Is (`kind`, `key`) known at `endpoint` (an xref exists)?
pub(crate) fn xref_known(conn: &Connection, endpoint: &str, kind: Kind, key: &str) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM xref WHERE endpoint = ?1 AND kind = ?2 AND key = ?3")
        .and_then(|mut s| {
            s.query_row(params![endpoint, kind.as_str(), key], |_| Ok(()))
                .optional()
        })
        .map(|found| found.is_some())
        .map_err(db("look up xref"))
}

/// Enqueue one item and set its planned hash. Returns the item's id (the existing one when
/// coalesced).
pub(crate) fn enqueue(conn: &Connection, item: &NewItem, now: Millis) -> Result<ItemId> {
    let kind = item.kind.as_str();
    let mut remaining: Vec<(Kind, &str)> = Vec::new();
    for (k, key) in decide::dependencies(item) {
        if !xref_known(conn, &item.dest, k, key)? {
            remaining.push((k, key));
        }
    }
    let waits = !remaining.is_empty();
    let payload = to_json(&item.payload);

    let mut coalesced = None;
    if decide::may_coalesce(item, waits) {
        let newest = conn
            .prepare_cached(
                "SELECT id, state, coalesce FROM outbox
                 WHERE dest = ?1 AND kind = ?2 AND key = ?3
                   AND state IN ('pending', 'inflight', 'parked')
                 ORDER BY id DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![item.dest, kind, item.key], |r| {
                    Ok((r.get::<_, ItemId>(0)?, r.get::<_, String>(1)?, r.get(2)?))
                })
                .optional()
            })
            .map_err(db("find item to coalesce with"))?
            .map(|(id, state, coalesce)| {
                Ok::<_, crate::StoreError>(Newest {
                    id,
                    state: codec::item_state(&state)?,
                    coalesce,
                })
            })
            .transpose()?;
        if let Some(id) = decide::coalesce_into(newest) {
            conn.prepare_cached(
                "UPDATE outbox SET op = ?2, payload = ?3, hash = ?4, flow = ?5,
                     journal_id = ?6, captured_at = ?7, attempts = 0,
                     next_at = MIN(next_at, ?8), last_error = NULL, updated_at = ?9
                 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    item.op,
                    payload,
                    item.hash,
                    item.flow,
                    item.journal_id,
                    item.captured_at,
                    item.not_before,
                    now
                ])
            })
            .map_err(db("coalesce item"))?;
            coalesced = Some(id);
        }
    }

    let id = match coalesced {
        Some(id) => id,
        None => {
            conn.prepare_cached(
                "INSERT INTO outbox (dest, kind, key, op, payload, hash, flow, journal_id,
                     captured_at, state, attempts, next_at, created_at, updated_at, coalesce)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, ?12, ?12, ?13)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    item.dest,
                    kind,
                    item.key,
                    item.op,
                    payload,
                    item.hash,
                    item.flow,
                    item.journal_id,
                    item.captured_at,
                    codec::item_state_str(decide::initial_state(waits)),
                    item.not_before,
                    now,
                    item.coalesce
                ])
            })
            .map_err(db("insert outbox item"))?;
            let id = conn.last_insert_rowid();
            for (seq, (k, key)) in remaining.iter().enumerate() {
                conn.prepare_cached(
                    "INSERT INTO outbox_deps (item_id, seq, dest, kind, key)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| {
                    s.execute(params![id, codec::limit(seq), item.dest, k.as_str(), key])
                })
                .map_err(db("insert item dependency"))?;
            }
            id
        }
    };
    conn.prepare_cached(
        "INSERT INTO hashes (dest, kind, key, planned) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (dest, kind, key) DO UPDATE SET planned = excluded.planned",
    )
    .and_then(|mut s| s.execute(params![item.dest, kind, item.key, item.hash]))
    .map_err(db("set planned hash"))?;
    Ok(id)
}

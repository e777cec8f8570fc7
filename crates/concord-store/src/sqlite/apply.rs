//! One processing step on SQLite (`Store::apply`): a [`ProcessBatch`] written part by part in
//! [`crate::sync::apply::ORDER`], in the job's one transaction — journal statuses, entities,
//! cross-references (un-parking what waited on them), outbox items, dead letters, ERP figures,
//! clean marks, order lifecycle rows and the reservations of cancelled orders, audit events.
//!
//! Runs on the writer thread inside the job's savepoint; must never open, commit or roll back a
//! transaction itself, and never reorder the parts (the order is the shared decision's).

use super::codec::{self, db, to_json};
use super::dead_letters::insert_dead_letter;
use super::enqueue::enqueue;
use super::writer::WriterCtx;
use super::{ledger, orders, writes};
use crate::sync::apply::{self as decide, Part};
use crate::{EntityWrite, ItemId, ProcessBatch, Result, StoreError, Xref};
use concord_core::{Kind, Millis};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;

pub(crate) fn apply(
    conn: &Connection,
    ctx: &mut WriterCtx,
    batch: &ProcessBatch,
    now: Millis,
) -> Result<()> {
    for part in decide::ORDER {
        match part {
            Part::Journal => {
                for (id, status, note, key) in &batch.journal {
                    conn.prepare_cached(
                        "UPDATE journal SET status = ?2, note = ?3, key = COALESCE(?4, key)
                         WHERE id = ?1",
                    )
                    .and_then(|mut s| {
                        s.execute(params![id, codec::journal_status_str(*status), note, key])
                    })
                    .map_err(db("update journal entry"))?;
                }
            }
            Part::Entities => {
                for e in &batch.entities {
                    write_entity(conn, e)?;
                }
            }
            Part::Xrefs => {
                for x in &batch.xrefs {
                    insert_xref(conn, x, now)?;
                }
            }
            Part::Items => {
                for item in &batch.items {
                    enqueue(conn, item, now)?;
                }
            }
            Part::DeadLetters => {
                for dl in &batch.dead_letters {
                    insert_dead_letter(conn, dl)?;
                }
            }
            Part::Levels => {
                ledger::levels::update_levels(
                    conn,
                    ctx,
                    &batch.levels,
                    batch.release_grace_ms,
                    now,
                )?;
            }
            Part::Clean => {
                for dirty in &batch.clean {
                    ledger::clean(conn, dirty)?;
                }
            }
            Part::Orders => orders::write_orders(conn, &batch.orders, now)?,
            Part::CancelReservations => {
                for order in &batch.cancel_reservations {
                    ledger::orders::cancel_order_reservations(conn, ctx, order, now)?;
                }
            }
            Part::Audit => writes::record_audit(conn, &batch.audit)?,
        }
    }
    Ok(())
}

/// Store an entity's new state with the versions it was built from.
fn write_entity(conn: &Connection, e: &EntityWrite) -> Result<()> {
    let kind = e.kind.as_str();
    let stored: Option<String> = conn
        .prepare_cached("SELECT versions FROM entities WHERE kind = ?1 AND key = ?2")
        .and_then(|mut s| s.query_row(params![kind, e.key], |r| r.get(0)).optional())
        .map_err(db("read entity versions"))?;
    let stored: BTreeMap<String, String> = match stored {
        Some(text) => serde_json::from_str(&text)
            .map_err(|err| codec::decode_err(format_args!("entity versions: {err}")))?,
        None => BTreeMap::new(),
    };
    let versions = decide::entity_versions(stored, &e.endpoint, &e.version);
    let versions = serde_json::to_string(&versions)
        .map_err(|err| StoreError::Db(format!("encode entity versions: {err}")))?;
    conn.prepare_cached(
        "INSERT INTO entities (kind, key, state, hash, versions, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (kind, key) DO UPDATE SET state = excluded.state, hash = excluded.hash,
             versions = excluded.versions, updated_at = excluded.updated_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            kind,
            e.key,
            to_json(&e.state),
            e.hash,
            versions,
            e.at
        ])
    })
    .map_err(db("upsert entity"))?;
    Ok(())
}

/// Insert the xref unless either side is already mapped; when inserted, un-park what waited for
/// the key at that endpoint. Returns whether it was inserted.
pub(crate) fn insert_xref(conn: &Connection, x: &Xref, now: Millis) -> Result<bool> {
    let kind = x.kind.as_str();
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO xref (endpoint, kind, external_id, key) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![x.endpoint, kind, x.external_id, x.key]))
        .map_err(db("insert xref"))?
        > 0;
    if inserted {
        unpark(conn, &x.endpoint, x.kind, &x.key, now)?;
    }
    Ok(inserted)
}

/// (`kind`, `key`) is now known at `dest`: drop that dependency and make items with none left
/// deliverable — due now, unless enqueued with a later `not_before`.
fn unpark(conn: &Connection, dest: &str, kind: Kind, key: &str, now: Millis) -> Result<()> {
    let kind = kind.as_str();
    let waiting: Vec<ItemId> = conn
        .prepare_cached(
            "SELECT DISTINCT item_id FROM outbox_deps WHERE dest = ?1 AND kind = ?2 AND key = ?3",
        )
        .and_then(|mut s| {
            s.query_map(params![dest, kind, key], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("find items waiting on a dependency"))?;
    if waiting.is_empty() {
        return Ok(());
    }
    conn.prepare_cached("DELETE FROM outbox_deps WHERE dest = ?1 AND kind = ?2 AND key = ?3")
        .and_then(|mut s| s.execute(params![dest, kind, key]))
        .map_err(db("remove satisfied dependency"))?;
    for id in waiting {
        conn.prepare_cached(
            "UPDATE outbox SET state = 'pending', next_at = MAX(next_at, ?2), updated_at = ?2
             WHERE id = ?1 AND state = 'parked'
               AND NOT EXISTS (SELECT 1 FROM outbox_deps WHERE item_id = ?1)",
        )
        .and_then(|mut s| s.execute(params![id, now]))
        .map_err(db("un-park item"))?;
    }
    Ok(())
}

//! One processing step on PostgreSQL (`Store::apply`): a [`ProcessBatch`] written part by part
//! in [`crate::sync::apply::ORDER`], in the caller's one transaction — journal statuses,
//! entities, cross-references (un-parking what waited on them), outbox items, dead letters, ERP
//! figures, clean marks, order lifecycle rows and the reservations of cancelled orders (those
//! three through the ledger module), audit events.
//!
//! Must never open, commit or roll back a transaction itself, and never reorder the parts (the
//! order is the shared decision's).

use super::codec::{self, db, get, to_json};
use super::dead_letters::insert_dead_letter;
use super::enqueue::enqueue;
use super::{ledger, orders, writes};
use crate::sync::apply::{self as decide, Part};
use crate::{EntityWrite, ItemId, ProcessBatch, Result, StoreError, Xref};
use concord_core::{Kind, Millis};
use std::collections::BTreeMap;
use tokio_postgres::Transaction;

pub(crate) async fn apply(tx: &Transaction<'_>, batch: &ProcessBatch, now: Millis) -> Result<()> {
    for part in decide::ORDER {
        match part {
            Part::Journal => {
                for (id, status, note, key) in &batch.journal {
                    tx.execute(
                        "UPDATE journal SET status = $2, note = $3, key = COALESCE($4, key)
                         WHERE id = $1",
                        &[id, &codec::journal_status_str(*status), note, key],
                    )
                    .await
                    .map_err(db("update journal entry"))?;
                }
            }
            Part::Entities => {
                for e in &batch.entities {
                    write_entity(tx, e).await?;
                }
            }
            Part::Xrefs => {
                for x in &batch.xrefs {
                    insert_xref(tx, x, now).await?;
                }
            }
            Part::Items => {
                for item in &batch.items {
                    enqueue(tx, item, now).await?;
                }
            }
            Part::DeadLetters => {
                for dl in &batch.dead_letters {
                    insert_dead_letter(tx, dl).await?;
                }
            }
            Part::Levels => {
                if !batch.levels.is_empty() {
                    ledger::update_levels(tx, &batch.levels, batch.release_grace_ms, now).await?;
                }
            }
            Part::Clean => {
                for dirty in &batch.clean {
                    ledger::clean(tx, dirty).await?;
                }
            }
            Part::Orders => {
                if !batch.orders.is_empty() {
                    orders::write_orders(tx, &batch.orders, now).await?;
                }
            }
            Part::CancelReservations => {
                for order in &batch.cancel_reservations {
                    ledger::cancel_order_reservations(tx, order, now).await?;
                }
            }
            Part::Audit => writes::record_audit(tx, &batch.audit).await?,
        }
    }
    Ok(())
}

/// Store an entity's new state with the versions it was built from (the entity locked first,
/// so two instances merging versions of one entity never lose one).
async fn write_entity(tx: &Transaction<'_>, e: &EntityWrite) -> Result<()> {
    let kind = e.kind.as_str();
    // Serializes writers of one entity across instances, the first insert included (a row
    // lock alone cannot cover a row that does not exist yet).
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('entity' || chr(31) || $1 || chr(31) || $2, 0))",
        &[&kind, &e.key],
    )
    .await
    .map_err(db("lock an entity"))?;
    let stored = tx
        .query_opt(
            "SELECT versions FROM entities WHERE kind = $1 AND key = $2",
            &[&kind, &e.key],
        )
        .await
        .map_err(db("read entity versions"))?;
    let stored: BTreeMap<String, String> = match stored {
        Some(r) => serde_json::from_str(get::<&str>(&r, 0)?)
            .map_err(|err| codec::decode_err(format_args!("entity versions: {err}")))?,
        None => BTreeMap::new(),
    };
    let versions = decide::entity_versions(stored, &e.endpoint, &e.version);
    let versions = serde_json::to_string(&versions)
        .map_err(|err| StoreError::Db(format!("encode entity versions: {err}")))?;
    tx.execute(
        "INSERT INTO entities (kind, key, state, hash, versions, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (kind, key) DO UPDATE SET state = excluded.state, hash = excluded.hash,
             versions = excluded.versions, updated_at = excluded.updated_at",
        &[&kind, &e.key, &to_json(&e.state), &e.hash, &versions, &e.at],
    )
    .await
    .map_err(db("upsert entity"))?;
    Ok(())
}

/// Insert the xref unless either side is already mapped; when inserted, un-park what waited for
/// the key at that endpoint. Returns whether it was inserted.
pub(crate) async fn insert_xref(tx: &Transaction<'_>, x: &Xref, now: Millis) -> Result<bool> {
    let kind = x.kind.as_str();
    // Before the insert: an item being parked on this key by a concurrent transaction is then
    // either seen (and un-parked below) or sees this xref (`enqueue::lock_dependency`).
    super::enqueue::lock_dependency(tx, &x.endpoint, x.kind, &x.key).await?;
    // `ON CONFLICT DO NOTHING` without a target covers both unique constraints (either side
    // already mapped), as SQLite's `INSERT OR IGNORE` does.
    let inserted = tx
        .execute(
            "INSERT INTO xref (endpoint, kind, external_id, key) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&x.endpoint, &kind, &x.external_id, &x.key],
        )
        .await
        .map_err(db("insert xref"))?
        > 0;
    if inserted {
        unpark(tx, &x.endpoint, x.kind, &x.key, now).await?;
    }
    Ok(inserted)
}

/// (`kind`, `key`) is now known at `dest`: drop that dependency and make items with none left
/// deliverable — due now, unless enqueued with a later `not_before`.
async fn unpark(
    tx: &Transaction<'_>,
    dest: &str,
    kind: Kind,
    key: &str,
    now: Millis,
) -> Result<()> {
    let kind = kind.as_str();
    let waiting: Vec<ItemId> = tx
        .query(
            "DELETE FROM outbox_deps WHERE dest = $1 AND kind = $2 AND key = $3
             RETURNING item_id",
            &[&dest, &kind, &key],
        )
        .await
        .map_err(db("remove satisfied dependency"))?
        .iter()
        .map(|r| get(r, 0))
        .collect::<Result<Vec<_>>>()?;
    let mut waiting = waiting;
    waiting.sort_unstable();
    waiting.dedup();
    for id in waiting {
        tx.execute(
            "UPDATE outbox SET state = 'pending', next_at = GREATEST(next_at, $2), updated_at = $2
             WHERE id = $1 AND state = 'parked'
               AND NOT EXISTS (SELECT 1 FROM outbox_deps WHERE item_id = $1)",
            &[&id, &now],
        )
        .await
        .map_err(db("un-park item"))?;
    }
    Ok(())
}

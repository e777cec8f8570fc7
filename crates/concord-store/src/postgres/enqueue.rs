//! An outbox item enqueued on PostgreSQL: dependencies looked up, then coalesced into the
//! pending item of its key or inserted (pending or parked), and the key's planned hash set —
//! each choice [`crate::sync::enqueue`]'s.
//!
//! Enqueues of one (dest, kind, key) are serialized across instances by a transaction-scoped
//! advisory lock on the key, and the item coalesced into is locked `FOR UPDATE` (a concurrent
//! claim is waited for, then seen). Runs inside the caller's transaction (`apply`, a dead-letter
//! replay, a refused amend); must never open, commit or roll back one itself.

use super::codec::{self, db, get, to_json};
use crate::sync::enqueue::{self as decide, Newest};
use crate::{ItemId, NewItem, Result};
use concord_core::{Kind, Millis};
use tokio_postgres::{GenericClient, Transaction};

/// Is (`kind`, `key`) known at `endpoint` (an xref exists)?
pub(crate) async fn xref_known<C: GenericClient + Sync>(
    c: &C,
    endpoint: &str,
    kind: Kind,
    key: &str,
) -> Result<bool> {
    Ok(c.query_opt(
        "SELECT 1 FROM xref WHERE endpoint = $1 AND kind = $2 AND key = $3",
        &[&endpoint, &kind.as_str(), &key],
    )
    .await
    .map_err(db("look up xref"))?
    .is_some())
}

/// Take the transaction-scoped lock of one outbox key (released at commit or rollback).
pub(crate) async fn lock_key(
    tx: &Transaction<'_>,
    dest: &str,
    kind: &str,
    key: &str,
) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2 || chr(31) || $3, 0))",
        &[&dest, &kind, &key],
    )
    .await
    .map_err(db("lock an outbox key"))?;
    Ok(())
}

/// Take the transaction-scoped lock of one dependency (`kind`, `key` at `endpoint`): held by
/// whoever decides to park an item on it ([`enqueue`]) and by whoever records its xref and
/// un-parks its waiters (`apply::insert_xref`), so under READ COMMITTED one of them always sees
/// the other's committed rows — the xref, or the parked item and its `outbox_deps` row.
pub(crate) async fn lock_dependency(
    tx: &Transaction<'_>,
    endpoint: &str,
    kind: Kind,
    key: &str,
) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('dep' || chr(31) || $1 || chr(31) || $2 || chr(31) || $3, 0))",
        &[&endpoint, &kind.as_str(), &key],
    )
    .await
    .map_err(db("lock a dependency"))?;
    Ok(())
}

/// Enqueue one item and set its planned hash. Returns the item's id (the existing one when
/// coalesced).
pub(crate) async fn enqueue(tx: &Transaction<'_>, item: &NewItem, now: Millis) -> Result<ItemId> {
    let kind = item.kind.as_str();
    let deps = decide::dependencies(item);
    let mut lock_order = deps.clone();
    lock_order.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
    // Park-or-not and the xref's arrival are serialized per dependency (see
    // `lock_dependency`): without it, an xref committed by another instance between this
    // check and this commit would un-park nothing and leave the item parked for good.
    for (k, key) in &lock_order {
        lock_dependency(tx, &item.dest, *k, key).await?;
    }
    let mut remaining: Vec<(Kind, &str)> = Vec::new();
    for (k, key) in deps {
        if !xref_known(tx, &item.dest, k, key).await? {
            remaining.push((k, key));
        }
    }
    let waits = !remaining.is_empty();
    let payload = to_json(&item.payload);
    lock_key(tx, &item.dest, kind, &item.key).await?;

    let mut coalesced = None;
    if decide::may_coalesce(item, waits) {
        let newest = tx
            .query_opt(
                "SELECT id, state, \"coalesce\" FROM outbox
                 WHERE dest = $1 AND kind = $2 AND key = $3
                   AND state IN ('pending', 'inflight', 'parked')
                 ORDER BY id DESC LIMIT 1 FOR UPDATE",
                &[&item.dest, &kind, &item.key],
            )
            .await
            .map_err(db("find item to coalesce with"))?
            .map(|r| {
                Ok::<_, crate::StoreError>(Newest {
                    id: get(&r, 0)?,
                    state: codec::item_state(get(&r, 1)?)?,
                    coalesce: get::<i64>(&r, 2)? != 0,
                })
            })
            .transpose()?;
        if let Some(id) = decide::coalesce_into(newest) {
            tx.execute(
                "UPDATE outbox SET op = $2, payload = $3, hash = $4, flow = $5,
                     journal_id = $6, captured_at = $7, attempts = 0,
                     next_at = LEAST(next_at, $8), last_error = NULL, updated_at = $9
                 WHERE id = $1",
                &[
                    &id,
                    &item.op,
                    &payload,
                    &item.hash,
                    &item.flow,
                    &item.journal_id,
                    &item.captured_at,
                    &item.not_before,
                    &now,
                ],
            )
            .await
            .map_err(db("coalesce item"))?;
            coalesced = Some(id);
        }
    }

    let id = match coalesced {
        Some(id) => id,
        None => {
            let row = tx
                .query_one(
                    "INSERT INTO outbox (dest, kind, key, op, payload, hash, flow, journal_id,
                         captured_at, state, attempts, next_at, created_at, updated_at,
                         \"coalesce\")
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12, $12, $13)
                     RETURNING id",
                    &[
                        &item.dest,
                        &kind,
                        &item.key,
                        &item.op,
                        &payload,
                        &item.hash,
                        &item.flow,
                        &item.journal_id,
                        &item.captured_at,
                        &codec::item_state_str(decide::initial_state(waits)),
                        &item.not_before,
                        &now,
                        &i64::from(item.coalesce),
                    ],
                )
                .await
                .map_err(db("insert outbox item"))?;
            let id: ItemId = get(&row, 0)?;
            for (seq, (k, key)) in remaining.iter().enumerate() {
                tx.execute(
                    "INSERT INTO outbox_deps (item_id, seq, dest, kind, key)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&id, &codec::limit(seq), &item.dest, &k.as_str(), key],
                )
                .await
                .map_err(db("insert item dependency"))?;
            }
            id
        }
    };
    tx.execute(
        "INSERT INTO hashes (dest, kind, key, planned) VALUES ($1, $2, $3, $4)
         ON CONFLICT (dest, kind, key) DO UPDATE SET planned = excluded.planned",
        &[&item.dest, &kind, &item.key, &item.hash],
    )
    .await
    .map_err(db("set planned hash"))?;
    Ok(id)
}

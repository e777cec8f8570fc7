//! A refused amend settled on PostgreSQL (`Settlement::AmendRefused`): the order's lifecycle
//! facts and the later items of its key read (and locked) in the settlement's transaction, the
//! fallback planned by [`crate::sync::amend`], and written in that same transaction — so the
//! replacement number is never given out twice, even by two instances (mirrors
//! `sqlite/amend.rs`).
//!
//! Locks: the outbox key's advisory lock (the one `enqueue` takes, so no item of the key is
//! enqueued between the read of the later items and the rewrite), the later items and the
//! lifecycle row `FOR UPDATE`; the re-hold takes the ledger's locks in their order.
//!
//! Owned by the ledger module (see the contract in `postgres/mod.rs`). Must never plan anything
//! here, and never open or end a transaction.

use super::codec::{self, db, get, to_json};
use super::enqueue::{enqueue, lock_key};
use super::outbox::{dead_letter, finish_item, Held};
use super::{ledger, orders};
use crate::sync::amend::{self as decide, Later, Plan, Refused, ReplacementItem};
use crate::{EditFallback, ItemId, Result};
use concord_core::Millis;
use tokio_postgres::Transaction;

pub(crate) async fn amend_refused(
    tx: &Transaction<'_>,
    id: ItemId,
    held: &Held,
    reason: &str,
    fallback: EditFallback,
    at: Millis,
) -> Result<()> {
    lock_key(tx, &held.dest, &held.kind, &held.key).await?;
    let lifecycle = orders::lifecycle_facts(tx, &held.key).await?;
    // Items of the key planned after the refused one (later edits, a cancellation) still wait.
    let rows = tx
        .query(
            "SELECT id, op, payload FROM outbox
             WHERE dest = $1 AND kind = $2 AND key = $3 AND id > $4
               AND state IN ('pending', 'parked')
             ORDER BY id FOR UPDATE",
            &[&held.dest, &held.kind, &held.key, &id],
        )
        .await
        .map_err(db("read later items of an order"))?;
    let later = rows
        .iter()
        .map(|r| {
            Ok(Later {
                id: get(r, 0)?,
                op: get(r, 1)?,
                payload: codec::json(get(r, 2)?)?,
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
            dead_letter(tx, id, held, &reason, at).await?;
            if let Some(event) = event {
                orders::record_event(tx, &held.key, &event).await?;
            }
            return Ok(());
        }
        Plan::CancelAndReplace(replace) => replace,
    };
    for superseded in &replace.superseded {
        finish_item(tx, *superseded, "done", Some(&replace.superseded_note), at).await?;
    }
    tx.execute(
        "UPDATE outbox SET op = 'cancel', payload = $2, hash = $3, state = 'pending',
             token = NULL, lease_until = NULL, next_at = $4, attempts = 0, last_error = $5,
             \"coalesce\" = 0, updated_at = $4
         WHERE id = $1",
        &[
            &id,
            &to_json(&replace.cancel),
            &replace.cancel_hash,
            &at,
            &reason,
        ],
    )
    .await
    .map_err(db("turn a refused amend into a cancel"))?;
    if let Some(replacement) = &replace.replacement {
        match &replacement.item {
            ReplacementItem::Rewrite { id, payload, hash } => {
                tx.execute(
                    "UPDATE outbox SET op = 'create', payload = $2, hash = $3, \"coalesce\" = 0,
                         updated_at = $4
                     WHERE id = $1",
                    &[id, &to_json(payload), hash, &at],
                )
                .await
                .map_err(db("turn a later edit into the replacement"))?;
            }
            ReplacementItem::Enqueue(item) => {
                enqueue(tx, item, at).await?;
            }
        }
        orders::set_replacement(
            tx,
            &held.key,
            &replacement.reference,
            replacement.replacements,
            at,
        )
        .await?;
        // Between the cancel and the replacement's acceptance the order is held here again.
        ledger::rehold_order(tx, &held.key, at).await?;
    }
    tx.execute(
        "INSERT INTO hashes (dest, kind, key, planned) VALUES ($1, $2, $3, $4)
         ON CONFLICT (dest, kind, key) DO UPDATE SET planned = excluded.planned",
        &[&held.dest, &held.kind, &held.key, &replace.planned],
    )
    .await
    .map_err(db("set planned hash"))?;
    if let Some(event) = &replace.event {
        orders::record_event(tx, &held.key, event).await?;
    }
    Ok(())
}

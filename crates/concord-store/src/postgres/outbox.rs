//! Delivery on PostgreSQL: claiming due outbox items under a lease and settling their outcomes
//! (`Store::claim`, `settle`, `recover_expired`).
//!
//! A claim never lets an item overtake an unfinished earlier item of its key, nor two items of a
//! key be in flight: one statement ([`CLAIM_SQL`]) keeps both and marks them in flight, rows another instance is claiming are
//! skipped (`FOR UPDATE SKIP LOCKED`), and the `outbox_one_inflight` unique index refuses a
//! second in-flight item of a key whatever happens. A settlement applies only while its item is
//! in flight under the claim's token (the row locked), and everything it implies — the attempt
//! log, an order's acceptance, the written hash, the xref, a dead letter, a refused amend's
//! fallback — commits with it; what it implies is [`crate::sync::settle`]'s decision.
//!
//! Runs inside the caller's transaction; must never open, commit or roll back one itself.

use super::amend::amend_refused;
use super::apply::insert_xref;
use super::codec::{self, db, get};
use super::{ledger, orders, writes};
use crate::sync::settle::{self as decide, Skipped};
use crate::{Claimed, ItemId, Result, Settlement, Xref};
use concord_core::Millis;
use std::sync::LazyLock;
use tokio_postgres::Transaction;

/// Claim the due pending items of `$1` at `$2` in enqueue order, minus any with an earlier
/// unfinished item of its key (no overtaking) or an in-flight one (one in flight per key); at
/// most `$3`; rows locked by a concurrent claim or settlement skipped. Each is marked in flight
/// until `$4` under a fresh token from `concord_tokens`, in the same statement.
static CLAIM_SQL: LazyLock<String> = LazyLock::new(|| {
    let cols = |t: &str| {
        codec::ITEM_COLS
            .split(", ")
            .map(|c| format!("{t}.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "WITH picked AS (
             SELECT o.id FROM outbox o
             WHERE o.dest = $1 AND o.state = 'pending' AND o.next_at <= $2
               AND o.flow NOT IN (SELECT flow FROM paused_flows)
               AND NOT EXISTS (
                   SELECT 1 FROM outbox p
                   WHERE p.dest = o.dest AND p.kind = o.kind AND p.key = o.key
                     AND p.state IN ('pending', 'inflight', 'parked')
                     AND (p.id < o.id OR p.state = 'inflight'))
             ORDER BY o.id LIMIT $3
             FOR UPDATE OF o SKIP LOCKED)
         UPDATE outbox u SET state = 'inflight', token = nextval('concord_tokens'),
             lease_until = $4, updated_at = $2
         FROM picked WHERE u.id = picked.id
         RETURNING {}, u.token",
        cols("u")
    )
});

pub(crate) async fn claim(
    tx: &Transaction<'_>,
    dest: &str,
    limit: usize,
    now: Millis,
    lease_until: Millis,
) -> Result<Vec<Claimed>> {
    let mut rows = tx
        .query(
            CLAIM_SQL.as_str(),
            &[&dest, &now, &codec::limit(limit), &lease_until],
        )
        .await
        .map_err(db("claim items"))?;
    // RETURNING has no order: enqueue order is the contract.
    let mut keyed = rows
        .drain(..)
        .map(|r| Ok((get::<i64>(&r, 0)?, r)))
        .collect::<Result<Vec<_>>>()?;
    keyed.sort_by_key(|(id, _)| *id);
    let rows: Vec<_> = keyed.into_iter().map(|(_, r)| r).collect();
    let tokens = rows
        .iter()
        .map(|r| get::<i64>(r, ITEM_COL_COUNT))
        .collect::<Result<Vec<_>>>()?;
    let items = codec::outbox_items(tx, &rows).await?;
    Ok(items
        .into_iter()
        .zip(tokens)
        .map(|(item, token)| Claimed { item, token })
        .collect())
}

/// The number of columns of [`codec::ITEM_COLS`] (the claim's token comes after them).
const ITEM_COL_COUNT: usize = 16;

/// A claimed item as its settlement reads it (still in flight under the settlement's token).
pub(crate) struct Held {
    pub(crate) dest: String,
    pub(crate) kind: String,
    pub(crate) key: String,
    pub(crate) op: String,
    pub(crate) payload: String,
    pub(crate) hash: String,
    pub(crate) flow: String,
    pub(crate) attempts: i64,
    pub(crate) journal_id: Option<i64>,
    /// Read by a refused amend's fallback (`amend`).
    #[allow(dead_code)]
    pub(crate) captured_at: Millis,
    /// When the item was claimed (the attempt's start).
    pub(crate) claimed_at: Millis,
}

pub(crate) async fn settle(tx: &Transaction<'_>, outcomes: &[Settlement]) -> Result<usize> {
    let mut applied = 0;
    for outcome in outcomes {
        let (id, token) = decide::target(outcome);
        // The token check is the whole point: a worker whose lease expired (and whose item was
        // re-claimed by another) settles nothing. The row stays locked until commit.
        let row = tx
            .query_opt(
                "SELECT dest, kind, key, op, payload, hash, flow, attempts, journal_id,
                        captured_at, updated_at
                 FROM outbox WHERE id = $1 AND state = 'inflight' AND token = $2 FOR UPDATE",
                &[&id, &token],
            )
            .await
            .map_err(db("read claimed item"))?;
        let Some(r) = row else { continue };
        let held = Held {
            dest: get(&r, 0)?,
            kind: get(&r, 1)?,
            key: get(&r, 2)?,
            op: get(&r, 3)?,
            payload: get(&r, 4)?,
            hash: get(&r, 5)?,
            flow: get(&r, 6)?,
            attempts: get(&r, 7)?,
            journal_id: get(&r, 8)?,
            captured_at: get(&r, 9)?,
            claimed_at: get(&r, 10)?,
        };
        // Every applied settlement is one delivery attempt in the log (an order's history).
        let attempt = decide::attempt(outcome, held.claimed_at);
        orders::log_attempt(
            tx,
            id,
            &held.dest,
            &held.kind,
            &held.key,
            &held.op,
            attempt.at,
            attempt.outcome,
            attempt.error,
        )
        .await?;
        match outcome {
            Settlement::Delivered {
                external_id,
                version,
                at,
                ..
            } => {
                delivered(
                    tx,
                    id,
                    &held,
                    external_id.as_deref(),
                    version.as_deref(),
                    *at,
                )
                .await?
            }
            Settlement::Retry {
                next_at,
                error,
                count,
                ..
            } => {
                tx.execute(
                    "UPDATE outbox SET state = 'pending', token = NULL, lease_until = NULL,
                         next_at = $2, last_error = $3, attempts = attempts + $4
                     WHERE id = $1",
                    &[&id, next_at, error, &i64::from(*count)],
                )
                .await
                .map_err(db("schedule retry"))?;
            }
            Settlement::Dead { reason, at, .. } => dead_letter(tx, id, &held, reason, *at).await?,
            Settlement::AmendRefused {
                reason,
                fallback,
                at,
                ..
            } => amend_refused(tx, id, &held, reason, *fallback, *at).await?,
            Settlement::Skipped { reason, at, .. } => {
                finish_item(tx, id, "done", None, *at).await?;
                let skipped = Skipped {
                    id,
                    dest: &held.dest,
                    kind: codec::kind(&held.kind)?,
                    key: &held.key,
                    op: &held.op,
                    flow: &held.flow,
                    reason,
                    at: *at,
                };
                writes::record_audit(tx, &[skipped.event()]).await?;
            }
        }
        applied += 1;
    }
    Ok(applied)
}

/// A delivered item: done; for an order the destination now has, its acceptance (the ledger
/// module's); the written hash; the xref of the record at the destination (re-pointed by an
/// order's create).
async fn delivered(
    tx: &Transaction<'_>,
    id: ItemId,
    held: &Held,
    external_id: Option<&str>,
    version: Option<&str>,
    at: Millis,
) -> Result<()> {
    finish_item(tx, id, "done", None, at).await?;
    if decide::accepts_order(&held.kind, &held.op) {
        ledger::mark_accepted(tx, &held.key, &held.dest, at, version).await?;
        orders::accept(tx, &held.key, &held.dest, at).await?;
    }
    tx.execute(
        "INSERT INTO hashes (dest, kind, key, planned, written) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (dest, kind, key) DO UPDATE SET written = excluded.written",
        &[&held.dest, &held.kind, &held.key, &held.hash],
    )
    .await
    .map_err(db("record written hash"))?;
    if let Some(external_id) = external_id {
        if decide::repoints_xref(&held.kind, &held.op) {
            tx.execute(
                "DELETE FROM xref WHERE endpoint = $1 AND kind = $2 AND key = $3
                   AND external_id <> $4",
                &[&held.dest, &held.kind, &held.key, &external_id],
            )
            .await
            .map_err(db("re-point an order's xref"))?;
        }
        let xref = Xref {
            endpoint: held.dest.clone(),
            kind: codec::kind(&held.kind)?,
            external_id: external_id.to_owned(),
            key: held.key.clone(),
        };
        insert_xref(tx, &xref, at).await?;
    }
    Ok(())
}

/// Move a held item to the dead-letter queue with `reason` (nothing was written).
pub(crate) async fn dead_letter(
    tx: &Transaction<'_>,
    id: ItemId,
    held: &Held,
    reason: &str,
    at: Millis,
) -> Result<()> {
    finish_item(tx, id, "dead", Some(reason), at).await?;
    tx.execute(
        "INSERT INTO dead_letters (direction, endpoint, kind, key, op, flow, payload,
             reason, attempts, journal_id, item_id, state, created_at, updated_at)
         VALUES ('outbound', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'open', $11, $11)",
        &[
            &held.dest,
            &held.kind,
            &held.key,
            &held.op,
            &held.flow,
            &held.payload,
            &reason,
            &held.attempts,
            &held.journal_id,
            &id,
            &at,
        ],
    )
    .await
    .map_err(db("dead-letter item"))?;
    // Nothing was written: forget the plan so an equal state later is sent again.
    tx.execute(
        "UPDATE hashes SET planned = written WHERE dest = $1 AND kind = $2 AND key = $3",
        &[&held.dest, &held.kind, &held.key],
    )
    .await
    .map_err(db("reset planned hash"))?;
    Ok(())
}

/// End an item's attempt in `state` (`done`, `dead`), keeping its last error unless `error`
/// says more.
pub(crate) async fn finish_item(
    tx: &Transaction<'_>,
    id: ItemId,
    state: &str,
    error: Option<&str>,
    at: Millis,
) -> Result<()> {
    tx.execute(
        "UPDATE outbox SET state = $2, token = NULL, lease_until = NULL,
             last_error = COALESCE($3, last_error), updated_at = $4
         WHERE id = $1",
        &[&id, &state, &error, &at],
    )
    .await
    .map_err(db("finish item"))?;
    Ok(())
}

pub(crate) async fn recover_expired(tx: &Transaction<'_>, before: Millis) -> Result<usize> {
    let n = tx
        .execute(
            "UPDATE outbox SET state = 'pending', token = NULL, lease_until = NULL
             WHERE state = 'inflight' AND lease_until < $1",
            &[&before],
        )
        .await
        .map_err(db("recover expired leases"))?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_token_follows_the_item_columns() {
        assert_eq!(
            super::codec::ITEM_COLS.split(", ").count(),
            super::ITEM_COL_COUNT
        );
    }
}

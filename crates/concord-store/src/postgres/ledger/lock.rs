//! The ledger's locks on PostgreSQL: what makes a decision of [`crate::ledger`] see rows that
//! nothing else changes before its steps are written, across connections and instances.
//!
//! One lock order for every ledger transaction:
//! 1. at most one *entry* lock — the client key of a reservation ([`lock_client_key`]) or the
//!    order an operation addresses ([`lock_order`]) — so a reservation's idempotency and an
//!    order's set of reservations hold;
//! 2. the per-SKU `pg_advisory_xact_lock`s of every SKU the decision reads or moves, in sorted
//!    key order, all at once ([`Locked::skus`]): a SKU's lock covers its positions (rows that may
//!    not exist yet, which no row lock could) and its reservation lines;
//! 3. the reservation rows, `SELECT … FOR UPDATE` ordered by id ([`lock_reservations`]).
//!
//! Operations addressed by a reservation or an order read its lines' SKUs first, lock them,
//! lock the rows, then re-read: lines that gained a SKU meanwhile fail the transaction with
//! [`StoreError::Conflict`] (the transaction helper runs it again), never go on half-locked.
//! Every writer of a reservation line holds its SKU's lock and its reservation's row lock, so
//! a reservation's `NOT EXISTS (unreleased line)` check under its row lock is exact.
//!
//! When the core calls several ledger functions in one of its transactions (`apply`: figures,
//! then cancelled orders; `settle`: one acceptance per item) the locks of the later call come
//! after the rows of the earlier one; a deadlock between two such transactions is detected by
//! the server (40P01) and retried by the helper — it costs a retry, never a wrong figure.
//!
//! Lock keys are a stable 64-bit FNV-1a hash of a namespace and the name (identical in every
//! build and instance); a collision only serializes two names more than needed, and keys are
//! taken in sorted key order, so a collision cannot deadlock within this order either.
//!
//! Must never: take a lock outside this order, or decide anything.

use super::super::codec::db;
use crate::{Result, StoreError};
use std::collections::BTreeSet;
use tokio_postgres::Transaction;

/// FNV-1a 64 over the parts, separated by the unit separator (0x1f).
fn stable_hash(parts: &[&str]) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut h = OFFSET;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x1f;
            h = h.wrapping_mul(PRIME);
        }
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    i64::from_le_bytes(h.to_le_bytes())
}

fn sku_key(sku: &str) -> i64 {
    stable_hash(&["concord-ledger-sku", sku])
}

/// Take these advisory locks (transaction-scoped), in the order given.
async fn lock_keys(tx: &Transaction<'_>, keys: &[i64], what: &'static str) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    // `pg_advisory_xact_lock` is volatile: with ORDER BY the planner evaluates it after the
    // sort, so the keys are taken in array order.
    tx.execute(
        "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, n)
         ORDER BY n",
        &[&keys],
    )
    .await
    .map_err(db(what))?;
    Ok(())
}

/// The client key of a reservation request: two requests with one key are serialized, so the
/// second finds what the first made.
pub(crate) async fn lock_client_key(tx: &Transaction<'_>, channel: &str, key: &str) -> Result<()> {
    let k = stable_hash(&["concord-ledger-client", channel, key]);
    lock_keys(tx, &[k], "lock a reservation's client key").await
}

/// An order: its set of reservations (commit, acceptance, edit, re-hold, cancellation) changes
/// under this lock only.
pub(crate) async fn lock_order(tx: &Transaction<'_>, order: &str) -> Result<()> {
    let k = stable_hash(&["concord-ledger-order", order]);
    lock_keys(tx, &[k], "lock an order's reservations").await
}

/// The SKUs one ledger call holds.
#[derive(Debug, Default)]
pub(crate) struct Locked {
    skus: BTreeSet<String>,
}

impl Locked {
    /// Lock every SKU of `skus` not held yet, in sorted key order, in one statement.
    pub(crate) async fn skus<'s>(
        &mut self,
        tx: &Transaction<'_>,
        skus: impl IntoIterator<Item = &'s str>,
    ) -> Result<()> {
        let new: BTreeSet<&str> = skus
            .into_iter()
            .filter(|s| !self.skus.contains(*s))
            .collect();
        let mut keys: Vec<i64> = new.iter().map(|s| sku_key(s)).collect();
        keys.sort_unstable();
        keys.dedup();
        lock_keys(tx, &keys, "lock ledger SKUs").await?;
        self.skus.extend(new.into_iter().map(str::to_owned));
        Ok(())
    }

    /// Every one of `skus` is held; else the rows moved between reading and locking them.
    pub(crate) fn covers<'s>(
        &self,
        skus: impl IntoIterator<Item = &'s str>,
        what: &str,
    ) -> Result<()> {
        match skus.into_iter().find(|s| !self.skus.contains(*s)) {
            None => Ok(()),
            Some(sku) => Err(StoreError::Conflict(format!(
                "{what}: SKU {sku} appeared while the SKUs were being locked"
            ))),
        }
    }
}

/// Lock these reservation rows (`FOR UPDATE`, by id). Call with their SKUs locked already.
pub(crate) async fn lock_reservations(tx: &Transaction<'_>, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.query(
        "SELECT id FROM reservations WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&ids],
    )
    .await
    .map_err(db("lock reservations"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_namespaced() {
        // FNV-1a 64 of the empty input is its offset basis: the function is the standard one.
        assert_eq!(
            stable_hash(&[""]),
            i64::from_le_bytes(0xcbf2_9ce4_8422_2325u64.to_le_bytes())
        );
        assert_eq!(sku_key("A"), sku_key("A"));
        assert_ne!(sku_key("A"), sku_key("B"));
        assert_ne!(
            stable_hash(&["concord-ledger-sku", "A"]),
            stable_hash(&["concord-ledger-order", "A"])
        );
        assert_ne!(stable_hash(&["ab", "c"]), stable_hash(&["a", "bc"]));
    }

    #[test]
    fn covers_names_the_missing_sku() {
        let mut l = Locked::default();
        l.skus.insert("A".into());
        assert!(l.covers(["A"], "x").is_ok());
        assert!(
            matches!(l.covers(["A", "B"], "x"), Err(StoreError::Conflict(m)) if m.contains("B"))
        );
    }
}

//! The order lifecycle on PostgreSQL: lifecycle rows, their events and children, the
//! delivery-attempt log, and an order's acceptance (mirrors `sqlite/orders.rs`).
//!
//! Owned by the ledger module (see the contract in `postgres/mod.rs`). Write functions run
//! inside the caller's transaction (`apply`, `settle`) and never open or end one; decisions are
//! `crate::sync::lifecycle`'s.

use crate::{OrderWrite, Result, StoreError};
use concord_core::Millis;
use tokio_postgres::Transaction;

fn not_yet(method: &str) -> StoreError {
    StoreError::Db(format!("not yet implemented on PostgreSQL: {method}"))
}

/// Apply the lifecycle changes of one processing batch.
pub(crate) async fn write_orders(
    tx: &Transaction<'_>,
    writes: &[OrderWrite],
    now: Millis,
) -> Result<()> {
    let _ = (tx, now);
    if writes.is_empty() {
        return Ok(());
    }
    Err(not_yet("write_orders"))
}

/// An order was delivered to `dest`: when `dest` is not its channel, the ERP accepted it.
pub(crate) async fn accept(tx: &Transaction<'_>, key: &str, dest: &str, at: Millis) -> Result<()> {
    let _ = (tx, key, dest, at);
    Err(not_yet("accept"))
}

/// Log one delivery attempt (called by `settle` for every settlement it applies).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn log_attempt(
    tx: &Transaction<'_>,
    item_id: i64,
    dest: &str,
    kind: &str,
    key: &str,
    op: &str,
    at: Millis,
    outcome: &str,
    error: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO delivery_attempts (item_id, dest, kind, key, op, at, outcome, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[&item_id, &dest, &kind, &key, &op, &at, &outcome, &error],
    )
    .await
    .map_err(super::codec::db("log delivery attempt"))?;
    Ok(())
}

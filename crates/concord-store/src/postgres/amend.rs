//! A refused amend settled on PostgreSQL (`Settlement::AmendRefused`): the fallback planned by
//! `crate::sync::amend`, written in the settlement's transaction (mirrors `sqlite/amend.rs`).
//!
//! Owned by the ledger module (see the contract in `postgres/mod.rs`). Must never plan anything
//! here, and never open or end a transaction.

use super::outbox::Held;
use crate::{EditFallback, ItemId, Result, StoreError};
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
    let _ = (tx, id, held, reason, fallback, at);
    Err(StoreError::Db(
        "not yet implemented on PostgreSQL: amend_refused".into(),
    ))
}

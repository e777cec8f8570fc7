//! `Store::reserve` on PostgreSQL: the client-key lookup, the positions the request routes
//! over, then [`crate::ledger::reserve`]'s decision written as it is — atomic across every
//! connection: the client key's lock, then the request's SKU locks (sorted), are held from the
//! read of the positions to the commit, so two reservations can never both take the last unit.
//!
//! Runs inside its own transaction (`PgStore::write_tx`). Must never route, check a quantity
//! or compute what a position can give: that is the decision's.

use super::super::codec::{db, get};
use super::lock::{lock_client_key, Locked};
use super::{load, write};
use crate::ledger::reserve::{self, Decision};
use crate::{ReserveOutcome, ReserveRequest, Result};
use tokio_postgres::Transaction;

pub(crate) async fn reserve(tx: &Transaction<'_>, req: &ReserveRequest) -> Result<ReserveOutcome> {
    reserve::check(req)?;
    lock_client_key(tx, &req.channel, &req.client_key).await?;
    // The key names the checkout, not its content: a key used before answers what it made.
    let existing = tx
        .query_opt(
            "SELECT id FROM reservations WHERE channel = $1 AND client_key = $2",
            &[&req.channel, &req.client_key],
        )
        .await
        .map_err(db("look up client key"))?;
    if let Some(row) = existing {
        let id: String = get(&row, 0)?;
        return Ok(ReserveOutcome::Existing(load::reload(tx, &id).await?));
    }
    let keys = reserve::positions(req);
    let mut locked = Locked::default();
    locked
        .skus(tx, req.lines.iter().map(|l| l.sku.as_str()))
        .await?;
    let positions = load::positions(tx, &keys).await?;
    match reserve::decide(req, &positions)? {
        Decision::Short(shortages) => Ok(ReserveOutcome::Short(shortages)),
        Decision::Reserve { reservation, steps } => {
            write::write(tx, &steps, req.now).await?;
            Ok(ReserveOutcome::Reserved(*reservation))
        }
    }
}

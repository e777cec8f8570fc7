//! The stock ledger on PostgreSQL (design §5): ERP figures, reservations, acceptances, order
//! edits and re-holds, and their read-only views — SQL and locking around the store-neutral
//! decisions of [`crate::ledger`] (mirrors `sqlite/ledger/`).
//!
//! One file per operation: [`reserve`], [`levels`] (ERP figures and the releases they make),
//! [`accept`] (an order's acceptance), [`orders`] (commit, cancel, expiry, an order's
//! cancellation, re-hold and edit), [`reads`] (the read-only views); [`load`] loads and decodes
//! rows, [`lock`] takes the locks in the ledger's one order, and [`write`](mod@write) is the
//! only code that changes a ledger row, by applying a plan's steps.
//!
//! Several instances share the database, so SQLite's single writer is replaced by locks (see
//! [`lock`]): per-SKU advisory locks in sorted order, then reservation rows `FOR UPDATE`; every
//! decision reads its rows after taking them and its steps are written in the same transaction.
//! That is what keeps a reservation atomic across connections: never oversold.
//!
//! Owned by the ledger module (see the contract in `postgres/mod.rs`). Must never decide
//! (routing, watermarks, transitions, edits and re-holds are [`crate::ledger`]'s), compute a
//! ledger figure in SQL, or open or end a transaction inside a function that receives one.

pub(crate) mod accept;
pub(crate) mod levels;
pub(crate) mod load;
pub(crate) mod lock;
pub(crate) mod orders;
pub(crate) mod reads;
pub(crate) mod reserve;
pub(crate) mod write;

use super::PgStore;
use crate::{
    AdjustOutcome, AdjustRequest, DirtySku, LevelOutcome, LevelUpdate, OrderFilter, OrderHistory,
    OrderSummary, ParkedItem, Reservation, ReservationState, ReserveOutcome, ReserveRequest,
    Result, StockLevel, TransitionError,
};
use concord_core::Millis;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_postgres::{GenericClient, Transaction};

// ---- called inside the core's transactions (apply, settle) and by the amend fallback ----

/// Apply ERP figures in order (`grace: None` disables the time-based release fallback).
pub(crate) async fn update_levels(
    tx: &Transaction<'_>,
    updates: &[LevelUpdate],
    grace: Option<i64>,
    now: Millis,
) -> Result<Vec<LevelOutcome>> {
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    levels::update_levels(tx, updates, grace, now).await
}

/// Clear a dirty mark unless it was set again since the planner read it.
pub(crate) async fn clean(tx: &Transaction<'_>, dirty: &DirtySku) -> Result<()> {
    write::clean(tx, dirty).await
}

/// The order was cancelled: every active reservation committed to it is cancelled. Returns how
/// many reservations it ended.
pub(crate) async fn cancel_order_reservations(
    tx: &Transaction<'_>,
    order: &str,
    now: Millis,
) -> Result<usize> {
    orders::cancel_order_reservations(tx, order, now).await
}

/// A delivered order: its active reservations from `source` are now accepted by the ERP.
pub(crate) async fn mark_accepted(
    tx: &Transaction<'_>,
    order: &str,
    source: &str,
    at: Millis,
    version: Option<&str>,
) -> Result<()> {
    accept::mark_accepted(tx, order, source, at, version).await
}

/// Cancel-and-replace is planned for `order`: hold its released lines again and clear its
/// acceptance. Returns the units held again per (SKU, location).
pub(crate) async fn rehold_order(
    tx: &Transaction<'_>,
    order: &str,
    now: Millis,
) -> Result<crate::ledger::orders::Reheld> {
    orders::rehold_order(tx, order, now).await
}

/// Ledger positions of these SKUs (every location), sorted by SKU then location.
pub(crate) async fn reads_levels<C: GenericClient + Sync>(
    client: &C,
    skus: &[String],
) -> Result<Vec<StockLevel>> {
    load::levels(client, skus).await
}

// ---- the trait's ledger and order methods ----

impl PgStore {
    pub(crate) async fn ledger_update_levels(
        &self,
        updates: Vec<LevelUpdate>,
        release_grace_ms: i64,
        now: Millis,
    ) -> Result<Vec<LevelOutcome>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let updates = Arc::new(updates);
        self.write_tx("apply ledger figures", move |tx| {
            let updates = Arc::clone(&updates);
            Box::pin(async move {
                levels::update_levels(tx, &updates, Some(release_grace_ms), now).await
            })
        })
        .await
    }

    pub(crate) async fn ledger_levels(&self, skus: &[String]) -> Result<Vec<StockLevel>> {
        if skus.is_empty() {
            return Ok(Vec::new());
        }
        reads_levels(&**self.client().await?, skus).await
    }

    pub(crate) async fn ledger_reserve(&self, req: ReserveRequest) -> Result<ReserveOutcome> {
        let req = Arc::new(req);
        self.write_tx("reserve", move |tx| {
            let req = Arc::clone(&req);
            Box::pin(async move { reserve::reserve(tx, &req).await })
        })
        .await
    }

    pub(crate) async fn ledger_reservation(&self, id: &str) -> Result<Option<Reservation>> {
        let id = id.to_owned();
        self.read_tx("read a reservation", move |tx| {
            Box::pin(async move { load::reservation(tx, &id).await })
        })
        .await
    }

    pub(crate) async fn ledger_commit_reservation(
        &self,
        id: &str,
        order: &str,
        now: Millis,
    ) -> Result<Result<Reservation, TransitionError>> {
        let input = Arc::new((id.to_owned(), order.to_owned()));
        self.write_tx("commit a reservation", move |tx| {
            let input = Arc::clone(&input);
            Box::pin(async move { orders::commit_reservation(tx, &input.0, &input.1, now).await })
        })
        .await
    }

    pub(crate) async fn ledger_cancel_reservation(
        &self,
        id: &str,
        now: Millis,
    ) -> Result<Result<Reservation, TransitionError>> {
        let id = Arc::new(id.to_owned());
        self.write_tx("cancel a reservation", move |tx| {
            let id = Arc::clone(&id);
            Box::pin(async move { orders::cancel_reservation(tx, &id, now).await })
        })
        .await
    }

    pub(crate) async fn ledger_expire_reservations(&self, now: Millis) -> Result<Vec<Reservation>> {
        self.write_tx("expire reservations", move |tx| {
            Box::pin(async move { orders::expire_reservations(tx, now).await })
        })
        .await
    }

    pub(crate) async fn ledger_next_expiry(&self) -> Result<Option<Millis>> {
        reads::next_expiry(&**self.client().await?).await
    }

    pub(crate) async fn ledger_reservations(
        &self,
        state: Option<ReservationState>,
        sku: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Reservation>> {
        let sku = sku.map(str::to_owned);
        self.read_tx("list reservations", move |tx| {
            Box::pin(async move { reads::reservations(tx, state, sku.as_deref(), limit).await })
        })
        .await
    }

    pub(crate) async fn ledger_dirty_skus(&self, limit: usize) -> Result<Vec<DirtySku>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        reads::dirty_skus(&**self.client().await?, limit).await
    }

    pub(crate) async fn ledger_adjust_order_reservation(
        &self,
        req: AdjustRequest,
    ) -> Result<AdjustOutcome> {
        let req = Arc::new(req);
        self.write_tx("adjust an order's reservation", move |tx| {
            let req = Arc::clone(&req);
            Box::pin(async move { orders::adjust_order_reservation(tx, &req).await })
        })
        .await
    }

    pub(crate) async fn ledger_order_lifecycles(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<OrderSummary>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys = keys.to_vec();
        self.read_tx("read order lifecycles", move |tx| {
            Box::pin(async move { super::orders::order_lifecycles(tx, &keys).await })
        })
        .await
    }

    pub(crate) async fn ledger_orders(&self, filter: OrderFilter) -> Result<Vec<OrderSummary>> {
        super::orders::orders(&**self.client().await?, &filter).await
    }

    pub(crate) async fn ledger_order_counts(&self) -> Result<BTreeMap<String, u64>> {
        super::orders::order_counts(&**self.client().await?).await
    }

    pub(crate) async fn ledger_order_history(&self, key: &str) -> Result<Option<OrderHistory>> {
        let key = key.to_owned();
        self.read_tx("read an order's history", move |tx| {
            Box::pin(async move { super::orders::order_history(tx, &key).await })
        })
        .await
    }

    pub(crate) async fn ledger_parked(&self, limit: usize) -> Result<Vec<ParkedItem>> {
        self.read_tx("list parked items", move |tx| {
            Box::pin(async move { super::orders::parked(tx, limit).await })
        })
        .await
    }

    pub(crate) async fn ledger_oversold_positions(&self, limit: usize) -> Result<Vec<StockLevel>> {
        self.read_tx("find oversold positions", move |tx| {
            Box::pin(async move { reads::oversold_positions(tx, limit).await })
        })
        .await
    }
}

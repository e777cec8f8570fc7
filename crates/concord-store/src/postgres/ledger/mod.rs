//! The stock ledger on PostgreSQL: ERP figures, reservations, acceptances, order edits and
//! re-holds, and their read-only views — SQL and locking around the store-neutral decisions of
//! `crate::ledger` (mirrors `sqlite/ledger/`).
//!
//! Owned by the ledger module (see the contract in `postgres/mod.rs`). Must never compute a
//! ledger figure in SQL, and never open or end a transaction inside a function that receives
//! one.

use super::PgStore;
use crate::{
    AdjustOutcome, AdjustRequest, DirtySku, LevelOutcome, LevelUpdate, OrderFilter, OrderHistory,
    OrderSummary, ParkedItem, Reservation, ReservationState, ReserveOutcome, ReserveRequest,
    Result, StockLevel, StoreError, TransitionError,
};
use concord_core::Millis;
use std::collections::BTreeMap;
use tokio_postgres::{GenericClient, Transaction};

fn not_yet(method: &str) -> StoreError {
    StoreError::Db(format!("not yet implemented on PostgreSQL: {method}"))
}

// ---- called inside this module's transactions (apply, settle) ----

/// Apply ERP figures in order (`grace: None` disables the time-based release fallback).
pub(crate) async fn update_levels(
    tx: &Transaction<'_>,
    updates: &[LevelUpdate],
    grace: Option<i64>,
    now: Millis,
) -> Result<Vec<LevelOutcome>> {
    let _ = (tx, grace, now);
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    Err(not_yet("update_levels"))
}

/// Clear a dirty mark unless it was set again since the planner read it.
pub(crate) async fn clean(tx: &Transaction<'_>, dirty: &DirtySku) -> Result<()> {
    let _ = (tx, dirty);
    Err(not_yet("clean"))
}

/// The order was cancelled: every active reservation committed to it is cancelled. Returns how
/// many reservations it ended.
pub(crate) async fn cancel_order_reservations(
    tx: &Transaction<'_>,
    order: &str,
    now: Millis,
) -> Result<usize> {
    let _ = (tx, order, now);
    Err(not_yet("cancel_order_reservations"))
}

/// A delivered order: its active reservations from `source` are now accepted by the ERP.
pub(crate) async fn mark_accepted(
    tx: &Transaction<'_>,
    order: &str,
    source: &str,
    at: Millis,
    version: Option<&str>,
) -> Result<()> {
    let _ = (tx, order, source, at, version);
    Err(not_yet("mark_accepted"))
}

/// Cancel-and-replace is planned for `order`: hold its released lines again and clear its
/// acceptance. Returns the units held again per (SKU, location).
#[allow(dead_code)]
pub(crate) async fn rehold_order(
    tx: &Transaction<'_>,
    order: &str,
    now: Millis,
) -> Result<crate::ledger::orders::Reheld> {
    let _ = (tx, order, now);
    Err(not_yet("rehold_order"))
}

/// Ledger positions of these SKUs (every location), sorted by SKU then location.
#[allow(dead_code)]
pub(crate) async fn reads_levels<C: GenericClient + Sync>(
    client: &C,
    skus: &[String],
) -> Result<Vec<StockLevel>> {
    let _ = (client, skus);
    Err(not_yet("levels"))
}

// ---- the trait's ledger and order methods ----

impl PgStore {
    pub(crate) async fn ledger_update_levels(
        &self,
        updates: Vec<LevelUpdate>,
        release_grace_ms: i64,
        now: Millis,
    ) -> Result<Vec<LevelOutcome>> {
        let _ = (updates, release_grace_ms, now);
        Err(not_yet("update_levels"))
    }

    pub(crate) async fn ledger_levels(&self, skus: &[String]) -> Result<Vec<StockLevel>> {
        let _ = skus;
        Err(not_yet("levels"))
    }

    pub(crate) async fn ledger_reserve(&self, req: ReserveRequest) -> Result<ReserveOutcome> {
        let _ = req;
        Err(not_yet("reserve"))
    }

    pub(crate) async fn ledger_reservation(&self, id: &str) -> Result<Option<Reservation>> {
        let _ = id;
        Err(not_yet("reservation"))
    }

    pub(crate) async fn ledger_commit_reservation(
        &self,
        id: &str,
        order: &str,
        now: Millis,
    ) -> Result<Result<Reservation, TransitionError>> {
        let _ = (id, order, now);
        Err(not_yet("commit_reservation"))
    }

    pub(crate) async fn ledger_cancel_reservation(
        &self,
        id: &str,
        now: Millis,
    ) -> Result<Result<Reservation, TransitionError>> {
        let _ = (id, now);
        Err(not_yet("cancel_reservation"))
    }

    pub(crate) async fn ledger_expire_reservations(&self, now: Millis) -> Result<Vec<Reservation>> {
        let _ = now;
        Err(not_yet("expire_reservations"))
    }

    pub(crate) async fn ledger_next_expiry(&self) -> Result<Option<Millis>> {
        Err(not_yet("next_expiry"))
    }

    pub(crate) async fn ledger_reservations(
        &self,
        state: Option<ReservationState>,
        sku: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Reservation>> {
        let _ = (state, sku, limit);
        Err(not_yet("reservations"))
    }

    pub(crate) async fn ledger_dirty_skus(&self, limit: usize) -> Result<Vec<DirtySku>> {
        let _ = limit;
        Err(not_yet("dirty_skus"))
    }

    pub(crate) async fn ledger_adjust_order_reservation(
        &self,
        req: AdjustRequest,
    ) -> Result<AdjustOutcome> {
        let _ = req;
        Err(not_yet("adjust_order_reservation"))
    }

    pub(crate) async fn ledger_order_lifecycles(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<OrderSummary>>> {
        let _ = keys;
        Err(not_yet("order_lifecycles"))
    }

    pub(crate) async fn ledger_orders(&self, filter: OrderFilter) -> Result<Vec<OrderSummary>> {
        let _ = filter;
        Err(not_yet("orders"))
    }

    pub(crate) async fn ledger_order_counts(&self) -> Result<BTreeMap<String, u64>> {
        Err(not_yet("order_counts"))
    }

    pub(crate) async fn ledger_order_history(&self, key: &str) -> Result<Option<OrderHistory>> {
        let _ = key;
        Err(not_yet("order_history"))
    }

    pub(crate) async fn ledger_parked(&self, limit: usize) -> Result<Vec<ParkedItem>> {
        let _ = limit;
        Err(not_yet("parked"))
    }

    pub(crate) async fn ledger_oversold_positions(&self, limit: usize) -> Result<Vec<StockLevel>> {
        let _ = limit;
        Err(not_yet("oversold_positions"))
    }
}

//! The demo's final check: every system against the others at one moment (`verify`), as a
//! `Report` that says whether anything was lost or oversold — every order in the ERP exactly
//! once (or dead-lettered with a reason), every shipment at its store, the hub's ledger equal to
//! the ERP's figures, each store's inventory equal to the hub's available-to-sell for it, every
//! reservation of an order the ERP has released (none stuck), and no unit accepted by the ERP
//! beyond its own stock.
//!
//! Must never change anything it looks at: it only reads the sandboxes and the hub's public
//! queries (`Engine::availability`, the store's read calls), so it can be run again and again
//! until the systems agree or the deadline passes.

use super::topology::{Systems, LOCATIONS};
use concord_engine::Engine;
use concord_sandbox::shop::ShopHandle;
use concord_store::{DeadLetterFilter, ItemState, ReservationState};
use std::collections::BTreeMap;

/// Cross-system agreement at one moment.
#[derive(Default, Debug)]
pub(super) struct Report {
    pub(super) drained: bool,
    pub(super) orders_total: usize,
    pub(super) orders_in_erp_once: usize,
    pub(super) orders_duplicated: Vec<String>,
    pub(super) orders_missing: Vec<String>,
    pub(super) orders_dead_lettered: Vec<(String, String)>,
    pub(super) stock_positions: usize,
    pub(super) stock_mismatches: Vec<String>,
    pub(super) ledger_positions: usize,
    pub(super) ledger_mismatches: Vec<String>,
    /// Reservations by state: held, committed, released, expired, cancelled.
    pub(super) reservations: [usize; 5],
    /// Committed reservations of orders the ERP has, not released.
    pub(super) reservations_stuck: Vec<String>,
    /// Committed reservations of dead-lettered orders (awaiting an operator).
    pub(super) reservations_excused: Vec<String>,
    pub(super) oversold_units: u64,
    pub(super) shipments_total: usize,
    pub(super) shipments_missing: Vec<String>,
    pub(super) parked: usize,
    pub(super) other_dead_letters: Vec<String>,
}

impl Report {
    pub(super) fn lost(&self) -> usize {
        self.orders_missing.len()
            + self.orders_duplicated.len()
            + self.stock_mismatches.len()
            + self.ledger_mismatches.len()
            + self.shipments_missing.len()
            + self.reservations_stuck.len()
    }
    pub(super) fn ok(&self) -> bool {
        self.drained
            && self.lost() == 0
            && self.oversold_units == 0
            && self.parked == 0
            && self.other_dead_letters.is_empty()
    }
}

pub(super) async fn verify(
    engine: &Engine,
    sys: &Systems,
    skus: &[String],
) -> anyhow::Result<Report> {
    let mut r = Report {
        drained: engine.is_drained().await?,
        ..Report::default()
    };
    let store = engine.store();
    r.parked = store.items(None, ItemState::Parked, 10_000).await?.len();
    let dead = store
        .dead_letters(DeadLetterFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .await?;
    let mut dead_orders: BTreeMap<String, String> = BTreeMap::new();
    for d in &dead {
        if d.kind == concord_core::Kind::Order {
            dead_orders.insert(d.key.clone(), format!("#{} {}", d.id, d.reason));
        } else {
            r.other_dead_letters.push(format!(
                "#{} {} {} → {}: {}",
                d.id, d.kind, d.key, d.endpoint, d.reason
            ));
        }
    }
    let mut in_erp: BTreeMap<String, usize> = BTreeMap::new();
    for so in sys.erp.sales_orders() {
        *in_erp.entry(so.reference.clone()).or_default() += 1;
    }
    for (name, shop) in &sys.shops {
        for o in shop.orders() {
            r.orders_total += 1;
            let reference = format!("{name}/{}", o.number);
            match in_erp.get(&reference).copied().unwrap_or(0) {
                1 => r.orders_in_erp_once += 1,
                0 => match dead_orders.get(&reference) {
                    Some(reason) => r
                        .orders_dead_lettered
                        .push((reference.clone(), reason.clone())),
                    None => r.orders_missing.push(reference),
                },
                n => r.orders_duplicated.push(format!("{reference} ×{n}")),
            }
        }
    }
    // The hub's ledger holds the ERP's figures…
    let levels = store.levels(skus).await?;
    for sku in skus {
        for loc in LOCATIONS {
            let Some(st) = sys.erp.stock(sku, loc) else {
                continue;
            };
            r.ledger_positions += 1;
            let got = levels
                .iter()
                .find(|l| &l.sku == sku && l.location == loc)
                .map(|l| (l.on_hand, l.committed));
            if got != Some((st.on_hand, st.committed)) {
                r.ledger_mismatches.push(format!(
                    "{sku}@{loc} in the hub's ledger: {got:?}, ERP says ({}, {})",
                    st.on_hand, st.committed
                ));
            }
        }
    }
    // …and each store shows the hub's available-to-sell for it.
    for (name, shop) in &sys.shops {
        let ats = engine.availability(name, skus).await?;
        for a in ats {
            r.stock_positions += 1;
            let got = shop.inventory(&a.sku).get("default").copied();
            if got != Some(a.ats) {
                r.stock_mismatches.push(format!(
                    "{} at {name}: {got:?}, the hub's ats is {}",
                    a.sku, a.ats
                ));
            }
        }
    }
    // Every reservation of an order the ERP has is released; only a dead-lettered order's
    // reservation may stay committed.
    for res in store.reservations(None, None, 1_000_000).await? {
        let slot = match res.state {
            ReservationState::Held => 0,
            ReservationState::Committed => 1,
            ReservationState::Released => 2,
            ReservationState::Expired => 3,
            ReservationState::Cancelled => 4,
        };
        r.reservations[slot] += 1;
        if res.state == ReservationState::Committed {
            let order = res.order.clone().unwrap_or_default();
            if dead_orders.contains_key(&order) {
                r.reservations_excused
                    .push(format!("{} of {order}", res.id));
            } else if in_erp.contains_key(&order) {
                r.reservations_stuck
                    .push(format!("reservation {} of {order} still committed", res.id));
            }
        }
    }
    r.oversold_units = sys.erp.counters().oversold_units;
    let shop_orders: BTreeMap<String, (&ShopHandle, String)> = sys
        .shops
        .iter()
        .flat_map(|(name, shop)| {
            shop.orders()
                .into_iter()
                .map(move |o| (format!("{name}/{}", o.number), (shop, o.id.clone())))
        })
        .collect();
    for sh in sys.erp.shipments() {
        r.shipments_total += 1;
        let id = sh["id"].as_str().unwrap_or_default().to_string();
        let order = sh["order"].as_str().unwrap_or_default();
        let found = shop_orders
            .get(order)
            .is_some_and(|(shop, oid)| shop.fulfillments(oid).iter().any(|f| f.shipment_id == id));
        if !found {
            r.shipments_missing.push(format!("{id} of {order}"));
        }
    }
    Ok(r)
}

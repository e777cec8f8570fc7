//! The storefront emulator's checkout: validate the customer and lines, place an order
//! without oversell (stock checked and taken under one lock), or place one a hub has already
//! reserved (`place_reserved`, the hub's `--hub` checkout). Independent of HTTP; changes are
//! emitted under the state lock.
//!
//! Must never: await (all of this runs under a std mutex).

use super::state::{
    invalid, PlacedOrder, Prepared, ShopError, ShopOrder, ShopOrderStatus, ShopState,
};
use super::ShopInner;
use crate::core::lock;
use concord_core::model::OrderLine;
use concord_core::{validate, Kind};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

impl ShopInner {
    /// Validate a checkout's customer and lines: `(customer, lines trimmed, quantity per SKU)`.
    pub fn prepare(
        &self,
        email: &str,
        name: Option<&str>,
        lines: &[(String, i64)],
    ) -> Result<Prepared, ShopError> {
        let mut cust = json!({"email": email});
        if let Some(n) = name.filter(|n| !n.trim().is_empty()) {
            cust["name"] = json!(n);
        }
        let cust = validate(Kind::Customer, &cust).map_err(invalid)?;
        if lines.is_empty() {
            return Err(ShopError::Invalid(
                "lines: an order needs at least one line".into(),
            ));
        }
        let mut wanted: BTreeMap<String, i64> = BTreeMap::new();
        let mut trimmed = Vec::with_capacity(lines.len());
        for (i, (sku, q)) in lines.iter().enumerate() {
            if *q <= 0 {
                return Err(ShopError::Invalid(format!(
                    "lines[{i}].quantity: must be greater than 0, got {q}"
                )));
            }
            if sku.trim().is_empty() {
                return Err(ShopError::Invalid(format!(
                    "lines[{i}].sku: must not be empty"
                )));
            }
            *wanted.entry(sku.trim().to_string()).or_default() += q;
            trimmed.push((sku.trim().to_string(), *q));
        }
        Ok((cust, trimmed, wanted))
    }

    /// The checkout: all lines or nothing.
    pub fn place_order(
        &self,
        email: &str,
        name: Option<&str>,
        lines: &[(String, i64)],
    ) -> Result<PlacedOrder, ShopError> {
        let (cust, lines, wanted) = self.prepare(email, name, lines)?;
        let mut st = lock(&self.state);
        for (sku, q) in &wanted {
            let available: i64 = st.levels(sku).values().sum();
            if available < *q {
                self.core.counters.oversell_refused.fetch_add(1, Relaxed);
                return Err(ShopError::OutOfStock {
                    sku: sku.clone(),
                    requested: *q,
                    available,
                });
            }
        }
        let mut allocations = Vec::new();
        for (sku, q) in &wanted {
            let mut left = *q;
            for (loc, avail) in st.levels(sku) {
                let take = left.min(avail);
                if take > 0 {
                    allocations.push((sku.clone(), loc.clone(), take));
                    if let Some(a) = st.inventory.get_mut(&(sku.clone(), loc)) {
                        *a -= take;
                    }
                    left -= take;
                }
            }
        }
        st.next_order += 1;
        let n = st.next_order;
        let lines = lines
            .iter()
            .map(|(sku, q)| (sku.clone(), *q, None))
            .collect::<Vec<_>>();
        let placed = self.insert_order(&mut st, n, cust, &lines, allocations.clone(), None);
        for (sku, loc, _) in &allocations {
            self.stock_changed(&st, sku, loc);
        }
        Ok(placed)
    }

    /// Reserve the next order number (for a checkout through the hub, which commits the
    /// reservation under that number before the order exists).
    pub fn next_number(&self) -> u64 {
        let mut st = lock(&self.state);
        st.next_order += 1;
        st.next_order
    }

    /// Place order `n` with lines `(sku, quantity, location)` the hub reserved: no check against
    /// the store's own inventory copy (the hub said yes; the copy may lag), and the copy is
    /// left to the hub, which pushes the new available-to-sell after every reservation.
    pub fn place_reserved(
        &self,
        n: u64,
        cust: Value,
        lines: &[(String, i64, Option<String>)],
        reservation: &str,
    ) -> PlacedOrder {
        let mut st = lock(&self.state);
        self.insert_order(
            &mut st,
            n,
            cust,
            lines,
            Vec::new(),
            Some(reservation.to_string()),
        )
    }

    fn insert_order(
        &self,
        st: &mut ShopState,
        n: u64,
        cust: Value,
        lines: &[(String, i64, Option<String>)],
        allocations: Vec<(String, String, i64)>,
        reservation: Option<String>,
    ) -> PlacedOrder {
        self.ensure_customer(st, cust.clone());
        let order = ShopOrder {
            id: format!("ord_{n}"),
            number: (1000 + n).to_string(),
            email: cust["email"].as_str().unwrap_or_default().to_string(),
            name: cust["name"].as_str().map(str::to_string),
            lines: lines
                .iter()
                .map(|(sku, q, location)| OrderLine {
                    line_id: None,
                    sku: sku.clone(),
                    quantity: *q,
                    unit_price_minor: self.price_of(sku),
                    ship_to: None,
                    location: location.clone(),
                })
                .collect(),
            status: ShopOrderStatus::Placed,
            shipping_address: None,
            fulfillments: Vec::new(),
            invoices: Vec::new(),
            payments: Vec::new(),
            refunds: Vec::new(),
            erp_number: None,
            erp_status: None,
            allocations,
            placed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            reservation,
        };
        let channel = &self.opts.name;
        st.orders.insert(order.id.clone(), order.clone());
        self.core
            .emit(Kind::Order, &order.id, order.record(channel));
        PlacedOrder {
            id: order.id.clone(),
            number: order.number.clone(),
            key: format!("{channel}/{}", order.number),
            total_minor: order
                .lines
                .iter()
                .map(|l| l.quantity * l.unit_price_minor)
                .sum(),
            reservation: order.reservation.clone(),
        }
    }
}

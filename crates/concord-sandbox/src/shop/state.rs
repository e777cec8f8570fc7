//! The storefront emulator's state and rules (bulk inventory, prices, customers, fulfillments,
//! cancellation; checkout is `checkout.rs`), independent of HTTP. Changes are emitted under the
//! state lock.
//!
//! Must never: await (all of this runs under a std mutex).

use super::ShopInner;
use crate::core::lock;
use crate::core::{bind_path_field, with_id};
use crate::customers::{Customers, UpdateRefused};
use concord_core::model::{Address, ItemQty, OrderLine};
use concord_core::{validate, Kind};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The storefront refused an operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShopError {
    #[error("out of stock: `{sku}` has {available} available, {requested} requested")]
    OutOfStock {
        sku: String,
        requested: i64,
        available: i64,
    },
    /// Invalid input; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error("no {what} `{id}`")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    /// The hub's stock pool could not be asked (checkout through the hub only).
    #[error("the hub is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShopOrderStatus {
    Placed,
    PartiallyShipped,
    Shipped,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fulfillment {
    pub shipment_id: String,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub lines: Vec<ItemQty>,
    /// Where this parcel goes (a multi-address order ships per address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShopOrder {
    /// `ord_<n>`.
    pub id: String,
    /// `1001`, `1002`, …
    pub number: String,
    pub email: String,
    pub name: Option<String>,
    pub lines: Vec<OrderLine>,
    pub status: ShopOrderStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    pub fulfillments: Vec<Fulfillment>,
    /// Invoices the ERP sent (canonical, by number).
    pub invoices: Vec<Value>,
    /// Payments (canonical): captured at this store, or payment states the hub sent.
    pub payments: Vec<Value>,
    /// Refunds (canonical): made at this store, or recorded by the hub.
    pub refunds: Vec<Value>,
    /// The ERP's number of this order, as the hub reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erp_number: Option<String>,
    /// The order's status at the ERP, as the hub reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erp_status: Option<String>,
    /// Where each unit was taken from the store's own inventory: (sku, location, quantity).
    /// Empty for a checkout through the hub (the hub's pool holds the stock).
    pub allocations: Vec<(String, String, i64)>,
    pub placed_at: String,
    /// The hub reservation this order was checked out against (checkout through the hub).
    pub reservation: Option<String>,
}

/// What a successful checkout returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedOrder {
    pub id: String,
    pub number: String,
    /// The canonical order key, `channel/number`.
    pub key: String,
    pub total_minor: i64,
    /// The hub reservation it was checked out against (checkout through the hub).
    pub reservation: Option<String>,
}

impl ShopOrder {
    pub(crate) fn fulfilled(&self) -> BTreeMap<String, i64> {
        let mut m: BTreeMap<String, i64> = BTreeMap::new();
        for f in &self.fulfillments {
            for l in &f.lines {
                *m.entry(l.sku.clone()).or_default() += l.quantity;
            }
        }
        m
    }

    pub(crate) fn ordered(&self) -> BTreeMap<String, i64> {
        let mut m: BTreeMap<String, i64> = BTreeMap::new();
        for l in &self.lines {
            *m.entry(l.sku.clone()).or_default() += l.quantity;
        }
        m
    }

    pub fn record(&self, channel: &str) -> Value {
        let status = match self.status {
            ShopOrderStatus::Placed => "placed",
            ShopOrderStatus::PartiallyShipped => "partially_shipped",
            ShopOrderStatus::Shipped => "shipped",
            ShopOrderStatus::Cancelled => "cancelled",
        };
        let mut customer = json!({"email": self.email});
        if let Some(n) = &self.name {
            customer["name"] = json!(n);
        }
        let mut r = json!({"channel": channel, "number": self.number, "customer": customer,
               "status": status, "currency": "USD", "lines": self.lines,
               "total_minor": self.total_minor(), "placed_at": self.placed_at});
        if let Some(a) = &self.shipping_address {
            r["shipping_address"] = json!(a);
        }
        r
    }

    /// Σ quantity × unit price.
    pub fn total_minor(&self) -> i64 {
        self.lines
            .iter()
            .map(|l| l.quantity.saturating_mul(l.unit_price_minor))
            .sum()
    }

    /// What was refunded so far (refunds made here and refunds the hub recorded).
    pub fn refunded_minor(&self) -> i64 {
        self.refunds
            .iter()
            .filter_map(|r| r["amount_minor"].as_i64())
            .sum()
    }

    pub fn to_api(&self, channel: &str) -> Value {
        json!({"id": self.id, "number": self.number, "status": self.status,
               "customer": {"email": self.email, "name": self.name}, "lines": self.lines,
               "fulfillments": self.fulfillments, "invoices": self.invoices,
               "payments": self.payments, "refunds": self.refunds,
               "erp_number": self.erp_number, "erp_status": self.erp_status,
               "record": self.record(channel)})
    }
}

/// A validated checkout: the customer, the trimmed lines, the quantity wanted per SKU.
pub(crate) type Prepared = (Value, Vec<(String, i64)>, BTreeMap<String, i64>);

#[derive(Default)]
pub(crate) struct ShopState {
    pub inventory: BTreeMap<(String, String), i64>,
    pub customers: Customers,
    pub orders: BTreeMap<String, ShopOrder>,
    pub(super) next_order: u64,
    pub(crate) next_payment: u64,
    pub(crate) next_refund: u64,
}

impl ShopState {
    pub fn levels(&self, sku: &str) -> BTreeMap<String, i64> {
        self.inventory
            .iter()
            .filter(|((s, _), _)| s == sku)
            .map(|((_, l), a)| (l.clone(), *a))
            .collect()
    }
}

pub(super) fn invalid(e: concord_core::ValidationError) -> ShopError {
    ShopError::Invalid(e.to_string())
}

impl ShopInner {
    pub(crate) fn stock_changed(&self, st: &ShopState, sku: &str, location: &str) {
        let key = (sku.to_string(), location.to_string());
        if let Some(a) = st.inventory.get(&key) {
            let rec = json!({"sku": sku, "location": location, "on_hand": a, "committed": 0});
            self.core
                .emit(Kind::Stock, &format!("{sku}@{location}"), rec);
        }
    }

    /// `sku` is the URL's (an HTTP write, counted) or `None` (a direct mutation).
    pub fn put_product(&self, sku: Option<&str>, mut body: Value) -> Result<Value, ShopError> {
        let from_http = sku.is_some();
        if let Some(sku) = sku {
            bind_path_field(&mut body, "sku", sku).map_err(ShopError::Invalid)?;
        }
        let p = validate(Kind::Product, &body).map_err(invalid)?;
        let sku = p["sku"].as_str().unwrap_or_default().to_string();
        self.core.emit(Kind::Product, &sku, p.clone());
        if from_http {
            self.core.count_writes(Kind::Product, 1);
        }
        Ok(p)
    }

    /// `PUT /api/prices/{list}/{sku}`: a canonical price without validity dates.
    pub fn put_price(&self, list: &str, sku: &str, mut body: Value) -> Result<Value, ShopError> {
        bind_path_field(&mut body, "list", list).map_err(ShopError::Invalid)?;
        bind_path_field(&mut body, "sku", sku).map_err(ShopError::Invalid)?;
        let p = validate(Kind::Price, &body).map_err(invalid)?;
        for field in ["valid_from", "valid_to"] {
            if p.get(field).is_some_and(|v| !v.is_null()) {
                return Err(ShopError::Invalid(format!(
                    "{field}: cannot represent: this storefront's prices have no validity dates"
                )));
            }
        }
        let id = format!(
            "{}:{}",
            p["list"].as_str().unwrap_or_default(),
            p["sku"].as_str().unwrap_or_default()
        );
        self.core.emit(Kind::Price, &id, p.clone());
        self.core.count_writes(Kind::Price, 1);
        Ok(p)
    }

    pub fn set_available(
        &self,
        sku: &str,
        location: &str,
        available: i64,
    ) -> Result<(), ShopError> {
        if sku.trim().is_empty() {
            return Err(ShopError::Invalid("sku: must not be empty".into()));
        }
        if location.trim().is_empty() {
            return Err(ShopError::Invalid("location: must not be empty".into()));
        }
        if available < 0 {
            return Err(ShopError::Invalid(format!(
                "available: must not be negative, got {available}"
            )));
        }
        let mut st = lock(&self.state);
        st.inventory
            .insert((sku.trim().to_string(), location.to_string()), available);
        self.stock_changed(&st, sku.trim(), location);
        self.tell_watchers(sku.trim(), location, available);
        Ok(())
    }

    /// Report a level to the watchers (called under the state lock, so in store order); drops
    /// the ones whose receiver is gone.
    fn tell_watchers(&self, sku: &str, location: &str, available: i64) {
        let mut watchers = lock(&self.watchers);
        if watchers.is_empty() {
            return;
        }
        let set = super::InventorySet {
            sku: sku.to_string(),
            location: location.to_string(),
            available,
            at: std::time::Instant::now(),
        };
        watchers.retain(|w| w.send(set.clone()).is_ok());
    }

    /// One item of `POST /api/inventory/set`: its result object.
    pub fn set_item(&self, index: usize, item: &Value) -> Value {
        let field = |f: &str| item.get(f);
        let res = (|| {
            let sku = field("sku").and_then(Value::as_str).ok_or_else(|| {
                ShopError::Invalid("sku: is required and must be a string".into())
            })?;
            let location = field("location").and_then(Value::as_str).ok_or_else(|| {
                ShopError::Invalid("location: is required and must be a string".into())
            })?;
            let available = field("available").and_then(Value::as_i64).ok_or_else(|| {
                ShopError::Invalid("available: is required and must be an integer".into())
            })?;
            self.set_available(sku, location, available)?;
            Ok::<_, ShopError>(json!({"index": index, "status": "ok", "sku": sku.trim(),
                                      "location": location, "available": available}))
        })();
        match res {
            Ok(v) => {
                self.core.count_writes(Kind::Stock, 1);
                v
            }
            Err(e) => json!({"index": index, "status": "error", "code": 422,
                             "error": format!("items[{index}].{e}")}),
        }
    }

    pub(crate) fn price_of(&self, sku: &str) -> i64 {
        if let Some(p) = self
            .core
            .record(Kind::Price, &format!("default:{sku}"))
            .and_then(|p| p.get("amount_minor").and_then(Value::as_i64))
        {
            return p;
        }
        self.core
            .record(Kind::Product, sku)
            .and_then(|p| p.pointer("/attributes/price_minor").and_then(Value::as_i64))
            .filter(|p| *p >= 0)
            .unwrap_or(1000)
    }

    /// Create the customer unless the e-mail is known; `(customer with id, created)`.
    pub(super) fn ensure_customer(&self, st: &mut ShopState, c: Value) -> (Value, bool) {
        let (id, created) = st.customers.ensure("cus_", &c);
        if created {
            self.core.emit(Kind::Customer, &id, c.clone());
        }
        let out = st
            .customers
            .with_id(&id)
            .unwrap_or_else(|| with_id(&id, &c));
        (out, created)
    }

    pub fn create_customer(&self, body: Value) -> Result<(Value, bool), ShopError> {
        let c = validate(Kind::Customer, &body).map_err(invalid)?;
        let mut st = lock(&self.state);
        let out = self.ensure_customer(&mut st, c);
        if out.1 {
            self.core.count_writes(Kind::Customer, 1);
        }
        Ok(out)
    }

    pub fn update_customer(&self, id: &str, body: Value) -> Result<Value, ShopError> {
        let c = validate(Kind::Customer, &body).map_err(invalid)?;
        let mut st = lock(&self.state);
        st.customers.update(id, &c).map_err(|e| match e {
            UpdateRefused::NotFound => ShopError::NotFound {
                what: "customer",
                id: id.into(),
            },
            UpdateRefused::EmailTaken(other) => ShopError::Conflict(format!(
                "email: `{}` already belongs to customer {other}",
                c["email"].as_str().unwrap_or_default()
            )),
        })?;
        self.core.emit(Kind::Customer, id, c.clone());
        self.core.count_writes(Kind::Customer, 1);
        Ok(with_id(id, &c))
    }

    pub fn find_customers(&self, email: Option<&str>) -> Vec<Value> {
        lock(&self.state).customers.find(email)
    }

    pub fn customer(&self, id: &str) -> Option<Value> {
        lock(&self.state).customers.with_id(id)
    }

    pub fn order(&self, id: &str) -> Option<ShopOrder> {
        lock(&self.state).orders.get(id).cloned()
    }

    pub fn find_orders(&self, number: Option<&str>) -> Vec<ShopOrder> {
        lock(&self.state)
            .orders
            .values()
            .filter(|o| number.is_none_or(|n| o.number == n))
            .cloned()
            .collect()
    }

    /// `(fulfillment, order, created)`; idempotent on `shipment_id`.
    pub fn fulfill(
        &self,
        id: &str,
        body: &Value,
    ) -> Result<(Fulfillment, ShopOrder, bool), ShopError> {
        let shipment_id = body
            .get("shipment_id")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ShopError::Invalid("shipment_id: is required".into()))?
            .to_string();
        let text = |f: &str| body.get(f).and_then(Value::as_str).map(str::to_string);
        let lines: Vec<ItemQty> =
            serde_json::from_value(body.get("lines").cloned().unwrap_or(Value::Null))
                .map_err(|e| ShopError::Invalid(format!("lines: {e}")))?;
        let mut st = lock(&self.state);
        let mut order = st
            .orders
            .get(id)
            .cloned()
            .ok_or_else(|| ShopError::NotFound {
                what: "order",
                id: id.into(),
            })?;
        if let Some(f) = order
            .fulfillments
            .iter()
            .find(|f| f.shipment_id == shipment_id)
        {
            return Ok((f.clone(), order.clone(), false));
        }
        if order.status == ShopOrderStatus::Cancelled {
            return Err(ShopError::Conflict(format!("order {id} is cancelled")));
        }
        if lines.is_empty() {
            return Err(ShopError::Invalid(
                "lines: a fulfillment needs at least one line".into(),
            ));
        }
        let ordered = order.ordered();
        let mut done = order.fulfilled();
        for (i, l) in lines.iter().enumerate() {
            if l.quantity <= 0 {
                return Err(ShopError::Invalid(format!(
                    "lines[{i}].quantity: must be greater than 0"
                )));
            }
            let total = done.entry(l.sku.clone()).or_default();
            *total += l.quantity;
            let max = ordered.get(&l.sku).copied().unwrap_or(0);
            if *total > max {
                return Err(ShopError::Invalid(format!(
                    "lines[{i}]: fulfilling {} of `{}` exceeds the {max} ordered",
                    total, l.sku
                )));
            }
        }
        let address: Option<Address> = match body.get("address") {
            None | Some(Value::Null) => None,
            Some(a) => Some(
                serde_json::from_value(a.clone())
                    .map_err(|e| ShopError::Invalid(format!("address: {e}")))?,
            ),
        };
        let f = Fulfillment {
            shipment_id,
            carrier: text("carrier"),
            tracking_number: text("tracking_number"),
            lines,
            address,
        };
        order.fulfillments.push(f.clone());
        order.status = if ordered
            .iter()
            .all(|(s, q)| done.get(s).copied().unwrap_or(0) >= *q)
        {
            ShopOrderStatus::Shipped
        } else {
            ShopOrderStatus::PartiallyShipped
        };
        st.orders.insert(order.id.clone(), order.clone());
        self.core
            .emit(Kind::Order, &order.id, order.record(&self.opts.name));
        self.core.count_writes(Kind::Shipment, 1);
        Ok((f, order, true))
    }

    /// `POST /api/orders/{id}/cancel` (the hub telling the store: a counted write).
    pub fn cancel(&self, id: &str) -> Result<ShopOrder, ShopError> {
        let o = self.cancel_order(id)?;
        self.core.count_writes(Kind::Order, 1);
        Ok(o)
    }

    /// Cancel an order not fulfilled yet (restocks what it took; idempotent).
    pub fn cancel_order(&self, id: &str) -> Result<ShopOrder, ShopError> {
        let mut st = lock(&self.state);
        let mut order = st
            .orders
            .get(id)
            .cloned()
            .ok_or_else(|| ShopError::NotFound {
                what: "order",
                id: id.into(),
            })?;
        if order.status == ShopOrderStatus::Cancelled {
            return Ok(order);
        }
        if !order.fulfillments.is_empty() {
            return Err(ShopError::Conflict(format!("order {id} has fulfillments")));
        }
        order.status = ShopOrderStatus::Cancelled;
        st.orders.insert(order.id.clone(), order.clone());
        self.core
            .emit(Kind::Order, &order.id, order.record(&self.opts.name));
        for (sku, loc, q) in &order.allocations {
            *st.inventory.entry((sku.clone(), loc.clone())).or_default() += q;
            self.stock_changed(&st, sku, loc);
        }
        Ok(order)
    }
}

//! The ERP emulator's state — sales orders, stock rows, master data (products, prices, stock,
//! customers) with their writes and reads — independent of HTTP; the sales orders' business
//! rules (commit on accept, amend, ship, cancel) are in `orders.rs`. Every mutation emits its
//! changes through the core while the state lock is held, so the feed's seq order is the order
//! things happened in.
//!
//! Must never: await (all of this runs under a std mutex).

use super::ErpInner;
use crate::core::{lock, with_id};
use crate::customers::{Customers, UpdateRefused};
use concord_core::model::{Address, Incoming, OrderLine, Stock};
use concord_core::{validate, Kind};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// A business rule or validation refused the operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErpError {
    /// The body is not a valid record; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: unknown sku `{sku}`")]
    UnknownSku { path: String, sku: String },
    #[error("customer_id: unknown customer `{0}`")]
    UnknownCustomer(String),
    #[error("customer on credit hold: {0}")]
    CreditHold(String),
    #[error("no {what} `{id}`")]
    NotFound { what: &'static str, id: String },
    /// The order is not in a state that allows this (shipped, cancelled, nothing left).
    #[error("{0}")]
    Conflict(String),
}

/// A sales order's own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErpOrderStatus {
    Open,
    Cancelled,
    Shipped,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SalesOrder {
    /// `SO-<n>`.
    pub id: String,
    /// What the order is keyed by: the canonical order's `reference` when it has one (a
    /// cancel-and-replace replacement, `channel/number~n`), else its key `channel/number`.
    pub reference: String,
    pub channel: String,
    pub number: String,
    pub customer_id: String,
    pub email: String,
    pub currency: String,
    pub lines: Vec<OrderLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_address: Option<Address>,
    pub status: ErpOrderStatus,
    /// Quantity shipped so far per SKU (taken from the SKU's lines in line order).
    pub shipped: BTreeMap<String, i64>,
    /// The order's invoice number, once invoiced.
    pub invoice: Option<String>,
    /// Its invoice is paid (captured payments cover its total).
    pub invoice_paid: bool,
    /// Units credited (credit notes by lines) per SKU.
    pub credited: BTreeMap<String, i64>,
    /// Amount credited by credit notes so far.
    pub credited_minor: i64,
    /// Captured payments recorded against the order (refunded ones excluded).
    pub paid_minor: i64,
    /// A customer return of this order has been received.
    pub returned: bool,
    /// The ERP's acceptance version: the feed seq just before the order's stock commits were
    /// emitted. Every stock figure that includes the order has a greater version; none that
    /// doesn't.
    pub version: String,
}

impl SalesOrder {
    /// Ordered minus shipped, per SKU (only positive remainders).
    pub fn remaining(&self) -> BTreeMap<String, i64> {
        let mut rem: BTreeMap<String, i64> = BTreeMap::new();
        for l in &self.lines {
            *rem.entry(l.sku.clone()).or_default() += l.quantity;
        }
        for (sku, q) in &self.shipped {
            if let Some(r) = rem.get_mut(sku) {
                *r -= q;
            }
        }
        rem.retain(|_, q| *q > 0);
        rem
    }

    /// Open quantity per (sku, location) in line order: a SKU's shipped units are taken from
    /// its lines in line order (every line's `location` is set once the ERP accepted it).
    pub fn remaining_at(&self) -> Vec<(String, String, i64)> {
        let mut shipped = self.shipped.clone();
        let mut out: Vec<(String, String, i64)> = Vec::new();
        for l in &self.lines {
            let loc = l.location.clone().unwrap_or_default();
            let s = shipped.entry(l.sku.clone()).or_default();
            let take = (*s).clamp(0, l.quantity);
            *s -= take;
            let left = l.quantity - take;
            if left <= 0 {
                continue;
            }
            match out.iter_mut().find(|(k, lo, _)| *k == l.sku && *lo == loc) {
                Some(e) => e.2 += left,
                None => out.push((l.sku.clone(), loc, left)),
            }
        }
        out
    }

    /// The canonical order key, `channel/number` (shipments, invoices, payments and refunds name
    /// the order by it).
    pub fn key(&self) -> String {
        format!("{}/{}", self.channel, self.number)
    }

    /// Σ quantity × unit price over the lines.
    pub fn total_minor(&self) -> i64 {
        self.lines
            .iter()
            .map(|l| l.quantity.saturating_mul(l.unit_price_minor))
            .sum()
    }

    /// Anything shipped yet.
    pub fn has_shipped(&self) -> bool {
        self.shipped.values().any(|q| *q > 0)
    }

    /// The canonical lifecycle status as the ERP sees the order: cancelled, returned (a return
    /// was received), refunded / partially refunded (credit notes), paid / invoiced (its
    /// invoice), shipped / partially shipped, else accepted.
    pub fn lifecycle(&self) -> &'static str {
        let total = self.total_minor();
        if self.status == ErpOrderStatus::Cancelled {
            "cancelled"
        } else if self.returned {
            "returned"
        } else if self.credited_minor > 0 && self.credited_minor >= total {
            "refunded"
        } else if self.credited_minor > 0 {
            "partially_refunded"
        } else if self.invoice.is_some() && self.invoice_paid {
            "paid"
        } else if self.invoice.is_some() {
            "invoiced"
        } else if self.status == ErpOrderStatus::Shipped {
            "shipped"
        } else if self.has_shipped() {
            "partially_shipped"
        } else {
            "accepted"
        }
    }

    /// The canonical order record (status from [`SalesOrder::lifecycle`]).
    pub fn record(&self) -> Value {
        let mut r = json!({"channel": self.channel, "number": self.number,
               "customer": {"email": self.email},
               "status": self.lifecycle(), "currency": self.currency,
               "lines": self.lines, "total_minor": self.total_minor(), "erp_number": self.id});
        if let Some(a) = &self.shipping_address {
            r["shipping_address"] = json!(a);
        }
        if let Some(a) = &self.billing_address {
            r["billing_address"] = json!(a);
        }
        if self.reference != self.key() {
            r["reference"] = json!(self.reference);
        }
        r
    }

    /// The API representation.
    pub fn to_api(&self) -> Value {
        json!({"id": self.id, "reference": self.reference, "customer_id": self.customer_id,
               "status": self.status, "version": self.version, "record": self.record()})
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct StockRow {
    pub on_hand: i64,
    pub committed: i64,
    pub incoming: Vec<Incoming>,
}

#[derive(Default)]
pub(crate) struct ErpState {
    pub stock: BTreeMap<(String, String), StockRow>,
    pub customers: Customers,
    pub orders: BTreeMap<String, SalesOrder>,
    pub order_by_ref: HashMap<String, String>,
    pub shipments: Vec<Value>,
    pub money: super::money::Money,
    pub(super) next_order: u64,
    pub(super) next_shipment: u64,
    pub(super) next_rep: u64,
}

impl ErpState {
    pub fn stock_of(&self, sku: &str, location: &str) -> Option<Stock> {
        self.stock
            .get(&(sku.to_string(), location.to_string()))
            .map(|r| stock_struct(sku, location, r))
    }
}

fn stock_struct(sku: &str, location: &str, r: &StockRow) -> Stock {
    Stock {
        sku: sku.to_string(),
        location: location.to_string(),
        on_hand: r.on_hand,
        committed: r.committed,
        incoming: r.incoming.clone(),
    }
}

pub(super) fn invalid(e: concord_core::ValidationError) -> ErpError {
    ErpError::Invalid(e.to_string())
}

fn bind_path_field(body: &mut Value, field: &str, value: &str) -> Result<(), ErpError> {
    crate::core::bind_path_field(body, field, value).map_err(ErpError::Invalid)
}

impl ErpInner {
    pub(super) fn stock_changed(&self, st: &ErpState, sku: &str, location: &str) {
        if let Some(s) = st.stock_of(sku, location) {
            let id = format!("{sku}@{location}");
            self.core.emit(
                Kind::Stock,
                &id,
                serde_json::to_value(s).unwrap_or(Value::Null),
            );
        }
    }

    /// `sku` is the URL's (an HTTP write, counted) or `None` (a direct mutation).
    pub fn put_product(&self, sku: Option<&str>, mut body: Value) -> Result<Value, ErpError> {
        let from_http = sku.is_some();
        if let Some(sku) = sku {
            bind_path_field(&mut body, "sku", sku)?;
        }
        let p = validate(Kind::Product, &body).map_err(invalid)?;
        let sku = p["sku"].as_str().unwrap_or_default().to_string();
        self.core.emit(Kind::Product, &sku, p.clone());
        if from_http {
            self.core.count_writes(Kind::Product, 1);
        }
        Ok(p)
    }

    pub fn put_price(
        &self,
        path: Option<(&str, &str)>,
        mut body: Value,
    ) -> Result<Value, ErpError> {
        let from_http = path.is_some();
        if let Some((list, sku)) = path {
            bind_path_field(&mut body, "list", list)?;
            bind_path_field(&mut body, "sku", sku)?;
        }
        let p = validate(Kind::Price, &body).map_err(invalid)?;
        let id = format!(
            "{}:{}",
            p["list"].as_str().unwrap_or_default(),
            p["sku"].as_str().unwrap_or_default()
        );
        self.core.emit(Kind::Price, &id, p.clone());
        if from_http {
            self.core.count_writes(Kind::Price, 1);
        }
        Ok(p)
    }

    pub fn change_stock(
        &self,
        sku: &str,
        location: &str,
        f: impl FnOnce(&mut StockRow),
    ) -> Result<(), ErpError> {
        if sku.trim().is_empty() || location.trim().is_empty() {
            return Err(ErpError::Invalid(
                "sku and location must not be empty".into(),
            ));
        }
        let mut st = lock(&self.state);
        f(st.stock
            .entry((sku.to_string(), location.to_string()))
            .or_default());
        self.stock_changed(&st, sku, location);
        Ok(())
    }

    /// Add `delta` to on-hand at a location (creating the row), clamped at 0: a goods receipt
    /// or a count correction ([`super::ErpHandle::adjust_stock`],
    /// `POST /_control/stock/{sku}/{location}/adjust`). A result above
    /// [`concord_core::limits::MAX_QUANTITY`] is refused and changes nothing.
    pub fn adjust_stock(&self, sku: &str, location: &str, delta: i64) -> Result<Stock, ErpError> {
        let checked = concord_core::limits::key("sku", sku)
            .and_then(|()| concord_core::limits::key("location", location));
        checked.map_err(|e| ErpError::Invalid(e.to_string()))?;
        let key = (sku.to_string(), location.to_string());
        let mut st = lock(&self.state);
        let on_hand = st.stock.get(&key).map_or(0, |r| r.on_hand);
        let next = on_hand.saturating_add(delta).max(0);
        if next > concord_core::limits::MAX_QUANTITY {
            return Err(ErpError::Invalid(format!(
                "delta: {on_hand} on hand + {delta} is more than {} units",
                concord_core::limits::MAX_QUANTITY
            )));
        }
        st.stock.entry(key).or_default().on_hand = next;
        self.stock_changed(&st, sku, location);
        st.stock_of(sku, location)
            .ok_or_else(|| ErpError::NotFound {
                what: "stock",
                id: format!("{sku}@{location}"),
            })
    }

    /// `PUT /api/stock/{sku}/{location}`: sets on-hand and incoming, keeps committed.
    pub fn put_stock(&self, sku: &str, location: &str, mut body: Value) -> Result<Stock, ErpError> {
        bind_path_field(&mut body, "sku", sku)?;
        bind_path_field(&mut body, "location", location)?;
        let v = validate(Kind::Stock, &body).map_err(invalid)?;
        let s: Stock = serde_json::from_value(v).map_err(|e| ErpError::Invalid(e.to_string()))?;
        self.change_stock(&s.sku, &s.location, |row| {
            row.on_hand = s.on_hand;
            row.incoming = s.incoming.clone();
        })?;
        self.core.count_writes(Kind::Stock, 1);
        lock(&self.state)
            .stock_of(&s.sku, &s.location)
            .ok_or_else(|| ErpError::Invalid("stock row vanished".into()))
    }

    /// Idempotent on e-mail: `(customer with id, created)`.
    pub fn create_customer(&self, body: Value) -> Result<(Value, bool), ErpError> {
        let c = validate(Kind::Customer, &body).map_err(invalid)?;
        let mut st = lock(&self.state);
        let (id, created) = st.customers.ensure("C-", &c);
        if created {
            self.core.emit(Kind::Customer, &id, c.clone());
            self.core.count_writes(Kind::Customer, 1);
        }
        let out = st
            .customers
            .with_id(&id)
            .unwrap_or_else(|| with_id(&id, &c));
        Ok((out, created))
    }

    pub fn update_customer(&self, id: &str, body: Value) -> Result<Value, ErpError> {
        let c = validate(Kind::Customer, &body).map_err(invalid)?;
        let mut st = lock(&self.state);
        st.customers.update(id, &c).map_err(|e| match e {
            UpdateRefused::NotFound => ErpError::NotFound {
                what: "customer",
                id: id.into(),
            },
            UpdateRefused::EmailTaken(other) => ErpError::Conflict(format!(
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

    pub fn find_orders(&self, reference: Option<&str>) -> Vec<Value> {
        let st = lock(&self.state);
        st.orders
            .values()
            .filter(|o| reference.is_none_or(|r| o.reference == r))
            .map(SalesOrder::to_api)
            .collect()
    }

    pub fn order(&self, id: &str) -> Option<SalesOrder> {
        lock(&self.state).orders.get(id).cloned()
    }

    pub fn customer(&self, id: &str) -> Option<Value> {
        lock(&self.state).customers.with_id(id)
    }

    pub fn shipments_of(&self, reference: Option<&str>) -> Vec<Value> {
        lock(&self.state)
            .shipments
            .iter()
            .filter(|s| reference.is_none_or(|r| s["order"] == r))
            .cloned()
            .collect()
    }
}

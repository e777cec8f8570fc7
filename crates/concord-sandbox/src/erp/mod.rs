//! `ErpSim`: an in-memory ERP (the system of record) served over HTTP, for the demo, dry runs and
//! fault tests. It owns products, stock per (sku, location), prices, customers, sales orders and
//! shipments, invoices, payments, credit notes and returns, and behaves like one: accepting an
//! order commits stock, amending it moves the commitment, shipping (in one or several
//! shipments) lowers on-hand, cancelling releases what was committed, a refund is a credit note,
//! returned goods are back on hand only once received, and every change is announced by webhook
//! and feed.
//!
//! # HTTP API (the contract `SandboxErpConnector` follows)
//! All bodies are canonical JSON (`concord_core::model`); errors are `{"error": "..."}`.
//! - `GET /api/products/{sku}` → product | 404. `PUT /api/products/{sku}` (canonical product).
//! - `GET /api/stock/{sku}/{location}` → stock | 404. `PUT /api/stock/{sku}/{location}` sets
//!   `on_hand` and `incoming`; `committed` is the ERP's own figure and is ignored on input.
//! - `GET /api/prices/{list}/{sku}` → price | 404. `PUT /api/prices/{list}/{sku}` (canonical price).
//! - `GET /api/customers?email=E` → `{"customers":[{"id":"C-n", ..canonical}]}`.
//!   `POST /api/customers` (canonical customer): idempotent on e-mail — an existing customer is
//!   returned unchanged with 200, a new one with 201. `GET|PUT /api/customers/{id}` reads/updates.
//! - `GET /api/sales-orders?reference=R` → `{"orders":[sales order]}`. A sales order is keyed
//!   by its reference: the canonical order's `reference` when it has one (a cancel-and-replace
//!   replacement, `channel/number~n`), else its key `channel/number`.
//!   `POST /api/sales-orders` (canonical order + `"customer_id"`; `channel` is required): idempotent
//!   on the reference for the *same* order (existing with the same customer e-mail and quantity
//!   per SKU → 200, new → 201); another order under an existing reference (another customer,
//!   other lines: a store that restarted its numbering) → 409 naming the sales order that has
//!   it, never a 200 for somebody else's order; unknown sku or customer → 422 naming it; a
//!   customer on credit hold → 422 "customer on credit hold". `GET /api/sales-orders/{id}`.
//!   `PATCH /api/sales-orders/{id}` amends an order (body: a canonical order or part of one —
//!   `lines` replaces every line, `shipping_address`/`billing_address` replace the addresses,
//!   `null` removes one): the old lines' commitment is released and the new lines' committed in
//!   one step, the order gets a new acceptance `version`; the edited order is validated as a
//!   whole (422 naming the field); an unchanged amend changes nothing; once anything shipped,
//!   or invoiced, or cancelled → 409 with the reason ("… cannot be amended after shipment").
//!   `POST /api/sales-orders/{id}/cancel` (open → cancelled, releases committed, cancels its
//!   invoice; idempotent; shipped → 409). `POST /api/sales-orders/{id}/ship` ships what remains
//!   (409 when nothing).
//!   A sales order is `{"id","reference","customer_id","status":"open|cancelled|shipped",
//!   "version","record"}`; `version` is its acceptance version (below). Its canonical record
//!   (`record`, and the feed) is named by the key `channel/number`, carries `reference` when it
//!   differs, `erp_number`, `total_minor`, the addresses, and a lifecycle `status`: `accepted`,
//!   `partially_shipped`, `shipped`, `invoiced`, `paid`, `partially_refunded`, `refunded`,
//!   `returned`, `cancelled`.
//!
//! # Shipments, invoices, payments, credit notes, returns
//! - `GET /api/shipments?order=<key>` → `{"shipments":[canonical shipment]}`. One order can have
//!   several shipments (`SH-n`, each its own record in the feed with carrier, tracking number,
//!   the shipped lines and where it goes — the shipped lines' own `ship_to` when they share one
//!   (a multi-address order ships per address), else the order's shipping address; `order` is
//!   the canonical key).
//! - `GET /api/invoices?order=<key>` → `{"invoices":[…]}`: one invoice per order (`INV-n`),
//!   `posted`, then `paid` once captured payments cover its total, `cancelled` with its order.
//! - `POST /api/payments` (canonical payment; `order` = key or reference): recorded against the
//!   order and its invoice (`invoice` filled in), idempotent by order and payment id (the same
//!   payment again → 200, no change; a changed status → updated; a channel's ids are unique only
//!   among its own records, so `pay_1` of two orders is two payments, fed as `{order}:{id}`);
//!   unknown order or another currency → 422 naming the field. `GET /api/payments/{id}` (the
//!   feed's id, `{order}:{id}` or `PAY-n`, else the first payment with that `id`).
//! - `POST /api/credit-notes` (canonical refund) → 201 `{"id":"CN-n","refund":{…},"return":
//!   "RMA-n"|null,"sales_order"}`, idempotent by order and the refund's `id` (again → 200, the
//!   same note).
//!   By lines (each on the order, never more than ordered less already credited; an amount of 0
//!   means the lines' value) or by amount (at most what is not credited yet): otherwise 422
//!   naming `lines[i].quantity` / `amount_minor`. `restock` with lines opens a customer return
//!   (`RMA-n`, `expected`): its units are NOT back on hand until it is received.
//!   `GET /api/credit-notes?order=<key>`, `GET /api/returns?order=<key>`.
//! - Feed and snapshot (the wire contract: `concord_connectors::sandbox::protocol`) for product,
//!   stock, price, customer, order, shipment, invoice, payment, refund; ids: sku,
//!   `sku@location`, `list:sku`, `C-n`, `SO-n`, `SH-n`, `INV-n`, the payment's id, `CN-n` (the
//!   record is the canonical refund, `id` = the refund id it books).
//! - Control calls — what happens inside the ERP (the warehouse ships, accounting invoices and
//!   books a bank transfer, a return is received, a sales rep keys in an order, the credit
//!   controller holds a customer), seeding, goods receipts, faults and outages — are listed with
//!   their bodies and effects in the crate docs (`# Control calls`); never faulted, not counted
//!   as writes.
//!
//! # Where an order's stock comes from, and the acceptance version
//! Each order line is committed, then shipped, at its own `location` when the line names one
//! (canonical `lines[].location`: a storefront that reserved through the hub's stock pool
//! copies it from the reservation, so the ERP takes the units exactly where the hub held them
//! and the hub's release of each reservation line is matched by the ERP's figure at the same
//! position); a line without one comes from the default location (`ErpOptions::default_location`),
//! as do orders keyed in by a rep ([`ErpHandle::rep_order`]).
//!
//! The acceptance `version` is the feed seq taken just before the order's stock commits are
//! emitted: every stock figure that includes the order has a greater version, every figure that
//! does not has a smaller or equal one. (The stock changes are emitted before the order record,
//! so the order record's own seq would be too high.) An order found again by reference keeps
//! its version. `oversold_units` in the counters adds, per accepted line, the units beyond the
//! ERP's own `on_hand − committed` at its location: stock promised that the ERP did not have.
//!
//! A save that changes nothing produces no change (no new seq, no webhook). Accepting an order
//! emits the stock change before the order change, so a reader of the order already has the
//! stock figures that include it.
//!
//! Must never: reach any other system than the webhook receiver, or persist anything; amend an
//! order after anything shipped; put returned goods back on hand before the return is received.

mod api;
mod money;
mod orders;
mod state;

pub use money::{CreditNote, CustomerReturn, ErpInvoice, ReturnLine, ReturnStatus};
pub use state::{ErpError, ErpOrderStatus, SalesOrder};

use super::core::{core_handle_methods, lock, Core, WebhookConfig};
use super::SimError;
use concord_connectors::sandbox::protocol::ERP_KINDS;
use concord_core::model::Stock;
use concord_core::Kind;
use serde_json::{json, Value};
use state::ErpState;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How to start an [`ErpSim`].
#[derive(Debug, Clone)]
pub struct ErpOptions {
    /// Default `127.0.0.1:0` (any free port).
    pub bind: SocketAddr,
    /// Where webhooks are POSTed; `None` = no webhooks.
    pub webhook_url: Option<String>,
    /// HMAC secret; `None` = webhooks are sent unsigned.
    pub webhook_secret: Option<String>,
    /// Kinds announced by webhook; `None` = all.
    pub webhook_kinds: Option<Vec<Kind>>,
    /// Most events per webhook POST (default 100).
    pub webhook_batch: usize,
    /// Location the ERP commits and ships sales orders from (default `WH1`).
    pub default_location: String,
    /// Ship every accepted order this long after acceptance.
    pub auto_ship_after: Option<Duration>,
    /// E-mails of customers whose orders the auto-shipper leaves alone: the warehouse ships them
    /// by hand ([`ErpHandle::ship_with`], `POST /_control/sales-orders/{id}/ship`).
    pub hold_for: Vec<String>,
    /// E-mails of customers on credit hold (their orders are refused).
    pub credit_hold: Vec<String>,
    /// Invoice an order when its last shipment leaves (default off: invoices are made with
    /// [`ErpHandle::invoice`] or `POST /_control/sales-orders/{id}/invoice`).
    pub invoice_on_ship: bool,
}

impl Default for ErpOptions {
    fn default() -> Self {
        ErpOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            webhook_url: None,
            webhook_secret: None,
            webhook_kinds: None,
            webhook_batch: 100,
            default_location: "WH1".to_string(),
            auto_ship_after: None,
            credit_hold: Vec::new(),
            invoice_on_ship: false,
            hold_for: Vec::new(),
        }
    }
}

/// The ERP emulator.
pub struct ErpSim;

impl ErpSim {
    /// Bind, start serving and return the handle.
    pub async fn start(opts: ErpOptions) -> Result<ErpHandle, SimError> {
        let webhook = opts.webhook_url.clone().map(|url| WebhookConfig {
            url,
            secret: opts.webhook_secret.clone(),
            kinds: opts.webhook_kinds.clone(),
            batch: opts.webhook_batch,
        });
        let (core, listener) = Core::bind(opts.bind, ERP_KINDS, webhook).await?;
        let (ship_tx, ship_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(ErpInner {
            core: core.clone(),
            state: Mutex::new(ErpState::default()),
            credit_hold: Mutex::new(
                opts.credit_hold
                    .iter()
                    .map(|e| e.trim().to_lowercase())
                    .collect(),
            ),
            auto_ship: opts.auto_ship_after.map(|d| (d, ship_tx)),
            opts,
        });
        if inner.auto_ship.is_some() {
            core.add_task(tokio::spawn(auto_ship(inner.clone(), ship_rx)));
        }
        core.serve(listener, api::router(inner.clone())).await;
        Ok(ErpHandle { inner })
    }
}

pub(crate) struct ErpInner {
    pub core: Arc<Core>,
    pub state: Mutex<ErpState>,
    pub opts: ErpOptions,
    /// E-mails (lower-cased) on credit hold; changed by `/_control/credit-hold/{email}`.
    pub credit_hold: Mutex<Vec<String>>,
    auto_ship: Option<(
        Duration,
        mpsc::UnboundedSender<(tokio::time::Instant, String)>,
    )>,
}

impl ErpInner {
    pub fn set_credit_hold(&self, email: &str, hold: bool) {
        let email = email.trim().to_lowercase();
        let mut held = lock(&self.credit_hold);
        held.retain(|e| *e != email);
        if hold {
            held.push(email);
        }
    }

    /// [`ErpHandle::set_stock_unannounced`]: the row changed and stored in the feed with a new
    /// seq, but no webhook queued. On hand from 0 to `MAX_QUANTITY`, else refused.
    pub fn set_stock_unannounced(
        &self,
        sku: &str,
        location: &str,
        on_hand: i64,
    ) -> Result<Stock, ErpError> {
        concord_core::limits::key("sku", sku)
            .and_then(|()| concord_core::limits::key("location", location))
            .map_err(|e| ErpError::Invalid(e.to_string()))?;
        if !(0..=concord_core::limits::MAX_QUANTITY).contains(&on_hand) {
            return Err(ErpError::Invalid(format!(
                "on_hand: must be from 0 to {}, got {on_hand}",
                concord_core::limits::MAX_QUANTITY
            )));
        }
        let mut st = lock(&self.state);
        st.stock
            .entry((sku.to_string(), location.to_string()))
            .or_default()
            .on_hand = on_hand;
        let row = st.stock_of(sku, location);
        drop(st);
        let row = row.ok_or_else(|| ErpError::Invalid("stock row vanished".into()))?;
        self.core.emit_unannounced(
            Kind::Stock,
            &format!("{sku}@{location}"),
            serde_json::to_value(&row).unwrap_or(Value::Null),
        );
        Ok(row)
    }

    /// Set the `default` list price (USD) of a SKU.
    pub fn set_list_price(&self, sku: &str, amount_minor: i64) -> Result<(), ErpError> {
        let p =
            json!({"sku": sku, "list": "default", "currency": "USD", "amount_minor": amount_minor});
        self.put_price(None, p).map(|_| ())
    }

    /// `SKU-0001..SKU-<n>` (named, priced 1000 + i) with `qty` on hand at each location
    /// ([`ErpHandle::seed`], `POST /_control/seed`).
    pub fn seed<L: AsRef<str>>(
        &self,
        n_skus: usize,
        locations: &[L],
        qty: i64,
    ) -> Result<(), ErpError> {
        for i in 1..=n_skus {
            let sku = format!("SKU-{i:04}");
            self.put_product(None, json!({"sku": sku, "name": format!("Product {i:04}")}))?;
            self.set_list_price(&sku, 1000 + i as i64)?;
            for loc in locations {
                self.change_stock(&sku, loc.as_ref(), |row| row.on_hand = qty.max(0))?;
            }
        }
        Ok(())
    }

    pub fn schedule_ship(&self, order_id: &str) {
        let held = self.order(order_id).is_some_and(|o| {
            self.opts
                .hold_for
                .iter()
                .any(|e| e.trim().eq_ignore_ascii_case(&o.email))
        });
        if held {
            return;
        }
        if let Some((after, tx)) = &self.auto_ship {
            let _ = tx.send((tokio::time::Instant::now() + *after, order_id.to_string()));
        }
    }
}

async fn auto_ship(
    inner: Arc<ErpInner>,
    mut rx: mpsc::UnboundedReceiver<(tokio::time::Instant, String)>,
) {
    while let Some((due, id)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        // An order cancelled or shipped by hand meanwhile is simply skipped.
        let _ = inner.ship(&id);
    }
}

/// A cloneable handle on a running [`ErpSim`].
#[derive(Clone)]
pub struct ErpHandle {
    inner: Arc<ErpInner>,
}

impl ErpHandle {
    core_handle_methods!();

    /// Create or replace a product (canonical JSON).
    pub fn upsert_product(&self, product: Value) -> Result<(), ErpError> {
        self.inner.put_product(None, product).map(|_| ())
    }

    /// Set the `default` list price (USD) of a SKU.
    pub fn set_price(&self, sku: &str, amount_minor: i64) -> Result<(), ErpError> {
        self.inner.set_list_price(sku, amount_minor)
    }

    /// Create or replace a price of any list (canonical price JSON: tiers, customer group or
    /// customer scope, validity dates).
    pub fn upsert_price(&self, price: Value) -> Result<(), ErpError> {
        self.inner.put_price(None, price).map(|_| ())
    }

    /// Put a customer (by e-mail) on credit hold, or lift it.
    pub fn set_credit_hold(&self, email: &str, hold: bool) {
        self.inner.set_credit_hold(email, hold);
    }

    /// Set on-hand at a location (creating the row).
    pub fn set_stock(&self, sku: &str, location: &str, on_hand: i64) -> Result<(), ErpError> {
        self.inner
            .change_stock(sku, location, |row| row.on_hand = on_hand.max(0))
    }

    /// Add `delta` to on-hand (clamped at 0), like a goods receipt or a count correction; a
    /// result above `concord_core::limits::MAX_QUANTITY` is refused and changes nothing.
    pub fn adjust_stock(&self, sku: &str, location: &str, delta: i64) -> Result<(), ErpError> {
        self.inner.adjust_stock(sku, location, delta).map(|_| ())
    }

    /// Set on-hand at a location with no change event (a lost webhook, an import behind the
    /// hub's back): the snapshot and a changes poll show it, no webhook is sent. Drift tests;
    /// `POST /_control/stock/{sku}/{location}/unannounced`.
    pub fn set_stock_unannounced(
        &self,
        sku: &str,
        location: &str,
        on_hand: i64,
    ) -> Result<(), ErpError> {
        self.inner
            .set_stock_unannounced(sku, location, on_hand)
            .map(|_| ())
    }

    pub fn stock(&self, sku: &str, location: &str) -> Option<Stock> {
        lock(&self.inner.state).stock_of(sku, location)
    }

    /// Ship everything still open on an order; returns the canonical shipment.
    pub fn ship(&self, order_id: &str) -> Result<Value, ErpError> {
        self.inner.ship(order_id)
    }

    /// Ship some lines of an order (split shipments).
    pub fn ship_partial(&self, order_id: &str, lines: &[(&str, i64)]) -> Result<Value, ErpError> {
        let lines: Vec<(String, i64)> = lines.iter().map(|(s, q)| (s.to_string(), *q)).collect();
        self.inner.ship_lines(order_id, &lines, None, None)
    }

    /// Ship some lines of an order with this carrier and tracking number (one of several
    /// shipments of a split order); returns the canonical shipment.
    pub fn ship_with(
        &self,
        order_id: &str,
        lines: &[(&str, i64)],
        carrier: &str,
        tracking_number: &str,
    ) -> Result<Value, ErpError> {
        let lines: Vec<(String, i64)> = lines.iter().map(|(s, q)| (s.to_string(), *q)).collect();
        self.inner
            .ship_lines(order_id, &lines, Some(carrier), Some(tracking_number))
    }

    /// The live sales order of an order reference or canonical key (`web/1001`): after a
    /// cancel-and-replace, the replacement.
    pub fn order_by_reference(&self, reference: &str) -> Option<SalesOrder> {
        lock(&self.inner.state).live_order(reference).cloned()
    }

    /// Invoice a sales order (idempotent); returns the invoice.
    pub fn invoice(&self, order_id: &str) -> Result<ErpInvoice, ErpError> {
        self.inner.invoice(order_id)
    }

    /// Book a payment received at the ERP against invoice `number` (default: what is open).
    pub fn pay_invoice(&self, number: &str, amount_minor: Option<i64>) -> Result<Value, ErpError> {
        self.inner
            .pay_invoice(number, amount_minor, Some("bank_transfer"))
    }

    /// Invoices (of one order key or sales order id, or all).
    pub fn invoices(&self, order: Option<&str>) -> Vec<ErpInvoice> {
        self.inner.invoices_of(order)
    }

    /// A payment recorded at the ERP, by payment id (canonical).
    pub fn payment(&self, id: &str) -> Option<Value> {
        self.inner.payment(id)
    }

    /// Credit notes (of one order key or sales order id, or all).
    pub fn credit_notes(&self, order: Option<&str>) -> Vec<CreditNote> {
        self.inner.credit_notes_of(order)
    }

    /// Customer returns (of one order key or sales order id, or all).
    pub fn returns(&self, order: Option<&str>) -> Vec<CustomerReturn> {
        self.inner.returns_of(order)
    }

    /// Receive a customer return: its units go back on hand (and into the stock feed).
    pub fn receive_return(&self, return_id: &str) -> Result<CustomerReturn, ErpError> {
        self.inner.receive_return(return_id)
    }

    /// An order entered directly in the ERP by a sales rep (reference `rep/<n>`, lines from the
    /// default location): it commits stock like any order, whatever the hub promised.
    pub fn rep_order(&self, email: &str, lines: &[(&str, i64)]) -> Result<SalesOrder, ErpError> {
        let lines: Vec<(String, i64)> = lines.iter().map(|(s, q)| (s.to_string(), *q)).collect();
        self.inner.rep_order(email, &lines)
    }

    /// Cancel an open order (releases committed stock).
    pub fn cancel(&self, order_id: &str) -> Result<SalesOrder, ErpError> {
        self.inner.cancel(order_id)
    }

    /// One sales order by id (`SO-n`).
    pub fn order(&self, order_id: &str) -> Option<SalesOrder> {
        self.inner.order(order_id)
    }

    pub fn sales_orders(&self) -> Vec<SalesOrder> {
        lock(&self.inner.state).orders.values().cloned().collect()
    }

    /// Customers as `{"id": "C-n", ..canonical}`.
    pub fn customers(&self) -> Vec<Value> {
        lock(&self.inner.state).customers.find(None)
    }

    /// Canonical shipments, oldest first.
    pub fn shipments(&self) -> Vec<Value> {
        lock(&self.inner.state).shipments.clone()
    }

    /// Create `SKU-0001..SKU-<n>` (named, priced 1000 + i) with `qty` on hand at each location.
    pub fn seed(&self, n_skus: usize, locations: &[&str], qty: i64) -> Result<(), ErpError> {
        self.inner.seed(n_skus, locations, qty)
    }
}

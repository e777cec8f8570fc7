//! `ShopSim`: an in-memory storefront (a sales channel) served over HTTP, for the demo, dry runs
//! and fault tests. It has products, inventory per (sku, location) as `available`, customers and
//! orders with fulfillments, invoices, payments and refunds; its checkout
//! ([`ShopHandle::place_order`]) refuses to oversell; orders are edited, cancelled, paid and
//! refunded in the store (`lifecycle`).
//!
//! # HTTP API (the contract `SandboxShopConnector` follows)
//! All bodies are JSON; records are canonical (`concord_core::model`); errors are `{"error"}`.
//! - `POST /api/inventory/set` `{"items":[{"sku","location","available"}]}` → 200
//!   `{"results":[{"index":i,"status":"ok","sku","location","available"} |
//!   {"index":i,"status":"error","code":422,"error":"items[i].available: ..."}]}` — one result per
//!   item, in order; an unknown sku is created; a bad item fails alone. Malformed body → 400.
//! - `GET /api/inventory/{sku}` → `{"sku","available":total,"levels":[{"location","available"}]}`
//!   | 404.
//! - `GET|PUT /api/products/{sku}` (canonical product; `attributes.price_minor` sets the price
//!   checkouts use when the `default` price list has none, else 1000).
//! - `GET|PUT /api/prices/{list}/{sku}` (canonical price: list prices per variant with tiers,
//!   customer-group and customer-specific lists). The store has no validity dates: a price with
//!   `valid_from` or `valid_to` is refused with 422 ("cannot represent"). Checkouts use the
//!   `default` list's base price of the SKU when there is one.
//! - `GET /api/customers?email=E` → `{"customers":[{"id":"cus_n",..canonical}]}`;
//!   `POST /api/customers` idempotent on e-mail (existing → 200 unchanged, new → 201);
//!   `GET|PUT /api/customers/{id}`.
//! - `GET /api/orders?number=N` → `{"orders":[order]}`; `GET /api/orders/{id}` → order | 404;
//!   an order is `{"id":"ord_n","number","status","customer","lines","fulfillments","invoices",
//!   "payments","refunds","erp_number","erp_status","record"}`.
//! - `POST /api/orders/{id}/fulfillments` `{"shipment_id","carrier","tracking_number","lines":
//!   [{"sku","quantity"}],"address"}` (`address` optional, canonical: where the parcel goes) → 201 `{"fulfillment","order"}`; idempotent on `shipment_id` (200 with
//!   the existing one); several per order (split shipments); more than ordered → 422; cancelled
//!   order → 409. The order becomes `partially_shipped` or `shipped` by quantities.
//! - `POST /api/orders/{id}/cancel` → order (restocks; idempotent; fulfilled → 409).
//! - What the hub tells the store about an order, recorded on it and not re-emitted:
//!   `POST /api/orders/{id}/invoices` (canonical invoice, upsert by number),
//!   `POST /api/orders/{id}/payments` (canonical payment, upsert by id),
//!   `POST /api/orders/{id}/refunds` (canonical refund, by id) → 201 new / 200 known, 422 when
//!   the record names another order; `PUT /api/orders/{id}/erp` `{"erp_number","status"}`.
//! - Control calls — the merchant or the customer acting in the store (an edit, a cancellation,
//!   a capture, a refund: each emitted in the feed), faults and outages — are listed with their
//!   bodies and effects in the crate docs (`# Control calls`); never faulted, not counted as
//!   writes.
//! - `POST /api/checkout` `{"email","name","lines":[{"sku","quantity"}]}` → 201 order | 409 out of
//!   stock | 503 hub unavailable (the same checkout as [`ShopHandle::checkout`]: through the
//!   hub's stock pool when `ShopOptions::hub` is set, else from the store's own inventory).
//! - Feed and snapshot (the wire contract: `concord_connectors::sandbox::protocol`) for product,
//!   stock, price, customer, order, payment, refund; ids: sku, `sku@location`, `list:sku`,
//!   `cus_n`, `ord_n`, `pay_n`, `re_n`. Stock records are
//!   `{"sku","location","on_hand":available,"committed":0}`.
//!
//! Must never: reach any other system than the webhook receiver and, when checking out through
//! it ([`HubCheckout`]), the hub's `/v1/reservations`; or persist anything.

mod api;
mod checkout;
mod hub;
mod lifecycle;
mod state;

pub use lifecycle::{OrderEdit, RefundRequest};
pub use state::{Fulfillment, PlacedOrder, ShopError, ShopOrder, ShopOrderStatus};

use super::core::{core_handle_methods, lock, Core, WebhookConfig};
use super::SimError;
use concord_connectors::sandbox::protocol::SHOP_KINDS;
use concord_core::Kind;
use serde_json::Value;
use state::ShopState;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;

/// How to start a [`ShopSim`].
#[derive(Debug, Clone)]
pub struct ShopOptions {
    /// Default `127.0.0.1:0` (any free port).
    pub bind: SocketAddr,
    /// The channel name put in orders (`channel`), default `web`.
    pub name: String,
    pub webhook_url: Option<String>,
    /// HMAC secret; `None` = webhooks are sent unsigned.
    pub webhook_secret: Option<String>,
    /// Kinds announced by webhook; `None` = all.
    pub webhook_kinds: Option<Vec<Kind>>,
    /// Most events per webhook POST (default 100).
    pub webhook_batch: usize,
    /// Check out through the hub's stock pool ([`ShopHandle::checkout`]); `None` = the store
    /// sells from its own inventory copy.
    pub hub: Option<HubCheckout>,
}

/// Where the storefront reserves stock at checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubCheckout {
    /// The hub's HTTP address, `http://host:port`.
    pub base_url: String,
    /// The pool channel this store sells as (`[inventory.channels.NAME]`), normally its
    /// endpoint name.
    pub channel: String,
    /// The hub's storefront key for this channel (`[[commerce.keys]]`), sent as
    /// `Authorization: Bearer KEY`; `None` when the hub's `/v1` is open.
    pub key: Option<String>,
}

impl Default for ShopOptions {
    fn default() -> Self {
        ShopOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            name: "web".to_string(),
            webhook_url: None,
            webhook_secret: None,
            webhook_kinds: None,
            webhook_batch: 100,
            hub: None,
        }
    }
}

/// The storefront emulator.
pub struct ShopSim;

impl ShopSim {
    /// Bind, start serving and return the handle.
    pub async fn start(opts: ShopOptions) -> Result<ShopHandle, SimError> {
        let webhook = opts.webhook_url.clone().map(|url| WebhookConfig {
            url,
            secret: opts.webhook_secret.clone(),
            kinds: opts.webhook_kinds.clone(),
            batch: opts.webhook_batch,
        });
        let (core, listener) = Core::bind(opts.bind, SHOP_KINDS, webhook).await?;
        let inner = Arc::new(ShopInner {
            core: core.clone(),
            state: Mutex::new(ShopState::default()),
            opts,
            watchers: Mutex::new(Vec::new()),
            http: reqwest::Client::new(),
        });
        core.serve(listener, api::router(inner.clone())).await;
        Ok(ShopHandle { inner })
    }
}

pub(crate) struct ShopInner {
    pub core: Arc<Core>,
    pub state: Mutex<ShopState>,
    pub opts: ShopOptions,
    /// Receivers of [`InventorySet`] (see [`ShopHandle::watch_inventory`]).
    pub watchers: Mutex<Vec<mpsc::UnboundedSender<InventorySet>>>,
    /// Client for the hub (checkout through the hub).
    pub http: reqwest::Client,
}

/// One inventory level set at the storefront (through `POST /api/inventory/set` or
/// [`ShopHandle::set_inventory`]), as told to a watcher.
#[derive(Debug, Clone, PartialEq)]
pub struct InventorySet {
    pub sku: String,
    pub location: String,
    pub available: i64,
    /// When the level was stored (taken under the state lock, so watchers see writes in order).
    pub at: Instant,
}

/// A cloneable handle on a running [`ShopSim`].
#[derive(Clone)]
pub struct ShopHandle {
    inner: Arc<ShopInner>,
}

impl ShopHandle {
    core_handle_methods!();

    /// The channel name used in orders.
    pub fn name(&self) -> &str {
        &self.inner.opts.name
    }

    /// The price of `sku` on `list`, as last written.
    pub fn price(&self, list: &str, sku: &str) -> Option<Value> {
        self.inner
            .core
            .record(Kind::Price, &format!("{list}:{sku}"))
    }

    /// A checkout: all lines or nothing; refuses when a line's total available is short.
    pub fn place_order(
        &self,
        email: &str,
        name: &str,
        lines: &[(&str, i64)],
    ) -> Result<PlacedOrder, ShopError> {
        let lines: Vec<(String, i64)> = lines.iter().map(|(s, q)| (s.to_string(), *q)).collect();
        self.inner.place_order(email, Some(name), &lines)
    }

    /// The checkout `POST /api/checkout` runs: through the hub's stock pool when
    /// [`ShopOptions::hub`] is set (see the `hub` module: reserve, commit, place; a 409 from the
    /// hub is [`ShopError::OutOfStock`]), else exactly [`ShopHandle::place_order`].
    pub async fn checkout(
        &self,
        email: &str,
        name: &str,
        lines: &[(&str, i64)],
    ) -> Result<PlacedOrder, ShopError> {
        let lines: Vec<(String, i64)> = lines.iter().map(|(s, q)| (s.to_string(), *q)).collect();
        self.inner.checkout(email, Some(name), &lines).await
    }

    /// Create or replace a product (canonical JSON).
    pub fn upsert_product(&self, product: Value) -> Result<(), ShopError> {
        self.inner.put_product(None, product).map(|_| ())
    }

    /// Delete a product in the store's admin (no event, no webhook): it leaves the listing.
    /// Returns whether it was there. Drift tests.
    pub fn delete_product(&self, sku: &str) -> bool {
        self.inner.core.forget(Kind::Product, sku)
    }

    /// Set what is available at a location (creating the row).
    pub fn set_inventory(
        &self,
        sku: &str,
        location: &str,
        available: i64,
    ) -> Result<(), ShopError> {
        self.inner.set_available(sku, location, available)
    }

    /// Every inventory level set from now on, in the order they were stored, each stamped with
    /// the moment it was stored: lets benchmarks and tests time arrivals without polling. The
    /// channel is unbounded; drop the receiver to stop watching. Checkouts and cancellations,
    /// which move stock without a level being set, are not reported.
    pub fn watch_inventory(&self) -> mpsc::UnboundedReceiver<InventorySet> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.inner.watchers).push(tx);
        rx
    }

    /// Available per location.
    pub fn inventory(&self, sku: &str) -> BTreeMap<String, i64> {
        lock(&self.inner.state).levels(sku)
    }

    pub fn orders(&self) -> Vec<ShopOrder> {
        lock(&self.inner.state).orders.values().cloned().collect()
    }

    pub fn fulfillments(&self, order_id: &str) -> Vec<Fulfillment> {
        lock(&self.inner.state)
            .orders
            .get(order_id)
            .map(|o| o.fulfillments.clone())
            .unwrap_or_default()
    }

    /// Customers as `{"id": "cus_n", ..canonical}`.
    pub fn customers(&self) -> Vec<Value> {
        self.inner.find_customers(None)
    }

    /// One order by id (`ord_n`).
    pub fn order(&self, order_id: &str) -> Option<ShopOrder> {
        self.inner.order(order_id)
    }

    /// The merchant edits a placed order (emitted as the order's update); 409-style
    /// [`ShopError::Conflict`] once fulfilled or cancelled.
    pub fn edit_order(&self, order_id: &str, edit: OrderEdit) -> Result<ShopOrder, ShopError> {
        self.inner.edit_order(order_id, edit)
    }

    /// The customer cancels (emitted as the order, `cancelled`); refused once fulfilled.
    pub fn customer_cancel(&self, order_id: &str) -> Result<ShopOrder, ShopError> {
        self.inner.cancel_order(order_id)
    }

    /// Capture a payment (default: what is not captured yet); emitted as payment `pay_n`.
    pub fn capture(&self, order_id: &str, amount_minor: Option<i64>) -> Result<Value, ShopError> {
        self.inner.capture(order_id, amount_minor, None)
    }

    /// Refund at the store (by lines, by amount or in full); emitted as refund `re_n`.
    pub fn refund(&self, order_id: &str, req: RefundRequest) -> Result<Value, ShopError> {
        self.inner.refund(order_id, req)
    }
}

//! The `vendure` connector: a real Vendure (3.x) headless commerce server as a sales channel,
//! over its GraphQL Admin API.
//!
//! API reference followed: Vendure 3.7 — Admin API reference (docs.vendure.io/reference/
//! graphql-api/admin: `login`, `productVariants`, `createProduct`, `createProductVariants`,
//! `updateProductVariants` with `stockLevels`/`prices`, `stockLocations`, `customers`,
//! `createCustomer`, `createCustomerAddress`, `updateCustomer`, `orders` with
//! `OrderFilterParameter`, `addFulfillmentToOrder`, `transitionFulfillmentToState`,
//! `cancelOrder`), "Stock control" (docs.vendure.io/guides/core-concepts/stock-control: stock per
//! stock location, `stockOnHand`/`stockAllocated`, allocation at payment and release at
//! fulfillment), "Order workflow" (default order process states) and "Money & currency" (integer
//! minor units). The facts this was built from, with working calls, are in `scripts/vendure/`
//! and the README's "Connect Tryton and Vendure".
//!
//! What it maps (canonical shapes of `concord_core::model`):
//! - **stock** (written): per SKU and stock location, `stockOnHand = available + stockAllocated`
//!   so Vendure's saleable figure equals Concord's (read-modify-write, verified by reading back
//!   and rewritten when an allocation moved in between; see [`write`] for why Vendure offers no
//!   compare-and-set). Concord location names map to Vendure stock locations by
//!   `options.stock_locations` (id or name), else by name. Batches of up to 50 ops are one
//!   `updateProductVariants` call.
//! - **product** (written): a product with one variant per SKU; found by SKU and updated, else
//!   created (idempotent: an orphan product from a crash is found by its slug).
//! - **price** (written): the variant's price in the channel's currency, or a per-currency price.
//! - **customer** (read, written): correlated by e-mail.
//! - **order** (read by polling `updatedAt`, see [`read`]; `cancel` written): code = number,
//!   lines by SKU with `unitPriceWithTax`, customer, addresses, `totalWithTax`, status from the
//!   order state; **payment** records from the order's payments.
//! - **shipment** (written): a fulfillment with carrier and tracking code, moved to `Shipped`
//!   (`Delivered` for delivered shipments); idempotent per shipment id.
//! - **refund** (read with the orders; written): the refunds on an order's payments
//!   (`total`, `reason`, lines by SKU); written with `refundOrder` (`amount`, lines) on the
//!   order's settled payment, idempotent by a `(concord refund <id>)` marker in the reason (see
//!   [`write`]). Reading them relies on the order's `updatedAt` moving, which Vendure's
//!   `refundOrder` does not do by itself: see [`read`] for the refund process that does.
//!   Vendure refunds never restock (`restock` is read as false and ignored on write).
//!
//! - **stock** (listed): every variant's levels, `available = stockOnHand − stockAllocated` per
//!   location under its Concord name (`read/stock.rs`): what reconciliation compares with the
//!   hub's available-to-sell and heals back.
//!
//! Not done (yet): product snapshots for migrations from Vendure.
//!
//! Must never: sleep or retry (the engine does), create a second variant for one SKU or a
//! second fulfillment for one shipment, or validate records (the engine does).

pub mod client;
pub mod config;
pub mod mapping;
mod read;
mod write;

use async_trait::async_trait;
use client::Gql;
use concord_core::Kind;
use concord_engine::connector::{
    BuildError, Capabilities, Connector, DeliveryError, EndpointSpec, KindCaps, Page,
    RateLimitProfile, ReadModes, ReadRequest, WriteModes, WriteOp, WriteOutcome,
};
use config::Options;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Largest stock batch (one `updateProductVariants` call).
pub const STOCK_BATCH: usize = 50;

/// Awaited by a stock write between reading the allocations and writing the on-hand figures:
/// a test hook (tests change allocations there to race the write on purpose); unset in
/// production.
pub type StockWriteHook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The slot a [`StockWriteHook`] lives in (printed as whether one is set).
#[derive(Default)]
struct HookSlot(std::sync::Mutex<Option<StockWriteHook>>);

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.0.lock().map(|h| h.is_some()).unwrap_or(false);
        write!(f, "{}", if set { "set" } else { "unset" })
    }
}

/// A Vendure endpoint.
#[derive(Debug)]
pub struct VendureConnector {
    gql: Gql,
    opts: Options,
    /// The endpoint's name (the channel part of canonical order keys).
    endpoint: String,
    /// Vendure stock locations: name → id (loaded on first use, reloaded when one is unknown).
    locations: Mutex<Option<BTreeMap<String, String>>>,
    stock_hook: HookSlot,
    /// The most rows one list query asks for (see [`read`]); Vendure's `adminListQueryLimit`.
    list_limit: usize,
}

impl VendureConnector {
    /// No I/O: checks the options and builds the client.
    pub fn new(spec: &EndpointSpec) -> Result<VendureConnector, BuildError> {
        let opts = Options::parse(&spec.options)?;
        let gql = Gql::new(
            &spec.url,
            &opts.admin_api_path,
            &opts.user,
            &opts.password,
            opts.channel_token.as_deref(),
            spec.timeout,
            spec.max_response_bytes,
        )
        .map_err(|e| BuildError {
            path: "url".into(),
            message: e.to_string(),
        })?;
        Ok(VendureConnector {
            gql,
            list_limit: opts.list_limit,
            opts,
            endpoint: spec.name.clone(),
            locations: Mutex::new(None),
            stock_hook: HookSlot::default(),
        })
    }

    /// The Admin API client (tests use it to drive Vendure directly and count calls).
    pub fn gql(&self) -> &Gql {
        &self.gql
    }

    /// Tests only: run `hook` inside every stock write, between reading the allocations and
    /// writing the on-hand figures (to change allocations there, as a checkout racing the
    /// write would). `None` removes it.
    #[doc(hidden)]
    pub fn set_stock_write_hook(&self, hook: Option<StockWriteHook>) {
        if let Ok(mut slot) = self.stock_hook.0.lock() {
            *slot = hook;
        }
    }

    /// The hook to await, if a test set one (cloned out: the lock is never held across it).
    fn stock_hook(&self) -> Option<StockWriteHook> {
        self.stock_hook.0.lock().ok().and_then(|h| h.clone())
    }

    /// The Vendure stock location id for a Concord location name.
    async fn stock_location(&self, concord: &str) -> Result<String, DeliveryError> {
        let target = self
            .opts
            .stock_locations
            .get(concord)
            .cloned()
            .unwrap_or_else(|| concord.to_string());
        for refresh in [false, true] {
            let mut guard = self.locations.lock().await;
            if guard.is_none() || refresh {
                let data = self
                    .gql
                    .query(
                        "{ stockLocations(options:{take:1000}){ items { id name } } }",
                        json!({}),
                    )
                    .await?;
                let mut m = BTreeMap::new();
                for l in data
                    .pointer("/stockLocations/items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let (Some(id), Some(name)) = (
                        l.get("id").and_then(Value::as_str),
                        l.get("name").and_then(Value::as_str),
                    ) {
                        m.insert(name.to_string(), id.to_string());
                    }
                }
                *guard = Some(m);
            }
            if let Some(m) = guard.as_ref() {
                if let Some(id) = m.get(&target) {
                    return Ok(id.clone());
                }
                if m.values().any(|id| *id == target) {
                    return Ok(target);
                }
            }
        }
        Err(DeliveryError::Permanent {
            reason: format!(
                "no Vendure stock location `{target}` for Concord location `{concord}` \
                 (map it in options.stock_locations)"
            ),
        })
    }
}

fn caps() -> Capabilities {
    let mut caps = Capabilities {
        rate_limit: RateLimitProfile {
            // Self-hosted, capacity unknown: let the engine find it.
            adaptive: true,
            ..RateLimitProfile::default()
        },
        ..Capabilities::default()
    };
    let polled = ReadModes {
        webhook: false,
        changes: true,
        snapshot: false,
    };
    let write = |max_batch| WriteModes {
        upsert: true,
        max_batch,
        amend: false,
    };
    caps.kinds.insert(
        Kind::Stock,
        KindCaps {
            // A full listing only (reconciliation, dry runs); Vendure has no stock change feed.
            read: ReadModes {
                webhook: false,
                changes: false,
                snapshot: true,
            },
            write: write(STOCK_BATCH),
        },
    );
    for kind in [Kind::Product, Kind::Price, Kind::Shipment] {
        caps.kinds.insert(
            kind,
            KindCaps {
                read: ReadModes::default(),
                write: write(1),
            },
        );
    }
    caps.kinds.insert(
        Kind::Customer,
        KindCaps {
            read: polled,
            write: write(1),
        },
    );
    caps.kinds.insert(
        Kind::Order,
        KindCaps {
            read: polled,
            write: WriteModes {
                upsert: false,
                max_batch: 1,
                amend: false,
            },
        },
    );
    caps.kinds.insert(
        Kind::Refund,
        KindCaps {
            read: polled,
            write: write(1),
        },
    );
    caps.kinds.insert(
        Kind::Payment,
        KindCaps {
            read: polled,
            write: WriteModes::default(),
        },
    );
    caps
}

#[async_trait]
impl Connector for VendureConnector {
    fn connector_type(&self) -> &'static str {
        "vendure"
    }

    fn capabilities(&self) -> Capabilities {
        caps()
    }

    async fn read_changes(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        self.changes(req).await
    }

    async fn read_snapshot(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        match req.kind {
            Kind::Stock => self.stock_snapshot(req).await,
            other => Err(DeliveryError::Permanent {
                reason: format!("the vendure connector does not list {other} records"),
            }),
        }
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Vec<WriteOutcome> {
        self.write_all(&ops).await
    }
}

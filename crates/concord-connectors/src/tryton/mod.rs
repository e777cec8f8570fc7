//! The `tryton` connector: a real Tryton ERP (8.x) as the system of record, over JSON-RPC.
//!
//! API reference followed: Tryton 8.2 JSON-RPC (`POST <url>/<database>/rpc/`, session login with
//! `common.db.login`, model methods `model.<name>.<method>` with the context last; see
//! [`client`]) and the models of the `product`, `stock`, `party`, `sale`, `sale_amendment`,
//! `account_invoice` and `product_price_list` modules (docs.tryton.org/projects/modules-*/en/8.2). The facts this was
//! built from, with working calls, are in `scripts/tryton/` and the README's "Connect Tryton".
//!
//! What it maps (canonical shapes of `concord_core::model`):
//! - **stock** per warehouse: `on_hand` = product `quantity` with `locations = [warehouse]`
//!   (done moves, children included); `committed` = open (draft/assigned) moves from the warehouse
//!   to a customer location — the sales' outgoing moves; `incoming` = open moves from a supplier
//!   location into the warehouse, grouped by `planned_date` (the ETA). Changes: stock moves
//!   changed since the cursor → the affected products → their figures in every configured
//!   warehouse. External id `SKU@WAREHOUSE_CODE`.
//! - **product** (code = SKU) and **price** (list price = `list_price_used`, list `default`,
//!   company currency) from `product.template` changes (names and prices live on the template).
//! - **price lists** (`product_price_list`; a customer's list from `sale_price_list`): one price
//!   per (list, SKU), `list` = the list's name, customer-specific when exactly one party with an
//!   e-mail uses the list, else a `customer_group` list named after it (customers carry `group`
//!   = their list's name); line quantities are tiers; only safe formula shapes are evaluated,
//!   others are dead-lettered naming the formula. See [`prices`].
//! - **customer**: parties with an e-mail contact mechanism (others are not customers for
//!   Concord and are skipped), with their addresses. Written: found by e-mail, else created with
//!   the e-mail, phone and addresses.
//! - **order**: sales read back (`reference` = canonical key `channel/number`; return sales,
//!   whose `origin` is another sale, are not orders); written idempotently (keyed by
//!   `payload.reference` when present — cancel-and-replace's `{key}~n` — else the key; looked up
//!   by `reference` before creating, then quoted/confirmed per `sale_flow`; a draft left by a
//!   crash is moved on, never duplicated, and the order's shipping/billing addresses are found
//!   among the party's or added); `amend` (back to draft and rewritten before processing,
//!   a `sale.amendment` of module `sale_amendment` once processing — an added SKU must take
//!   over a removed line, it cannot add one) and
//!   `cancel` (a processing sale with nothing picked: shipments and draft invoice cancelled and
//!   ignored, Tryton ends it done, read back as `cancelled`). See [`lifecycle`].
//! - **refund** (written only): a credit note (`account.invoice` with negative lines, by lines
//!   at the order's prices or by amount, posted when the credited invoice is), or with
//!   `restock` and lines a return sale (Tryton's "Return Sale": credit note + customer return
//!   shipment, stock back only when received); idempotent by `reference` =
//!   `refund:<order>:<id>`. See [`refund`].
//! - **shipment**: customer shipments (`stock.shipment.out`) linked to a sale, each its own
//!   canonical shipment with its own lines (a sale shipped in two — Tryton makes a second
//!   shipment for what the first did not pick — is two shipments); `order` = the
//!   sale's reference, `tracking_number` = the shipment's `reference` field (the carrier's
//!   tracking reference is typed there; the `stock_package_shipping` module's per-package
//!   tracking numbers are not used because that module pulls carrier integrations this connector
//!   does not need). Shipments of no sale (manual ones) are skipped.
//! - **invoice** (customer invoices, posted/paid) and **payment** (a paid invoice = a captured
//!   payment of its total), `order` from the sale lines they bill. A payment captured on a
//!   channel is written as a payment of the sale's posted invoice through Tryton's Pay wizard
//!   (option `payment_method`), idempotent by the move's description; see [`payment`]. An
//!   invoice paid only by such channel payments is not read back as a payment.
//!
//! Versions: every record read is versioned with the newest `write_date` of the page it came in
//! (the time its figures are "as of"), in the fixed RFC 3339 UTC format of [`mapping`]. An order
//! written here returns as version one microsecond before its first stock move was created, so
//! any stock figure that includes the order has a greater version (the pool's release
//! watermark).
//!
//! Known limits: a deleted draft move, or a contact mechanism or address edited without touching
//! its party, changes nothing Tryton timestamps; the next change of that product/party (or a
//! snapshot) brings it.
//!
//! Must never: sleep or retry (the engine does), create a second sale for one reference, or
//! validate records (bad data goes to the engine, which dead-letters it with the reason).

pub mod changes;
pub mod client;
pub mod config;
pub mod lifecycle;
pub mod mapping;
pub mod payment;
pub mod prices;
mod read;
pub mod refund;
mod write;

use async_trait::async_trait;
use client::Rpc;
use concord_core::Kind;
use concord_engine::connector::{
    BuildError, Capabilities, Connector, DeliveryError, EndpointSpec, KindCaps, Page,
    RateLimitProfile, ReadModes, ReadRequest, WriteModes, WriteOp, WriteOutcome,
};
use config::Options;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tokio::sync::Mutex;

/// The kinds this connector reads.
pub const READ_KINDS: &[Kind] = &[
    Kind::Product,
    Kind::Stock,
    Kind::Customer,
    Kind::Order,
    Kind::Shipment,
    Kind::Invoice,
    Kind::Payment,
    Kind::Price,
];

/// Master data looked up once per connector (and refreshed when a new location shows up).
#[derive(Debug, Clone, Default)]
struct Directory {
    /// Configured warehouses: (id, code), in the configured order (or by id).
    warehouses: Vec<(i64, String)>,
    /// Every location id → the warehouse id it belongs to (walking `parent`), and its type.
    locations: BTreeMap<i64, (Option<i64>, String)>,
    /// The company's currency code.
    currency: String,
}

/// A Tryton ERP endpoint.
#[derive(Debug)]
pub struct TrytonConnector {
    rpc: Rpc,
    opts: Options,
    dir: Mutex<Option<Directory>>,
    /// Whether `product_price_list` and `sale_price_list` are activated (looked up once).
    modules: Mutex<Option<(bool, bool)>>,
}

impl TrytonConnector {
    /// No I/O: checks the options and builds the client.
    pub fn new(spec: &EndpointSpec) -> Result<TrytonConnector, BuildError> {
        let opts = Options::parse(&spec.options)?;
        let rpc = Rpc::new(
            &spec.url,
            &opts.database,
            &opts.user,
            &opts.password,
            spec.timeout,
            spec.max_response_bytes,
        )
        .map_err(|e| BuildError {
            path: "url".into(),
            message: e.to_string(),
        })?;
        Ok(TrytonConnector {
            rpc,
            opts,
            dir: Mutex::new(None),
            modules: Mutex::new(None),
        })
    }

    /// The JSON-RPC client (tests use it to drive Tryton directly).
    pub fn rpc(&self) -> &Rpc {
        &self.rpc
    }

    /// The directory, loaded on first use; `refresh` reloads it (a location was unknown).
    async fn directory(&self, refresh: bool) -> Result<Directory, DeliveryError> {
        let mut guard = self.dir.lock().await;
        if let (Some(d), false) = (guard.as_ref(), refresh) {
            return Ok(d.clone());
        }
        let rows = self
            .rpc
            .search_read(
                "stock.location",
                json!([]),
                None,
                json!([["id", "ASC"]]),
                &["code", "type", "parent"],
            )
            .await?;
        let mut parent = BTreeMap::new();
        let mut kind = BTreeMap::new();
        let mut all_wh = Vec::new();
        for r in &rows {
            let Some(id) = r.get("id").and_then(Value::as_i64) else {
                continue;
            };
            parent.insert(id, r.get("parent").and_then(Value::as_i64));
            let t = r.get("type").and_then(Value::as_str).unwrap_or("");
            kind.insert(id, t.to_string());
            if t == "warehouse" {
                let code = r
                    .get("code")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("warehouse#{id}"));
                all_wh.push((id, code));
            }
        }
        let warehouses = if self.opts.warehouses.is_empty() {
            all_wh
        } else {
            let mut out = Vec::new();
            for code in &self.opts.warehouses {
                let found = all_wh.iter().find(|(_, c)| c == code).ok_or_else(|| {
                    DeliveryError::Permanent {
                        reason: format!(
                            "options.warehouses: Tryton has no warehouse with code `{code}` (it has {})",
                            all_wh.iter().map(|(_, c)| c.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    }
                })?;
                out.push(found.clone());
            }
            out
        };
        let mut locations = BTreeMap::new();
        for (&id, t) in &kind {
            // Walk up to the nearest warehouse (bounded: a cycle cannot hang us).
            let mut at = Some(id);
            let mut wh = None;
            for _ in 0..64 {
                let Some(cur) = at else { break };
                if kind.get(&cur).map(String::as_str) == Some("warehouse") {
                    wh = Some(cur);
                    break;
                }
                at = parent.get(&cur).copied().flatten();
            }
            locations.insert(id, (wh, t.clone()));
        }
        let ctx = self.rpc.context().await?;
        let currency = match ctx.get("company").and_then(Value::as_i64) {
            Some(company) => self
                .rpc
                .read_ctx(
                    "company.company",
                    &[company],
                    &["currency.code"],
                    &json!({}),
                )
                .await?
                .first()
                .and_then(|c| c.pointer("/currency./code"))
                .and_then(Value::as_str)
                .unwrap_or("USD")
                .to_string(),
            None => {
                return Err(DeliveryError::Permanent {
                    reason: format!(
                        "Tryton user `{}` has no current company; set one in its preferences",
                        self.opts.user
                    ),
                })
            }
        };
        let d = Directory {
            warehouses,
            locations,
            currency,
        };
        *guard = Some(d.clone());
        Ok(d)
    }

    /// The company id from the session context (creating company-owned records needs it).
    async fn company(&self) -> Result<i64, DeliveryError> {
        self.rpc
            .context()
            .await?
            .get("company")
            .and_then(Value::as_i64)
            .ok_or_else(|| DeliveryError::Permanent {
                reason: format!("Tryton user `{}` has no current company", self.opts.user),
            })
    }
}

fn caps() -> Capabilities {
    let mut caps = Capabilities {
        rate_limit: RateLimitProfile {
            // Self-hosted, capacity unknown (one SQLite writer, or PostgreSQL): let the engine
            // find it.
            adaptive: true,
            ..RateLimitProfile::default()
        },
        ..Capabilities::default()
    };
    for kind in READ_KINDS {
        let snapshot = matches!(
            kind,
            Kind::Product | Kind::Stock | Kind::Customer | Kind::Price
        );
        let write = if matches!(kind, Kind::Order | Kind::Customer | Kind::Product) {
            WriteModes {
                upsert: true,
                max_batch: 1,
                // Orders: `amend` (lifecycle.rs), through `sale_amendment` once processing.
                amend: *kind == Kind::Order,
            }
        } else {
            WriteModes::default()
        };
        caps.kinds.insert(
            *kind,
            KindCaps {
                read: ReadModes {
                    webhook: false,
                    changes: true,
                    snapshot,
                },
                write,
            },
        );
    }
    // Refunds are written (credit notes and returns, refund.rs), not read; payments are read
    // (paid invoices) and written (a captured channel payment, payment.rs).
    let written = WriteModes {
        upsert: true,
        max_batch: 1,
        amend: false,
    };
    caps.kinds.insert(
        Kind::Refund,
        KindCaps {
            read: ReadModes::default(),
            write: written,
        },
    );
    if let Some(k) = caps.kinds.get_mut(&Kind::Payment) {
        k.write = written;
    }
    caps
}

#[async_trait]
impl Connector for TrytonConnector {
    fn connector_type(&self) -> &'static str {
        "tryton"
    }

    fn capabilities(&self) -> Capabilities {
        caps()
    }

    async fn read_changes(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        self.changes(req).await
    }

    async fn read_snapshot(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        self.snapshot(req).await
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Vec<WriteOutcome> {
        let mut out = Vec::with_capacity(ops.len());
        for op in &ops {
            out.push(
                self.write_one(op)
                    .await
                    .unwrap_or_else(WriteOutcome::Failed),
            );
        }
        out
    }
}

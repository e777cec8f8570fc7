//! `SandboxShopConnector` (`sandbox-shop`): the connector for the sandbox storefront emulator
//! (`concord_sandbox::shop::ShopSim`), following the HTTP API documented there. Stock goes in
//! one bulk `POST /api/inventory/set` per batch (up to 100), with one outcome per op from the
//! per-item results; shipments become fulfillments (idempotent on `shipment_id`, several per order, each
//! with its carrier, tracking number and lines); the ERP's invoices (`upsert`, by number),
//! payment states (`upsert`, by id) and refunds (`create`, by id) are recorded on the order
//! they name (`POST /api/orders/{id}/invoices|payments|refunds`); an order `cancel` cancels the
//! store's order; an order `create`/`upsert`/`update` of an order the store already has (its
//! own order coming back from the ERP) notes the ERP's number and status on it
//! (`PUT /api/orders/{id}/erp`) — the store takes orders only at checkout, so one it does not
//! have, and an `amend` (edits come from the store), are refused; an order found by its number
//! (no xref) is this one only with the same customer e-mail, else a permanent collision
//! ([`crate::identity`]).
//! Read: products, stock, prices, customers, orders (edits and cancellations included), payments
//! captured and refunds made at the store. Prices go to
//! `PUT /api/prices/{list}/{sku}` — list prices with tiers, customer-group and customer lists —
//! except dated lists (`valid_from`/`valid_to`), which the storefront cannot represent: those
//! dead-letter with a "cannot represent" reason (the hub still serves them via `/v1/prices`).
//!
//! Must never: sleep or retry; fail a whole stock batch for one bad item.

use super::protocol::SHOP_KINDS;
use super::{done, id_of, str_field, unsupported, Common};
use crate::identity::{self, FoundOrder, Verdict};
use async_trait::async_trait;
use concord_core::Kind;
use concord_engine::connector::{
    classify_status, BuildError, Capabilities, Captured, Connector, DeliveryError, EndpointSpec,
    KindCaps, Page, RateLimitProfile, ReadModes, ReadRequest, WebhookError, WriteModes, WriteOp,
    WriteOutcome,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Largest stock batch (one `inventory/set` call).
pub const STOCK_BATCH: usize = 100;

/// Talks to a `ShopSim`. Options: `location` (inventory location when a payload names none).
#[derive(Debug, Clone)]
pub struct SandboxShopConnector {
    c: Common,
}

impl SandboxShopConnector {
    pub fn new(spec: &EndpointSpec) -> Result<Self, BuildError> {
        Ok(SandboxShopConnector {
            c: Common::build(spec, "sandbox-shop", SHOP_KINDS)?,
        })
    }

    /// The inventory item for a stock op: `available` when given, else `on_hand − committed`.
    fn stock_item(&self, op: &WriteOp) -> Result<Value, DeliveryError> {
        let p = &op.payload;
        let sku = str_field(p, "sku")?;
        let location = match (str_field(p, "location"), &self.c.location) {
            (Ok(l), _) => l.to_string(),
            (Err(_), Some(l)) => l.clone(),
            (Err(e), None) => return Err(e),
        };
        let num = |f: &str| p.get(f).and_then(Value::as_i64);
        let available = match num("available") {
            Some(a) => a,
            None => {
                num("on_hand").ok_or_else(|| DeliveryError::Permanent {
                    reason: "payload field `on_hand` (or `available`) is required".into(),
                })? - num("committed").unwrap_or(0)
            }
        };
        Ok(json!({"sku": sku, "location": location, "available": available}))
    }

    async fn write_stock(&self, ops: &[WriteOp]) -> Vec<WriteOutcome> {
        let mut out: Vec<Option<WriteOutcome>> = vec![None; ops.len()];
        let mut items = Vec::new();
        let mut sent = Vec::new(); // item index → op index
        for (i, op) in ops.iter().enumerate() {
            if !matches!(
                op.op.as_str(),
                "create" | "upsert" | "update" | "update_only"
            ) {
                out[i] = Some(unsupported("sandbox-shop", op));
                continue;
            }
            let item = match self.stock_item(op) {
                Ok(item) => item,
                Err(e) => {
                    out[i] = Some(WriteOutcome::Failed(e));
                    continue;
                }
            };
            if op.op == "update_only" {
                match self.has_inventory(&item).await {
                    Ok(true) => {}
                    Ok(false) => {
                        out[i] = Some(WriteOutcome::NoMatch);
                        continue;
                    }
                    Err(e) => {
                        out[i] = Some(WriteOutcome::Failed(e));
                        continue;
                    }
                }
            }
            items.push(item);
            sent.push(i);
        }
        if !items.is_empty() {
            let reply = self
                .c
                .api
                .post(&["api", "inventory", "set"], &json!({ "items": items }))
                .await
                .and_then(|r| r.ok());
            match reply {
                Err(e) => {
                    for &i in &sent {
                        out[i] = Some(WriteOutcome::Failed(e.clone()));
                    }
                }
                Ok(body) => {
                    let results = body
                        .get("results")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for (j, &i) in sent.iter().enumerate() {
                        out[i] = Some(item_outcome(results.get(j), &items[j]));
                    }
                }
            }
        }
        out.into_iter()
            .map(|o| {
                o.unwrap_or(WriteOutcome::Failed(DeliveryError::Transient {
                    reason: "no outcome".into(),
                    retry_after: None,
                }))
            })
            .collect()
    }

    async fn has_inventory(&self, item: &Value) -> Result<bool, DeliveryError> {
        let sku = item["sku"].as_str().unwrap_or_default();
        let loc = item["location"].as_str().unwrap_or_default();
        let r = self.c.api.get(&["api", "inventory", sku], &[]).await?;
        if r.status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let body = r.ok()?;
        Ok(body
            .get("levels")
            .and_then(Value::as_array)
            .is_some_and(|l| l.iter().any(|x| x["location"] == loc)))
    }

    /// The shop's order id for a canonical order key (`channel/number`).
    async fn order_id(&self, key: &str, op: &WriteOp) -> Result<String, DeliveryError> {
        if let Some(id) = op.refs.get(&format!("order:{key}")) {
            return Ok(id.clone());
        }
        let number = key.rsplit_once('/').map_or(key, |(_, n)| n);
        let found = self
            .c
            .api
            .get(&["api", "orders"], &[("number", number)])
            .await?
            .ok()?;
        found
            .get("orders")
            .and_then(Value::as_array)
            .and_then(|o| o.first())
            .map(id_of)
            .transpose()?
            .ok_or_else(|| DeliveryError::Permanent {
                reason: format!("no order `{key}` at this storefront"),
            })
    }

    /// The store's order an order op is about: the xref's, else the one with the key's number
    /// — then only when it is this order (the same customer e-mail: a store that restarted its
    /// numbering has another order under the number; [`crate::identity`]), else a permanent
    /// collision naming both.
    async fn own_order_id(&self, op: &WriteOp) -> Result<String, DeliveryError> {
        if let Some(id) = &op.external_id {
            return Ok(id.clone());
        }
        let id = self.order_id(&op.key, op).await?;
        if op.refs.contains_key(&format!("order:{}", op.key)) {
            return Ok(id);
        }
        let order = self.c.api.get(&["api", "orders", &id], &[]).await?.ok()?;
        let email = identity::order_email(&order);
        let found = FoundOrder {
            stamp: None,
            emails: if email.is_empty() {
                vec![]
            } else {
                vec![email]
            },
            lines: Default::default(),
        };
        match identity::judge(&op.key, &op.payload, &found, false) {
            Verdict::Collision(why) => Err(DeliveryError::Permanent {
                reason: format!(
                    "order `{}` collides with the store's order {id} under the same number: \
                     {why}; nothing was written",
                    op.key
                ),
            }),
            _ => Ok(id),
        }
    }

    async fn write_one(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let api = &self.c.api;
        match (op.kind, op.op.as_str()) {
            (Kind::Customer, "create" | "upsert" | "update" | "update_only") => {
                self.c.upsert_customer(op).await
            }
            (Kind::Product, "create" | "upsert" | "update" | "update_only") => {
                let sku = str_field(&op.payload, "sku").unwrap_or(&op.key).to_string();
                if op.op == "update_only" {
                    let r = api.get(&["api", "products", &sku], &[]).await?;
                    if r.status == StatusCode::NOT_FOUND {
                        return Ok(WriteOutcome::NoMatch);
                    }
                    r.ok()?;
                }
                api.put(&["api", "products", &sku], &op.payload)
                    .await?
                    .ok()?;
                Ok(done(sku))
            }
            (Kind::Price, "create" | "upsert" | "update" | "update_only") => {
                let p = &op.payload;
                // The storefront has list prices per variant (with tiers) and customer-group and
                // customer lists, but no validity dates: a dated list cannot be represented.
                for field in ["valid_from", "valid_to"] {
                    if p.get(field).is_some_and(|v| !v.is_null()) {
                        return Err(DeliveryError::Permanent {
                            reason: format!(
                                "cannot represent: sandbox-shop prices have no validity dates \
                                 (`{field}` is set); the hub still serves this list through /v1/prices"
                            ),
                        });
                    }
                }
                let sku = str_field(p, "sku")?.to_string();
                let list = str_field(p, "list").unwrap_or("default").to_string();
                if op.op == "update_only" {
                    let r = api.get(&["api", "prices", &list, &sku], &[]).await?;
                    if r.status == StatusCode::NOT_FOUND {
                        return Ok(WriteOutcome::NoMatch);
                    }
                    r.ok()?;
                }
                api.put(&["api", "prices", &list, &sku], p).await?.ok()?;
                Ok(done(format!("{list}:{sku}")))
            }
            (Kind::Shipment, "create" | "upsert" | "update") => {
                let p = &op.payload;
                // The record's own id, never `op.key` (`{order}:{id}`).
                let shipment_id = str_field(p, "id")?.to_string();
                let order_key = str_field(p, "order")?;
                let order_id = self.order_id(order_key, op).await?;
                let body = json!({"shipment_id": shipment_id, "carrier": p.get("carrier"),
                                  "tracking_number": p.get("tracking_number"),
                                  "lines": p.get("lines"), "address": p.get("address")});
                api.post(&["api", "orders", &order_id, "fulfillments"], &body)
                    .await?
                    .ok()?;
                Ok(done(shipment_id))
            }
            (Kind::Invoice | Kind::Payment | Kind::Refund, op_name)
                if matches!(
                    (op.kind, op_name),
                    (
                        Kind::Invoice | Kind::Payment,
                        "create" | "upsert" | "update"
                    ) | (Kind::Refund, "create" | "upsert")
                ) =>
            {
                let p = &op.payload;
                let order_key = str_field(p, "order")?;
                let order_id = self.order_id(order_key, op).await?;
                let (path, id_field) = match op.kind {
                    Kind::Invoice => ("invoices", "number"),
                    Kind::Payment => ("payments", "id"),
                    _ => ("refunds", "id"),
                };
                api.post(&["api", "orders", &order_id, path], p)
                    .await?
                    .ok()?;
                Ok(done(str_field(p, id_field)?))
            }
            (Kind::Order, "create" | "upsert" | "update")
                if op.payload.get("status").and_then(Value::as_str) != Some("cancelled") =>
            {
                // An order the store does not have is refused by `order_id` (permanent).
                let id = self.own_order_id(op).await?;
                let p = &op.payload;
                let body = json!({"erp_number": p.get("erp_number"), "status": p.get("status")});
                api.put(&["api", "orders", &id, "erp"], &body).await?.ok()?;
                Ok(done(id))
            }
            (Kind::Order, "cancel" | "create" | "upsert" | "update") => {
                let id = self.own_order_id(op).await?;
                api.post(&["api", "orders", &id, "cancel"], &Value::Null)
                    .await?
                    .ok()?;
                Ok(done(id))
            }
            _ => Ok(unsupported("sandbox-shop", op)),
        }
    }
}

/// One `inventory/set` result → the op's outcome.
fn item_outcome(result: Option<&Value>, item: &Value) -> WriteOutcome {
    let Some(r) = result else {
        return WriteOutcome::Failed(DeliveryError::Transient {
            reason: "the storefront returned no result for this item".into(),
            retry_after: None,
        });
    };
    if r.get("status").and_then(Value::as_str) == Some("ok") {
        return done(format!(
            "{}@{}",
            item["sku"].as_str().unwrap_or_default(),
            item["location"].as_str().unwrap_or_default()
        ));
    }
    let code = r
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(422);
    let msg = r
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("item refused");
    WriteOutcome::Failed(classify_status(code, None, msg))
}

fn shop_caps() -> Capabilities {
    let read = ReadModes {
        webhook: true,
        changes: true,
        snapshot: true,
    };
    let write = |max_batch| WriteModes {
        upsert: true,
        max_batch,
        amend: false,
    };
    let mut caps = Capabilities {
        rate_limit: RateLimitProfile {
            adaptive: true,
            ..RateLimitProfile::default()
        },
        ..Capabilities::default()
    };
    for kind in SHOP_KINDS {
        let w = if *kind == Kind::Stock {
            write(STOCK_BATCH)
        } else {
            write(1)
        };
        caps.kinds.insert(*kind, KindCaps { read, write: w });
    }
    // Written by the hub only (the ERP's shipments and invoices): not in the store's feed.
    for kind in [Kind::Shipment, Kind::Invoice] {
        caps.kinds.insert(
            kind,
            KindCaps {
                read: ReadModes::default(),
                write: write(1),
            },
        );
    }
    caps
}

#[async_trait]
impl Connector for SandboxShopConnector {
    fn connector_type(&self) -> &'static str {
        "sandbox-shop"
    }

    fn capabilities(&self) -> Capabilities {
        shop_caps()
    }

    async fn parse_webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Vec<Captured>, WebhookError> {
        self.c.parse_webhook(headers, body)
    }

    async fn read_changes(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        self.c.read_changes(req).await
    }

    async fn read_snapshot(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        self.c.read_snapshot(req).await
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Vec<WriteOutcome> {
        if ops.iter().all(|o| o.kind == Kind::Stock) {
            return self.write_stock(&ops).await;
        }
        let mut out = Vec::with_capacity(ops.len());
        for op in &ops {
            let o = if op.kind == Kind::Stock {
                self.write_stock(std::slice::from_ref(op))
                    .await
                    .pop()
                    .unwrap_or(WriteOutcome::NoMatch)
            } else {
                self.write_one(op)
                    .await
                    .unwrap_or_else(WriteOutcome::Failed)
            };
            out.push(o);
        }
        out
    }
}

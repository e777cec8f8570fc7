//! `SandboxErpConnector` (`sandbox-erp`): the connector for the sandbox ERP emulator
//! (`concord_sandbox::erp::ErpSim`), following the HTTP API documented there. One op per API
//! call (the ERP has no bulk API).
//!
//! Ops by kind (the engine's `WriteOp.op` contract):
//! - order `create` (also `upsert`/`update`): the sales order is looked up by its reference —
//!   `payload.reference` when present (cancel-and-replace), else the key — and created only when
//!   none exists; `amend` → `PATCH /api/sales-orders/{id}` with the full new order (lines and
//!   both addresses, absent ones sent as `null`), 409 after shipment → a permanent failure with
//!   the ERP's reason; `cancel` → the sales order of `payload.reference` (else the xref, else the
//!   key) is cancelled. Each outcome carries the ERP's acceptance version. A sales order found
//!   by reference (not by the xref) is this order's only with the same customer e-mail — and,
//!   for a create, the same quantity per SKU ([`crate::identity`]); anything else is a
//!   collision: a permanent failure naming the order and the sales order (the ERP itself
//!   answers 409 to a create of another order under an existing reference, for the race
//!   between the lookup and the create).
//! - refund `create`/`upsert` → `POST /api/credit-notes` (idempotent by order and refund id; a
//!   return when `restock` and lines).
//! - payment `upsert`/`create`/`update` → `POST /api/payments` (idempotent by order and payment
//!   id; its external id is `{order}:{id}`, as the ERP's feed names it).
//! - customer, product, stock, price: create-or-update by natural key.
//!
//! Shipments and invoices originate in the ERP: read only, writes are refused.
//!
//! Must never: sleep or retry; create a second sales order for one reference (it always looks
//! the reference up before creating), or take another order's sales order for this one.

use super::protocol::ERP_KINDS;
use super::{done, id_of, str_field, unsupported, with_default, Common};
use crate::identity::{self, FoundOrder, Verdict};
use async_trait::async_trait;
use concord_core::{order_scoped_key, Kind};
use concord_engine::connector::{
    BuildError, Capabilities, Captured, Connector, DeliveryError, EndpointSpec, KindCaps, Page,
    RateLimitProfile, ReadModes, ReadRequest, WebhookError, WriteModes, WriteOp, WriteOutcome,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Talks to an `ErpSim`. Options: `location` (stock location when a payload names none),
/// `amend` (default true; `false` = declare no order amendment, so the engine cancels and
/// replaces or rejects edits per `[orders] edits`).
#[derive(Debug, Clone)]
pub struct SandboxErpConnector {
    c: Common,
}

impl SandboxErpConnector {
    pub fn new(spec: &EndpointSpec) -> Result<Self, BuildError> {
        Ok(SandboxErpConnector {
            c: Common::build(spec, "sandbox-erp", ERP_KINDS)?,
        })
    }

    async fn write_one(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let api = &self.c.api;
        let update_only = op.op == "update_only";
        match (op.kind, op.op.as_str()) {
            (Kind::Order, "cancel") => self.cancel_order(op).await,
            (Kind::Order, "amend") if self.c.amend => self.amend_order(op).await,
            (Kind::Order, "create" | "upsert" | "update" | "update_only") => {
                self.upsert_order(op).await
            }
            (Kind::Refund, "create" | "upsert") => {
                let note = api
                    .post(&["api", "credit-notes"], &op.payload)
                    .await?
                    .ok()?;
                Ok(done(id_of(&note)?))
            }
            (Kind::Payment, "create" | "upsert" | "update") => {
                let p = api.post(&["api", "payments"], &op.payload).await?.ok()?;
                // The ERP's id for it: `{order}:{id}` (a channel's ids are unique only among its
                // own records), as its feed names it.
                Ok(done(order_scoped_key(str_field(&p, "order")?, &id_of(&p)?)))
            }
            (Kind::Customer, "create" | "upsert" | "update" | "update_only") => {
                self.c.upsert_customer(op).await
            }
            (Kind::Product, "create" | "upsert" | "update" | "update_only") => {
                let sku = str_field(&op.payload, "sku").unwrap_or(&op.key).to_string();
                let path = ["api", "products", sku.as_str()];
                if update_only && !self.exists(&path).await? {
                    return Ok(WriteOutcome::NoMatch);
                }
                api.put(&path, &op.payload).await?.ok()?;
                Ok(done(sku))
            }
            (Kind::Stock, "create" | "upsert" | "update" | "update_only") => {
                let sku = str_field(&op.payload, "sku")?.to_string();
                let loc = match (str_field(&op.payload, "location"), &self.c.location) {
                    (Ok(l), _) => l.to_string(),
                    (Err(_), Some(l)) => l.clone(),
                    (Err(e), None) => return Err(e),
                };
                let path = ["api", "stock", sku.as_str(), loc.as_str()];
                if update_only && !self.exists(&path).await? {
                    return Ok(WriteOutcome::NoMatch);
                }
                api.put(&path, &with_default(&op.payload, "location", &loc))
                    .await?
                    .ok()?;
                Ok(done(format!("{sku}@{loc}")))
            }
            (Kind::Price, "create" | "upsert" | "update" | "update_only") => {
                let sku = str_field(&op.payload, "sku")?.to_string();
                let list = str_field(&op.payload, "list")
                    .unwrap_or("default")
                    .to_string();
                let path = ["api", "prices", list.as_str(), sku.as_str()];
                if update_only && !self.exists(&path).await? {
                    return Ok(WriteOutcome::NoMatch);
                }
                api.put(&path, &op.payload).await?.ok()?;
                Ok(done(format!("{list}:{sku}")))
            }
            _ => Ok(unsupported("sandbox-erp", op)),
        }
    }

    async fn exists(&self, path: &[&str]) -> Result<bool, DeliveryError> {
        let r = self.c.api.get(path, &[]).await?;
        if r.status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        r.ok().map(|_| true)
    }

    /// The sales order for a reference (`channel/number`), if the ERP has one.
    async fn find_order(&self, reference: &str) -> Result<Option<Value>, DeliveryError> {
        let found = self
            .c
            .api
            .get(&["api", "sales-orders"], &[("reference", reference)])
            .await?
            .ok()?;
        Ok(found
            .get("orders")
            .and_then(Value::as_array)
            .and_then(|o| o.first())
            .cloned())
    }

    /// Look up by reference first (idempotent create), then POST with the customer id. Either
    /// way the outcome carries the ERP's acceptance version of the order (the watermark the
    /// stock pool releases reservations against).
    async fn upsert_order(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        if let Some(found) = self.find_order(reference(op)).await? {
            own_order(op, &found, true)?;
            return order_done(&found);
        }
        if op.op == "update_only" {
            return Ok(WriteOutcome::NoMatch);
        }
        let email = op
            .payload
            .pointer("/customer/email")
            .and_then(Value::as_str)
            .ok_or_else(|| DeliveryError::Permanent {
                reason: "payload field `customer.email` is required".into(),
            })?
            .trim()
            .to_lowercase();
        let customer_id = match op.refs.get(&format!("customer:{email}")) {
            Some(id) => id.clone(),
            None => self
                .find_customer(&email)
                .await?
                .ok_or_else(|| DeliveryError::Permanent {
                    reason: format!("customer `{email}` is not known to the ERP"),
                })?,
        };
        let (channel, _) = op.key.split_once('/').unwrap_or((op.key.as_str(), ""));
        let mut body = with_default(&op.payload, "channel", channel);
        if let Some(obj) = body.as_object_mut() {
            obj.insert("customer_id".into(), Value::String(customer_id));
            obj.insert("reference".into(), json!(reference(op)));
        }
        let created = self
            .c
            .api
            .post(&["api", "sales-orders"], &body)
            .await?
            .ok()?;
        order_done(&created)
    }

    async fn find_customer(&self, email: &str) -> Result<Option<String>, DeliveryError> {
        let found = self
            .c
            .api
            .get(&["api", "customers"], &[("email", email)])
            .await?
            .ok()?;
        Ok(found
            .get("customers")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
            .and_then(|c| c.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    /// Apply an edit: the sales order of the reference gets the full new order's lines and
    /// addresses. An order the ERP does not have yet is created from it instead.
    async fn amend_order(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let Some(found) = self.find_order(reference(op)).await? else {
            return self.upsert_order(op).await;
        };
        own_order(op, &found, false)?;
        let id = id_of(&found)?;
        let p = &op.payload;
        let field = |f: &str| p.get(f).cloned().unwrap_or(Value::Null);
        let edit = json!({"lines": field("lines"), "shipping_address": field("shipping_address"),
                          "billing_address": field("billing_address")});
        let so = self
            .c
            .api
            .send(
                reqwest::Method::PATCH,
                self.c.api.url(&["api", "sales-orders", &id], &[]),
                Some(&edit),
            )
            .await?
            .ok()?;
        order_done(&so)
    }

    async fn cancel_order(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let explicit = str_field(&op.payload, "reference").ok();
        let id = match (&op.external_id, explicit) {
            (Some(id), None) => id.clone(),
            _ => {
                let r = reference(op);
                let found = self
                    .find_order(r)
                    .await?
                    .ok_or_else(|| DeliveryError::Permanent {
                        reason: format!("no sales order with reference `{r}` to cancel"),
                    })?;
                own_order(op, &found, false)?;
                id_of(&found)?
            }
        };
        let so = self
            .c
            .api
            .post(&["api", "sales-orders", &id, "cancel"], &Value::Null)
            .await?
            .ok()?;
        order_done(&so)
    }
}

/// The reference the ERP order is keyed by: `payload.reference` when present, else the key.
fn reference(op: &WriteOp) -> &str {
    str_field(&op.payload, "reference")
        .map(str::trim)
        .unwrap_or(&op.key)
}

/// Whether sales order `so` (found by the op's reference) is the op's order: the xref names
/// it, or it has the order's customer e-mail and — `compare_lines`, for a create — the same
/// quantity per SKU. Otherwise a permanent collision naming the hub's order and the sales order.
fn own_order(op: &WriteOp, so: &Value, compare_lines: bool) -> Result<(), DeliveryError> {
    let id = id_of(so)?;
    if op.external_id.as_deref() == Some(id.as_str()) {
        return Ok(());
    }
    let record = so.get("record").cloned().unwrap_or(Value::Null);
    let email = identity::order_email(&record);
    let found = FoundOrder {
        stamp: None,
        emails: if email.is_empty() {
            vec![]
        } else {
            vec![email]
        },
        lines: identity::lines_by_sku(record.get("lines")),
    };
    match identity::judge(reference(op), &op.payload, &found, compare_lines) {
        Verdict::Collision(why) => Err(DeliveryError::Permanent {
            reason: format!(
                "order `{}` collides with sales order {id}, which already has reference `{}`: \
                 {why}; nothing was written (the order stays undelivered and its stock held) — \
                 give one of them another reference and replay",
                op.key,
                reference(op)
            ),
        }),
        _ => Ok(()),
    }
}

/// `Done` for a sales order the ERP answered with: its id and acceptance `version`.
fn order_done(so: &Value) -> Result<WriteOutcome, DeliveryError> {
    let version = match so.get("version") {
        Some(Value::String(v)) => Some(v.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Ok(WriteOutcome::Done {
        external_id: Some(id_of(so)?),
        version,
    })
}

fn erp_caps(amend: bool) -> Capabilities {
    let read = ReadModes {
        webhook: true,
        changes: true,
        snapshot: true,
    };
    let mut caps = Capabilities {
        rate_limit: RateLimitProfile {
            adaptive: true,
            ..RateLimitProfile::default()
        },
        ..Capabilities::default()
    };
    for kind in ERP_KINDS {
        // Shipments and invoices are the ERP's own: read only.
        let write = if matches!(kind, Kind::Shipment | Kind::Invoice) {
            WriteModes::default()
        } else {
            WriteModes {
                upsert: true,
                max_batch: 1,
                amend: amend && *kind == Kind::Order,
            }
        };
        caps.kinds.insert(*kind, KindCaps { read, write });
    }
    caps
}

#[async_trait]
impl Connector for SandboxErpConnector {
    fn connector_type(&self) -> &'static str {
        "sandbox-erp"
    }

    fn capabilities(&self) -> Capabilities {
        erp_caps(self.c.amend)
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

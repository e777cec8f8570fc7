//! Writing canonical records into Vendure, one file per kind: `stock` (per stock location,
//! verified by reading back), `products` (products and variants by SKU), `prices` (per
//! variant), `customers` (correlated by e-mail), `fulfillments` (from ERP shipments), `cancel`
//! (order cancellations) and `refunds` (`refundOrder` on a settled payment). This module routes
//! each write to its kind and holds the lookups they share (variants by SKU, an order by its
//! canonical key).
//!
//! Lookups before creates ([`crate::identity`]): variants by SKU and customers by e-mail are the
//! natural keys (correlation); a fulfillment is found by the `(shipment <id>)` tag in its
//! method, a refund by its marker.
//!
//! Must never: create a second variant for one SKU (every create looks the SKU up first), add
//! a variant to another SKU's product, or a second fulfillment for one shipment (found by the
//! `(shipment <id>)` tag in its method), or a second refund for one canonical refund (found by
//! its marker); answer `Done` for a stock figure it did not see in Vendure.

mod cancel;
mod customers;
mod fulfillments;
mod prices;
mod products;
mod refunds;
mod stock;

use super::VendureConnector;
use concord_core::Kind;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn permanent(reason: impl Into<String>) -> DeliveryError {
    DeliveryError::Permanent {
        reason: reason.into(),
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn done(id: impl Into<String>) -> WriteOutcome {
    WriteOutcome::Done {
        external_id: Some(id.into()),
        version: None,
    }
}

const VARIANT_FIELDS: &str = "id sku price currencyCode enabled product { id } \
    stockLevels { stockLocationId stockOnHand stockAllocated }";

impl VendureConnector {
    pub(super) async fn write_all(&self, ops: &[WriteOp]) -> Vec<WriteOutcome> {
        if !ops.is_empty() && ops.iter().all(|o| o.kind == Kind::Stock) {
            return self.write_stock(ops).await;
        }
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
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

    async fn write_one(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let upsert = matches!(
            op.op.as_str(),
            "create" | "upsert" | "update" | "update_only"
        );
        match (op.kind, op.op.as_str()) {
            (Kind::Product, _) if upsert => self.upsert_product(op).await,
            (Kind::Price, _) if upsert => self.write_price(op).await,
            (Kind::Customer, _) if upsert => self.upsert_customer(op).await,
            (Kind::Shipment, "create" | "upsert" | "update") => self.fulfill(op).await,
            (Kind::Order, "cancel") => self.cancel_order(op).await,
            (Kind::Refund, "create" | "upsert" | "update") => self.refund(op).await,
            (kind, o) => Ok(WriteOutcome::Failed(permanent(format!(
                "the vendure connector cannot `{o}` a {kind}"
            )))),
        }
    }

    /// Variants by SKU.
    pub(super) async fn variants(
        &self,
        skus: &[&str],
    ) -> Result<BTreeMap<String, Value>, DeliveryError> {
        let mut out = BTreeMap::new();
        if skus.is_empty() {
            return Ok(out);
        }
        let data = self
            .gql
            .query(
                &format!("query($s:[String!]!,$take:Int){{ productVariants(options:{{filter:{{sku:{{in:$s}}}}, take:$take}}){{ items {{ {VARIANT_FIELDS} }} }} }}"),
                json!({"s": skus, "take": skus.len().clamp(1, 1000)}),
            )
            .await?;
        for v in data
            .pointer("/productVariants/items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(sku) = v.get("sku").and_then(Value::as_str) {
                out.insert(sku.to_string(), v.clone());
            }
        }
        Ok(out)
    }

    /// The Vendure order (id, state, lines, fulfillments) for a canonical order key.
    async fn order_by_key(&self, key: &str, op: &WriteOp) -> Result<Value, DeliveryError> {
        const FIELDS: &str = "id code state lines { id quantity productVariant { sku } } \
                              fulfillments { id state method trackingCode } \
                              payments { id state amount refunds { id total reason state } }";
        let known = op.refs.get(&format!("order:{key}")).cloned();
        let code = key.rsplit_once('/').map_or(key, |(_, n)| n);
        let data = match known {
            Some(id) => self
                .gql
                .query(&format!("query($id:ID!){{ order(id:$id){{ {FIELDS} }} }}"), json!({"id": id}))
                .await?
                .get("order")
                .cloned(),
            None => self
                .gql
                .query(
                    &format!("query($c:String!){{ orders(options:{{filter:{{code:{{eq:$c}}}}, take:1}}){{ items {{ {FIELDS} }} }} }}"),
                    json!({"c": code}),
                )
                .await?
                .pointer("/orders/items/0")
                .cloned(),
        };
        data.filter(|o| !o.is_null())
            .ok_or_else(|| permanent(format!("no order `{key}` in Vendure")))
    }
}

//! Fulfillments from ERP shipments: a `manual-fulfillment` tagged `(shipment <id>)` in its
//! method, with the tracking code, moved to `Shipped` (and `Delivered`); authorized payments
//! settled first when `settle_on_ship`; the order moved on when Vendure did not do it itself.
//!
//! Must never make a second fulfillment for one shipment (found by its tag first), nor fulfil
//! more of a SKU than the order has left to fulfil.

use super::{done, permanent, str_at};
use crate::vendure::client::ok;
use crate::vendure::VendureConnector;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};

impl VendureConnector {
    /// An ERP shipment → a fulfillment (`manual-fulfillment` handler, method = carrier tagged with
    /// the shipment id, `trackingCode`), moved to `Shipped` (and `Delivered` when the shipment
    /// says so); the order follows to `Shipped` / `PartiallyShipped` / `Delivered`.
    pub(super) async fn fulfill(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let p = &op.payload;
        // The record's own id, never `op.key` (`{order}:{id}`).
        let shipment_id = str_at(p, "/id")
            .ok_or_else(|| permanent("payload field `id` is required"))?
            .to_string();
        let order_key =
            str_at(p, "/order").ok_or_else(|| permanent("payload field `order` is required"))?;
        let status = str_at(p, "/status").unwrap_or("shipped");
        if status == "cancelled" || status == "pending" {
            return Ok(WriteOutcome::NoMatch);
        }
        let order = self.order_by_key(order_key, op).await?;
        let tag = format!("(shipment {shipment_id})");
        let existing = order
            .get("fulfillments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|f| {
                f.get("method")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m.ends_with(&tag))
            })
            .cloned();
        let (fid, mut state) = match existing {
            Some(f) => (
                f.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                f.get("state")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ),
            None => {
                let mut remaining: Vec<(String, String, i64)> = order
                    .get("lines")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|l| {
                        Some((
                            l.get("id")?.as_str()?.to_string(),
                            l.pointer("/productVariant/sku")?.as_str()?.to_string(),
                            l.get("quantity")?.as_i64()?,
                        ))
                    })
                    .collect();
                let mut lines = Vec::new();
                for (i, item) in p
                    .get("lines")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let sku = str_at(item, "/sku")
                        .ok_or_else(|| permanent(format!("lines[{i}].sku is required")))?;
                    let mut want = item.get("quantity").and_then(Value::as_i64).unwrap_or(0);
                    for (line, lsku, left) in remaining.iter_mut() {
                        if want <= 0 {
                            break;
                        }
                        if lsku == sku && *left > 0 {
                            let q = want.min(*left);
                            lines.push(json!({"orderLineId": line, "quantity": q}));
                            *left -= q;
                            want -= q;
                        }
                    }
                    if want > 0 {
                        return Err(permanent(format!(
                            "lines[{i}]: order `{order_key}` has no {want} more unit(s) of `{sku}` to fulfill"
                        )));
                    }
                }
                if lines.is_empty() {
                    return Err(permanent(
                        "payload field `lines` must list what was shipped",
                    ));
                }
                let method = format!("{} {tag}", str_at(p, "/carrier").unwrap_or("Manual"));
                let tracking = str_at(p, "/tracking_number").unwrap_or("");
                let data = self
                    .gql
                    .query(
                        "mutation($i:FulfillOrderInput!){ addFulfillmentToOrder(input:$i){ __typename \
                         ... on Fulfillment { id state } ... on ErrorResult { errorCode message } } }",
                        json!({"i": {"lines": lines, "handler": {"code": "manual-fulfillment", "arguments": [
                            {"name": "method", "value": method}, {"name": "trackingCode", "value": tracking}]}}}),
                    )
                    .await?;
                let f = ok(&data, "addFulfillmentToOrder")?;
                (
                    f.get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    f.get("state")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                )
            }
        };
        // Vendure ships only paid orders (default order process: PaymentSettled → Shipped), so
        // authorized payments are settled first when `settle_on_ship` (capture on shipment).
        if self.opts.settle_on_ship {
            for pay in order
                .get("payments")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|p| p.get("state").and_then(Value::as_str) == Some("Authorized"))
            {
                let data = self
                    .gql
                    .query(
                        "mutation($id:ID!){ settlePayment(id:$id){ __typename \
                         ... on Payment { id state } ... on ErrorResult { errorCode message } } }",
                        json!({"id": pay.get("id")}),
                    )
                    .await?;
                ok(&data, "settlePayment")?;
            }
        }
        if state == "Shipped" || state == "Delivered" {
            // Shipped before the payment was settled (or a crash in between): move the order on.
            self.order_follows(&order).await?;
        }
        let mut steps = vec!["Shipped"];
        if status == "delivered" {
            steps.push("Delivered");
        }
        for to in steps {
            if state == to || (state == "Delivered" && to == "Shipped") {
                continue;
            }
            let data = self
                .gql
                .query(
                    "mutation($id:ID!,$s:String!){ transitionFulfillmentToState(id:$id, state:$s){ __typename \
                     ... on Fulfillment { id state } ... on ErrorResult { errorCode message } } }",
                    json!({"id": fid, "s": to}),
                )
                .await?;
            state = ok(&data, "transitionFulfillmentToState")?
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or(to)
                .to_string();
        }
        Ok(done(fid))
    }

    /// Move an order whose fulfillments are shipped to `Shipped` (or `PartiallyShipped`);
    /// Vendure does this itself when a fulfillment transitions, unless the order was not yet
    /// paid then. A refusal (some items not shipped) is not an error here.
    async fn order_follows(&self, order: &Value) -> Result<(), DeliveryError> {
        let state = order.get("state").and_then(Value::as_str).unwrap_or("");
        if !matches!(
            state,
            "PaymentAuthorized" | "PaymentSettled" | "PartiallyShipped"
        ) {
            return Ok(());
        }
        let id = order.get("id").cloned().unwrap_or(Value::Null);
        for to in ["Shipped", "PartiallyShipped"] {
            if to == state {
                return Ok(());
            }
            let data = self
                .gql
                .query(
                    "mutation($id:ID!,$s:String!){ transitionOrderToState(id:$id, state:$s){ __typename \
                     ... on Order { id state } ... on OrderStateTransitionError { errorCode message } } }",
                    json!({"id": id, "s": to}),
                )
                .await?;
            if ok(&data, "transitionOrderToState").is_ok() {
                return Ok(());
            }
        }
        Ok(())
    }
}

//! Refunds: `refundOrder` on the order's settled payment, found again by the
//! `(concord refund <id>)` marker in its reason.
//!
//! Must never make a second refund for one canonical refund (every payment's refunds are
//! searched for the marker first), nor restock (Vendure refunds never do).

use super::{done, permanent, str_at};
use crate::vendure::client::ok;
use crate::vendure::mapping::refund_marker;
use crate::vendure::VendureConnector;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};

impl VendureConnector {
    /// A canonical refund → `refundOrder` on the order's settled payment, `amount` =
    /// `amount_minor` and `lines` (by SKU → order line) recorded with it; the `reason` carries
    /// the marker `(concord refund <id>)`. Idempotent: every payment's refunds are searched for
    /// the marker first (a `Failed` one does not count), so a retry after a lost answer finds the
    /// refund instead of making a second. Vendure refunds only settled payments (`PaymentAuthorized`
    /// orders answer `RefundOrderStateError`). `shipping` and `adjustment` are sent as 0: Vendure
    /// 3.7 stores them unchecked (deprecated since `amount`), and leaving them out fails with
    /// `NOT NULL constraint failed: refund.shipping`. Its `ErrorResult`s (`RefundAmountError`,
    /// `NothingToRefundError`, `RefundStateTransitionError`, …) are permanent, with the message.
    pub(super) async fn refund(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let p = &op.payload;
        // The record's own id, never `op.key` (`{order}:{id}`).
        let refund_id = str_at(p, "/id")
            .ok_or_else(|| permanent("payload field `id` is required"))?
            .to_string();
        let order_key =
            str_at(p, "/order").ok_or_else(|| permanent("payload field `order` is required"))?;
        let amount = p
            .get("amount_minor")
            .and_then(Value::as_i64)
            .filter(|a| *a > 0)
            .ok_or_else(|| permanent("payload field `amount_minor` must be a positive integer"))?;
        let order = self.order_by_key(order_key, op).await?;
        let marker = refund_marker(&refund_id);
        let payments: Vec<&Value> = order
            .get("payments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        let live = |r: &&Value| r.get("state").and_then(Value::as_str) != Some("Failed");
        for pay in &payments {
            if let Some(r) = pay
                .get("refunds")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(live)
                .find(|r| {
                    r.get("reason")
                        .and_then(Value::as_str)
                        .is_some_and(|x| x.trim_end().ends_with(&marker))
                })
            {
                let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
                return Ok(done(id));
            }
        }
        // The settled payment with the most left to refund.
        let refundable = |pay: &Value| {
            pay.get("amount").and_then(Value::as_i64).unwrap_or(0)
                - pay
                    .get("refunds")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(live)
                    .filter_map(|r| r.get("total").and_then(Value::as_i64))
                    .sum::<i64>()
        };
        let Some(payment) = payments
            .iter()
            .filter(|pay| pay.get("state").and_then(Value::as_str) == Some("Settled"))
            .max_by_key(|pay| refundable(pay))
        else {
            let state = order.get("state").and_then(Value::as_str).unwrap_or("?");
            return Err(permanent(format!(
                "order `{order_key}` (Vendure state {state}) has no settled payment to refund"
            )));
        };
        let mut lines = Vec::new();
        let order_lines: Vec<(&str, &str)> = order
            .get("lines")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| {
                Some((
                    l.get("id")?.as_str()?,
                    l.pointer("/productVariant/sku")?.as_str()?,
                ))
            })
            .collect();
        for (i, item) in p
            .get("lines")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let sku = str_at(item, "/sku")
                .ok_or_else(|| permanent(format!("lines[{i}].sku is required")))?;
            let quantity = item.get("quantity").and_then(Value::as_i64).unwrap_or(0);
            let line = order_lines
                .iter()
                .find(|(_, s)| *s == sku)
                .map(|(id, _)| *id)
                .ok_or_else(|| {
                    permanent(format!(
                        "lines[{i}]: order `{order_key}` has no line with SKU `{sku}`"
                    ))
                })?;
            if quantity > 0 {
                lines.push(json!({"orderLineId": line, "quantity": quantity}));
            }
        }
        let reason = match str_at(p, "/reason") {
            Some(r) => format!("{r} {marker}"),
            None => marker,
        };
        let data = self
            .gql
            .query(
                "mutation($i:RefundOrderInput!){ refundOrder(input:$i){ __typename \
                 ... on Refund { id state total } ... on ErrorResult { errorCode message } } }",
                json!({"i": {"paymentId": payment.get("id"), "amount": amount, "shipping": 0,
                             "adjustment": 0, "lines": lines, "reason": reason}}),
            )
            .await?;
        let r = ok(&data, "refundOrder")?;
        let id = r
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| permanent(format!("refundOrder answered {data}")))?;
        Ok(done(id))
    }
}

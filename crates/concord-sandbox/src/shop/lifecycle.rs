//! The storefront emulator's order lifecycle after checkout, independent of HTTP.
//!
//! What the store does itself (the `/_control/orders/{id}/…` calls and the handle methods — a
//! merchant or a customer acting in the store's admin), each emitted in the feed:
//! - edit a placed order (quantities, lines added/removed, shipping address) → the order's
//!   update (`Kind::Order`); refused once fulfilled or cancelled;
//! - the customer cancels → the order, `cancelled`;
//! - capture a payment → `Kind::Payment` `pay_n` (`captured`);
//! - refund (full or partial, by lines or by amount, optionally restocking) → `Kind::Refund`
//!   `re_n`, never more than ordered or than is left to refund.
//!
//! What the hub tells the store (`POST /api/orders/{id}/invoices|payments|refunds`,
//! `PUT /api/orders/{id}/erp`, counted writes), recorded on the order and not re-emitted (they
//! came from elsewhere): the ERP's invoices (by number), payment states (by id), refunds
//! recorded elsewhere (by id), and the ERP's number and status of the order.
//!
//! Must never: await (all of this runs under the state's std mutex).

use super::state::{ShopOrder, ShopOrderStatus, ShopState};
use super::{ShopError, ShopInner};
use crate::core::lock;
use concord_core::model::{Address, ItemQty, OrderLine};
use concord_core::{validate, Kind};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// An edit of a placed order (`POST /_control/orders/{id}/edit`): `lines` replaces every line
/// (unit prices kept for SKUs already on the order, else today's price); `shipping_address`
/// replaces the address (`null` removes it). Absent fields are left as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderEdit {
    #[serde(default)]
    pub lines: Option<Vec<ItemQty>>,
    #[serde(default, deserialize_with = "present")]
    pub shipping_address: Option<Option<Address>>,
}

/// `Some(None)` for an explicit `null`, `None` when absent (with `#[serde(default)]`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Address>>, D::Error> {
    Option::<Address>::deserialize(d).map(Some)
}

/// A refund made at the store (`POST /_control/orders/{id}/refund`): by `lines`, by
/// `amount_minor`, or (neither) everything not refunded yet.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    #[serde(default)]
    pub amount_minor: Option<i64>,
    #[serde(default)]
    pub lines: Vec<ItemQty>,
    #[serde(default)]
    pub restock: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

fn invalid(e: concord_core::ValidationError) -> ShopError {
    ShopError::Invalid(e.to_string())
}

impl ShopInner {
    fn key_of(&self, o: &ShopOrder) -> String {
        format!("{}/{}", self.opts.name, o.number)
    }

    fn get_order(st: &ShopState, id: &str) -> Result<ShopOrder, ShopError> {
        st.orders
            .get(id)
            .cloned()
            .ok_or_else(|| ShopError::NotFound {
                what: "order",
                id: id.into(),
            })
    }

    fn save(&self, st: &mut ShopState, o: &ShopOrder) {
        st.orders.insert(o.id.clone(), o.clone());
    }

    /// Edit a placed order: emitted as the order's update. 409 once fulfilled or cancelled.
    pub fn edit_order(&self, id: &str, edit: OrderEdit) -> Result<ShopOrder, ShopError> {
        let mut st = lock(&self.state);
        let mut o = Self::get_order(&st, id)?;
        match o.status {
            ShopOrderStatus::Cancelled => {
                return Err(ShopError::Conflict(format!(
                    "order {id} is cancelled; it cannot be edited"
                )))
            }
            ShopOrderStatus::PartiallyShipped | ShopOrderStatus::Shipped => {
                return Err(ShopError::Conflict(format!(
                    "order {id} has fulfillments; it cannot be edited after shipment"
                )))
            }
            ShopOrderStatus::Placed => {}
        }
        if let Some(lines) = edit.lines {
            if lines.is_empty() {
                return Err(ShopError::Invalid(
                    "lines: an order needs at least one line".into(),
                ));
            }
            let mut next = Vec::with_capacity(lines.len());
            for (i, l) in lines.iter().enumerate() {
                if l.sku.trim().is_empty() {
                    return Err(ShopError::Invalid(format!(
                        "lines[{i}].sku: must not be empty"
                    )));
                }
                if l.quantity <= 0 {
                    return Err(ShopError::Invalid(format!(
                        "lines[{i}].quantity: must be greater than 0, got {}",
                        l.quantity
                    )));
                }
                let old = o.lines.iter().find(|x| x.sku == l.sku.trim());
                next.push(OrderLine {
                    line_id: None,
                    sku: l.sku.trim().to_string(),
                    quantity: l.quantity,
                    unit_price_minor: old
                        .map_or_else(|| self.price_of(l.sku.trim()), |x| x.unit_price_minor),
                    ship_to: None,
                    location: old.and_then(|x| x.location.clone()),
                });
            }
            o.lines = next;
        }
        if let Some(a) = edit.shipping_address {
            o.shipping_address = a;
        }
        self.save(&mut st, &o);
        self.core
            .emit(Kind::Order, &o.id, o.record(&self.opts.name));
        Ok(o)
    }

    /// Capture a payment for an order (default: its total less what is captured already):
    /// emitted as payment `pay_n`.
    pub fn capture(
        &self,
        id: &str,
        amount: Option<i64>,
        method: Option<&str>,
    ) -> Result<Value, ShopError> {
        let mut st = lock(&self.state);
        let mut o = Self::get_order(&st, id)?;
        if o.status == ShopOrderStatus::Cancelled {
            return Err(ShopError::Conflict(format!(
                "order {id} is cancelled; nothing to capture"
            )));
        }
        let captured: i64 = o
            .payments
            .iter()
            .filter(|p| p["status"] == "captured")
            .filter_map(|p| p["amount_minor"].as_i64())
            .sum();
        let amount = amount.unwrap_or(o.total_minor() - captured);
        if amount <= 0 {
            return Err(ShopError::Invalid(format!(
                "amount_minor: must be greater than 0 (order {id} has {captured} of {} captured)",
                o.total_minor()
            )));
        }
        st.next_payment += 1;
        let pid = format!("pay_{}", st.next_payment);
        let rec = json!({"id": pid, "order": self.key_of(&o), "amount_minor": amount,
                         "currency": "USD", "method": method.unwrap_or("card"),
                         "status": "captured"});
        let rec = validate(Kind::Payment, &rec).map_err(invalid)?;
        o.payments.push(rec.clone());
        self.save(&mut st, &o);
        self.core.emit(Kind::Payment, &pid, rec.clone());
        Ok(rec)
    }

    /// A refund made at the store: emitted as refund `re_n`. Lines must be on the order and not
    /// refunded beyond what was ordered; the amount defaults to the lines' value (or, without
    /// lines, to everything not refunded yet) and never exceeds what is left.
    pub fn refund(&self, id: &str, req: RefundRequest) -> Result<Value, ShopError> {
        let mut st = lock(&self.state);
        let mut o = Self::get_order(&st, id)?;
        let mut refunded: BTreeMap<String, i64> = BTreeMap::new();
        for r in &o.refunds {
            for l in r["lines"].as_array().into_iter().flatten() {
                if let (Some(s), Some(q)) = (l["sku"].as_str(), l["quantity"].as_i64()) {
                    *refunded.entry(s.to_string()).or_default() += q;
                }
            }
        }
        let ordered = o.ordered();
        let mut value = 0i64;
        for (i, l) in req.lines.iter().enumerate() {
            let Some(q) = ordered.get(&l.sku).copied() else {
                return Err(ShopError::Invalid(format!(
                    "lines[{i}].sku: `{}` is not on order {id}",
                    l.sku
                )));
            };
            if l.quantity <= 0 {
                return Err(ShopError::Invalid(format!(
                    "lines[{i}].quantity: must be greater than 0, got {}",
                    l.quantity
                )));
            }
            let done = refunded.entry(l.sku.clone()).or_default();
            if *done + l.quantity > q {
                return Err(ShopError::Invalid(format!(
                    "lines[{i}].quantity: refunding {} of `{}` exceeds the {q} ordered ({} refunded already)",
                    l.quantity, l.sku, *done
                )));
            }
            *done += l.quantity;
            let price = o
                .lines
                .iter()
                .find(|x| x.sku == l.sku)
                .map_or(0, |x| x.unit_price_minor);
            value += l.quantity.saturating_mul(price);
        }
        let left = o.total_minor() - o.refunded_minor();
        let amount = match (req.amount_minor, req.lines.is_empty()) {
            (Some(a), _) => a,
            (None, false) => value,
            (None, true) => left,
        };
        if amount <= 0 {
            return Err(ShopError::Invalid(format!(
                "amount_minor: must be greater than 0 (order {id} has {left} left to refund)"
            )));
        }
        if amount > left {
            return Err(ShopError::Invalid(format!(
                "amount_minor: refunding {amount} exceeds the {left} left to refund on order {id}"
            )));
        }
        st.next_refund += 1;
        let rid = format!("re_{}", st.next_refund);
        let mut rec = json!({"id": rid, "order": self.key_of(&o), "amount_minor": amount,
                             "currency": "USD", "lines": req.lines, "restock": req.restock});
        if let Some(r) = req.reason.filter(|r| !r.trim().is_empty()) {
            rec["reason"] = json!(r);
        }
        let rec = validate(Kind::Refund, &rec).map_err(invalid)?;
        o.refunds.push(rec.clone());
        self.save(&mut st, &o);
        self.core.emit(Kind::Refund, &rid, rec.clone());
        Ok(rec)
    }

    /// `PUT /api/orders/{id}/erp` `{"erp_number","status"}`: note the ERP's number and status of
    /// the order (shown to the merchant; the order itself does not change). `(order, changed)`.
    pub fn note_erp(&self, id: &str, body: &Value) -> Result<(ShopOrder, bool), ShopError> {
        let text = |f: &str| -> Result<Option<String>, ShopError> {
            match body.get(f) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
                Some(other) => Err(ShopError::Invalid(format!(
                    "{f}: must be a non-empty string, got {other}"
                ))),
            }
        };
        let (number, status) = (text("erp_number")?, text("status")?);
        let mut st = lock(&self.state);
        let mut o = Self::get_order(&st, id)?;
        let before = (o.erp_number.clone(), o.erp_status.clone());
        if number.is_some() {
            o.erp_number = number;
        }
        if status.is_some() {
            o.erp_status = status;
        }
        if (o.erp_number.clone(), o.erp_status.clone()) == before {
            return Ok((o, false));
        }
        self.save(&mut st, &o);
        self.core.count_writes(Kind::Order, 1);
        Ok((o, true))
    }

    /// Record on an order what the hub sends (an invoice by `number`, a payment or a refund by
    /// `id`): `(record, order, created)`; the same record again changes nothing, a changed
    /// one (an invoice now paid) replaces it. The record must name this order.
    pub fn record_from_hub(
        &self,
        id: &str,
        kind: Kind,
        body: Value,
    ) -> Result<(Value, ShopOrder, bool), ShopError> {
        let rec = validate(kind, &body).map_err(invalid)?;
        let by = if kind == Kind::Invoice {
            "number"
        } else {
            "id"
        };
        let mut st = lock(&self.state);
        let mut o = Self::get_order(&st, id)?;
        let key = self.key_of(&o);
        if rec["order"] != key.as_str() {
            return Err(ShopError::Invalid(format!(
                "order: {} names order `{}`, not this order ({key})",
                kind,
                rec["order"].as_str().unwrap_or_default()
            )));
        }
        let list = match kind {
            Kind::Invoice => &mut o.invoices,
            Kind::Payment => &mut o.payments,
            _ => &mut o.refunds,
        };
        let created = match list.iter_mut().find(|x| x[by] == rec[by]) {
            Some(existing) if *existing == rec => return Ok((rec, o, false)),
            Some(existing) => {
                *existing = rec.clone();
                false
            }
            None => {
                list.push(rec.clone());
                true
            }
        };
        self.save(&mut st, &o);
        self.core.count_writes(kind, 1);
        Ok((rec, o, created))
    }
}

//! Orders: sales read back as canonical orders (`reference` = the canonical key
//! `channel/number`; a replacement sale `{key}~n` is order `key`), with their lines, customer
//! e-mail, status and totals; and the order key of sale lines, which shipments and invoices
//! find their order by.
//!
//! Must never read a return sale (one whose `origin` is another sale: a refund with restock) as
//! an order.

use super::{id_of, ids};
use crate::tryton::mapping::{
    format_ts, money_minor, order_key_of_sale, order_status, qty, sale_order,
};
use crate::tryton::TrytonConnector;
use chrono::NaiveDateTime;
use concord_core::Kind;
use concord_engine::connector::{Captured, DeliveryError};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A sale whose `origin` is another sale: a return (Tryton's "Return Sale", or a refund with
/// restock written by [`crate::tryton::refund`]).
fn is_return(origin: Option<&Value>) -> bool {
    origin
        .and_then(Value::as_str)
        .is_some_and(|o| o.starts_with("sale.sale,"))
}

impl TrytonConnector {
    /// `sale.line` id → the canonical order key of its sale (the sale's reference; a
    /// replacement sale's `{key}~n` names order `key`).
    pub(super) async fn sale_refs_of_lines(
        &self,
        lines: &[i64],
    ) -> Result<BTreeMap<i64, String>, DeliveryError> {
        if lines.is_empty() {
            return Ok(BTreeMap::new());
        }
        let rows = self
            .rpc
            .read_ctx(
                "sale.line",
                lines,
                &["sale.reference", "sale.number", "sale.origin"],
                &json!({}),
            )
            .await?;
        Ok(rows
            .iter()
            .filter(|r| !is_return(r.pointer("/sale./origin")))
            .filter_map(|r| {
                let reference = r
                    .pointer("/sale./reference")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())?;
                Some((id_of(r)?, order_key_of_sale(reference).to_string()))
            })
            .collect())
    }

    pub(super) async fn orders_of(
        &self,
        sales: &[i64],
        version: Option<NaiveDateTime>,
    ) -> Result<Vec<Captured>, DeliveryError> {
        if sales.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .rpc
            .read_ctx(
                "sale.sale",
                sales,
                &[
                    "number",
                    "reference",
                    "state",
                    "shipment_state",
                    "invoice_state",
                    "party",
                    "currency.code",
                    "total_amount",
                    "lines",
                    "origin",
                ],
                &json!({}),
            )
            .await?;
        // Return sales (refunds with restock, see `refund`) are not orders.
        let rows: Vec<Value> = rows
            .into_iter()
            .filter(|r| !is_return(r.get("origin")))
            .collect();
        let lines = self
            .rpc
            .read_ctx(
                "sale.line",
                &ids(&rows, "lines"),
                &["sale", "type", "product.code", "quantity", "unit_price"],
                &json!({}),
            )
            .await?;
        let parties = ids(&rows, "party");
        let emails = self
            .rpc
            .search_read(
                "party.contact_mechanism",
                json!([["party", "in", parties], ["type", "=", "email"]]),
                None,
                json!([["sequence", "ASC"], ["id", "ASC"]]),
                &["party", "value", "party.name"],
            )
            .await?;
        let version = version.map(format_ts);
        let mut out = Vec::new();
        for r in &rows {
            let Some(sid) = id_of(r) else { continue };
            let party = r.get("party").and_then(Value::as_i64);
            let mech = emails
                .iter()
                .find(|m| m.get("party").and_then(Value::as_i64) == party);
            let reference = r.get("reference").and_then(Value::as_str).unwrap_or("");
            let number = r.get("number").and_then(Value::as_str).unwrap_or("");
            // A replacement sale (`{key}~n`) is the same canonical order `key`.
            let canonical = sale_order(reference, number);
            let order_lines: Vec<Value> = lines
                .iter()
                .filter(|l| l.get("sale").and_then(Value::as_i64) == Some(sid))
                .filter(|l| l.get("type").and_then(Value::as_str) == Some("line"))
                .map(|l| {
                    json!({"sku": l.pointer("/product./code").and_then(Value::as_str).unwrap_or(""),
                           "quantity": qty(l.get("quantity")),
                           "unit_price_minor": l.get("unit_price").and_then(money_minor).unwrap_or(0)})
                })
                .collect();
            let mut rec = json!({
                "number": canonical.number,
                "customer": {"email": mech.and_then(|m| m.get("value")).and_then(Value::as_str).unwrap_or("")},
                "status": order_status(r),
                "currency": r.pointer("/currency./code").and_then(Value::as_str).unwrap_or(""),
                "lines": order_lines,
            });
            if let Some(c) = canonical.channel {
                rec["channel"] = json!(c);
            }
            if let Some(r) = canonical.reference {
                rec["reference"] = json!(r);
            }
            if !number.is_empty() {
                rec["erp_number"] = json!(number);
            }
            if let Some(t) = r.get("total_amount").and_then(money_minor) {
                rec["total_minor"] = json!(t);
            }
            if let Some(n) = mech.and_then(|m| m.pointer("/party./name")) {
                rec["customer"]["name"] = n.clone();
            }
            out.push(Captured {
                kind: Kind::Order,
                external_id: sid.to_string(),
                version: version.clone(),
                record: rec,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sale_from_another_sale_is_a_return() {
        assert!(is_return(Some(&json!("sale.sale,12"))));
        assert!(!is_return(Some(&json!("sale.line,12"))));
        assert!(!is_return(Some(&Value::Null)));
        assert!(!is_return(None));
    }
}

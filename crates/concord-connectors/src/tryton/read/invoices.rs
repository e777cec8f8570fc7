//! Invoices and payments: customer invoices of a sale (posted, paid, cancelled) as canonical
//! invoices, and a paid invoice as a captured payment of its total (`invoice/<number>`).
//!
//! Must never read back as a payment an invoice paid only by payments Concord itself recorded
//! from a channel (their moves say `payment:<order>:<id>`, see `crate::tryton::payment`): the
//! channel already has them.

use super::{id_of, ids, reference_id};
use crate::tryton::mapping::{format_ts, invoice_status, money_minor};
use crate::tryton::TrytonConnector;
use chrono::NaiveDateTime;
use concord_core::Kind;
use concord_engine::connector::{Captured, DeliveryError};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

impl TrytonConnector {
    pub(super) async fn invoices_of(
        &self,
        kind: Kind,
        invoices: &[i64],
        version: Option<NaiveDateTime>,
    ) -> Result<Vec<Captured>, DeliveryError> {
        if invoices.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .rpc
            .read_ctx(
                "account.invoice",
                invoices,
                &[
                    "number",
                    "state",
                    "total_amount",
                    "currency.code",
                    "lines",
                    "payment_lines",
                ],
                &json!({}),
            )
            .await?;
        // Invoices paid only by payments Concord recorded from a channel (their moves carry
        // `payment:<order>:<id>`, see `payment`) are not read back as payments: the channel
        // already has them.
        let from_channels: BTreeSet<i64> = if kind == Kind::Payment {
            let pay_lines = self
                .rpc
                .read_ctx(
                    "account.move.line",
                    &ids(&rows, "payment_lines"),
                    &["move.description"],
                    &json!({}),
                )
                .await?;
            let ours: BTreeSet<i64> = pay_lines
                .iter()
                .filter(|l| {
                    l.pointer("/move./description")
                        .and_then(Value::as_str)
                        .is_some_and(|d| d.starts_with("payment:"))
                })
                .filter_map(id_of)
                .collect();
            rows.iter()
                .filter(|r| {
                    let paid_by = ids(std::slice::from_ref(r), "payment_lines");
                    !paid_by.is_empty() && paid_by.iter().all(|l| ours.contains(l))
                })
                .filter_map(id_of)
                .collect()
        } else {
            BTreeSet::new()
        };
        let lines = self
            .rpc
            .read_ctx(
                "account.invoice.line",
                &ids(&rows, "lines"),
                &["origin"],
                &json!({}),
            )
            .await?;
        let origin_of: BTreeMap<i64, i64> = lines
            .iter()
            .filter_map(|l| Some((id_of(l)?, reference_id(l.get("origin"), "sale.line")?)))
            .collect();
        let refs = self
            .sale_refs_of_lines(&origin_of.values().copied().collect::<Vec<_>>())
            .await?;
        let version = version.map(format_ts);
        let mut out = Vec::new();
        for r in &rows {
            let Some(id) = id_of(r) else { continue };
            if from_channels.contains(&id) {
                continue;
            }
            let Some(order) = ids(std::slice::from_ref(r), "lines")
                .iter()
                .find_map(|l| origin_of.get(l).and_then(|s| refs.get(s)))
            else {
                continue; // not an invoice of a sale Concord knows
            };
            let number = r
                .get("number")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("invoice#{id}"));
            let currency = r
                .pointer("/currency./code")
                .and_then(Value::as_str)
                .unwrap_or("");
            let total = r.get("total_amount").and_then(money_minor).unwrap_or(0);
            let state = r.get("state").and_then(Value::as_str).unwrap_or("");
            let (external_id, record) = if kind == Kind::Payment {
                (
                    format!("invoice/{number}"),
                    json!({"id": format!("invoice/{number}"), "order": order, "invoice": number,
                           "amount_minor": total, "currency": currency, "status": "captured"}),
                )
            } else {
                (
                    number.clone(),
                    json!({"number": number, "order": order, "status": invoice_status(state),
                           "currency": currency, "total_minor": total}),
                )
            };
            out.push(Captured {
                kind,
                external_id,
                version: version.clone(),
                record,
            });
        }
        Ok(out)
    }
}

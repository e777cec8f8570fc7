//! Shipments: customer shipments (`stock.shipment.out`) of a sale, each its own canonical
//! shipment with its own lines (cancelled moves left out), `tracking_number` from the
//! shipment's `reference`, `shipped_at` from its effective date.
//!
//! Must never read a shipment of no sale (a manual one), nor merge two shipments of one sale.

use super::{id_of, ids, reference_id};
use crate::tryton::mapping::{date_from_tryton, format_ts, qty, shipment_status};
use crate::tryton::TrytonConnector;
use chrono::NaiveDateTime;
use concord_core::Kind;
use concord_engine::connector::{Captured, DeliveryError};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

impl TrytonConnector {
    pub(super) async fn shipments_of(
        &self,
        shipments: &[i64],
        version: Option<NaiveDateTime>,
    ) -> Result<Vec<Captured>, DeliveryError> {
        if shipments.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .rpc
            .read_ctx(
                "stock.shipment.out",
                shipments,
                &[
                    "number",
                    "reference",
                    "state",
                    "effective_date",
                    "outgoing_moves",
                ],
                &json!({}),
            )
            .await?;
        let moves = self
            .rpc
            .read_ctx(
                "stock.move",
                &ids(&rows, "outgoing_moves"),
                &["product.code", "internal_quantity", "origin", "state"],
                &json!({}),
            )
            .await?;
        let line_ids: Vec<i64> = moves
            .iter()
            .filter_map(|m| reference_id(m.get("origin"), "sale.line"))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let refs = self.sale_refs_of_lines(&line_ids).await?;
        let version = version.map(format_ts);
        let mut out = Vec::new();
        for r in &rows {
            let Some(id) = id_of(r) else { continue };
            let my_moves: Vec<&Value> = {
                let mine = ids(std::slice::from_ref(r), "outgoing_moves");
                moves
                    .iter()
                    .filter(|m| id_of(m).is_some_and(|i| mine.contains(&i)))
                    .filter(|m| m.get("state").and_then(Value::as_str) != Some("cancelled"))
                    .collect()
            };
            // The order: the sale of the shipment's lines (a shipment of no sale is skipped).
            let Some(order) = my_moves
                .iter()
                .find_map(|m| reference_id(m.get("origin"), "sale.line"))
                .and_then(|l| refs.get(&l))
            else {
                continue;
            };
            let mut lines: BTreeMap<String, i64> = BTreeMap::new();
            for m in &my_moves {
                let sku = m
                    .pointer("/product./code")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                *lines.entry(sku).or_default() += qty(m.get("internal_quantity"));
            }
            let number = r
                .get("number")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("shipment#{id}"));
            let state = r.get("state").and_then(Value::as_str).unwrap_or("");
            let mut rec = json!({
                "id": number,
                "order": order,
                "status": shipment_status(state),
                "lines": lines.iter().map(|(s, q)| json!({"sku": s, "quantity": q})).collect::<Vec<_>>(),
            });
            if let Some(t) = r
                .get("reference")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|t| !t.is_empty())
            {
                rec["tracking_number"] = json!(t);
            }
            if let Some(d) = r.get("effective_date").and_then(date_from_tryton) {
                rec["shipped_at"] = json!(format!("{d}T00:00:00Z"));
            }
            out.push(Captured {
                kind: Kind::Shipment,
                external_id: number,
                version: version.clone(),
                record: rec,
            });
        }
        Ok(out)
    }
}

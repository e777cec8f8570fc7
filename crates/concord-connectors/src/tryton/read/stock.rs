//! Stock figures per (product, warehouse): `on_hand` from Tryton's own `quantity` in the
//! warehouse (children included), `committed` and `incoming` from the open moves — to a customer
//! location, and from a supplier location by ETA. A snapshot's figures are "as of" the newest
//! stock move.
//!
//! Must never compute `on_hand` from moves itself (Tryton's figure is the truth), nor count a
//! move in a location it cannot place in a warehouse (the directory is reloaded first).

use super::id_of;
use crate::tryton::mapping::{
    date_from_tryton, format_ts, product_external_id, qty, sku_of, stock_record,
};
use crate::tryton::{Directory, TrytonConnector};
use chrono::NaiveDateTime;
use concord_core::Kind;
use concord_engine::connector::{Captured, DeliveryError};
use serde_json::{json, Value};
use std::collections::BTreeMap;

impl TrytonConnector {
    pub(super) async fn newest_move(&self) -> Result<Option<NaiveDateTime>, DeliveryError> {
        let mut newest = None;
        for (domain, order) in [
            (
                json!([["write_date", "!=", null]]),
                json!([["write_date", "DESC"]]),
            ),
            (
                json!([["write_date", "=", null]]),
                json!([["create_date", "DESC"]]),
            ),
        ] {
            let rows = self
                .rpc
                .search_read(
                    "stock.move",
                    domain,
                    Some(1),
                    order,
                    &["write_date", "create_date"],
                )
                .await?;
            let t = rows.first().and_then(crate::tryton::mapping::changed_at);
            newest = newest.max(t);
        }
        Ok(newest)
    }

    /// Stock figures of `products` in every configured warehouse.
    pub(super) async fn stock_of(
        &self,
        products: &[i64],
        version_of: impl Fn(i64) -> Option<NaiveDateTime>,
    ) -> Result<Vec<Captured>, DeliveryError> {
        if products.is_empty() {
            return Ok(Vec::new());
        }
        let mut dir = self.directory(false).await?;
        let rows = self
            .rpc
            .read_ctx("product.product", products, &["code", "type"], &json!({}))
            .await?;
        // Services and kits hold no stock.
        let goods: Vec<(i64, String)> = rows
            .iter()
            .filter(|r| r.get("type").and_then(Value::as_str) == Some("goods"))
            .filter_map(|r| Some((id_of(r)?, sku_of(r))))
            .collect();
        if goods.is_empty() {
            return Ok(Vec::new());
        }
        let goods_ids: Vec<i64> = goods.iter().map(|g| g.0).collect();
        let moves = self
            .rpc
            .search_read(
                "stock.move",
                json!([
                    ["product", "in", goods_ids],
                    ["state", "in", ["draft", "assigned"]]
                ]),
                None,
                json!([["id", "ASC"]]),
                &[
                    "product",
                    "from_location",
                    "to_location",
                    "internal_quantity",
                    "planned_date",
                ],
            )
            .await?;
        let unknown = moves.iter().any(|m| {
            ["from_location", "to_location"].iter().any(|f| {
                m.get(*f)
                    .and_then(Value::as_i64)
                    .is_some_and(|l| !dir.locations.contains_key(&l))
            })
        });
        if unknown {
            dir = self.directory(true).await?;
        }
        let (committed, incoming) = open_moves(&dir, &moves);
        let mut out = Vec::new();
        for (wh_id, wh_code) in &dir.warehouses {
            let figures = self
                .rpc
                .read_ctx(
                    "product.product",
                    &goods_ids,
                    &["quantity"],
                    &json!({"locations": [wh_id], "with_childs": true}),
                )
                .await?;
            let on_hand: BTreeMap<i64, i64> = figures
                .iter()
                .filter_map(|r| Some((id_of(r)?, qty(r.get("quantity")))))
                .collect();
            for (pid, sku) in &goods {
                let key = (*pid, *wh_id);
                let lots: Vec<(i64, Option<String>)> = incoming
                    .get(&key)
                    .map(|m| m.iter().map(|(eta, q)| (*q, eta.clone())).collect())
                    .unwrap_or_default();
                out.push(Captured {
                    kind: Kind::Stock,
                    external_id: format!("{}@{wh_code}", product_external_id(*pid, sku)),
                    version: version_of(*pid).map(format_ts),
                    record: stock_record(
                        sku,
                        wh_code,
                        on_hand.get(pid).copied().unwrap_or(0),
                        committed.get(&key).copied().unwrap_or(0),
                        &lots,
                    ),
                });
            }
        }
        Ok(out)
    }
}

/// Committed (open moves to a customer) and incoming (open moves from a supplier, by ETA) per
/// (product, warehouse).
#[allow(clippy::type_complexity)]
fn open_moves(
    dir: &Directory,
    moves: &[Value],
) -> (
    BTreeMap<(i64, i64), i64>,
    BTreeMap<(i64, i64), BTreeMap<Option<String>, i64>>,
) {
    let mut committed = BTreeMap::new();
    let mut incoming: BTreeMap<(i64, i64), BTreeMap<Option<String>, i64>> = BTreeMap::new();
    let loc = |m: &Value, f: &str| {
        m.get(f)
            .and_then(Value::as_i64)
            .and_then(|l| dir.locations.get(&l))
            .cloned()
    };
    for m in moves {
        let (Some(product), Some((from_wh, from_type)), Some((to_wh, to_type))) = (
            m.get("product").and_then(Value::as_i64),
            loc(m, "from_location"),
            loc(m, "to_location"),
        ) else {
            continue;
        };
        let q = qty(m.get("internal_quantity"));
        if to_type == "customer" {
            if let Some(wh) = from_wh {
                *committed.entry((product, wh)).or_insert(0) += q;
            }
        } else if from_type == "supplier" {
            if let Some(wh) = to_wh {
                let eta = m.get("planned_date").and_then(date_from_tryton);
                *incoming
                    .entry((product, wh))
                    .or_default()
                    .entry(eta)
                    .or_insert(0) += q;
            }
        }
    }
    (committed, incoming)
}

//! Reading Tryton into canonical records: changed-since pages (see [`super::changes`]) and
//! snapshots (keyset pages by id) for every kind the connector reads. This module picks the
//! Tryton model and filter per kind and pages through it; each kind's rows are turned into
//! records in its own file: `stock`, `products` (and their list price), `customers`, `orders`,
//! `shipments`, `invoices` (and payments). Price lists are [`super::prices`].
//!
//! Must never: drop a record because it is invalid (the engine validates and dead-letters it),
//! or move the cursor past a row whose records it did not return.

mod customers;
mod invoices;
mod orders;
mod products;
mod shipments;
mod stock;

use super::changes::{changed_since, ChangedRows};
use super::TrytonConnector;
use chrono::NaiveDateTime;
use concord_core::Kind;
use concord_engine::connector::{DeliveryError, Page, ReadRequest};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn id_of(v: &Value) -> Option<i64> {
    v.get("id").and_then(Value::as_i64)
}

fn ids(rows: &[Value], field: &str) -> Vec<i64> {
    let mut out: Vec<i64> = rows
        .iter()
        .flat_map(|r| match r.get(field) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect::<Vec<_>>(),
            Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
            _ => Vec::new(),
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// `"sale.line,12"` → 12.
fn reference_id(v: Option<&Value>, model: &str) -> Option<i64> {
    v?.as_str()?
        .strip_prefix(model)?
        .strip_prefix(',')?
        .parse()
        .ok()
}

impl TrytonConnector {
    pub(super) async fn changes(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        if req.kind == Kind::Price {
            return self.price_changes(req).await;
        }
        let (model, filter, fields): (&str, Vec<Value>, &[&str]) = match req.kind {
            Kind::Stock => ("stock.move", vec![], &["product"]),
            Kind::Product => ("product.template", vec![], &["products"]),
            Kind::Customer => ("party.party", vec![], &[]),
            Kind::Order => ("sale.sale", vec![], &[]),
            Kind::Shipment => {
                let mut f = vec![];
                if !self.opts.shipment_states.is_empty() {
                    f.push(json!(["state", "in", self.opts.shipment_states]));
                }
                ("stock.shipment.out", f, &[])
            }
            Kind::Invoice => (
                "account.invoice",
                vec![
                    json!(["type", "=", "out"]),
                    json!(["state", "in", ["posted", "paid", "cancelled"]]),
                ],
                &[],
            ),
            Kind::Payment => (
                "account.invoice",
                vec![json!(["type", "=", "out"]), json!(["state", "=", "paid"])],
                &[],
            ),
            other => {
                return Err(DeliveryError::Permanent {
                    reason: format!("the tryton connector does not read {other} records"),
                })
            }
        };
        let page = changed_since(&self.rpc, model, &filter, fields, &req).await?;
        let version = page.newest;
        let ChangedRows {
            rows, cursor, more, ..
        } = page;
        let records = match req.kind {
            Kind::Stock => {
                // Each figure is "as of" the newest move of its product in this page: re-reading
                // the overlap window yields the same version (dropped as a duplicate), and any
                // figure that includes an order's moves is at least as new as those moves.
                let mut newest: BTreeMap<i64, NaiveDateTime> = BTreeMap::new();
                for r in &rows {
                    if let (Some(p), Some(t)) = (
                        r.get("product").and_then(Value::as_i64),
                        crate::tryton::mapping::changed_at(r),
                    ) {
                        let e = newest.entry(p).or_insert(t);
                        *e = (*e).max(t);
                    }
                }
                let products: Vec<i64> = newest.keys().copied().collect();
                self.stock_of(&products, |p| newest.get(&p).copied().or(version))
                    .await?
            }
            Kind::Product => {
                let products = ids(&rows, "products");
                self.products_of(req.kind, &products, version).await?
            }
            Kind::Customer => self.customers_of(&ids(&rows, "id"), version).await?,
            Kind::Order => self.orders_of(&ids(&rows, "id"), version).await?,
            Kind::Shipment => self.shipments_of(&ids(&rows, "id"), version).await?,
            Kind::Invoice | Kind::Payment => {
                self.invoices_of(req.kind, &ids(&rows, "id"), version)
                    .await?
            }
            _ => Vec::new(),
        };
        Ok(Page {
            records,
            cursor,
            more,
        })
    }

    /// Snapshots: keyset pages over `product.product` (product, stock, price) or
    /// `party.party` (customer) by id; the page token is the last id.
    pub(super) async fn snapshot(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        let after: i64 = match req.cursor {
            None => 0,
            Some(c) => c.parse().map_err(|_| DeliveryError::Permanent {
                reason: format!("snapshot cursor `{c}` is not an id"),
            })?,
        };
        let limit = req.limit.clamp(1, 1000);
        let model = match req.kind {
            Kind::Product | Kind::Stock | Kind::Price => "product.product",
            Kind::Customer => "party.party",
            other => {
                return Err(DeliveryError::Permanent {
                    reason: format!("the tryton connector cannot list {other} records"),
                })
            }
        };
        let rows = self
            .rpc
            .search_read(
                model,
                json!([["id", ">", after]]),
                Some(limit),
                json!([["id", "ASC"]]),
                &["id"],
            )
            .await?;
        let page_ids = ids(&rows, "id");
        // A snapshot is "as of" the newest stock move (stock) or simply read now (others).
        let version = match req.kind {
            Kind::Stock => self.newest_move().await?,
            _ => None,
        };
        let mut records = match req.kind {
            Kind::Stock => self.stock_of(&page_ids, |_| version).await?,
            Kind::Customer => self.customers_of(&page_ids, version).await?,
            kind => self.products_of(kind, &page_ids, version).await?,
        };
        if req.kind == Kind::Price {
            // Price lists: the prices of this page's products in every list.
            records.extend(self.price_list_records(None, Some(&page_ids)).await?);
        }
        Ok(Page {
            records,
            cursor: page_ids.last().map(|i| i.to_string()),
            more: rows.len() >= limit,
        })
    }
}

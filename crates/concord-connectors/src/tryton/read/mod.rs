//! Reading Tryton into canonical records: changed-since pages (see [`super::changes`]) and
//! snapshots (keyset pages by id) for every kind the connector reads.
//!
//! Must never: drop a record because it is invalid (the engine validates and dead-letters it),
//! or move the cursor past a row whose records it did not return.

use super::changes::{changed_since, ChangedRows};
use super::mapping::{
    address_record, date_from_tryton, format_ts, invoice_status, money_minor, order_key_of_sale,
    order_status, price_record, product_external_id, product_record, qty, sale_order,
    shipment_status, sku_of, stock_record,
};
use super::{Directory, TrytonConnector};
use chrono::NaiveDateTime;
use concord_core::Kind;
use concord_engine::connector::{Captured, DeliveryError, Page, ReadRequest};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

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

/// A sale whose `origin` is another sale: a return (Tryton's "Return Sale", or a refund with
/// restock written by [`super::refund`]).
fn is_return(origin: Option<&Value>) -> bool {
    origin
        .and_then(Value::as_str)
        .is_some_and(|o| o.starts_with("sale.sale,"))
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
                        super::mapping::changed_at(r),
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

    async fn newest_move(&self) -> Result<Option<NaiveDateTime>, DeliveryError> {
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
            let t = rows.first().and_then(super::mapping::changed_at);
            newest = newest.max(t);
        }
        Ok(newest)
    }

    /// Stock figures of `products` in every configured warehouse.
    async fn stock_of(
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

    pub(super) async fn products_of(
        &self,
        kind: Kind,
        products: &[i64],
        version: Option<NaiveDateTime>,
    ) -> Result<Vec<Captured>, DeliveryError> {
        if products.is_empty() {
            return Ok(Vec::new());
        }
        let currency = if kind == Kind::Price {
            self.directory(false).await?.currency
        } else {
            String::new()
        };
        let rows = self
            .rpc
            .read_ctx(
                "product.product",
                products,
                &["code", "name", "active", "description", "list_price_used"],
                &json!({}),
            )
            .await?;
        let version = version.map(format_ts);
        Ok(rows
            .iter()
            .filter_map(|r| {
                let id = id_of(r)?;
                let sku = sku_of(r);
                let record = match kind {
                    Kind::Price => price_record(&sku, &currency, r.get("list_price_used")?)?,
                    _ => product_record(r),
                };
                Some(Captured {
                    kind,
                    external_id: product_external_id(id, &sku),
                    version: version.clone(),
                    record,
                })
            })
            .collect())
    }

    async fn customers_of(
        &self,
        parties: &[i64],
        version: Option<NaiveDateTime>,
    ) -> Result<Vec<Captured>, DeliveryError> {
        if parties.is_empty() {
            return Ok(Vec::new());
        }
        let mechs = self
            .rpc
            .search_read(
                "party.contact_mechanism",
                json!([
                    ["party", "in", parties],
                    ["type", "in", ["email", "phone", "mobile"]]
                ]),
                None,
                json!([["sequence", "ASC"], ["id", "ASC"]]),
                &["party", "type", "value"],
            )
            .await?;
        let addresses = self
            .rpc
            .search_read(
                "party.address",
                json!([["party", "in", parties]]),
                None,
                json!([["sequence", "ASC"], ["id", "ASC"]]),
                &[
                    "party",
                    "street",
                    "city",
                    "postal_code",
                    "country.code",
                    "party_name",
                ],
            )
            .await?;
        let (_, party_lists) = self.price_list_modules().await?;
        let mut fields = vec!["name", "code"];
        if party_lists {
            fields.push("sale_price_list.name");
        }
        let rows = self
            .rpc
            .read_ctx("party.party", parties, &fields, &json!({}))
            .await?;
        let version = version.map(format_ts);
        let mut out = Vec::new();
        for r in &rows {
            let Some(pid) = id_of(r) else { continue };
            let of = |t: &[&str]| {
                mechs
                    .iter()
                    .filter(|m| m.get("party").and_then(Value::as_i64) == Some(pid))
                    .find(|m| {
                        m.get("type")
                            .and_then(Value::as_str)
                            .is_some_and(|x| t.contains(&x))
                    })
                    .and_then(|m| m.get("value").and_then(Value::as_str))
                    .map(str::to_string)
            };
            // Parties without an e-mail (the company, suppliers) are not customers for Concord.
            let Some(email) = of(&["email"]) else {
                continue;
            };
            let mut rec = json!({"email": email.trim().to_lowercase()});
            if let Some(n) = r.get("name").and_then(Value::as_str) {
                rec["name"] = json!(n);
            }
            if let Some(c) = r.get("code").and_then(Value::as_str) {
                rec["customer_number"] = json!(c);
            }
            // The customer's price list is its group (see `prices`: a list several parties use
            // is a `customer_group` list named after it).
            if let Some(g) = r
                .pointer("/sale_price_list./name")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|g| !g.is_empty())
            {
                rec["group"] = json!(g);
            }
            if let Some(p) = of(&["phone", "mobile"]) {
                rec["phone"] = json!(p);
            }
            let addrs: Vec<Value> = addresses
                .iter()
                .filter(|a| a.get("party").and_then(Value::as_i64) == Some(pid))
                .filter_map(address_record)
                .map(|mut a| {
                    if a["country"] == "" {
                        if let Some(c) = &self.opts.default_country {
                            a["country"] = json!(c);
                        }
                    }
                    a
                })
                .collect();
            if !addrs.is_empty() {
                rec["addresses"] = Value::Array(addrs);
            }
            out.push(Captured {
                kind: Kind::Customer,
                external_id: pid.to_string(),
                version: version.clone(),
                record: rec,
            });
        }
        Ok(out)
    }

    /// `sale.line` id → the canonical order key of its sale (the sale's reference; a
    /// replacement sale's `{key}~n` names order `key`).
    async fn sale_refs_of_lines(
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

    async fn orders_of(
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

    async fn shipments_of(
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

    async fn invoices_of(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sale_from_another_sale_is_a_return() {
        assert!(is_return(Some(&json!("sale.sale,12"))));
        assert!(!is_return(Some(&json!("sale.line,12"))));
        assert!(!is_return(Some(&Value::Null)));
        assert!(!is_return(None));
    }
}

//! Price lists (`product_price_list`, and `sale_price_list` for a customer's list) as canonical
//! prices: one `Price` per (price list, SKU).
//!
//! - `list` = the price list's name; `currency` = the company's.
//! - Scope: a list used (`party.party.sale_price_list`) by exactly one party with an e-mail is
//!   customer-specific (`customer` = that e-mail); any other list (used by none or by several
//!   parties) is a group list, `customer_group` = the list's name, and every customer read from
//!   a party with a sale price list has `group` = that list's name.
//! - Lines apply as Tryton applies them: for a quantity, the first line in `sequence` order whose
//!   product (or category, or neither = every product) matches and whose `quantity` ≤ the
//!   quantity; no line → the list price. Each line's `quantity` (rounded up to whole units) is a
//!   break: `amount_minor` is the unit price for 1, and each later break where the price changes
//!   is a tier, in ascending `min_quantity`.
//! - Formulas: see [`super::mapping::eval_formula`]. A formula that is not evaluated makes the
//!   record's `amount_minor` (or the tier's) a string naming the formula, so the engine
//!   dead-letters the record with that reason (never a guessed price).
//! - Version: the newest change of the list, its lines, its parties' assignments and the
//!   product's template (the list price formulas read).
//!
//! Known limits: a deleted line or a party moved to another list leaves the old records until
//! the list is next changed (or a snapshot); a list with `price = cost_price` evaluates only
//! plain numbers; `tax_included` and `unit` are not represented.

use super::mapping::{changed_at, eval_formula, format_ts, product_external_id, sku_of};
use super::TrytonConnector;
use chrono::NaiveDateTime;
use concord_core::Kind;
use concord_engine::connector::{Captured, DeliveryError};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

fn id_of(v: &Value) -> Option<i64> {
    v.get("id").and_then(Value::as_i64)
}

fn many(v: Option<&Value>) -> Vec<i64> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
        _ => Vec::new(),
    }
}

/// Whole units from which a line applies (`quantity` is a float in Tryton).
fn min_units(line: &Value) -> i64 {
    line.get("quantity")
        .and_then(Value::as_f64)
        .filter(|f| f.is_finite())
        .map(|f| f.ceil().max(1.0) as i64)
        .unwrap_or(1)
}

impl TrytonConnector {
    /// Whether `product_price_list` / `sale_price_list` are activated (cached with the
    /// directory's lifetime of one connector).
    pub(super) async fn price_list_modules(&self) -> Result<(bool, bool), DeliveryError> {
        let mut guard = self.modules.lock().await;
        if let Some(m) = *guard {
            return Ok(m);
        }
        // `fields_get` answers for any user who can read the model; `ir.module` is not readable
        // over RPC. A model that does not exist is a permanent error (the module is not there).
        let fields = |model: &'static str| async move {
            match self.rpc.model(model, "fields_get", vec![json!([])]).await {
                Ok(v) => Ok(Some(v)),
                Err(DeliveryError::Permanent { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let party = fields("party.party").await?;
        let has_party_lists = party
            .as_ref()
            .is_some_and(|f| f.get("sale_price_list").is_some());
        let has_lists = has_party_lists || fields("product.price_list").await?.is_some();
        let m = (has_lists, has_party_lists);
        *guard = Some(m);
        Ok(m)
    }

    /// Canonical prices of the active price lists `lists` (`None`: all), restricted to
    /// `products` when given.
    pub(super) async fn price_list_records(
        &self,
        lists: Option<&[i64]>,
        products: Option<&[i64]>,
    ) -> Result<Vec<Captured>, DeliveryError> {
        let (has_lists, has_party_lists) = self.price_list_modules().await?;
        if !has_lists
            || lists.is_some_and(|l| l.is_empty())
            || products.is_some_and(|p| p.is_empty())
        {
            return Ok(Vec::new());
        }
        let currency = self.directory(false).await?.currency;
        let domain = match lists {
            Some(l) => json!([["id", "in", l]]),
            None => json!([]),
        };
        let plists = self
            .rpc
            .search_read(
                "product.price_list",
                domain,
                None,
                json!([["id", "ASC"]]),
                &["name", "price", "write_date", "create_date"],
            )
            .await?;
        let list_ids: Vec<i64> = plists.iter().filter_map(id_of).collect();
        if list_ids.is_empty() {
            return Ok(Vec::new());
        }
        let lines = self
            .rpc
            .search_read(
                "product.price_list.line",
                json!([["price_list", "in", list_ids]]),
                None,
                json!([["price_list", "ASC"], ["sequence", "ASC"], ["id", "ASC"]]),
                &[
                    "price_list",
                    "product",
                    "category",
                    "quantity",
                    "formula",
                    "write_date",
                    "create_date",
                ],
            )
            .await?;
        // Parties using each list, and when that was last changed.
        let mut users: BTreeMap<i64, (Vec<i64>, Option<NaiveDateTime>)> = BTreeMap::new();
        let mut emails: BTreeMap<i64, String> = BTreeMap::new();
        if has_party_lists {
            // `party.party.sale_price_list` (the company-dependent value) is neither readable over
            // RPC nor searchable on the party, so every party's field is read and filtered here
            // (one read per page of changed lists).
            let assigned: Vec<Value> = self
                .rpc
                .search_read(
                    "party.party",
                    json!([]),
                    None,
                    json!([["id", "ASC"]]),
                    &["sale_price_list", "write_date", "create_date"],
                )
                .await?
                .into_iter()
                .filter(|p| {
                    p.get("sale_price_list")
                        .and_then(Value::as_i64)
                        .is_some_and(|l| list_ids.contains(&l))
                })
                .collect();
            let parties: BTreeSet<i64> = assigned.iter().filter_map(id_of).collect();
            if !parties.is_empty() {
                let mechs = self
                    .rpc
                    .search_read(
                        "party.contact_mechanism",
                        json!([
                            ["party", "in", parties.iter().collect::<Vec<_>>()],
                            ["type", "=", "email"]
                        ]),
                        None,
                        json!([["sequence", "ASC"], ["id", "ASC"]]),
                        &["party", "value"],
                    )
                    .await?;
                for m in &mechs {
                    if let (Some(p), Some(v)) = (
                        m.get("party").and_then(Value::as_i64),
                        m.get("value").and_then(Value::as_str),
                    ) {
                        emails.entry(p).or_insert_with(|| v.trim().to_lowercase());
                    }
                }
            }
            for a in &assigned {
                let (Some(l), Some(p)) =
                    (a.get("sale_price_list").and_then(Value::as_i64), id_of(a))
                else {
                    continue;
                };
                let e = users.entry(l).or_default();
                if emails.contains_key(&p) {
                    e.0.push(p);
                }
                e.1 = e.1.max(changed_at(a));
            }
        }
        // The products each list can price.
        let mut wanted: BTreeSet<i64> = BTreeSet::new();
        let mut categories: BTreeSet<i64> = BTreeSet::new();
        let mut catch_all = false;
        for l in &lines {
            match (
                l.get("product").and_then(Value::as_i64),
                l.get("category").and_then(Value::as_i64),
            ) {
                (Some(p), _) => {
                    wanted.insert(p);
                }
                (None, Some(c)) => {
                    categories.insert(c);
                }
                (None, None) => catch_all = true,
            }
        }
        let mut extra = Vec::new();
        if catch_all {
            extra.push(json!([]));
        } else if !categories.is_empty() {
            extra.push(json!([[
                "categories_all",
                "in",
                categories.iter().collect::<Vec<_>>()
            ]]));
        }
        for domain in extra {
            let rows = self
                .rpc
                .search_read(
                    "product.product",
                    domain,
                    None,
                    json!([["id", "ASC"]]),
                    &["id"],
                )
                .await?;
            wanted.extend(rows.iter().filter_map(id_of));
        }
        if let Some(only) = products {
            wanted.retain(|p| only.contains(p));
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let prows = self
            .rpc
            .read_ctx(
                "product.product",
                &wanted.iter().copied().collect::<Vec<_>>(),
                &[
                    "code",
                    "list_price_used",
                    "categories_all",
                    "template.write_date",
                    "template.create_date",
                ],
                &json!({}),
            )
            .await?;
        let mut out = Vec::new();
        for pl in &plists {
            let Some(lid) = id_of(pl) else { continue };
            let name = pl.get("name").and_then(Value::as_str).unwrap_or("").trim();
            let cost_based = pl.get("price").and_then(Value::as_str) == Some("cost_price");
            let my_lines: Vec<&Value> = lines
                .iter()
                .filter(|l| l.get("price_list").and_then(Value::as_i64) == Some(lid))
                .collect();
            let (parties, assigned_at) = users.get(&lid).cloned().unwrap_or_default();
            let mut list_at = changed_at(pl).max(assigned_at);
            for l in &my_lines {
                list_at = list_at.max(changed_at(l));
            }
            for p in &prows {
                let Some(pid) = id_of(p) else { continue };
                let cats = many(p.get("categories_all"));
                let applies: Vec<&&Value> = my_lines
                    .iter()
                    .filter(|l| {
                        let prod = l.get("product").and_then(Value::as_i64);
                        let cat = l.get("category").and_then(Value::as_i64);
                        prod.is_none_or(|x| x == pid) && cat.is_none_or(|c| cats.contains(&c))
                    })
                    .collect();
                if applies.is_empty() {
                    continue;
                }
                let list_price = p.get("list_price_used").cloned().unwrap_or(Value::Null);
                let price_at = |q: i64| -> Result<i64, String> {
                    match applies.iter().find(|l| min_units(l) <= q) {
                        None => eval_formula("unit_price", &list_price, 2),
                        Some(l) => {
                            let f = l.get("formula").and_then(Value::as_str).unwrap_or("");
                            if cost_based && f.contains("unit_price") {
                                return Err(format!(
                                    "Tryton price list formula `{}` uses unit_price of a list \
                                     based on the cost price, which Concord does not read",
                                    f.trim()
                                ));
                            }
                            eval_formula(f, &list_price, 2)
                        }
                    }
                };
                let as_json = |r: Result<i64, String>| match r {
                    Ok(m) => json!(m),
                    Err(reason) => {
                        tracing::warn!(price_list = name, product = pid, %reason, "price not evaluated");
                        json!(format!("{reason} (price list `{name}`)"))
                    }
                };
                let breaks: BTreeSet<i64> = applies.iter().map(|l| min_units(l)).collect();
                let base = price_at(1);
                let mut prev = base.clone();
                let mut tiers = Vec::new();
                for q in breaks.into_iter().filter(|q| *q > 1) {
                    let at = price_at(q);
                    if at != prev {
                        tiers.push(json!({"min_quantity": q, "amount_minor": as_json(at.clone())}));
                        prev = at;
                    }
                }
                let sku = sku_of(p);
                let mut rec = json!({"sku": sku, "list": name, "currency": currency,
                                     "amount_minor": as_json(base)});
                if !tiers.is_empty() {
                    rec["tiers"] = Value::Array(tiers);
                }
                match parties.as_slice() {
                    [one] => rec["customer"] = json!(emails.get(one).cloned().unwrap_or_default()),
                    _ => rec["customer_group"] = json!(name),
                }
                let tpl_at = p.get("template.").and_then(changed_at);
                let version = list_at.max(tpl_at).map(format_ts);
                out.push(Captured {
                    kind: Kind::Price,
                    external_id: format!("price_list#{lid}/{}", product_external_id(pid, &sku)),
                    version,
                    record: rec,
                });
            }
        }
        Ok(out)
    }
}

/// The change streams of prices, in cursor order: templates (list prices), price lists, their
/// lines, and parties' list assignments.
const STREAMS: [(&str, &str); 4] = [
    ("product.template", "products"),
    ("product.price_list", "id"),
    ("product.price_list.line", "price_list"),
    ("party.party", "sale_price_list"),
];

/// The price cursor: one timestamp per stream joined by `|` (empty = not started). A plain
/// timestamp (a cursor from before price lists were read) applies to every stream.
fn split_cursor(c: Option<&str>) -> [Option<String>; 4] {
    let mut out: [Option<String>; 4] = Default::default();
    match c {
        None => {}
        Some(c) if !c.contains('|') => out = std::array::from_fn(|_| Some(c.to_string())),
        Some(c) => {
            for (slot, part) in out.iter_mut().zip(c.split('|')) {
                if !part.is_empty() {
                    *slot = Some(part.to_string());
                }
            }
        }
    }
    out
}

impl TrytonConnector {
    /// Changed-since for prices: each stream is read with its own cursor (see
    /// [`super::changes`]); a page holds the list prices of changed templates, and every price
    /// of a changed list (a list, a line or an assignment changed) or of a changed product in
    /// every list. Nothing is skipped: a stream's cursor moves only past rows this page used.
    pub(super) async fn price_changes(
        &self,
        req: concord_engine::connector::ReadRequest<'_>,
    ) -> Result<concord_engine::connector::Page, DeliveryError> {
        let (has_lists, has_party_lists) = self.price_list_modules().await?;
        let parts = split_cursor(req.cursor);
        let mut next = parts.clone();
        let mut more = false;
        let mut moved = false;
        let mut records: BTreeMap<String, Captured> = BTreeMap::new();
        let mut changed_lists: BTreeSet<i64> = BTreeSet::new();
        for (i, (model, field)) in STREAMS.iter().enumerate() {
            if (i > 0 && !has_lists) || (i == 3 && !has_party_lists) {
                continue;
            }
            let sub = concord_engine::connector::ReadRequest {
                kind: req.kind,
                cursor: parts[i].as_deref(),
                limit: req.limit,
                overlap: req.overlap,
            };
            let page = super::changes::changed_since(&self.rpc, model, &[], &[field], &sub).await?;
            more |= page.more;
            if let Some(c) = page.cursor {
                moved |= parts[i].as_deref() != Some(c.as_str());
                next[i] = Some(c);
            }
            let mut touched: Vec<i64> = page
                .rows
                .iter()
                .flat_map(|r| match r.get(*field) {
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
                    Some(v) => v.as_i64().into_iter().collect(),
                    None => Vec::new(),
                })
                .collect();
            touched.sort_unstable();
            touched.dedup();
            if i == 0 {
                for c in self.products_of(Kind::Price, &touched, page.newest).await? {
                    records.insert(c.external_id.clone(), c);
                }
                for c in self.price_list_records(None, Some(&touched)).await? {
                    records.insert(c.external_id.clone(), c);
                }
            } else {
                changed_lists.extend(touched);
            }
        }
        if !changed_lists.is_empty() {
            let lists: Vec<i64> = changed_lists.into_iter().collect();
            for c in self.price_list_records(Some(&lists), None).await? {
                records.insert(c.external_id.clone(), c);
            }
        }
        let cursor = moved.then(|| {
            next.iter()
                .map(|p| p.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("|")
        });
        Ok(concord_engine::connector::Page {
            records: records.into_values().collect(),
            cursor,
            more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::split_cursor;

    #[test]
    fn price_cursors_split_per_stream_and_a_legacy_cursor_applies_to_all() {
        let t = "2026-11-25T19:33:26.123456Z";
        assert_eq!(split_cursor(None), [None, None, None, None]);
        assert_eq!(
            split_cursor(Some(t)),
            std::array::from_fn(|_| Some(t.to_string()))
        );
        let c = format!("{t}||{t}|");
        assert_eq!(
            split_cursor(Some(&c)),
            [Some(t.to_string()), None, Some(t.to_string()), None]
        );
    }
}

//! Writing canonical records into Vendure: stock per stock location, products and variants by
//! SKU, prices per variant, customers (correlated by e-mail), fulfillments from ERP shipments,
//! order cancellations, and refunds (`refundOrder` on a settled payment, found again by the
//! `(concord refund <id>)` marker in its reason).
//!
//! Stock is a read-modify-write, **verified**: Vendure's saleable figure is `stockOnHand −
//! stockAllocated − outOfStockThreshold`, and `stockAllocated` holds the units of
//! placed-but-unfulfilled orders (allocated at `PaymentAuthorized`/`PaymentSettled`, released at
//! fulfillment, when `stockOnHand` drops by the same amount). Concord's figure for the channel
//! (`available`: the ERP's `on_hand − committed`, or the pool's ats) already counts those
//! orders, so the connector reads the level's `stockAllocated` and writes `stockOnHand =
//! available + stockAllocated`: what Vendure then offers is exactly Concord's figure. Vendure's
//! `updateProductVariants(stockLevels)` takes an absolute `stockOnHand` and has no
//! compare-and-set (no version or expected-value argument, and `adjustProductVariantStock`-style
//! deltas would be wrong after a missed write), so the read and the write are not atomic: an
//! order allocated (or fulfilled) between them would leave figures that do not add up — and,
//! as the hub's figure did not change, nothing would write them again. So every write is read
//! back: a level whose `stockOnHand − stockAllocated` is not the figure written (the allocation
//! moved underneath) is written again from the fresh allocation, up to [`STOCK_REWRITES`] times;
//! one that still moves is a transient failure, retried later by the engine (never `Done`). A
//! fulfillment between the write and the read-back lowers both figures and is no mismatch. The
//! engine keeps one write in flight per key, so two Concord writes of one SKU and location never
//! interleave, and a stale figure never overwrites a newer one.
//!
//! Lookups before creates ([`crate::identity`]): variants by SKU and customers by e-mail are the
//! natural keys (correlation). A product left without a variant by a crash is found again by
//! its slug only when it has no variant: a product under that slug with variants belongs to
//! another SKU (two SKUs can share a slug, `A-1` and `a.1`), so the new one gets a slug of its
//! own, derived from the SKU (`<slug>-<hash>`), which a retry finds again the same way.
//!
//! Must never: create a second variant for one SKU (every create looks the SKU up first), add
//! a variant to another SKU's product, or a second fulfillment for one shipment (found by the
//! `(shipment <id>)` tag in its method), or a second refund for one canonical refund (found by
//! its marker); answer `Done` for a stock figure it did not see in Vendure.

use super::client::ok;
use super::mapping::{address_input, refund_marker, split_name};
use super::VendureConnector;
use concord_core::Kind;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn permanent(reason: impl Into<String>) -> DeliveryError {
    DeliveryError::Permanent {
        reason: reason.into(),
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn done(id: impl Into<String>) -> WriteOutcome {
    WriteOutcome::Done {
        external_id: Some(id.into()),
        version: None,
    }
}

const VARIANT_FIELDS: &str = "id sku price currencyCode enabled product { id } \
    stockLevels { stockLocationId stockOnHand stockAllocated }";

/// How many times a stock write is written again when the read-back shows an allocation moved
/// underneath it, before it gives up with a transient error (the engine retries later).
const STOCK_REWRITES: usize = 3;

/// `(stockOnHand, stockAllocated)` of a variant's level at stock location `loc`.
fn level(variant: &Value, loc: &str) -> Option<(i64, i64)> {
    let l = variant
        .get("stockLevels")
        .and_then(Value::as_array)?
        .iter()
        .find(|l| l.get("stockLocationId").and_then(Value::as_str) == Some(loc))?;
    Some((
        l.get("stockOnHand").and_then(Value::as_i64)?,
        l.get("stockAllocated").and_then(Value::as_i64).unwrap_or(0),
    ))
}

/// A slug from a SKU (`SKU-0001` → `sku-0001`).
pub fn slug_of(sku: &str) -> String {
    let mut out = String::new();
    for c in sku.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The slug of a SKU whose plain slug another SKU's product has: `<slug>-<8 hex of the SKU's
/// hash>`, the same on every retry.
pub fn own_slug(sku: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(sku.trim().as_bytes()));
    let base = slug_of(sku);
    if base.is_empty() {
        h[..8].to_string()
    } else {
        format!("{base}-{}", &h[..8])
    }
}

impl VendureConnector {
    pub(super) async fn write_all(&self, ops: &[WriteOp]) -> Vec<WriteOutcome> {
        if !ops.is_empty() && ops.iter().all(|o| o.kind == Kind::Stock) {
            return self.write_stock(ops).await;
        }
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let o = if op.kind == Kind::Stock {
                self.write_stock(std::slice::from_ref(op))
                    .await
                    .pop()
                    .unwrap_or(WriteOutcome::NoMatch)
            } else {
                self.write_one(op)
                    .await
                    .unwrap_or_else(WriteOutcome::Failed)
            };
            out.push(o);
        }
        out
    }

    async fn write_one(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let upsert = matches!(
            op.op.as_str(),
            "create" | "upsert" | "update" | "update_only"
        );
        match (op.kind, op.op.as_str()) {
            (Kind::Product, _) if upsert => self.upsert_product(op).await,
            (Kind::Price, _) if upsert => self.write_price(op).await,
            (Kind::Customer, _) if upsert => self.upsert_customer(op).await,
            (Kind::Shipment, "create" | "upsert" | "update") => self.fulfill(op).await,
            (Kind::Order, "cancel") => self.cancel_order(op).await,
            (Kind::Refund, "create" | "upsert" | "update") => self.refund(op).await,
            (kind, o) => Ok(WriteOutcome::Failed(permanent(format!(
                "the vendure connector cannot `{o}` a {kind}"
            )))),
        }
    }

    /// Variants by SKU.
    pub(super) async fn variants(
        &self,
        skus: &[&str],
    ) -> Result<BTreeMap<String, Value>, DeliveryError> {
        let mut out = BTreeMap::new();
        if skus.is_empty() {
            return Ok(out);
        }
        let data = self
            .gql
            .query(
                &format!("query($s:[String!]!,$take:Int){{ productVariants(options:{{filter:{{sku:{{in:$s}}}}, take:$take}}){{ items {{ {VARIANT_FIELDS} }} }} }}"),
                json!({"s": skus, "take": skus.len().clamp(1, 1000)}),
            )
            .await?;
        for v in data
            .pointer("/productVariants/items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(sku) = v.get("sku").and_then(Value::as_str) {
                out.insert(sku.to_string(), v.clone());
            }
        }
        Ok(out)
    }

    async fn write_stock(&self, ops: &[WriteOp]) -> Vec<WriteOutcome> {
        let mut out: Vec<Option<WriteOutcome>> = vec![None; ops.len()];
        // (op index, sku, stock location id, available)
        let mut items: Vec<(usize, String, String, i64)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if !matches!(
                op.op.as_str(),
                "create" | "upsert" | "update" | "update_only"
            ) {
                out[i] = Some(WriteOutcome::Failed(permanent(format!(
                    "the vendure connector cannot `{}` a stock record",
                    op.op
                ))));
                continue;
            }
            let p = &op.payload;
            let Some(sku) = str_at(p, "/sku") else {
                out[i] = Some(WriteOutcome::Failed(permanent(
                    "payload field `sku` is required",
                )));
                continue;
            };
            let num = |f: &str| p.get(f).and_then(Value::as_i64);
            let available = match num("available") {
                Some(a) => a,
                None => match num("on_hand") {
                    Some(h) => h - num("committed").unwrap_or(0),
                    None => {
                        out[i] = Some(WriteOutcome::Failed(permanent(
                            "payload field `available` (or `on_hand`) is required",
                        )));
                        continue;
                    }
                },
            }
            .max(0);
            let location = str_at(p, "/location").unwrap_or("default");
            match self.stock_location(location).await {
                Ok(id) => items.push((i, sku.to_string(), id, available)),
                Err(e) => out[i] = Some(WriteOutcome::Failed(e)),
            }
        }
        let skus: Vec<&str> = items.iter().map(|x| x.1.as_str()).collect();
        let mut variants = match self.variants(&skus).await {
            Ok(v) => v,
            Err(e) => {
                for x in &items {
                    out[x.0] = Some(WriteOutcome::Failed(e.clone()));
                }
                BTreeMap::new()
            }
        };
        // (op index, variant id, stock location id, available) of every figure to write.
        let mut pending: Vec<(usize, String, String, i64)> = Vec::new();
        for (i, sku, loc, available) in &items {
            if out[*i].is_some() {
                continue;
            }
            let Some(v) = variants.get(sku) else {
                out[*i] = Some(if ops[*i].op == "update_only" {
                    WriteOutcome::NoMatch
                } else {
                    WriteOutcome::Failed(permanent(format!(
                        "no variant with SKU `{sku}` in Vendure"
                    )))
                });
                continue;
            };
            let Some(id) = v.get("id").and_then(Value::as_str) else {
                out[*i] = Some(WriteOutcome::Failed(permanent("variant without id")));
                continue;
            };
            pending.push((*i, id.to_string(), loc.clone(), *available));
        }
        // Write, read back, and rewrite what an allocation moved underneath (module doc).
        let sku_of = |i: usize| {
            str_at(&ops[i].payload, "/sku")
                .unwrap_or_default()
                .to_string()
        };
        let mut moved: Vec<String> = Vec::new();
        for round in 0..=STOCK_REWRITES {
            if pending.is_empty() {
                break;
            }
            let by_id: BTreeMap<&str, &Value> = variants
                .values()
                .filter_map(|v| Some((v.get("id")?.as_str()?, v)))
                .collect();
            // One input per variant with all its levels of this batch (the last figure of a
            // key wins; the engine sends one per key anyway).
            let mut inputs: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
            for (_, id, loc, available) in &pending {
                let allocated = by_id
                    .get(id.as_str())
                    .and_then(|v| level(v, loc))
                    .map_or(0, |l| l.1.max(0));
                inputs
                    .entry(id.clone())
                    .or_default()
                    .insert(loc.clone(), available.saturating_add(allocated));
            }
            if let Some(hook) = self.stock_hook() {
                hook().await;
            }
            let input: Vec<Value> = inputs
                .iter()
                .map(|(id, levels)| {
                    json!({"id": id, "stockLevels": levels.iter()
                        .map(|(l, q)| json!({"stockLocationId": l, "stockOnHand": q}))
                        .collect::<Vec<_>>()})
                })
                .collect();
            let written = self
                .gql
                .query(
                    "mutation($i:[UpdateProductVariantInput!]!){ updateProductVariants(input:$i){ id } }",
                    json!({"i": input}),
                )
                .await;
            if let Err(e) = written {
                for (i, ..) in pending.drain(..) {
                    out[i] = Some(WriteOutcome::Failed(e.clone()));
                }
                break;
            }
            let skus: Vec<String> = pending.iter().map(|p| sku_of(p.0)).collect();
            let refs: Vec<&str> = skus.iter().map(String::as_str).collect();
            variants = match self.variants(&refs).await {
                Ok(v) => v,
                Err(e) => {
                    // Written, but not verified: the engine retries the write, which is
                    // idempotent (it recomputes from the allocation it reads then).
                    for (i, ..) in pending.drain(..) {
                        out[i] = Some(WriteOutcome::Failed(e.clone()));
                    }
                    break;
                }
            };
            let by_id: BTreeMap<&str, &Value> = variants
                .values()
                .filter_map(|v| Some((v.get("id")?.as_str()?, v)))
                .collect();
            moved.clear();
            pending.retain(|(i, id, loc, available)| {
                let now = by_id.get(id.as_str()).and_then(|v| level(v, loc));
                match now {
                    Some((on_hand, allocated)) if on_hand - allocated == *available => {
                        out[*i] = Some(done(format!(
                            "{}@{}",
                            sku_of(*i),
                            str_at(&ops[*i].payload, "/location").unwrap_or("default")
                        )));
                        false
                    }
                    other => {
                        let (h, a) = other.unwrap_or((0, 0));
                        moved.push(format!(
                            "{} at stock location {loc}: on hand {h} − allocated {a} ≠ {available}",
                            sku_of(*i)
                        ));
                        true
                    }
                }
            });
            if !pending.is_empty() && round < STOCK_REWRITES {
                tracing::debug!(endpoint = %self.endpoint, moved = ?moved,
                    "Vendure's allocations moved during a stock write; writing again");
            }
        }
        for (i, ..) in pending {
            out[i] = Some(WriteOutcome::Failed(DeliveryError::Transient {
                reason: format!(
                    "Vendure's allocations kept changing while the figure was written ({} \
                     times; {}): retrying later",
                    STOCK_REWRITES + 1,
                    moved.join("; ")
                ),
                retry_after: None,
            }));
        }
        out.into_iter()
            .map(|o| {
                o.unwrap_or(WriteOutcome::Failed(DeliveryError::Transient {
                    reason: "no outcome".into(),
                    retry_after: None,
                }))
            })
            .collect()
    }

    async fn upsert_product(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let p = &op.payload;
        let sku = str_at(p, "/sku").unwrap_or(op.key.trim()).to_string();
        if sku.is_empty() {
            return Err(permanent("payload field `sku` is required"));
        }
        let name = str_at(p, "/name").unwrap_or(&sku).to_string();
        let description = str_at(p, "/description").unwrap_or("").to_string();
        let enabled = p.get("active").and_then(Value::as_bool).unwrap_or(true);
        let lang = &self.opts.language;
        let found = self.variants(&[sku.as_str()]).await?.remove(&sku);
        if let Some(v) = found {
            let id = v.get("id").and_then(Value::as_str).unwrap_or_default();
            let product = v
                .pointer("/product/id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            self.gql
                .query(
                    "mutation($i:[UpdateProductVariantInput!]!){ updateProductVariants(input:$i){ id } }",
                    json!({"i": [{"id": id, "enabled": enabled,
                                  "translations": [{"languageCode": lang, "name": name}]}]}),
                )
                .await?;
            self.gql
                .query(
                    "mutation($i:UpdateProductInput!){ updateProduct(input:$i){ id } }",
                    json!({"i": {"id": product, "enabled": enabled,
                                 "translations": [{"languageCode": lang, "name": name,
                                                   "description": description}]}}),
                )
                .await?;
            return Ok(done(id));
        }
        if op.op == "update_only" {
            return Ok(WriteOutcome::NoMatch);
        }
        // A product left without a variant by a crash is reused; one under the slug with
        // variants is another SKU's: this SKU then has a slug of its own (module doc).
        let mut slug = slug_of(&sku);
        let mut reuse = None;
        for candidate in [slug.clone(), own_slug(&sku)] {
            slug = candidate;
            let existing = self
                .gql
                .query(
                    "query($s:String!){ products(options:{filter:{slug:{eq:$s}}, take:1}){ items { id variants { sku } } } }",
                    json!({"s": slug}),
                )
                .await?;
            let Some(p) = existing.pointer("/products/items/0") else {
                break;
            };
            let empty = p
                .get("variants")
                .and_then(Value::as_array)
                .is_none_or(|v| v.is_empty());
            if empty {
                reuse = p.get("id").and_then(Value::as_str).map(str::to_string);
                break;
            }
        }
        let product = match reuse {
            Some(id) => id,
            None => {
                let created = self
                    .gql
                    .query(
                        "mutation($i:CreateProductInput!){ createProduct(input:$i){ id } }",
                        json!({"i": {"enabled": enabled, "translations": [{"languageCode": lang,
                              "name": name, "slug": slug, "description": description}]}}),
                    )
                    .await?;
                created
                    .pointer("/createProduct/id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| DeliveryError::Transient {
                        reason: format!("createProduct answered {created}"),
                        retry_after: None,
                    })?
                    .to_string()
            }
        };
        let mut input = json!({"productId": product, "sku": sku, "enabled": enabled,
                               "trackInventory": "TRUE",
                               "translations": [{"languageCode": lang, "name": name}]});
        if let Some(price) = p.get("price_minor").and_then(Value::as_i64) {
            input["price"] = json!(price);
        }
        let created = self
            .gql
            .query(
                "mutation($i:[CreateProductVariantInput!]!){ createProductVariants(input:$i){ id } }",
                json!({"i": [input]}),
            )
            .await?;
        let id = created
            .pointer("/createProductVariants/0/id")
            .and_then(Value::as_str)
            .ok_or_else(|| DeliveryError::Transient {
                reason: format!("createProductVariants answered {created}"),
                retry_after: None,
            })?;
        Ok(done(id))
    }

    async fn write_price(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let p = &op.payload;
        let sku = str_at(p, "/sku").ok_or_else(|| permanent("payload field `sku` is required"))?;
        let amount = p
            .get("amount_minor")
            .and_then(Value::as_i64)
            .ok_or_else(|| permanent("payload field `amount_minor` is required"))?;
        if amount < 0 {
            return Err(permanent(
                "payload field `amount_minor` must not be negative",
            ));
        }
        // A variant has one price per currency: customer, group, dated or tiered lists would
        // overwrite it for every buyer. Refuse them visibly (dead letter) rather than write a
        // wrong price; filter the price flow to base lists for Vendure (see README).
        let scoped: Vec<&str> = ["customer", "customer_group", "valid_from", "valid_to"]
            .into_iter()
            .filter(|f| p.get(*f).is_some_and(|v| !v.is_null()))
            .collect();
        let tiered = p
            .get("tiers")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty());
        if !scoped.is_empty() || tiered {
            let what = if tiered && scoped.is_empty() {
                "quantity tiers".to_string()
            } else {
                format!("`{}`", scoped.join("`, `"))
            };
            return Err(permanent(format!(
                "cannot represent price list `{}` in Vendure: a variant has one price per currency, and this list has {what}",
                str_at(p, "/list").unwrap_or("default")
            )));
        }
        let Some(v) = self.variants(&[sku]).await?.remove(sku) else {
            return if op.op == "update_only" {
                Ok(WriteOutcome::NoMatch)
            } else {
                Err(permanent(format!("no variant with SKU `{sku}` in Vendure")))
            };
        };
        let id = v.get("id").and_then(Value::as_str).unwrap_or_default();
        let channel_currency = v.get("currencyCode").and_then(Value::as_str).unwrap_or("");
        let currency = str_at(p, "/currency")
            .map(str::to_ascii_uppercase)
            .or_else(|| self.opts.currency.clone())
            .unwrap_or_else(|| channel_currency.to_string());
        let input = if currency.is_empty() || currency == channel_currency {
            json!({"id": id, "price": amount})
        } else {
            json!({"id": id, "prices": [{"currencyCode": currency, "price": amount}]})
        };
        self.gql
            .query(
                "mutation($i:[UpdateProductVariantInput!]!){ updateProductVariants(input:$i){ id } }",
                json!({"i": [input]}),
            )
            .await?;
        Ok(done(format!("{sku}@{currency}")))
    }

    /// The customer with this e-mail: its id.
    pub(super) async fn find_customer(&self, email: &str) -> Result<Option<String>, DeliveryError> {
        let data = self
            .gql
            .query(
                "query($e:String!){ customers(options:{filter:{emailAddress:{eq:$e}}, take:1}){ items { id } } }",
                json!({"e": email}),
            )
            .await?;
        Ok(data
            .pointer("/customers/items/0/id")
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    /// Customers are correlated by e-mail: found → names and phone updated; not found →
    /// created with its addresses.
    async fn upsert_customer(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let p = &op.payload;
        let email = str_at(p, "/email")
            .ok_or_else(|| permanent("payload field `email` is required"))?
            .to_lowercase();
        let (first, last) = split_name(str_at(p, "/name").unwrap_or(""));
        let phone = str_at(p, "/phone");
        let found = match &op.external_id {
            Some(id) => Some(id.clone()),
            None => self.find_customer(&email).await?,
        };
        const UNION: &str =
            "__typename ... on Customer { id } ... on ErrorResult { errorCode message }";
        if let Some(id) = found {
            let mut input = json!({"id": id});
            if !first.is_empty() {
                input["firstName"] = json!(first);
                input["lastName"] = json!(last);
            }
            if let Some(ph) = phone {
                input["phoneNumber"] = json!(ph);
            }
            let data = self
                .gql
                .query(
                    &format!("mutation($i:UpdateCustomerInput!){{ updateCustomer(input:$i){{ {UNION} }} }}"),
                    json!({"i": input}),
                )
                .await?;
            ok(&data, "updateCustomer")?;
            return Ok(done(id));
        }
        if op.op == "update_only" {
            return Ok(WriteOutcome::NoMatch);
        }
        let mut input = json!({"emailAddress": email, "firstName": first, "lastName": last});
        if let Some(ph) = phone {
            input["phoneNumber"] = json!(ph);
        }
        let data = self
            .gql
            .query(
                &format!(
                    "mutation($i:CreateCustomerInput!){{ createCustomer(input:$i){{ {UNION} }} }}"
                ),
                json!({"i": input}),
            )
            .await?;
        let id = ok(&data, "createCustomer")?
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| permanent("createCustomer answered no id"))?
            .to_string();
        let name = str_at(p, "/name").unwrap_or(&email).to_string();
        for a in p
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.gql
                .query(
                    "mutation($c:ID!,$i:CreateAddressInput!){ createCustomerAddress(customerId:$c, input:$i){ id } }",
                    json!({"c": id, "i": address_input(a, &name)}),
                )
                .await?;
        }
        Ok(done(id))
    }

    /// The Vendure order (id, state, lines, fulfillments) for a canonical order key.
    async fn order_by_key(&self, key: &str, op: &WriteOp) -> Result<Value, DeliveryError> {
        const FIELDS: &str = "id code state lines { id quantity productVariant { sku } } \
                              fulfillments { id state method trackingCode } \
                              payments { id state amount refunds { id total reason state } }";
        let known = op.refs.get(&format!("order:{key}")).cloned();
        let code = key.rsplit_once('/').map_or(key, |(_, n)| n);
        let data = match known {
            Some(id) => self
                .gql
                .query(&format!("query($id:ID!){{ order(id:$id){{ {FIELDS} }} }}"), json!({"id": id}))
                .await?
                .get("order")
                .cloned(),
            None => self
                .gql
                .query(
                    &format!("query($c:String!){{ orders(options:{{filter:{{code:{{eq:$c}}}}, take:1}}){{ items {{ {FIELDS} }} }} }}"),
                    json!({"c": code}),
                )
                .await?
                .pointer("/orders/items/0")
                .cloned(),
        };
        data.filter(|o| !o.is_null())
            .ok_or_else(|| permanent(format!("no order `{key}` in Vendure")))
    }

    /// An ERP shipment → a fulfillment (`manual-fulfillment` handler, method = carrier tagged with
    /// the shipment id, `trackingCode`), moved to `Shipped` (and `Delivered` when the shipment
    /// says so); the order follows to `Shipped` / `PartiallyShipped` / `Delivered`.
    async fn fulfill(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
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

    /// Cancel an order in Vendure (all lines; stock is released by Vendure). An order already
    /// cancelled is done; one Vendure refuses to cancel (shipped) is permanent, with its reason.
    async fn cancel_order(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let order = match &op.external_id {
            Some(id) => {
                let mut o = op.clone();
                o.refs.insert(format!("order:{}", op.key), id.clone());
                self.order_by_key(&op.key, &o).await?
            }
            None => self.order_by_key(&op.key, op).await?,
        };
        let id = order
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if order.get("state").and_then(Value::as_str) == Some("Cancelled") {
            return Ok(done(id));
        }
        let data = self
            .gql
            .query(
                "mutation($i:CancelOrderInput!){ cancelOrder(input:$i){ __typename \
                 ... on Order { id state } ... on ErrorResult { errorCode message } } }",
                json!({"i": {"orderId": id, "reason": "cancelled through Concord", "cancelShipping": true}}),
            )
            .await?;
        ok(&data, "cancelOrder")?;
        Ok(done(id))
    }

    /// A canonical refund → `refundOrder` on the order's settled payment, `amount` =
    /// `amount_minor` and `lines` (by SKU → order line) recorded with it; the `reason` carries
    /// the marker `(concord refund <id>)`. Idempotent: every payment's refunds are searched for
    /// the marker first (a `Failed` one does not count), so a retry after a lost answer finds the
    /// refund instead of making a second. Vendure refunds only settled payments (`PaymentAuthorized`
    /// orders answer `RefundOrderStateError`). `shipping` and `adjustment` are sent as 0: Vendure
    /// 3.7 stores them unchecked (deprecated since `amount`), and leaving them out fails with
    /// `NOT NULL constraint failed: refund.shipping`. Its `ErrorResult`s (`RefundAmountError`,
    /// `NothingToRefundError`, `RefundStateTransitionError`, …) are permanent, with the message.
    async fn refund(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug_of("SKU-0001"), "sku-0001");
        assert_eq!(slug_of(" A b//C "), "a-b-c");
        // Two SKUs sharing a slug get slugs of their own, stable per SKU.
        assert_eq!(slug_of("A-1"), slug_of("a.1"));
        assert_ne!(own_slug("A-1"), own_slug("a.1"));
        assert_eq!(own_slug("A-1"), own_slug("A-1"));
        assert!(own_slug("A-1").starts_with("a-1-"), "{}", own_slug("A-1"));
        assert_eq!(own_slug("//").len(), 8);
    }
}

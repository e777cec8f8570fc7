//! Writing canonical records into Tryton: sales from channel orders (idempotent on the sale's
//! `reference`), their cancellation, customers (parties correlated by e-mail) and products
//! (by code, for migrations).
//!
//! Idempotency of order creates: the sale is looked up by `reference` (= the canonical order key
//! `channel/number`, or a replacement's `{key}~n`) before anything is created, and a sale found
//! in an earlier state (a crash between create and confirm) is moved on along `sale_flow` instead
//! of being created again. So a replayed op, or a Concord killed between Tryton's create and its
//! own bookkeeping, finds the sale and never makes a second one. (Two deliveries of the same key
//! are never in flight at once: the engine keeps one in flight per key.)
//!
//! A sale found under the reference is taken as this order's only when it is (the rules of
//! [`crate::identity`]): the hub's cross-reference (`external_id`) names it, or it carries this
//! order's stamp — every sale the connector creates gets `concord-order:<hash of reference,
//! customer e-mail and placing time>` in its `comment`, a field Tryton keeps in every state and
//! never copies to another sale's reference —, or, unstamped, it has the order's customer (an
//! e-mail of its party) and lines (quantity per product code). Anything else — a storefront that
//! restarted its numbering, another customer's order — is a collision: a permanent error naming
//! the order and the sale, never a success, so the order is dead-lettered and its reservation
//! stays held. A stamped sale with other lines is this order edited since: the edit is applied
//! ([`super::lifecycle`]), never a second sale.
//!
//! Parties are correlated by e-mail (a party with the order's e-mail *is* its customer) and
//! products by code: natural keys, see [`crate::identity`].
//!
//! Must never: create a sale whose reference already exists, take another order's sale as this
//! order's, or guess a product: an unknown SKU is a permanent failure naming it.

use super::config::SaleFlow;
use super::mapping::{address_to_tryton, changed_at, format_ts, just_before, minor_to_decimal};
use super::TrytonConnector;
use crate::identity::{self, FoundOrder, Verdict};
use concord_core::Kind;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(super) fn permanent(reason: impl Into<String>) -> DeliveryError {
    DeliveryError::Permanent {
        reason: reason.into(),
    }
}

pub(super) fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

pub(super) fn first_id(v: &Value) -> Option<i64> {
    v.as_array()?.first()?.as_i64()
}

/// The ids in a Tryton many2many / one2many field value (`[1, 2]`); none when absent.
pub(super) fn ids_of(v: Option<&Value>) -> Vec<i64> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

/// A read row's `id`.
pub(super) fn id_of(v: &Value) -> Option<i64> {
    v.get("id").and_then(Value::as_i64)
}

/// A read row's `state` (`""` when absent).
pub(super) fn state_of(v: &Value) -> &str {
    v.get("state").and_then(Value::as_str).unwrap_or("")
}

/// Copy each of `fields` that `from` has and is not null into `to` (a new record taking over
/// an existing one's party, addresses, company...).
pub(super) fn copy_set_fields(to: &mut Value, from: &Value, fields: &[&str]) {
    for f in fields {
        if let Some(v) = from.get(*f).filter(|v| !v.is_null()) {
            to[*f] = v.clone();
        }
    }
}

/// The reference the sale of an order op is keyed by: `payload.reference` when present (the
/// engine's cancel-and-replace sets `{key}~{n}` on a replacement and the old reference on a
/// cancel), else the canonical key.
pub(super) fn sale_reference(op: &WriteOp) -> Result<String, DeliveryError> {
    let reference = str_at(&op.payload, "/reference").unwrap_or(op.key.trim());
    if reference.is_empty() {
        return Err(permanent(
            "an order without a key cannot be made idempotent",
        ));
    }
    Ok(reference.to_string())
}

/// Tryton's `party.address.street` of a canonical address, for comparing addresses.
fn street_of(a: &Value) -> String {
    [str_at(a, "/line1"), str_at(a, "/line2")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
}

fn norm(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

impl TrytonConnector {
    /// `model.create` of one record; its id, or a transient error when Tryton answers none.
    pub(super) async fn create_one(
        &self,
        model: &str,
        record: Value,
    ) -> Result<i64, DeliveryError> {
        let created = self
            .rpc
            .model(model, "create", vec![json!([record])])
            .await?;
        first_id(&created).ok_or_else(|| DeliveryError::Transient {
            reason: format!("{model}.create answered {created}"),
            retry_after: None,
        })
    }

    /// `fields` of sale `sale`; a permanent error when Tryton no longer has it.
    pub(super) async fn read_sale(
        &self,
        sale: i64,
        fields: &[&str],
    ) -> Result<Value, DeliveryError> {
        self.rpc
            .read_ctx("sale.sale", &[sale], fields, &json!({}))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| permanent(format!("sale {sale} vanished")))
    }

    pub(super) async fn write_one(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        match (op.kind, op.op.as_str()) {
            (Kind::Order, "cancel") => self.cancel_sale(op).await,
            (Kind::Order, "amend") => self.amend_sale(op).await,
            (Kind::Order, "create" | "upsert" | "update" | "update_only") => {
                self.upsert_sale(op).await
            }
            (Kind::Refund, "create" | "upsert") => self.create_refund(op).await,
            (Kind::Payment, "create" | "upsert") => self.record_payment(op).await,
            (Kind::Customer, "create" | "upsert" | "update" | "update_only") => {
                self.upsert_party(op).await
            }
            (Kind::Product, "create" | "upsert" | "update" | "update_only") => {
                self.upsert_product(op).await
            }
            (kind, o) => Ok(WriteOutcome::Failed(permanent(format!(
                "the tryton connector cannot `{o}` a {kind}"
            )))),
        }
    }

    /// The sale with this reference: (id, state).
    pub(super) async fn find_sale(
        &self,
        reference: &str,
    ) -> Result<Option<(i64, String)>, DeliveryError> {
        let rows = self
            .rpc
            .search_read(
                "sale.sale",
                json!([["reference", "=", reference]]),
                Some(2),
                json!([["id", "ASC"]]),
                &["state"],
            )
            .await?;
        Ok(rows.first().and_then(|r| {
            Some((
                r.get("id")?.as_i64()?,
                r.get("state")?.as_str()?.to_string(),
            ))
        }))
    }

    pub(super) async fn upsert_sale(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let reference = sale_reference(op)?;
        let (sale, state) = match self.find_sale(&reference).await? {
            Some((sale, state)) => match self.judge_sale(op, &reference, sale, true).await? {
                Verdict::OwnEdited => return self.apply_missed_edit(op, sale).await,
                _ => (sale, state),
            },
            None if op.op == "update_only" => return Ok(WriteOutcome::NoMatch),
            None => (self.create_sale(op, &reference).await?, "draft".to_string()),
        };
        self.advance_sale(sale, state).await
    }

    /// This order's own sale (stamped for it) with other lines than the write: an edit made at
    /// the channel that never reached Tryton (e.g. a hub with a fresh store reading the edited
    /// order again). The edit is applied as an amendment would be; when Tryton cannot take it,
    /// a permanent failure says why (a create has no cancel-and-replace to fall back on).
    async fn apply_missed_edit(
        &self,
        op: &WriteOp,
        sale: i64,
    ) -> Result<WriteOutcome, DeliveryError> {
        let mut amend = op.clone();
        amend.external_id = Some(sale.to_string());
        match Box::pin(self.amend_sale(&amend)).await? {
            WriteOutcome::CannotAmend { reason } => Err(permanent(format!(
                "sale {sale} is order `{}`'s but has other lines than the order, and Tryton \
                 cannot amend it: {reason}",
                op.key
            ))),
            other => Ok(other),
        }
    }

    /// Whether sale `sale`, found under `reference`, is this order's (see the module doc and
    /// [`crate::identity`]); a collision is a permanent error naming the order and the sale.
    /// `compare_lines`: the write is a create (the sale must hold the order's lines) rather than
    /// an amend or a cancel.
    pub(super) async fn judge_sale(
        &self,
        op: &WriteOp,
        reference: &str,
        sale: i64,
        compare_lines: bool,
    ) -> Result<Verdict, DeliveryError> {
        if op.external_id.as_deref().map(str::trim) == Some(sale.to_string().as_str()) {
            return Ok(Verdict::Own);
        }
        let row = self
            .read_sale(sale, &["comment", "party", "number", "lines"])
            .await?;
        let emails = match row.get("party").and_then(Value::as_i64) {
            None => Vec::new(),
            Some(party) => self
                .rpc
                .search_read(
                    "party.contact_mechanism",
                    json!([["party", "=", party], ["type", "=", "email"]]),
                    None,
                    json!([["id", "ASC"]]),
                    &["value"],
                )
                .await?
                .iter()
                .filter_map(|m| m.get("value").and_then(Value::as_str))
                .map(|e| e.trim().to_lowercase())
                .collect(),
        };
        let lines = self.sale_quantities(&ids_of(row.get("lines"))).await?;
        let found = FoundOrder {
            stamp: row
                .get("comment")
                .and_then(Value::as_str)
                .and_then(identity::find_stamp),
            emails,
            lines,
        };
        match identity::judge(reference, &op.payload, &found, compare_lines) {
            Verdict::Collision(why) => {
                let number = str_at(&row, "/number")
                    .map(|n| format!(" (number {n})"))
                    .unwrap_or_default();
                Err(permanent(format!(
                    "order `{key}` collides with Tryton sale {sale}{number}, which already has \
                     reference `{reference}`: {why}. The hub does not take another order's sale \
                     for this one, so nothing was written and the order stays undelivered (its \
                     stock stays held); give one of them another reference (rename that sale's \
                     reference in Tryton, or fix the storefront's order numbering) and replay \
                     this dead letter",
                    key = op.key
                )))
            }
            verdict => Ok(verdict),
        }
    }

    /// Quantity per product code of sale lines `lines` (type `line` with a product).
    async fn sale_quantities(&self, lines: &[i64]) -> Result<BTreeMap<String, i64>, DeliveryError> {
        if lines.is_empty() {
            return Ok(BTreeMap::new());
        }
        let rows = self
            .rpc
            .read_ctx(
                "sale.line",
                lines,
                &["type", "product", "quantity"],
                &json!({}),
            )
            .await?;
        let rows: Vec<&Value> = rows
            .iter()
            .filter(|r| r.get("type").and_then(Value::as_str) == Some("line"))
            .collect();
        let mut products: Vec<i64> = rows
            .iter()
            .filter_map(|r| r.get("product").and_then(Value::as_i64))
            .collect();
        products.sort_unstable();
        products.dedup();
        let codes: BTreeMap<i64, String> = if products.is_empty() {
            BTreeMap::new()
        } else {
            self.rpc
                .read_ctx("product.product", &products, &["code"], &json!({}))
                .await?
                .iter()
                .filter_map(|p| Some((id_of(p)?, p.get("code")?.as_str()?.to_string())))
                .collect()
        };
        let as_lines: Vec<Value> = rows
            .iter()
            .map(|r| {
                let code = r
                    .get("product")
                    .and_then(Value::as_i64)
                    .and_then(|p| codes.get(&p).cloned())
                    .unwrap_or_default();
                json!({"sku": code, "quantity": r.get("quantity").cloned().unwrap_or(Value::Null)})
            })
            .collect();
        Ok(identity::lines_by_sku(Some(&Value::Array(as_lines))))
    }

    /// Move a sale along the configured flow from `state` (also finishes what a crash left half
    /// done); answers the written sale with its watermark.
    pub(super) async fn advance_sale(
        &self,
        sale: i64,
        mut state: String,
    ) -> Result<WriteOutcome, DeliveryError> {
        let call = |m: &'static str| self.rpc.model("sale.sale", m, vec![json!([sale])]);
        if state == "draft" {
            call("quote").await?;
            state = "quotation".into();
        }
        if state == "quotation" && self.opts.sale_flow != SaleFlow::Quote {
            call("confirm").await?;
            state = "confirmed".into();
        }
        if self.opts.sale_flow == SaleFlow::Process && state == "confirmed" {
            call("process").await?;
        }
        Ok(WriteOutcome::Done {
            external_id: Some(sale.to_string()),
            version: self.sale_watermark(sale).await?,
        })
    }

    /// One microsecond before the sale's first stock move was created (or before the sale's
    /// last write when it has no move yet): every stock figure that includes the order has a
    /// greater version.
    async fn sale_watermark(&self, sale: i64) -> Result<Option<String>, DeliveryError> {
        let moves = self
            .rpc
            .search_read(
                "stock.move",
                json!([["origin.sale", "=", sale, "sale.line"]]),
                None,
                json!([["id", "ASC"]]),
                &["create_date"],
            )
            .await?;
        let first_move = moves
            .iter()
            .filter_map(|m| {
                m.get("create_date")
                    .and_then(super::mapping::ts_from_tryton)
            })
            .min();
        if let Some(t) = first_move.as_deref().and_then(super::mapping::parse_ts) {
            return Ok(Some(format_ts(just_before(t))));
        }
        let rows = self
            .rpc
            .read_ctx(
                "sale.sale",
                &[sale],
                &["write_date", "create_date"],
                &json!({}),
            )
            .await?;
        Ok(rows
            .first()
            .and_then(changed_at)
            .map(|t| format_ts(just_before(t))))
    }

    /// The party of an order payload: by the engine's ref, else by e-mail, else created.
    pub(super) async fn order_party(&self, op: &WriteOp) -> Result<i64, DeliveryError> {
        let p = &op.payload;
        let email = str_at(p, "/customer/email")
            .ok_or_else(|| permanent("payload field `customer.email` is required"))?
            .to_lowercase();
        let party = match op
            .refs
            .get(&format!("customer:{email}"))
            .and_then(|id| id.parse::<i64>().ok())
        {
            Some(id) => id,
            None => match self.find_party(&email).await? {
                Some(id) => id,
                None => {
                    let customer = json!({
                        "email": email,
                        "name": p.pointer("/customer/name").cloned().unwrap_or(Value::Null),
                        "addresses": p.get("shipping_address").map(|a| vec![a.clone()]).unwrap_or_default(),
                    });
                    self.create_party(&customer).await?
                }
            },
        };
        Ok(party)
    }

    /// The (invoice, shipment) addresses of an order payload at `party`: each found among the
    /// party's addresses (same street, postal code and city) or added to it; without a
    /// shipping address, the party's first address; without a billing address, the shipping one.
    pub(super) async fn order_addresses(
        &self,
        party: i64,
        p: &Value,
    ) -> Result<(i64, i64), DeliveryError> {
        let shipping = p.get("shipping_address").filter(|a| a.is_object());
        let ship = match shipping {
            Some(a) => self.matching_address(party, a).await?,
            None => self.party_address(party, None).await?,
        };
        let invoice = match p.get("billing_address").filter(|a| a.is_object()) {
            Some(a) => self.matching_address(party, a).await?,
            None => ship,
        };
        Ok((invoice, ship))
    }

    /// The party's address equal to canonical address `a` (street, postal code, city), created
    /// when it has none.
    async fn matching_address(&self, party: i64, a: &Value) -> Result<i64, DeliveryError> {
        let rows = self
            .rpc
            .search_read(
                "party.address",
                json!([["party", "=", party]]),
                None,
                json!([["sequence", "ASC"], ["id", "ASC"]]),
                &["street", "postal_code", "city"],
            )
            .await?;
        let want = (
            norm(&street_of(a)),
            norm(str_at(a, "/postal_code").unwrap_or("")),
            norm(str_at(a, "/city").unwrap_or("")),
        );
        let s = |r: &Value, k: &str| norm(r.get(k).and_then(Value::as_str).unwrap_or(""));
        if let Some(id) = rows
            .iter()
            .find(|r| (s(r, "street"), s(r, "postal_code"), s(r, "city")) == want)
            .and_then(|r| r.get("id"))
            .and_then(Value::as_i64)
        {
            return Ok(id);
        }
        let mut addr = address_to_tryton(a, self.country(a).await?);
        addr["party"] = json!(party);
        self.create_one("party.address", addr).await
    }

    /// Sale lines (`sale.line` create values) of an order payload's `lines`; an unknown SKU
    /// or a non-positive quantity is a permanent failure naming the line.
    pub(super) async fn sale_lines(&self, op: &WriteOp) -> Result<Vec<Value>, DeliveryError> {
        let lines = op
            .payload
            .get("lines")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| permanent("payload field `lines` must be a non-empty list"))?;
        let mut sale_lines = Vec::with_capacity(lines.len());
        for (i, l) in lines.iter().enumerate() {
            let sku = str_at(l, "/sku")
                .ok_or_else(|| permanent(format!("payload field `lines[{i}].sku` is required")))?;
            let (product, uom) = self.product_by_code(sku, op).await?.ok_or_else(|| {
                permanent(format!(
                    "lines[{i}]: no product with code `{sku}` in Tryton"
                ))
            })?;
            let quantity = l.get("quantity").and_then(Value::as_i64).unwrap_or(0);
            if quantity <= 0 {
                return Err(permanent(format!("lines[{i}].quantity must be positive")));
            }
            let price = l
                .get("unit_price_minor")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            sale_lines.push(
                json!({"type": "line", "product": product, "quantity": quantity,
                                   "unit": uom, "unit_price": minor_to_decimal(price)}),
            );
        }
        Ok(sale_lines)
    }

    async fn create_sale(&self, op: &WriteOp, reference: &str) -> Result<i64, DeliveryError> {
        let p = &op.payload;
        let company = self.company().await?;
        let party = self.order_party(op).await?;
        let (invoice_address, shipment_address) = self.order_addresses(party, p).await?;
        let dir = self.directory(false).await?;
        let warehouse = match &self.opts.order_warehouse {
            Some(code) => dir
                .warehouses
                .iter()
                .find(|(_, c)| c == code)
                .map(|w| w.0)
                .ok_or_else(|| permanent(format!("no warehouse `{code}` in Tryton")))?,
            None => dir
                .warehouses
                .first()
                .map(|w| w.0)
                .ok_or_else(|| permanent("Tryton has no warehouse"))?,
        };
        let sale_lines = self.sale_lines(op).await?;
        let mut sale = json!({
            "party": party, "invoice_address": invoice_address,
            "shipment_address": shipment_address, "warehouse": warehouse, "company": company,
            "reference": reference,
            "lines": [["create", sale_lines]],
        });
        if let Some(term) = self.payment_term(party).await? {
            sale["payment_term"] = json!(term);
        }
        if let Some(code) = str_at(p, "/currency") {
            let id = self
                .rpc
                .first_id("currency.currency", json!([["code", "=", code]]))
                .await?
                .ok_or_else(|| permanent(format!("currency `{code}` is not set up in Tryton")))?;
            sale["currency"] = json!(id);
        }
        if let Some(number) = str_at(p, "/number") {
            sale["description"] = json!(format!("Order {number}"));
        }
        // The stamp that lets a retry recognise this sale as this order's (module doc).
        sale["comment"] = json!(format!(
            "Created by Concord for order {reference} [{}]",
            identity::order_stamp(reference, p)
        ));
        self.create_one("sale.sale", sale).await
    }

    pub(super) async fn product_by_code(
        &self,
        sku: &str,
        op: &WriteOp,
    ) -> Result<Option<(i64, i64)>, DeliveryError> {
        let known = op
            .refs
            .get(&format!("product:{sku}"))
            .and_then(|id| id.parse::<i64>().ok());
        let domain = match known {
            Some(id) => json!([["id", "=", id]]),
            None => json!([["code", "=", sku]]),
        };
        let rows = self
            .rpc
            .search_read(
                "product.product",
                domain,
                Some(1),
                json!(null),
                &["default_uom"],
            )
            .await?;
        Ok(rows
            .first()
            .and_then(|r| Some((r.get("id")?.as_i64()?, r.get("default_uom")?.as_i64()?))))
    }

    async fn payment_term(&self, party: i64) -> Result<Option<i64>, DeliveryError> {
        let rows = self
            .rpc
            .read_ctx(
                "party.party",
                &[party],
                &["customer_payment_term"],
                &json!({}),
            )
            .await?;
        if let Some(t) = rows
            .first()
            .and_then(|r| r.get("customer_payment_term"))
            .and_then(Value::as_i64)
        {
            return Ok(Some(t));
        }
        let Some(name) = &self.opts.payment_term else {
            return Ok(None);
        };
        self.rpc
            .first_id("account.invoice.payment_term", json!([["name", "=", name]]))
            .await?
            .map(Some)
            .ok_or_else(|| permanent(format!("options.payment_term: no payment term `{name}`")))
    }

    /// The party's first address; one is created (from `fallback`, else empty) when it has none.
    async fn party_address(
        &self,
        party: i64,
        fallback: Option<&Value>,
    ) -> Result<i64, DeliveryError> {
        let rows = self
            .rpc
            .search_read(
                "party.address",
                json!([["party", "=", party]]),
                Some(1),
                json!([["sequence", "ASC"], ["id", "ASC"]]),
                &["id"],
            )
            .await?;
        if let Some(id) = rows
            .first()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_i64)
        {
            return Ok(id);
        }
        let mut addr = match fallback {
            Some(a) => address_to_tryton(a, self.country(a).await?),
            None => json!({}),
        };
        addr["party"] = json!(party);
        self.create_one("party.address", addr).await
    }

    /// The Tryton country id of a canonical address's country, when Tryton has it.
    async fn country(&self, address: &Value) -> Result<Option<i64>, DeliveryError> {
        let Some(code) = str_at(address, "/country") else {
            return Ok(None);
        };
        self.rpc
            .first_id(
                "country.country",
                json!([["code", "=", code.to_uppercase()]]),
            )
            .await
    }

    /// The party with this e-mail (case-insensitive), if any.
    async fn find_party(&self, email: &str) -> Result<Option<i64>, DeliveryError> {
        let rows = self
            .rpc
            .search_read(
                "party.contact_mechanism",
                json!([["type", "=", "email"], ["value", "ilike", email]]),
                Some(1),
                json!([["id", "ASC"]]),
                &["party"],
            )
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get("party"))
            .and_then(Value::as_i64))
    }

    async fn create_party(&self, c: &Value) -> Result<i64, DeliveryError> {
        let email =
            str_at(c, "/email").ok_or_else(|| permanent("payload field `email` is required"))?;
        let name = str_at(c, "/name").unwrap_or(email);
        let mut mechs = vec![json!({"type": "email", "value": email})];
        if let Some(phone) = str_at(c, "/phone") {
            mechs.push(json!({"type": "phone", "value": phone}));
        }
        let mut addresses = Vec::new();
        for a in c
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            addresses.push(address_to_tryton(a, self.country(a).await?));
        }
        let mut party = json!({"name": name, "contact_mechanisms": [["create", mechs]]});
        if !addresses.is_empty() {
            party["addresses"] = json!([["create", addresses]]);
        }
        self.create_one("party.party", party).await
    }

    /// Customers are correlated by e-mail: found → its name is updated when it differs (Tryton
    /// keeps its own addresses); not found → created.
    async fn upsert_party(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let email = str_at(&op.payload, "/email")
            .ok_or_else(|| permanent("payload field `email` is required"))?
            .to_lowercase();
        let found = match op
            .external_id
            .as_deref()
            .and_then(|i| i.parse::<i64>().ok())
        {
            Some(id) => Some(id),
            None => self.find_party(&email).await?,
        };
        let id = match found {
            Some(id) => {
                if let Some(name) = str_at(&op.payload, "/name") {
                    let cur = self
                        .rpc
                        .read_ctx("party.party", &[id], &["name"], &json!({}))
                        .await?;
                    if cur
                        .first()
                        .and_then(|r| r.get("name"))
                        .and_then(Value::as_str)
                        != Some(name)
                    {
                        self.rpc
                            .model(
                                "party.party",
                                "write",
                                vec![json!([id]), json!({"name": name})],
                            )
                            .await?;
                    }
                }
                id
            }
            None if op.op == "update_only" => return Ok(WriteOutcome::NoMatch),
            None => self.create_party(&op.payload).await?,
        };
        Ok(WriteOutcome::Done {
            external_id: Some(id.to_string()),
            version: None,
        })
    }

    /// Products by code: found → name/active updated on its template; else a goods template
    /// (unit "Unit", list price 0, the first accounting category) with one product is created.
    async fn upsert_product(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let sku = str_at(&op.payload, "/sku")
            .unwrap_or(op.key.trim())
            .to_string();
        let name = str_at(&op.payload, "/name").unwrap_or(&sku).to_string();
        let active = op
            .payload
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let rows = self
            .rpc
            .search_read(
                "product.product",
                json!([["code", "=", sku], ["active", "in", [true, false]]]),
                Some(1),
                json!(null),
                &["template"],
            )
            .await?;
        if let Some(row) = rows.first() {
            let (Some(id), Some(tpl)) = (
                row.get("id").and_then(Value::as_i64),
                row.get("template").and_then(Value::as_i64),
            ) else {
                return Err(permanent(format!("product `{sku}` has no template")));
            };
            self.rpc
                .model(
                    "product.template",
                    "write",
                    vec![json!([tpl]), json!({"name": name, "active": active})],
                )
                .await?;
            return Ok(WriteOutcome::Done {
                external_id: Some(id.to_string()),
                version: None,
            });
        }
        if op.op == "update_only" {
            return Ok(WriteOutcome::NoMatch);
        }
        let unit = self
            .rpc
            .search_read(
                "product.uom",
                json!([["name", "=", "Unit"]]),
                Some(1),
                json!(null),
                &["id"],
            )
            .await?
            .first()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_i64)
            .ok_or_else(|| permanent("Tryton has no unit of measure `Unit`"))?;
        let category = self
            .rpc
            .search_read(
                "product.category",
                json!([["accounting", "=", true]]),
                Some(1),
                json!([["id", "ASC"]]),
                &["id"],
            )
            .await?
            .first()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_i64);
        let mut tpl = json!({"name": name, "code": sku, "type": "goods", "default_uom": unit,
                             "salable": true, "sale_uom": unit, "list_price": minor_to_decimal(0),
                             "active": active, "products": [["create", [{}]]]});
        if let Some(c) = category {
            tpl["account_category"] = json!(c);
        }
        self.rpc
            .model("product.template", "create", vec![json!([tpl])])
            .await?;
        let rows = self
            .rpc
            .search_read(
                "product.product",
                json!([["code", "=", sku], ["active", "in", [true, false]]]),
                Some(1),
                json!(null),
                &["id"],
            )
            .await?;
        Ok(WriteOutcome::Done {
            external_id: rows
                .first()
                .and_then(|r| r.get("id"))
                .and_then(Value::as_i64)
                .map(|i| i.to_string()),
            version: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn op(key: &str, payload: Value) -> WriteOp {
        WriteOp {
            item_id: 1,
            kind: Kind::Order,
            key: key.into(),
            op: "amend".into(),
            payload,
            external_id: None,
            refs: BTreeMap::new(),
        }
    }

    #[test]
    fn the_sale_reference_is_the_payload_reference_else_the_key() {
        assert_eq!(sale_reference(&op("web/1", json!({}))).unwrap(), "web/1");
        assert_eq!(
            sale_reference(&op("web/1", json!({"reference": "web/1~2"}))).unwrap(),
            "web/1~2"
        );
        assert_eq!(
            sale_reference(&op("web/1", json!({"reference": "  "}))).unwrap(),
            "web/1"
        );
        assert!(sale_reference(&op(" ", json!({}))).is_err());
    }

    #[test]
    fn addresses_compare_by_normalised_street() {
        let a = json!({"line1": "1  Main Street", "line2": "Flat 2", "city": "X"});
        assert_eq!(street_of(&a), "1  Main Street\nFlat 2");
        assert_eq!(norm(&street_of(&a)), norm("1 main street\nflat 2"));
    }
}

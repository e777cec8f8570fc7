//! Sales from channel orders, created idempotently on the sale's `reference`.
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
//! Must never: create a sale whose reference already exists, take another order's sale as this
//! order's, or guess a product: an unknown SKU is a permanent failure naming it.

use super::{id_of, ids_of, permanent, sale_reference, str_at};
use crate::identity::{self, FoundOrder, Verdict};
use crate::tryton::config::SaleFlow;
use crate::tryton::mapping::{changed_at, format_ts, just_before, minor_to_decimal};
use crate::tryton::TrytonConnector;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;

impl TrytonConnector {
    /// The sale with this reference: (id, state).
    pub(in crate::tryton) async fn find_sale(
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

    pub(in crate::tryton) async fn upsert_sale(
        &self,
        op: &WriteOp,
    ) -> Result<WriteOutcome, DeliveryError> {
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
    pub(in crate::tryton) async fn judge_sale(
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
    pub(in crate::tryton) async fn advance_sale(
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
                    .and_then(crate::tryton::mapping::ts_from_tryton)
            })
            .min();
        if let Some(t) = first_move
            .as_deref()
            .and_then(crate::tryton::mapping::parse_ts)
        {
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

    /// Sale lines (`sale.line` create values) of an order payload's `lines`; an unknown SKU
    /// or a non-positive quantity is a permanent failure naming the line.
    pub(in crate::tryton) async fn sale_lines(
        &self,
        op: &WriteOp,
    ) -> Result<Vec<Value>, DeliveryError> {
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
}

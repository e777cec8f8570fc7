//! The order lifecycle on a Tryton sale after its creation: edits (`amend`) and cancellation.
//!
//! What each maps to in Tryton 8.2 (`sale`, `sale_amendment` modules):
//! - **amend**, sale not yet processing (`draft`, `quotation`, `confirmed`): the sale goes back
//!   to draft (`sale.sale.draft`), its lines are replaced by the order's lines and its invoice
//!   and shipment addresses set to the order's (found among the party's addresses or added),
//!   then it is quoted/confirmed again per `sale_flow`.
//! - **amend**, sale `processing` with nothing shipped: a `sale.amendment` (module
//!   `sale_amendment`) with one `line` action per changed line (quantity, unit price; a removed
//!   line becomes quantity 0) and a `party` action when an address changed, then
//!   `validate_amendment` — Tryton bumps the sale's revision and replaces its draft/waiting
//!   shipments and draft invoices. Tryton's amendment cannot add a line to a processing sale,
//!   but it can change a line's product: an added SKU takes over a line whose SKU the edit
//!   removed (or one an earlier edit zeroed). An added SKU with no such line, or a Tryton
//!   without `sale_amendment`, answers `WriteOutcome::CannotAmend` naming why — the sale can
//!   still be cancelled, so the engine follows `[orders] edits` (cancel-and-replace as
//!   `{key}~{n}`, or a dead letter) — unless an invoice of the sale is posted, which makes the
//!   cancel fail too: then a permanent failure saying both. An edit that changes
//!   nothing is a no-op, so a replayed amend makes no second amendment; a draft amendment left
//!   by a crash is deleted before a new one is made.
//! - **amend** or **cancel** after goods left (a shipment picked, packed or done) or of a
//!   `done`/`cancelled` sale: permanent, with the reason.
//! - **cancel**: `draft`/`quotation` → `cancel`; `confirmed` → `draft` then `cancel`;
//!   `processing` with nothing picked and no posted invoice → its shipments and draft invoices
//!   are cancelled and marked ignored (what Tryton's "handle shipment/invoice exception"
//!   wizards do), then the sale is processed: Tryton ends it `done` with nothing shipped and
//!   nothing invoiced, which the connector reads back as `cancelled` (Tryton has no
//!   processing → cancelled transition). Already cancelled → done.
//!
//! The sale is the one whose `reference` is `payload.reference` when present, else the key.
//!
//! Must never: create a second amendment for one edit, cancel a sale whose goods have left, or
//! touch a posted invoice (refunds go through credit notes, see [`super::refund`]).

use super::mapping::{minor_to_decimal, money_minor, qty};
use super::write::{id_of, ids_of, permanent, sale_reference, state_of, str_at};
use super::TrytonConnector;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The description Concord gives its amendments (a draft one left by a crash is found by it).
const AMENDMENT: &str = "Concord order edit";

/// Shipment states after which goods have left the shelf: no edit or cancel any more.
const GOODS_LEFT: &[&str] = &["picked", "packed", "shipped", "done"];

/// The first of `invoices` (rows with `state`) that is neither draft nor cancelled: posted or
/// paid, so its sale can no longer be cancelled.
fn first_posted(invoices: &[Value]) -> Option<&Value> {
    invoices
        .iter()
        .find(|i| !matches!(state_of(i), "draft" | "cancelled"))
}

impl TrytonConnector {
    /// The sale of an op: by external id when the engine knows it, else by reference — then
    /// only when it is this order's (same stamp, or same customer: [`crate::identity`]), so an
    /// edit or a cancellation never reaches another order's sale under a reused number.
    async fn sale_of(&self, op: &WriteOp) -> Result<Option<(i64, String)>, DeliveryError> {
        if let Some(id) = op
            .external_id
            .as_deref()
            .and_then(|i| i.parse::<i64>().ok())
        {
            let rows = self
                .rpc
                .read_ctx("sale.sale", &[id], &["state"], &json!({}))
                .await?;
            if let Some(s) = rows.first() {
                return Ok(Some((id, state_of(s).to_string())));
            }
        }
        // Found by reference only: it must be this order's (a collision is permanent).
        let reference = sale_reference(op)?;
        match self.find_sale(&reference).await? {
            Some((sale, state)) => {
                self.judge_sale(op, &reference, sale, false).await?;
                Ok(Some((sale, state)))
            }
            None => Ok(None),
        }
    }

    /// The sale's customer shipments, and whether goods of any of them have left.
    async fn sale_shipments(&self, sale: &Value) -> Result<(Vec<Value>, bool), DeliveryError> {
        let shipments = self
            .rpc
            .read_ctx(
                "stock.shipment.out",
                &ids_of(sale.get("shipments")),
                &["state"],
                &json!({}),
            )
            .await?;
        let left = shipments.iter().any(|s| GOODS_LEFT.contains(&state_of(s)));
        Ok((shipments, left))
    }

    pub(super) async fn amend_sale(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let reference = sale_reference(op)?;
        let Some((sale, state)) = self.sale_of(op).await? else {
            // Nothing to amend: the order (as it is now) is created.
            return self.upsert_sale(op).await;
        };
        match state.as_str() {
            "draft" | "quotation" | "confirmed" => {
                let call = |m: &'static str| self.rpc.model("sale.sale", m, vec![json!([sale])]);
                if state != "draft" {
                    call("draft").await?;
                }
                let new_lines = self.sale_lines(op).await?;
                let party = self.order_party(op).await?;
                let (invoice, shipment) = self.order_addresses(party, &op.payload).await?;
                let old = self
                    .rpc
                    .read_ctx("sale.sale", &[sale], &["lines"], &json!({}))
                    .await?;
                let old_lines = ids_of(old.first().and_then(|r| r.get("lines")));
                let mut lines = Vec::new();
                if !old_lines.is_empty() {
                    lines.push(json!(["delete", old_lines]));
                }
                lines.push(json!(["create", new_lines]));
                self.rpc
                    .model(
                        "sale.sale",
                        "write",
                        vec![
                            json!([sale]),
                            json!({"party": party, "invoice_address": invoice,
                                   "shipment_address": shipment, "lines": lines}),
                        ],
                    )
                    .await?;
                self.advance_sale(sale, "draft".into()).await
            }
            "processing" => self.amend_processing(op, sale, &reference).await,
            other => Err(permanent(format!(
                "sale {sale} (`{reference}`) is {other} in Tryton: it cannot be amended"
            ))),
        }
    }

    /// A processing sale: a `sale.amendment` of what changed (see the module doc).
    async fn amend_processing(
        &self,
        op: &WriteOp,
        sale: i64,
        reference: &str,
    ) -> Result<WriteOutcome, DeliveryError> {
        let row = &self
            .read_sale(
                sale,
                &[
                    "lines",
                    "shipments",
                    "party",
                    "invoice_address",
                    "shipment_address",
                    "invoices",
                ],
            )
            .await?;
        let (_, left) = self.sale_shipments(row).await?;
        if left {
            return Err(permanent(format!(
                "sale {sale} (`{reference}`) has goods picked or shipped in Tryton: an edit after shipment is refused"
            )));
        }
        // What the order wants per SKU: total quantity and unit price.
        let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for (i, l) in op
            .payload
            .get("lines")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let sku = str_at(l, "/sku")
                .ok_or_else(|| permanent(format!("payload field `lines[{i}].sku` is required")))?;
            let q = l.get("quantity").and_then(Value::as_i64).unwrap_or(0);
            if q <= 0 {
                return Err(permanent(format!("lines[{i}].quantity must be positive")));
            }
            let price = l
                .get("unit_price_minor")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let e = want.entry(sku.to_string()).or_insert((0, price));
            e.0 += q;
        }
        if want.is_empty() {
            return Err(permanent("payload field `lines` must be a non-empty list"));
        }
        let lines = self
            .rpc
            .read_ctx(
                "sale.line",
                &ids_of(row.get("lines")),
                &[
                    "type",
                    "product",
                    "product.code",
                    "quantity",
                    "unit",
                    "unit_price",
                    "description",
                ],
                &json!({}),
            )
            .await?;
        let mut actions = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        // Lines whose SKU the order no longer has (or a SKU's second line): quantity 0, unless
        // an added SKU takes one over.
        let mut free: Vec<&Value> = Vec::new();
        for l in lines
            .iter()
            .filter(|l| l.get("type").and_then(Value::as_str) == Some("line"))
        {
            let Some(sku) = l.pointer("/product./code").and_then(Value::as_str) else {
                continue;
            };
            // The first line of a SKU carries the SKU's whole quantity.
            let Some(&(q, price)) = want.get(sku).filter(|_| seen.insert(sku.to_string())) else {
                free.push(l);
                continue;
            };
            let cur_price = l.get("unit_price").and_then(money_minor).unwrap_or(0);
            if qty(l.get("quantity")) == q && cur_price == price {
                continue;
            }
            actions.push(json!({
                "action": "line", "line": id_of(l), "product": l.get("product"),
                "quantity": q, "unit": l.get("unit"), "unit_price": minor_to_decimal(price),
                "description": l.get("description"),
            }));
        }
        // An added SKU: Tryton's amendment cannot add a line, but it can change a line's
        // product — a freed line is taken over.
        let mut free = free.into_iter();
        for (sku, &(q, price)) in want.iter().filter(|(s, _)| !seen.contains(*s)) {
            let Some(l) = free.next() else {
                return self
                    .cannot_amend(
                        row,
                        format!(
                            "sale {sale} (`{reference}`) is processing in Tryton and Tryton's sale amendment cannot add a line (SKU `{sku}`; no removed line to take over)"
                        ),
                    )
                    .await;
            };
            let (product, unit) = self
                .product_by_code(sku, op)
                .await?
                .ok_or_else(|| permanent(format!("no product with code `{sku}` in Tryton")))?;
            actions.push(json!({
                "action": "line", "line": id_of(l), "product": product, "quantity": q,
                "unit": unit, "unit_price": minor_to_decimal(price), "description": null,
            }));
        }
        for l in free {
            if qty(l.get("quantity")) != 0 {
                actions.push(json!({
                    "action": "line", "line": id_of(l), "product": l.get("product"),
                    "quantity": 0, "unit": l.get("unit"), "unit_price": l.get("unit_price"),
                    "description": l.get("description"),
                }));
            }
        }
        let party = self.order_party(op).await?;
        let (invoice, shipment) = self.order_addresses(party, &op.payload).await?;
        let cur = |k: &str| row.get(k).and_then(Value::as_i64);
        if cur("party") != Some(party)
            || cur("invoice_address") != Some(invoice)
            || cur("shipment_address") != Some(shipment)
        {
            actions.push(json!({"action": "party", "party": party,
                                "invoice_address": invoice, "shipment_address": shipment}));
        }
        if actions.is_empty() {
            // Nothing changed (a replayed edit): no amendment.
            return self.advance_sale(sale, "processing".into()).await;
        }
        // Without module `sale_amendment` Tryton cannot change a processing sale at all.
        if let Err(DeliveryError::Permanent { reason }) = self
            .rpc
            .model("sale.amendment", "fields_get", vec![json!(["state"])])
            .await
        {
            return self
                .cannot_amend(
                    row,
                    format!(
                        "sale {sale} (`{reference}`) is processing and Tryton module \
                         `sale_amendment` is not activated, so it cannot be amended ({reason})"
                    ),
                )
                .await;
        }
        // A draft amendment of ours left by a crash between create and validate.
        let stale = self
            .rpc
            .search_read(
                "sale.amendment",
                json!([
                    ["sale", "=", sale],
                    ["state", "=", "draft"],
                    ["description", "=", AMENDMENT]
                ]),
                None,
                json!([["id", "ASC"]]),
                &["id"],
            )
            .await?;
        let stale: Vec<i64> = stale.iter().filter_map(id_of).collect();
        if !stale.is_empty() {
            self.rpc
                .model("sale.amendment", "delete", vec![json!(stale)])
                .await?;
        }
        let amendment = self
            .create_one(
                "sale.amendment",
                json!({"sale": sale, "description": AMENDMENT,
                       "lines": [["create", actions]]}),
            )
            .await?;
        self.rpc
            .model(
                "sale.amendment",
                "validate_amendment",
                vec![json!([amendment])],
            )
            .await?;
        self.advance_sale(sale, "processing".into()).await
    }

    /// A processing sale (nothing picked) that cannot take this edit: [`WriteOutcome::CannotAmend`]
    /// so that the engine may cancel and replace it — unless an invoice of it is posted, which
    /// makes the cancel fail as well (see [`Self::cancel_processing`]): then permanent.
    async fn cannot_amend(&self, sale: &Value, why: String) -> Result<WriteOutcome, DeliveryError> {
        let invoices = self.invoice_states(sale).await?;
        if let Some(posted) = first_posted(&invoices) {
            return Err(permanent(format!(
                "{why}; nor can it be cancelled and replaced: its invoice {} is {}",
                id_of(posted).unwrap_or(0),
                state_of(posted)
            )));
        }
        Ok(WriteOutcome::CannotAmend { reason: why })
    }

    /// The `state` of each invoice of `sale` (a `sale.sale` row read with `invoices`).
    async fn invoice_states(&self, sale: &Value) -> Result<Vec<Value>, DeliveryError> {
        self.rpc
            .read_ctx(
                "account.invoice",
                &ids_of(sale.get("invoices")),
                &["state"],
                &json!({}),
            )
            .await
    }

    /// Cancel the sale of this order (see the module doc for what each state becomes).
    pub(super) async fn cancel_sale(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let reference = sale_reference(op)?;
        let Some((sale, state)) = self.sale_of(op).await? else {
            return Err(permanent(format!(
                "no sale with reference `{reference}` to cancel"
            )));
        };
        let call = |m: &'static str| self.rpc.model("sale.sale", m, vec![json!([sale])]);
        match state.as_str() {
            "cancelled" => {}
            "draft" | "quotation" => {
                call("cancel").await?;
            }
            "confirmed" => {
                call("draft").await?;
                call("cancel").await?;
            }
            "processing" | "done" => {
                self.cancel_processing(sale, &state, &reference).await?;
            }
            other => {
                return Err(permanent(format!(
                    "sale {sale} (`{reference}`) is {other} in Tryton: it cannot be cancelled"
                )))
            }
        }
        Ok(WriteOutcome::Done {
            external_id: Some(sale.to_string()),
            version: None,
        })
    }

    async fn cancel_processing(
        &self,
        sale: i64,
        state: &str,
        reference: &str,
    ) -> Result<(), DeliveryError> {
        let row = &self
            .read_sale(
                sale,
                &[
                    "lines",
                    "shipments",
                    "invoices",
                    "shipment_state",
                    "invoice_state",
                    "invoices_ignored",
                ],
            )
            .await?;
        let s = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or("");
        if state == "done" {
            // Cancelled here before (nothing shipped, nothing invoiced): done. Else it really
            // was fulfilled.
            if s("shipment_state") == "none" && s("invoice_state") == "none" {
                return Ok(());
            }
            return Err(permanent(format!(
                "sale {sale} (`{reference}`) is done in Tryton (shipped and invoiced): it cannot be cancelled"
            )));
        }
        let (shipments, left) = self.sale_shipments(row).await?;
        if left {
            return Err(permanent(format!(
                "sale {sale} (`{reference}`) has goods picked or shipped in Tryton: it cannot be cancelled (return them instead)"
            )));
        }
        let invoices = self.invoice_states(row).await?;
        if let Some(posted) = first_posted(&invoices) {
            return Err(permanent(format!(
                "sale {sale} (`{reference}`) has invoice {} {} in Tryton: it cannot be cancelled (refund it with a credit note instead)",
                id_of(posted).unwrap_or(0),
                state_of(posted)
            )));
        }
        let open: Vec<i64> = shipments
            .iter()
            .filter(|s| state_of(s) != "cancelled")
            .filter_map(id_of)
            .collect();
        if !open.is_empty() {
            self.rpc
                .model("stock.shipment.out", "cancel", vec![json!(open)])
                .await?;
        }
        let drafts: Vec<i64> = invoices
            .iter()
            .filter(|i| state_of(i) == "draft")
            .filter_map(id_of)
            .collect();
        if !drafts.is_empty() {
            self.rpc
                .model("account.invoice", "cancel", vec![json!(drafts)])
                .await?;
        }
        // Mark the cancelled moves and invoices as ignored (the exception wizards' effect), so
        // Tryton neither recreates them nor reports an exception.
        let lines = self
            .rpc
            .read_ctx(
                "sale.line",
                &ids_of(row.get("lines")),
                &["moves", "moves_ignored"],
                &json!({}),
            )
            .await?;
        let moves: Vec<i64> = lines.iter().flat_map(|l| ids_of(l.get("moves"))).collect();
        let move_states = self
            .rpc
            .read_ctx("stock.move", &moves, &["state"], &json!({}))
            .await?;
        let cancelled_moves: Vec<i64> = move_states
            .iter()
            .filter(|m| state_of(m) == "cancelled")
            .filter_map(id_of)
            .collect();
        for l in &lines {
            let ignored = ids_of(l.get("moves_ignored"));
            let add: Vec<i64> = ids_of(l.get("moves"))
                .into_iter()
                .filter(|m| cancelled_moves.contains(m) && !ignored.contains(m))
                .collect();
            if let (Some(id), false) = (id_of(l), add.is_empty()) {
                self.rpc
                    .model(
                        "sale.line",
                        "write",
                        vec![json!([id]), json!({"moves_ignored": [["add", add]]})],
                    )
                    .await?;
            }
        }
        let ignored = ids_of(row.get("invoices_ignored"));
        let add: Vec<i64> = ids_of(row.get("invoices"))
            .into_iter()
            .filter(|i| !ignored.contains(i))
            .collect();
        if !add.is_empty() {
            self.rpc
                .model(
                    "sale.sale",
                    "write",
                    vec![json!([sale]), json!({"invoices_ignored": [["add", add]]})],
                )
                .await?;
        }
        self.rpc
            .model("sale.sale", "process", vec![json!([sale])])
            .await?;
        Ok(())
    }
}

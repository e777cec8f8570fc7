//! Channel refunds into Tryton: credit notes, and customer returns when goods come back.
//!
//! What a canonical refund (`Kind::Refund`, op `create`) becomes in Tryton 8.2:
//! - **without `restock`, or without lines** — a *credit note*: a customer invoice
//!   (`account.invoice`, type `out`) with negative lines, crediting the sale's invoice:
//!   - by lines: one line per refunded SKU, quantity `-q` at the unit price, account and taxes
//!     of the sale's invoice line of that SKU (its `origin` is that invoice line, as Tryton's
//!     own "Credit" action makes it); the refund's `amount_minor` is the channel's figure and
//!     is not used (the credit is the lines at the order's prices);
//!   - by amount (no lines): one line without product, quantity `-1`, unit price = the amount,
//!     on the revenue account of the invoice's first line.
//!
//!   The credit note is posted when the invoice it credits is posted (or paid); it stays a
//!   draft beside a draft invoice.
//! - **`restock` with lines** — a *return sale*: what Tryton's "Return Sale" wizard
//!   (`sale.return_sale`) makes, a sale with `origin` = the original sale and the refunded
//!   lines at negative quantities and the order's unit prices, quoted and confirmed. Processing
//!   it Tryton creates the credit note (a draft customer invoice, posted here when the original
//!   invoice is posted) and a customer return shipment (`stock.shipment.out.return`, draft) —
//!   stock re-enters only when the warehouse receives that shipment in Tryton, and the stock
//!   read then reports it like any other done move.
//!
//! Idempotency: the credit note (and the return sale) carry `reference` =
//! `refund:<order key>:<refund id>` (a refund id is only unique within its channel — the
//! sandbox store numbers them `re_1`, `re_2`, … — and one Tryton serves every channel) and are
//! looked up by it before anything is created; a return sale found half-way (a crash between
//! create and confirm) is moved on, never duplicated.
//!
//! The sale is found by the engine's `order:<key>` ref, else among the sales with `reference` =
//! the order key or a cancel-and-replace replacement `<key>~<n>`: the newest one still live.
//!
//! Must never: credit more of a SKU than the sale has, credit a cancelled invoice, or create a
//! second credit note or return for one refund id.

use super::mapping::{minor_to_decimal, money_minor, qty};
use super::write::{copy_set_fields, id_of, ids_of, permanent, state_of, str_at};
use super::TrytonConnector;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The `reference` Concord gives the credit note and return sale of refund `id` of `order`.
pub fn refund_reference(order: &str, id: &str) -> String {
    format!("refund:{order}:{id}")
}

/// A refund's lines as (SKU, quantity), quantities summed per SKU; each must be positive.
fn refund_lines(p: &Value) -> Result<BTreeMap<String, i64>, DeliveryError> {
    let mut out = BTreeMap::new();
    for (i, l) in p
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
        *out.entry(sku.to_string()).or_insert(0) += q;
    }
    Ok(out)
}

impl TrytonConnector {
    pub(super) async fn create_refund(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let p = &op.payload;
        // The record's own id, never `op.key` (`{order}:{id}`, see `concord_core::order_scoped_key`).
        let id = str_at(p, "/id").ok_or_else(|| permanent("payload field `id` is required"))?;
        let order =
            str_at(p, "/order").ok_or_else(|| permanent("payload field `order` is required"))?;
        let lines = refund_lines(p)?;
        let restock = p.get("restock").and_then(Value::as_bool).unwrap_or(false);
        let marker = refund_reference(order, id);
        let sale = self.order_sale(op, order).await?;
        let doc = if restock && !lines.is_empty() {
            self.return_sale(sale, order, &marker, &lines).await?
        } else {
            let amount = p.get("amount_minor").and_then(Value::as_i64).unwrap_or(0);
            self.credit_note(sale, order, &marker, &lines, amount)
                .await?
        };
        Ok(WriteOutcome::Done {
            external_id: Some(doc.to_string()),
            version: None,
        })
    }

    /// The sale of canonical order `order` (see the module doc): a refund credits it, a payment
    /// pays its invoice.
    pub(super) async fn order_sale(&self, op: &WriteOp, order: &str) -> Result<i64, DeliveryError> {
        if let Some(id) = op
            .refs
            .get(&format!("order:{order}"))
            .and_then(|i| i.parse::<i64>().ok())
        {
            return Ok(id);
        }
        // The order's sale, or its cancel-and-replace replacements `{order}~n`: the newest
        // one still live (not cancelled, nor ended with nothing shipped or invoiced).
        let rows = self
            .rpc
            .search_read(
                "sale.sale",
                json!([
                    "OR",
                    ["reference", "=", order],
                    ["reference", "like", format!("{order}~%")]
                ]),
                None,
                json!([["id", "DESC"]]),
                &["reference", "state", "shipment_state", "invoice_state"],
            )
            .await?;
        let s = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let ours: Vec<&Value> = rows
            .iter()
            .filter(|r| {
                let reference = s(r, "reference");
                reference == order
                    || reference
                        .strip_prefix(order)
                        .and_then(|rest| rest.strip_prefix('~'))
                        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            })
            .collect();
        let live = ours.iter().find(|r| {
            let ended_empty = s(r, "state") == "done"
                && s(r, "shipment_state") == "none"
                && s(r, "invoice_state") == "none";
            s(r, "state") != "cancelled" && !ended_empty
        });
        live.or(ours.first())
            .and_then(|r| id_of(r))
            .ok_or_else(|| permanent(format!("no sale with reference `{order}` in Tryton")))
    }

    /// The sale's invoices that are not cancelled (nor credit notes), posted/paid ones first.
    pub(super) async fn sale_invoices(&self, sale: i64) -> Result<Vec<Value>, DeliveryError> {
        let rows = self
            .rpc
            .read_ctx("sale.sale", &[sale], &["invoices"], &json!({}))
            .await?;
        let ids = ids_of(rows.first().and_then(|r| r.get("invoices")));
        let mut invoices: Vec<Value> = self
            .rpc
            .read_ctx(
                "account.invoice",
                &ids,
                &[
                    "state",
                    "party",
                    "invoice_address",
                    "company",
                    "currency",
                    "account",
                    "journal",
                    "payment_term",
                    "lines",
                    "total_amount",
                    "amount_to_pay",
                ],
                &json!({}),
            )
            .await?
            .into_iter()
            .filter(|i| state_of(i) != "cancelled")
            .filter(|i| i.get("total_amount").and_then(money_minor).unwrap_or(0) >= 0)
            .collect();
        invoices.sort_by_key(|i| !matches!(state_of(i), "posted" | "paid"));
        Ok(invoices)
    }

    async fn post_if(&self, invoices: &[i64], posted: bool) -> Result<(), DeliveryError> {
        if !posted || invoices.is_empty() {
            return Ok(());
        }
        let rows = self
            .rpc
            .read_ctx("account.invoice", invoices, &["state"], &json!({}))
            .await?;
        let drafts: Vec<i64> = rows
            .iter()
            .filter(|r| matches!(state_of(r), "draft" | "validated"))
            .filter_map(id_of)
            .collect();
        if !drafts.is_empty() {
            self.rpc
                .model("account.invoice", "post", vec![json!(drafts)])
                .await?;
        }
        Ok(())
    }

    async fn credit_note(
        &self,
        sale: i64,
        order: &str,
        marker: &str,
        lines: &BTreeMap<String, i64>,
        amount: i64,
    ) -> Result<i64, DeliveryError> {
        let invoices = self.sale_invoices(sale).await?;
        let Some(inv) = invoices.first() else {
            return Err(permanent(format!(
                "sale {sale} (`{order}`) has no invoice in Tryton to credit"
            )));
        };
        let posted = matches!(state_of(inv), "posted" | "paid");
        let existing = self
            .rpc
            .search_read(
                "account.invoice",
                json!([["reference", "=", marker], ["type", "=", "out"]]),
                Some(1),
                json!([["id", "ASC"]]),
                &["id"],
            )
            .await?;
        if let Some(id) = existing.first().and_then(id_of) {
            self.post_if(&[id], posted).await?;
            return Ok(id);
        }
        let inv_lines = self
            .rpc
            .read_ctx(
                "account.invoice.line",
                &ids_of(inv.get("lines")),
                &[
                    "type",
                    "product",
                    "product.code",
                    "quantity",
                    "unit",
                    "unit_price",
                    "account",
                    "taxes",
                    "description",
                ],
                &json!({}),
            )
            .await?;
        let company = inv.get("company").cloned().unwrap_or(Value::Null);
        let currency = inv.get("currency").cloned().unwrap_or(Value::Null);
        let mut credit = Vec::new();
        if lines.is_empty() {
            if amount <= 0 {
                return Err(permanent(
                    "a refund without lines needs a positive `amount_minor`",
                ));
            }
            let account = inv_lines
                .iter()
                .find_map(|l| l.get("account").and_then(Value::as_i64))
                .ok_or_else(|| permanent(format!("invoice of sale {sale} has no lines")))?;
            credit.push(json!({"type": "line", "quantity": -1.0,
                               "unit_price": minor_to_decimal(amount), "account": account,
                               "description": format!("Refund for {order}"),
                               "company": company, "currency": currency}));
        } else {
            for (sku, q) in lines {
                let l = inv_lines
                    .iter()
                    .find(|l| l.pointer("/product./code").and_then(Value::as_str) == Some(sku))
                    .ok_or_else(|| {
                        permanent(format!(
                            "refund line `{sku}` is not on the invoice of sale {sale} (`{order}`)"
                        ))
                    })?;
                let invoiced = qty(l.get("quantity"));
                if *q > invoiced {
                    return Err(permanent(format!(
                        "refund line `{sku}`: {q} is more than the {invoiced} invoiced for `{order}`"
                    )));
                }
                credit.push(json!({
                    "type": "line", "product": l.get("product"), "quantity": -(*q as f64),
                    "unit": l.get("unit"), "unit_price": l.get("unit_price"),
                    "account": l.get("account"), "taxes": [["add", ids_of(l.get("taxes"))]],
                    "origin": format!("account.invoice.line,{}", id_of(l).unwrap_or(0)),
                    "description": l.get("description"),
                    "company": company, "currency": currency,
                }));
            }
        }
        let mut note = json!({
            "type": "out", "reference": marker, "description": format!("Refund for {order}"),
            "lines": [["create", credit]],
        });
        copy_set_fields(
            &mut note,
            inv,
            &[
                "party",
                "invoice_address",
                "company",
                "currency",
                "account",
                "journal",
                "payment_term",
            ],
        );
        let id = self.create_one("account.invoice", note).await?;
        self.post_if(&[id], posted).await?;
        Ok(id)
    }

    async fn return_sale(
        &self,
        sale: i64,
        order: &str,
        marker: &str,
        lines: &BTreeMap<String, i64>,
    ) -> Result<i64, DeliveryError> {
        let posted = self
            .sale_invoices(sale)
            .await?
            .first()
            .is_some_and(|i| matches!(state_of(i), "posted" | "paid"));
        let ret = match self.find_sale(marker).await? {
            Some(found) => found,
            None => {
                let orig = &self
                    .read_sale(
                        sale,
                        &[
                            "party",
                            "invoice_address",
                            "shipment_address",
                            "warehouse",
                            "company",
                            "currency",
                            "payment_term",
                            "lines",
                        ],
                    )
                    .await?;
                let sale_lines = self
                    .rpc
                    .read_ctx(
                        "sale.line",
                        &ids_of(orig.get("lines")),
                        &[
                            "type",
                            "product",
                            "product.code",
                            "quantity",
                            "unit",
                            "unit_price",
                        ],
                        &json!({}),
                    )
                    .await?;
                let mut ret_lines = Vec::new();
                for (sku, q) in lines {
                    let of_sku: Vec<&Value> = sale_lines
                        .iter()
                        .filter(|l| l.get("type").and_then(Value::as_str) == Some("line"))
                        .filter(|l| {
                            l.pointer("/product./code").and_then(Value::as_str) == Some(sku)
                        })
                        .collect();
                    let sold: i64 = of_sku.iter().map(|l| qty(l.get("quantity"))).sum();
                    let Some(l) = of_sku.first() else {
                        return Err(permanent(format!(
                            "refund line `{sku}` is not on sale {sale} (`{order}`)"
                        )));
                    };
                    if *q > sold {
                        return Err(permanent(format!(
                            "refund line `{sku}`: {q} is more than the {sold} sold on `{order}`"
                        )));
                    }
                    ret_lines.push(json!({"type": "line", "product": l.get("product"),
                        "quantity": -(*q as f64), "unit": l.get("unit"),
                        "unit_price": l.get("unit_price")}));
                }
                let mut new = json!({
                    "reference": marker, "origin": format!("sale.sale,{sale}"),
                    "description": format!("Return for {order}"),
                    "lines": [["create", ret_lines]],
                });
                copy_set_fields(
                    &mut new,
                    orig,
                    &[
                        "party",
                        "invoice_address",
                        "shipment_address",
                        "warehouse",
                        "company",
                        "currency",
                        "payment_term",
                    ],
                );
                let id = self.create_one("sale.sale", new).await?;
                (id, "draft".to_string())
            }
        };
        let (ret, mut state) = ret;
        // A return is always confirmed: processing it makes the credit note and the return
        // shipment.
        let call = |m: &'static str| self.rpc.model("sale.sale", m, vec![json!([ret])]);
        if state == "draft" {
            call("quote").await?;
            state = "quotation".into();
        }
        if state == "quotation" {
            call("confirm").await?;
        }
        let rows = self
            .rpc
            .read_ctx("sale.sale", &[ret], &["invoices"], &json!({}))
            .await?;
        let notes = ids_of(rows.first().and_then(|r| r.get("invoices")));
        let unmarked: Vec<i64> = self
            .rpc
            .read_ctx(
                "account.invoice",
                &notes,
                &["state", "reference"],
                &json!({}),
            )
            .await?
            .iter()
            .filter(|n| state_of(n) == "draft")
            .filter(|n| n.get("reference").and_then(Value::as_str) != Some(marker))
            .filter_map(id_of)
            .collect();
        if !unmarked.is_empty() {
            self.rpc
                .model(
                    "account.invoice",
                    "write",
                    vec![json!(unmarked), json!({"reference": marker})],
                )
                .await?;
        }
        self.post_if(&notes, posted).await?;
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_lines_are_summed_per_sku_and_must_be_positive() {
        let p = json!({"lines": [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 2},
                                 {"sku": "A", "quantity": 3}]});
        let l = refund_lines(&p).unwrap();
        assert_eq!(l.get("A"), Some(&4));
        assert_eq!(l.get("B"), Some(&2));
        assert!(refund_lines(&json!({})).unwrap().is_empty());
        let e = refund_lines(&json!({"lines": [{"sku": "A", "quantity": 0}]})).unwrap_err();
        assert!(e.to_string().contains("lines[0].quantity"), "{e}");
        let e = refund_lines(&json!({"lines": [{"quantity": 1}]})).unwrap_err();
        assert!(e.to_string().contains("lines[0].sku"), "{e}");
        assert_eq!(refund_reference("web/1001", "re_1"), "refund:web/1001:re_1");
    }
}

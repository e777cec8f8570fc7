//! Channel payments into Tryton: a captured payment recorded against the sale's invoice.
//!
//! What a canonical payment (`Kind::Payment`, op `upsert`/`create`) becomes in Tryton 8.2: a
//! payment of the sale's *posted* customer invoice through Tryton's own "Pay" wizard
//! (`account.invoice.pay`, driven over JSON-RPC: `create` → `execute start` for the defaults →
//! `execute choice`, and for a partial payment `execute pay` with `type = partial` → `delete`),
//! with the payment method of option `payment_method` (else the company's only one). Tryton
//! posts an account move (origin = the invoice, description = `payment:<order>:<payment id>`)
//! whose line reconciles against the invoice: a full payment makes the invoice *paid*, which the
//! connector reads back as the order's captured payment.
//!
//! - Only `captured` payments move money: `authorized`, `failed` and `refunded` ones change
//!   nothing in Tryton (refunds are credit notes, see [`super::refund`]) and are answered done.
//! - The invoice still a draft (the accountant has not posted it): transient, retried — the
//!   payment is recorded once the invoice is posted. An invoice already paid, or a payment
//!   larger than what is left to pay: permanent, with the figures.
//! - Idempotency: the move is looked up by its description before the wizard runs, so a
//!   replayed payment is recorded once.
//!
//! Must never: post or otherwise change the invoice itself, or pay more than it is owed.

use super::mapping::{minor_to_decimal, money_minor};
use super::write::{permanent, str_at};
use super::TrytonConnector;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Map, Value};
use std::time::Duration;

const WIZARD: &str = "wizard.account.invoice.pay";

/// The description Concord gives the account move of payment `id` of `order`.
pub fn payment_reference(order: &str, id: &str) -> String {
    format!("payment:{order}:{id}")
}

/// A wizard view's defaults as writable values: related-record display keys (`company.`) and
/// the payee list dropped.
fn form_values(r: &Value) -> Map<String, Value> {
    r.pointer("/view/defaults")
        .and_then(Value::as_object)
        .map(|d| {
            d.iter()
                .filter(|(k, _)| !k.contains('.') && k.as_str() != "payees")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

impl TrytonConnector {
    pub(super) async fn record_payment(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
        let p = &op.payload;
        // The record's own id, never `op.key` (`{order}:{id}`, see `concord_core::order_scoped_key`).
        let id = str_at(p, "/id").ok_or_else(|| permanent("payload field `id` is required"))?;
        let order =
            str_at(p, "/order").ok_or_else(|| permanent("payload field `order` is required"))?;
        let status = str_at(p, "/status").unwrap_or("authorized");
        if status != "captured" {
            // Nothing moved: Tryton has no authorizations, and refunds are credit notes.
            return Ok(WriteOutcome::Done {
                external_id: None,
                version: None,
            });
        }
        let amount = p.get("amount_minor").and_then(Value::as_i64).unwrap_or(0);
        if amount <= 0 {
            return Err(permanent("payload field `amount_minor` must be positive"));
        }
        let marker = payment_reference(order, id);
        if let Some(m) = self.payment_move(&marker).await? {
            return Ok(WriteOutcome::Done {
                external_id: Some(m.to_string()),
                version: None,
            });
        }
        let sale = self.order_sale(op, order).await?;
        let invoices = self.sale_invoices(sale).await?;
        let Some(invoice) = invoices.first() else {
            return Err(permanent(format!(
                "sale {sale} (`{order}`) has no invoice in Tryton to record payment `{id}` against"
            )));
        };
        let inv_id = invoice.get("id").and_then(Value::as_i64).unwrap_or(0);
        let state = invoice.get("state").and_then(Value::as_str).unwrap_or("");
        match state {
            "posted" => {}
            "paid" => {
                return Err(permanent(format!(
                    "invoice {inv_id} of `{order}` is already paid in Tryton: payment `{id}` not recorded"
                )))
            }
            _ => {
                return Err(DeliveryError::Transient {
                    reason: format!(
                        "invoice {inv_id} of `{order}` is {state} in Tryton: payment `{id}` waits until it is posted"
                    ),
                    retry_after: Some(Duration::from_secs(60)),
                })
            }
        }
        let to_pay = invoice
            .get("amount_to_pay")
            .and_then(money_minor)
            .unwrap_or(0);
        if amount > to_pay {
            return Err(permanent(format!(
                "payment `{id}` of {amount} is more than the {to_pay} left to pay on invoice {inv_id} of `{order}`"
            )));
        }
        let method = self.payment_method().await?;
        let ctx = json!({"active_model": "account.invoice", "active_id": inv_id,
                         "active_ids": [inv_id]});
        let created = self
            .rpc
            .call(&format!("{WIZARD}.create"), vec![], Some(&ctx))
            .await?;
        let session = created
            .get(0)
            .cloned()
            .ok_or_else(|| DeliveryError::Transient {
                reason: format!("{WIZARD}.create answered {created}"),
                retry_after: None,
            })?;
        let result = self
            .run_pay_wizard(&session, &ctx, method, amount, &marker)
            .await;
        // The wizard session is dropped however it went.
        let _ = self
            .rpc
            .call(&format!("{WIZARD}.delete"), vec![session], Some(&ctx))
            .await;
        result?;
        let m = self
            .payment_move(&marker)
            .await?
            .ok_or_else(|| DeliveryError::Transient {
                reason: format!("the Pay wizard ran but no move `{marker}` was found"),
                retry_after: None,
            })?;
        Ok(WriteOutcome::Done {
            external_id: Some(m.to_string()),
            version: None,
        })
    }

    async fn run_pay_wizard(
        &self,
        session: &Value,
        ctx: &Value,
        method: i64,
        amount: i64,
        marker: &str,
    ) -> Result<(), DeliveryError> {
        let execute = format!("{WIZARD}.execute");
        let exec = |data: Value, state: &'static str| {
            self.rpc.call(
                &execute,
                vec![session.clone(), data, json!(state)],
                Some(ctx),
            )
        };
        let start_view = exec(json!({}), "start").await?;
        let mut start = form_values(&start_view);
        start.insert("payment_method".into(), json!(method));
        start.insert("amount".into(), minor_to_decimal(amount));
        start.insert("description".into(), json!(marker));
        let after = exec(json!({"start": start}), "choice").await?;
        if after.get("view").is_some() {
            // Less than the invoice's remainder: Tryton asks; a partial payment.
            let mut ask = form_values(&after);
            ask.insert("type".into(), json!("partial"));
            exec(json!({"start": start, "ask": ask}), "pay").await?;
        }
        Ok(())
    }

    /// The posted move of a payment recorded before, by its description.
    async fn payment_move(&self, marker: &str) -> Result<Option<i64>, DeliveryError> {
        self.rpc
            .first_id(
                "account.move",
                json!([
                    ["description", "=", marker],
                    ["origin", "like", "account.invoice,%"]
                ]),
            )
            .await
    }

    /// The payment method channel payments are recorded with (option `payment_method`, else
    /// the only one there is).
    async fn payment_method(&self) -> Result<i64, DeliveryError> {
        let domain = match &self.opts.payment_method {
            Some(name) => json!([["name", "=", name]]),
            None => json!([]),
        };
        let rows = self
            .rpc
            .search_read(
                "account.invoice.payment.method",
                domain,
                Some(2),
                json!([["id", "ASC"]]),
                &["id"],
            )
            .await?;
        let ids: Vec<i64> = rows
            .iter()
            .filter_map(|r| r.get("id").and_then(Value::as_i64))
            .collect();
        match (&self.opts.payment_method, ids.as_slice()) {
            (_, [one]) | (Some(_), [one, ..]) => Ok(*one),
            (Some(name), []) => Err(permanent(format!(
                "options.payment_method: Tryton has no invoice payment method `{name}`"
            ))),
            (None, []) => Err(permanent(
                "Tryton has no invoice payment method to record channel payments with (Accounting › Configuration › Payment Methods), or set options.payment_method",
            )),
            (None, _) => Err(permanent(
                "Tryton has several invoice payment methods: set options.payment_method to the one for channel payments",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wizard_defaults_keep_only_writable_values() {
        let r = json!({"view": {"defaults": {"amount": 1, "company": 1, "company.": {"rec_name": "X"},
                                             "payees": [2], "payee": 2}}});
        let v = form_values(&r);
        let mut keys: Vec<&str> = v.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["amount", "company", "payee"]);
        assert!(form_values(&json!({})).is_empty());
        assert_eq!(payment_reference("web/1", "pay_1"), "payment:web/1:pay_1");
    }
}

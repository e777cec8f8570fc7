//! Prices: the variant's price in the channel's currency, or a per-currency price.
//!
//! Must never write a scoped price (customer, customer group, validity dates) or a tiered list:
//! a variant has one price per currency, so it would become every buyer's price. Those are
//! permanent failures naming the list (dead letters), never a wrong price.

use super::{done, permanent, str_at};
use crate::vendure::VendureConnector;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};

impl VendureConnector {
    pub(super) async fn write_price(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
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
}

//! Writing canonical records into Tryton: this module routes each write to its kind and holds
//! the helpers every writer shares (reading rows, the sale reference of an order op). Sales from
//! channel orders are `sales` (idempotent on the sale's `reference`), customers `parties`
//! (correlated by e-mail), products `products` (by code, for migrations); amendments and
//! cancellations are [`super::lifecycle`], refunds [`super::refund`], channel payments
//! [`super::payment`].
//!
//! Must never: create a sale whose reference already exists, take another order's sale as this
//! order's, or guess a product: an unknown SKU is a permanent failure naming it.

mod parties;
mod products;
mod sales;

use super::TrytonConnector;
use concord_core::Kind;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};

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
}

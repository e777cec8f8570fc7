//! Products by code (the SKU, a natural key): looked up for sale lines, and written for
//! migrations — found → name and active updated on its template; else a goods template with one
//! product is created.
//!
//! Must never guess a product: a code Tryton does not have is no product (the caller says which
//! line named it), never another product's.

use super::permanent;
use super::str_at;
use crate::tryton::mapping::minor_to_decimal;
use crate::tryton::TrytonConnector;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};

impl TrytonConnector {
    pub(in crate::tryton) async fn product_by_code(
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

    /// Products by code: found → name/active updated on its template; else a goods template
    /// (unit "Unit", list price 0, the first accounting category) with one product is created.
    pub(super) async fn upsert_product(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
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

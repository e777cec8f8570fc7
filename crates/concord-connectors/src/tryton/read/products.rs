//! Products (`product.product`: code = SKU, name, active, description) and their list price
//! (`list_price_used`, list `default`, the company's currency) — the two kinds read from the
//! same rows. Price lists proper are `crate::tryton::prices`.
//!
//! Must never invent a SKU or a price: a product without a code is keyed by its id (see
//! `product_external_id`), one without a list price has no `price` record.

use super::id_of;
use crate::tryton::mapping::{
    format_ts, price_record, product_external_id, product_record, sku_of,
};
use crate::tryton::TrytonConnector;
use chrono::NaiveDateTime;
use concord_core::Kind;
use concord_engine::connector::{Captured, DeliveryError};
use serde_json::json;

impl TrytonConnector {
    pub(in crate::tryton) async fn products_of(
        &self,
        kind: Kind,
        products: &[i64],
        version: Option<NaiveDateTime>,
    ) -> Result<Vec<Captured>, DeliveryError> {
        if products.is_empty() {
            return Ok(Vec::new());
        }
        let currency = if kind == Kind::Price {
            self.directory(false).await?.currency
        } else {
            String::new()
        };
        let rows = self
            .rpc
            .read_ctx(
                "product.product",
                products,
                &["code", "name", "active", "description", "list_price_used"],
                &json!({}),
            )
            .await?;
        let version = version.map(format_ts);
        Ok(rows
            .iter()
            .filter_map(|r| {
                let id = id_of(r)?;
                let sku = sku_of(r);
                let record = match kind {
                    Kind::Price => price_record(&sku, &currency, r.get("list_price_used")?)?,
                    _ => product_record(r),
                };
                Some(Captured {
                    kind,
                    external_id: product_external_id(id, &sku),
                    version: version.clone(),
                    record,
                })
            })
            .collect())
    }
}

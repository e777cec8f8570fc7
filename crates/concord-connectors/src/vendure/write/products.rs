//! Products and variants by SKU: a variant found by SKU is updated (and its product's name and
//! description); else a product is created with one variant. A product left without a variant
//! by a crash is found again by its slug only when it has no variant: a product under that slug
//! with variants belongs to another SKU (two SKUs can share a slug, `A-1` and `a.1`), so the new
//! one gets a slug of its own, derived from the SKU (`<slug>-<hash>`), which a retry finds again
//! the same way.
//!
//! Must never create a second variant for one SKU (the SKU is looked up first), nor add a
//! variant to another SKU's product.

use super::{done, permanent, str_at};
use crate::vendure::VendureConnector;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};

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
    pub(super) async fn upsert_product(&self, op: &WriteOp) -> Result<WriteOutcome, DeliveryError> {
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

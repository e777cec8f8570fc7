//! Reading Vendure's stock back (a full listing, for reconciliation and dry runs): every
//! product variant's stock levels, one record per SKU and stock location,
//! `{sku, location, available}` with `available = stockOnHand − stockAllocated` — Vendure's
//! saleable figure, the one the connector writes (see `write`; Vendure's `stockOnHand` is not
//! the ERP's on hand, so it is not returned as `on_hand`).
//! Locations carry their Concord names: `options.stock_locations` read backwards (by id or by
//! name), else Vendure's own name.
//!
//! Paged by offset over `productVariants` sorted by id (Vendure's ID filters have no
//! "greater than"); the cursor is the offset of the next page. A variant created or deleted
//! between two pages can shift a row across a page boundary: a listing is not one snapshot,
//! which reconciliation allows for (the next run reads it again).
//!
//! Must never: invent a figure (a level without both numbers is skipped, not zero).

use super::super::VendureConnector;
use concord_core::Kind;
use concord_engine::connector::{Captured, DeliveryError, Page, ReadRequest};
use serde_json::{json, Value};

const QUERY: &str = "query($skip:Int,$take:Int){ productVariants(options:{sort:{id:ASC}, \
    skip:$skip, take:$take}){ totalItems items { id sku stockLevels { stockOnHand \
    stockAllocated stockLocation { id name } } } } }";

impl VendureConnector {
    /// One page of stock records (see the module docs).
    pub(crate) async fn stock_snapshot(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        let skip = match req.cursor {
            None | Some("") => 0u64,
            Some(c) => c.parse::<u64>().map_err(|_| DeliveryError::Permanent {
                reason: format!("bad vendure stock listing cursor `{c}`"),
            })?,
        };
        let take = req.limit.clamp(1, self.list_limit.max(1));
        let data = self
            .gql
            .query(QUERY, json!({"skip": skip, "take": take}))
            .await?;
        let list = data
            .get("productVariants")
            .ok_or_else(|| DeliveryError::Transient {
                reason: "Vendure answered `productVariants` without a list".into(),
                retry_after: None,
            })?;
        let items = list
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let total = list.get("totalItems").and_then(Value::as_u64).unwrap_or(0);
        let mut records = Vec::new();
        for v in &items {
            records.extend(self.variant_stock(v));
        }
        let next = skip + items.len() as u64;
        let more = !items.is_empty() && next < total;
        Ok(Page {
            records,
            cursor: more.then(|| next.to_string()),
            more,
        })
    }

    /// One variant's stock records, one per stock location.
    fn variant_stock(&self, v: &Value) -> Vec<Captured> {
        let Some(sku) = v
            .get("sku")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return Vec::new();
        };
        let levels = v.get("stockLevels").and_then(Value::as_array);
        levels
            .into_iter()
            .flatten()
            .filter_map(|l| {
                let on_hand = l.get("stockOnHand").and_then(Value::as_i64)?;
                let allocated = l.get("stockAllocated").and_then(Value::as_i64)?;
                let id = l.pointer("/stockLocation/id").and_then(Value::as_str)?;
                let name = l
                    .pointer("/stockLocation/name")
                    .and_then(Value::as_str)
                    .unwrap_or(id);
                let location = self.concord_location(id, name);
                Some(Captured {
                    kind: Kind::Stock,
                    external_id: format!("{sku}@{location}"),
                    version: None,
                    record: json!({"sku": sku, "location": location,
                                   "available": on_hand - allocated}),
                })
            })
            .collect()
    }

    /// The Concord name of a Vendure stock location: the `options.stock_locations` entry naming
    /// it (by id or by name), else its own name.
    fn concord_location(&self, id: &str, name: &str) -> String {
        self.opts
            .stock_locations
            .iter()
            .find(|(_, target)| target.as_str() == id || target.as_str() == name)
            .map(|(concord, _)| concord.clone())
            .unwrap_or_else(|| name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_engine::connector::EndpointSpec;
    use std::time::Duration;

    fn connector() -> VendureConnector {
        VendureConnector::new(&EndpointSpec {
            name: "vendure".into(),
            connector: "vendure".into(),
            url: "http://127.0.0.1:1".into(),
            webhook_secret: None,
            timeout: Duration::from_secs(1),
            max_response_bytes: 1 << 20,
            allow_insecure_http: false,
            options: json!({"password": "p",
                            "stock_locations": {"default": "Default Stock Location", "WH2": "2"}}),
        })
        .expect("connector")
    }

    #[test]
    fn levels_become_saleable_figures_under_their_concord_names() {
        let c = connector();
        let v = json!({"id": "7", "sku": "SKU-1", "stockLevels": [
            {"stockOnHand": 12, "stockAllocated": 3,
             "stockLocation": {"id": "1", "name": "Default Stock Location"}},
            {"stockOnHand": 5, "stockAllocated": 0, "stockLocation": {"id": "2", "name": "Back room"}},
            {"stockOnHand": 4, "stockAllocated": 1, "stockLocation": {"id": "9", "name": "Pop-up"}},
            // Without a figure: skipped, never read as zero.
            {"stockOnHand": null, "stockAllocated": 0, "stockLocation": {"id": "3", "name": "X"}}
        ]});
        let got: Vec<(String, Value)> = c
            .variant_stock(&v)
            .into_iter()
            .map(|r| (r.external_id, r.record))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "SKU-1@default".to_string(),
                    json!({"sku": "SKU-1", "location": "default", "available": 9})
                ),
                (
                    "SKU-1@WH2".to_string(),
                    json!({"sku": "SKU-1", "location": "WH2", "available": 5})
                ),
                (
                    "SKU-1@Pop-up".to_string(),
                    json!({"sku": "SKU-1", "location": "Pop-up", "available": 3})
                ),
            ]
        );
        assert!(c
            .variant_stock(&json!({"id": "8", "sku": "", "stockLevels": []}))
            .is_empty());
        assert!(c.variant_stock(&json!({"id": "8"})).is_empty());
    }

    #[test]
    fn stock_is_listed_and_nothing_else() {
        let caps = concord_engine::connector::Connector::capabilities(&connector());
        assert!(caps.kind(Kind::Stock).read.snapshot);
        assert!(!caps.kind(Kind::Stock).read.changes);
        assert!(!caps.kind(Kind::Product).read.snapshot);
    }
}

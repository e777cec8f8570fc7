//! Reading Vendure: orders (and their payments and refunds) and customers changed since a cursor,
//! by polling the Admin API's list queries filtered and sorted on `updatedAt`; and stock as a
//! full listing ([`stock`], for reconciliation and dry runs). This module says
//! what is read per kind and turns rows into records; how the cursor pages without skipping or
//! stalling on second-precision timestamps is [`cursor`].
//!
//! Refunds are read from the orders (`payments { refunds { … } }`) with the orders' cursor.
//! Vendure 3.7's `refundOrder` does not save the order row, so a refund alone would not move the
//! order's `updatedAt`: the project's Vendure setup installs a refund process
//! (`scripts/vendure/concord-refunds.js`, in `paymentOptions.refundProcess`) that stamps the
//! order's `updatedAt` when a refund is created or changes state. Without it, a refund is read
//! only with the order's next change.
//!
//! Orders: `orders(options: {filter: {active: {eq: false}, updatedAt: {after: …}}, sort:
//! {updatedAt: ASC}, take})` — `active: false` leaves out carts (an order stops being active
//! when it is placed), so every placed order and every later change of it (payment settled,
//! fulfilled, cancelled) is read.
//!
//! Must never: drop an invalid record (the engine validates and dead-letters it), nor read a
//! kind through a list query that does not carry it.

mod cursor;
mod stock;

use super::mapping::{
    customer_record, format_ts, order_record, payment_records, refund_records, ts_minus,
};
use super::VendureConnector;
use concord_core::Kind;
use concord_engine::connector::{Captured, DeliveryError, Page, ReadRequest};
use cursor::{changed, Limits, ListSource, Sort, Window};
use serde_json::{json, Value};
use std::time::Duration;

/// The order fields read (for [`order_record`]).
pub const ORDER_FIELDS: &str = "id code state active orderPlacedAt updatedAt currencyCode \
    totalWithTax customer { id emailAddress firstName lastName } \
    shippingAddress { fullName company streetLine1 streetLine2 city province postalCode countryCode } \
    billingAddress { fullName company streetLine1 streetLine2 city province postalCode countryCode } \
    lines { id quantity orderPlacedQuantity unitPriceWithTax productVariant { id sku } } \
    payments { id method amount state \
    refunds { id total reason state lines { orderLineId quantity } } }";

const CUSTOMER_FIELDS: &str = "id emailAddress firstName lastName phoneNumber updatedAt \
    addresses { fullName streetLine1 streetLine2 city province postalCode country { code } }";

struct ListQuery {
    /// `orders` / `customers`.
    list: &'static str,
    filter_type: &'static str,
    base_filter: Value,
    fields: &'static str,
}

/// Vendure's Admin API as a [`ListSource`] for one list.
struct Admin<'a> {
    c: &'a VendureConnector,
    q: &'a ListQuery,
}

impl ListSource for Admin<'_> {
    async fn list(&self, w: &Window) -> Result<Vec<Value>, DeliveryError> {
        let q = self.q;
        let mut filter = q.base_filter.clone();
        let mut range = serde_json::Map::new();
        if let Some(a) = w.from {
            // `after` is strict: the millisecond before takes in rows stamped `from` itself.
            range.insert(
                "after".into(),
                json!(format_ts(ts_minus(a, Duration::from_millis(1)))),
            );
        }
        if let Some(b) = w.until {
            range.insert("before".into(), json!(format_ts(b)));
        }
        if !range.is_empty() {
            filter["updatedAt"] = Value::Object(range);
        }
        let sort = match w.sort {
            Sort::UpdatedAsc => json!({"updatedAt": "ASC"}),
            Sort::UpdatedDesc => json!({"updatedAt": "DESC"}),
            Sort::IdAsc => json!({"id": "ASC"}),
        };
        let query = format!(
            "query($f:{ft},$s:{st},$skip:Int,$take:Int){{ {list}(options:{{filter:$f, sort:$s, skip:$skip, take:$take}}){{ items {{ {fields} }} }} }}",
            ft = q.filter_type,
            st = q.filter_type.replace("FilterParameter", "SortParameter"),
            list = q.list,
            fields = q.fields
        );
        let data = self
            .c
            .gql
            .query(
                &query,
                json!({"f": filter, "s": sort, "skip": w.skip, "take": w.take}),
            )
            .await?;
        data.pointer(&format!("/{}/items", q.list))
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| DeliveryError::Transient {
                reason: format!("Vendure answered `{}` without items", q.list),
                retry_after: None,
            })
    }
}

impl VendureConnector {
    pub(super) async fn changes(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        let q = match req.kind {
            Kind::Order | Kind::Payment | Kind::Refund => ListQuery {
                list: "orders",
                filter_type: "OrderFilterParameter",
                base_filter: json!({"active": {"eq": false}}),
                fields: ORDER_FIELDS,
            },
            Kind::Customer => ListQuery {
                list: "customers",
                filter_type: "CustomerFilterParameter",
                base_filter: json!({}),
                fields: CUSTOMER_FIELDS,
            },
            other => {
                return Err(DeliveryError::Permanent {
                    reason: format!("the vendure connector does not read {other} records"),
                })
            }
        };
        let limits = Limits {
            page: req.limit,
            cap: self.list_limit,
        };
        let (rows, cursor, more) =
            changed(&Admin { c: self, q: &q }, req.cursor, req.overlap, limits).await?;
        let cursor = cursor.map(|c| c.format());
        let mut records = Vec::new();
        for r in &rows {
            let id = r
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            match req.kind {
                Kind::Order => records.push(Captured {
                    kind: Kind::Order,
                    external_id: id,
                    version: None,
                    record: order_record(r),
                }),
                Kind::Payment => {
                    let code = r.get("code").and_then(Value::as_str).unwrap_or_default();
                    let key = format!("{}/{code}", self.endpoint);
                    for (pid, rec) in payment_records(r, &key) {
                        records.push(Captured {
                            kind: Kind::Payment,
                            external_id: pid,
                            version: None,
                            record: rec,
                        });
                    }
                }
                Kind::Refund => {
                    let code = r.get("code").and_then(Value::as_str).unwrap_or_default();
                    let key = format!("{}/{code}", self.endpoint);
                    for (rid, rec) in refund_records(r, &key) {
                        records.push(Captured {
                            kind: Kind::Refund,
                            external_id: rid,
                            version: None,
                            record: rec,
                        });
                    }
                }
                _ => records.push(Captured {
                    kind: Kind::Customer,
                    external_id: id,
                    version: None,
                    record: customer_record(r),
                }),
            }
        }
        Ok(Page {
            records,
            cursor,
            more,
        })
    }
}

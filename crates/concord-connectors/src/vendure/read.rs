//! Reading Vendure: orders (and their payments and refunds) and customers changed since a cursor,
//! by polling the Admin API's list queries filtered and sorted on `updatedAt`.
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
//! The cursor cannot skip or stall. Vendure on SQLite stamps `updatedAt` to the **second**
//! (TypeORM's `UpdateDateColumn`), and its `after` filter is strict, so a cursor means "every
//! row stamped before this second was returned"; each read starts at the cursor's second
//! (inclusive) minus the engine's `overlap` (re-read rows are duplicates the journal drops: the
//! records carry no version, so their content hash decides). A page is at most `limit` rows in
//! `updatedAt` order:
//! - not full → all of it; the cursor becomes the newest row's second (re-read next time, so a
//!   row committed later within that second is still seen);
//! - full, spanning several seconds → the rows before the last second; the cursor becomes that
//!   second (the next page starts there, so rows sharing it are never split);
//! - full, all within one second → every row of that second (a second, bounded query), and the
//!   cursor moves one second on: the page always advances.
//!
//! Must never: move the cursor past a row it did not return, or drop an invalid record (the
//! engine validates and dead-letters it).

use super::mapping::{
    customer_record, format_ts, order_record, parse_ts, payment_records, refund_records, second_of,
    ts_minus, ts_plus,
};
use super::VendureConnector;
use chrono::{DateTime, Utc};
use concord_core::Kind;
use concord_engine::connector::{Captured, DeliveryError, Page, ReadRequest};
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

/// Vendure's default `adminListQueryLimit`.
const MAX_TAKE: usize = 1000;

struct ListQuery {
    /// `orders` / `customers`.
    list: &'static str,
    filter_type: &'static str,
    base_filter: Value,
    fields: &'static str,
}

fn updated_at(row: &Value) -> Option<DateTime<Utc>> {
    row.get("updatedAt")
        .and_then(Value::as_str)
        .and_then(parse_ts)
}

impl VendureConnector {
    async fn list(
        &self,
        q: &ListQuery,
        after: Option<DateTime<Utc>>,
        before: Option<DateTime<Utc>>,
        take: usize,
    ) -> Result<Vec<Value>, DeliveryError> {
        let mut filter = q.base_filter.clone();
        let mut range = serde_json::Map::new();
        if let Some(a) = after {
            range.insert("after".into(), json!(format_ts(a)));
        }
        if let Some(b) = before {
            range.insert("before".into(), json!(format_ts(b)));
        }
        if !range.is_empty() {
            filter["updatedAt"] = Value::Object(range);
        }
        let query = format!(
            "query($f:{ft},$take:Int){{ {list}(options:{{filter:$f, sort:{{updatedAt:ASC}}, take:$take}}){{ items {{ {fields} }} }} }}",
            ft = q.filter_type,
            list = q.list,
            fields = q.fields
        );
        let data = self
            .gql
            .query(&query, json!({"f": filter, "take": take}))
            .await?;
        data.pointer(&format!("/{}/items", q.list))
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| DeliveryError::Transient {
                reason: format!("Vendure answered `{}` without items", q.list),
                retry_after: None,
            })
    }

    /// The next page of rows changed since the cursor, and the new cursor.
    async fn changed(
        &self,
        q: &ListQuery,
        req: &ReadRequest<'_>,
    ) -> Result<(Vec<Value>, Option<String>, bool), DeliveryError> {
        let stored = match req.cursor {
            None => None,
            Some(c) => Some(parse_ts(c).ok_or_else(|| DeliveryError::Permanent {
                reason: format!("cursor `{c}` is not a timestamp like 2026-11-25T19:56:49.000Z"),
            })?),
        };
        // Strictly after the millisecond before the (overlapped) cursor's second: the whole
        // second is re-read.
        let after = stored.map(|c| {
            ts_minus(
                second_of(ts_minus(c, req.overlap)),
                Duration::from_millis(1),
            )
        });
        let limit = req.limit.clamp(1, MAX_TAKE);
        let rows = self.list(q, after, None, limit).await?;
        let stamped: Vec<(DateTime<Utc>, Value)> = rows
            .into_iter()
            .filter_map(|r| Some((second_of(updated_at(&r)?), r)))
            .collect();
        if stamped.len() < limit {
            let newest = stamped.iter().map(|r| r.0).max();
            let cursor = match (newest, stored) {
                (Some(n), Some(s)) if n > s => Some(format_ts(n)),
                (Some(n), None) => Some(format_ts(n)),
                _ => None,
            };
            return Ok((stamped.into_iter().map(|r| r.1).collect(), cursor, false));
        }
        let (Some(first), Some(last)) = (stamped.first().map(|r| r.0), stamped.last().map(|r| r.0))
        else {
            return Ok((Vec::new(), None, false));
        };
        if last > first {
            let rows = stamped
                .into_iter()
                .filter(|r| r.0 < last)
                .map(|r| r.1)
                .collect();
            return Ok((rows, Some(format_ts(last)), true));
        }
        // A full page within one second: all of that second, then the next second.
        let rows = self
            .list(
                q,
                Some(ts_minus(first, Duration::from_millis(1))),
                Some(ts_plus(first, Duration::from_secs(1))),
                MAX_TAKE,
            )
            .await?;
        Ok((
            rows,
            Some(format_ts(ts_plus(first, Duration::from_secs(1)))),
            true,
        ))
    }

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
        let (rows, cursor, more) = self.changed(&q, &req).await?;
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

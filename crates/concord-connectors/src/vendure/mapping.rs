//! Pure mapping between Vendure's Admin API objects and Concord's canonical records: timestamps
//! (cursors), addresses, customers, orders (lines, customer, addresses, totals, status), the
//! payments on an order and the refunds on those payments.
//!
//! Money: Vendure holds integer minor units (`price: 1100` = 11.00), as Concord does; amounts pass
//! unchanged. Order lines carry `unitPriceWithTax` (what the buyer pays per unit).
//!
//! Must never: do I/O, validate records (the engine validates, so bad data reaches the
//! dead-letter queue with the validator's reason), or invent data Vendure did not give.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The cursor format: RFC 3339 UTC with milliseconds (Vendure's own `DateTime` scalar shape).
const TS_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn format_ts(t: DateTime<Utc>) -> String {
    t.format(TS_FORMAT).to_string()
}

/// `t - d`, saturating.
pub fn ts_minus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `t + d`, saturating.
pub fn ts_plus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The whole second `t` falls in (Vendure on SQLite stamps `updatedAt` to the second).
pub fn second_of(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("")
}

fn opt(v: &Value, k: &str) -> Option<String> {
    Some(s(v, k)).filter(|x| !x.is_empty()).map(str::to_string)
}

/// A canonical address from a Vendure `OrderAddress` / `Address` (`fullName`, `streetLine1/2`,
/// `city`, `province`, `postalCode`, `countryCode` or `country { code }`). `None` when it has no
/// street line (Vendure's empty `{}` address of an order without one).
pub fn address_record(a: &Value) -> Option<Value> {
    let line1 = opt(a, "streetLine1")?;
    let country = opt(a, "countryCode")
        .or_else(|| {
            a.pointer("/country/code")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    let mut m = Map::new();
    if let Some(n) = opt(a, "fullName") {
        m.insert("name".into(), json!(n));
    }
    m.insert("line1".into(), json!(line1));
    if let Some(l) = opt(a, "streetLine2") {
        m.insert("line2".into(), json!(l));
    }
    m.insert("city".into(), json!(s(a, "city")));
    if let Some(p) = opt(a, "postalCode") {
        m.insert("postal_code".into(), json!(p));
    }
    if let Some(r) = opt(a, "province") {
        m.insert("region".into(), json!(r));
    }
    m.insert("country".into(), json!(country.to_ascii_uppercase()));
    Some(Value::Object(m))
}

/// Vendure `CreateAddressInput` from a canonical address.
pub fn address_input(a: &Value, fallback_name: &str) -> Value {
    let mut r = json!({
        "fullName": opt(a, "name").unwrap_or_else(|| fallback_name.to_string()),
        "streetLine1": s(a, "line1"),
        "city": s(a, "city"),
        "countryCode": s(a, "country").to_ascii_uppercase(),
    });
    for (from, to) in [
        ("line2", "streetLine2"),
        ("postal_code", "postalCode"),
        ("region", "province"),
    ] {
        if let Some(v) = opt(a, from) {
            r[to] = json!(v);
        }
    }
    r
}

/// "Ann Lee" from first and last name; `None` when both are empty.
fn full_name(c: &Value) -> Option<String> {
    let n = format!("{} {}", s(c, "firstName"), s(c, "lastName"));
    Some(n.trim().to_string()).filter(|n| !n.is_empty())
}

/// Split a canonical name into Vendure's first and last name ("Ann Lee" → "Ann", "Lee").
pub fn split_name(name: &str) -> (String, String) {
    let name = name.trim();
    match name.rsplit_once(' ') {
        Some((first, last)) => (first.trim().to_string(), last.trim().to_string()),
        None => (name.to_string(), String::new()),
    }
}

/// Canonical customer from a Vendure `Customer` (`emailAddress`, names, `phoneNumber`,
/// `addresses`).
pub fn customer_record(c: &Value) -> Value {
    let mut r = json!({"email": s(c, "emailAddress").to_lowercase()});
    if let Some(n) = full_name(c) {
        r["name"] = json!(n);
    }
    if let Some(p) = opt(c, "phoneNumber") {
        r["phone"] = json!(p);
    }
    let addresses: Vec<Value> = c
        .get("addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(address_record)
        .collect();
    if !addresses.is_empty() {
        r["addresses"] = Value::Array(addresses);
    }
    r
}

/// Canonical order status from Vendure's order `state` (default order process, Vendure 3.x).
pub fn order_status(state: &str) -> &'static str {
    match state {
        "Cancelled" => "cancelled",
        "PaymentSettled" => "paid",
        "PartiallyShipped" | "PartiallyDelivered" => "partially_shipped",
        "Shipped" => "shipped",
        "Delivered" => "closed",
        _ => "placed",
    }
}

/// Canonical order from a Vendure `Order` (see `read::ORDER_FIELDS`).
pub fn order_record(o: &Value) -> Value {
    let customer = o.get("customer").cloned().unwrap_or(Value::Null);
    let mut cref = json!({"email": s(&customer, "emailAddress").to_lowercase()});
    if let Some(n) = full_name(&customer) {
        cref["name"] = json!(n);
    }
    // Vendure sets a cancelled order's line quantities to 0 and keeps what was ordered in
    // `orderPlacedQuantity`: a cancelled order still carries its lines.
    let cancelled = s(o, "state") == "Cancelled";
    let qty = |l: &Value| {
        let q = l.get("quantity").and_then(Value::as_i64).unwrap_or(0);
        if cancelled && q == 0 {
            l.get("orderPlacedQuantity")
                .and_then(Value::as_i64)
                .unwrap_or(0)
        } else {
            q
        }
    };
    let lines: Vec<Value> = o
        .get("lines")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|l| qty(l) > 0)
        .map(|l| {
            json!({
                "line_id": s(l, "id"),
                "sku": l.pointer("/productVariant/sku").and_then(Value::as_str).unwrap_or(""),
                "quantity": qty(l),
                "unit_price_minor": l.get("unitPriceWithTax").and_then(Value::as_i64).unwrap_or(0),
            })
        })
        .collect();
    let mut r = json!({
        "number": s(o, "code"),
        "customer": cref,
        "status": order_status(s(o, "state")),
        "currency": s(o, "currencyCode"),
        "lines": lines,
    });
    if let Some(a) = o.get("shippingAddress").and_then(address_record) {
        r["shipping_address"] = a;
    }
    if let Some(a) = o.get("billingAddress").and_then(address_record) {
        r["billing_address"] = a;
    }
    if let Some(t) = o.get("totalWithTax").and_then(Value::as_i64) {
        r["total_minor"] = json!(t);
    }
    if let Some(p) = opt(o, "orderPlacedAt") {
        r["placed_at"] = json!(p);
    }
    r
}

/// Canonical payments of a Vendure order (`payments { id method amount state }`), `order` = the
/// canonical order key.
pub fn payment_records(o: &Value, order_key: &str) -> Vec<(String, Value)> {
    o.get("payments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let status = match s(p, "state") {
                "Authorized" => "authorized",
                "Settled" => "captured",
                "Declined" | "Error" | "Cancelled" => "failed",
                _ => return None,
            };
            let id = opt(p, "id")?;
            Some((
                id.clone(),
                json!({"id": id, "order": order_key, "amount_minor": p.get("amount").and_then(Value::as_i64).unwrap_or(0),
                       "currency": s(o, "currencyCode"), "method": s(p, "method"), "status": status}),
            ))
        })
        .collect()
}

/// The marker Concord appends to the `reason` of a refund it writes into Vendure, so a retried
/// write finds it (and a read maps it back to the canonical id): `"<reason> (concord refund <id>)"`.
pub fn refund_marker(id: &str) -> String {
    format!("(concord refund {id})")
}

/// Splits a Vendure refund `reason` into (the reason without Concord's marker, the canonical
/// refund id from the marker).
pub fn split_refund_reason(reason: &str) -> (Option<String>, Option<String>) {
    let reason = reason.trim();
    if let Some(stripped) = reason.strip_suffix(')') {
        if let Some((before, id)) = stripped.rsplit_once("(concord refund ") {
            let id = id.trim();
            if !id.is_empty() {
                let before = before.trim();
                return (
                    Some(before.to_string()).filter(|b| !b.is_empty()),
                    Some(id.to_string()),
                );
            }
        }
    }
    (Some(reason.to_string()).filter(|r| !r.is_empty()), None)
}

/// Canonical refunds of a Vendure order (`payments { refunds { id total reason state lines {
/// orderLineId quantity } } }`), `order` = the canonical order key; `(Vendure refund id, record)`.
/// A `Failed` refund moved no money and is left out. The canonical `id` is the one Concord wrote
/// (from the reason's marker), else `vendure-refund-<id>`; `lines` by SKU through the order's
/// lines; `restock` is false (a Vendure refund never returns stock).
pub fn refund_records(o: &Value, order_key: &str) -> Vec<(String, Value)> {
    let sku_of = |line_id: &str| {
        o.get("lines")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|l| s(l, "id") == line_id)
            .and_then(|l| l.pointer("/productVariant/sku").and_then(Value::as_str))
            .map(str::to_string)
    };
    let mut out = Vec::new();
    for p in o
        .get("payments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for r in p
            .get("refunds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(vid) = opt(r, "id") else { continue };
            if s(r, "state") == "Failed" {
                continue;
            }
            let (reason, marked) = split_refund_reason(s(r, "reason"));
            let mut lines: Vec<Value> = Vec::new();
            for l in r
                .get("lines")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let q = l.get("quantity").and_then(Value::as_i64).unwrap_or(0);
                if q <= 0 {
                    continue;
                }
                let sku = sku_of(s(l, "orderLineId")).unwrap_or_default();
                match lines.iter_mut().find(|x| x["sku"] == json!(sku)) {
                    Some(x) => x["quantity"] = json!(x["quantity"].as_i64().unwrap_or(0) + q),
                    None => lines.push(json!({"sku": sku, "quantity": q})),
                }
            }
            let mut rec = json!({
                "id": marked.unwrap_or_else(|| format!("vendure-refund-{vid}")),
                "order": order_key,
                "amount_minor": r.get("total").and_then(Value::as_i64).unwrap_or(0),
                "currency": s(o, "currencyCode"),
                "restock": false,
            });
            if let Some(reason) = reason {
                rec["reason"] = json!(reason);
            }
            if !lines.is_empty() {
                rec["lines"] = Value::Array(lines);
            }
            out.push((vid, rec));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_core::{validate, Kind};

    #[test]
    fn timestamps_and_seconds() {
        let t = parse_ts("2026-11-25T19:56:49.123Z").unwrap();
        assert_eq!(format_ts(t), "2026-11-25T19:56:49.123Z");
        assert_eq!(format_ts(second_of(t)), "2026-11-25T19:56:49.000Z");
        assert_eq!(
            format_ts(ts_minus(t, Duration::from_millis(124))),
            "2026-11-25T19:56:48.999Z"
        );
        assert!(parse_ts("yesterday").is_none());
    }

    #[test]
    fn an_order_maps_to_the_canonical_shape() {
        let o = json!({"code": "ABC123", "state": "PaymentAuthorized", "currencyCode": "USD",
            "totalWithTax": 2700, "orderPlacedAt": "2026-11-25T19:56:49.000Z",
            "customer": {"emailAddress": "Ann@Example.com", "firstName": "Ann", "lastName": "Lee"},
            "shippingAddress": {"fullName": "Ann Lee", "streetLine1": "1 Main St", "streetLine2": "",
                                "city": "Springfield", "postalCode": "12345", "countryCode": "US"},
            "billingAddress": {"fullName": null, "streetLine1": null},
            "lines": [{"id": "7", "quantity": 2, "unitPriceWithTax": 1100,
                       "productVariant": {"sku": "SKU-0001"}},
                      {"id": "8", "quantity": 0, "unitPriceWithTax": 1, "productVariant": {"sku": "X"}}],
            "payments": [{"id": "3", "method": "dummy", "amount": 2700, "state": "Authorized"}]});
        let r = order_record(&o);
        assert_eq!(r["number"], "ABC123");
        assert_eq!(
            r["customer"],
            json!({"email": "ann@example.com", "name": "Ann Lee"})
        );
        assert_eq!(r["lines"].as_array().map(Vec::len), Some(1));
        assert_eq!(r["lines"][0]["unit_price_minor"], 1100);
        assert_eq!(r["shipping_address"]["postal_code"], "12345");
        assert!(r.get("billing_address").is_none());
        validate(Kind::Order, &r).unwrap();
        let p = payment_records(&o, "vendure/ABC123");
        assert_eq!(p[0].1["status"], "authorized");
        validate(Kind::Payment, &p[0].1).unwrap();
        assert_eq!(order_status("PartiallyShipped"), "partially_shipped");
        let mut c = o.clone();
        c["state"] = json!("Cancelled");
        c["lines"] = json!([{"id": "7", "quantity": 0, "orderPlacedQuantity": 2,
                             "unitPriceWithTax": 1100, "productVariant": {"sku": "SKU-0001"}}]);
        let r = order_record(&c);
        assert_eq!(
            (r["status"].as_str(), r["lines"][0]["quantity"].as_i64()),
            (Some("cancelled"), Some(2))
        );
        validate(Kind::Order, &r).unwrap();
        assert_eq!(order_status("ArrangingPayment"), "placed");
    }

    #[test]
    fn refunds_map_with_their_marker_and_lines() {
        let o = json!({"code": "ABC", "currencyCode": "USD",
            "lines": [{"id": "7", "productVariant": {"sku": "SKU-1"}}],
            "payments": [{"id": "3", "state": "Settled", "refunds": [
                {"id": "11", "total": 500, "reason": "damaged (concord refund R-1)", "state": "Pending",
                 "lines": [{"orderLineId": "7", "quantity": 1}]},
                {"id": "12", "total": 100, "reason": null, "state": "Settled", "lines": []},
                {"id": "13", "total": 100, "reason": "x", "state": "Failed", "lines": []}]}]});
        let r = refund_records(&o, "vendure/ABC");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, "11");
        assert_eq!(r[0].1["id"], "R-1");
        assert_eq!(r[0].1["reason"], "damaged");
        assert_eq!(r[0].1["lines"], json!([{"sku": "SKU-1", "quantity": 1}]));
        assert_eq!(r[1].1["id"], "vendure-refund-12");
        assert!(r[1].1.get("reason").is_none());
        for (_, rec) in &r {
            validate(Kind::Refund, rec).unwrap();
        }
        assert_eq!(
            split_refund_reason(&refund_marker("R-2")),
            (None, Some("R-2".into()))
        );
        assert_eq!(split_refund_reason("plain"), (Some("plain".into()), None));
    }

    #[test]
    fn customers_and_addresses() {
        let c = customer_record(
            &json!({"emailAddress": "B@x.io", "firstName": "Bo", "lastName": "",
            "phoneNumber": "", "addresses": [{"fullName": "Bo", "streetLine1": "2 Road", "city": "Y",
            "country": {"code": "de"}}]}),
        );
        assert_eq!(c["email"], "b@x.io");
        assert_eq!(c["name"], "Bo");
        assert_eq!(c["addresses"][0]["country"], "DE");
        validate(Kind::Customer, &c).unwrap();
        let a = address_input(
            &json!({"line1": "1 A", "city": "C", "country": "us", "postal_code": "9"}),
            "N",
        );
        assert_eq!(a["countryCode"], "US");
        assert_eq!(a["fullName"], "N");
        assert_eq!(a["postalCode"], "9");
        assert_eq!(
            split_name("Ann Marie Lee"),
            ("Ann Marie".into(), "Lee".into())
        );
        assert_eq!(split_name("Cher"), ("Cher".into(), String::new()));
    }
}

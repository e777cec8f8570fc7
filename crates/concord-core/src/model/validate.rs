//! Validation of canonical records: [`validate`] parses a record into its typed struct, checks
//! every value against the bounded domain of [`crate::limits`] and the rules serde cannot
//! express (non-negative quantities, e-mail shape, increasing tiers, …), and returns the
//! normalised JSON; a failure is a [`ValidationError`] naming the kind and the field path.
//!
//! Must never accept a value outside the bounded domain (every string of every field, known or
//! not, is checked), nor quote an unbounded piece of the input in an error.

use super::types::{
    Address, Customer, Invoice, ItemQty, Order, Payment, Price, Product, Refund, Shipment, Stock,
};
use crate::limits::{self, LimitError};
use crate::Kind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// A canonical record failed validation. `path` is the field path inside the record
/// (`lines[1].quantity`), empty when the record as a whole is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub kind: Kind,
    pub path: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{} record: {}", self.kind, self.message)
        } else {
            write!(
                f,
                "{} record, field `{}`: {}",
                self.kind, self.path, self.message
            )
        }
    }
}

struct Check {
    kind: Kind,
}

impl Check {
    fn err(&self, path: impl Into<String>, message: impl Into<String>) -> ValidationError {
        ValidationError {
            kind: self.kind,
            path: path.into(),
            message: message.into(),
        }
    }
    fn limit<T>(&self, r: Result<T, LimitError>) -> Result<T, ValidationError> {
        r.map_err(|e| self.err(e.field, e.message))
    }
    /// A required identifier (see [`limits::key`]).
    fn key(&self, path: &str, v: &str) -> Result<(), ValidationError> {
        self.limit(limits::key(path, v))
    }
    /// An optional identifier: when present, not empty and shaped like one.
    fn opt_key(&self, path: &str, v: &Option<String>) -> Result<(), ValidationError> {
        match v {
            Some(v) => self.key(path, v),
            None => Ok(()),
        }
    }
    /// An optional identifier that may also be empty when present (an empty `line_id`,
    /// `tracking_number`: "none", as some APIs say it).
    fn opt_key_chars(&self, path: &str, v: &Option<String>) -> Result<(), ValidationError> {
        match v {
            Some(v) => self.limit(limits::key_chars(path, v)),
            None => Ok(()),
        }
    }
    fn quantity(&self, path: &str, v: i64) -> Result<(), ValidationError> {
        self.limit(limits::quantity(path, v)).map(|_| ())
    }
    fn line_quantity(&self, path: &str, v: i64) -> Result<(), ValidationError> {
        self.limit(limits::line_quantity(path, v)).map(|_| ())
    }
    fn money(&self, path: &str, v: i64) -> Result<(), ValidationError> {
        self.limit(limits::money(path, v)).map(|_| ())
    }
    fn opt_date(&self, path: &str, v: &Option<String>) -> Result<(), ValidationError> {
        match v {
            Some(d) => self.limit(limits::date(path, d)).map(|_| ()),
            None => Ok(()),
        }
    }
    fn opt_timestamp(&self, path: &str, v: &Option<String>) -> Result<(), ValidationError> {
        match v {
            Some(t) => self.limit(limits::timestamp(path, t)),
            None => Ok(()),
        }
    }
    fn lines(&self, path: &str, n: usize) -> Result<(), ValidationError> {
        self.limit(limits::count(path, n, limits::MAX_RECORD_LINES, "lines"))
    }
    fn currency(&self, path: &str, v: &str) -> Result<(), ValidationError> {
        if v.len() != 3 || !v.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(self.err(
                path,
                format!(
                    "must be a three-letter ISO 4217 code such as USD, got {}",
                    limits::excerpt(v)
                ),
            ));
        }
        Ok(())
    }
    fn email(&self, path: &str, v: &str) -> Result<(), ValidationError> {
        self.key(path, v)?;
        let ok = match v.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty() && domain.contains('.') && !v.contains(char::is_whitespace)
            }
            None => false,
        };
        if !ok {
            return Err(self.err(
                path,
                format!("must be an e-mail address, got {}", limits::excerpt(v)),
            ));
        }
        Ok(())
    }
    /// Item lines (shipments, refunds): each a SKU and a quantity, a SKU's lines adding up to
    /// at most [`limits::MAX_QUANTITY`].
    fn items(&self, prefix: &str, lines: &mut [ItemQty]) -> Result<(), ValidationError> {
        self.lines(prefix, lines.len())?;
        let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
        for (i, l) in lines.iter_mut().enumerate() {
            l.sku = l.sku.trim().to_string();
            self.key(&format!("{prefix}[{i}].sku"), &l.sku)?;
            self.line_quantity(&format!("{prefix}[{i}].quantity"), l.quantity)?;
        }
        for (i, l) in lines.iter().enumerate() {
            let t = totals.entry(&l.sku).or_insert(0);
            *t = self.limit(limits::add_quantity(
                &format!("{prefix}[{i}].quantity"),
                *t,
                l.quantity,
            ))?;
        }
        Ok(())
    }
    fn address(&self, path: &str, a: &Address) -> Result<(), ValidationError> {
        self.limit(limits::key_chars(&format!("{path}.country"), &a.country))
    }
}

/// Every string in `v` (object keys included) is free text within the bounds (see
/// [`limits::text`]): no NUL or other control character, no megabyte-long value, in any field of
/// any kind — including `attributes` and fields a later check ignores. `path` is the value's
/// field path; nesting deeper than [`limits::MAX_JSON_DEPTH`] is refused (a mapping may build
/// values no parser would have accepted).
fn check_strings(
    c: &Check,
    path: &mut String,
    v: &Value,
    depth: usize,
) -> Result<(), ValidationError> {
    if depth > limits::MAX_JSON_DEPTH {
        return Err(c.err(
            path.clone(),
            format!("is nested deeper than {} levels", limits::MAX_JSON_DEPTH),
        ));
    }
    match v {
        Value::String(s) => c.limit(limits::text(path, s)),
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_strings(c, path, x, depth + 1)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(m) => {
            for (k, x) in m {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                if let Err(e) = limits::key_chars("", k) {
                    path.truncate(len);
                    return Err(c.err(
                        path.clone(),
                        format!("field name {}: {}", limits::excerpt(k), e.message),
                    ));
                }
                path.push_str(k);
                check_strings(c, path, x, depth + 1)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(kind: Kind, value: &Value) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ValidationError {
            kind,
            path: if path == "." { String::new() } else { path },
            message: bounded_message(e.into_inner().to_string()),
        }
    })
}

/// serde's messages quote the offending value (`invalid type: string "…"`); an answer, a
/// journal note or a log line carries at most the first 300 characters of one.
fn bounded_message(mut m: String) -> String {
    const KEEP: usize = 300;
    if let Some((at, _)) = m.char_indices().nth(KEEP) {
        let len = m.len();
        m.truncate(at);
        m.push_str(&format!("… ({len} bytes)"));
    }
    m
}

fn to_json<T: Serialize>(t: &T) -> Value {
    // Serialising our own plain structs cannot fail.
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// Parse and check a canonical record of `kind`; returns the normalised record (defaults filled
/// in, e-mails lower-cased, SKUs trimmed).
///
/// Every value must lie in the bounded domain of [`crate::limits`]: identifiers (SKUs,
/// locations, ids, numbers, references) at most 256 bytes without control characters, free text
/// at most 64 KiB without control characters other than tab and line breaks, quantities 0 (or
/// 1 for a line) to 10⁹ units — and a SKU's lines in one record adding up to no more —, money
/// 0 to 10¹⁵ minor units, at most 10,000 lines, dates that exist (`YYYY-MM-DD`), and points in
/// time as RFC 3339 date-times (or dates).
pub fn validate(kind: Kind, value: &Value) -> Result<Value, ValidationError> {
    let c = Check { kind };
    if !value.is_object() {
        return Err(c.err(
            "",
            format!("must be a JSON object, got {}", type_name(value)),
        ));
    }
    check_strings(&c, &mut String::new(), value, 0)?;
    let out = match kind {
        Kind::Product => {
            let mut p: Product = parse(kind, value)?;
            p.sku = p.sku.trim().to_string();
            c.key("sku", &p.sku)?;
            if p.name.trim().is_empty() {
                return Err(c.err("name", "must not be empty"));
            }
            c.opt_key_chars("barcode", &p.barcode)?;
            to_json(&p)
        }
        Kind::Stock => {
            let mut s: Stock = parse(kind, value)?;
            s.sku = s.sku.trim().to_string();
            c.key("sku", &s.sku)?;
            c.key("location", &s.location)?;
            c.quantity("on_hand", s.on_hand)?;
            c.quantity("committed", s.committed)?;
            c.lines("incoming", s.incoming.len())?;
            for (i, lot) in s.incoming.iter().enumerate() {
                c.line_quantity(&format!("incoming[{i}].quantity"), lot.quantity)?;
                c.opt_date(&format!("incoming[{i}].eta"), &lot.eta)?;
            }
            to_json(&s)
        }
        Kind::Price => {
            let mut p: Price = parse(kind, value)?;
            p.sku = p.sku.trim().to_string();
            c.key("sku", &p.sku)?;
            c.key("list", &p.list)?;
            c.currency("currency", &p.currency)?;
            c.money("amount_minor", p.amount_minor)?;
            c.lines("tiers", p.tiers.len())?;
            for (i, t) in p.tiers.iter().enumerate() {
                c.line_quantity(&format!("tiers[{i}].min_quantity"), t.min_quantity)?;
                c.money(&format!("tiers[{i}].amount_minor"), t.amount_minor)?;
                if i > 0 && t.min_quantity <= p.tiers[i - 1].min_quantity {
                    return Err(c.err(
                        format!("tiers[{i}].min_quantity"),
                        format!(
                            "tiers must be in increasing min_quantity order, got {} after {}",
                            t.min_quantity,
                            p.tiers[i - 1].min_quantity
                        ),
                    ));
                }
            }
            if let Some(cu) = p.customer.as_mut() {
                *cu = cu.trim().to_lowercase();
                c.key("customer", cu)?;
                if p.customer_group.is_some() {
                    return Err(c.err(
                        "customer_group",
                        "a list is either customer-specific or for a group, not both",
                    ));
                }
            }
            c.opt_key("customer_group", &p.customer_group)?;
            c.opt_key("channel", &p.channel)?;
            let mut from_day = None;
            for (field, v) in [("valid_from", &p.valid_from), ("valid_to", &p.valid_to)] {
                if let Some(d) = v {
                    let day = c.limit(limits::date(field, d))?;
                    if field == "valid_from" {
                        from_day = Some(day);
                    } else if from_day.is_some_and(|f| day <= f) {
                        return Err(c.err(field, "must be after valid_from"));
                    }
                }
            }
            to_json(&p)
        }
        Kind::Customer => {
            let mut cu: Customer = parse(kind, value)?;
            cu.email = cu.email.trim().to_lowercase();
            c.email("email", &cu.email)?;
            c.opt_key_chars("customer_number", &cu.customer_number)?;
            c.opt_key_chars("group", &cu.group)?;
            c.lines("addresses", cu.addresses.len())?;
            for (i, a) in cu.addresses.iter().enumerate() {
                c.address(&format!("addresses[{i}]"), a)?;
            }
            to_json(&cu)
        }
        Kind::Order => {
            let mut o: Order = parse(kind, value)?;
            c.key("number", &o.number)?;
            if o.number.contains('/') {
                return Err(c.err("number", "must not contain `/`"));
            }
            c.opt_key("channel", &o.channel)?;
            c.opt_key_chars("erp_number", &o.erp_number)?;
            c.opt_key("reference", &o.reference)?;
            o.customer.email = o.customer.email.trim().to_lowercase();
            c.email("customer.email", &o.customer.email)?;
            c.currency("currency", &o.currency)?;
            if o.lines.is_empty() {
                return Err(c.err("lines", "an order needs at least one line"));
            }
            c.lines("lines", o.lines.len())?;
            let mut totals: BTreeMap<String, i64> = BTreeMap::new();
            for (i, l) in o.lines.iter_mut().enumerate() {
                l.sku = l.sku.trim().to_string();
                c.key(&format!("lines[{i}].sku"), &l.sku)?;
                c.line_quantity(&format!("lines[{i}].quantity"), l.quantity)?;
                c.money(&format!("lines[{i}].unit_price_minor"), l.unit_price_minor)?;
                c.opt_key_chars(&format!("lines[{i}].line_id"), &l.line_id)?;
                if let Some(loc) = l.location.as_mut() {
                    *loc = loc.trim().to_string();
                    c.key(&format!("lines[{i}].location"), loc)?;
                }
                if let Some(a) = &l.ship_to {
                    c.address(&format!("lines[{i}].ship_to"), a)?;
                }
                let t = totals.entry(l.sku.clone()).or_insert(0);
                *t = c.limit(limits::add_quantity(
                    &format!("lines[{i}].quantity"),
                    *t,
                    l.quantity,
                ))?;
            }
            if let Some(t) = o.total_minor {
                c.money("total_minor", t)?;
            }
            for (field, a) in [
                ("shipping_address", &o.shipping_address),
                ("billing_address", &o.billing_address),
            ] {
                if let Some(a) = a {
                    c.address(field, a)?;
                }
            }
            c.opt_timestamp("placed_at", &o.placed_at)?;
            to_json(&o)
        }
        Kind::Shipment => {
            let mut s: Shipment = parse(kind, value)?;
            c.key("id", &s.id)?;
            c.key("order", &s.order)?;
            c.items("lines", &mut s.lines)?;
            c.opt_key_chars("tracking_number", &s.tracking_number)?;
            if let Some(a) = &s.address {
                c.address("address", a)?;
            }
            c.opt_timestamp("shipped_at", &s.shipped_at)?;
            to_json(&s)
        }
        Kind::Invoice => {
            let i: Invoice = parse(kind, value)?;
            c.key("number", &i.number)?;
            c.key("order", &i.order)?;
            c.currency("currency", &i.currency)?;
            c.money("total_minor", i.total_minor)?;
            c.opt_date("due_date", &i.due_date)?;
            to_json(&i)
        }
        Kind::Payment => {
            let p: Payment = parse(kind, value)?;
            c.key("id", &p.id)?;
            c.key("order", &p.order)?;
            c.opt_key("invoice", &p.invoice)?;
            c.currency("currency", &p.currency)?;
            c.money("amount_minor", p.amount_minor)?;
            to_json(&p)
        }
        Kind::Refund => {
            let mut r: Refund = parse(kind, value)?;
            c.key("id", &r.id)?;
            c.key("order", &r.order)?;
            c.currency("currency", &r.currency)?;
            c.money("amount_minor", r.amount_minor)?;
            c.items("lines", &mut r.lines)?;
            to_json(&r)
        }
    };
    Ok(out)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{natural_key, sample_order as order};
    use serde_json::json;

    #[test]
    fn valid_records_are_normalised() {
        let o = validate(Kind::Order, &order()).unwrap();
        assert_eq!(o["customer"]["email"], "ann@example.com");
        assert_eq!(o["status"], "placed");
        assert_eq!(natural_key(Kind::Order, &o, "web").unwrap(), "web/1001");
        let s = validate(
            Kind::Stock,
            &json!({"sku": " A ", "location": "WH", "on_hand": 5}),
        )
        .unwrap();
        assert_eq!(
            s,
            json!({"sku": "A", "location": "WH", "on_hand": 5, "committed": 0})
        );
        assert_eq!(natural_key(Kind::Stock, &s, "erp").unwrap(), "A@WH");
    }

    #[test]
    fn errors_name_the_field() {
        let table: Vec<(Kind, Value, &str, &str)> = vec![
            (
                Kind::Stock,
                json!({"sku": "A", "location": "WH", "on_hand": -3}),
                "on_hand",
                "negative",
            ),
            (
                Kind::Stock,
                json!({"sku": "A", "location": "WH", "on_hand": 1, "colour": "red"}),
                "colour",
                "unknown field `colour`",
            ),
            (
                Kind::Stock,
                json!({"sku": "A", "location": "WH", "on_hand": "many"}),
                "on_hand",
                "invalid type",
            ),
            (
                Kind::Stock,
                json!({"sku": "", "location": "WH", "on_hand": 1}),
                "sku",
                "empty",
            ),
            (
                Kind::Product,
                json!({"name": "x"}),
                "",
                "missing field `sku`",
            ),
            (
                Kind::Customer,
                json!({"email": "nobody"}),
                "email",
                "e-mail",
            ),
            (
                Kind::Order,
                json!({"number": "1", "customer": {"email": "a@b.co"}, "currency": "USD", "lines": []}),
                "lines",
                "at least one",
            ),
            (
                Kind::Order,
                json!({"number": "1", "customer": {"email": "a@b.co"}, "currency": "USD", "lines": [{"sku": "A", "quantity": 0}]}),
                "lines[0].quantity",
                "greater than 0",
            ),
            (
                Kind::Price,
                json!({"sku": "A", "currency": "usd", "amount_minor": 1}),
                "currency",
                "ISO 4217",
            ),
            (
                Kind::Price,
                json!({"sku": "A", "currency": "USD", "amount_minor": 9,
                       "tiers": [{"min_quantity": 10, "amount_minor": 8}, {"min_quantity": 10, "amount_minor": 7}]}),
                "tiers[1].min_quantity",
                "increasing",
            ),
            (
                Kind::Price,
                json!({"sku": "A", "currency": "USD", "amount_minor": 9, "customer": "a@b.co",
                       "customer_group": "g"}),
                "customer_group",
                "not both",
            ),
            (
                Kind::Price,
                json!({"sku": "A", "currency": "USD", "amount_minor": 9, "valid_to": "2026-02-30"}),
                "valid_to",
                "YYYY-MM-DD",
            ),
            (
                Kind::Price,
                json!({"sku": "A", "currency": "USD", "amount_minor": 9,
                       "valid_from": "2026-03-01", "valid_to": "2026-03-01"}),
                "valid_to",
                "after valid_from",
            ),
            (
                Kind::Shipment,
                json!({"id": "S1", "order": "w/1", "lines": [{"sku": "A", "quantity": -1}]}),
                "lines[0].quantity",
                "greater than 0",
            ),
            // The bounded domain (crate::limits).
            (
                Kind::Stock,
                json!({"sku": "A", "location": "WH", "on_hand": i64::MAX}),
                "on_hand",
                "at most 1000000000",
            ),
            (
                Kind::Stock,
                json!({"sku": "A\u{0}B", "location": "WH", "on_hand": 1}),
                "sku",
                "U+0000",
            ),
            (
                Kind::Stock,
                json!({"sku": "A".repeat(100 * 1024), "location": "WH", "on_hand": 1}),
                "sku",
                "bytes long",
            ),
            (
                Kind::Stock,
                json!({"sku": "A".repeat(300), "location": "WH", "on_hand": 1}),
                "sku",
                "at most 256",
            ),
            (
                Kind::Stock,
                json!({"sku": "A", "location": "WH", "on_hand": 1,
                       "incoming": [{"quantity": 1, "eta": "2026-02-30"}]}),
                "incoming[0].eta",
                "exists",
            ),
            (
                Kind::Product,
                json!({"sku": "A", "name": "x", "attributes": {"note": "bell\u{7}"}}),
                "attributes.note",
                "U+0007",
            ),
            (
                Kind::Order,
                json!({"number": "1", "customer": {"email": "a@b.co"}, "currency": "USD",
                       "lines": [{"sku": "A", "quantity": 600_000_000}, {"sku": "A", "quantity": 600_000_000}]}),
                "lines[1].quantity",
                "add up",
            ),
            (
                Kind::Order,
                json!({"number": "1", "customer": {"email": "a@b.co"}, "currency": "USD",
                       "placed_at": "2026-02-30T10:00:00Z", "lines": [{"sku": "A", "quantity": 1}]}),
                "placed_at",
                "RFC 3339",
            ),
            (
                Kind::Invoice,
                json!({"number": "I", "order": "w/1", "currency": "USD", "total_minor": i64::MAX}),
                "total_minor",
                "at most",
            ),
        ];
        for (kind, value, path, needle) in table {
            let e = validate(kind, &value).unwrap_err();
            assert_eq!(e.path, path, "{value}: {e}");
            assert!(e.to_string().contains(needle), "{value}: {e}");
        }
        let e = validate(Kind::Stock, &json!([1])).unwrap_err();
        assert!(e.to_string().contains("JSON object"));
    }
}

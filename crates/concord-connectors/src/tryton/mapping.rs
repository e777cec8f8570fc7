//! Pure mapping between Tryton's JSON-RPC values and Concord's canonical records: Tryton's special
//! JSON types (`{"__class__": "datetime" | "date" | "Decimal", …}`), the fixed-width RFC 3339 UTC
//! timestamps used as cursors and versions, quantities, money in minor units, and the record
//! shapes of `concord_core::model` for stock, product, customer, shipment, invoice, payment and
//! price.
//!
//! Versions and cursors are always `YYYY-MM-DDTHH:MM:SS.ffffffZ` (27 characters, microseconds,
//! UTC), so that `concord_store::compare_versions` orders them as instants: a Tryton sale's
//! watermark and the stock figures that include it are comparable.
//!
//! Must never: do I/O, validate records (the engine validates after mapping, so bad data reaches
//! the dead-letter queue with the validator's reason), or invent data Tryton did not give (a
//! product without a code maps to an empty `sku`, not to a made-up one).

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The one timestamp format of versions and cursors.
const TS_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// A Tryton `datetime` object (UTC, as trytond stores it) → `2026-11-25T19:33:26.123456Z`.
pub fn ts_from_tryton(v: &Value) -> Option<String> {
    naive_from_tryton(v).map(|t| t.format(TS_FORMAT).to_string())
}

fn naive_from_tryton(v: &Value) -> Option<NaiveDateTime> {
    if v.get("__class__").and_then(Value::as_str) != Some("datetime") {
        return None;
    }
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(n("year")?).ok()?,
        u32::try_from(n("month")?).ok()?,
        u32::try_from(n("day")?).ok()?,
    )?;
    date.and_hms_micro_opt(
        u32::try_from(n("hour").unwrap_or(0)).ok()?,
        u32::try_from(n("minute").unwrap_or(0)).ok()?,
        u32::try_from(n("second").unwrap_or(0)).ok()?,
        u32::try_from(n("microsecond").unwrap_or(0)).ok()?,
    )
}

/// Parse one of our timestamps (a cursor or a version).
pub fn parse_ts(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, TS_FORMAT).ok()
}

pub fn format_ts(t: NaiveDateTime) -> String {
    t.format(TS_FORMAT).to_string()
}

/// A timestamp as Tryton's JSON `datetime`.
pub fn ts_to_tryton(t: NaiveDateTime) -> Value {
    json!({"__class__": "datetime", "year": t.year(), "month": t.month(), "day": t.day(),
           "hour": t.hour(), "minute": t.minute(), "second": t.second(),
           "microsecond": t.nanosecond() / 1000})
}

/// `t - d` (saturating at the epoch start of chrono's range).
pub fn ts_minus(t: NaiveDateTime, d: Duration) -> NaiveDateTime {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(NaiveDateTime::MIN)
}

/// One microsecond before `t`: the watermark just below the first figure that includes a write
/// made at `t`.
pub fn just_before(t: NaiveDateTime) -> NaiveDateTime {
    t.checked_sub_signed(chrono::Duration::microseconds(1))
        .unwrap_or(t)
}

/// When a row last changed: `write_date`, else `create_date` (Tryton leaves `write_date` null
/// until the first write).
pub fn changed_at(row: &Value) -> Option<NaiveDateTime> {
    row.get("write_date")
        .and_then(naive_from_tryton)
        .or_else(|| row.get("create_date").and_then(naive_from_tryton))
}

/// A Tryton `date` → `YYYY-MM-DD`.
pub fn date_from_tryton(v: &Value) -> Option<String> {
    if v.get("__class__").and_then(Value::as_str) != Some("date") {
        return None;
    }
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let d = NaiveDate::from_ymd_opt(
        i32::try_from(n("year")?).ok()?,
        u32::try_from(n("month")?).ok()?,
        u32::try_from(n("day")?).ok()?,
    )?;
    Some(d.format("%Y-%m-%d").to_string())
}

/// A money amount (`Decimal` object, number or string) in minor units of a 2-decimal currency,
/// rounded half away from zero. `None` when it is not a number.
pub fn money_minor(v: &Value) -> Option<i64> {
    let text = match v {
        Value::Object(_) if v.get("__class__").and_then(Value::as_str) == Some("Decimal") => {
            v.get("decimal")?.as_str()?.to_string()
        }
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    decimal_to_minor(text.trim(), 2)
}

/// `"12.345"` → 1235 (digits = 2), exact decimal arithmetic (no floats).
fn decimal_to_minor(s: &str, digits: u32) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let int: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut minor = int.checked_mul(10i64.checked_pow(digits)?)?;
    let kept: String = frac
        .chars()
        .chain(std::iter::repeat('0'))
        .take(digits as usize)
        .collect();
    minor = minor.checked_add(kept.parse::<i64>().unwrap_or(0))?;
    if frac.chars().nth(digits as usize).is_some_and(|c| c >= '5') {
        minor = minor.checked_add(1)?;
    }
    Some(if neg { -minor } else { minor })
}

/// Minor units → Tryton `Decimal` (2 decimals).
pub fn minor_to_decimal(minor: i64) -> Value {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    json!({"__class__": "Decimal", "decimal": format!("{sign}{}.{:02}", abs / 100, abs % 100)})
}

/// A quantity (Tryton floats) as whole units, rounded to nearest.
pub fn qty(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_f64)
        .filter(|f| f.is_finite())
        .map(|f| f.round() as i64)
        .unwrap_or(0)
}

/// A product's SKU: its code, `""` when it has none (the validator dead-letters such records
/// with "field `sku`: must not be empty").
pub fn sku_of(row: &Value) -> String {
    row.get("code")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("")
        .to_string()
}

/// The external id of a product: its code, or `product#<id>` when it has none (so the dead
/// letter names the record).
pub fn product_external_id(id: i64, sku: &str) -> String {
    if sku.is_empty() {
        format!("product#{id}")
    } else {
        sku.to_string()
    }
}

/// Canonical stock of one product at one warehouse.
pub fn stock_record(
    sku: &str,
    warehouse: &str,
    on_hand: i64,
    committed: i64,
    incoming: &[(i64, Option<String>)],
) -> Value {
    let incoming: Vec<Value> = incoming
        .iter()
        .filter(|(q, _)| *q != 0)
        .map(|(q, eta)| match eta {
            Some(e) => json!({"quantity": q, "eta": e}),
            None => json!({"quantity": q}),
        })
        .collect();
    let mut r = json!({"sku": sku, "location": warehouse, "on_hand": on_hand,
                       "committed": committed});
    if !incoming.is_empty() {
        r["incoming"] = Value::Array(incoming);
    }
    r
}

/// Canonical product from a `product.product` row (`code`, `name`, `active`, `description`).
pub fn product_record(row: &Value) -> Value {
    let mut r = json!({
        "sku": sku_of(row),
        "name": row.get("name").and_then(Value::as_str).unwrap_or(""),
        "active": row.get("active").and_then(Value::as_bool).unwrap_or(true),
    });
    if let Some(d) = row
        .get("description")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
    {
        r["description"] = json!(d);
    }
    r
}

/// Canonical price: the product's list price on the `default` list.
pub fn price_record(sku: &str, currency: &str, list_price: &Value) -> Option<Value> {
    Some(json!({"sku": sku, "list": "default", "currency": currency,
                "amount_minor": money_minor(list_price)?}))
}

/// A canonical address from a `party.address` row (`street`, `postal_code`, `city`,
/// `country.code`, `party_name`).
pub fn address_record(row: &Value) -> Option<Value> {
    let street = row.get("street").and_then(Value::as_str).unwrap_or("");
    let mut lines = street.lines().map(str::trim).filter(|l| !l.is_empty());
    let line1 = lines.next()?.to_string();
    let line2: Vec<&str> = lines.collect();
    let city = row.get("city").and_then(Value::as_str).unwrap_or("");
    let country = row
        .pointer("/country./code")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut a = Map::new();
    a.insert("line1".into(), json!(line1));
    if !line2.is_empty() {
        a.insert("line2".into(), json!(line2.join(", ")));
    }
    a.insert("city".into(), json!(city));
    if let Some(p) = row
        .get("postal_code")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    {
        a.insert("postal_code".into(), json!(p));
    }
    a.insert("country".into(), json!(country));
    if let Some(n) = row
        .get("party_name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        a.insert("name".into(), json!(n));
    }
    Some(Value::Object(a))
}

/// Tryton address fields from a canonical address (country resolved by the caller).
pub fn address_to_tryton(a: &Value, country_id: Option<i64>) -> Value {
    let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let street = [s("line1"), s("line2")]
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let mut r = json!({"street": street, "city": s("city"), "postal_code": s("postal_code")});
    if let Some(c) = country_id {
        r["country"] = json!(c);
    }
    if !s("name").is_empty() {
        r["party_name"] = json!(s("name"));
    }
    r
}

/// Canonical shipment status from `stock.shipment.out` `state`.
pub fn shipment_status(state: &str) -> &'static str {
    match state {
        "done" => "shipped",
        "cancelled" => "cancelled",
        _ => "pending",
    }
}

/// Canonical invoice status from `account.invoice` `state`.
pub fn invoice_status(state: &str) -> &'static str {
    match state {
        "posted" => "posted",
        "paid" => "paid",
        "cancelled" => "cancelled",
        _ => "draft",
    }
}

/// Canonical order status from a `sale.sale` row (`state`, `shipment_state`, `invoice_state`).
pub fn order_status(row: &Value) -> &'static str {
    let s = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or("");
    match (s("state"), s("shipment_state"), s("invoice_state")) {
        ("cancelled", _, _) => "cancelled",
        // Done with nothing shipped and nothing invoiced: a processing sale cancelled (its
        // shipments and invoices cancelled and ignored; Tryton has no processing → cancelled).
        ("done", "none", "none") => "cancelled",
        ("draft" | "quotation", _, _) => "placed",
        ("done", _, _) => "closed",
        (_, _, "paid") => "paid",
        (_, "sent", _) => "shipped",
        (_, "partially shipped", _) => "partially_shipped",
        _ => "accepted",
    }
}

/// The canonical order a `sale.sale` names, from its `reference` and its own `number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaleOrder<'a> {
    /// The channel, when the reference has one (`channel/number`).
    pub channel: Option<&'a str>,
    /// The channel's order number (the sale's own number when it has no reference).
    pub number: &'a str,
    /// The sale's reference when it is not the canonical key: a cancel-and-replace replacement
    /// (`"{key}~{n}"`, see `concord_core::order_key_of_reference`).
    pub reference: Option<&'a str>,
}

/// The canonical order of a sale: its `reference` is the canonical key `channel/number` Concord
/// created it under, or `"{key}~{n}"` for the replacement of a cancelled-and-replaced sale —
/// which is the same order `key`, not a new one. No reference: the sale's own number.
pub fn sale_order<'a>(reference: &'a str, sale_number: &'a str) -> SaleOrder<'a> {
    let reference = reference.trim();
    let key = concord_core::order_key_of_reference(reference);
    let replaced = (key != reference).then_some(reference);
    let (channel, number) = match key.split_once('/') {
        Some((c, n)) => (Some(c), n),
        None if !key.is_empty() => (None, key),
        None => (None, sale_number),
    };
    SaleOrder {
        channel,
        number,
        reference: replaced,
    }
}

/// The canonical order key that order-scoped records (shipments, invoices, payments, refunds)
/// of a sale name, from the sale's `reference`: a replacement's `"{key}~{n}"` names `key`.
pub fn order_key_of_sale(reference: &str) -> &str {
    concord_core::order_key_of_reference(reference.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After cancel-and-replace the replacement sale's reference is `{key}~n`: it and its
    /// shipments, invoices and payments belong to order `key`.
    #[test]
    fn a_replacement_sale_is_the_same_canonical_order() {
        let so = |channel, number, reference| SaleOrder {
            channel,
            number,
            reference,
        };
        assert_eq!(sale_order("web/1001", "SO7"), so(Some("web"), "1001", None));
        assert_eq!(
            sale_order("web/1001~2", "SO9"),
            so(Some("web"), "1001", Some("web/1001~2"))
        );
        assert_eq!(
            sale_order(" web/1001~12 ", "SO9"),
            so(Some("web"), "1001", Some("web/1001~12"))
        );
        // Not a replacement suffix: kept as the channel's number.
        assert_eq!(
            sale_order("web/1001~x", "SO9"),
            so(Some("web"), "1001~x", None)
        );
        assert_eq!(sale_order("PO-77", "SO9"), so(None, "PO-77", None));
        assert_eq!(sale_order("", "SO9"), so(None, "SO9", None));
        assert_eq!(order_key_of_sale("web/1001~2"), "web/1001");
        assert_eq!(order_key_of_sale("web/1001"), "web/1001");
        assert_eq!(order_key_of_sale("web/1001~1"), "web/1001~1");
    }

    #[test]
    fn timestamps_round_trip_with_fixed_width() {
        let v = json!({"__class__": "datetime", "year": 2026, "month": 11, "day": 25,
                       "hour": 9, "minute": 3, "second": 6, "microsecond": 42});
        let s = ts_from_tryton(&v).unwrap();
        assert_eq!(s, "2026-11-25T09:03:06.000042Z");
        assert_eq!(s.len(), 27);
        let t = parse_ts(&s).unwrap();
        assert_eq!(ts_to_tryton(t), v);
        assert_eq!(format_ts(just_before(t)), "2026-11-25T09:03:06.000041Z");
        assert_eq!(
            format_ts(ts_minus(t, Duration::from_secs(7))),
            "2026-11-25T09:02:59.000042Z"
        );
        assert!(ts_from_tryton(&json!({"__class__": "date"})).is_none());
        let row = json!({"write_date": null, "create_date": v});
        assert_eq!(changed_at(&row), Some(t));
    }

    #[test]
    fn money_is_exact() {
        let d = |s: &str| json!({"__class__": "Decimal", "decimal": s});
        assert_eq!(money_minor(&d("11.00")), Some(1100));
        assert_eq!(money_minor(&d("11.005")), Some(1101));
        assert_eq!(money_minor(&d("-3.5")), Some(-350));
        assert_eq!(money_minor(&d("7")), Some(700));
        assert_eq!(money_minor(&json!(2.25)), Some(225));
        assert_eq!(money_minor(&d("x")), None);
        assert_eq!(minor_to_decimal(1234)["decimal"], "12.34");
        assert_eq!(minor_to_decimal(-5)["decimal"], "-0.05");
    }

    #[test]
    fn records_have_the_canonical_shape() {
        let s = stock_record(
            "A",
            "WH",
            5,
            2,
            &[(3, Some("2026-12-01".into())), (0, None)],
        );
        assert_eq!(
            s,
            json!({"sku": "A", "location": "WH", "on_hand": 5, "committed": 2,
                   "incoming": [{"quantity": 3, "eta": "2026-12-01"}]})
        );
        assert!(concord_core::validate(concord_core::Kind::Stock, &s).is_ok());
        let neg = stock_record("A", "WH", -2, 0, &[]);
        let e = concord_core::validate(concord_core::Kind::Stock, &neg).unwrap_err();
        assert!(e.to_string().contains("on_hand"), "{e}");
        let p = product_record(&json!({"code": null, "name": "No code", "active": true}));
        let e = concord_core::validate(concord_core::Kind::Product, &p).unwrap_err();
        assert!(e.to_string().contains("sku"), "{e}");
        assert_eq!(product_external_id(7, ""), "product#7");
        let a = address_record(&json!({"street": "1 Main St\nFlat 2", "city": "X",
                                        "postal_code": "1", "country.": {"code": "US"}}))
        .unwrap();
        assert_eq!(a["line2"], "Flat 2");
        assert_eq!(a["country"], "US");
        assert_eq!(
            order_status(&json!({"state": "processing", "shipment_state": "sent"})),
            "shipped"
        );
        let done = |sh: &str, inv: &str| {
            order_status(&json!({"state": "done", "shipment_state": sh, "invoice_state": inv}))
        };
        assert_eq!(done("none", "none"), "cancelled");
        assert_eq!(done("sent", "paid"), "closed");
    }
}

/// An exact decimal: `mantissa × 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dec {
    mantissa: i128,
    scale: u32,
}

impl Dec {
    /// `"9.50"`, `"-1"`, `"0.9"` (no exponents, no floats).
    fn parse(s: &str) -> Option<Dec> {
        let s = s.trim();
        let (neg, body) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit())
            || int.len() + frac.len() > 30
        {
            return None;
        }
        let digits = format!("{int}{frac}");
        let m: i128 = digits.parse().ok()?;
        Some(Dec {
            mantissa: if neg { -m } else { m },
            scale: u32::try_from(frac.len()).ok()?,
        })
    }

    fn rescale(self, scale: u32) -> Option<i128> {
        self.mantissa
            .checked_mul(10i128.checked_pow(scale.checked_sub(self.scale)?)?)
    }

    fn add(self, o: Dec) -> Option<Dec> {
        let scale = self.scale.max(o.scale);
        Some(Dec {
            mantissa: self.rescale(scale)?.checked_add(o.rescale(scale)?)?,
            scale,
        })
    }

    fn neg(self) -> Dec {
        Dec {
            mantissa: -self.mantissa,
            scale: self.scale,
        }
    }

    fn mul(self, o: Dec) -> Option<Dec> {
        Some(Dec {
            mantissa: self.mantissa.checked_mul(o.mantissa)?,
            scale: self.scale.checked_add(o.scale)?,
        })
    }

    /// Minor units with `digits` decimals, rounded half away from zero.
    fn to_minor(self, digits: u32) -> Option<i64> {
        let abs = self.mantissa.unsigned_abs();
        let text = if self.scale == 0 {
            abs.to_string()
        } else {
            let s = format!("{abs:0>width$}", width = self.scale as usize + 1);
            let (i, f) = s.split_at(s.len() - self.scale as usize);
            format!("{i}.{f}")
        };
        let minor = concord_core::pricing::decimal_to_minor(&text, digits)?;
        Some(if self.mantissa < 0 { -minor } else { minor })
    }
}

/// A number of a formula: `9.5`, `Decimal('9.50')` or `Decimal("9.50")`.
fn formula_number(s: &str) -> Option<Dec> {
    let s = s.trim();
    let inner = s
        .strip_prefix("Decimal(")
        .and_then(|r| r.strip_suffix(')'))
        .map(str::trim);
    match inner {
        Some(q) => {
            let unquoted = q
                .strip_prefix('\'')
                .and_then(|r| r.strip_suffix('\''))
                .or_else(|| q.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
                .unwrap_or(q);
            Dec::parse(unquoted)
        }
        None => Dec::parse(s),
    }
}

/// Evaluate a Tryton price list line `formula` for one product, in minor units (`digits`
/// decimals, rounded half away from zero; exact decimal arithmetic). `unit_price` and
/// `list_price` both stand for the product's list price (a `Decimal` value as Tryton sends it).
///
/// Supported shapes (whitespace free): a number (`9.5`, `Decimal('9.50')`), `unit_price` or
/// `list_price` alone, and `unit_price|list_price` `*`, `+` or `-` a number. `Err` says why
/// anything else is not evaluated (the caller turns it into a record the validator rejects).
pub fn eval_formula(formula: &str, list_price: &Value, digits: u32) -> Result<i64, String> {
    let f = formula.trim();
    let unsupported = || {
        format!(
            "unsupported Tryton price list formula `{f}`: Concord evaluates only a number, \
             `unit_price`/`list_price` alone, or `unit_price * N`, `unit_price + N`, \
             `unit_price - N`, `list_price * N`"
        )
    };
    let overflow = || format!("Tryton price list formula `{f}` overflows");
    let base = || -> Result<Dec, String> {
        let text = match list_price {
            Value::Object(_) => list_price
                .get("decimal")
                .and_then(Value::as_str)
                .map(str::to_string),
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        text.as_deref().and_then(Dec::parse).ok_or_else(|| {
            format!(
                "Tryton price list formula `{f}` needs the product's list price, which is not set"
            )
        })
    };
    let value = if let Some(n) = formula_number(f) {
        n
    } else {
        let rest = f
            .strip_prefix("unit_price")
            .or_else(|| f.strip_prefix("list_price"))
            .ok_or_else(unsupported)?
            .trim();
        if rest.is_empty() {
            base()?
        } else {
            let (op, num) = rest.split_at(1);
            let n = formula_number(num).ok_or_else(unsupported)?;
            let b = base()?;
            match op {
                "*" => b.mul(n),
                "+" => b.add(n),
                "-" => b.add(n.neg()),
                _ => return Err(unsupported()),
            }
            .ok_or_else(overflow)?
        }
    };
    value.to_minor(digits).ok_or_else(overflow)
}

#[cfg(test)]
mod formula_tests {
    use super::eval_formula;
    use serde_json::json;

    fn ev(f: &str, lp: &str) -> Result<i64, String> {
        eval_formula(f, &json!({"__class__": "Decimal", "decimal": lp}), 2)
    }

    #[test]
    fn supported_shapes_are_exact_and_round_half_away_from_zero() {
        assert_eq!(ev("Decimal('9.50')", "10"), Ok(950));
        assert_eq!(ev("Decimal(\"9.5\")", "10"), Ok(950));
        assert_eq!(ev(" 9.5 ", "10"), Ok(950));
        assert_eq!(ev("unit_price", "12.3400"), Ok(1234));
        assert_eq!(ev("unit_price * 0.9", "10.0000"), Ok(900));
        assert_eq!(ev("unit_price*Decimal('0.9')", "10.0000"), Ok(900));
        // 0.1 * 0.05 = 0.005 → 0.01 (half away from zero), never a float artefact.
        assert_eq!(ev("list_price * 0.05", "0.1"), Ok(1));
        assert_eq!(ev("unit_price * 0.333", "10.0050"), Ok(333));
        assert_eq!(ev("unit_price - 1.5", "10"), Ok(850));
        assert_eq!(ev("unit_price + 0.005", "10"), Ok(1001));
        // Negative results are returned as they are (the validator rejects them).
        assert_eq!(ev("unit_price - 20", "10"), Ok(-1000));
        assert_eq!(ev("unit_price - 10.005", "0"), Ok(-1001));
    }

    #[test]
    fn anything_else_is_refused_with_the_formula_named() {
        for f in [
            "cost_price * 1.2",
            "unit_price * 0.9 + 1",
            "unit_price / 2",
            "__import__('os')",
            "unit_price * x",
            "",
        ] {
            let e = ev(f, "10").expect_err(f);
            assert!(e.contains(&format!("`{}`", f.trim())), "{e}");
        }
        let e = eval_formula("unit_price * 2", &serde_json::Value::Null, 2).expect_err("no price");
        assert!(e.contains("list price"), "{e}");
    }
}

//! Property test of canonical record validation over the full domain (issue 12): for every
//! kind, every field of a valid record is replaced by an arbitrary JSON value — integers over
//! all of `i64` and `u64`, floats, NUL and other control characters, 100 KB strings, impossible
//! dates, nested arrays and objects, repeated SKUs — and:
//! - a refusal names the replaced field (the error's path starts with it);
//! - an accepted record lies inside the bounded domain of `concord_core::limits`: every number
//!   outside `attributes` from 0 to 10¹⁵ (quantities to 10⁹), every string free of control
//!   characters but tab and line breaks and at most 64 KiB, identifiers at most 256 bytes, and
//!   a SKU's lines adding up to at most 10⁹.

use concord_core::limits::{MAX_KEY_BYTES, MAX_MONEY_MINOR, MAX_QUANTITY, MAX_TEXT_BYTES};
use concord_core::{validate, Kind};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A valid record of each kind, with the fields worth replacing (dot paths into the record).
fn bases() -> Vec<(Kind, Value, Vec<&'static str>)> {
    vec![
        (
            Kind::Product,
            json!({"sku": "A", "name": "Alpha", "description": "d", "barcode": "123",
                   "active": true, "attributes": {"colour": "red"}}),
            vec![
                "sku",
                "name",
                "description",
                "barcode",
                "active",
                "attributes",
                "attributes.colour",
            ],
        ),
        (
            Kind::Stock,
            json!({"sku": "A", "location": "WH1", "on_hand": 5, "committed": 1,
                   "incoming": [{"quantity": 3, "eta": "2026-03-01"}]}),
            vec![
                "sku",
                "location",
                "on_hand",
                "committed",
                "incoming",
                "incoming.0.quantity",
                "incoming.0.eta",
            ],
        ),
        (
            Kind::Price,
            json!({"sku": "A", "list": "default", "currency": "USD", "amount_minor": 100,
                   "tiers": [{"min_quantity": 10, "amount_minor": 90}], "channel": "web",
                   "valid_from": "2026-01-01", "valid_to": "2026-12-31"}),
            vec![
                "sku",
                "list",
                "currency",
                "amount_minor",
                "tiers",
                "tiers.0.min_quantity",
                "tiers.0.amount_minor",
                "channel",
                "customer_group",
                "valid_from",
                "valid_to",
            ],
        ),
        (
            Kind::Customer,
            json!({"email": "ann@example.com", "name": "Ann", "phone": "+1", "company": "Co",
                   "customer_number": "C1", "group": "vip",
                   "addresses": [{"line1": "1 Main St", "city": "Town", "country": "US"}]}),
            vec![
                "email",
                "name",
                "phone",
                "customer_number",
                "group",
                "addresses",
                "addresses.0.line1",
                "addresses.0.country",
            ],
        ),
        (
            Kind::Order,
            json!({"channel": "web", "number": "1001", "customer": {"email": "a@b.co", "name": "A"},
                   "status": "placed", "currency": "USD", "total_minor": 300,
                   "placed_at": "2026-03-01T10:00:00+01:00", "erp_number": "SO1", "reference": "web/1001",
                   "lines": [{"line_id": "l1", "sku": "A", "quantity": 2, "unit_price_minor": 100, "location": "WH1"},
                             {"sku": "A", "quantity": 1, "unit_price_minor": 100}]}),
            vec![
                "channel",
                "number",
                "customer",
                "customer.email",
                "status",
                "currency",
                "total_minor",
                "placed_at",
                "erp_number",
                "reference",
                "lines",
                "lines.0.sku",
                "lines.0.quantity",
                "lines.1.quantity",
                "lines.0.unit_price_minor",
                "lines.0.location",
                "lines.0.line_id",
            ],
        ),
        (
            Kind::Shipment,
            json!({"id": "S1", "order": "web/1001", "status": "shipped", "carrier": "UPS",
                   "tracking_number": "1Z", "lines": [{"sku": "A", "quantity": 2}, {"sku": "A", "quantity": 1}],
                   "shipped_at": "2026-03-02T00:00:00Z"}),
            vec![
                "id",
                "order",
                "status",
                "carrier",
                "tracking_number",
                "lines",
                "lines.0.sku",
                "lines.0.quantity",
                "lines.1.quantity",
                "shipped_at",
            ],
        ),
        (
            Kind::Invoice,
            json!({"number": "INV-1", "order": "web/1001", "status": "posted", "currency": "USD",
                   "total_minor": 300, "due_date": "2026-04-01"}),
            vec![
                "number",
                "order",
                "status",
                "currency",
                "total_minor",
                "due_date",
            ],
        ),
        (
            Kind::Payment,
            json!({"id": "P1", "order": "web/1001", "invoice": "INV-1", "amount_minor": 300,
                   "currency": "USD", "method": "card", "status": "captured"}),
            vec![
                "id",
                "order",
                "invoice",
                "amount_minor",
                "currency",
                "method",
                "status",
            ],
        ),
        (
            Kind::Refund,
            json!({"id": "R1", "order": "web/1001", "amount_minor": 100, "currency": "USD",
                   "reason": "broken", "lines": [{"sku": "A", "quantity": 1}], "restock": true}),
            vec![
                "id",
                "order",
                "amount_minor",
                "currency",
                "reason",
                "lines",
                "lines.0.sku",
                "lines.0.quantity",
                "restock",
            ],
        ),
    ]
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,20}".prop_map(String::from),
        Just(String::new()),
        Just("A\u{0}B".to_string()),
        Just("\u{1b}[31mred".to_string()),
        Just("x".repeat(100 * 1024)),
        Just("y".repeat(MAX_KEY_BYTES + 1)),
        Just("2026-02-30".to_string()),
        Just("2026-02-28".to_string()),
        Just("2026-02-30T10:00:00Z".to_string()),
        Just("2026-03-01T10:00:00+02:00".to_string()),
        Just("USD".to_string()),
        Just("a@b.co".to_string()),
        Just("placed".to_string()),
    ]
}

fn hostile_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(MAX_QUANTITY)),
        Just(json!(MAX_QUANTITY + 1)),
        Just(json!(MAX_MONEY_MINOR + 1)),
        Just(json!(0)),
        Just(json!(-1)),
        (0i64..20).prop_map(|n| json!(n)),
    ]
}

fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        hostile_number(),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(hostile_string(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Set the value at a dot path (`lines.0.sku`), creating object fields as needed.
fn set(record: &mut Value, path: &str, v: Value) {
    let mut at = record;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        let next = match p.parse::<usize>() {
            Ok(n) => &mut at[n],
            Err(_) => &mut at[*p],
        };
        if last {
            *next = v;
            return;
        }
        at = next;
    }
}

/// The error path names the replaced field: `lines.0.sku` → `lines[0].sku` or a prefix of it
/// (`lines` for a bad array), or the whole record for a missing required field.
fn names(path: &str, field: &str) -> bool {
    let want = field
        .split('.')
        .map(|p| match p.parse::<usize>() {
            Ok(n) => format!("[{n}]"),
            Err(_) => format!(".{p}"),
        })
        .collect::<String>();
    let want = want.trim_start_matches('.');
    let top = field.split('.').next().unwrap_or(field);
    path.starts_with(top) && (want.starts_with(path) || path.starts_with(want))
}

/// Every invariant of an accepted record.
fn check_accepted(kind: Kind, v: &Value) -> Result<(), String> {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Number(n) if !path.starts_with("attributes") => {
                let in_bounds = n
                    .as_i64()
                    .is_some_and(|i| (0..=MAX_MONEY_MINOR).contains(&i));
                if !in_bounds {
                    out.push(format!("{path}: number {n} outside 0..=10^15"));
                }
            }
            Value::String(s) => {
                let control = s
                    .chars()
                    .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'));
                if s.len() > MAX_TEXT_BYTES || control {
                    out.push(format!("{path}: string out of bounds"));
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}[{i}]"), out);
                }
            }
            Value::Object(m) => {
                for (k, x) in m {
                    if k.len() > MAX_KEY_BYTES || k.chars().any(char::is_control) {
                        out.push(format!("{path}: field name out of bounds"));
                    }
                    let at = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(x, &at, out);
                }
            }
            _ => {}
        }
    }
    let mut problems = Vec::new();
    walk(v, "", &mut problems);
    let key_ok = |s: &Value| {
        s.as_str().is_none_or(|s| {
            !s.trim().is_empty() && s.len() <= MAX_KEY_BYTES && !s.chars().any(char::is_control)
        })
    };
    for f in ["sku", "location", "id", "order", "number", "list", "email"] {
        if let Some(x) = v.get(f) {
            if !key_ok(x) {
                problems.push(format!("identifier {f} out of bounds"));
            }
        }
    }
    for q in ["on_hand", "committed"] {
        if v.get(q)
            .and_then(Value::as_i64)
            .is_some_and(|n| n > MAX_QUANTITY)
        {
            problems.push(format!("{q} above the bound"));
        }
    }
    if let Some(lines) = v.get("lines").and_then(Value::as_array) {
        let mut per_sku: BTreeMap<&str, i64> = BTreeMap::new();
        for l in lines {
            if !key_ok(&l["sku"]) {
                problems.push("a line's sku out of bounds".into());
            }
            let q = l["quantity"].as_i64().unwrap_or(-1);
            if !(1..=MAX_QUANTITY).contains(&q) {
                problems.push(format!("a line's quantity {q}"));
            }
            *per_sku.entry(l["sku"].as_str().unwrap_or("")).or_default() += q;
        }
        if per_sku.values().any(|t| *t > MAX_QUANTITY) {
            problems.push("a SKU's lines add up past the bound".into());
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{kind}: {problems:?} in {v}"))
    }
}

#[test]
fn the_bases_are_valid() {
    for (kind, base, _) in bases() {
        let v = validate(kind, &base).unwrap_or_else(|e| panic!("{kind}: {e}"));
        check_accepted(kind, &v).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Every field of every kind, replaced by anything.
    #[test]
    fn any_value_in_any_field_is_refused_by_name_or_in_bounds(
        pick in any::<prop::sample::Index>(),
        field in any::<prop::sample::Index>(),
        value in hostile_value(),
    ) {
        let all = bases();
        let (kind, mut record, fields) = all[pick.index(all.len())].clone();
        let field = fields[field.index(fields.len())];
        set(&mut record, field, value.clone());
        match validate(kind, &record) {
            Ok(v) => {
                if let Err(e) = check_accepted(kind, &v) {
                    prop_assert!(false, "{} = {}: {}", field, value, e);
                }
            }
            Err(e) => {
                prop_assert_eq!(e.kind, kind);
                prop_assert!(names(&e.path, field), "{} = {}: error names `{}`: {}", field, value, e.path, e);
                prop_assert!(e.to_string().len() < 1024, "the error does not echo the value: {} bytes", e.to_string().len());
            }
        }
    }

    /// Quantities over all of i64 in a stock figure and repeated SKUs in an order.
    #[test]
    fn quantities_over_all_of_i64(on_hand in any::<i64>(), committed in any::<i64>(),
                                  a in any::<i64>(), b in any::<i64>()) {
        let s = validate(Kind::Stock, &json!({"sku": "A", "location": "WH1", "on_hand": on_hand, "committed": committed}));
        let in_range = |n: i64| (0..=MAX_QUANTITY).contains(&n);
        prop_assert_eq!(s.is_ok(), in_range(on_hand) && in_range(committed));
        let o = validate(Kind::Order, &json!({"number": "1", "customer": {"email": "a@b.co"}, "currency": "USD",
            "lines": [{"sku": "A", "quantity": a}, {"sku": "A", "quantity": b}]}));
        let line = |n: i64| (1..=MAX_QUANTITY).contains(&n);
        let ok = line(a) && line(b) && a + b <= MAX_QUANTITY;
        prop_assert_eq!(o.is_ok(), ok, "{} + {}", a, b);
        if let Err(e) = o {
            prop_assert!(e.path.starts_with("lines["), "{}", e);
        }
    }
}

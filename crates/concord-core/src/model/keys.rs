//! The keys and dependencies of canonical records: [`natural_key`] (the key every endpoint can
//! agree on: SKU, e-mail, `channel/number`, `{order}:{id}` for order-scoped records),
//! [`order_scoped_key`], [`order_key_of_reference`] (a cancel-and-replace reference `{key}~n`
//! back to `key`) and [`dependencies`] (what a destination must know before a record is
//! written there).
//!
//! Must never parse a key back into its parts: keys are built from a *validated* record's
//! fields, and connectors and the engine read those fields, not the key.

use super::ValidationError;
use crate::Kind;
use serde_json::Value;

fn str_field<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

/// The canonical key of a *validated* record: the natural key every endpoint can agree on.
/// `source` is the endpoint the record came from (an order's channel when it names none).
///
/// product: `sku`; stock: `sku@location`; price: `list:sku`; customer: e-mail;
/// order: `channel/number`; shipment, refund, payment: `{order}:{id}`; invoice:
/// `{order}:{number}` (see [`order_scoped_key`]).
pub fn natural_key(kind: Kind, record: &Value, source: &str) -> Result<String, ValidationError> {
    let missing = |f: &str| ValidationError {
        kind,
        path: f.to_string(),
        message: "is required to identify the record".to_string(),
    };
    let get = |f: &str| str_field(record, f).ok_or_else(|| missing(f));
    Ok(match kind {
        Kind::Product => get("sku")?.to_string(),
        Kind::Stock => format!("{}@{}", get("sku")?, get("location")?),
        Kind::Price => format!(
            "{}:{}",
            str_field(record, "list").unwrap_or("default"),
            get("sku")?
        ),
        Kind::Customer => get("email")?.to_lowercase(),
        Kind::Order => {
            let channel = str_field(record, "channel").unwrap_or(source);
            format!("{channel}/{}", get("number")?)
        }
        Kind::Shipment | Kind::Payment | Kind::Refund => {
            order_scoped_key(get("order")?, get("id")?)
        }
        Kind::Invoice => order_scoped_key(get("order")?, get("number")?),
    })
}

/// The canonical key of an order-scoped record (shipment, invoice, payment, refund):
/// `{order}:{id}`, `order` being the canonical order key (`channel/number`). A channel makes its
/// ids unique only among its own records (two stores both number payments `pay_1`, two ERPs
/// both number invoices `INV-1`), so the record's own id is qualified by the order it belongs
/// to: the same id under two orders is two records. Keys are built, never parsed: the record's
/// `order` and `id` fields are what connectors and the engine read.
pub fn order_scoped_key(order: &str, id: &str) -> String {
    format!("{order}:{id}")
}

/// The canonical order key an ERP order reference names: the reference itself, except that a
/// cancel-and-replace replacement's reference `"{key}~{n}"` (n ≥ 2, see `Order::reference`)
/// names order `key`. `"web/1001~2"` → `"web/1001"`; `"web/1001"`, `"web/1001~"`,
/// `"web/1001~1"`, `"web/10~x"` are returned unchanged.
pub fn order_key_of_reference(reference: &str) -> &str {
    match reference.rsplit_once('~') {
        Some((key, n))
            if !key.is_empty()
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && n.parse::<u64>().is_ok_and(|n| n >= 2) =>
        {
            key
        }
        _ => reference,
    }
}

/// What must already be known at a destination before this record can be written there:
/// an order needs its customer and every product; order-scoped kinds need their order.
pub fn dependencies(kind: Kind, record: &Value) -> Vec<(Kind, String)> {
    let mut deps = Vec::new();
    match kind {
        Kind::Order => {
            if let Some(email) = record.pointer("/customer/email").and_then(Value::as_str) {
                deps.push((Kind::Customer, email.to_lowercase()));
            }
            if let Some(lines) = record.get("lines").and_then(Value::as_array) {
                for l in lines {
                    if let Some(sku) = str_field(l, "sku") {
                        let d = (Kind::Product, sku.to_string());
                        if !deps.contains(&d) {
                            deps.push(d);
                        }
                    }
                }
            }
        }
        Kind::Shipment | Kind::Invoice | Kind::Payment | Kind::Refund => {
            if let Some(order) = str_field(record, "order") {
                deps.push((Kind::Order, order.to_string()));
            }
        }
        Kind::Product | Kind::Stock | Kind::Price | Kind::Customer => {}
    }
    deps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{sample_order as order, validate};
    use serde_json::json;

    #[test]
    fn order_depends_on_customer_and_each_product_once() {
        let mut o = order();
        o["lines"]
            .as_array_mut()
            .unwrap()
            .push(json!({"sku": "A", "quantity": 1}));
        let o = validate(Kind::Order, &o).unwrap();
        assert_eq!(
            dependencies(Kind::Order, &o),
            vec![
                (Kind::Customer, "ann@example.com".to_string()),
                (Kind::Product, "A".to_string()),
                (Kind::Product, "B".to_string())
            ]
        );
        let s = json!({"id": "S1", "order": "web/1001", "lines": []});
        assert_eq!(
            dependencies(Kind::Shipment, &s),
            vec![(Kind::Order, "web/1001".to_string())]
        );
        assert!(dependencies(Kind::Stock, &json!({})).is_empty());
    }

    /// Ids are unique only per channel: the same id under two orders is two records.
    #[test]
    fn order_scoped_records_are_keyed_within_their_order() {
        let pay = |order: &str| {
            validate(
                Kind::Payment,
                &json!({"id": "pay_1", "order": order, "amount_minor": 100, "currency": "USD"}),
            )
            .unwrap()
        };
        let k1 = natural_key(Kind::Payment, &pay("web1/1001"), "web1").unwrap();
        let k2 = natural_key(Kind::Payment, &pay("web2/2001"), "web2").unwrap();
        assert_eq!(k1, "web1/1001:pay_1");
        assert_eq!(k2, "web2/2001:pay_1");
        let ship = json!({"id": "S1", "order": "web/1001", "lines": []});
        assert_eq!(
            natural_key(Kind::Shipment, &ship, "erp").unwrap(),
            "web/1001:S1"
        );
        let refund =
            json!({"id": "re_1", "order": "web/1001", "amount_minor": 1, "currency": "USD"});
        assert_eq!(
            natural_key(Kind::Refund, &refund, "web").unwrap(),
            "web/1001:re_1"
        );
        let inv =
            json!({"number": "INV-1", "order": "web/1001", "currency": "USD", "total_minor": 1});
        assert_eq!(
            natural_key(Kind::Invoice, &inv, "erp").unwrap(),
            "web/1001:INV-1"
        );
        // Without its order the record cannot be identified: the error names the field.
        let e = natural_key(Kind::Payment, &json!({"id": "pay_1"}), "web").unwrap_err();
        assert_eq!(e.path, "order");
    }

    #[test]
    fn a_replacement_reference_names_its_order() {
        for (reference, key) in [
            ("web/1001~2", "web/1001"),
            ("web/1001~13", "web/1001"),
            ("web/1001", "web/1001"),
            ("web/1001~", "web/1001~"),
            ("web/1001~1", "web/1001~1"),
            ("web/1001~x", "web/1001~x"),
            ("~2", "~2"),
            ("web/10~2~3", "web/10~2"),
        ] {
            assert_eq!(order_key_of_reference(reference), key, "{reference}");
        }
    }
}

//! Is the record a connector found under a natural key the one this write means? The rules every
//! connector's lookup-before-create follows, so that an idempotent create recognises its own
//! earlier write and never takes somebody else's record for it.
//!
//! What "the same record" means, per kind:
//! - **order** (looked up by its reference, `channel/number` or a replacement's `{key}~n`): the
//!   reference alone is *not* enough — a storefront that restarted its numbering, or a second
//!   store configured under the same endpoint name, reuses numbers. A record found under the
//!   reference is this order's only when
//!   1. the hub's own cross-reference says so (the write's `external_id` is that record), or
//!   2. it carries the hub's **stamp** for this order ([`order_stamp`]: a hash of the reference,
//!      the customer's e-mail and the time the order was placed — what stays the same for one
//!      order across edits and differs for another order under the same number) and the stamp
//!      matches, or
//!   3. it carries no stamp (made by hand, by another integration or by an older Concord) and
//!      its content is the order's: the same customer (e-mail, case-insensitive) and, for a
//!      create, the same lines (quantity per SKU, summed; prices, addresses and line order do
//!      not count — the ERP may reprice, and addresses are the party's).
//!
//!   Anything else is a **collision**: a permanent error naming the hub's order and the record
//!   found, so it becomes a dead letter and nothing is taken as delivered (the order's
//!   reservation stays held). A stamped record whose stamp matches but whose lines differ is this
//!   order edited since (the connector applies the edit, never a second create).
//! - **customer** (looked up by e-mail): an e-mail identifies one customer across the hub
//!   (design §2's natural key); a party/customer with that e-mail *is* the customer, and its
//!   name is updated. Correlation, not an assumption.
//! - **product** (looked up by SKU / product code): a SKU identifies one product; correlation.
//!   A lookup by anything derived from the SKU that is not unique to it (Vendure's slug) must
//!   check that what it found has no other SKU before reusing it.
//!
//! Must never: do I/O. Pure functions, unit-tested here; the connectors do the lookups.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The marker the stamp is written with, e.g. `concord-order:3f9a…` in a Tryton sale's comment.
pub const STAMP_PREFIX: &str = "concord-order:";

/// Hex digits of a stamp (80 bits: collisions between two orders of one reference are
/// negligible).
const STAMP_LEN: usize = 20;

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// When the order was placed, normalised so two reads of one order in different spellings of
/// the same instant agree: an RFC 3339 time as UTC milliseconds, anything else as written.
fn placed_at(payload: &Value) -> String {
    match str_at(payload, "/placed_at") {
        None => String::new(),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.timestamp_millis().to_string())
            .unwrap_or_else(|_| t.to_string()),
    }
}

/// The order's customer e-mail, lower-cased (`""` when the payload has none).
pub fn order_email(payload: &Value) -> String {
    str_at(payload, "/customer/email")
        .unwrap_or_default()
        .to_lowercase()
}

/// The hub's stamp for the order `reference` of `payload`: [`STAMP_PREFIX`] + a hash of the
/// reference, the customer's e-mail and the placing time. Deterministic: a retry, a replay, a
/// hub with a fresh store reading the same order again all compute the same stamp; another order
/// under the same reference (another customer, or placed at another time) gets another.
pub fn order_stamp(reference: &str, payload: &Value) -> String {
    let mut h = Sha256::new();
    for part in [reference.trim(), &order_email(payload), &placed_at(payload)] {
        // Length-prefixed, so no two different triples feed the same bytes.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = hex::encode(h.finalize());
    format!("{STAMP_PREFIX}{}", &digest[..STAMP_LEN])
}

/// The stamp written in `text` (a comment, a note), if any.
pub fn find_stamp(text: &str) -> Option<String> {
    let at = text.find(STAMP_PREFIX)?;
    let hex: String = text[at + STAMP_PREFIX.len()..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (hex.len() == STAMP_LEN).then(|| format!("{STAMP_PREFIX}{hex}"))
}

/// Quantity per SKU of a list of `{sku, quantity}` lines (summed; lines without a SKU or with
/// a quantity of 0 do not count).
pub fn lines_by_sku(lines: Option<&Value>) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for l in lines.and_then(Value::as_array).into_iter().flatten() {
        let (Some(sku), Some(q)) = (str_at(l, "/sku"), l.get("quantity").and_then(as_quantity))
        else {
            continue;
        };
        let e = out.entry(sku.to_string()).or_default();
        *e = e.saturating_add(q);
    }
    out.retain(|_, q| *q != 0);
    out
}

/// An integer quantity, also from a float an API returns for one (`2.0`).
pub fn as_quantity(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// `SKU-1×2, SKU-2×1` (or `no lines`).
pub fn describe_lines(lines: &BTreeMap<String, i64>) -> String {
    if lines.is_empty() {
        return "no lines".into();
    }
    lines
        .iter()
        .map(|(s, q)| format!("{s}×{q}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What is known about a record found under an order's reference.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FoundOrder {
    /// The stamp it carries, if any ([`find_stamp`]).
    pub stamp: Option<String>,
    /// Its customer's e-mail addresses (a Tryton party can have several), lower-cased.
    pub emails: Vec<String>,
    /// Quantity per SKU.
    pub lines: BTreeMap<String, i64>,
}

/// How a found record relates to the order being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This order's own record, as the write has it.
    Own,
    /// This order's own record (stamped by the hub for it), with other lines: an edit that has
    /// not reached it yet.
    OwnEdited,
    /// Another order's record: why (names what differs; the caller adds both identities).
    Collision(String),
}

/// Judge `found` against the order `payload` under `reference`. `compare_lines`: a create (the
/// record must hold the order as it is) rather than an amend or a cancel (which change or end
/// it, so only the identity counts).
pub fn judge(reference: &str, payload: &Value, found: &FoundOrder, compare_lines: bool) -> Verdict {
    let want_lines = lines_by_sku(payload.get("lines"));
    let same_lines = found.lines == want_lines;
    let email = order_email(payload);
    let theirs = if found.emails.is_empty() {
        "a customer without an e-mail".to_string()
    } else {
        found.emails.join(", ")
    };
    let ours = if email.is_empty() {
        "no e-mail"
    } else {
        &email
    };
    if let Some(stamp) = &found.stamp {
        if *stamp == order_stamp(reference, payload) {
            return if compare_lines && !same_lines {
                Verdict::OwnEdited
            } else {
                Verdict::Own
            };
        }
        let placed = str_at(payload, "/placed_at")
            .map(|p| format!(", placed at {p}"))
            .unwrap_or_default();
        return Verdict::Collision(format!(
            "the hub created it for another order under this reference (for {theirs}, {}; \
             this order is for {ours}, {}{placed})",
            describe_lines(&found.lines),
            describe_lines(&want_lines)
        ));
    }
    if email.is_empty() || !found.emails.iter().any(|e| e.eq_ignore_ascii_case(&email)) {
        return Verdict::Collision(format!("it is for {theirs}, this order for {ours}"));
    }
    if compare_lines && !same_lines {
        return Verdict::Collision(format!(
            "its lines are {}, this order's {}",
            describe_lines(&found.lines),
            describe_lines(&want_lines)
        ));
    }
    Verdict::Own
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order(email: &str, placed: Option<&str>, lines: &[(&str, i64)]) -> Value {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(s, q)| json!({"sku": s, "quantity": q, "unit_price_minor": 100}))
            .collect();
        let mut o = json!({"number": "1001", "customer": {"email": email}, "lines": lines});
        if let Some(p) = placed {
            o["placed_at"] = json!(p);
        }
        o
    }

    fn found_for(reference: &str, payload: &Value, stamped: bool) -> FoundOrder {
        FoundOrder {
            stamp: stamped.then(|| order_stamp(reference, payload)),
            emails: vec![order_email(payload)],
            lines: lines_by_sku(payload.get("lines")),
        }
    }

    #[test]
    fn stamps_are_deterministic_and_tell_orders_of_one_number_apart() {
        let a = order("A@x.io", Some("2026-11-25T10:00:00Z"), &[("S", 1)]);
        let s = order_stamp("web/1001", &a);
        assert!(s.starts_with(STAMP_PREFIX) && s.len() == STAMP_PREFIX.len() + STAMP_LEN);
        // Same order, other spellings: the e-mail's case, the instant's offset, other lines.
        let same = order("a@X.io", Some("2026-11-25T12:00:00+02:00"), &[("T", 9)]);
        assert_eq!(order_stamp("web/1001", &same), s);
        assert_eq!(order_stamp(" web/1001 ", &a), s);
        // Another customer, another placing time, another reference: other stamps.
        for other in [
            order("b@x.io", Some("2026-11-25T10:00:00Z"), &[("S", 1)]),
            order("a@x.io", Some("2026-11-25T10:00:01Z"), &[("S", 1)]),
            order("a@x.io", None, &[("S", 1)]),
        ] {
            assert_ne!(order_stamp("web/1001", &other), s, "{other}");
        }
        assert_ne!(order_stamp("web/1001~2", &a), s);
        // Length-prefixed parts: moving a character between parts changes the stamp.
        let x = json!({"customer": {"email": "b"}});
        let y = json!({"customer": {"email": "1b"}});
        assert_ne!(order_stamp("a1", &x), order_stamp("a", &y));
    }

    #[test]
    fn a_stamp_is_found_inside_any_text() {
        let s = order_stamp("web/1", &order("a@x.io", None, &[]));
        assert_eq!(find_stamp(&format!("Created by Concord [{s}]")), Some(s));
        assert_eq!(find_stamp("no stamp here"), None);
        assert_eq!(find_stamp("concord-order:abc"), None, "too short");
        assert_eq!(find_stamp(""), None);
    }

    #[test]
    fn lines_sum_per_sku_and_ignore_what_does_not_count() {
        let l = json!([{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1.0},
                       {"sku": "A", "quantity": 3}, {"sku": " ", "quantity": 4},
                       {"sku": "C", "quantity": 0}, {"sku": "D"}, {"sku": "E", "quantity": 1.5},
                       {"sku": "F", "quantity": i64::MAX}, {"sku": "F", "quantity": 1}]);
        let m = lines_by_sku(Some(&l));
        assert_eq!(m.get("A"), Some(&5));
        assert_eq!(m.get("B"), Some(&1));
        assert_eq!(m.get("F"), Some(&i64::MAX), "saturates, never wraps");
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(describe_lines(&m), format!("A×5, B×1, F×{}", i64::MAX));
        assert_eq!(describe_lines(&BTreeMap::new()), "no lines");
        assert!(lines_by_sku(None).is_empty());
        assert_eq!(as_quantity(&json!(f64::NAN)), None);
        assert_eq!(as_quantity(&json!(1e300)), None);
    }

    #[test]
    fn a_stamped_record_is_this_orders_only_when_the_stamp_matches() {
        let mine = order("a@x.io", Some("2026-11-25T10:00:00Z"), &[("S", 2)]);
        let found = found_for("web/1001", &mine, true);
        assert_eq!(judge("web/1001", &mine, &found, true), Verdict::Own);
        // The same order edited since: still its own, flagged for the edit.
        let edited = order("a@x.io", Some("2026-11-25T10:00:00Z"), &[("S", 3)]);
        assert_eq!(judge("web/1001", &edited, &found, true), Verdict::OwnEdited);
        assert_eq!(judge("web/1001", &edited, &found, false), Verdict::Own);
        // A restarted store's order 1001: same customer and lines, placed later.
        let later = order("a@x.io", Some("2026-12-01T09:00:00Z"), &[("S", 2)]);
        assert!(matches!(
            judge("web/1001", &later, &found, true),
            Verdict::Collision(_)
        ));
        // Cancelling or amending someone else's order is refused the same way.
        assert!(matches!(
            judge("web/1001", &later, &found, false),
            Verdict::Collision(_)
        ));
    }

    #[test]
    fn an_unstamped_record_is_this_orders_only_with_its_customer_and_lines() {
        let mine = order("a@x.io", None, &[("S", 2), ("T", 1)]);
        let mut found = found_for("web/1001", &mine, false);
        found.emails = vec!["other@x.io".into(), "A@X.IO".into()];
        assert_eq!(judge("web/1001", &mine, &found, true), Verdict::Own);
        // Another customer.
        let theirs = order("b@x.io", None, &[("S", 2), ("T", 1)]);
        let Verdict::Collision(why) = judge("web/1001", &theirs, &found, true) else {
            panic!("another customer's order is a collision");
        };
        assert!(
            why.contains("b@x.io") && why.contains("other@x.io"),
            "{why}"
        );
        // Other lines: a collision for a create; an amend or cancel only checks the customer.
        let more = order("a@x.io", None, &[("S", 13)]);
        let Verdict::Collision(why) = judge("web/1001", &more, &found, true) else {
            panic!("other lines are a collision");
        };
        assert!(why.contains("S×2, T×1") && why.contains("S×13"), "{why}");
        assert_eq!(judge("web/1001", &more, &found, false), Verdict::Own);
        // An order without an e-mail never matches by content.
        let anonymous =
            json!({"lines": [{"sku": "S", "quantity": 2}, {"sku": "T", "quantity": 1}]});
        assert!(matches!(
            judge("web/1001", &anonymous, &found, true),
            Verdict::Collision(_)
        ));
        found.emails.clear();
        assert!(matches!(
            judge("web/1001", &mine, &found, false),
            Verdict::Collision(_)
        ));
    }
}

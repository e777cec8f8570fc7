//! The bounded domain: the one place that says how large, how long and what shape anything
//! that comes from outside the hub may be — webhook records, records a connector reads, the
//! storefront (`/v1`) and admin (`/api/v1`) APIs, and the config's quantities.
//!
//! Why bounds at all: the ledger, prices and order facts are `i64` sums. A bound far below
//! `i64::MAX` on every number that enters means no sum the hub computes from accepted input
//! can come near overflowing (500 lines × 10⁹ units is 5 × 10¹¹), so the checked arithmetic
//! behind it ([`crate::inventory`], [`crate::pricing`], the store's ledger) never has to refuse
//! a request that passed the boundary. Strings are bounded because every key ends up in an
//! index, a log line or a metrics label, and a control character in one (a NUL, an ANSI escape)
//! corrupts whatever reads it.
//!
//! Each check returns a [`LimitError`] naming the field; callers prefix the record (`events[0]`,
//! `lines[2]`). Error messages never echo an offending value in full ([`excerpt`]): a 100 KB SKU
//! must not come back in the answer, the journal or the log.
//!
//! Must never: do I/O, read a clock, or accept a value it would refuse elsewhere (every boundary
//! calls these functions rather than its own copy of the rule).

use std::fmt;

/// Largest quantity of units in any one figure or line: on hand, committed, an incoming lot, an
/// order or reservation line, a buffer, a backorder limit. A billion units of one SKU at one
/// location is beyond any real stock, and `MAX_RESERVATION_LINES × MAX_QUANTITY` (and any sum
/// over a realistic number of records) stays far inside `i64`.
pub const MAX_QUANTITY: i64 = 1_000_000_000;

/// Largest amount of money in minor units: 10¹⁵ (ten trillion dollars in cents). Still leaves
/// room for a unit price × `MAX_QUANTITY` to be computed in `i64` at all but absurd prices (and
/// that product is checked: `pricing::quote` answers an overflow, never a wrap).
pub const MAX_MONEY_MINOR: i64 = 1_000_000_000_000_000;

/// Longest identifier in bytes: SKUs, locations, ids, keys, order numbers, references, channel
/// and list names, versions, e-mail addresses. Identifiers become primary keys, log fields and
/// metrics labels; 256 bytes hold any real one (an e-mail address is at most 254).
pub const MAX_KEY_BYTES: usize = 256;

/// Longest free text in bytes (a product name or description, an address line, a reason). Large
/// enough for a rich product description, small enough that one record cannot fill the journal.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Most lines in one reservation. A checkout with more is not a checkout; each line is routed
/// inside the store's single writer, so this bounds how long one request can hold it.
pub const MAX_RESERVATION_LINES: usize = 500;

/// Most `sku` values in one availability query (one storefront page of products); each is a
/// ledger read.
pub const MAX_QUERY_SKUS: usize = 200;

/// Most lines in one canonical record (an order, a shipment, a refund): generous for B2B
/// orders, and with [`MAX_QUANTITY`] it keeps an order's per-SKU sums inside `i64`.
pub const MAX_RECORD_LINES: usize = 10_000;

/// Deepest nesting of a JSON document from outside (serde_json's own recursion limit, kept on
/// purpose: deeper input is refused with an error, never a stack overflow).
pub const MAX_JSON_DEPTH: usize = 128;

/// A value outside the domain. `field` is the path of the value (`lines[0].quantity`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LimitError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn err(field: &str, message: String) -> LimitError {
    LimitError {
        field: field.to_string(),
        message,
    }
}

/// A quantity of units: `0..=MAX_QUANTITY` (on hand, committed, a buffer, a limit).
pub fn quantity(field: &str, v: i64) -> Result<i64, LimitError> {
    if v < 0 {
        return Err(err(field, format!("must not be negative, got {v}")));
    }
    if v > MAX_QUANTITY {
        return Err(err(
            field,
            format!("must be at most {MAX_QUANTITY} units, got {v}"),
        ));
    }
    Ok(v)
}

/// A quantity of a line: `1..=MAX_QUANTITY`.
pub fn line_quantity(field: &str, v: i64) -> Result<i64, LimitError> {
    if v < 1 {
        return Err(err(field, format!("must be greater than 0, got {v}")));
    }
    if v > MAX_QUANTITY {
        return Err(err(
            field,
            format!("must be at most {MAX_QUANTITY} units, got {v}"),
        ));
    }
    Ok(v)
}

/// An amount of money in minor units: `0..=MAX_MONEY_MINOR`.
pub fn money(field: &str, v: i64) -> Result<i64, LimitError> {
    if v < 0 {
        return Err(err(field, format!("must not be negative, got {v}")));
    }
    if v > MAX_MONEY_MINOR {
        return Err(err(
            field,
            format!("must be at most {MAX_MONEY_MINOR} minor units, got {v}"),
        ));
    }
    Ok(v)
}

/// Add `add` to a running per-key total of quantities, refusing a total above
/// [`MAX_QUANTITY`] (repeated SKUs in one order or reservation).
pub fn add_quantity(field: &str, total: i64, add: i64) -> Result<i64, LimitError> {
    match total.checked_add(add) {
        Some(t) if t <= MAX_QUANTITY => Ok(t),
        _ => Err(err(
            field,
            format!("lines of the same SKU add up to more than {MAX_QUANTITY} units"),
        )),
    }
}

/// The first control character of `s` (anything in Unicode category Cc), if any. `allow_layout`
/// lets tab, line feed and carriage return through (free text may have lines).
fn control(s: &str, allow_layout: bool) -> Option<(usize, char)> {
    s.char_indices()
        .find(|(_, c)| c.is_control() && !(allow_layout && matches!(c, '\t' | '\n' | '\r')))
}

/// An identifier: 1 to [`MAX_KEY_BYTES`] bytes, not blank, no control characters. Invalid
/// UTF-8 cannot reach here (a `&str`); the parsers before refuse it.
pub fn key(field: &str, s: &str) -> Result<(), LimitError> {
    key_chars(field, s)?;
    if s.trim().is_empty() {
        return Err(err(field, "must not be empty".to_string()));
    }
    Ok(())
}

/// The shape of an identifier without requiring one: at most [`MAX_KEY_BYTES`] bytes, no
/// control characters (for optional identifiers whose emptiness the caller decides about).
pub fn key_chars(field: &str, s: &str) -> Result<(), LimitError> {
    if s.len() > MAX_KEY_BYTES {
        return Err(err(
            field,
            format!(
                "is {} bytes long, at most {MAX_KEY_BYTES} are allowed",
                s.len()
            ),
        ));
    }
    if let Some((at, c)) = control(s, false) {
        return Err(err(
            field,
            format!(
                "contains the control character U+{:04X} at byte {at}",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// Free text: at most [`MAX_TEXT_BYTES`] bytes, no control characters but tab and line breaks.
/// May be empty.
pub fn text(field: &str, s: &str) -> Result<(), LimitError> {
    if s.len() > MAX_TEXT_BYTES {
        return Err(err(
            field,
            format!(
                "is {} bytes long, at most {MAX_TEXT_BYTES} are allowed",
                s.len()
            ),
        ));
    }
    if let Some((at, c)) = control(s, true) {
        return Err(err(
            field,
            format!(
                "contains the control character U+{:04X} at byte {at}",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// A calendar date `YYYY-MM-DD` that exists (`2026-02-30` does not). Returns it parsed.
pub fn date(field: &str, s: &str) -> Result<chrono::NaiveDate, LimitError> {
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    shaped
        .then(|| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| {
            err(
                field,
                format!("must be a date YYYY-MM-DD that exists, got {}", excerpt(s)),
            )
        })
}

/// A point in time: an RFC 3339 date-time (`2026-03-01T09:30:00+01:00`) or a date
/// (`YYYY-MM-DD`), each of which must exist.
pub fn timestamp(field: &str, s: &str) -> Result<(), LimitError> {
    if s.len() == 10 {
        return date(field, s).map(|_| ());
    }
    if s.len() > 64 || chrono::DateTime::parse_from_rfc3339(s).is_err() {
        return Err(err(
            field,
            format!(
                "must be an RFC 3339 date-time such as 2026-03-01T09:30:00Z (or a date YYYY-MM-DD), got {}",
                excerpt(s)
            ),
        ));
    }
    Ok(())
}

/// A count of items (lines, query values): at most `max`.
pub fn count(field: &str, n: usize, max: usize, what: &str) -> Result<(), LimitError> {
    if n > max {
        return Err(err(
            field,
            format!("at most {max} {what} are allowed, got {n}"),
        ));
    }
    Ok(())
}

/// `s` for an error message: quoted, at most 40 characters, control characters escaped.
pub fn excerpt(s: &str) -> String {
    const KEEP: usize = 40;
    let mut out: String = s.chars().take(KEEP).collect::<String>();
    let cut = out.len() < s.len();
    out = format!("{out:?}");
    if cut {
        out.push_str(&format!("… ({} bytes)", s.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers_have_bounds_named_by_field() {
        assert_eq!(quantity("on_hand", 0), Ok(0));
        assert_eq!(quantity("on_hand", MAX_QUANTITY), Ok(MAX_QUANTITY));
        for v in [-1, MAX_QUANTITY + 1, i64::MAX, i64::MIN] {
            let e = quantity("on_hand", v).unwrap_err();
            assert_eq!(e.field, "on_hand");
            assert!(e.to_string().starts_with("on_hand: "), "{e}");
        }
        assert!(line_quantity("q", 0).is_err());
        assert!(line_quantity("q", 1).is_ok());
        assert!(money("m", MAX_MONEY_MINOR).is_ok());
        assert!(money("m", MAX_MONEY_MINOR + 1).is_err());
        assert!(money("m", -1).is_err());
        assert_eq!(add_quantity("q", 1, 2), Ok(3));
        assert!(add_quantity("q", MAX_QUANTITY, 1).is_err());
        assert!(add_quantity("q", i64::MAX, i64::MAX).is_err());
    }

    #[test]
    fn keys_and_text_refuse_control_characters_and_huge_values() {
        assert!(key("sku", "SKU-1 blue").is_ok());
        assert!(key("sku", "Größe/ß").is_ok());
        for bad in ["", "  ", "A\0B", "A\u{1b}[31m", "A\nB", "\u{7f}", "A\u{85}"] {
            assert!(key("sku", bad).is_err(), "{bad:?}");
        }
        let huge = "x".repeat(MAX_KEY_BYTES + 1);
        let e = key("sku", &huge).unwrap_err();
        assert!(e.message.len() < 100, "does not echo the value: {e}");
        assert!(key("sku", &"x".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(text("name", "two\nlines\tand a tab").is_ok());
        assert!(text("name", "").is_ok());
        assert!(text("name", "nul\0").is_err());
        assert!(text("name", &"y".repeat(MAX_TEXT_BYTES + 1)).is_err());
    }

    #[test]
    fn dates_must_exist() {
        assert!(date("eta", "2026-02-28").is_ok());
        assert!(date("eta", "2028-02-29").is_ok());
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-00-10",
            "2026-2-3",
            "20260203",
            "2026-02-03T00:00:00Z",
            "",
        ] {
            let e = date("eta", bad).unwrap_err();
            assert!(e.to_string().starts_with("eta: "), "{e}");
        }
        assert!(timestamp("placed_at", "2026-03-01T09:30:00+01:00").is_ok());
        assert!(timestamp("placed_at", "2026-03-01T09:30:00.123Z").is_ok());
        assert!(timestamp("placed_at", "2026-03-01").is_ok());
        for bad in [
            "2026-02-30T10:00:00Z",
            "yesterday",
            "2026-03-01T25:00:00Z",
            "2026-02-30",
        ] {
            assert!(timestamp("placed_at", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt("abc"), "\"abc\"");
        let e = excerpt(&"z".repeat(100_000));
        assert!(e.len() < 80 && e.contains("100000 bytes"), "{e}");
        assert_eq!(excerpt("a\0"), "\"a\\0\"");
    }

    proptest! {
        /// Over the whole i64 range: accepted means within the bound, refused names the field.
        #[test]
        fn quantities_over_all_of_i64(v in any::<i64>()) {
            match quantity("f", v) {
                Ok(x) => prop_assert!(x == v && (0..=MAX_QUANTITY).contains(&v)),
                Err(e) => prop_assert!(e.field == "f" && !(0..=MAX_QUANTITY).contains(&v)),
            }
            match money("m", v) {
                Ok(_) => prop_assert!((0..=MAX_MONEY_MINOR).contains(&v)),
                Err(e) => prop_assert!(e.field == "m"),
            }
        }

        /// Any string: an accepted key is short and free of control characters.
        #[test]
        fn keys_over_any_string(s in any::<String>()) {
            if key("k", &s).is_ok() {
                prop_assert!(s.len() <= MAX_KEY_BYTES && !s.chars().any(char::is_control));
            }
        }
    }
}

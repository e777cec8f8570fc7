//! The one order of versions. A record's version is what its source stamps on it: a sequence
//! number, an `updated_at` timestamp, or (for sources with neither) a content hash. The engine
//! decides with it whether a change is stale (`runtime/process/resolve.rs`), and the store
//! whether a ledger figure is stale and whether it includes an accepted order (release
//! watermarks); they must agree, so both call [`compare`] and nothing else.
//!
//! The rules:
//! - Identical strings are `Equal` (the same version, whatever its shape).
//! - Two integers — optional sign, then ASCII digits, of any length — compare numerically
//!   (`"9" < "10"`, `"010" == "10"`, `"-3" < "2"`), without parsing into a bounded type.
//! - Two RFC 3339 date-times compare as the instants they name, whatever their UTC offsets and
//!   fractional digits: `2026-03-01T10:00:00+02:00` (08:00 UTC) is *before*
//!   `2026-03-01T09:30:00+00:00`; at a daylight-saving fall-back `2026-10-25T02:10:00+01:00`
//!   is after `2026-10-25T02:30:00+02:00`.
//! - Anything else cannot be ordered: `None`. That covers content hashes, dates without a time,
//!   impossible dates, and mixed shapes (an integer against a date-time). Callers must decide
//!   what `None` means for them and say so; both current callers treat it as "not known to be
//!   older" — the engine applies the change (it is not stale), the store applies the figure and
//!   releases reservations by time (`release_grace`) rather than by version.
//!
//! Must never: order by text what is not the same shape, or panic on any input.

use std::cmp::Ordering;

/// Order versions `a` and `b` (see the module docs); `None` when they cannot be ordered.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    if a == b {
        return Some(Ordering::Equal);
    }
    if let (Some(x), Some(y)) = (Integer::parse(a), Integer::parse(b)) {
        return Some(x.cmp(&y));
    }
    let (x, y) = (instant(a)?, instant(b)?);
    Some(x.cmp(&y))
}

/// Is `new` known to be older than `applied`? `false` when they cannot be ordered.
pub fn is_older(new: &str, applied: &str) -> bool {
    compare(new, applied) == Some(Ordering::Less)
}

fn instant(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    // chrono accepts `T`, `t` or a space between date and time, `Z`/`z` or `±hh:mm`.
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.to_utc())
}

/// An integer of any length: its sign and its digits without leading zeros.
#[derive(PartialEq, Eq)]
struct Integer<'a> {
    negative: bool,
    digits: &'a str,
}

impl<'a> Integer<'a> {
    fn parse(s: &'a str) -> Option<Integer<'a>> {
        let (negative, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = rest.trim_start_matches('0');
        // Zero has no sign.
        Some(Integer {
            negative: negative && !digits.is_empty(),
            digits,
        })
    }

    fn magnitude_cmp(&self, other: &Self) -> Ordering {
        self.digits
            .len()
            .cmp(&other.digits.len())
            .then_with(|| self.digits.cmp(other.digits))
    }
}

impl Ord for Integer<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, false) => self.magnitude_cmp(other),
            (true, true) => other.magnitude_cmp(self),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
        }
    }
}

impl PartialOrd for Integer<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Ordering::*;

    #[test]
    fn integers_of_any_length() {
        assert_eq!(compare("9", "10"), Some(Less));
        assert_eq!(compare("010", "10"), Some(Equal));
        assert_eq!(compare("-3", "2"), Some(Less));
        assert_eq!(compare("-10", "-9"), Some(Less));
        assert_eq!(compare("-0", "+0"), Some(Equal));
        assert_eq!(compare("+7", "7"), Some(Equal));
        let big = "1".repeat(60);
        let bigger = format!("2{}", "0".repeat(59));
        assert_eq!(compare(&big, &bigger), Some(Less));
        assert_eq!(
            compare(&bigger, "99999999999999999999999999999"),
            Some(Greater)
        );
        for unordered in ["", "-", "+", "1.5", "1e3", " 1", "0x10"] {
            assert_eq!(compare(unordered, "1"), None, "{unordered:?}");
        }
    }

    #[test]
    fn timestamps_are_instants() {
        // An older figure stamped in another offset, arriving later.
        assert_eq!(
            compare("2026-03-01T10:00:00+02:00", "2026-03-01T09:30:00+00:00"),
            Some(Less)
        );
        assert!(is_older(
            "2026-03-01T10:00:00+02:00",
            "2026-03-01T09:30:00+00:00"
        ));
        // Daylight-saving fall-back: 02:10 winter time is after 02:30 summer time.
        assert_eq!(
            compare("2026-10-25T02:10:00+01:00", "2026-10-25T02:30:00+02:00"),
            Some(Greater)
        );
        assert!(!is_older(
            "2026-10-25T02:10:00+01:00",
            "2026-10-25T02:30:00+02:00"
        ));
        // Fractions of any width, `Z` against an offset, lower-case separators.
        assert_eq!(
            compare("2024-01-01T00:00:00.1Z", "2024-01-01T00:00:00Z"),
            Some(Greater)
        );
        assert_eq!(
            compare("2024-01-01T00:00:00.120Z", "2024-01-01T00:00:00.12Z"),
            Some(Equal)
        );
        assert_eq!(
            compare("2024-01-01t02:00:00+02:00", "2024-01-01T00:00:00z"),
            Some(Equal)
        );
    }

    #[test]
    fn what_cannot_be_ordered() {
        assert_eq!(compare("abc", "abc"), Some(Equal), "identical strings");
        assert_eq!(compare("abc", "abd"), None, "content hashes");
        assert_eq!(compare("10", "2024-01-01T00:00:00Z"), None, "mixed");
        assert_eq!(compare("2024-01-01", "2024-01-02"), None, "dates");
        assert_eq!(
            compare("2026-02-30T00:00:00Z", "2026-03-01T00:00:00Z"),
            None,
            "an impossible date"
        );
        assert!(!is_older("abc", "abd"));
    }

    proptest! {
        /// Integers agree with i128 arithmetic wherever it applies.
        #[test]
        fn integers_agree_with_i128(a in any::<i64>(), b in any::<i64>(), za in 0usize..3, zb in 0usize..3) {
            let pad = |n: i64, z: usize| {
                let digits = format!("{}{}", "0".repeat(z), n.unsigned_abs());
                if n < 0 { format!("-{digits}") } else { digits }
            };
            prop_assert_eq!(compare(&pad(a, za), &pad(b, zb)), Some(i128::from(a).cmp(&i128::from(b))));
        }

        /// Instants agree with their UTC milliseconds whatever offsets they are written in.
        #[test]
        fn instants_agree_with_utc(a in 0i64..4_000_000_000_000, b in 0i64..4_000_000_000_000,
                                   oa in -14i32 * 60..=14 * 60, ob in -14i32 * 60..=14 * 60) {
            use chrono::{FixedOffset, TimeZone, Utc};
            let show = |ms: i64, off: i32| {
                let t = Utc.timestamp_millis_opt(ms).unwrap();
                t.with_timezone(&FixedOffset::east_opt(off * 60).unwrap())
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
            };
            prop_assert_eq!(compare(&show(a, oa), &show(b, ob)), Some(a.cmp(&b)));
        }

        /// Any strings: never a panic; antisymmetric; equal strings are equal.
        #[test]
        fn any_strings(a in any::<String>(), b in any::<String>()) {
            prop_assert_eq!(compare(&a, &b), compare(&b, &a).map(Ordering::reverse));
            prop_assert_eq!(compare(&a, &a), Some(Equal));
        }
    }
}

//! Inventory arithmetic of design §5: free stock, safety buffers, available-to-sell per channel,
//! and routing of a reservation over locations. Pure: the ledger itself lives in the store, the
//! policy in the config; this module only computes. Must never do I/O or read a clock.
//!
//! Definitions (design §5):
//! - `free(s,l) = on_hand − committed − held`
//! - `ats(s,c) = Σ over locations l feeding c of max(0, free(s,l) − buffer(s,l,c))`
//! - buffers are rules (absolute or percent of on-hand; per SKU pattern, channel, location);
//!   the most specific matching rule wins.
//!
//! Arithmetic: figures from outside are bounded at the boundary (`crate::limits`), but nothing
//! here relies on it. Derived figures (`free`, a percent buffer, `sellable`, `ats`, a backorder
//! allowance) are computed exactly in `i128` and clamped into `i64` — which can only happen far
//! outside the bounded domain, and always towards selling less, never more: `ats` is never
//! negative and never wraps. A sum that becomes a stored or promised quantity (repeated SKUs
//! merged into one reservation line) is checked: its overflow is an error ([`RouteError`]).

use serde::{Deserialize, Serialize};

/// One (SKU, location) position of the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub on_hand: i64,
    /// Allocated by the ERP to its own open orders.
    pub committed: i64,
    /// The hub's active reservations not yet reflected in the ERP.
    pub held: i64,
}

impl Position {
    /// `on_hand − committed − held`. Never below zero is *not* guaranteed here: a negative value
    /// means the ERP's on-hand fell below what is already promised (oversold risk). Exact in
    /// `i128`, clamped into `i64` (the sign is kept, so a clamped figure is still at risk or
    /// still free; see the module docs).
    pub fn free(&self) -> i64 {
        clamp(i128::from(self.on_hand) - i128::from(self.committed) - i128::from(self.held))
    }
}

/// An exact `i128` figure as `i64`, clamped at the ends of the range.
fn clamp(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// A safety-buffer amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferAmount {
    /// Units kept back.
    Units(i64),
    /// Percent of on-hand kept back, rounded up.
    Percent(u32),
}

/// A buffer rule; unset fields match anything. SKU patterns may contain `*` wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferRule {
    pub sku: Option<String>,
    pub channel: Option<String>,
    pub location: Option<String>,
    pub amount: BufferAmount,
}

impl BufferRule {
    fn matches(&self, sku: &str, channel: &str, location: &str) -> bool {
        self.sku.as_deref().is_none_or(|p| glob(p, sku))
            && self.channel.as_deref().is_none_or(|c| c == channel)
            && self.location.as_deref().is_none_or(|l| l == location)
    }

    /// Specificity: an exact SKU beats a pattern beats none; then channel, then location.
    fn specificity(&self) -> (u8, u8, u8) {
        let sku = match self.sku.as_deref() {
            None => 0,
            Some(p) if p.contains('*') => 1,
            Some(_) => 2,
        };
        (
            sku,
            self.channel.is_some() as u8,
            self.location.is_some() as u8,
        )
    }
}

/// `*` matches any run of characters (including none); everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// The buffer for (sku, channel, location): the most specific matching rule, ties going to the
/// rule listed last (so a later, more deliberate rule overrides). No rule: 0.
pub fn buffer(rules: &[BufferRule], sku: &str, channel: &str, location: &str, on_hand: i64) -> i64 {
    match best_rule(rules, sku, channel, location).map(|r| r.amount) {
        None => 0,
        Some(BufferAmount::Units(u)) => u.max(0),
        Some(BufferAmount::Percent(p)) => {
            let on_hand = i128::from(on_hand.max(0));
            // ceil(on_hand * p / 100) without floats, exact in i128 (a larger buffer, clamped,
            // only ever keeps more back).
            clamp((on_hand * i128::from(p) + 99) / 100)
        }
    }
}

/// Does the buffer for (sku, channel, location) depend on on-hand (its rule is a percent)? When
/// it does not, [`buffer`] gives the same answer whatever `on_hand` it is passed, so a caller
/// may skip reading the position.
pub fn buffer_needs_on_hand(
    rules: &[BufferRule],
    sku: &str,
    channel: &str,
    location: &str,
) -> bool {
    matches!(
        best_rule(rules, sku, channel, location).map(|r| r.amount),
        Some(BufferAmount::Percent(_))
    )
}

/// The rule that decides the buffer for (sku, channel, location), if any (see [`buffer`]).
fn best_rule<'a>(
    rules: &'a [BufferRule],
    sku: &str,
    channel: &str,
    location: &str,
) -> Option<&'a BufferRule> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.matches(sku, channel, location))
        .max_by_key(|(i, r)| (r.specificity(), *i))
        .map(|(_, r)| r)
}

/// What one location can give a channel: `max(0, free − buffer)`, never negative.
pub fn sellable(pos: &Position, buffer: i64) -> i64 {
    let free = i128::from(pos.on_hand) - i128::from(pos.committed) - i128::from(pos.held);
    clamp((free - i128::from(buffer)).max(0))
}

/// Available-to-sell of one SKU for one channel over the locations that feed it:
/// `(location, position, buffer)`. Never negative: a sum of non-negative terms, clamped at
/// `i64::MAX` instead of wrapping.
pub fn ats<'a>(feeds: impl IntoIterator<Item = (&'a str, &'a Position, i64)>) -> i64 {
    sum_non_negative(feeds.into_iter().map(|(_, p, b)| sellable(p, b)))
}

/// Σ of figures that are each ≥ 0 (negative ones count as 0), clamped at `i64::MAX`.
pub fn sum_non_negative(values: impl IntoIterator<Item = i64>) -> i64 {
    values
        .into_iter()
        .fold(0i64, |acc, v| acc.saturating_add(v.max(0)))
}

/// How many units of a SKU may still be sold against incoming stock: `min(limit, incoming) −
/// backordered`, never negative (`incoming` and `backordered` are the SKU's totals over the
/// channel's feeding locations).
pub fn backorder_allowance(limit: i64, incoming: i64, backordered: i64) -> i64 {
    let cap = i128::from(limit.min(incoming));
    clamp((cap - i128::from(backordered)).max(0))
}

/// A line to reserve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub quantity: i64,
}

/// What one location can give a line, in the channel's routing priority order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub location: String,
    /// `sellable` for this SKU at this location, for this channel.
    pub available: i64,
}

/// A reserved quantity at one location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub sku: String,
    pub location: String,
    pub quantity: i64,
    /// Taken against incoming stock (a backorder), not against free stock.
    pub backorder: bool,
}

/// A line that cannot be filled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    pub sku: String,
    pub requested: i64,
    /// What could be reserved for it (free stock plus any backorder allowance).
    pub available: i64,
}

/// Per-SKU backorder allowance: how many units may be sold against incoming stock, and at which
/// location they are expected (the earliest ETA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backorderable {
    pub quantity: i64,
    pub location: String,
}

/// Why a reservation was not routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Not enough stock for these lines: nothing reserved.
    #[error("insufficient stock")]
    Short(Vec<Shortage>),
    /// A line cannot be reserved at all: a quantity below 1, or lines of one SKU whose sum
    /// overflows. `line` is the index of the offending line.
    #[error("lines[{line}] (SKU `{sku}`): {reason}")]
    Invalid {
        line: usize,
        sku: String,
        reason: String,
    },
}

/// Route a reservation: all lines or nothing.
///
/// `candidates(sku)` lists the locations feeding the channel in priority order with what each
/// can give. First choice: the highest-priority single location that fills *every* line. Else
/// each line is split over locations by priority. A line still short may take up to its
/// `backorderable` allowance. Any line short after that fails the whole reservation
/// ([`RouteError::Short`]). Lines of one SKU are merged first, with a checked sum.
pub fn route(
    lines: &[Line],
    candidates: &dyn Fn(&str) -> Vec<Candidate>,
    backorderable: &dyn Fn(&str) -> Option<Backorderable>,
) -> Result<Vec<Allocation>, RouteError> {
    // Merge repeated SKUs so one SKU's lines never compete with each other.
    let mut merged: Vec<Line> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let invalid = |reason: String| RouteError::Invalid {
            line: i,
            sku: l.sku.clone(),
            reason,
        };
        if l.quantity < 1 {
            return Err(invalid(format!(
                "quantity must be greater than 0, got {}",
                l.quantity
            )));
        }
        match merged.iter_mut().find(|m| m.sku == l.sku) {
            Some(m) => {
                m.quantity = m.quantity.checked_add(l.quantity).ok_or_else(|| {
                    invalid("the quantities of this SKU's lines overflow when added".into())
                })?
            }
            None => merged.push(l.clone()),
        }
    }
    let per_sku: Vec<Vec<Candidate>> = merged.iter().map(|l| candidates(&l.sku)).collect();

    // 1. One location for the whole order, by the priority of the first line's candidates
    //    (every line lists the channel's locations in the same order).
    if let Some(first) = per_sku.first() {
        for loc in first.iter().map(|c| c.location.as_str()) {
            let fills = merged.iter().zip(&per_sku).all(|(l, cands)| {
                cands
                    .iter()
                    .find(|c| c.location == loc)
                    .is_some_and(|c| c.available >= l.quantity)
            });
            if fills {
                return Ok(merged
                    .iter()
                    .map(|l| Allocation {
                        sku: l.sku.clone(),
                        location: loc.to_string(),
                        quantity: l.quantity,
                        backorder: false,
                    })
                    .collect());
            }
        }
    }

    // 2. Split each line by priority; backorder what is left where allowed.
    let mut out = Vec::new();
    let mut short = Vec::new();
    for (l, cands) in merged.iter().zip(&per_sku) {
        let mut left = l.quantity;
        let mut taken = Vec::new();
        for c in cands {
            if left == 0 {
                break;
            }
            let q = c.available.max(0).min(left);
            if q > 0 {
                taken.push(Allocation {
                    sku: l.sku.clone(),
                    location: c.location.clone(),
                    quantity: q,
                    backorder: false,
                });
                left -= q;
            }
        }
        let on_hand_total: i64 = taken.iter().map(|a| a.quantity).sum();
        if left > 0 {
            match backorderable(&l.sku) {
                Some(b) if b.quantity >= left => {
                    taken.push(Allocation {
                        sku: l.sku.clone(),
                        location: b.location,
                        quantity: left,
                        backorder: true,
                    });
                    left = 0;
                }
                b => {
                    short.push(Shortage {
                        sku: l.sku.clone(),
                        requested: l.quantity,
                        available: on_hand_total
                            .saturating_add(b.map(|b| b.quantity.max(0)).unwrap_or(0)),
                    });
                }
            }
        }
        if left == 0 {
            out.extend(taken);
        }
    }
    if short.is_empty() {
        Ok(out)
    } else {
        Err(RouteError::Short(short))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos(on_hand: i64, committed: i64, held: i64) -> Position {
        Position {
            on_hand,
            committed,
            held,
        }
    }

    #[test]
    fn glob_patterns() {
        assert!(glob("SKU-*", "SKU-1"));
        assert!(glob("*", ""));
        assert!(glob("A*B*C", "AxxBxC"));
        assert!(!glob("A*B", "AxxBx"));
        assert!(!glob("SKU-1", "SKU-10"));
        assert!(glob("*-RED", "SHIRT-RED"));
    }

    #[test]
    fn most_specific_buffer_wins() {
        let rules = vec![
            BufferRule {
                sku: None,
                channel: None,
                location: None,
                amount: BufferAmount::Units(1),
            },
            BufferRule {
                sku: Some("SKU-*".into()),
                channel: None,
                location: None,
                amount: BufferAmount::Units(2),
            },
            BufferRule {
                sku: Some("SKU-*".into()),
                channel: Some("web".into()),
                location: None,
                amount: BufferAmount::Units(3),
            },
            BufferRule {
                sku: Some("SKU-7".into()),
                channel: None,
                location: None,
                amount: BufferAmount::Percent(10),
            },
        ];
        assert_eq!(buffer(&rules, "X", "web", "WH1", 100), 1);
        assert_eq!(buffer(&rules, "SKU-1", "b2b", "WH1", 100), 2);
        assert_eq!(buffer(&rules, "SKU-1", "web", "WH1", 100), 3);
        assert_eq!(
            buffer(&rules, "SKU-7", "web", "WH1", 95),
            10,
            "10 % of 95 rounded up"
        );
        assert_eq!(buffer(&[], "SKU-7", "web", "WH1", 95), 0);
        // Only a deciding percent rule makes the buffer depend on on-hand.
        assert!(buffer_needs_on_hand(&rules, "SKU-7", "web", "WH1"));
        assert!(!buffer_needs_on_hand(&rules, "SKU-1", "web", "WH1"));
        assert!(!buffer_needs_on_hand(&rules, "X", "web", "WH1"));
        assert!(!buffer_needs_on_hand(&[], "SKU-7", "web", "WH1"));
        for (sku, channel) in [("X", "web"), ("SKU-1", "b2b"), ("SKU-1", "web")] {
            assert_eq!(
                buffer(&rules, sku, channel, "WH1", 0),
                buffer(&rules, sku, channel, "WH1", 1_000)
            );
        }
    }

    #[test]
    fn ats_never_negative_per_location() {
        let a = pos(10, 2, 3);
        let b = pos(4, 5, 0); // oversold risk: free = -1
        assert_eq!(ats([("A", &a, 1), ("B", &b, 0)]), 4);
    }

    fn cands<'a>(table: &'a [(&'a str, &'a str, i64)]) -> impl Fn(&str) -> Vec<Candidate> + 'a {
        move |sku| {
            table
                .iter()
                .filter(|(s, _, _)| *s == sku)
                .map(|(_, l, a)| Candidate {
                    location: l.to_string(),
                    available: *a,
                })
                .collect()
        }
    }

    #[test]
    fn routing_prefers_one_location_that_fills_everything() {
        let t = [
            ("A", "WH1", 5),
            ("A", "WH2", 10),
            ("B", "WH1", 0),
            ("B", "WH2", 3),
        ];
        let lines = [
            Line {
                sku: "A".into(),
                quantity: 4,
            },
            Line {
                sku: "B".into(),
                quantity: 2,
            },
        ];
        let got = route(&lines, &cands(&t), &|_| None).unwrap();
        assert!(got.iter().all(|a| a.location == "WH2"), "{got:?}");
    }

    #[test]
    fn routing_splits_by_priority_when_no_single_location_can() {
        let t = [("A", "WH1", 5), ("A", "WH2", 10)];
        let got = route(
            &[Line {
                sku: "A".into(),
                quantity: 12,
            }],
            &cands(&t),
            &|_| None,
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].location.as_str(), got[0].quantity), ("WH1", 5));
        assert_eq!((got[1].location.as_str(), got[1].quantity), ("WH2", 7));
    }

    #[test]
    fn shortage_names_every_short_line_and_backorders_fill_gaps() {
        let t = [("A", "WH1", 8), ("B", "WH1", 1)];
        let lines = [
            Line {
                sku: "A".into(),
                quantity: 12,
            },
            Line {
                sku: "B".into(),
                quantity: 1,
            },
        ];
        let err = route(&lines, &cands(&t), &|_| None).unwrap_err();
        assert_eq!(
            err,
            RouteError::Short(vec![Shortage {
                sku: "A".into(),
                requested: 12,
                available: 8
            }])
        );
        let bo = |_: &str| {
            Some(Backorderable {
                quantity: 5,
                location: "WH1".into(),
            })
        };
        let ok = route(&lines, &cands(&t), &bo).unwrap();
        assert!(ok.iter().any(|a| a.backorder && a.quantity == 4));
    }

    /// The reported exploit: two lines of one SKU, each `i64::MAX`, merged with a wrapping
    /// `+=` into one line of −2 that "fit" any stock.
    #[test]
    fn repeated_lines_that_overflow_are_refused() {
        let t = [("A", "WH1", 10)];
        let lines = [
            Line {
                sku: "A".into(),
                quantity: i64::MAX,
            },
            Line {
                sku: "A".into(),
                quantity: i64::MAX,
            },
        ];
        let e = route(&lines, &cands(&t), &|_| None).unwrap_err();
        assert!(
            matches!(&e, RouteError::Invalid { line: 1, sku, .. } if sku == "A"),
            "{e:?}"
        );
        assert!(e.to_string().contains("lines[1]"), "{e}");
        for q in [0, -1, i64::MIN] {
            let e = route(
                &[Line {
                    sku: "A".into(),
                    quantity: q,
                }],
                &cands(&t),
                &|_| None,
            );
            assert!(
                matches!(e, Err(RouteError::Invalid { line: 0, .. })),
                "{q}: {e:?}"
            );
        }
    }

    #[test]
    fn figures_at_the_ends_of_i64_never_give_a_negative_ats() {
        let max = pos(i64::MAX, 0, 0);
        assert_eq!(
            ats([("WH1", &max, 0), ("WH2", &max, 0)]),
            i64::MAX,
            "not −2"
        );
        assert_eq!(pos(i64::MIN, i64::MAX, i64::MAX).free(), i64::MIN);
        assert_eq!(pos(i64::MAX, i64::MIN, 0).free(), i64::MAX);
        assert_eq!(sellable(&pos(i64::MAX, 0, 0), i64::MIN), i64::MAX);
        assert_eq!(sellable(&pos(i64::MIN, 0, 0), i64::MAX), 0);
        let rules = [BufferRule {
            sku: None,
            channel: None,
            location: None,
            amount: BufferAmount::Percent(100),
        }];
        assert_eq!(buffer(&rules, "A", "web", "WH1", i64::MAX), i64::MAX);
        assert_eq!(buffer(&rules, "A", "web", "WH1", 95), 95);
        assert_eq!(backorder_allowance(i64::MAX, i64::MAX, i64::MIN), i64::MAX);
        assert_eq!(backorder_allowance(5, 3, 1), 2);
        assert_eq!(backorder_allowance(5, 3, 9), 0);
    }

    proptest! {
        /// Positions and buffers over all of i64: `sellable` and `ats` are the exact figures,
        /// clamped, never negative.
        #[test]
        fn ats_over_all_of_i64(
            feeds in proptest::collection::vec((any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()), 0..5),
            percent in 0u32..=100,
        ) {
            let positions: Vec<Position> = feeds.iter().map(|(o, c, h, _)| pos(*o, *c, *h)).collect();
            let mut exact: i128 = 0;
            for (p, (_, _, _, b)) in positions.iter().zip(&feeds) {
                let e = (i128::from(p.on_hand) - i128::from(p.committed) - i128::from(p.held) - i128::from(*b)).max(0);
                let s = sellable(p, *b);
                prop_assert!(s >= 0);
                prop_assert_eq!(i128::from(s), e.min(i128::from(i64::MAX)));
                exact += e;
            }
            let a = ats(positions.iter().zip(&feeds).map(|(p, f)| ("L", p, f.3)));
            prop_assert!(a >= 0);
            prop_assert_eq!(i128::from(a), exact.min(i128::from(i64::MAX)));
            let rules = [BufferRule { sku: None, channel: None, location: None, amount: BufferAmount::Percent(percent) }];
            for p in &positions {
                let b = buffer(&rules, "A", "c", "L", p.on_hand);
                prop_assert!(b >= 0);
                prop_assert!(i128::from(b) >= i128::from(p.on_hand.max(0)) * i128::from(percent) / 100);
            }
        }

        /// Lines over all of i64, repeated SKUs, availability over all of i64: a route is
        /// refused (invalid line, short) or takes exactly what was asked and never more than a
        /// location offers; sums are checked in i128 here, so a wrap would show.
        #[test]
        fn routes_over_all_of_i64(
            avail in proptest::collection::vec((0usize..2, 0usize..2, any::<i64>()), 0..6),
            asks in proptest::collection::vec((0usize..2, prop_oneof![any::<i64>(), 1i64..20, Just(i64::MAX)]), 1..5),
        ) {
            let skus = ["A", "B"];
            let locs = ["L1", "L2"];
            let mut table: Vec<(String, String, i64)> = Vec::new();
            for s in skus { for l in locs { table.push((s.into(), l.into(), 0)); } }
            for (s, l, a) in &avail { table[s * 2 + l].2 = *a; }
            let candidates = |sku: &str| -> Vec<Candidate> {
                table.iter().filter(|(s, _, _)| s == sku)
                    .map(|(_, l, a)| Candidate { location: l.clone(), available: *a }).collect()
            };
            let lines: Vec<Line> = asks.iter().map(|(s, q)| Line { sku: skus[*s].into(), quantity: *q }).collect();
            let asked = |s: &str| -> i128 { lines.iter().filter(|l| l.sku == s).map(|l| i128::from(l.quantity)).sum() };
            match route(&lines, &candidates, &|_| None) {
                Ok(allocs) => {
                    for a in &allocs { prop_assert!(a.quantity > 0); }
                    for (s, l, a) in &table {
                        let taken: i128 = allocs.iter().filter(|x| &x.sku == s && &x.location == l).map(|x| i128::from(x.quantity)).sum();
                        prop_assert!(taken <= i128::from((*a).max(0)));
                    }
                    for s in skus {
                        let got: i128 = allocs.iter().filter(|x| x.sku == s).map(|x| i128::from(x.quantity)).sum();
                        prop_assert_eq!(asked(s), got);
                    }
                }
                Err(RouteError::Invalid { line, .. }) => {
                    let bad_quantity = lines.iter().any(|l| l.quantity < 1);
                    let overflow = skus.iter().any(|s| asked(s) > i128::from(i64::MAX));
                    prop_assert!(bad_quantity || overflow, "line {} refused without cause", line);
                }
                Err(RouteError::Short(short)) => {
                    prop_assert!(!short.is_empty());
                    for sh in &short {
                        prop_assert!(sh.available >= 0 && sh.available < sh.requested);
                    }
                }
            }
        }

        /// Whatever the inputs, a successful route never takes more from a location than it
        /// offers, and always reserves exactly what was asked.
        #[test]
        fn routes_respect_availability(
            avail in proptest::collection::vec((0usize..3, 0usize..3, 0i64..20), 0..9),
            asks in proptest::collection::vec((0usize..3, 1i64..15), 1..4),
        ) {
            let skus = ["A", "B", "C"];
            let locs = ["L1", "L2", "L3"];
            let mut table: Vec<(String, String, i64)> = Vec::new();
            for s in skus { for l in locs { table.push((s.into(), l.into(), 0)); } }
            for (s, l, a) in &avail { table[s * 3 + l].2 = *a; }
            let candidates = |sku: &str| -> Vec<Candidate> {
                table.iter().filter(|(s, _, _)| s == sku)
                    .map(|(_, l, a)| Candidate { location: l.clone(), available: *a }).collect()
            };
            let lines: Vec<Line> = asks.iter().map(|(s, q)| Line { sku: skus[*s].into(), quantity: *q }).collect();
            if let Ok(allocs) = route(&lines, &candidates, &|_| None) {
                for (s, l, a) in &table {
                    let taken: i64 = allocs.iter().filter(|x| &x.sku == s && &x.location == l).map(|x| x.quantity).sum();
                    prop_assert!(taken <= *a);
                }
                for s in skus {
                    let asked: i64 = lines.iter().filter(|l| l.sku == s).map(|l| l.quantity).sum();
                    let got: i64 = allocs.iter().filter(|x| x.sku == s).map(|x| x.quantity).sum();
                    prop_assert_eq!(asked, got);
                }
            }
        }
    }
}

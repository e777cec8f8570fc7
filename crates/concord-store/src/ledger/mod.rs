//! The stock ledger's decisions (design §5), made once for every store implementation.
//!
//! Every ledger operation of the [`crate::Store`] trait is split the same way: the backend
//! loads (and, where it has more than one writer, locks) the rows an operation reads, calls a
//! function here, and writes the [`Step`]s it returns, in order. The functions here decide
//! everything that is a rule of the ledger — which location a reservation takes its units from
//! and whether it is short, which lines an ERP figure or an order's acceptance releases, what an
//! edit adds and takes back, which reservations a replacement holds again, which transitions a
//! reservation allows — so a second backend writes SQL and takes locks, and never carries a
//! second copy of the ledger.
//!
//! - [`reserve`]: admission and routing of a reservation over the positions of its feeds.
//! - [`release`]: what an ERP figure is (stale, a repeat, newer) and which accepted lines it
//!   releases (the watermark, and the time-based fallback).
//! - [`accept`]: an order's acceptance — stamped once, and lines whose figure is already
//!   newer released at once.
//! - [`orders`]: the reservations of one order — cancellation, re-hold for a replacement, and an
//!   edit's adjustment.
//! - [`transitions`]: the reservation's own state machine (commit, cancel, expire).
//!
//! What a backend must guarantee for these decisions to hold: the rows passed in are the rows
//! as they are when the steps are written (nothing else changes them in between — SQLite by its
//! single writer, PostgreSQL by locking them, positions sorted by (SKU, location) first), and
//! every step is written, in order, in the same transaction, or none is. The backend's writes
//! stay conditional on what the decision saw (a line is released only while `released_at IS
//! NULL`, …); a write whose guard finds the row changed means the rows moved under the decision
//! and must fail the transaction, never be skipped.
//!
//! Arithmetic: a figure that becomes stored (`held`, `backordered`, a line's quantity, a sum of an
//! order's lines) is checked — its overflow is [`StoreError::OutOfRange`] and nothing is written
//! —, derived figures come from `concord_core::inventory` (exact, clamped towards selling less).
//! A backend never computes a ledger figure in SQL: it applies [`Step::position_change`] with
//! [`add_to_position`].
//!
//! Must never: run SQL, do I/O, read a clock or a random source (time arrives as the caller's
//! `now`), or decide anything from a row it was not given.

pub(crate) mod accept;
pub(crate) mod orders;
pub(crate) mod release;
pub(crate) mod reserve;
pub(crate) mod transitions;

use crate::{Feed, Reservation, ReservationState, Result, StoreError};
use concord_core::inventory::Position;
use concord_core::Millis;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One (SKU, location) position as the decisions read it. A position the backend does not have
/// is [`PositionRow::default`]: no stock, nothing held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PositionRow {
    pub(crate) on_hand: i64,
    pub(crate) committed: i64,
    pub(crate) held: i64,
    pub(crate) backordered: i64,
    /// Σ of the incoming lots' quantities ([`incoming_total`]).
    pub(crate) incoming: i64,
}

impl PositionRow {
    pub(crate) fn position(&self) -> Position {
        Position {
            on_hand: self.on_hand,
            committed: self.committed,
            held: self.held,
        }
    }
}

/// Σ of the positive integer `quantity` of each incoming lot as the ERP reports them; anything
/// else counts as nothing (the safe direction: fewer backorders).
pub(crate) fn incoming_total(incoming: &Value) -> i64 {
    incoming.as_array().map_or(0, |lots| {
        lots.iter()
            .filter_map(|lot| lot.get("quantity").and_then(Value::as_i64))
            .filter(|q| *q > 0)
            .fold(0i64, |acc, q| acc.saturating_add(q))
    })
}

/// The positions an operation read, by SKU then location.
#[derive(Debug, Default, Clone)]
pub(crate) struct Positions(BTreeMap<String, BTreeMap<String, PositionRow>>);

impl Positions {
    pub(crate) fn insert(&mut self, sku: &str, location: &str, row: PositionRow) {
        self.0
            .entry(sku.to_owned())
            .or_default()
            .insert(location.to_owned(), row);
    }

    /// The position, or an empty one when it was not loaded (a position never seen has no
    /// stock).
    pub(crate) fn get(&self, sku: &str, location: &str) -> PositionRow {
        self.0
            .get(sku)
            .and_then(|l| l.get(location))
            .copied()
            .unwrap_or_default()
    }
}

/// The feeding locations of each SKU of a request; the first entry of a SKU listed twice wins.
pub(crate) fn feeds_by_sku(feeds: &[(String, Vec<Feed>)]) -> HashMap<&str, &[Feed]> {
    feeds
        .iter()
        .rev()
        .map(|(sku, f)| (sku.as_str(), f.as_slice()))
        .collect()
}

/// The positions of `skus`' feeds, sorted by (SKU, location): what a backend loads — and locks,
/// in this order — before a decision that routes over them.
pub(crate) fn feed_positions<'a>(
    skus: impl IntoIterator<Item = &'a str>,
    feeds: &HashMap<&str, &[Feed]>,
) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for sku in skus {
        for f in feeds.get(sku).copied().unwrap_or_default() {
            out.insert((sku.to_owned(), f.location.clone()));
        }
    }
    out
}

/// One stored reservation line, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineRow {
    pub(crate) reservation_id: String,
    pub(crate) seq: i64,
    pub(crate) sku: String,
    pub(crate) location: String,
    pub(crate) quantity: i64,
    /// Sold against incoming stock: counts in `backordered`, not `held`.
    pub(crate) backorder: bool,
    /// Its contribution was removed (`released_at` set).
    pub(crate) released: bool,
}

impl LineRow {
    /// `(held, backordered)` this line adds to its position while unreleased.
    pub(crate) fn contribution(&self, quantity: i64) -> (i64, i64) {
        if self.backorder {
            (0, quantity)
        } else {
            (quantity, 0)
        }
    }
}

/// A change of a position's `held` and `backordered` (either may be negative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PositionChange<'a> {
    /// The line's reservation (for errors).
    pub(crate) reservation_id: &'a str,
    pub(crate) sku: &'a str,
    pub(crate) location: &'a str,
    pub(crate) held: i64,
    pub(crate) backordered: i64,
    /// The operation, for the error when the sum overflows.
    pub(crate) what: &'static str,
    /// The position must exist already (a line is released where it was reserved; a missing
    /// position means the ledger lost its invariant, and the transaction must fail).
    pub(crate) must_exist: bool,
}

/// One write of a decision. The backend applies a plan's steps in order, in one transaction;
/// each line step also moves its position by [`Step::position_change`], so that `held`
/// (`backordered`) of every position stays the sum of its unreleased (backorder) lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Store a new reservation (its row only: its lines follow as [`Step::InsertLine`]).
    InsertReservation(Box<Reservation>),
    /// Store a new unreleased line and add it to its position.
    InsertLine(LineRow),
    /// Set an unreleased line's `released_at` to now and take it off its position. Exactly
    /// once: the write is conditional on `released_at` being unset.
    ReleaseLine(LineRow),
    /// Clear a released line's `released_at` and add it to its position again (cancel-and-
    /// replace: the order is the hub's to hold again).
    HoldAgain(LineRow),
    /// Take `by` units (0 < by < quantity) off an unreleased line and off its position.
    ShrinkLine { line: LineRow, by: i64 },
    /// Delete an unreleased line and take all of it off its position.
    DeleteLine(LineRow),
    /// `Held → Committed` to `order`, now; no expiry from then on.
    Commit { id: String, order: String },
    /// End an active reservation in `to` (expired, cancelled) now; no expiry.
    End { id: String, to: ReservationState },
    /// The reservation becomes `Released` now if none of its lines is left unreleased (its
    /// other lines, at positions this decision did not read, are the backend's to check).
    FinishIfReleased(String),
    /// A `released` reservation is the order's again: `Committed`, not ended. A no-op for a
    /// reservation in any other state.
    Revive(String),
    /// The ERP accepted the reservation's order at `at` with `version` (the watermark).
    StampAcceptance {
        id: String,
        at: Millis,
        version: Option<String>,
    },
    /// Clear the reservation's acceptance: only a later acceptance releases its lines again.
    ClearAcceptance(String),
    /// The SKU's channel figures must be recomputed (a fresh dirty generation).
    MarkDirty(String),
}

/// `line` moving its position by `quantity` (signed).
fn change<'a>(
    line: &'a LineRow,
    quantity: i64,
    what: &'static str,
    must_exist: bool,
) -> PositionChange<'a> {
    let (held, backordered) = line.contribution(quantity);
    PositionChange {
        reservation_id: &line.reservation_id,
        sku: &line.sku,
        location: &line.location,
        held,
        backordered,
        what,
        must_exist,
    }
}

impl Step {
    /// How this step moves its line's position, if it does. The quantities are checked: a
    /// line's negation cannot overflow (quantities are positive), and the sum is checked by
    /// [`add_to_position`].
    pub(crate) fn position_change(&self) -> Result<Option<PositionChange<'_>>> {
        let minus = |line: &LineRow, q: i64| {
            q.checked_neg().ok_or_else(|| {
                StoreError::OutOfRange(format!(
                    "line of reservation {} has quantity {q}",
                    line.reservation_id
                ))
            })
        };
        Ok(Some(match self {
            Step::InsertLine(l) => change(l, l.quantity, "raise held", false),
            Step::ReleaseLine(l) => change(l, minus(l, l.quantity)?, "lower held", true),
            Step::HoldAgain(l) => change(l, l.quantity, "raise held for a replacement", false),
            Step::ShrinkLine { line, by } => change(line, minus(line, *by)?, "lower held", false),
            Step::DeleteLine(l) => change(l, minus(l, l.quantity)?, "lower held", false),
            _ => return Ok(None),
        }))
    }
}

/// `(held, backordered)` of a position after `change`, from its stored figures (`None`: the
/// position does not exist yet, so both are 0). The only arithmetic on those two columns, so
/// an overflow is [`StoreError::OutOfRange`] — the transaction writes nothing —, never a wrapped
/// or (in SQLite) a REAL figure.
pub(crate) fn add_to_position(
    current: Option<(i64, i64)>,
    change: &PositionChange<'_>,
) -> Result<(i64, i64)> {
    let (h0, b0) = current.unwrap_or((0, 0));
    let (held, backordered) = (change.held, change.backordered);
    match (h0.checked_add(held), b0.checked_add(backordered)) {
        (Some(h), Some(b)) => Ok((h, b)),
        _ => Err(StoreError::OutOfRange(format!(
            "{}: held {h0} + {held} or backordered {b0} + {backordered} at ({}, {}) overflows",
            change.what, change.sku, change.location
        ))),
    }
}

/// The SKUs `steps` released, held or moved, in order, once each: what to mark dirty.
fn touched<'a>(steps: impl IntoIterator<Item = &'a Step>) -> BTreeSet<String> {
    steps
        .into_iter()
        .filter_map(|s| match s {
            Step::InsertLine(l)
            | Step::ReleaseLine(l)
            | Step::HoldAgain(l)
            | Step::DeleteLine(l)
            | Step::ShrinkLine { line: l, .. } => Some(l.sku.clone()),
            _ => None,
        })
        .collect()
}

/// Append a [`Step::MarkDirty`] for every SKU the steps so far moved.
fn mark_touched(steps: &mut Vec<Step>) {
    let dirty = touched(steps.iter());
    steps.extend(dirty.into_iter().map(Step::MarkDirty));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A line for table tests: `reservation`, `seq`, SKU, location, quantity.
    pub(crate) fn line(r: &str, seq: i64, sku: &str, loc: &str, q: i64) -> LineRow {
        LineRow {
            reservation_id: r.into(),
            seq,
            sku: sku.into(),
            location: loc.into(),
            quantity: q,
            backorder: false,
            released: false,
        }
    }

    #[test]
    fn incoming_counts_positive_integer_quantities_only() {
        let lots = json!([
            {"quantity": 5, "eta": "2026-01-01"},
            {"quantity": -3},
            {"quantity": 2.5},
            {"quantity": "7"},
            {"eta": "2026-02-01"},
            {"quantity": i64::MAX},
        ]);
        assert_eq!(incoming_total(&lots), i64::MAX, "saturates, never wraps");
        assert_eq!(
            incoming_total(&json!([{"quantity": 5}, {"quantity": 1}])),
            6
        );
        assert_eq!(incoming_total(&json!({"quantity": 5})), 0, "not a list");
        assert_eq!(incoming_total(&Value::Null), 0);
    }

    #[test]
    fn a_position_change_follows_the_line_and_never_overflows() {
        let mut l = line("r", 0, "A", "L1", 4);
        let release = Step::ReleaseLine(l.clone());
        let c = release.position_change().unwrap().unwrap();
        assert_eq!((c.held, c.backordered, c.must_exist), (-4, 0, true));
        l.backorder = true;
        let insert = Step::InsertLine(l.clone());
        let c = insert.position_change().unwrap().unwrap();
        assert_eq!((c.held, c.backordered, c.what), (0, 4, "raise held"));
        let shrink = Step::ShrinkLine {
            line: l.clone(),
            by: 3,
        };
        let c = shrink.position_change().unwrap().unwrap();
        assert_eq!((c.held, c.backordered), (0, -3));
        assert_eq!(Step::MarkDirty("A".into()).position_change().unwrap(), None);
        l.quantity = i64::MIN;
        assert!(matches!(
            Step::ReleaseLine(l).position_change(),
            Err(StoreError::OutOfRange(_))
        ));

        let up = PositionChange {
            reservation_id: "r",
            sku: "A",
            location: "L1",
            held: 1,
            backordered: 0,
            what: "raise held",
            must_exist: false,
        };
        assert_eq!(add_to_position(None, &up).unwrap(), (1, 0));
        assert_eq!(add_to_position(Some((5, 2)), &up).unwrap(), (6, 2));
        let err = add_to_position(Some((i64::MAX, 0)), &up).unwrap_err();
        assert!(
            matches!(&err, StoreError::OutOfRange(m) if m.contains("raise held") && m.contains("(A, L1)")),
            "{err:?}"
        );
    }

    #[test]
    fn feeds_keep_the_first_entry_of_a_repeated_sku_and_positions_sort() {
        let feed = |l: &str| Feed {
            location: l.into(),
            buffer: 0,
        };
        let feeds = vec![
            ("B".to_string(), vec![feed("L2"), feed("L1")]),
            ("A".to_string(), vec![feed("L1")]),
            ("B".to_string(), vec![feed("L9")]),
        ];
        let by = feeds_by_sku(&feeds);
        assert_eq!(by["B"].len(), 2, "the first entry of B wins");
        let pos: Vec<_> = feed_positions(["B", "A", "C"], &by).into_iter().collect();
        assert_eq!(
            pos,
            [
                ("A".to_string(), "L1".to_string()),
                ("B".to_string(), "L1".to_string()),
                ("B".to_string(), "L2".to_string()),
            ],
            "sorted by (SKU, location): the lock order"
        );
    }
}

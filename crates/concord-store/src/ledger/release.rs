//! ERP figures (`Store::update_levels`): whether a figure is stale, a repeat or newer than the
//! stored one, and which accepted lines at its position it releases.
//!
//! A line is released when the ERP's own figures include its order: the figure's version is
//! newer than the version the order was accepted with (the watermark), or — only when the two
//! cannot be ordered, and only when the caller gives a grace — the figure was captured at least
//! the grace after the acceptance. Versions are ordered by [`compare_versions`] and nothing else,
//! so the store and the engine agree on which figure is newer.
//!
//! Contract choices (the trait leaves them open): a figure whose version *equals* the stored
//! one is a re-delivery of the same figure — applied with nothing released and nothing changed,
//! not stale. An unchanged figure cannot show that the ERP now includes an order, so it must
//! not release anything, not even through the time-based fallback.
//!
//! Must never: read or write storage, release a line whose reservation was not accepted, or
//! release by time a line whose versions can be ordered.

use super::{LineRow, Step};
use crate::{compare_versions, LevelUpdate};
use concord_core::Millis;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// What an ERP figure is, against the version the position has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Figure {
    /// Older than the stored figure: nothing changes.
    Stale,
    /// The stored figure again: applied, nothing released, nothing written.
    Repeat,
    /// Newer, or not comparable with the stored one (then it is not known to be stale), or the
    /// position's first: store it and release what it includes.
    Apply,
}

/// Judge a figure of version `figure` against the position's stored version (`None`: the
/// position does not exist or has no version yet).
pub(crate) fn judge(stored: Option<&str>, figure: &str) -> Figure {
    match stored.and_then(|s| compare_versions(figure, s)) {
        Some(Ordering::Less) => Figure::Stale,
        Some(Ordering::Equal) => Figure::Repeat,
        _ => Figure::Apply,
    }
}

/// Does the figure `(version, captured_at)` include an order accepted at `accepted_at` with
/// `accepted_version`? Comparable versions decide alone; otherwise only time can, when a grace
/// is given.
pub(crate) fn passes_watermark(
    version: &str,
    captured_at: Millis,
    accepted_at: Millis,
    accepted_version: Option<&str>,
    grace: Option<i64>,
) -> bool {
    match accepted_version.and_then(|a| compare_versions(version, a)) {
        Some(order) => order == Ordering::Greater,
        None => grace.is_some_and(|g| captured_at >= accepted_at.saturating_add(g)),
    }
}

/// An unreleased line of an active, accepted reservation at the figure's position, with its
/// reservation's acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Releasable {
    pub(crate) line: LineRow,
    pub(crate) accepted_at: Millis,
    pub(crate) accepted_version: Option<String>,
}

/// What an applied figure releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Released {
    /// Releases, the reservations that may now be wholly released, and the figure's SKU marked
    /// dirty (whatever was released: its figures changed).
    pub(crate) steps: Vec<Step>,
    /// Units released per reservation, by reservation id (the outcome's `released`).
    pub(crate) released: Vec<(String, i64)>,
}

/// The lines of `open` (the releasable lines at `update`'s position) that the applied figure
/// includes. `grace: None` disables the time-based fallback.
pub(crate) fn by_figure(update: &LevelUpdate, grace: Option<i64>, open: &[Releasable]) -> Released {
    let mut steps = Vec::new();
    let mut released: BTreeMap<String, i64> = BTreeMap::new();
    for r in open {
        let includes = passes_watermark(
            &update.version,
            update.captured_at,
            r.accepted_at,
            r.accepted_version.as_deref(),
            grace,
        );
        if includes {
            steps.push(Step::ReleaseLine(r.line.clone()));
            let total = released.entry(r.line.reservation_id.clone()).or_default();
            *total = total.saturating_add(r.line.quantity);
        }
    }
    // A reservation is released once nothing is left unreleased anywhere.
    steps.extend(released.keys().cloned().map(Step::FinishIfReleased));
    steps.push(Step::MarkDirty(update.sku.clone()));
    Released {
        steps,
        released: released.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::tests::line;
    use serde_json::json;

    #[test]
    fn figures_are_judged_by_the_one_order_of_versions() {
        let cases = [
            (None, "1", Figure::Apply),
            (Some("9"), "10", Figure::Apply),
            (Some("10"), "9", Figure::Stale),
            (Some("10"), "010", Figure::Repeat),
            (Some("h-abc"), "h-abc", Figure::Repeat),
            (Some("h-abc"), "h-abd", Figure::Apply),
            (Some("10"), "2026-01-01T00:00:00Z", Figure::Apply),
            (
                Some("2026-01-01T10:00:00+02:00"),
                "2026-01-01T09:00:00Z",
                Figure::Apply,
            ),
            (
                Some("2026-01-01T10:00:00Z"),
                "2026-01-01T11:00:00+02:00",
                Figure::Stale,
            ),
        ];
        for (stored, figure, want) in cases {
            assert_eq!(judge(stored, figure), want, "{stored:?} then {figure}");
        }
    }

    #[test]
    fn watermark_table() {
        /// (figure version, captured_at, accepted_at, accepted version, grace, includes)
        type Case<'a> = (&'a str, Millis, Millis, Option<&'a str>, Option<i64>, bool);
        let cases: [Case; 9] = [
            ("11", 0, 0, Some("10"), None, true),
            ("10", 0, 0, Some("10"), Some(0), false),
            ("9", 99_999, 0, Some("10"), Some(1), false),
            // Not comparable: time decides, only with a grace.
            ("h-x", 5_000, 1_000, Some("10"), Some(4_000), true),
            ("h-x", 4_999, 1_000, Some("10"), Some(4_000), false),
            ("h-x", i64::MAX, 1_000, Some("10"), None, false),
            ("11", 5_000, 1_000, None, Some(4_000), true),
            // The grace saturates instead of wrapping.
            ("h-x", i64::MAX, i64::MAX, None, Some(i64::MAX), true),
            ("h-x", i64::MAX - 1, i64::MAX, None, Some(1), false),
        ];
        for (v, cap, at, av, grace, want) in cases {
            assert_eq!(
                passes_watermark(v, cap, at, av, grace),
                want,
                "{v} captured {cap} vs accepted {at}/{av:?} grace {grace:?}"
            );
        }
    }

    #[test]
    fn a_figure_releases_what_it_includes_and_marks_its_sku() {
        let update = LevelUpdate {
            sku: "A".into(),
            location: "L1".into(),
            on_hand: 10,
            committed: 3,
            incoming: json!([]),
            version: "20".into(),
            captured_at: 0,
        };
        let open = |r: &str, seq, q, v: &str| Releasable {
            line: line(r, seq, "A", "L1", q),
            accepted_at: 0,
            accepted_version: Some(v.into()),
        };
        let got = by_figure(
            &update,
            None,
            &[
                open("r2", 0, 2, "19"),
                open("r1", 0, 1, "19"),
                open("r1", 1, i64::MAX, "19"),
                open("r3", 0, 5, "20"),
            ],
        );
        assert_eq!(
            got.released,
            [("r1".to_string(), i64::MAX), ("r2".to_string(), 2)],
            "per reservation, saturated; r3's acceptance is the figure itself"
        );
        let kinds: Vec<String> = got
            .steps
            .iter()
            .map(|s| match s {
                Step::ReleaseLine(l) => format!("release {}#{}", l.reservation_id, l.seq),
                Step::FinishIfReleased(id) => format!("finish {id}"),
                Step::MarkDirty(sku) => format!("dirty {sku}"),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "release r2#0",
                "release r1#0",
                "release r1#1",
                "finish r1",
                "finish r2",
                "dirty A"
            ]
        );
        let nothing = by_figure(&update, None, &[]);
        assert_eq!(nothing.steps, [Step::MarkDirty("A".into())]);
    }
}

//! An order's acceptance by the ERP: the watermark its reservations are released against.
//!
//! A delivered order (a settlement's `Delivered`, not a `cancel`) accepts its reservations from
//! that endpoint; a reservation committed to an order the ERP accepted already takes over that
//! acceptance. Either way the first acceptance is the watermark — later deliveries of the same
//! order (updates) do not move it; cancel-and-replace clears it (see [`super::orders`]) and the
//! replacement's acceptance sets it again.
//!
//! The ERP's figure can reach the ledger before the delivery that carries the acceptance is
//! settled (the ERP commits the stock, its webhook races the worker's settlement), and a
//! re-delivery of that same figure releases nothing (see [`super::release`]): so the acceptance
//! itself releases the lines whose position's stored figure is already newer than the watermark.
//! Only comparable versions decide here: the time-based fallback needs the figure's capture
//! time, which the ledger does not keep, so lines without a comparable watermark wait for the
//! next figure.
//!
//! Must never: read or write storage, move a watermark once set, or release by time.

use super::{mark_touched, LineRow, Step};
use crate::compare_versions;
use concord_core::Millis;
use std::cmp::Ordering;
use std::collections::BTreeSet;

/// An acceptance: when, and the ERP's version of the order then (its watermark, when the API
/// tells one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Acceptance {
    pub(crate) at: Millis,
    pub(crate) version: Option<String>,
}

/// An active reservation of the accepted order, as the acceptance reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accepting {
    pub(crate) id: String,
    /// The acceptance it has already, if any.
    pub(crate) accepted: Option<Acceptance>,
    /// Its unreleased lines, each with the version of its position's stored figure (`None`: the
    /// position has no figure yet).
    pub(crate) open: Vec<(LineRow, Option<String>)>,
}

/// Accept `reservations` with `acceptance` (`None`: nothing new to stamp — only what they
/// already have is checked against the stored figures): stamp it on those without one, then
/// release every line whose stored figure is newer than its reservation's watermark.
pub(crate) fn accept(reservations: &[Accepting], acceptance: Option<&Acceptance>) -> Vec<Step> {
    let mut by_id: Vec<&Accepting> = reservations.iter().collect();
    by_id.sort_by(|a, b| a.id.cmp(&b.id));
    let mut steps = Vec::new();
    let mut watermarks = Vec::with_capacity(by_id.len());
    for r in &by_id {
        let watermark = match (&r.accepted, acceptance) {
            (Some(first), _) => Some(first),
            (None, Some(new)) => {
                steps.push(Step::StampAcceptance {
                    id: r.id.clone(),
                    at: new.at,
                    version: new.version.clone(),
                });
                Some(new)
            }
            (None, None) => None,
        };
        watermarks.push(watermark.and_then(|w| w.version.as_deref()));
    }
    let mut finished = BTreeSet::new();
    for (r, watermark) in by_id.iter().zip(watermarks) {
        let Some(watermark) = watermark else { continue };
        for (line, figure) in &r.open {
            let includes = figure
                .as_deref()
                .is_some_and(|f| compare_versions(f, watermark) == Some(Ordering::Greater));
            if includes {
                steps.push(Step::ReleaseLine(line.clone()));
                finished.insert(r.id.clone());
            }
        }
    }
    steps.extend(finished.into_iter().map(Step::FinishIfReleased));
    mark_touched(&mut steps);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::tests::line;

    fn acceptance(at: Millis, version: Option<&str>) -> Acceptance {
        Acceptance {
            at,
            version: version.map(Into::into),
        }
    }

    fn describe(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::StampAcceptance { id, at, version } => format!("stamp {id} {at} {version:?}"),
                Step::ReleaseLine(l) => format!("release {}#{}", l.reservation_id, l.seq),
                Step::FinishIfReleased(id) => format!("finish {id}"),
                Step::MarkDirty(sku) => format!("dirty {sku}"),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_first_acceptance_is_the_watermark() {
        let fresh = Accepting {
            id: "r2".into(),
            accepted: None,
            open: vec![
                (line("r2", 0, "A", "L1", 1), Some("11".into())),
                (line("r2", 1, "B", "L1", 1), Some("10".into())),
                (line("r2", 2, "C", "L1", 1), None),
                (line("r2", 3, "D", "L1", 1), Some("h-x".into())),
            ],
        };
        let stamped = Accepting {
            id: "r1".into(),
            accepted: Some(acceptance(5, Some("12"))),
            open: vec![(line("r1", 0, "A", "L1", 1), Some("11".into()))],
        };
        let steps = accept(&[fresh, stamped], Some(&acceptance(9, Some("10"))));
        assert_eq!(
            describe(&steps),
            [
                "stamp r2 9 Some(\"10\")",
                "release r2#0",
                "finish r2",
                "dirty A"
            ],
            "r1 keeps its watermark 12, which 11 does not pass; only a newer comparable figure \
             releases r2's lines"
        );
    }

    #[test]
    fn without_a_comparable_watermark_nothing_is_released() {
        let r = |accepted| Accepting {
            id: "r1".into(),
            accepted,
            open: vec![(line("r1", 0, "A", "L1", 1), Some("99".into()))],
        };
        assert_eq!(
            describe(&accept(&[r(None)], Some(&acceptance(3, None)))),
            ["stamp r1 3 None"]
        );
        assert!(
            accept(&[r(None)], None).is_empty(),
            "nothing known to stamp"
        );
        assert_eq!(
            describe(&accept(&[r(Some(acceptance(1, Some("98"))))], None)),
            ["release r1#0", "finish r1", "dirty A"],
            "an acceptance taken over at commit releases against its own watermark"
        );
    }
}

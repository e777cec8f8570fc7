//! The reservations of one order: its cancellation, its re-hold when cancel-and-replace is
//! planned, and an edit's adjustment to new quantities (`Store::adjust_order_reservation`).
//!
//! Each function reads the order's reservations as the backend loaded them ([`OrderReservation`],
//! oldest first, with every line — released ones included). An edit and a replacement work on
//! the order's active reservations or, once the ERP's figures took the whole order over and its
//! reservation ended as `released`, on the latest such reservation, which becomes the order's
//! again (`committed`).
//!
//! Must never: read or write storage, or let an edit hold more than the positions it was given
//! can give (an uncoverable increase changes nothing); a line is held again only by
//! [`rehold`], released only by a release step.

use super::{feed_positions, feeds_by_sku, mark_touched, transitions, LineRow, Positions, Step};
use crate::{AdjustRequest, ReservationState, Result, StoreError};
use concord_core::inventory::{route, sellable, Candidate, Line, RouteError, Shortage};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One reservation committed to the order, with all its lines by `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrderReservation {
    pub(crate) id: String,
    pub(crate) state: ReservationState,
    pub(crate) lines: Vec<LineRow>,
}

/// The reservations an edit or a replacement works on: the active ones (oldest first), else
/// the latest `released` one — and whether it is that one, to be taken back.
fn working_set(order: &[OrderReservation]) -> (Vec<&OrderReservation>, bool) {
    let active: Vec<&OrderReservation> = order.iter().filter(|r| r.state.is_active()).collect();
    if !active.is_empty() {
        return (active, false);
    }
    let released = order
        .iter()
        .rev()
        .find(|r| r.state == ReservationState::Released);
    (released.into_iter().collect(), true)
}

/// The order was cancelled (by the channel or the ERP): every active reservation is cancelled,
/// releasing its unreleased lines. Returns the steps and how many reservations end.
pub(crate) fn cancel(order: &[OrderReservation]) -> (Vec<Step>, usize) {
    let mut steps = Vec::new();
    let mut ended = 0;
    for r in order.iter().filter(|r| r.state.is_active()) {
        let open: Vec<LineRow> = r.lines.iter().filter(|l| !l.released).cloned().collect();
        steps.extend(transitions::end(&r.id, ReservationState::Cancelled, &open));
        ended += 1;
    }
    (steps, ended)
}

/// Units held again per (SKU, location) by a re-hold.
pub(crate) type Reheld = HashMap<(String, String), i64>;

/// Cancel-and-replace is planned for the order: between the ERP applying the cancel (its
/// committed drops) and accepting the replacement, neither side would hold the order. So its
/// released lines are held again (a reservation that ended as `released` is taken back as
/// `committed`) and the acceptance watermark is cleared: only the acceptance of the replacement
/// (its create's version) releases them again, never the figure showing the cancel. Idempotent:
/// a second re-hold finds no released lines and a cleared watermark.
///
/// Also returns the units held again per (SKU, location) (not backorders): until the ERP
/// applies the cancel its stored figure still commits them too, so an increase in the same edit
/// may count them as available again (they are the order's either way).
pub(crate) fn rehold(order: &[OrderReservation]) -> (Vec<Step>, Reheld) {
    let (working, revived) = working_set(order);
    let mut steps = Vec::new();
    if revived {
        steps.extend(working.iter().map(|r| Step::Revive(r.id.clone())));
    }
    let mut reheld = Reheld::new();
    for r in &working {
        for l in r.lines.iter().filter(|l| l.released) {
            let (held, _) = l.contribution(l.quantity);
            let again = reheld
                .entry((l.sku.clone(), l.location.clone()))
                .or_default();
            *again = again.saturating_add(held);
            steps.push(Step::HoldAgain(l.clone()));
        }
        steps.push(Step::ClearAcceptance(r.id.clone()));
    }
    mark_touched(&mut steps);
    (steps, reheld)
}

/// What an edit asks of the working set: the units to add per SKU (to route) and to take back.
struct Changes {
    grow: Vec<Line>,
    shrink: Vec<(String, i64)>,
}

/// A SKU's current quantity is the sum of its lines, released ones included (the ERP's figures
/// hold those); the new one is the request's (absent: 0; a negative one counts as 0).
fn changes(lines: &[&LineRow], req: &AdjustRequest) -> Result<Changes> {
    let mut current: BTreeMap<&str, i64> = BTreeMap::new();
    for l in lines {
        let c = current.entry(l.sku.as_str()).or_default();
        *c = c.checked_add(l.quantity).ok_or_else(|| {
            StoreError::OutOfRange(format!(
                "the reservation lines of `{}` for {} add up past the ledger's range",
                req.order, l.sku
            ))
        })?;
    }
    let target: BTreeMap<&str, i64> = req
        .quantities
        .iter()
        .map(|(s, q)| (s.as_str(), *q))
        .collect();
    let skus: BTreeSet<&str> = current.keys().chain(target.keys()).copied().collect();
    let (mut grow, mut shrink) = (Vec::new(), Vec::new());
    for sku in skus {
        let cur = current.get(sku).copied().unwrap_or(0);
        let want = target.get(sku).copied().unwrap_or(0).max(0);
        match want.cmp(&cur) {
            // want ≥ 0 and cur ≥ 0 (sums of positive lines), so neither difference overflows.
            Ordering::Greater => grow.push(Line {
                sku: sku.to_owned(),
                quantity: want - cur,
            }),
            Ordering::Less => shrink.push((sku.to_owned(), cur - want)),
            Ordering::Equal => {}
        }
    }
    Ok(Changes { grow, shrink })
}

/// The positions an edit of `order` to `req` routes over — the feeds of every SKU that grows —
/// sorted by (SKU, location), the order to lock them in. Fails like [`adjust`] when the order's
/// lines add up past the ledger's range.
pub(crate) fn adjust_positions(
    order: &[OrderReservation],
    req: &AdjustRequest,
) -> Result<BTreeSet<(String, String)>> {
    let (working, _) = working_set(order);
    let lines: Vec<&LineRow> = working.iter().flat_map(|r| &r.lines).collect();
    let grow = changes(&lines, req)?.grow;
    let feeds = feeds_by_sku(&req.feeds);
    Ok(feed_positions(grow.iter().map(|l| l.sku.as_str()), &feeds))
}

/// What an edit comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Adjust {
    /// No reservation is committed to the order: nothing to adjust.
    NoReservation,
    /// An increase the pool cannot cover: nothing is written.
    Short(Vec<Shortage>),
    /// Write `steps`; the order's reservation is now `id` (the oldest of the working set).
    Adjusted { id: String, steps: Vec<Step> },
}

/// Bring the order's reservations to `req.quantities`. Decreases shrink unreleased lines,
/// newest first; what they cannot give back is the ERP's to release when it applies the edit.
/// Increases are routed over `req.feeds` like a reservation, without backorders — each feed
/// gives `max(0, free − buffer)`, not counting twice the units `reheld` just held again — and
/// added as new lines of the oldest reservation; after an increase the acceptance is cleared,
/// so that only the ERP's acceptance of the edited order releases lines again, and a `released`
/// reservation is taken back. Applying the same quantities again changes nothing.
pub(crate) fn adjust(
    order: &[OrderReservation],
    req: &AdjustRequest,
    reheld: &Reheld,
    positions: &Positions,
) -> Result<Adjust> {
    let (working, revive) = working_set(order);
    let Some(first) = working.first() else {
        return Ok(Adjust::NoReservation);
    };
    let lines: Vec<&LineRow> = working.iter().flat_map(|r| &r.lines).collect();
    let Changes { grow, shrink } = changes(&lines, req)?;
    let mut steps = Vec::new();
    if !grow.is_empty() {
        let feeds = feeds_by_sku(&req.feeds);
        let candidates = |sku: &str| -> Vec<Candidate> {
            feeds
                .get(sku)
                .copied()
                .unwrap_or_default()
                .iter()
                .map(|f| {
                    let mut position = positions.get(sku, &f.location).position();
                    // Units just held again are still in the ERP's committed: count them once.
                    let again = reheld
                        .get(&(sku.to_owned(), f.location.clone()))
                        .copied()
                        .unwrap_or(0);
                    position.held = position.held.saturating_sub(again);
                    Candidate {
                        location: f.location.clone(),
                        available: sellable(&position, f.buffer.max(0)),
                    }
                })
                .collect()
        };
        let allocations = match route(&grow, &candidates, &|_| None) {
            Ok(a) => a,
            Err(RouteError::Short(shortages)) => return Ok(Adjust::Short(shortages)),
            Err(e @ RouteError::Invalid { .. }) => {
                return Err(StoreError::OutOfRange(e.to_string()))
            }
        };
        let next = first.lines.iter().map(|l| l.seq).max().map_or(0, |s| s + 1);
        for (a, seq) in allocations.into_iter().zip(next..) {
            steps.push(Step::InsertLine(LineRow {
                reservation_id: first.id.clone(),
                seq,
                sku: a.sku,
                location: a.location,
                quantity: a.quantity,
                backorder: false,
                released: false,
            }));
        }
        if revive {
            steps.push(Step::Revive(first.id.clone()));
        }
        steps.extend(working.iter().map(|r| Step::ClearAcceptance(r.id.clone())));
    }
    for (sku, mut cut) in shrink {
        let newest_first = lines
            .iter()
            .rev()
            .filter(|l| l.sku == sku && !l.released && l.quantity > 0);
        for l in newest_first {
            if cut == 0 {
                break;
            }
            let take = cut.min(l.quantity);
            cut -= take;
            steps.push(if take == l.quantity {
                Step::DeleteLine((*l).clone())
            } else {
                Step::ShrinkLine {
                    line: (*l).clone(),
                    by: take,
                }
            });
        }
    }
    mark_touched(&mut steps);
    Ok(Adjust::Adjusted {
        id: first.id.clone(),
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::tests::line;
    use crate::ledger::PositionRow;
    use crate::Feed;
    use ReservationState::*;

    fn reservation(id: &str, state: ReservationState, lines: Vec<LineRow>) -> OrderReservation {
        OrderReservation {
            id: id.into(),
            state,
            lines,
        }
    }

    fn released(mut l: LineRow) -> LineRow {
        l.released = true;
        l
    }

    fn request(quantities: &[(&str, i64)]) -> AdjustRequest {
        AdjustRequest {
            order: "web/1".into(),
            quantities: quantities.iter().map(|(s, q)| ((*s).into(), *q)).collect(),
            feeds: ["A", "B"]
                .iter()
                .map(|s| {
                    (
                        (*s).to_string(),
                        vec![
                            Feed {
                                location: "L1".into(),
                                buffer: 0,
                            },
                            Feed {
                                location: "L2".into(),
                                buffer: 1,
                            },
                        ],
                    )
                })
                .collect(),
            rehold: false,
            now: 7,
        }
    }

    fn stock(rows: &[(&str, &str, i64, i64)]) -> Positions {
        let mut p = Positions::default();
        for (sku, loc, on_hand, held) in rows {
            p.insert(
                sku,
                loc,
                PositionRow {
                    on_hand: *on_hand,
                    held: *held,
                    ..PositionRow::default()
                },
            );
        }
        p
    }

    fn describe(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::InsertLine(l) => {
                    format!(
                        "insert {}#{} {}@{} {}",
                        l.reservation_id, l.seq, l.sku, l.location, l.quantity
                    )
                }
                Step::DeleteLine(l) => format!("delete {}#{}", l.reservation_id, l.seq),
                Step::ShrinkLine { line, by } => {
                    format!("shrink {}#{} by {by}", line.reservation_id, line.seq)
                }
                Step::HoldAgain(l) => format!("hold {}#{}", l.reservation_id, l.seq),
                Step::ReleaseLine(l) => format!("release {}#{}", l.reservation_id, l.seq),
                Step::Revive(id) => format!("revive {id}"),
                Step::ClearAcceptance(id) => format!("clear {id}"),
                Step::End { id, to } => format!("end {id} {to:?}"),
                Step::MarkDirty(sku) => format!("dirty {sku}"),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn adjusted(a: Adjust) -> (String, Vec<String>) {
        match a {
            Adjust::Adjusted { id, steps } => (id, describe(&steps)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cancellation_ends_the_active_reservations_only() {
        let order = [
            reservation(
                "r1",
                Committed,
                vec![
                    line("r1", 0, "A", "L1", 1),
                    released(line("r1", 1, "B", "L1", 1)),
                ],
            ),
            reservation("r0", Expired, vec![line("r0", 0, "A", "L1", 9)]),
            reservation("r2", Held, vec![]),
        ];
        let (steps, ended) = cancel(&order);
        assert_eq!(ended, 2);
        assert_eq!(
            describe(&steps),
            [
                "end r1 Cancelled",
                "release r1#0",
                "dirty A",
                "end r2 Cancelled"
            ]
        );
    }

    #[test]
    fn rehold_takes_back_the_latest_released_reservation_when_none_is_active() {
        let order = [
            reservation("r1", Released, vec![released(line("r1", 0, "A", "L1", 9))]),
            reservation("r2", Cancelled, vec![released(line("r2", 0, "A", "L1", 1))]),
            reservation(
                "r3",
                Released,
                vec![released(line("r3", 0, "A", "L1", 2)), {
                    let mut b = released(line("r3", 1, "B", "L2", 4));
                    b.backorder = true;
                    b
                }],
            ),
        ];
        let (steps, reheld) = rehold(&order);
        assert_eq!(
            describe(&steps),
            [
                "revive r3",
                "hold r3#0",
                "hold r3#1",
                "clear r3",
                "dirty A",
                "dirty B"
            ]
        );
        assert_eq!(reheld[&("A".to_string(), "L1".to_string())], 2);
        assert_eq!(
            reheld[&("B".to_string(), "L2".to_string())],
            0,
            "a backorder is not held"
        );

        let active = [
            reservation(
                "r1",
                Committed,
                vec![
                    line("r1", 0, "A", "L1", 1),
                    released(line("r1", 1, "A", "L2", 3)),
                ],
            ),
            reservation("r3", Released, vec![released(line("r3", 0, "A", "L1", 2))]),
        ];
        let (steps, _) = rehold(&active);
        assert_eq!(describe(&steps), ["hold r1#1", "clear r1", "dirty A"]);
        assert!(rehold(&[]).0.is_empty());
    }

    #[test]
    fn an_edit_shrinks_newest_first_and_grows_on_the_oldest_reservation() {
        let order = [
            reservation(
                "r1",
                Committed,
                vec![line("r1", 0, "A", "L1", 2), line("r1", 3, "B", "L1", 1)],
            ),
            reservation(
                "r2",
                Committed,
                vec![
                    line("r2", 0, "A", "L1", 1),
                    released(line("r2", 1, "A", "L2", 5)),
                ],
            ),
        ];
        // A: 2 + 1 + 5 (released) = 8 → 6: the unreleased lines give back 2, newest first.
        let got = adjust(
            &order,
            &request(&[("A", 6), ("B", 3)]),
            &Reheld::new(),
            &stock(&[("B", "L1", 1, 0), ("B", "L2", 5, 0)]),
        )
        .unwrap();
        assert_eq!(
            adjusted(got),
            (
                "r1".to_string(),
                vec![
                    "insert r1#4 B@L2 2".to_string(),
                    "clear r1".into(),
                    "clear r2".into(),
                    "delete r2#0".into(),
                    "shrink r1#0 by 1".into(),
                    "dirty A".into(),
                    "dirty B".into(),
                ]
            ),
            "B grows by 2 at L2, the one location that covers it (5 minus its buffer 1)"
        );
        // The same quantities again (as the ERP's figures now hold them): nothing changes.
        let same = adjust(
            &order,
            &request(&[("A", 8), ("B", 1)]),
            &Reheld::new(),
            &Positions::default(),
        )
        .unwrap();
        assert_eq!(adjusted(same), ("r1".to_string(), vec![]));
        // More than unreleased lines hold: the rest is the ERP's to release.
        let deep = adjust(
            &order,
            &request(&[("B", 1)]),
            &Reheld::new(),
            &Positions::default(),
        )
        .unwrap();
        assert_eq!(adjusted(deep).1, ["delete r2#0", "delete r1#0", "dirty A"]);
    }

    #[test]
    fn an_uncoverable_increase_changes_nothing() {
        let order = [reservation(
            "r1",
            Committed,
            vec![line("r1", 0, "A", "L1", 1)],
        )];
        let got = adjust(
            &order,
            &request(&[("A", 4)]),
            &Reheld::new(),
            &stock(&[("A", "L1", 2, 1), ("A", "L2", 2, 0)]),
        )
        .unwrap();
        assert_eq!(
            got,
            Adjust::Short(vec![Shortage {
                sku: "A".into(),
                requested: 3,
                available: 2
            }]),
            "L1 gives 2 − held 1, L2 gives 2 − buffer 1"
        );
    }

    #[test]
    fn units_held_again_are_counted_once_and_a_released_reservation_is_taken_back() {
        // After the ERP's figures took the order over: its released reservation.
        let order = [reservation(
            "r1",
            Released,
            vec![released(line("r1", 0, "A", "L1", 2))],
        )];
        let mut reheld = Reheld::new();
        let positions = stock(&[("A", "L1", 3, 3)]);
        assert!(matches!(
            adjust(&order, &request(&[("A", 3)]), &reheld, &positions).unwrap(),
            Adjust::Short(_)
        ));
        reheld.insert(("A".into(), "L1".into()), 2);
        let got = adjust(&order, &request(&[("A", 3)]), &reheld, &positions).unwrap();
        assert_eq!(
            adjusted(got).1,
            ["insert r1#1 A@L1 1", "revive r1", "clear r1", "dirty A"]
        );
        assert_eq!(
            adjust(&[], &request(&[("A", 3)]), &reheld, &positions).unwrap(),
            Adjust::NoReservation
        );
    }

    #[test]
    fn lines_that_add_up_past_the_range_are_refused() {
        let order = [reservation(
            "r1",
            Committed,
            vec![
                line("r1", 0, "A", "L1", i64::MAX),
                line("r1", 1, "A", "L2", 1),
            ],
        )];
        let req = request(&[("A", 1)]);
        assert!(
            matches!(adjust_positions(&order, &req), Err(StoreError::OutOfRange(m)) if m.contains("web/1"))
        );
        assert!(matches!(
            adjust(&order, &req, &Reheld::new(), &Positions::default()),
            Err(StoreError::OutOfRange(_))
        ));
        let grows = [reservation(
            "r1",
            Committed,
            vec![line("r1", 0, "A", "L1", 1)],
        )];
        let pos: Vec<_> = adjust_positions(&grows, &request(&[("A", 2), ("B", 0)]))
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(
            pos,
            [
                ("A".to_string(), "L1".to_string()),
                ("A".to_string(), "L2".to_string())
            ]
        );
    }
}

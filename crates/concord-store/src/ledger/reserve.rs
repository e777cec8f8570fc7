//! Admission and routing of a reservation (`Store::reserve`): which positions it reads, whether
//! the pool covers it, which location gives which units, and what is written when it does.
//!
//! The order of a reservation: [`check`] the request (before anything is read), look the client
//! key up (a key used before answers its stored reservation, whatever the new lines say: the key
//! names the checkout, not its content), load [`positions`], then [`decide`].
//!
//! Must never: read or write storage, or promise a unit the positions it was given do not show
//! as sellable (`max(0, free − buffer)`) or, for a backorder, as incoming and not yet
//! backordered.

use super::{feed_positions, feeds_by_sku, mark_touched, LineRow, Positions, Step};
use crate::{Reservation, ReservationState, ReserveRequest, Result, StoreError};
use concord_core::inventory::{
    backorder_allowance, route, sellable, sum_non_negative, Backorderable, Candidate, RouteError,
    Shortage,
};
use std::collections::BTreeSet;

/// Refuse a request no routing could make sense of: a line below 1 unit would lower `held`.
pub(crate) fn check(req: &ReserveRequest) -> Result<()> {
    match req.lines.iter().find(|l| l.quantity < 1) {
        None => Ok(()),
        Some(line) => Err(StoreError::Unsupported(if line.quantity == 0 {
            "reservation lines of quantity 0"
        } else {
            "reservation lines of negative quantity"
        })),
    }
}

/// The positions `req` routes over: every feed of every requested SKU, sorted by (SKU,
/// location) — the order to lock them in.
pub(crate) fn positions(req: &ReserveRequest) -> BTreeSet<(String, String)> {
    let feeds = feeds_by_sku(&req.feeds);
    feed_positions(req.lines.iter().map(|l| l.sku.as_str()), &feeds)
}

/// What a reservation request comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Not enough stock: nothing is written.
    Short(Vec<Shortage>),
    /// Reserved: write `steps`, answer `reservation`.
    Reserve {
        reservation: Box<Reservation>,
        steps: Vec<Step>,
    },
}

/// Route `req` over `positions` (the rows of [`positions`]) with
/// `concord_core::inventory::route`: each feed gives `max(0, free − buffer)` (a negative buffer
/// keeps nothing back; it never adds to what is free); with a `backorder_limit`, a SKU may take
/// `min(limit, Σ incoming) − Σ backordered` over its feeds — the limit caps the SKU's
/// outstanding backorders, not each request — at its first feed with incoming stock.
pub(crate) fn decide(req: &ReserveRequest, positions: &Positions) -> Result<Decision> {
    let feeds = feeds_by_sku(&req.feeds);
    let feeds_of = |sku: &str| feeds.get(sku).copied().unwrap_or_default();
    let candidates = |sku: &str| -> Vec<Candidate> {
        feeds_of(sku)
            .iter()
            .map(|f| Candidate {
                location: f.location.clone(),
                available: sellable(&positions.get(sku, &f.location).position(), f.buffer.max(0)),
            })
            .collect()
    };
    let backorderable = |sku: &str| -> Option<Backorderable> {
        let limit = req.backorder_limit?;
        let feeds = feeds_of(sku);
        let location = feeds
            .iter()
            .find(|f| positions.get(sku, &f.location).incoming > 0)?
            .location
            .clone();
        let incoming = sum_non_negative(
            feeds
                .iter()
                .map(|f| positions.get(sku, &f.location).incoming),
        );
        let backordered = sum_non_negative(
            feeds
                .iter()
                .map(|f| positions.get(sku, &f.location).backordered),
        );
        Some(Backorderable {
            quantity: backorder_allowance(limit, incoming, backordered),
            location,
        })
    };
    let allocations = match route(&req.lines, &candidates, &backorderable) {
        Ok(a) => a,
        Err(RouteError::Short(shortages)) => return Ok(Decision::Short(shortages)),
        Err(e @ RouteError::Invalid { .. }) => return Err(StoreError::OutOfRange(e.to_string())),
    };
    let mut lines = Vec::with_capacity(allocations.len());
    let mut steps = Vec::with_capacity(allocations.len() + 4);
    let mut reservation = Reservation {
        id: req.id.clone(),
        channel: req.channel.clone(),
        client_key: req.client_key.clone(),
        state: ReservationState::Held,
        lines: Vec::new(),
        source: req.source.clone(),
        order: None,
        created_at: req.now,
        expires_at: Some(req.expires_at),
        committed_at: None,
        accepted_at: None,
        accepted_version: None,
        ended_at: None,
    };
    steps.push(Step::InsertReservation(Box::new(reservation.clone())));
    for (seq, a) in (0i64..).zip(allocations) {
        lines.push(crate::ReservationLine {
            sku: a.sku.clone(),
            location: a.location.clone(),
            quantity: a.quantity,
            backorder: a.backorder,
            released_at: None,
        });
        steps.push(Step::InsertLine(LineRow {
            reservation_id: req.id.clone(),
            seq,
            sku: a.sku,
            location: a.location,
            quantity: a.quantity,
            backorder: a.backorder,
            released: false,
        }));
    }
    mark_touched(&mut steps);
    reservation.lines = lines;
    Ok(Decision::Reserve {
        reservation: Box::new(reservation),
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::PositionRow;
    use crate::Feed;
    use concord_core::inventory::Line;

    fn request(lines: &[(&str, i64)], feeds: &[(&str, &[(&str, i64)])]) -> ReserveRequest {
        ReserveRequest {
            id: "r1".into(),
            channel: "web".into(),
            client_key: "k".into(),
            lines: lines
                .iter()
                .map(|(sku, q)| Line {
                    sku: (*sku).into(),
                    quantity: *q,
                })
                .collect(),
            feeds: feeds
                .iter()
                .map(|(sku, f)| {
                    (
                        (*sku).to_string(),
                        f.iter()
                            .map(|(l, b)| Feed {
                                location: (*l).into(),
                                buffer: *b,
                            })
                            .collect(),
                    )
                })
                .collect(),
            backorder_limit: None,
            source: "erp".into(),
            now: 1_000,
            expires_at: 31_000,
        }
    }

    fn on_hand(rows: &[(&str, &str, i64, i64, i64)]) -> Positions {
        let mut p = Positions::default();
        for (sku, loc, on_hand, committed, held) in rows {
            p.insert(
                sku,
                loc,
                PositionRow {
                    on_hand: *on_hand,
                    committed: *committed,
                    held: *held,
                    ..PositionRow::default()
                },
            );
        }
        p
    }

    /// (SKU, location, quantity, backorder) of each line a decision inserts.
    fn inserted(d: &Decision) -> Vec<(String, String, i64, bool)> {
        match d {
            Decision::Reserve { steps, .. } => steps
                .iter()
                .filter_map(|s| match s {
                    Step::InsertLine(l) => {
                        Some((l.sku.clone(), l.location.clone(), l.quantity, l.backorder))
                    }
                    _ => None,
                })
                .collect(),
            Decision::Short(s) => panic!("short: {s:?}"),
        }
    }

    #[test]
    fn lines_below_one_unit_are_refused_before_anything_is_read() {
        for (q, what) in [
            (0, "reservation lines of quantity 0"),
            (-1, "reservation lines of negative quantity"),
            (i64::MIN, "reservation lines of negative quantity"),
        ] {
            let req = request(&[("A", 1), ("B", q)], &[]);
            assert!(
                matches!(check(&req), Err(StoreError::Unsupported(m)) if m == what),
                "{q}"
            );
        }
        assert!(check(&request(&[("A", i64::MAX)], &[])).is_ok());
    }

    #[test]
    fn routing_table() {
        type Row<'a> = (&'a str, &'a str, i64, i64, i64);
        /// Expected (SKU, location, quantity) per inserted line, or (SKU, requested, available)
        /// per shortage.
        type Want<'a> = Result<&'a [(&'a str, &'a str, i64)], &'a [(&'a str, i64, i64)]>;
        struct Case<'a> {
            name: &'a str,
            lines: &'a [(&'a str, i64)],
            feeds: &'a [(&'a str, &'a [(&'a str, i64)])],
            positions: &'a [Row<'a>],
            want: Want<'a>,
        }
        let two: &[(&str, i64)] = &[("L1", 0), ("L2", 0)];
        let cases = [
            Case {
                name: "one location that fills the whole order first",
                lines: &[("A", 2), ("B", 1)],
                feeds: &[("A", two), ("B", two)],
                positions: &[
                    ("A", "L1", 5, 0, 0),
                    ("A", "L2", 5, 0, 0),
                    ("B", "L2", 5, 0, 0),
                ],
                want: Ok(&[("A", "L2", 2), ("B", "L2", 1)]),
            },
            Case {
                name: "else split by priority",
                lines: &[("A", 4)],
                feeds: &[("A", two)],
                positions: &[("A", "L1", 3, 0, 0), ("A", "L2", 3, 0, 0)],
                want: Ok(&[("A", "L1", 3), ("A", "L2", 1)]),
            },
            Case {
                name: "committed and held count against free",
                lines: &[("A", 2)],
                feeds: &[("A", two)],
                positions: &[("A", "L1", 10, 5, 4), ("A", "L2", 1, 0, 0)],
                want: Ok(&[("A", "L1", 1), ("A", "L2", 1)]),
            },
            Case {
                name: "a buffer keeps units back",
                lines: &[("A", 3)],
                feeds: &[("A", &[("L1", 3)])],
                positions: &[("A", "L1", 5, 0, 0)],
                want: Err(&[("A", 3, 2)]),
            },
            Case {
                name: "a negative buffer never adds to free",
                lines: &[("A", 6)],
                feeds: &[("A", &[("L1", -10)])],
                positions: &[("A", "L1", 5, 0, 0)],
                want: Err(&[("A", 6, 5)]),
            },
            Case {
                name: "an oversold position gives nothing",
                lines: &[("A", 1)],
                feeds: &[("A", &[("L1", 0)])],
                positions: &[("A", "L1", i64::MIN, i64::MAX, i64::MAX)],
                want: Err(&[("A", 1, 0)]),
            },
            Case {
                name: "a SKU without feeds or positions is short",
                lines: &[("A", 1), ("Z", 1)],
                feeds: &[("A", two)],
                positions: &[("A", "L1", 5, 0, 0)],
                want: Err(&[("Z", 1, 0)]),
            },
            Case {
                name: "repeated SKUs are merged",
                lines: &[("A", 2), ("A", 3)],
                feeds: &[("A", two)],
                positions: &[("A", "L1", 5, 0, 0)],
                want: Ok(&[("A", "L1", 5)]),
            },
        ];
        for c in cases {
            let req = request(c.lines, c.feeds);
            let got = decide(&req, &on_hand(c.positions)).unwrap();
            match c.want {
                Ok(lines) => {
                    let want: Vec<_> = lines
                        .iter()
                        .map(|(s, l, q)| (s.to_string(), l.to_string(), *q, false))
                        .collect();
                    assert_eq!(inserted(&got), want, "{}", c.name);
                }
                Err(short) => {
                    let want: Vec<_> = short
                        .iter()
                        .map(|(s, r, a)| Shortage {
                            sku: s.to_string(),
                            requested: *r,
                            available: *a,
                        })
                        .collect();
                    assert_eq!(got, Decision::Short(want), "{}", c.name);
                }
            }
        }
    }

    #[test]
    fn a_reservation_is_written_as_its_row_its_lines_and_dirty_marks() {
        let req = request(
            &[("B", 1), ("A", 1)],
            &[("A", &[("L1", 0)]), ("B", &[("L1", 0)])],
        );
        let got = decide(
            &req,
            &on_hand(&[("A", "L1", 1, 0, 0), ("B", "L1", 1, 0, 0)]),
        )
        .unwrap();
        let Decision::Reserve { reservation, steps } = got else {
            panic!("short")
        };
        assert_eq!(reservation.state, ReservationState::Held);
        assert_eq!(reservation.expires_at, Some(31_000));
        assert_eq!(reservation.lines.len(), 2);
        assert!(matches!(&steps[0], Step::InsertReservation(r) if r.lines.is_empty()));
        assert!(matches!(&steps[1], Step::InsertLine(l) if l.seq == 0 && l.sku == "B"));
        assert!(matches!(&steps[2], Step::InsertLine(l) if l.seq == 1 && l.sku == "A"));
        assert_eq!(
            steps[3..],
            [Step::MarkDirty("A".into()), Step::MarkDirty("B".into())]
        );
    }

    #[test]
    fn backorders_take_the_allowance_at_the_first_feed_with_incoming_stock() {
        let mut req = request(&[("A", 5)], &[("A", &[("L1", 0), ("L2", 0)])]);
        let mut p = on_hand(&[("A", "L1", 2, 0, 0)]);
        p.insert(
            "A",
            "L2",
            PositionRow {
                incoming: 10,
                backordered: 6,
                ..PositionRow::default()
            },
        );
        // No limit: no backorders.
        assert!(matches!(decide(&req, &p).unwrap(), Decision::Short(_)));
        // min(limit 8, incoming 10) − backordered 6 = 2 < 3 missing.
        req.backorder_limit = Some(8);
        assert_eq!(
            decide(&req, &p).unwrap(),
            Decision::Short(vec![Shortage {
                sku: "A".into(),
                requested: 5,
                available: 4
            }])
        );
        // min(9, 10) − 6 = 3: the rest is backordered at L2.
        req.backorder_limit = Some(9);
        assert_eq!(
            inserted(&decide(&req, &p).unwrap()),
            [
                ("A".to_string(), "L1".to_string(), 2, false),
                ("A".to_string(), "L2".to_string(), 3, true)
            ]
        );
    }

    #[test]
    fn lines_whose_sum_overflows_are_out_of_range() {
        let req = request(&[("A", i64::MAX), ("A", 1)], &[("A", &[("L1", 0)])]);
        assert!(matches!(
            decide(&req, &Positions::default()),
            Err(StoreError::OutOfRange(_))
        ));
    }
}

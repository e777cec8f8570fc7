//! A reservation's own state machine: `held → committed` (the channel placed the order),
//! `held | committed → cancelled`, `held → expired` (its TTL ran out), each ending one releasing
//! every unreleased line once. (`→ released` is the ERP's doing: see [`super::release`].)
//!
//! Must never: read or write storage, or let a reservation leave `released`, `expired` or
//! `cancelled` (only cancel-and-replace takes a `released` one back: [`super::orders`]).

use super::{mark_touched, LineRow, Step};
use crate::{ReservationState, TransitionError};

/// What committing a reservation to an order does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// `Held → Committed`; then any acceptance of the order already known is taken over.
    Commit,
    /// Committed to that same order already: a no-op answering the reservation.
    Unchanged,
}

/// Commit a reservation in `current` state (with the order it is committed to, if any) to
/// `order`. `None`: no such reservation.
pub(crate) fn commit(
    current: Option<(ReservationState, Option<&str>)>,
    order: &str,
) -> Result<Commit, TransitionError> {
    match current {
        None => Err(TransitionError::NotFound),
        Some((ReservationState::Held, _)) => Ok(Commit::Commit),
        Some((ReservationState::Committed, Some(o))) if o == order => Ok(Commit::Unchanged),
        Some((state, _)) => Err(TransitionError::WrongState(state)),
    }
}

/// What cancelling a reservation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancel {
    /// End it as `Cancelled` ([`end`]). Safe for a committed one too: until the ERP cancels the
    /// order its own `committed` still counts it.
    Cancel,
    /// Cancelled already: a no-op answering the reservation.
    Unchanged,
}

/// Cancel a reservation in `current` state (`None`: no such reservation).
pub(crate) fn cancel(current: Option<ReservationState>) -> Result<Cancel, TransitionError> {
    match current {
        None => Err(TransitionError::NotFound),
        Some(state) if state.is_active() => Ok(Cancel::Cancel),
        Some(ReservationState::Cancelled) => Ok(Cancel::Unchanged),
        Some(state) => Err(TransitionError::WrongState(state)),
    }
}

/// End the active reservation `id` in `to` (expired, cancelled): its state, then every line of
/// `open` (its unreleased lines) released, then their SKUs marked dirty.
pub(crate) fn end(id: &str, to: ReservationState, open: &[LineRow]) -> Vec<Step> {
    let mut steps = Vec::with_capacity(open.len() + 2);
    steps.push(Step::End {
        id: id.to_owned(),
        to,
    });
    steps.extend(open.iter().cloned().map(Step::ReleaseLine));
    mark_touched(&mut steps);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::tests::line;
    use ReservationState::*;

    #[test]
    fn commit_table() {
        let cases = [
            (None, Err(TransitionError::NotFound)),
            (Some((Held, None)), Ok(Commit::Commit)),
            (Some((Committed, Some("o1"))), Ok(Commit::Unchanged)),
            (
                Some((Committed, Some("o2"))),
                Err(TransitionError::WrongState(Committed)),
            ),
            (
                Some((Committed, None)),
                Err(TransitionError::WrongState(Committed)),
            ),
            (
                Some((Released, Some("o1"))),
                Err(TransitionError::WrongState(Released)),
            ),
            (
                Some((Expired, None)),
                Err(TransitionError::WrongState(Expired)),
            ),
            (
                Some((Cancelled, None)),
                Err(TransitionError::WrongState(Cancelled)),
            ),
        ];
        for (current, want) in cases {
            assert_eq!(commit(current, "o1"), want, "{current:?}");
        }
    }

    #[test]
    fn cancel_table() {
        let cases = [
            (None, Err(TransitionError::NotFound)),
            (Some(Held), Ok(Cancel::Cancel)),
            (Some(Committed), Ok(Cancel::Cancel)),
            (Some(Cancelled), Ok(Cancel::Unchanged)),
            (Some(Released), Err(TransitionError::WrongState(Released))),
            (Some(Expired), Err(TransitionError::WrongState(Expired))),
        ];
        for (current, want) in cases {
            assert_eq!(cancel(current), want, "{current:?}");
        }
    }

    #[test]
    fn ending_releases_every_open_line_once_and_marks_their_skus() {
        let open = [
            line("r", 0, "B", "L1", 1),
            line("r", 1, "A", "L2", 2),
            line("r", 2, "B", "L2", 3),
        ];
        let steps = end("r", Expired, &open);
        assert_eq!(
            steps[0],
            Step::End {
                id: "r".into(),
                to: Expired
            }
        );
        assert_eq!(
            steps[1..4],
            open.iter()
                .cloned()
                .map(Step::ReleaseLine)
                .collect::<Vec<_>>()[..]
        );
        assert_eq!(
            steps[4..],
            [Step::MarkDirty("A".into()), Step::MarkDirty("B".into())]
        );
        assert_eq!(
            end("r", Cancelled, &[]),
            [Step::End {
                id: "r".into(),
                to: Cancelled
            }]
        );
    }
}

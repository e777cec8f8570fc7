//! An outbox item enqueued (by `apply`, a dead-letter replay or a refused amend): what it waits
//! for, whether it replaces a pending item of its key (coalescing) and the state it starts in.
//!
//! Coalescing (design §2): a state kind keeps one pending item per (destination, kind, key) —
//! a newer state replaces the payload of the *newest* unfinished item of the key, when that one
//! is a state item still pending (not in flight, not parked). Replacing an older one while a
//! later item of the same key waits would reorder them; command kinds are never coalesced.
//!
//! Must never: read or write storage, or let an item that waits on a dependency absorb
//! another's state.

use crate::{ItemId, ItemState, NewItem};
use concord_core::Kind;

/// The dependencies of `item` to look up at its destination: `waiting_on` without repeats, in
/// order. Those already known there are not waited for.
pub(crate) fn dependencies(item: &NewItem) -> Vec<(Kind, &str)> {
    let mut out: Vec<(Kind, &str)> = Vec::with_capacity(item.waiting_on.len());
    for (kind, key) in &item.waiting_on {
        if !out.contains(&(*kind, key.as_str())) {
            out.push((*kind, key.as_str()));
        }
    }
    out
}

/// May `item` absorb into a pending item of its key (`waits`: some dependency is unknown at the
/// destination)? When not, the backend need not look for one.
pub(crate) fn may_coalesce(item: &NewItem, waits: bool) -> bool {
    item.coalesce && !waits
}

/// The newest unfinished (pending, in-flight or parked) item of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Newest {
    pub(crate) id: ItemId,
    pub(crate) state: ItemState,
    /// Enqueued as a state item (coalescable).
    pub(crate) coalesce: bool,
}

/// The item a coalescable new state replaces the payload of, if any (see the module docs).
pub(crate) fn coalesce_into(newest: Option<Newest>) -> Option<ItemId> {
    newest
        .filter(|n| n.coalesce && n.state == ItemState::Pending)
        .map(|n| n.id)
}

/// The state a new item starts in: parked while it waits on a dependency, else pending.
pub(crate) fn initial_state(waits: bool) -> ItemState {
    if waits {
        ItemState::Parked
    } else {
        ItemState::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(coalesce: bool, waiting_on: &[(Kind, &str)]) -> NewItem {
        NewItem {
            dest: "shop".into(),
            kind: Kind::Order,
            key: "web/1".into(),
            op: "create".into(),
            payload: json!({}),
            hash: "h".into(),
            flow: "orders".into(),
            journal_id: None,
            captured_at: 0,
            waiting_on: waiting_on.iter().map(|(k, s)| (*k, (*s).into())).collect(),
            coalesce,
            not_before: 0,
        }
    }

    #[test]
    fn dependencies_are_looked_up_once_each_in_order() {
        let i = item(
            false,
            &[
                (Kind::Customer, "c1"),
                (Kind::Product, "A"),
                (Kind::Customer, "c1"),
                (Kind::Product, "c1"),
            ],
        );
        assert_eq!(
            dependencies(&i),
            [
                (Kind::Customer, "c1"),
                (Kind::Product, "A"),
                (Kind::Product, "c1")
            ]
        );
        assert!(dependencies(&item(false, &[])).is_empty());
    }

    #[test]
    fn coalescing_table() {
        use ItemState::*;
        let newest = |state, coalesce| {
            Some(Newest {
                id: 9,
                state,
                coalesce,
            })
        };
        let cases = [
            (None, None),
            (newest(Pending, true), Some(9)),
            (newest(Inflight, true), None),
            (newest(Parked, true), None),
            (newest(Pending, false), None),
            (newest(Done, true), None),
        ];
        for (n, want) in cases {
            assert_eq!(coalesce_into(n), want, "{n:?}");
        }
        assert!(may_coalesce(&item(true, &[]), false));
        assert!(
            !may_coalesce(&item(true, &[]), true),
            "a waiting item never absorbs"
        );
        assert!(
            !may_coalesce(&item(false, &[]), false),
            "commands are never coalesced"
        );
        assert_eq!(initial_state(true), Parked);
        assert_eq!(initial_state(false), Pending);
    }
}

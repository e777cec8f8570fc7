//! One processing step (`Store::apply`): the order in which a [`crate::ProcessBatch`]'s parts
//! are written, and how an entity remembers the versions it was built from.
//!
//! Must never: read or write storage. A backend writes the parts in [`ORDER`], all in one
//! transaction.

use std::collections::BTreeMap;

/// A part of a [`crate::ProcessBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The journal entries processed: status, note, resolved key (a `None` key keeps the one
    /// resolved earlier: processing never forgets a resolution).
    Journal,
    /// The entities' new states ([`entity_versions`]).
    Entities,
    /// Cross-references, inserted unless either side is mapped; each un-parks what waited on it.
    Xrefs,
    /// Outbox items ([`super::enqueue`]).
    Items,
    DeadLetters,
    /// ERP figures, as `Store::update_levels` applies them ([`crate::ledger::release`]).
    Levels,
    /// Dirty marks the step planned, cleared unless marked again since.
    Clean,
    /// Order lifecycle rows ([`super::lifecycle`]).
    Orders,
    /// Cancelled orders' reservations ([`crate::ledger::orders::cancel`]).
    CancelReservations,
    Audit,
}

/// The order of the parts. Why it matters: xrefs before items, so an item depending on a key
/// made known in this same batch is not parked; figures before clean marks, so a SKU this
/// batch's own figures changed stays dirty; the lifecycle before the reservations it cancels,
/// so a cancellation and its release commit together.
pub(crate) const ORDER: [Part; 10] = [
    Part::Journal,
    Part::Entities,
    Part::Xrefs,
    Part::Items,
    Part::DeadLetters,
    Part::Levels,
    Part::Clean,
    Part::Orders,
    Part::CancelReservations,
    Part::Audit,
];

/// The versions an entity was built from — the last applied version per source endpoint — after
/// applying `version` from `endpoint`.
pub(crate) fn entity_versions(
    mut stored: BTreeMap<String, String>,
    endpoint: &str,
    version: &str,
) -> BTreeMap<String, String> {
    stored.insert(endpoint.to_owned(), version.to_owned());
    stored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_is_applied_once_and_dependencies_come_first() {
        let at = |p: Part| ORDER.iter().position(|q| *q == p).unwrap();
        for p in ORDER {
            assert_eq!(ORDER.iter().filter(|q| **q == p).count(), 1, "{p:?}");
        }
        assert!(at(Part::Xrefs) < at(Part::Items));
        assert!(at(Part::Levels) < at(Part::Clean));
        assert!(at(Part::Orders) < at(Part::CancelReservations));
    }

    #[test]
    fn an_entity_keeps_the_last_version_per_endpoint() {
        let v = entity_versions(BTreeMap::new(), "erp", "3");
        let v = entity_versions(v, "shop", "h-1");
        let v = entity_versions(v, "erp", "2");
        assert_eq!(
            v.into_iter().collect::<Vec<_>>(),
            [("erp".into(), "2".into()), ("shop".into(), "h-1".into())],
            "the last applied, not the greatest: staleness is the engine's"
        );
    }
}

//! A delivery's outcome (`Store::settle`): the attempt it logs, and what a delivered item means
//! beyond itself — an order's acceptance by its destination, a create naming the key's record
//! there.
//!
//! Every settlement is conditional on its claim token (River's way): the backend applies one
//! only while its item is still in flight under that token, so a worker whose lease expired
//! settles nothing. Everything else a settlement writes happens in the same transaction.
//!
//! Must never: read or write storage.

use crate::{AuditEvent, ItemId, Settlement};
use concord_core::{Kind, Millis};

/// The item and the claim token a settlement is for.
pub(crate) fn target(outcome: &Settlement) -> (ItemId, i64) {
    match outcome {
        Settlement::Delivered { id, token, .. }
        | Settlement::Retry { id, token, .. }
        | Settlement::Dead { id, token, .. }
        | Settlement::Skipped { id, token, .. }
        | Settlement::AmendRefused { id, token, .. } => (*id, *token),
    }
}

/// One line of the delivery-attempt log (an order's history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attempt<'a> {
    /// `delivered`, `retry`, `dead`, `skipped` or `refused`.
    pub(crate) outcome: &'static str,
    /// When: the outcome's time; for a retry, when the attempt was claimed.
    pub(crate) at: Millis,
    pub(crate) error: Option<&'a str>,
}

/// The attempt an applied settlement logs; `claimed_at` is when its item was claimed.
pub(crate) fn attempt(outcome: &Settlement, claimed_at: Millis) -> Attempt<'_> {
    let (outcome, at, error) = match outcome {
        Settlement::Delivered { at, .. } => ("delivered", *at, None),
        Settlement::Retry { error, .. } => ("retry", claimed_at, Some(error.as_str())),
        Settlement::Dead { reason, at, .. } => ("dead", *at, Some(reason.as_str())),
        Settlement::Skipped { reason, at, .. } => ("skipped", *at, Some(reason.as_str())),
        Settlement::AmendRefused { reason, at, .. } => ("refused", *at, Some(reason.as_str())),
    };
    Attempt { outcome, at, error }
}

/// Does delivering an item of `kind` with `op` mean its destination now has the order — so its
/// reservations from there are accepted ([`crate::ledger::accept`]) and, for an endpoint other
/// than its channel, its lifecycle moves ([`super::lifecycle::accept`])? Not a cancel: the
/// ERP's figures after a cancel do not hold the order, and during cancel-and-replace the
/// replacement's create sets the watermark.
pub(crate) fn accepts_order(kind: &str, op: &str) -> bool {
    kind == Kind::Order.as_str() && op != "cancel"
}

/// Does a delivered item of `kind` with `op` name the key's record at its destination from now
/// on, replacing any other cross-reference of the key there? An order's create does: after
/// cancel-and-replace that is the replacement, not the cancelled original (a create that found
/// the existing order returns its id).
pub(crate) fn repoints_xref(kind: &str, op: &str) -> bool {
    kind == Kind::Order.as_str() && op == "create"
}

/// A skipped item's audit event (nothing to do at the destination).
pub(crate) struct Skipped<'a> {
    pub(crate) id: ItemId,
    pub(crate) dest: &'a str,
    pub(crate) kind: Kind,
    pub(crate) key: &'a str,
    pub(crate) op: &'a str,
    pub(crate) flow: &'a str,
    pub(crate) reason: &'a str,
    pub(crate) at: Millis,
}

impl Skipped<'_> {
    pub(crate) fn event(&self) -> AuditEvent {
        AuditEvent {
            at: self.at,
            event: "delivery.skipped".into(),
            endpoint: Some(self.dest.to_owned()),
            kind: Some(self.kind),
            key: Some(self.key.to_owned()),
            detail: serde_json::json!({
                "reason": self.reason,
                "item_id": self.id,
                "op": self.op,
                "flow": self.flow,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EditFallback;

    #[test]
    fn attempts_are_named_and_timed_by_outcome() {
        let err = "boom".to_string();
        let cases = [
            (
                Settlement::Delivered {
                    id: 1,
                    token: 2,
                    external_id: None,
                    version: None,
                    at: 10,
                },
                ("delivered", 10, None),
            ),
            (
                Settlement::Retry {
                    id: 1,
                    token: 2,
                    next_at: 99,
                    error: err.clone(),
                    count: true,
                },
                ("retry", 3, Some("boom")),
            ),
            (
                Settlement::Dead {
                    id: 1,
                    token: 2,
                    reason: err.clone(),
                    at: 11,
                },
                ("dead", 11, Some("boom")),
            ),
            (
                Settlement::Skipped {
                    id: 1,
                    token: 2,
                    reason: err.clone(),
                    at: 12,
                },
                ("skipped", 12, Some("boom")),
            ),
            (
                Settlement::AmendRefused {
                    id: 1,
                    token: 2,
                    reason: err.clone(),
                    fallback: EditFallback::Reject,
                    at: 13,
                },
                ("refused", 13, Some("boom")),
            ),
        ];
        for (s, (outcome, at, error)) in cases {
            assert_eq!(target(&s), (1, 2));
            assert_eq!(attempt(&s, 3), Attempt { outcome, at, error }, "{s:?}");
        }
    }

    #[test]
    fn only_an_order_delivered_other_than_cancelled_is_accepted() {
        let cases = [
            ("order", "create", true, true),
            ("order", "amend", true, false),
            ("order", "update", true, false),
            ("order", "upsert", true, false),
            ("order", "cancel", false, false),
            ("product", "create", false, false),
            ("shipment", "create", false, false),
        ];
        for (kind, op, accepts, repoints) in cases {
            assert_eq!(accepts_order(kind, op), accepts, "{kind} {op}");
            assert_eq!(repoints_xref(kind, op), repoints, "{kind} {op}");
        }
    }
}

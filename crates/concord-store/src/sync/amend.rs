//! An order's `amend` its destination cannot apply (`Settlement::AmendRefused`): the edit's
//! fallback (`[orders] edits`), planned inside the settlement's transaction, so a crash either
//! leaves the amend in flight (its lease expires, it is tried again) or has the fallback fully
//! planned — and the replacement number is never given out twice.
//!
//! - `reject`: the amend becomes an outbound dead letter with the reason; the order's history
//!   gets a refused `edit` event. The hub keeps the edited order; the destination the old one.
//! - `cancel_and_replace`: the refused item becomes the `cancel` of the order the destination
//!   has now (its current `reference`), and a `create` of the replacement `{key}~{n}` follows
//!   it (n = the replacements so far plus two), carrying the newest planned state of the order:
//!   later items of the key still waiting name the old reference, so they are folded in — the
//!   newest becomes the replacement, the others are done as superseded; a later `cancel` means
//!   no replacement at all. The facts take the new reference, an `edit` event says what
//!   happened, and the order's reservations are held again until the replacement is accepted
//!   ([`crate::ledger::orders::rehold`]).
//!
//! Must never: read or write storage, or change a payload beyond its `reference` and, for the
//! cancel, its `status`.

use crate::{EditFallback, ItemId, JournalId, NewItem, NewOrderEvent};
use concord_core::lifecycle::OrderFacts;
use concord_core::{content_hash, Kind, Millis};
use serde_json::Value;

/// The refused item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refused<'a> {
    pub(crate) id: ItemId,
    pub(crate) dest: &'a str,
    pub(crate) key: &'a str,
    pub(crate) flow: &'a str,
    pub(crate) journal_id: Option<JournalId>,
    pub(crate) captured_at: Millis,
    pub(crate) payload: Value,
    /// What the destination could not do.
    pub(crate) reason: &'a str,
    pub(crate) fallback: EditFallback,
    pub(crate) at: Millis,
}

/// A later item of the same (destination, kind, key), still pending or parked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Later {
    pub(crate) id: ItemId,
    pub(crate) op: String,
    pub(crate) payload: Value,
}

/// What to write.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// Dead-letter the refused item with `reason`; record `event` (when the order has a
    /// lifecycle row).
    Reject {
        reason: String,
        event: Option<NewOrderEvent>,
    },
    CancelAndReplace(Box<Replace>),
}

/// Cancel-and-replace, in the order to write it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Replace {
    /// Later items folded in: done, with `superseded_note` as their last error.
    pub(crate) superseded: Vec<ItemId>,
    pub(crate) superseded_note: String,
    /// The refused item becomes this `cancel` (pending again, due now, attempts reset, never
    /// coalesced, the refusal as its last error).
    pub(crate) cancel: Value,
    pub(crate) cancel_hash: String,
    /// `None` when the order is being cancelled anyway.
    pub(crate) replacement: Option<Replacement>,
    /// The key's planned hash at the destination afterwards.
    pub(crate) planned: String,
    pub(crate) event: Option<NewOrderEvent>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Replacement {
    /// `{key}~{n}`, and the order's replacement count with it (for its facts).
    pub(crate) reference: String,
    pub(crate) replacements: u32,
    pub(crate) item: ReplacementItem,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ReplacementItem {
    /// The newest later item becomes the replacement's `create` (never coalesced).
    Rewrite {
        id: ItemId,
        payload: Value,
        hash: String,
    },
    /// No later item: a new `create`, due at the refusal.
    Enqueue(NewItem),
}

/// Set (or, with `None`, remove) an order payload's `reference`.
fn set_reference(payload: &mut Value, reference: Option<&str>) {
    if let Some(obj) = payload.as_object_mut() {
        match reference {
            Some(r) => obj.insert("reference".into(), Value::String(r.to_string())),
            None => obj.remove("reference"),
        };
    }
}

/// Plan the fallback of `refused`, given the order's lifecycle row (its state and facts, if the
/// hub has one) and the later items of its key, oldest first.
pub(crate) fn plan(
    refused: &Refused<'_>,
    lifecycle: Option<&(String, OrderFacts)>,
    later: &[Later],
) -> Plan {
    let edit_event = |applied: bool, reason: String| {
        lifecycle.map(|(state, _)| NewOrderEvent {
            at: refused.at,
            from: Some(state.clone()),
            to: state.clone(),
            applied,
            event: "edit".into(),
            cause_kind: Some(Kind::Order),
            cause_key: Some(refused.key.to_owned()),
            reason: Some(reason),
            journal_id: refused.journal_id,
        })
    };
    let reason = refused.reason;
    if refused.fallback == EditFallback::Reject {
        let reason = format!(
            "{reason}; [orders] edits = \"reject\": the edit is not applied at `{}`, which keeps \
             the order as it was",
            refused.dest
        );
        return Plan::Reject {
            event: edit_event(false, reason.clone()),
            reason,
        };
    }
    let mut facts = lifecycle.map(|(_, f)| f.clone()).unwrap_or_default();
    // The replacement carries the newest state, unless the newest item cancels the order.
    let (newest_kept, replacement) = match later.last() {
        Some(l) if l.op == "cancel" => (None, None),
        Some(l) => (Some(l.id), Some(l.payload.clone())),
        None => (None, Some(refused.payload.clone())),
    };
    let superseded = later
        .iter()
        .map(|l| l.id)
        .filter(|id| Some(*id) != newest_kept)
        .collect();
    let superseded_note = format!(
        "superseded: `{}` could not amend the order; cancel-and-replace carries the newest state",
        refused.dest
    );
    // The refused item becomes the cancel of the order the destination has now.
    let old_reference = facts.reference.clone();
    let mut cancel = refused.payload.clone();
    set_reference(&mut cancel, old_reference.as_deref());
    if let Some(obj) = cancel.as_object_mut() {
        obj.insert("status".into(), Value::String("cancelled".into()));
    }
    let cancel_hash = content_hash(&cancel);
    let old = old_reference.unwrap_or_else(|| refused.key.to_owned());
    let (replacement, planned, event_reason) = match replacement {
        None => (
            None,
            cancel_hash.clone(),
            format!(
                "{reason}; [orders] edits = \"cancel_and_replace\": `{old}` is cancelled and, as \
                 the order is being cancelled, not replaced"
            ),
        ),
        Some(mut body) => {
            facts.replacements = facts.replacements.saturating_add(1);
            let reference = format!("{}~{}", refused.key, facts.replacements.saturating_add(1));
            set_reference(&mut body, Some(&reference));
            let hash = content_hash(&body);
            let item = match newest_kept {
                Some(id) => ReplacementItem::Rewrite {
                    id,
                    payload: body,
                    hash: hash.clone(),
                },
                None => ReplacementItem::Enqueue(NewItem {
                    dest: refused.dest.to_owned(),
                    kind: Kind::Order,
                    key: refused.key.to_owned(),
                    op: "create".into(),
                    payload: body,
                    hash: hash.clone(),
                    flow: refused.flow.to_owned(),
                    journal_id: refused.journal_id,
                    captured_at: refused.captured_at,
                    waiting_on: Vec::new(),
                    coalesce: false,
                    not_before: refused.at,
                }),
            };
            let event_reason = format!(
                "{reason}; [orders] edits = \"cancel_and_replace\": `{old}` is cancelled and \
                 replaced by `{reference}`"
            );
            (
                Some(Replacement {
                    reference,
                    replacements: facts.replacements,
                    item,
                }),
                hash,
                event_reason,
            )
        }
    };
    Plan::CancelAndReplace(Box::new(Replace {
        superseded,
        superseded_note,
        cancel,
        cancel_hash,
        replacement,
        planned,
        event: edit_event(true, event_reason),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(fallback: EditFallback) -> Refused<'static> {
        Refused {
            id: 10,
            dest: "erp",
            key: "web/1",
            flow: "orders",
            journal_id: Some(3),
            captured_at: 100,
            payload: json!({"lines": [{"sku": "A", "quantity": 2}]}),
            reason: "`erp` cannot amend a processing sale",
            fallback,
            at: 500,
        }
    }

    fn lifecycle(replacements: u32, reference: Option<&str>) -> (String, OrderFacts) {
        let facts = OrderFacts {
            replacements,
            reference: reference.map(Into::into),
            ..OrderFacts::default()
        };
        ("accepted".into(), facts)
    }

    fn replace(p: Plan) -> Replace {
        match p {
            Plan::CancelAndReplace(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reject_dead_letters_the_amend_and_records_a_refused_edit() {
        let Plan::Reject { reason, event } = plan(
            &refused(EditFallback::Reject),
            Some(&lifecycle(0, None)),
            &[],
        ) else {
            panic!("not rejected")
        };
        assert!(
            reason.contains("edits = \"reject\"") && reason.contains("`erp`"),
            "{reason}"
        );
        let event = event.unwrap();
        assert!(!event.applied);
        assert_eq!(
            (event.from.as_deref(), event.to.as_str()),
            (Some("accepted"), "accepted")
        );
        let Plan::Reject { event, .. } = plan(&refused(EditFallback::Reject), None, &[]) else {
            panic!("not rejected")
        };
        assert_eq!(event, None, "no lifecycle row, no event");
    }

    #[test]
    fn without_later_items_the_amend_becomes_the_cancel_and_a_new_create_follows() {
        let r = replace(plan(
            &refused(EditFallback::CancelAndReplace),
            Some(&lifecycle(1, Some("web/1~2"))),
            &[],
        ));
        assert_eq!(
            r.cancel,
            json!({"lines": [{"sku": "A", "quantity": 2}], "reference": "web/1~2", "status": "cancelled"}),
            "the cancel names the order the destination has now"
        );
        assert_eq!(r.cancel_hash, content_hash(&r.cancel));
        assert!(r.superseded.is_empty());
        let rep = r.replacement.unwrap();
        assert_eq!((rep.reference.as_str(), rep.replacements), ("web/1~3", 2));
        let ReplacementItem::Enqueue(item) = rep.item else {
            panic!("not enqueued")
        };
        assert_eq!(item.payload["reference"], "web/1~3");
        assert_eq!(
            (
                item.op.as_str(),
                item.coalesce,
                item.not_before,
                item.captured_at
            ),
            ("create", false, 500, 100)
        );
        assert_eq!(r.planned, item.hash);
        let event = r.event.unwrap();
        assert!(event.applied);
        assert!(event
            .reason
            .unwrap()
            .contains("`web/1~2` is cancelled and replaced by `web/1~3`"));
    }

    #[test]
    fn later_items_fold_into_the_replacement_or_a_later_cancel_ends_it() {
        let later = |id, op: &str, n| Later {
            id,
            op: op.into(),
            payload: json!({"n": n}),
        };
        let r = replace(plan(
            &refused(EditFallback::CancelAndReplace),
            None,
            &[later(11, "amend", 1), later(12, "amend", 2)],
        ));
        assert_eq!(r.superseded, [11]);
        assert!(r.superseded_note.starts_with("superseded: `erp`"));
        let rep = r.replacement.unwrap();
        assert_eq!(
            (rep.reference.as_str(), rep.replacements),
            ("web/1~2", 1),
            "the first replacement of an order without a row is ~2"
        );
        assert_eq!(
            rep.item,
            ReplacementItem::Rewrite {
                id: 12,
                payload: json!({"n": 2, "reference": "web/1~2"}),
                hash: content_hash(&json!({"n": 2, "reference": "web/1~2"})),
            }
        );
        assert_eq!(r.event, None);
        assert_eq!(
            r.cancel["reference"],
            Value::Null,
            "no reference yet: removed"
        );

        let r = replace(plan(
            &refused(EditFallback::CancelAndReplace),
            Some(&lifecycle(0, None)),
            &[later(11, "amend", 1), later(12, "cancel", 2)],
        ));
        assert_eq!(r.superseded, [11, 12], "both folded into the cancel");
        assert_eq!(r.replacement, None);
        assert_eq!(r.planned, r.cancel_hash);
        assert!(r.event.unwrap().reason.unwrap().contains("not replaced"));
    }
}

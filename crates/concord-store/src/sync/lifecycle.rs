//! The order lifecycle row as the store writes it: the ERP's acceptance learnt in a settlement,
//! a processing step's write that must keep what a settlement decided after the engine read
//! the row, and the replacement reference cancel-and-replace records.
//!
//! The engine derives and checks every status (`concord_core::lifecycle`); the store interprets
//! one thing only, because it learns it inside the settlement's transaction: an order delivered
//! (not cancelled) to an endpoint other than its channel was accepted by the ERP.
//!
//! Must never: read or write storage, derive or check a status beyond `placed → accepted`, or
//! touch facts other than `accepted`, `reference` and `replacements`.

use crate::NewOrderEvent;
use concord_core::lifecycle::OrderFacts;
use concord_core::Millis;
use serde_json::Value;

/// The row after the ERP's acceptance, and its event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Accepted {
    pub(crate) state: String,
    pub(crate) facts: Value,
    pub(crate) event: NewOrderEvent,
}

/// Is an order of `channel` (accepted at `accepted_at`, if it was) delivered, not cancelled, to
/// `dest` being accepted by the ERP now? Only the first delivery to an endpoint other than its
/// channel is; later ones, and deliveries to the channel itself, change nothing.
pub(crate) fn is_acceptance(channel: &str, accepted_at: Option<Millis>, dest: &str) -> bool {
    channel != dest && accepted_at.is_none()
}

/// The row of an order in `state` with `facts` once [`is_acceptance`] holds: `accepted` in the
/// facts, `placed → accepted`, and an `accepted` event.
pub(crate) fn accept(state: &str, mut facts: Value, dest: &str, at: Millis) -> Accepted {
    if let Some(obj) = facts.as_object_mut() {
        obj.insert("accepted".into(), Value::Bool(true));
    }
    let to = if state == "placed" { "accepted" } else { state };
    Accepted {
        event: NewOrderEvent {
            at,
            from: Some(state.to_owned()),
            to: to.to_owned(),
            applied: true,
            event: "accepted".into(),
            cause_kind: None,
            cause_key: None,
            reason: Some(format!("created at `{dest}`")),
            journal_id: None,
        },
        state: to.to_owned(),
        facts,
    }
}

/// A processing step writes `state` and `facts` over the stored row (`stored`: whether it was
/// accepted, and its facts). What a settlement decided after the engine read the row is kept:
/// an acceptance (`accepted` stays true, a derived `placed` becomes `accepted`) and a
/// cancel-and-replace (more `replacements` stored than written: the stored count and
/// `reference` win).
pub(crate) fn keep_settled(
    stored: Option<(bool, &Value)>,
    state: &str,
    facts: &Value,
) -> (String, Value) {
    let mut facts = facts.clone();
    let mut state = state.to_string();
    let Some((accepted, stored)) = stored else {
        return (state, facts);
    };
    let stored: OrderFacts = serde_json::from_value(stored.clone()).unwrap_or_default();
    let written: OrderFacts = serde_json::from_value(facts.clone()).unwrap_or_default();
    if let (true, Some(obj)) = (
        stored.replacements > written.replacements,
        facts.as_object_mut(),
    ) {
        obj.insert("replacements".into(), Value::from(stored.replacements));
        obj.insert("reference".into(), Value::from(stored.reference));
    }
    if accepted {
        if let Some(obj) = facts.as_object_mut() {
            obj.insert("accepted".into(), Value::Bool(true));
        }
        if state == "placed" {
            state = "accepted".into();
        }
    }
    (state, facts)
}

/// Stored facts with the ERP `reference` and `replacements` count cancel-and-replace gave the
/// order; the rest as it was.
pub(crate) fn with_replacement(mut facts: Value, reference: &str, replacements: u32) -> Value {
    if let Some(obj) = facts.as_object_mut() {
        obj.insert("reference".into(), Value::from(reference));
        obj.insert("replacements".into(), Value::from(replacements));
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_delivery_to_another_endpoint_accepts() {
        assert!(is_acceptance("web", None, "erp"));
        assert!(!is_acceptance("web", Some(1), "erp"), "once");
        assert!(!is_acceptance("web", None, "web"), "its channel");
        let a = accept("placed", json!({"accepted": false, "x": 1}), "erp", 5);
        assert_eq!(a.state, "accepted");
        assert_eq!(a.facts, json!({"accepted": true, "x": 1}));
        assert_eq!(
            (
                a.event.from.as_deref(),
                a.event.to.as_str(),
                a.event.event.as_str()
            ),
            (Some("placed"), "accepted", "accepted")
        );
        assert_eq!(a.event.reason.as_deref(), Some("created at `erp`"));
        assert_eq!(a.event.at, 5);
        let shipped = accept("shipped", json!({}), "erp", 5);
        assert_eq!(shipped.state, "shipped", "only placed moves");
        assert_eq!(accept("placed", json!(null), "erp", 5).facts, json!(null));
    }

    #[test]
    fn a_processing_write_keeps_what_a_settlement_decided() {
        let written = json!({"accepted": false, "replacements": 0, "n": 2});
        assert_eq!(
            keep_settled(None, "placed", &written),
            ("placed".to_string(), written.clone()),
            "a new row is written as it is"
        );
        let stored = json!({"accepted": true, "replacements": 2, "reference": "web/1~3"});
        let (state, facts) = keep_settled(Some((true, &stored)), "placed", &written);
        assert_eq!(state, "accepted");
        assert_eq!(
            facts,
            json!({"accepted": true, "replacements": 2, "reference": "web/1~3", "n": 2})
        );
        let (state, facts) = keep_settled(
            Some((false, &stored)),
            "shipped",
            &json!({"replacements": 2}),
        );
        assert_eq!(state, "shipped");
        assert_eq!(
            facts,
            json!({"replacements": 2}),
            "not more replacements: the write wins"
        );
        let (_, facts) = keep_settled(Some((false, &json!("garbage"))), "placed", &written);
        assert_eq!(facts, written, "undecodable stored facts keep nothing");
    }

    #[test]
    fn a_replacement_sets_reference_and_count_only() {
        assert_eq!(
            with_replacement(json!({"accepted": true}), "web/1~2", 1),
            json!({"accepted": true, "reference": "web/1~2", "replacements": 1})
        );
        assert_eq!(with_replacement(json!(null), "r", 1), json!(null));
    }
}

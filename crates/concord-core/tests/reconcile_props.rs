//! `concord_core::reconcile` over the whole domain of JSON records and key sets: every key of
//! the union is classified exactly once, in-flight keys are never drift, a destination holding
//! exactly what the hub expects has no drift, and the kind of drift follows where the key is.

use concord_core::reconcile::{compare, field_differences, same, Drift};
use proptest::prelude::*;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-e]{1,2}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn records() -> impl Strategy<Value = BTreeMap<String, Value>> {
    prop::collection::btree_map("[a-h]{1,2}", json(), 0..12)
}

proptest! {
    #[test]
    fn every_key_is_classified_once(
        expected in records(),
        actual in records(),
        flight in prop::collection::btree_set("[a-h]{1,2}", 0..8),
    ) {
        let c = compare(&expected, &actual, &flight);
        let union: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
        prop_assert_eq!(
            c.matching as usize + c.in_flight.len() + c.drifted.len(),
            union.len()
        );
        let mut seen = BTreeSet::new();
        for k in c.in_flight.iter().chain(c.drifted.iter().map(|d| &d.key)) {
            prop_assert!(seen.insert(k.clone()), "key {} classified twice", k);
            prop_assert!(union.contains(k));
        }
        for d in &c.drifted {
            prop_assert!(!flight.contains(&d.key), "in-flight key {} reported as drift", d.key);
            match &d.drift {
                Drift::Missing { expected: e } => {
                    prop_assert!(!actual.contains_key(&d.key));
                    prop_assert_eq!(Some(e), expected.get(&d.key));
                }
                Drift::Unknown { actual: a } => {
                    prop_assert!(!expected.contains_key(&d.key));
                    prop_assert_eq!(Some(a), actual.get(&d.key));
                }
                Drift::Different { fields } => {
                    prop_assert!(!fields.is_empty());
                    prop_assert!(expected.contains_key(&d.key) && actual.contains_key(&d.key));
                }
            }
        }
        prop_assert_eq!(c.expected as usize, expected.len());
        prop_assert_eq!(c.actual as usize, actual.len());
    }

    #[test]
    fn a_destination_holding_what_the_hub_expects_has_no_drift(expected in records()) {
        let c = compare(&expected, &expected, &BTreeSet::new());
        prop_assert!(c.drifted.is_empty());
        prop_assert_eq!(c.matching as usize, expected.len());
    }

    #[test]
    fn same_is_an_equivalence_on_what_it_compares(a in json(), b in json()) {
        prop_assert!(same(&a, &a));
        prop_assert_eq!(same(&a, &b), same(&b, &a));
        prop_assert!(field_differences(&a, &a).is_empty());
    }

    #[test]
    fn a_changed_field_is_reported_with_both_values(
        base in prop::collection::btree_map("[a-e]{1,2}", json(), 1..6),
        new in any::<i64>(),
        pick in any::<prop::sample::Index>(),
    ) {
        let expected = Value::Object(base.clone().into_iter().collect());
        let field = pick.get(&base.keys().cloned().collect::<Vec<_>>()).clone();
        let mut changed = base.clone();
        changed.insert(field.clone(), Value::from(new));
        let actual = Value::Object(changed.into_iter().collect());
        let diffs = field_differences(&expected, &actual);
        let old = &base[&field];
        if old.is_null() || same(old, &Value::from(new)) {
            prop_assert!(diffs.is_empty());
        } else {
            prop_assert_eq!(diffs.len(), 1);
            prop_assert_eq!(&diffs[0].field, &field);
            prop_assert_eq!(&diffs[0].expected, old);
            prop_assert_eq!(&diffs[0].actual, &Value::from(new));
        }
    }
}

//! Drift: the pure comparison of what a destination holds with what the hub says it should
//! hold, key by key (issue 16).
//!
//! The engine gathers three things for one (flow, destination) and hands them here:
//! - `expected`: per canonical key, the record the hub would write there now (its canonical
//!   state through the flow's filter and outbound mapping; for a pool channel's stock, the
//!   channel's available-to-sell);
//! - `actual`: per canonical key, the record the destination's own listing returned;
//! - `in_flight`: the keys with a delivery pending, parked or in progress (or a change not yet
//!   planned): the destination is about to change, so a difference there is not drift.
//!
//! [`compare`] classifies every key of the union exactly once: in agreement, in flight,
//! missing at the destination, unknown to the hub, or different (field, expected, actual).
//!
//! Fields are compared on what both sides say: a field of the expected record that the
//! destination's listing does not return at all is not compared (a listing need not echo every
//! field a write sends — a storefront stores `available`, not the hub's `incoming` lots), and
//! `null` counts as absent. Numbers are compared by value (`5` equals `5.0`); objects and
//! arrays as wholes, recursively under the same rules, except that inside them a key present
//! on one side only is a difference unless its value is `null`.
//!
//! Must never: read the store, a clock or a connector; decide what to heal (the engine plans the
//! corrective writes); treat an in-flight key as drift.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldDiff {
    /// The top-level field (`""` when the records themselves are not objects).
    pub field: String,
    pub expected: Value,
    pub actual: Value,
}

/// How one key drifted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "drift", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Drift {
    /// The hub says the destination should hold this record; it does not.
    Missing { expected: Value },
    /// The destination holds a record the hub does not know there (reported, never deleted).
    Unknown { actual: Value },
    /// Both have the key; these fields differ.
    Different { fields: Vec<FieldDiff> },
}

impl Drift {
    /// `missing`, `unknown` or `different`.
    pub fn label(&self) -> &'static str {
        match self {
            Drift::Missing { .. } => "missing",
            Drift::Unknown { .. } => "unknown",
            Drift::Different { .. } => "different",
        }
    }
}

/// One drifted key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyDrift {
    pub key: String,
    #[serde(flatten)]
    pub drift: Drift,
}

/// The outcome of [`compare`]: every key of `expected ∪ actual` is counted once, in `matching`,
/// `in_flight` or `drifted`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Comparison {
    /// Keys the hub expects at the destination.
    pub expected: u64,
    /// Keys the destination's listing returned.
    pub actual: u64,
    /// Keys on which both agree.
    pub matching: u64,
    /// Keys that disagree (or are absent on one side) but have a delivery on the way.
    pub in_flight: Vec<String>,
    /// Drift, by key (ascending).
    pub drifted: Vec<KeyDrift>,
}

impl Comparison {
    /// Drifted keys of one kind of drift.
    pub fn count(&self, label: &str) -> usize {
        self.drifted
            .iter()
            .filter(|d| d.drift.label() == label)
            .count()
    }
}

/// Classify every key (see the module docs).
pub fn compare(
    expected: &BTreeMap<String, Value>,
    actual: &BTreeMap<String, Value>,
    in_flight: &BTreeSet<String>,
) -> Comparison {
    let mut out = Comparison {
        expected: expected.len() as u64,
        actual: actual.len() as u64,
        ..Comparison::default()
    };
    let keys: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for key in keys {
        let drift = match (expected.get(key), actual.get(key)) {
            (Some(e), Some(a)) => {
                let fields = field_differences(e, a);
                if fields.is_empty() {
                    out.matching += 1;
                    continue;
                }
                Drift::Different { fields }
            }
            (Some(e), None) => Drift::Missing {
                expected: e.clone(),
            },
            (None, Some(a)) => Drift::Unknown { actual: a.clone() },
            (None, None) => continue,
        };
        if in_flight.contains(key) {
            out.in_flight.push(key.clone());
        } else {
            out.drifted.push(KeyDrift {
                key: key.clone(),
                drift,
            });
        }
    }
    out
}

/// The fields of `expected` that `actual` also carries (not `null`) and that differ, in field
/// order. Records that are not both objects are compared whole (field `""`).
pub fn field_differences(expected: &Value, actual: &Value) -> Vec<FieldDiff> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .filter(|(_, ev)| !ev.is_null())
            .filter_map(|(field, ev)| {
                let av = a.get(field).filter(|v| !v.is_null())?;
                (!same(ev, av)).then(|| FieldDiff {
                    field: field.clone(),
                    expected: ev.clone(),
                    actual: av.clone(),
                })
            })
            .collect(),
        (e, a) if same(e, a) => Vec::new(),
        (e, a) => vec![FieldDiff {
            field: String::new(),
            expected: e.clone(),
            actual: a.clone(),
        }],
    }
}

/// Equal as data: numbers by value, objects ignoring `null` members, arrays element by element.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            let present = |m: &serde_json::Map<String, Value>| {
                m.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, _)| k.clone())
                    .collect::<BTreeSet<String>>()
            };
            present(x) == present(y)
                && x.iter()
                    .filter(|(_, v)| !v.is_null())
                    .all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn every_kind_of_drift_is_found_and_in_flight_keys_are_not_drift() {
        let expected = map(&[
            ("A@S", json!({"sku": "A", "on_hand": 5, "committed": 0})),
            ("B@S", json!({"sku": "B", "on_hand": 3, "committed": 0})),
            ("C@S", json!({"sku": "C", "on_hand": 1, "committed": 0})),
            ("D@S", json!({"sku": "D", "on_hand": 9, "committed": 0})),
            ("F@S", json!({"sku": "F", "on_hand": 2, "committed": 0})),
        ]);
        let actual = map(&[
            ("A@S", json!({"sku": "A", "on_hand": 5.0, "committed": 0})),
            ("B@S", json!({"sku": "B", "on_hand": 7, "committed": 0})),
            ("D@S", json!({"sku": "D", "on_hand": 4, "committed": 0})),
            ("E@S", json!({"sku": "E", "on_hand": 2, "committed": 0})),
        ]);
        let in_flight: BTreeSet<String> = ["D@S".to_string(), "F@S".to_string()].into();
        let c = compare(&expected, &actual, &in_flight);
        assert_eq!((c.expected, c.actual, c.matching), (5, 4, 1));
        assert_eq!(c.in_flight, vec!["D@S", "F@S"]);
        assert_eq!(
            c.drifted,
            vec![
                KeyDrift {
                    key: "B@S".into(),
                    drift: Drift::Different {
                        fields: vec![FieldDiff {
                            field: "on_hand".into(),
                            expected: json!(3),
                            actual: json!(7)
                        }]
                    }
                },
                KeyDrift {
                    key: "C@S".into(),
                    drift: Drift::Missing {
                        expected: json!({"sku": "C", "on_hand": 1, "committed": 0})
                    }
                },
                KeyDrift {
                    key: "E@S".into(),
                    drift: Drift::Unknown {
                        actual: json!({"sku": "E", "on_hand": 2, "committed": 0})
                    }
                },
            ]
        );
        assert_eq!(
            (c.count("different"), c.count("missing"), c.count("unknown")),
            (1, 1, 1)
        );
        let text = serde_json::to_value(&c.drifted[0]).unwrap();
        assert_eq!(text["drift"], "different");
        assert_eq!(text["fields"][0]["field"], "on_hand");
    }

    #[test]
    fn fields_the_destination_does_not_return_are_not_compared() {
        let e = json!({"sku": "A", "on_hand": 5, "incoming": [{"quantity": 2}], "name": null});
        assert!(field_differences(&e, &json!({"sku": "A", "on_hand": 5})).is_empty());
        assert!(
            field_differences(&e, &json!({"sku": "A", "on_hand": 5, "incoming": null})).is_empty()
        );
        // Present and different inside a nested value: a difference of the whole field.
        let d = field_differences(
            &json!({"tiers": [{"min": 1, "price": 100}]}),
            &json!({"tiers": [{"min": 1, "price": 90}]}),
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].field, "tiers");
        // Not objects: compared whole.
        assert_eq!(field_differences(&json!(1), &json!(2))[0].field, "");
        assert!(field_differences(&json!("x"), &json!("x")).is_empty());
    }

    #[test]
    fn same_compares_numbers_by_value_and_ignores_null_members() {
        assert!(same(&json!(5), &json!(5.0)));
        assert!(same(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!same(&json!(u64::MAX), &json!(-1)));
        assert!(!same(&json!(1), &json!("1")));
        assert!(same(&json!({"a": 1, "b": null}), &json!({"a": 1.0})));
        assert!(!same(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!same(&json!([1, 2]), &json!([2, 1])));
    }
}

//! Field-ownership merge: the hub's latest canonical state of an entity, updated by a change
//! from one endpoint. Each top-level field has at most one owner (its system of record); a change
//! from a non-owner to an owned field is ignored and reported as a conflict. Pure; never I/O.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Which endpoint owns which top-level field of one kind. `default` owns every field not listed;
/// `None` means anyone may write it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    pub default: Option<String>,
    pub fields: BTreeMap<String, String>,
}

impl Ownership {
    pub fn owner(&self, field: &str) -> Option<&str> {
        self.fields
            .get(field)
            .or(self.default.as_ref())
            .map(String::as_str)
    }
}

/// A field a non-owner tried to change.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub field: String,
    pub owner: String,
    pub attempted: Value,
    pub kept: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MergeOutcome {
    /// The merged state.
    pub state: Value,
    /// Whether `state` differs from the previous one.
    pub changed: bool,
    pub conflicts: Vec<Conflict>,
}

/// Merge `incoming` (a validated canonical record from `source`) into `current`.
///
/// On creation (no current state) every field is taken: the record must be complete, and the
/// owner's next change overwrites what a non-owner seeded. On update, fields owned by another
/// endpoint keep their current value; fields absent from `incoming` are kept.
pub fn merge(
    current: Option<&Value>,
    incoming: &Value,
    source: &str,
    ownership: &Ownership,
) -> MergeOutcome {
    let Some(Value::Object(cur)) = current else {
        return MergeOutcome {
            state: incoming.clone(),
            changed: true,
            conflicts: Vec::new(),
        };
    };
    let Value::Object(inc) = incoming else {
        return MergeOutcome {
            state: Value::Object(cur.clone()),
            changed: false,
            conflicts: Vec::new(),
        };
    };
    let mut out: Map<String, Value> = cur.clone();
    let mut conflicts = Vec::new();
    for (field, value) in inc {
        match ownership.owner(field) {
            Some(owner) if owner != source => {
                let kept = cur.get(field).cloned().unwrap_or(Value::Null);
                if &kept != value {
                    conflicts.push(Conflict {
                        field: field.clone(),
                        owner: owner.to_string(),
                        attempted: value.clone(),
                        kept,
                    });
                }
            }
            _ => {
                out.insert(field.clone(), value.clone());
            }
        }
    }
    let changed = &out != cur;
    MergeOutcome {
        state: Value::Object(out),
        changed,
        conflicts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn own() -> Ownership {
        Ownership {
            default: Some("erp".into()),
            fields: [("description".to_string(), "web".to_string())].into(),
        }
    }

    #[test]
    fn creation_takes_everything() {
        let m = merge(None, &json!({"sku": "A", "name": "x"}), "web", &own());
        assert!(m.changed && m.conflicts.is_empty());
        assert_eq!(m.state["name"], "x");
    }

    #[test]
    fn non_owner_changes_are_conflicts_owner_changes_apply() {
        let cur = json!({"sku": "A", "name": "Erp name", "description": "old"});
        let m = merge(
            Some(&cur),
            &json!({"sku": "A", "name": "Web name", "description": "new"}),
            "web",
            &own(),
        );
        assert!(m.changed);
        assert_eq!(
            m.state,
            json!({"sku": "A", "name": "Erp name", "description": "new"})
        );
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(m.conflicts[0].field, "name");
        assert_eq!(m.conflicts[0].owner, "erp");
    }

    #[test]
    fn echo_of_the_same_state_is_no_change() {
        let cur = json!({"sku": "A", "name": "n", "description": "d"});
        let m = merge(Some(&cur), &cur.clone(), "web", &own());
        assert!(!m.changed && m.conflicts.is_empty());
        let m = merge(Some(&cur), &cur.clone(), "erp", &Ownership::default());
        assert!(!m.changed);
    }
}

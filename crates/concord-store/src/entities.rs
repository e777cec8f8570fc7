//! Types of the hub's canonical state: an entity's latest state with the versions it was built
//! from, and the cross-references (xref) between external ids and canonical keys.
//!
//! Only what is stored and read: merging and correlation are the engine's.

use concord_core::{Kind, Millis};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The hub's latest canonical state of one entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub kind: Kind,
    pub key: String,
    pub state: Value,
    pub hash: String,
    /// Last applied version per source endpoint (for staleness checks).
    pub versions: std::collections::BTreeMap<String, String>,
    pub updated_at: Millis,
}

/// A write of an entity's new state, with the source version that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityWrite {
    pub kind: Kind,
    pub key: String,
    pub state: Value,
    pub hash: String,
    pub endpoint: String,
    pub version: String,
    pub at: Millis,
}

/// Cross-reference: `external_id` at `endpoint` is the entity (`kind`, `key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xref {
    pub endpoint: String,
    pub kind: Kind,
    pub external_id: String,
    pub key: String,
}

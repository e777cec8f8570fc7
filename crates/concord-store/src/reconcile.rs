//! Stored reconciliation runs (issue 16): when, why, the counts, and the engine's full report
//! (the drifted keys with their differences, what was healed) as opaque JSON.
//!
//! Must never interpret the report: comparing and healing are the engine's
//! (`concord_engine::runtime::reconcile`).

use concord_core::Millis;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A run to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewReconcileRun {
    pub started_at: Millis,
    pub finished_at: Millis,
    /// `cli`, `api`, `schedule`.
    pub trigger: String,
    pub heal: bool,
    /// Drifted keys over every check.
    pub drifted: u64,
    /// Keys a corrective write was planned (or a figure journaled) for.
    pub healed: u64,
    /// Checks that could not finish.
    pub errors: u64,
    /// The engine's report.
    pub report: Value,
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredReconcileRun {
    pub id: i64,
    pub started_at: Millis,
    pub finished_at: Millis,
    pub trigger: String,
    pub heal: bool,
    pub drifted: u64,
    pub healed: u64,
    pub errors: u64,
    /// The engine's report; `null` in listings (`Store::reconcile_runs`).
    pub report: Value,
}

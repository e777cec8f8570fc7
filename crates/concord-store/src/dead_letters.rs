//! Types of the dead-letter queue: what could not be accepted, processed or delivered, with
//! the reason and the payload, its state (open, replayed, dropped), the operator's filter, and
//! what a replay does (decided by the engine).

use crate::{Capture, DeadLetterId, ItemId, JournalId, NewItem};
use concord_core::{Kind, Millis};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Direction {
    /// A captured record that could not be accepted or processed.
    Inbound,
    /// An outbox item that could not be delivered.
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DeadLetterState {
    Open,
    Replayed,
    Dropped,
}

/// A dead letter opened during processing (not from an outbox item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDeadLetter {
    pub direction: Direction,
    pub endpoint: String,
    pub kind: Kind,
    /// Canonical key when known, else the external id.
    pub key: String,
    pub payload: Value,
    pub reason: String,
    pub journal_id: Option<JournalId>,
    /// The flow whose filter or mapping failed (outbound, while planning): a replay re-plans
    /// through it, never around it.
    #[serde(default)]
    pub flow: Option<String>,
    pub at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetter {
    pub id: DeadLetterId,
    pub direction: Direction,
    /// Destination (outbound) or source (inbound) endpoint.
    pub endpoint: String,
    pub kind: Kind,
    pub key: String,
    pub op: Option<String>,
    pub flow: Option<String>,
    pub payload: Value,
    pub reason: String,
    pub attempts: u32,
    pub journal_id: Option<JournalId>,
    pub item_id: Option<ItemId>,
    pub state: DeadLetterState,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterFilter {
    pub endpoint: Option<String>,
    pub kind: Option<Kind>,
    /// Default: only `Open`.
    pub state: Option<DeadLetterState>,
    /// Only dead letters with this key (exact match). Default: any key.
    pub key: Option<String>,
    pub limit: Option<usize>,
}

/// What to do with a dead letter on replay (decided by the engine).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Replay {
    /// Enqueue this outbox item.
    Outbound(NewItem),
    /// Journal this capture again.
    Inbound(Capture),
}

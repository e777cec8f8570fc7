//! Types of the outbox (design §2): items to enqueue, items as stored and claimed, and the
//! outcome of a delivery attempt (a settlement), including an edit's fallback when its `amend`
//! is refused.
//!
//! Only what is stored and read: coalescing and settlement decisions are `sync`'s, delivery the
//! engine's.

use crate::{ItemId, JournalId};
use concord_core::{Kind, Millis};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ItemState {
    Pending,
    Inflight,
    /// Waiting for dependencies (`waiting_on`) to become known at the destination.
    Parked,
    Done,
    Dead,
}

/// An outbox item to enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewItem {
    pub dest: String,
    pub kind: Kind,
    pub key: String,
    /// What to do at the destination (`upsert`, `create`, `update`, `cancel`, …); connectors
    /// interpret it.
    pub op: String,
    /// The record in the destination's shape (after the outbound mapping).
    pub payload: Value,
    pub hash: String,
    pub flow: String,
    pub journal_id: Option<JournalId>,
    /// When the originating change was captured (for lag).
    pub captured_at: Millis,
    /// Dependencies not yet known at `dest`: when non-empty the item is parked.
    pub waiting_on: Vec<(Kind, String)>,
    /// State kinds: replace the payload of a pending (not in-flight) item of the same
    /// (dest, kind, key) instead of adding one. Command kinds: false, always appended in order.
    pub coalesce: bool,
    /// Earliest time to deliver.
    pub not_before: Millis,
}

/// An outbox item as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutboxItem {
    pub id: ItemId,
    pub dest: String,
    pub kind: Kind,
    pub key: String,
    pub op: String,
    pub payload: Value,
    pub hash: String,
    pub flow: String,
    pub journal_id: Option<JournalId>,
    pub captured_at: Millis,
    pub state: ItemState,
    /// Failed attempts so far (those that counted).
    pub attempts: u32,
    pub next_at: Millis,
    pub last_error: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<String>>))]
    pub waiting_on: Vec<(Kind, String)>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// An item handed to a delivery worker; settle it with the same `token`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claimed {
    pub item: OutboxItem,
    pub token: i64,
}

/// The outcome of a delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Settlement {
    /// Written. Records the written hash for (dest, kind, key) and, when given, the xref
    /// (dest, kind, external_id) ⇄ key — which also un-parks items waiting on it.
    Delivered {
        id: ItemId,
        token: i64,
        external_id: Option<String>,
        /// The destination's version of the written record, when its API tells. For an order
        /// delivered to the endpoint reservations are `source`d from, this marks them accepted
        /// (see [`crate::Store::update_levels`]) and releases at once their lines whose position's
        /// stored figure has a version comparable with, and newer than, this one (the ERP's
        /// figure can arrive before the settlement; the same figure again releases nothing).
        version: Option<String>,
        at: Millis,
    },
    /// Try again at `next_at`. `count` says whether this failure counts as an attempt (a probe
    /// failing against an open breaker does not).
    Retry {
        id: ItemId,
        token: i64,
        next_at: Millis,
        error: String,
        count: bool,
    },
    /// Permanent failure: the item moves to the dead-letter queue with the reason; the planned
    /// hash of (dest, kind, key) falls back to the written one so a later equal state is resent.
    Dead {
        id: ItemId,
        token: i64,
        reason: String,
        at: Millis,
    },
    /// Nothing to do at the destination (e.g. correlation found no match); done without a write.
    Skipped {
        id: ItemId,
        token: i64,
        reason: String,
        at: Millis,
    },
    /// An order's `amend` the destination answered "cannot amend this order" (nothing was
    /// written there): the edit takes `fallback`, decided in this same transaction, so a crash
    /// either leaves the amend in flight (its lease expires and it is tried again) or has the
    /// fallback fully planned. `reason` names the destination and what it could not do.
    AmendRefused {
        id: ItemId,
        token: i64,
        reason: String,
        fallback: EditFallback,
        at: Millis,
    },
}

/// What becomes of an edit whose `amend` the destination cannot apply (`[orders] edits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EditFallback {
    /// The amend becomes an outbound dead letter with the reason; the order's history gets a
    /// refused `edit` event. The hub keeps the edited order; the destination keeps the old one.
    Reject,
    /// Cancel-and-replace: the refused item becomes a `cancel` of the order's current
    /// reference and a `create` of the replacement `"{key}~{n}"` follows it (n is the order's
    /// replacements so far plus two), carrying the newest planned state of the order (a later
    /// item of the key still waiting is absorbed into it; a later `cancel` means no
    /// replacement). The order's lifecycle facts take the new reference and an `edit` event
    /// says what happened.
    CancelAndReplace,
}

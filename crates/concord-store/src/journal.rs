//! Types of the journal (design §2): captured changes as they are journaled, the cursors moved
//! with them, and journal entries as the engine and the admin API read them.
//!
//! Only what is stored and read: deduplication is `sync::journal`'s, staleness the engine's.

use crate::JournalId;
use concord_core::{Kind, Millis};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A change captured from an endpoint, ready to be journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capture {
    pub endpoint: String,
    pub kind: Kind,
    /// The record's id at the endpoint.
    pub external_id: String,
    /// The source's version of the record (a sequence number or `updated_at`), or its content
    /// hash when the source has none. A capture whose version equals the last one journaled for
    /// the same (endpoint, kind, external_id) is a duplicate.
    pub version: String,
    /// The validated canonical record (or, when `rejected`, the raw record as received).
    pub payload: Value,
    pub received_at: Millis,
    /// Why the record was refused at capture (validation). A rejected capture is journaled with
    /// status `rejected` and dead-lettered (inbound) in the same transaction; never processed.
    pub rejected: Option<String>,
}

/// A cursor position to store atomically with a batch of captures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorUpdate {
    pub endpoint: String,
    /// Which feed of the endpoint (`"stock"`, `"order:snapshot"`, …).
    pub stream: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IngestOutcome {
    Stored(JournalId),
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum JournalStatus {
    /// Stored, not yet processed.
    Pending,
    /// Processed (the note says what came of it: applied, unchanged, stale, conflict, no flow).
    Processed,
    /// Refused at capture or at processing; a dead letter holds it.
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JournalEntry {
    pub id: JournalId,
    pub endpoint: String,
    pub kind: Kind,
    pub external_id: String,
    pub version: String,
    pub payload: Value,
    pub received_at: Millis,
    pub status: JournalStatus,
    pub note: Option<String>,
    /// Canonical key once resolved.
    pub key: Option<String>,
}

/// A journal search (the admin API). Every filter is optional; results are newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalQuery {
    pub endpoint: Option<String>,
    pub kind: Option<Kind>,
    /// Canonical key (resolved entries only).
    pub key: Option<String>,
    pub status: Option<JournalStatus>,
    /// `received_at >= from`.
    pub from: Option<Millis>,
    /// `received_at < to`.
    pub to: Option<Millis>,
    /// Paging: only entries with a smaller id (pass the last id of the previous page).
    pub before_id: Option<JournalId>,
    pub limit: usize,
}

//! Mapping between the store's Rust types and their SQLite column encodings.
//!
//! Enums are stored as their snake_case names, kinds as `Kind::as_str()`, JSON as TEXT. Anything
//! read back goes through a checked conversion: this module must never panic on what the database
//! holds — a bad value is a [`StoreError::Decode`].

use crate::{
    DeadLetter, DeadLetterState, Direction, ItemState, JournalEntry, JournalStatus, OutboxItem,
    StoreError, StoredAudit,
};
use concord_core::Kind;
use rusqlite::{Connection, Row};
use serde_json::Value;

pub(crate) fn db(what: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Db(format!("{what}: {e}"))
}

pub(crate) fn decode_err(what: impl std::fmt::Display) -> StoreError {
    StoreError::Decode(what.to_string())
}

pub(crate) fn kind(s: &str) -> Result<Kind, StoreError> {
    s.parse::<Kind>().map_err(decode_err)
}

pub(crate) fn json(s: &str) -> Result<Value, StoreError> {
    serde_json::from_str(s).map_err(|e| decode_err(format_args!("json: {e}")))
}

pub(crate) fn to_json(v: &Value) -> String {
    // Serialising a `Value` cannot fail: its keys are strings and it holds no non-finite floats.
    v.to_string()
}

/// A `usize` limit as SQLite's LIMIT operand (`-1` = none is never needed: saturate instead).
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn count(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| decode_err(format_args!("negative count {n}")))
}

pub(crate) fn attempts(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| decode_err(format_args!("attempts out of range: {n}")))
}

pub(crate) fn journal_status_str(s: JournalStatus) -> &'static str {
    match s {
        JournalStatus::Pending => "pending",
        JournalStatus::Processed => "processed",
        JournalStatus::Rejected => "rejected",
    }
}

pub(crate) fn journal_status(s: &str) -> Result<JournalStatus, StoreError> {
    match s {
        "pending" => Ok(JournalStatus::Pending),
        "processed" => Ok(JournalStatus::Processed),
        "rejected" => Ok(JournalStatus::Rejected),
        other => Err(decode_err(format_args!("journal status `{other}`"))),
    }
}

pub(crate) fn item_state_str(s: ItemState) -> &'static str {
    match s {
        ItemState::Pending => "pending",
        ItemState::Inflight => "inflight",
        ItemState::Parked => "parked",
        ItemState::Done => "done",
        ItemState::Dead => "dead",
    }
}

pub(crate) fn item_state(s: &str) -> Result<ItemState, StoreError> {
    match s {
        "pending" => Ok(ItemState::Pending),
        "inflight" => Ok(ItemState::Inflight),
        "parked" => Ok(ItemState::Parked),
        "done" => Ok(ItemState::Done),
        "dead" => Ok(ItemState::Dead),
        other => Err(decode_err(format_args!("item state `{other}`"))),
    }
}

pub(crate) fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

pub(crate) fn direction(s: &str) -> Result<Direction, StoreError> {
    match s {
        "inbound" => Ok(Direction::Inbound),
        "outbound" => Ok(Direction::Outbound),
        other => Err(decode_err(format_args!("dead-letter direction `{other}`"))),
    }
}

pub(crate) fn dl_state_str(s: DeadLetterState) -> &'static str {
    match s {
        DeadLetterState::Open => "open",
        DeadLetterState::Replayed => "replayed",
        DeadLetterState::Dropped => "dropped",
    }
}

pub(crate) fn dl_state(s: &str) -> Result<DeadLetterState, StoreError> {
    match s {
        "open" => Ok(DeadLetterState::Open),
        "replayed" => Ok(DeadLetterState::Replayed),
        "dropped" => Ok(DeadLetterState::Dropped),
        other => Err(decode_err(format_args!("dead-letter state `{other}`"))),
    }
}

// ---- rows ----
//
// Rows are first read raw (rusqlite's own type checks), then decoded outside the row callback so
// that our decode errors keep their type instead of being squeezed into a rusqlite error.

pub(crate) const JOURNAL_COLS: &str =
    "id, endpoint, kind, external_id, version, payload, received_at, status, note, key";

type RawJournal = (
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
);

pub(crate) fn raw_journal(r: &Row<'_>) -> rusqlite::Result<RawJournal> {
    r.try_into()
}

pub(crate) fn journal_entry(raw: RawJournal) -> Result<JournalEntry, StoreError> {
    let (id, endpoint, k, external_id, version, payload, received_at, status, note, key) = raw;
    Ok(JournalEntry {
        id,
        endpoint,
        kind: kind(&k)?,
        external_id,
        version,
        payload: json(&payload)?,
        received_at,
        status: journal_status(&status)?,
        note,
        key,
    })
}

pub(crate) const ITEM_COLS: &str = "id, dest, kind, key, op, payload, hash, flow, journal_id, \
     captured_at, state, attempts, next_at, last_error, created_at, updated_at";

pub(crate) struct RawItem {
    id: i64,
    dest: String,
    kind: String,
    key: String,
    op: String,
    payload: String,
    hash: String,
    flow: String,
    journal_id: Option<i64>,
    captured_at: i64,
    state: String,
    attempts: i64,
    next_at: i64,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

pub(crate) fn raw_item(r: &Row<'_>) -> rusqlite::Result<RawItem> {
    Ok(RawItem {
        id: r.get(0)?,
        dest: r.get(1)?,
        kind: r.get(2)?,
        key: r.get(3)?,
        op: r.get(4)?,
        payload: r.get(5)?,
        hash: r.get(6)?,
        flow: r.get(7)?,
        journal_id: r.get(8)?,
        captured_at: r.get(9)?,
        state: r.get(10)?,
        attempts: r.get(11)?,
        next_at: r.get(12)?,
        last_error: r.get(13)?,
        created_at: r.get(14)?,
        updated_at: r.get(15)?,
    })
}

/// Decode an item and load the dependencies it still waits on.
pub(crate) fn outbox_item(conn: &Connection, raw: RawItem) -> Result<OutboxItem, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT kind, key FROM outbox_deps WHERE item_id = ?1 ORDER BY seq")
        .map_err(db("prepare item dependencies"))?;
    let deps = stmt
        .query_map([raw.id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(db("read item dependencies"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db("read item dependencies"))?;
    let waiting_on = deps
        .into_iter()
        .map(|(k, key)| Ok((kind(&k)?, key)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(OutboxItem {
        id: raw.id,
        dest: raw.dest,
        kind: kind(&raw.kind)?,
        key: raw.key,
        op: raw.op,
        payload: json(&raw.payload)?,
        hash: raw.hash,
        flow: raw.flow,
        journal_id: raw.journal_id,
        captured_at: raw.captured_at,
        state: item_state(&raw.state)?,
        attempts: attempts(raw.attempts)?,
        next_at: raw.next_at,
        last_error: raw.last_error,
        waiting_on,
        created_at: raw.created_at,
        updated_at: raw.updated_at,
    })
}

pub(crate) const DL_COLS: &str = "id, direction, endpoint, kind, key, op, flow, payload, reason, \
     attempts, journal_id, item_id, state, created_at, updated_at";

pub(crate) struct RawDeadLetter {
    id: i64,
    direction: String,
    endpoint: String,
    kind: String,
    key: String,
    op: Option<String>,
    flow: Option<String>,
    payload: String,
    reason: String,
    attempts: i64,
    journal_id: Option<i64>,
    item_id: Option<i64>,
    state: String,
    created_at: i64,
    updated_at: i64,
}

pub(crate) fn raw_dead_letter(r: &Row<'_>) -> rusqlite::Result<RawDeadLetter> {
    Ok(RawDeadLetter {
        id: r.get(0)?,
        direction: r.get(1)?,
        endpoint: r.get(2)?,
        kind: r.get(3)?,
        key: r.get(4)?,
        op: r.get(5)?,
        flow: r.get(6)?,
        payload: r.get(7)?,
        reason: r.get(8)?,
        attempts: r.get(9)?,
        journal_id: r.get(10)?,
        item_id: r.get(11)?,
        state: r.get(12)?,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
    })
}

pub(crate) fn dead_letter(raw: RawDeadLetter) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        id: raw.id,
        direction: direction(&raw.direction)?,
        endpoint: raw.endpoint,
        kind: kind(&raw.kind)?,
        key: raw.key,
        op: raw.op,
        flow: raw.flow,
        payload: json(&raw.payload)?,
        reason: raw.reason,
        attempts: attempts(raw.attempts)?,
        journal_id: raw.journal_id,
        item_id: raw.item_id,
        state: dl_state(&raw.state)?,
        created_at: raw.created_at,
        updated_at: raw.updated_at,
    })
}

type RawAudit = (
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

pub(crate) fn raw_audit(r: &Row<'_>) -> rusqlite::Result<RawAudit> {
    r.try_into()
}

pub(crate) fn stored_audit(raw: RawAudit) -> Result<StoredAudit, StoreError> {
    let (id, at, event, endpoint, k, key, detail) = raw;
    Ok(StoredAudit {
        id,
        event: crate::AuditEvent {
            at,
            event,
            endpoint,
            kind: k.as_deref().map(kind).transpose()?,
            key,
            detail: json(&detail)?,
        },
    })
}

pub(crate) fn reservation_state_str(s: crate::ReservationState) -> &'static str {
    use crate::ReservationState as S;
    match s {
        S::Held => "held",
        S::Committed => "committed",
        S::Released => "released",
        S::Expired => "expired",
        S::Cancelled => "cancelled",
    }
}

pub(crate) fn reservation_state(s: &str) -> Result<crate::ReservationState, StoreError> {
    use crate::ReservationState as S;
    match s {
        "held" => Ok(S::Held),
        "committed" => Ok(S::Committed),
        "released" => Ok(S::Released),
        "expired" => Ok(S::Expired),
        "cancelled" => Ok(S::Cancelled),
        other => Err(decode_err(format_args!("reservation state `{other}`"))),
    }
}

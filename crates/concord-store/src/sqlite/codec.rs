//! Mapping between the store's Rust types and their SQLite column encodings.
//!
//! Enums are stored as their snake_case names, kinds as `Kind::as_str()`, JSON as TEXT. Anything
//! read back goes through a checked conversion: this module must never panic on what the database
//! holds — a bad value is a [`StoreError::Decode`].

use crate::{DeadLetter, JournalEntry, OutboxItem, StoreError, StoredAudit};
use rusqlite::{Connection, Row};

pub(crate) fn db(what: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Db(format!("{what}: {e}"))
}

pub(crate) use crate::codec::{
    attempts, count, decode_err, direction, direction_str, dl_state, dl_state_str, item_state,
    item_state_str, journal_status, journal_status_str, json, kind, limit, reservation_state,
    reservation_state_str, to_json,
};

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

//! Mapping between the store's Rust types and their PostgreSQL columns, and the one mapping of
//! database errors onto [`StoreError`].
//!
//! The encodings themselves are the shared `crate::codec`'s (re-exported here), so both backends
//! store the same text. Rows are read with checked getters (`try_get`): this module must never
//! panic on what the database holds — a bad value is a [`StoreError::Decode`].

use crate::{DeadLetter, JournalEntry, OutboxItem, StoreError, StoredAudit};
use tokio_postgres::error::SqlState;
use tokio_postgres::{GenericClient, Row};

// The whole shared set, for this module and the ledger module alike.
#[allow(unused_imports)]
pub(crate) use crate::codec::{
    attempts, count, decode_err, direction, direction_str, dl_state, dl_state_str, item_state,
    item_state_str, journal_status, journal_status_str, json, kind, limit, reservation_state,
    reservation_state_str, to_json,
};

/// A database error in words: the server's message and SQLSTATE when it sent one.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} (SQLSTATE {})", d.message(), d.code().code()),
        None => e.to_string(),
    }
}

/// Is this the server aborting a transaction because of a concurrent one (the transaction
/// helper retries those)?
pub(crate) fn is_conflict(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Is this the server out of reach: refused, reset or closed connection, I/O, the server
/// shutting down or not accepting connections (SQLSTATE class 08, 57P01-57P03)?
pub(crate) fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if let Some(d) = e.as_db_error() {
        let code = d.code().code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    e.is_closed()
        || std::error::Error::source(e)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
}

/// Map a tokio-postgres error, naming what was being done: a serialization failure (40001) or a
/// deadlock (40P01) becomes [`StoreError::Conflict`] (retried by the transaction helper), the
/// server out of reach [`StoreError::Unavailable`], anything else [`StoreError::Db`].
pub(crate) fn db(what: &str) -> impl FnOnce(tokio_postgres::Error) -> StoreError + '_ {
    move |e| {
        let message = format!("{what}: {}", describe(&e));
        if is_conflict(&e) {
            StoreError::Conflict(message)
        } else if is_unavailable(&e) {
            StoreError::Unavailable(message)
        } else {
            StoreError::Db(message)
        }
    }
}

/// A column of a row, type-checked: a mismatch is a decode error, never a panic.
pub(crate) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    idx: usize,
) -> Result<T, StoreError> {
    row.try_get(idx)
        .map_err(|e| decode_err(format_args!("column {idx}: {e}")))
}

pub(crate) const JOURNAL_COLS: &str =
    "id, endpoint, kind, external_id, version, payload, received_at, status, note, key";

/// A journal entry from a row of [`JOURNAL_COLS`].
pub(crate) fn journal_entry(r: &Row) -> Result<JournalEntry, StoreError> {
    Ok(JournalEntry {
        id: get(r, 0)?,
        endpoint: get(r, 1)?,
        kind: kind(get(r, 2)?)?,
        external_id: get(r, 3)?,
        version: get(r, 4)?,
        payload: json(get(r, 5)?)?,
        received_at: get(r, 6)?,
        status: journal_status(get(r, 7)?)?,
        note: get(r, 8)?,
        key: get(r, 9)?,
    })
}

pub(crate) const ITEM_COLS: &str = "id, dest, kind, key, op, payload, hash, flow, journal_id, \
     captured_at, state, attempts, next_at, last_error, created_at, updated_at";

/// An outbox item from a row of [`ITEM_COLS`], with the dependencies it still waits on (one
/// more query on `client`). (The ledger module's `parked` reads items one by one.)
#[allow(dead_code)]
pub(crate) async fn outbox_item<C: GenericClient + Sync>(
    client: &C,
    r: &Row,
) -> Result<OutboxItem, StoreError> {
    let mut items = outbox_items(client, std::slice::from_ref(r)).await?;
    items
        .pop()
        .ok_or_else(|| decode_err("outbox item: no row decoded"))
}

/// Outbox items from rows of [`ITEM_COLS`] (in their order), with the dependencies each still
/// waits on: one more query for all of them.
pub(crate) async fn outbox_items<C: GenericClient + Sync>(
    client: &C,
    rows: &[Row],
) -> Result<Vec<OutboxItem>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = rows
        .iter()
        .map(|r| get::<i64>(r, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let deps = client
        .query(
            "SELECT item_id, kind, key FROM outbox_deps WHERE item_id = ANY($1)
             ORDER BY item_id, seq",
            &[&ids],
        )
        .await
        .map_err(db("read item dependencies"))?;
    let mut waiting: std::collections::HashMap<i64, Vec<(concord_core::Kind, String)>> =
        std::collections::HashMap::new();
    for d in &deps {
        waiting
            .entry(get(d, 0)?)
            .or_default()
            .push((kind(get(d, 1)?)?, get(d, 2)?));
    }
    rows.iter()
        .zip(ids)
        .map(|(r, id)| item_from(r, waiting.remove(&id).unwrap_or_default()))
        .collect()
}

/// An outbox item from a row of [`ITEM_COLS`] and the dependencies it waits on.
fn item_from(
    r: &Row,
    waiting_on: Vec<(concord_core::Kind, String)>,
) -> Result<OutboxItem, StoreError> {
    Ok(OutboxItem {
        id: get(r, 0)?,
        dest: get(r, 1)?,
        kind: kind(get(r, 2)?)?,
        key: get(r, 3)?,
        op: get(r, 4)?,
        payload: json(get(r, 5)?)?,
        hash: get(r, 6)?,
        flow: get(r, 7)?,
        journal_id: get(r, 8)?,
        captured_at: get(r, 9)?,
        state: item_state(get(r, 10)?)?,
        attempts: attempts(get(r, 11)?)?,
        next_at: get(r, 12)?,
        last_error: get(r, 13)?,
        waiting_on,
        created_at: get(r, 14)?,
        updated_at: get(r, 15)?,
    })
}

pub(crate) const DL_COLS: &str = "id, direction, endpoint, kind, key, op, flow, payload, reason, \
     attempts, journal_id, item_id, state, created_at, updated_at";

/// A dead letter from a row of [`DL_COLS`].
pub(crate) fn dead_letter(r: &Row) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        id: get(r, 0)?,
        direction: direction(get(r, 1)?)?,
        endpoint: get(r, 2)?,
        kind: kind(get(r, 3)?)?,
        key: get(r, 4)?,
        op: get(r, 5)?,
        flow: get(r, 6)?,
        payload: json(get(r, 7)?)?,
        reason: get(r, 8)?,
        attempts: attempts(get(r, 9)?)?,
        journal_id: get(r, 10)?,
        item_id: get(r, 11)?,
        state: dl_state(get(r, 12)?)?,
        created_at: get(r, 13)?,
        updated_at: get(r, 14)?,
    })
}

pub(crate) const AUDIT_COLS: &str = "id, at, event, endpoint, kind, key, detail";

/// A stored audit event from a row of [`AUDIT_COLS`].
pub(crate) fn stored_audit(r: &Row) -> Result<StoredAudit, StoreError> {
    let k: Option<&str> = get(r, 4)?;
    Ok(StoredAudit {
        id: get(r, 0)?,
        event: crate::AuditEvent {
            at: get(r, 1)?,
            event: get(r, 2)?,
            endpoint: get(r, 3)?,
            kind: k.map(kind).transpose()?,
            key: get(r, 5)?,
            detail: json(get(r, 6)?)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused connection is the store unavailable (the engine waits it out instead of
    /// blaming what it was writing); no server needed.
    #[tokio::test]
    async fn a_refused_connection_is_unavailable() {
        // Port 1 on loopback: nothing listens there.
        let err = tokio_postgres::connect(
            "host=127.0.0.1 port=1 user=postgres connect_timeout=5",
            tokio_postgres::NoTls,
        )
        .await
        .err()
        .expect("nothing listens on port 1");
        assert!(
            matches!(db("connect")(err), StoreError::Unavailable(m) if m.starts_with("connect: ")),
        );
    }
}

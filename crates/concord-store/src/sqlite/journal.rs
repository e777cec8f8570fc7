//! Ingest on SQLite (`Store::ingest`): captures journaled — duplicates dropped as
//! [`crate::sync::journal`] says, rejected ones dead-lettered — and the cursor moved, in the
//! job's one transaction.
//!
//! Runs on the writer thread inside the job's savepoint; must never open, commit or roll back
//! a transaction itself (the savepoint is all-or-nothing), and never decide what a duplicate is.

use super::codec::{self, db, to_json};
use super::dead_letters::insert_dead_letter;
use crate::sync::journal;
use crate::{Capture, CursorUpdate, IngestOutcome, JournalId, Result};
use rusqlite::{params, Connection, OptionalExtension};

pub(crate) fn ingest(
    conn: &Connection,
    captures: &[Capture],
    cursor: Option<&CursorUpdate>,
) -> Result<Vec<IngestOutcome>> {
    let mut outcomes = Vec::with_capacity(captures.len());
    for capture in captures {
        outcomes.push(match journal_capture(conn, capture, true)? {
            Some(id) => IngestOutcome::Stored(id),
            None => IngestOutcome::Duplicate,
        });
    }
    if let Some(c) = cursor {
        conn.prepare_cached(
            "INSERT INTO cursors (endpoint, stream, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (endpoint, stream) DO UPDATE SET value = excluded.value",
        )
        .and_then(|mut s| s.execute(params![c.endpoint, c.stream, c.value]))
        .map_err(db("store cursor"))?;
    }
    Ok(outcomes)
}

/// Journal one capture. With `dedupe`, a duplicate of the last capture journaled for its record
/// is not stored (`None`); a replay asked for by the operator is journaled regardless.
pub(crate) fn journal_capture(
    conn: &Connection,
    c: &Capture,
    dedupe: bool,
) -> Result<Option<JournalId>> {
    let kind = c.kind.as_str();
    if dedupe {
        let last: Option<String> = conn
            .prepare_cached(
                "SELECT version FROM inbox_last
                 WHERE endpoint = ?1 AND kind = ?2 AND external_id = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![c.endpoint, kind, c.external_id], |r| r.get(0))
                    .optional()
            })
            .map_err(db("read last journaled version"))?;
        if journal::is_duplicate(last.as_deref(), c) {
            return Ok(None);
        }
    }
    conn.prepare_cached(
        "INSERT INTO journal (endpoint, kind, external_id, version, payload, received_at, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            c.endpoint,
            kind,
            c.external_id,
            c.version,
            to_json(&c.payload),
            c.received_at,
            codec::journal_status_str(journal::status(c))
        ])
    })
    .map_err(db("insert journal entry"))?;
    let id = conn.last_insert_rowid();
    conn.prepare_cached(
        "INSERT INTO inbox_last (endpoint, kind, external_id, version) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (endpoint, kind, external_id) DO UPDATE SET version = excluded.version",
    )
    .and_then(|mut s| s.execute(params![c.endpoint, kind, c.external_id, c.version]))
    .map_err(db("update last journaled version"))?;
    if let Some(dead) = journal::rejection(c, id) {
        insert_dead_letter(conn, &dead)?;
    }
    Ok(Some(id))
}

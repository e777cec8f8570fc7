//! Ingest on PostgreSQL (`Store::ingest`): captures journaled — duplicates dropped as
//! [`crate::sync::journal`] says, rejected ones dead-lettered — and the cursor moved, in the
//! caller's one transaction.
//!
//! The dedupe holds across instances sharing the database: the `inbox_last` row of a record is
//! claimed first (inserted, or locked `FOR UPDATE` when it exists), so two ingests of one record
//! are decided one after the other, each on the other's committed outcome. Must never open,
//! commit or roll back a transaction itself, and never decide what a duplicate is.

use super::codec::{self, db, get, to_json};
use super::dead_letters::insert_dead_letter;
use crate::sync::journal;
use crate::{Capture, CursorUpdate, IngestOutcome, JournalId, Result};
use tokio_postgres::Transaction;

pub(crate) async fn ingest(
    tx: &Transaction<'_>,
    captures: &[Capture],
    cursor: Option<&CursorUpdate>,
) -> Result<Vec<IngestOutcome>> {
    let mut outcomes = Vec::with_capacity(captures.len());
    for capture in captures {
        outcomes.push(match journal_capture(tx, capture, true).await? {
            Some(id) => IngestOutcome::Stored(id),
            None => IngestOutcome::Duplicate,
        });
    }
    if let Some(c) = cursor {
        tx.execute(
            "INSERT INTO cursors (endpoint, stream, value) VALUES ($1, $2, $3)
             ON CONFLICT (endpoint, stream) DO UPDATE SET value = excluded.value",
            &[&c.endpoint, &c.stream, &c.value],
        )
        .await
        .map_err(db("store cursor"))?;
    }
    Ok(outcomes)
}

/// Journal one capture. With `dedupe`, a duplicate of the last capture journaled for its record
/// is not stored (`None`); a replay asked for by the operator is journaled regardless.
pub(crate) async fn journal_capture(
    tx: &Transaction<'_>,
    c: &Capture,
    dedupe: bool,
) -> Result<Option<JournalId>> {
    let kind = c.kind.as_str();
    // Claim the record's dedupe row: a first capture inserts it (a concurrent first capture
    // waits on the primary key until this transaction ends, then finds it); otherwise lock it.
    let inserted = tx
        .execute(
            "INSERT INTO inbox_last (endpoint, kind, external_id, version) VALUES ($1, $2, $3, $4)
             ON CONFLICT (endpoint, kind, external_id) DO NOTHING",
            &[&c.endpoint, &kind, &c.external_id, &c.version],
        )
        .await
        .map_err(db("claim last journaled version"))?
        > 0;
    if !inserted {
        let row = tx
            .query_one(
                "SELECT version FROM inbox_last
                 WHERE endpoint = $1 AND kind = $2 AND external_id = $3 FOR UPDATE",
                &[&c.endpoint, &kind, &c.external_id],
            )
            .await
            .map_err(db("read last journaled version"))?;
        let last: String = get(&row, 0)?;
        if dedupe && journal::is_duplicate(Some(&last), c) {
            return Ok(None);
        }
        tx.execute(
            "UPDATE inbox_last SET version = $4
             WHERE endpoint = $1 AND kind = $2 AND external_id = $3",
            &[&c.endpoint, &kind, &c.external_id, &c.version],
        )
        .await
        .map_err(db("update last journaled version"))?;
    }
    // A record seen for the first time is never a duplicate (`is_duplicate(None, _)`).
    let row = tx
        .query_one(
            "INSERT INTO journal (endpoint, kind, external_id, version, payload, received_at,
                 status)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &c.endpoint,
                &kind,
                &c.external_id,
                &c.version,
                &to_json(&c.payload),
                &c.received_at,
                &codec::journal_status_str(journal::status(c)),
            ],
        )
        .await
        .map_err(db("insert journal entry"))?;
    let id: JournalId = get(&row, 0)?;
    if let Some(dead) = journal::rejection(c, id) {
        insert_dead_letter(tx, &dead).await?;
    }
    Ok(Some(id))
}

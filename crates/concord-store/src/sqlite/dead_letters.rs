//! Dead letters on SQLite: opened (by ingest, `apply` and a failed delivery), replayed once and
//! dropped — each only while `open`.
//!
//! Runs on the writer thread inside the job's savepoint; must never open, commit or roll back a
//! transaction itself. What a replay enqueues or journals is the engine's decision
//! (`Replay`); claiming the dead letter first makes a repeated id, or a concurrent replay, a
//! no-op.

use super::codec::{self, db, to_json};
use super::enqueue::enqueue;
use super::journal::journal_capture;
use crate::{DeadLetterId, NewDeadLetter, Replay, Result};
use concord_core::Millis;
use rusqlite::{params, Connection};

pub(crate) fn insert_dead_letter(conn: &Connection, dl: &NewDeadLetter) -> Result<DeadLetterId> {
    conn.prepare_cached(
        "INSERT INTO dead_letters (direction, endpoint, kind, key, payload, reason, attempts,
             journal_id, flow, state, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?9, 'open', ?8, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            codec::direction_str(dl.direction),
            dl.endpoint,
            dl.kind.as_str(),
            dl.key,
            to_json(&dl.payload),
            dl.reason,
            dl.journal_id,
            dl.at,
            dl.flow
        ])
    })
    .map_err(db("insert dead letter"))?;
    Ok(conn.last_insert_rowid())
}

pub(crate) fn replay_dead_letters(
    conn: &Connection,
    replays: &[(DeadLetterId, Replay)],
    now: Millis,
) -> Result<Vec<DeadLetterId>> {
    let mut replayed = Vec::new();
    for (id, replay) in replays {
        // Claiming the dead letter first makes a repeated id (or a concurrent replay) a no-op.
        let changed = conn
            .prepare_cached(
                "UPDATE dead_letters SET state = 'replayed', updated_at = ?2
                 WHERE id = ?1 AND state = 'open'",
            )
            .and_then(|mut s| s.execute(params![id, now]))
            .map_err(db("mark dead letter replayed"))?;
        if changed == 0 {
            continue;
        }
        match replay {
            Replay::Outbound(item) => {
                enqueue(conn, item, now)?;
            }
            Replay::Inbound(capture) => {
                // The operator asked for it again: the inbox dedupe must not swallow it.
                journal_capture(conn, capture, false)?;
            }
        }
        replayed.push(*id);
    }
    Ok(replayed)
}

pub(crate) fn drop_dead_letters(
    conn: &Connection,
    ids: &[DeadLetterId],
    now: Millis,
) -> Result<Vec<DeadLetterId>> {
    let mut dropped = Vec::new();
    for id in ids {
        let changed = conn
            .prepare_cached(
                "UPDATE dead_letters SET state = 'dropped', updated_at = ?2
                 WHERE id = ?1 AND state = 'open'",
            )
            .and_then(|mut s| s.execute(params![id, now]))
            .map_err(db("drop dead letter"))?;
        if changed > 0 {
            dropped.push(*id);
        }
    }
    Ok(dropped)
}

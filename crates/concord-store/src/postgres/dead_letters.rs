//! Dead letters on PostgreSQL: opened (by ingest, `apply` and a failed delivery), replayed once
//! and dropped — each only while `open`.
//!
//! Runs inside the caller's transaction; must never open, commit or roll back one itself. What a
//! replay enqueues or journals is the engine's decision (`Replay`); claiming the dead letter
//! first (a conditional UPDATE, which also locks its row) makes a repeated id, or a concurrent
//! replay from another instance, a no-op.

use super::codec::{self, db, get, to_json};
use super::enqueue::enqueue;
use super::journal::journal_capture;
use crate::{DeadLetterId, NewDeadLetter, Replay, Result};
use concord_core::Millis;
use tokio_postgres::Transaction;

pub(crate) async fn insert_dead_letter(
    tx: &Transaction<'_>,
    dl: &NewDeadLetter,
) -> Result<DeadLetterId> {
    let row = tx
        .query_one(
            "INSERT INTO dead_letters (direction, endpoint, kind, key, payload, reason, attempts,
                 journal_id, flow, state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $9, 'open', $8, $8) RETURNING id",
            &[
                &codec::direction_str(dl.direction),
                &dl.endpoint,
                &dl.kind.as_str(),
                &dl.key,
                &to_json(&dl.payload),
                &dl.reason,
                &dl.journal_id,
                &dl.at,
                &dl.flow,
            ],
        )
        .await
        .map_err(db("insert dead letter"))?;
    get(&row, 0)
}

pub(crate) async fn replay_dead_letters(
    tx: &Transaction<'_>,
    replays: &[(DeadLetterId, Replay)],
    now: Millis,
) -> Result<Vec<DeadLetterId>> {
    let mut replayed = Vec::new();
    for (id, replay) in replays {
        let changed = tx
            .execute(
                "UPDATE dead_letters SET state = 'replayed', updated_at = $2
                 WHERE id = $1 AND state = 'open'",
                &[id, &now],
            )
            .await
            .map_err(db("mark dead letter replayed"))?;
        if changed == 0 {
            continue;
        }
        match replay {
            Replay::Outbound(item) => {
                enqueue(tx, item, now).await?;
            }
            Replay::Inbound(capture) => {
                // The operator asked for it again: the inbox dedupe must not swallow it.
                journal_capture(tx, capture, false).await?;
            }
        }
        replayed.push(*id);
    }
    Ok(replayed)
}

pub(crate) async fn drop_dead_letters(
    tx: &Transaction<'_>,
    ids: &[DeadLetterId],
    now: Millis,
) -> Result<Vec<DeadLetterId>> {
    let mut dropped = Vec::new();
    for id in ids {
        let changed = tx
            .execute(
                "UPDATE dead_letters SET state = 'dropped', updated_at = $2
                 WHERE id = $1 AND state = 'open'",
                &[id, &now],
            )
            .await
            .map_err(db("drop dead letter"))?;
        if changed > 0 {
            dropped.push(*id);
        }
    }
    Ok(dropped)
}

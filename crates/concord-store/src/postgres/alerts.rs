//! Alert episodes on PostgreSQL (table `alert_episodes`): opened, updated, resolved and marked
//! notified as the engine observes; listed for the API and the notifier.
//!
//! The partial unique index `alert_open (rule, subject) WHERE resolved_at IS NULL` keeps one
//! open episode per (rule, subject) even when several instances observe together: opening is
//! one `INSERT … ON CONFLICT … DO UPDATE`. This module must never decide whether a condition
//! holds; it only records what the engine observed. (The oversold-risk listing is the ledger
//! module's: `PgStore::ledger_oversold_positions`.)

use super::codec::{self, db, get};
use crate::alerts::{AlertEpisode, AlertId, AlertNotice, AlertObservation};
use crate::Result;
use concord_core::Millis;
use tokio_postgres::{GenericClient, Row, Transaction};

const COLS: &str = "id, rule, subject, since, resolved_at, value, summary, notified_firing,
                    notified_resolved, updated_at";

fn episode(r: &Row) -> Result<AlertEpisode> {
    Ok(AlertEpisode {
        id: get(r, 0)?,
        rule: get(r, 1)?,
        subject: get(r, 2)?,
        since: get(r, 3)?,
        resolved_at: get(r, 4)?,
        value: get(r, 5)?,
        summary: get(r, 6)?,
        notified_firing: get::<i64>(r, 7)? != 0,
        notified_resolved: get::<i64>(r, 8)? != 0,
        updated_at: get(r, 9)?,
    })
}

pub(crate) async fn observe(
    tx: &Transaction<'_>,
    o: &AlertObservation,
    now: Millis,
) -> Result<AlertEpisode> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO alert_episodes (rule, subject, since, value, summary, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (rule, subject) WHERE resolved_at IS NULL
                 DO UPDATE SET value = excluded.value, summary = excluded.summary,
                     updated_at = excluded.updated_at
                 RETURNING {COLS}"
            ),
            &[&o.rule, &o.subject, &o.since, &o.value, &o.summary, &now],
        )
        .await
        .map_err(db("observe alert episode"))?;
    episode(&row)
}

pub(crate) async fn resolve(
    tx: &Transaction<'_>,
    rule: &str,
    subject: &str,
    now: Millis,
) -> Result<Option<AlertEpisode>> {
    tx.query_opt(
        &format!(
            "UPDATE alert_episodes SET resolved_at = $3, updated_at = $3
             WHERE rule = $1 AND subject = $2 AND resolved_at IS NULL
             RETURNING {COLS}"
        ),
        &[&rule, &subject, &now],
    )
    .await
    .map_err(db("resolve alert episode"))?
    .as_ref()
    .map(episode)
    .transpose()
}

pub(crate) async fn mark_notified(
    tx: &Transaction<'_>,
    id: AlertId,
    notice: AlertNotice,
    now: Millis,
) -> Result<bool> {
    let sql = match notice {
        AlertNotice::Firing => {
            "UPDATE alert_episodes SET notified_firing = 1, updated_at = $2
             WHERE id = $1 AND notified_firing = 0"
        }
        AlertNotice::Resolved => {
            "UPDATE alert_episodes SET notified_resolved = 1, updated_at = $2
             WHERE id = $1 AND notified_resolved = 0 AND resolved_at IS NOT NULL"
        }
    };
    let n = tx
        .execute(sql, &[&id, &now])
        .await
        .map_err(db("mark alert notified"))?;
    Ok(n > 0)
}

pub(crate) async fn episodes<C: GenericClient + Sync>(
    c: &C,
    open_only: bool,
    limit: usize,
) -> Result<Vec<AlertEpisode>> {
    let sql = if open_only {
        format!(
            "SELECT {COLS} FROM alert_episodes WHERE resolved_at IS NULL
             ORDER BY since DESC, id DESC LIMIT $1"
        )
    } else {
        format!(
            "SELECT {COLS} FROM alert_episodes
             ORDER BY resolved_at IS NOT NULL, COALESCE(resolved_at, since) DESC, id DESC
             LIMIT $1"
        )
    };
    c.query(&sql, &[&codec::limit(limit)])
        .await
        .map_err(db("list alert episodes"))?
        .iter()
        .map(episode)
        .collect()
}

pub(crate) async fn unnotified<C: GenericClient + Sync>(
    c: &C,
    limit: usize,
) -> Result<Vec<AlertEpisode>> {
    c.query(
        &format!(
            "SELECT {COLS} FROM alert_episodes
             WHERE notified_firing = 0 OR (resolved_at IS NOT NULL AND notified_resolved = 0)
             ORDER BY id LIMIT $1"
        ),
        &[&codec::limit(limit)],
    )
    .await
    .map_err(db("list unnotified alert episodes"))?
    .iter()
    .map(episode)
    .collect()
}

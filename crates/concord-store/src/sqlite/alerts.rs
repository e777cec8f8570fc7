//! Alert episodes in SQLite (table `alert_episodes`, created by its own migration in `schema.rs`) and the ledger query the
//! oversold-risk rule needs. Writes run on the single writer; reads on the reader pool.
//!
//! The partial unique index `alert_open (rule, subject) WHERE resolved_at IS NULL` is what keeps
//! one open episode per (rule, subject) even if two evaluations raced. This module must never
//! decide whether a condition holds; it only records what the engine observed.

use super::codec::{self, db};
use crate::alerts::{AlertEpisode, AlertId, AlertNotice, AlertObservation};
use crate::{Result, StockLevel};
use concord_core::Millis;
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLS: &str = "id, rule, subject, since, resolved_at, value, summary, notified_firing,
                    notified_resolved, updated_at";

fn episode(r: &Row<'_>) -> rusqlite::Result<AlertEpisode> {
    Ok(AlertEpisode {
        id: r.get(0)?,
        rule: r.get(1)?,
        subject: r.get(2)?,
        since: r.get(3)?,
        resolved_at: r.get(4)?,
        value: r.get(5)?,
        summary: r.get(6)?,
        notified_firing: r.get::<_, i64>(7)? != 0,
        notified_resolved: r.get::<_, i64>(8)? != 0,
        updated_at: r.get(9)?,
    })
}

fn open_episode(conn: &Connection, rule: &str, subject: &str) -> Result<Option<AlertEpisode>> {
    conn.prepare_cached(&format!(
        "SELECT {COLS} FROM alert_episodes
         WHERE rule = ?1 AND subject = ?2 AND resolved_at IS NULL"
    ))
    .and_then(|mut s| s.query_row(params![rule, subject], episode).optional())
    .map_err(db("read open alert episode"))
}

pub(crate) fn observe(
    conn: &Connection,
    o: &AlertObservation,
    now: Millis,
) -> Result<AlertEpisode> {
    if let Some(open) = open_episode(conn, &o.rule, &o.subject)? {
        conn.prepare_cached(
            "UPDATE alert_episodes SET value = ?2, summary = ?3, updated_at = ?4 WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![open.id, o.value, o.summary, now]))
        .map_err(db("update alert episode"))?;
        return Ok(AlertEpisode {
            value: o.value,
            summary: o.summary.clone(),
            updated_at: now,
            ..open
        });
    }
    conn.prepare_cached(
        "INSERT INTO alert_episodes (rule, subject, since, value, summary, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| s.execute(params![o.rule, o.subject, o.since, o.value, o.summary, now]))
    .map_err(db("open alert episode"))?;
    Ok(AlertEpisode {
        id: conn.last_insert_rowid(),
        rule: o.rule.clone(),
        subject: o.subject.clone(),
        since: o.since,
        resolved_at: None,
        value: o.value,
        summary: o.summary.clone(),
        notified_firing: false,
        notified_resolved: false,
        updated_at: now,
    })
}

pub(crate) fn resolve(
    conn: &Connection,
    rule: &str,
    subject: &str,
    now: Millis,
) -> Result<Option<AlertEpisode>> {
    let Some(open) = open_episode(conn, rule, subject)? else {
        return Ok(None);
    };
    conn.prepare_cached(
        "UPDATE alert_episodes SET resolved_at = ?2, updated_at = ?2
         WHERE id = ?1 AND resolved_at IS NULL",
    )
    .and_then(|mut s| s.execute(params![open.id, now]))
    .map_err(db("resolve alert episode"))?;
    Ok(Some(AlertEpisode {
        resolved_at: Some(now),
        updated_at: now,
        ..open
    }))
}

pub(crate) fn mark_notified(
    conn: &Connection,
    id: AlertId,
    notice: AlertNotice,
    now: Millis,
) -> Result<bool> {
    let sql = match notice {
        AlertNotice::Firing => {
            "UPDATE alert_episodes SET notified_firing = 1, updated_at = ?2
             WHERE id = ?1 AND notified_firing = 0"
        }
        AlertNotice::Resolved => {
            "UPDATE alert_episodes SET notified_resolved = 1, updated_at = ?2
             WHERE id = ?1 AND notified_resolved = 0 AND resolved_at IS NOT NULL"
        }
    };
    let n = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.execute(params![id, now]))
        .map_err(db("mark alert notified"))?;
    Ok(n > 0)
}

pub(crate) fn episodes(
    conn: &Connection,
    open_only: bool,
    limit: usize,
) -> Result<Vec<AlertEpisode>> {
    let sql = if open_only {
        format!(
            "SELECT {COLS} FROM alert_episodes WHERE resolved_at IS NULL
             ORDER BY since DESC, id DESC LIMIT ?1"
        )
    } else {
        format!(
            "SELECT {COLS} FROM alert_episodes
             ORDER BY resolved_at IS NOT NULL, COALESCE(resolved_at, since) DESC, id DESC
             LIMIT ?1"
        )
    };
    conn.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map([codec::limit(limit)], episode)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("list alert episodes"))
}

pub(crate) fn unnotified(conn: &Connection, limit: usize) -> Result<Vec<AlertEpisode>> {
    conn.prepare_cached(&format!(
        "SELECT {COLS} FROM alert_episodes
         WHERE notified_firing = 0 OR (resolved_at IS NOT NULL AND notified_resolved = 0)
         ORDER BY id LIMIT ?1"
    ))
    .and_then(|mut s| {
        s.query_map([codec::limit(limit)], episode)?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(db("list unnotified alert episodes"))
}

/// Positions whose ERP on-hand is below what is committed plus held, sorted by SKU, location.
/// The SQL condition only pre-selects SKUs (SQLite would compute an overflowing difference as
/// a REAL, which still compares); the exact test is `Position::free`, in Rust.
pub(crate) fn oversold_positions(conn: &Connection, limit: usize) -> Result<Vec<StockLevel>> {
    let skus: Vec<String> = conn
        .prepare_cached(
            "SELECT DISTINCT sku FROM stock_levels WHERE on_hand - committed - held < 0
             ORDER BY sku LIMIT ?1",
        )
        .and_then(|mut s| {
            s.query_map([codec::limit(limit)], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("find oversold positions"))?;
    if skus.is_empty() {
        return Ok(Vec::new());
    }
    Ok(super::ledger::reads::levels(conn, &skus)?
        .into_iter()
        .filter(|l| {
            concord_core::inventory::Position {
                on_hand: l.on_hand,
                committed: l.committed,
                held: l.held,
            }
            .free()
                < 0
        })
        .collect())
}

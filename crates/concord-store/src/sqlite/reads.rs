//! The read side of the store: queries run on the reader pool, off the async runtime.
//!
//! Reader connections are `query_only`: this module must never write. Queries that combine several
//! statements run in one read transaction so they see a single snapshot (WAL gives each reader a
//! consistent view while the writer keeps committing).

use super::codec::{self, db};
use crate::stats::{self, Group};
use crate::{
    DeadLetter, DeadLetterFilter, DeadLetterId, DeadLetterState, Entity, ItemState, JournalEntry,
    JournalId, OutboxItem, Result, StoreStats, StoredAudit,
};
use concord_core::{Kind, Millis};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use std::collections::BTreeMap;

pub(crate) fn cursor(conn: &Connection, endpoint: &str, stream: &str) -> Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM cursors WHERE endpoint = ?1 AND stream = ?2")
        .and_then(|mut s| {
            s.query_row(params![endpoint, stream], |r| r.get(0))
                .optional()
        })
        .map_err(db("read cursor"))
}

pub(crate) fn pending_journal(conn: &Connection, limit: usize) -> Result<Vec<JournalEntry>> {
    let sql = format!(
        "SELECT {} FROM journal WHERE status = 'pending' ORDER BY id LIMIT ?1",
        codec::JOURNAL_COLS
    );
    journal_rows(conn, &sql, vec![SqlValue::Integer(codec::limit(limit))])
}

pub(crate) fn journal_entry(conn: &Connection, id: JournalId) -> Result<Option<JournalEntry>> {
    let sql = format!("SELECT {} FROM journal WHERE id = ?1", codec::JOURNAL_COLS);
    Ok(journal_rows(conn, &sql, vec![SqlValue::Integer(id)])?
        .into_iter()
        .next())
}

pub(crate) fn journal(
    conn: &Connection,
    endpoint: Option<&str>,
    kind: Option<Kind>,
    key: Option<&str>,
    limit: usize,
) -> Result<Vec<JournalEntry>> {
    // Built per filter combination (at most 8 shapes, each cached) rather than `?1 IS NULL OR …`,
    // which would keep SQLite from using the indexes.
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    if let Some(e) = endpoint {
        args.push(SqlValue::Text(e.to_owned()));
        clauses.push(format!("endpoint = ?{}", args.len()));
    }
    if let Some(k) = kind {
        args.push(SqlValue::Text(k.as_str().to_owned()));
        clauses.push(format!("kind = ?{}", args.len()));
    }
    if let Some(k) = key {
        args.push(SqlValue::Text(k.to_owned()));
        clauses.push(format!("key = ?{}", args.len()));
    }
    args.push(SqlValue::Integer(codec::limit(limit)));
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT {} FROM journal {filter} ORDER BY id DESC LIMIT ?{}",
        codec::JOURNAL_COLS,
        args.len()
    );
    journal_rows(conn, &sql, args)
}

/// The admin API's journal search: the same per-shape SQL as [`journal`], plus status, a
/// `received_at` range and id paging.
pub(crate) fn search_journal(
    conn: &Connection,
    q: &crate::JournalQuery,
) -> Result<Vec<JournalEntry>> {
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    let mut push = |clause: &str, v: SqlValue| {
        args.push(v);
        clauses.push(format!("{clause} ?{}", args.len()));
    };
    if let Some(e) = &q.endpoint {
        push("endpoint =", SqlValue::Text(e.clone()));
    }
    if let Some(k) = q.kind {
        push("kind =", SqlValue::Text(k.as_str().to_owned()));
    }
    if let Some(k) = &q.key {
        push("key =", SqlValue::Text(k.clone()));
    }
    if let Some(s) = q.status {
        push(
            "status =",
            SqlValue::Text(codec::journal_status_str(s).to_owned()),
        );
    }
    if let Some(t) = q.from {
        push("received_at >=", SqlValue::Integer(t));
    }
    if let Some(t) = q.to {
        push("received_at <", SqlValue::Integer(t));
    }
    if let Some(id) = q.before_id {
        push("id <", SqlValue::Integer(id));
    }
    args.push(SqlValue::Integer(codec::limit(q.limit)));
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT {} FROM journal {filter} ORDER BY id DESC LIMIT ?{}",
        codec::JOURNAL_COLS,
        args.len()
    );
    journal_rows(conn, &sql, args)
}

pub(crate) fn connector_state(conn: &Connection, endpoint: &str) -> Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM connector_state WHERE endpoint = ?1")
        .and_then(|mut s| s.query_row(params![endpoint], |r| r.get(0)).optional())
        .map_err(db("read connector state"))
}

pub(crate) fn session(conn: &Connection, hash: &str, now: Millis) -> Result<Option<String>> {
    conn.prepare_cached("SELECT name FROM admin_sessions WHERE hash = ?1 AND expires_at > ?2")
        .and_then(|mut s| s.query_row(params![hash, now], |r| r.get(0)).optional())
        .map_err(db("read a dashboard session"))
}

pub(crate) fn paused_flows(conn: &Connection) -> Result<Vec<String>> {
    conn.prepare_cached("SELECT flow FROM paused_flows ORDER BY flow")
        .and_then(|mut s| {
            s.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(db("read paused flows"))
}

fn journal_rows(conn: &Connection, sql: &str, args: Vec<SqlValue>) -> Result<Vec<JournalEntry>> {
    let raws = conn
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map(params_from_iter(args), codec::raw_journal)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read journal"))?;
    raws.into_iter().map(codec::journal_entry).collect()
}

/// A page of entities of one kind after `after`, by key (the primary key's order).
pub(crate) fn entities_of_kind(
    conn: &Connection,
    kind: Kind,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Entity>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT key, state, hash, versions, updated_at FROM entities \
             WHERE kind = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
        )
        .map_err(db("scan entities"))?;
    let rows = stmt
        .query_map(
            params![kind.as_str(), after.unwrap_or(""), limit as i64],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Millis>(4)?,
                ))
            },
        )
        .map_err(db("scan entities"))?;
    let mut out = Vec::new();
    for row in rows {
        let (key, state, hash, versions, updated_at) = row.map_err(db("scan entities"))?;
        let versions: BTreeMap<String, String> = serde_json::from_str(&versions)
            .map_err(|e| codec::decode_err(format_args!("entity versions: {e}")))?;
        out.push(Entity {
            kind,
            key,
            state: codec::json(&state)?,
            hash,
            versions,
            updated_at,
        });
    }
    Ok(out)
}

pub(crate) fn entity(conn: &Connection, kind: Kind, key: &str) -> Result<Option<Entity>> {
    let raw: Option<(String, String, String, Millis)> = conn
        .prepare_cached(
            "SELECT state, hash, versions, updated_at FROM entities WHERE kind = ?1 AND key = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![kind.as_str(), key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(db("read entity"))?;
    let Some((state, hash, versions, updated_at)) = raw else {
        return Ok(None);
    };
    let versions: BTreeMap<String, String> = serde_json::from_str(&versions)
        .map_err(|e| codec::decode_err(format_args!("entity versions: {e}")))?;
    Ok(Some(Entity {
        kind,
        key: key.to_owned(),
        state: codec::json(&state)?,
        hash,
        versions,
        updated_at,
    }))
}

pub(crate) fn xref_key(
    conn: &Connection,
    endpoint: &str,
    kind: Kind,
    external_id: &str,
) -> Result<Option<String>> {
    conn.prepare_cached(
        "SELECT key FROM xref WHERE endpoint = ?1 AND kind = ?2 AND external_id = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![endpoint, kind.as_str(), external_id], |r| r.get(0))
            .optional()
    })
    .map_err(db("read xref key"))
}

pub(crate) fn xref_external(
    conn: &Connection,
    endpoint: &str,
    kind: Kind,
    key: &str,
) -> Result<Option<String>> {
    conn.prepare_cached(
        "SELECT external_id FROM xref WHERE endpoint = ?1 AND kind = ?2 AND key = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![endpoint, kind.as_str(), key], |r| r.get(0))
            .optional()
    })
    .map_err(db("read xref external id"))
}

pub(crate) fn hashes(
    conn: &Connection,
    dest: &str,
    kind: Kind,
    key: &str,
) -> Result<(Option<String>, Option<String>)> {
    conn.prepare_cached(
        "SELECT planned, written FROM hashes WHERE dest = ?1 AND kind = ?2 AND key = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![dest, kind.as_str(), key], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
    })
    .map(Option::unwrap_or_default)
    .map_err(db("read hashes"))
}

/// Run `lookup` on every input inside one read transaction, so that a batch sees one snapshot.
pub(crate) fn many<I, T>(
    conn: &Connection,
    inputs: &[I],
    lookup: impl Fn(&Connection, &I) -> Result<T>,
) -> Result<Vec<T>> {
    let tx = conn
        .unchecked_transaction()
        .map_err(db("begin lookup snapshot"))?;
    let out = inputs
        .iter()
        .map(|i| lookup(&tx, i))
        .collect::<Result<Vec<_>>>();
    // Read-only: nothing to commit, ending the snapshot is all.
    tx.rollback().map_err(db("end lookup snapshot"))?;
    out
}

pub(crate) fn next_due(conn: &Connection, dest: &str) -> Result<Option<Millis>> {
    conn.prepare_cached(
        "SELECT MIN(next_at) FROM outbox WHERE dest = ?1 AND state = 'pending'
           AND flow NOT IN (SELECT flow FROM paused_flows)",
    )
    .and_then(|mut s| s.query_row([dest], |r| r.get(0)))
    .map_err(db("read next due time"))
}

pub(crate) fn items(
    conn: &Connection,
    dest: Option<&str>,
    state: ItemState,
    limit: usize,
) -> Result<Vec<OutboxItem>> {
    let state = codec::item_state_str(state);
    let limit = codec::limit(limit);
    let cols = codec::ITEM_COLS;
    // Items and their dependencies from one snapshot.
    let tx = conn
        .unchecked_transaction()
        .map_err(db("begin items snapshot"))?;
    let conn: &Connection = &tx;
    let raws = match dest {
        Some(dest) => conn
            .prepare_cached(&format!(
                "SELECT {cols} FROM outbox WHERE dest = ?1 AND state = ?2 ORDER BY id LIMIT ?3"
            ))
            .and_then(|mut s| {
                s.query_map(params![dest, state, limit], codec::raw_item)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }),
        None => conn
            .prepare_cached(&format!(
                "SELECT {cols} FROM outbox WHERE state = ?1 ORDER BY id LIMIT ?2"
            ))
            .and_then(|mut s| {
                s.query_map(params![state, limit], codec::raw_item)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }),
    }
    .map_err(db("read outbox items"))?;
    let items = raws
        .into_iter()
        .map(|raw| codec::outbox_item(conn, raw))
        .collect::<Result<Vec<_>>>()?;
    tx.rollback().map_err(db("end items snapshot"))?;
    Ok(items)
}

pub(crate) fn dead_letters(
    conn: &Connection,
    filter: &DeadLetterFilter,
) -> Result<Vec<DeadLetter>> {
    let state = filter.state.unwrap_or(DeadLetterState::Open);
    let mut args = vec![SqlValue::Text(codec::dl_state_str(state).to_owned())];
    let mut sql = format!(
        "SELECT {} FROM dead_letters WHERE state = ?1",
        codec::DL_COLS
    );
    if let Some(e) = &filter.endpoint {
        args.push(SqlValue::Text(e.clone()));
        sql.push_str(&format!(" AND endpoint = ?{}", args.len()));
    }
    if let Some(k) = filter.kind {
        args.push(SqlValue::Text(k.as_str().to_owned()));
        sql.push_str(&format!(" AND kind = ?{}", args.len()));
    }
    if let Some(k) = &filter.key {
        args.push(SqlValue::Text(k.clone()));
        sql.push_str(&format!(" AND key = ?{}", args.len()));
    }
    // Oldest first: the dead-letter queue is worked through in the order things failed.
    // LIMIT -1 is SQLite's "no limit".
    args.push(SqlValue::Integer(filter.limit.map_or(-1, codec::limit)));
    sql.push_str(&format!(" ORDER BY id LIMIT ?{}", args.len()));
    let raws = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(params_from_iter(args), codec::raw_dead_letter)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read dead letters"))?;
    raws.into_iter().map(codec::dead_letter).collect()
}

pub(crate) fn dead_letter(conn: &Connection, id: DeadLetterId) -> Result<Option<DeadLetter>> {
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {} FROM dead_letters WHERE id = ?1",
            codec::DL_COLS
        ))
        .and_then(|mut s| s.query_row([id], codec::raw_dead_letter).optional())
        .map_err(db("read dead letter"))?;
    raw.map(codec::dead_letter).transpose()
}

pub(crate) fn audit_log(conn: &Connection, limit: usize) -> Result<Vec<StoredAudit>> {
    let raws = conn
        .prepare_cached(
            "SELECT id, at, event, endpoint, kind, key, detail FROM audit ORDER BY id DESC LIMIT ?1",
        )
        .and_then(|mut s| {
            s.query_map([codec::limit(limit)], codec::raw_audit)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read audit log"))?;
    raws.into_iter().map(codec::stored_audit).collect()
}

/// Rows of (tbl, dest, state, n) from `sql`.
fn groups(tx: &Connection, sql: &str, what: &'static str) -> Result<Vec<Group>> {
    tx.prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(Group {
                    tbl: r.get(0)?,
                    dest: r.get(1)?,
                    state: r.get(2)?,
                    n: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db(what))
}

/// The figures from the maintained counters (`stats_counts`, schema migration 14) and, per
/// destination with unfinished items, one seek of `outbox_open_captured`: a handful of rows
/// whatever the history.
pub(crate) fn stats(conn: &Connection) -> Result<StoreStats> {
    // One snapshot for all figures.
    let tx = conn
        .unchecked_transaction()
        .map_err(db("begin stats snapshot"))?;
    let counted = groups(
        &tx,
        "SELECT tbl, dest, state, n FROM stats_counts WHERE n <> 0",
        "read stats counters",
    )?;
    let mut oldest = Vec::new();
    for dest in stats::unfinished_dests(&counted) {
        // MIN over the partial index's leading entry for this dest: one seek.
        let at: Option<Millis> = tx
            .prepare_cached(
                "SELECT MIN(captured_at) FROM outbox
                 WHERE dest = ?1 AND state IN ('pending', 'inflight', 'parked')",
            )
            .and_then(|mut s| s.query_row([&dest], |r| r.get(0)))
            .map_err(db("oldest unfinished item"))?;
        if let Some(at) = at {
            oldest.push((dest, at));
        }
    }
    // Read-only: nothing to commit, ending the snapshot is all.
    tx.rollback().map_err(db("end stats snapshot"))?;
    stats::assemble(counted, oldest)
}

/// The same figures counted from the rows (`Store::recount_stats`): cost grows with history.
pub(crate) fn recount_stats(conn: &Connection) -> Result<StoreStats> {
    let tx = conn
        .unchecked_transaction()
        .map_err(db("begin stats snapshot"))?;
    let counted = groups(
        &tx,
        stats::COUNT_ROWS_SQL,
        "count journal, outbox and dead letters",
    )?;
    let oldest = tx
        .prepare_cached(stats::OLDEST_FROM_ROWS_SQL)
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Millis>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("oldest unfinished item"))?;
    tx.rollback().map_err(db("end stats snapshot"))?;
    stats::assemble(counted, oldest)
}

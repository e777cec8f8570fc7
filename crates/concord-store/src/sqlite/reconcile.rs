//! Reconciliation runs on SQLite (`reconcile_runs`, migration 11): one insert per run on the
//! writer, listings and one run by id on the readers. Must never read inside a report.

use super::codec::{self, db, to_json};
use crate::{NewReconcileRun, Result, StoredReconcileRun};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

pub(crate) fn record(conn: &Connection, run: &NewReconcileRun) -> Result<i64> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO reconcile_runs
           (started_at, finished_at, trigger, heal, drifted, healed, errors, report)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            run.started_at,
            run.finished_at,
            run.trigger,
            run.heal,
            n(run.drifted),
            n(run.healed),
            n(run.errors),
            to_json(&run.report)
        ])
    })
    .map_err(db("record reconcile run"))?;
    Ok(conn.last_insert_rowid())
}

type Raw = (i64, i64, i64, String, bool, i64, i64, i64, Option<String>);

fn raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn decode(r: Raw) -> Result<StoredReconcileRun> {
    let (id, started_at, finished_at, trigger, heal, drifted, healed, errors, report) = r;
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(StoredReconcileRun {
        id,
        started_at,
        finished_at,
        trigger,
        heal,
        drifted: n(drifted),
        healed: n(healed),
        errors: n(errors),
        report: match report {
            Some(text) => codec::json(&text)?,
            None => Value::Null,
        },
    })
}

pub(crate) fn list(conn: &Connection, limit: usize) -> Result<Vec<StoredReconcileRun>> {
    let raws = conn
        .prepare_cached(
            "SELECT id, started_at, finished_at, trigger, heal, drifted, healed, errors, NULL
             FROM reconcile_runs ORDER BY id DESC LIMIT ?1",
        )
        .and_then(|mut s| {
            s.query_map([codec::limit(limit)], raw)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("list reconcile runs"))?;
    raws.into_iter().map(decode).collect()
}

pub(crate) fn one(conn: &Connection, id: i64) -> Result<Option<StoredReconcileRun>> {
    let row = conn
        .prepare_cached(
            "SELECT id, started_at, finished_at, trigger, heal, drifted, healed, errors, report
             FROM reconcile_runs WHERE id = ?1",
        )
        .and_then(|mut s| s.query_row([id], raw).optional())
        .map_err(db("read reconcile run"))?;
    row.map(decode).transpose()
}

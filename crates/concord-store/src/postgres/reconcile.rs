//! Reconciliation runs on PostgreSQL (`reconcile_runs`): one insert per run, listings and one
//! run by id. Must never read inside a report.

use super::codec::{self, db, get};
use crate::{NewReconcileRun, Result, StoredReconcileRun};
use serde_json::Value;
use tokio_postgres::{GenericClient, Row, Transaction};

pub(crate) async fn record(tx: &Transaction<'_>, run: &NewReconcileRun) -> Result<i64> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let row = tx
        .query_one(
            "INSERT INTO reconcile_runs
               (started_at, finished_at, trigger, heal, drifted, healed, errors, report)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[
                &run.started_at,
                &run.finished_at,
                &run.trigger,
                &i64::from(run.heal),
                &n(run.drifted),
                &n(run.healed),
                &n(run.errors),
                &codec::to_json(&run.report),
            ],
        )
        .await
        .map_err(db("record reconcile run"))?;
    get(&row, 0)
}

fn decode(r: &Row) -> Result<StoredReconcileRun> {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    let report: Option<&str> = get(r, 8)?;
    Ok(StoredReconcileRun {
        id: get(r, 0)?,
        started_at: get(r, 1)?,
        finished_at: get(r, 2)?,
        trigger: get(r, 3)?,
        heal: get::<i64>(r, 4)? != 0,
        drifted: n(get(r, 5)?),
        healed: n(get(r, 6)?),
        errors: n(get(r, 7)?),
        report: match report {
            Some(text) => codec::json(text)?,
            None => Value::Null,
        },
    })
}

pub(crate) async fn list<C: GenericClient + Sync>(
    c: &C,
    limit: usize,
) -> Result<Vec<StoredReconcileRun>> {
    c.query(
        "SELECT id, started_at, finished_at, trigger, heal, drifted, healed, errors, NULL::TEXT
         FROM reconcile_runs ORDER BY id DESC LIMIT $1",
        &[&codec::limit(limit)],
    )
    .await
    .map_err(db("list reconcile runs"))?
    .iter()
    .map(decode)
    .collect()
}

pub(crate) async fn one<C: GenericClient + Sync>(
    c: &C,
    id: i64,
) -> Result<Option<StoredReconcileRun>> {
    c.query_opt(
        "SELECT id, started_at, finished_at, trigger, heal, drifted, healed, errors, report
         FROM reconcile_runs WHERE id = $1",
        &[&id],
    )
    .await
    .map_err(db("read reconcile run"))?
    .as_ref()
    .map(decode)
    .transpose()
}

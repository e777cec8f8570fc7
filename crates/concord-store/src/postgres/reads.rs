//! The read side of the PostgreSQL store: cursors, the journal, entities, xrefs, hashes, outbox
//! items, dead letters, the audit log, flow pauses and connector state (the stats: `stats.rs`).
//!
//! Each function runs on the client (or read-only snapshot transaction) it is given: several
//! statements that must agree run inside one snapshot (`PgStore::read_tx`). This module must
//! never write.

use super::codec::{self, db, get};
use crate::{
    DeadLetter, DeadLetterFilter, DeadLetterId, DeadLetterState, Entity, ItemState, JournalEntry,
    JournalId, OutboxItem, Result, StoredAudit,
};
use concord_core::{Kind, Millis};
use std::collections::BTreeMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

/// Bound parameters of a statement built per filter combination.
#[derive(Default)]
pub(crate) struct Args(Vec<Box<dyn ToSql + Sync + Send>>);

impl Args {
    /// Add a value; returns its placeholder (`$n`).
    pub(crate) fn push(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }

    pub(crate) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

pub(crate) async fn cursor<C: GenericClient + Sync>(
    c: &C,
    endpoint: &str,
    stream: &str,
) -> Result<Option<String>> {
    c.query_opt(
        "SELECT value FROM cursors WHERE endpoint = $1 AND stream = $2",
        &[&endpoint, &stream],
    )
    .await
    .map_err(db("read cursor"))?
    .map(|r| get(&r, 0))
    .transpose()
}

async fn journal_rows<C: GenericClient + Sync>(
    c: &C,
    sql: &str,
    args: &Args,
) -> Result<Vec<JournalEntry>> {
    c.query(sql, &args.refs())
        .await
        .map_err(db("read journal"))?
        .iter()
        .map(codec::journal_entry)
        .collect()
}

pub(crate) async fn pending_journal<C: GenericClient + Sync>(
    c: &C,
    limit: usize,
) -> Result<Vec<JournalEntry>> {
    let mut args = Args::default();
    let n = args.push(codec::limit(limit));
    let sql = format!(
        "SELECT {} FROM journal WHERE status = 'pending' ORDER BY id LIMIT {n}",
        codec::JOURNAL_COLS
    );
    journal_rows(c, &sql, &args).await
}

pub(crate) async fn journal_entry<C: GenericClient + Sync>(
    c: &C,
    id: JournalId,
) -> Result<Option<JournalEntry>> {
    let mut args = Args::default();
    let p = args.push(id);
    let sql = format!("SELECT {} FROM journal WHERE id = {p}", codec::JOURNAL_COLS);
    Ok(journal_rows(c, &sql, &args).await?.into_iter().next())
}

/// `WHERE …` of the clauses, or nothing.
fn filter(clauses: &[String]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    }
}

pub(crate) async fn journal<C: GenericClient + Sync>(
    c: &C,
    endpoint: Option<&str>,
    kind: Option<Kind>,
    key: Option<&str>,
    limit: usize,
) -> Result<Vec<JournalEntry>> {
    let mut args = Args::default();
    let mut clauses = Vec::new();
    if let Some(e) = endpoint {
        clauses.push(format!("endpoint = {}", args.push(e.to_owned())));
    }
    if let Some(k) = kind {
        clauses.push(format!("kind = {}", args.push(k.as_str())));
    }
    if let Some(k) = key {
        clauses.push(format!("key = {}", args.push(k.to_owned())));
    }
    let n = args.push(codec::limit(limit));
    let sql = format!(
        "SELECT {} FROM journal {} ORDER BY id DESC LIMIT {n}",
        codec::JOURNAL_COLS,
        filter(&clauses)
    );
    journal_rows(c, &sql, &args).await
}

/// The admin API's journal search: [`journal`]'s filters plus status, a `received_at` range and
/// id paging.
pub(crate) async fn search_journal<C: GenericClient + Sync>(
    c: &C,
    q: &crate::JournalQuery,
) -> Result<Vec<JournalEntry>> {
    let mut args = Args::default();
    let mut clauses = Vec::new();
    if let Some(e) = &q.endpoint {
        clauses.push(format!("endpoint = {}", args.push(e.clone())));
    }
    if let Some(k) = q.kind {
        clauses.push(format!("kind = {}", args.push(k.as_str())));
    }
    if let Some(k) = &q.key {
        clauses.push(format!("key = {}", args.push(k.clone())));
    }
    if let Some(s) = q.status {
        clauses.push(format!(
            "status = {}",
            args.push(codec::journal_status_str(s))
        ));
    }
    if let Some(t) = q.from {
        clauses.push(format!("received_at >= {}", args.push(t)));
    }
    if let Some(t) = q.to {
        clauses.push(format!("received_at < {}", args.push(t)));
    }
    if let Some(id) = q.before_id {
        clauses.push(format!("id < {}", args.push(id)));
    }
    let n = args.push(codec::limit(q.limit));
    let sql = format!(
        "SELECT {} FROM journal {} ORDER BY id DESC LIMIT {n}",
        codec::JOURNAL_COLS,
        filter(&clauses)
    );
    journal_rows(c, &sql, &args).await
}

pub(crate) async fn session<C: GenericClient + Sync>(
    c: &C,
    hash: &str,
    now: Millis,
) -> Result<Option<String>> {
    c.query_opt(
        "SELECT name FROM admin_sessions WHERE hash = $1 AND expires_at > $2",
        &[&hash, &now],
    )
    .await
    .map_err(db("read a dashboard session"))?
    .map(|r| get(&r, 0))
    .transpose()
}

pub(crate) async fn connector_state<C: GenericClient + Sync>(
    c: &C,
    endpoint: &str,
) -> Result<Option<String>> {
    c.query_opt(
        "SELECT value FROM connector_state WHERE endpoint = $1",
        &[&endpoint],
    )
    .await
    .map_err(db("read connector state"))?
    .map(|r| get(&r, 0))
    .transpose()
}

pub(crate) async fn paused_flows<C: GenericClient + Sync>(c: &C) -> Result<Vec<String>> {
    c.query("SELECT flow FROM paused_flows ORDER BY flow", &[])
        .await
        .map_err(db("read paused flows"))?
        .iter()
        .map(|r| get(r, 0))
        .collect()
}

fn versions(text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|e| codec::decode_err(format_args!("entity versions: {e}")))
}

/// A page of entities of one kind after `after`, by key (byte order: the columns are
/// `COLLATE "C"`, so the primary key serves the page).
pub(crate) async fn entities_of_kind<C: GenericClient + Sync>(
    c: &C,
    kind: Kind,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Entity>> {
    let rows = c
        .query(
            "SELECT key, state, hash, versions, updated_at FROM entities
             WHERE kind = $1 AND key > $2 ORDER BY key LIMIT $3",
            &[&kind.as_str(), &after.unwrap_or(""), &codec::limit(limit)],
        )
        .await
        .map_err(db("scan entities"))?;
    rows.iter()
        .map(|r| {
            Ok(Entity {
                kind,
                key: get(r, 0)?,
                state: codec::json(get(r, 1)?)?,
                hash: get(r, 2)?,
                versions: versions(get(r, 3)?)?,
                updated_at: get(r, 4)?,
            })
        })
        .collect()
}

pub(crate) async fn entity<C: GenericClient + Sync>(
    c: &C,
    kind: Kind,
    key: &str,
) -> Result<Option<Entity>> {
    let row = c
        .query_opt(
            "SELECT state, hash, versions, updated_at FROM entities WHERE kind = $1 AND key = $2",
            &[&kind.as_str(), &key],
        )
        .await
        .map_err(db("read entity"))?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(Entity {
        kind,
        key: key.to_owned(),
        state: codec::json(get(&r, 0)?)?,
        hash: get(&r, 1)?,
        versions: versions(get(&r, 2)?)?,
        updated_at: get(&r, 3)?,
    }))
}

pub(crate) async fn xref_key<C: GenericClient + Sync>(
    c: &C,
    endpoint: &str,
    kind: Kind,
    external_id: &str,
) -> Result<Option<String>> {
    c.query_opt(
        "SELECT key FROM xref WHERE endpoint = $1 AND kind = $2 AND external_id = $3",
        &[&endpoint, &kind.as_str(), &external_id],
    )
    .await
    .map_err(db("read xref key"))?
    .map(|r| get(&r, 0))
    .transpose()
}

pub(crate) async fn xref_external<C: GenericClient + Sync>(
    c: &C,
    endpoint: &str,
    kind: Kind,
    key: &str,
) -> Result<Option<String>> {
    c.query_opt(
        "SELECT external_id FROM xref WHERE endpoint = $1 AND kind = $2 AND key = $3",
        &[&endpoint, &kind.as_str(), &key],
    )
    .await
    .map_err(db("read xref external id"))?
    .map(|r| get(&r, 0))
    .transpose()
}

pub(crate) async fn hashes<C: GenericClient + Sync>(
    c: &C,
    dest: &str,
    kind: Kind,
    key: &str,
) -> Result<(Option<String>, Option<String>)> {
    let row = c
        .query_opt(
            "SELECT planned, written FROM hashes WHERE dest = $1 AND kind = $2 AND key = $3",
            &[&dest, &kind.as_str(), &key],
        )
        .await
        .map_err(db("read hashes"))?;
    match row {
        Some(r) => Ok((get(&r, 0)?, get(&r, 1)?)),
        None => Ok((None, None)),
    }
}

/// Three parallel text columns of a batch, for `unnest($1::text[], $2::text[], $3::text[])`.
fn columns(keys: &[(String, Kind, String)]) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
    let mut a = Vec::with_capacity(keys.len());
    let mut k = Vec::with_capacity(keys.len());
    let mut b = Vec::with_capacity(keys.len());
    for (x, kind, y) in keys {
        a.push(x.as_str());
        k.push(kind.as_str());
        b.push(y.as_str());
    }
    (a, k, b)
}

/// Rows of a batched lookup back in input order, one per input (`n`, 1-based, is column 0).
fn in_order<T>(
    n: usize,
    rows: &[tokio_postgres::Row],
    each: impl Fn(&tokio_postgres::Row) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(n);
    for (i, r) in rows.iter().enumerate() {
        let at: i64 = get(r, 0)?;
        if usize::try_from(at).ok() != Some(i + 1) {
            return Err(codec::decode_err(format_args!(
                "batched lookup answered row {at} at position {}",
                i + 1
            )));
        }
        out.push(each(r)?);
    }
    if out.len() != n {
        return Err(codec::decode_err(format_args!(
            "batched lookup answered {} rows for {n} inputs",
            out.len()
        )));
    }
    Ok(out)
}

/// [`xref_key`] for each input: one statement (one snapshot, one round trip).
pub(crate) async fn xref_keys<C: GenericClient + Sync>(
    c: &C,
    ids: &[(String, Kind, String)],
) -> Result<Vec<Option<String>>> {
    let (endpoints, kinds, externals) = columns(ids);
    let rows = c
        .query(
            "SELECT q.n, x.key
             FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
                 AS q(endpoint, kind, external_id, n)
             LEFT JOIN xref x ON x.endpoint = q.endpoint AND x.kind = q.kind
                 AND x.external_id = q.external_id
             ORDER BY q.n",
            &[&endpoints, &kinds, &externals],
        )
        .await
        .map_err(db("read xref keys"))?;
    in_order(ids.len(), &rows, |r| get(r, 1))
}

/// [`xref_external`] for each input: one statement.
pub(crate) async fn xref_externals<C: GenericClient + Sync>(
    c: &C,
    keys: &[(String, Kind, String)],
) -> Result<Vec<Option<String>>> {
    let (endpoints, kinds, ks) = columns(keys);
    let rows = c
        .query(
            "SELECT q.n, x.external_id
             FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
                 AS q(endpoint, kind, key, n)
             LEFT JOIN xref x ON x.endpoint = q.endpoint AND x.kind = q.kind AND x.key = q.key
             ORDER BY q.n",
            &[&endpoints, &kinds, &ks],
        )
        .await
        .map_err(db("read xref external ids"))?;
    in_order(keys.len(), &rows, |r| get(r, 1))
}

/// [`entity`] for each input: one statement.
pub(crate) async fn entities<C: GenericClient + Sync>(
    c: &C,
    keys: &[(Kind, String)],
) -> Result<Vec<Option<Entity>>> {
    let kinds: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let ks: Vec<&str> = keys.iter().map(|(_, key)| key.as_str()).collect();
    let rows = c
        .query(
            "SELECT q.n, e.key, e.state, e.hash, e.versions, e.updated_at
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(kind, key, n)
             LEFT JOIN entities e ON e.kind = q.kind AND e.key = q.key
             ORDER BY q.n",
            &[&kinds, &ks],
        )
        .await
        .map_err(db("read entities"))?;
    in_order(keys.len(), &rows, |r| {
        let Some(key) = get::<Option<String>>(r, 1)? else {
            return Ok(None);
        };
        let at: i64 = get(r, 0)?;
        let kind = usize::try_from(at - 1)
            .ok()
            .and_then(|i| keys.get(i))
            .map(|(k, _)| *k)
            .ok_or_else(|| codec::decode_err("batched entity lookup: row out of range"))?;
        Ok(Some(Entity {
            kind,
            key,
            state: codec::json(get(r, 2)?)?,
            hash: get(r, 3)?,
            versions: versions(get(r, 4)?)?,
            updated_at: get(r, 5)?,
        }))
    })
}

/// [`hashes`] for each input: one statement.
pub(crate) async fn hashes_of<C: GenericClient + Sync>(
    c: &C,
    keys: &[(String, Kind, String)],
) -> Result<Vec<(Option<String>, Option<String>)>> {
    let (dests, kinds, ks) = columns(keys);
    let rows = c
        .query(
            "SELECT q.n, h.planned, h.written
             FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
                 AS q(dest, kind, key, n)
             LEFT JOIN hashes h ON h.dest = q.dest AND h.kind = q.kind AND h.key = q.key
             ORDER BY q.n",
            &[&dests, &kinds, &ks],
        )
        .await
        .map_err(db("read hashes"))?;
    in_order(keys.len(), &rows, |r| Ok((get(r, 1)?, get(r, 2)?)))
}

pub(crate) async fn next_due<C: GenericClient + Sync>(c: &C, dest: &str) -> Result<Option<Millis>> {
    let row = c
        .query_one(
            "SELECT MIN(next_at) FROM outbox WHERE dest = $1 AND state = 'pending'
               AND flow NOT IN (SELECT flow FROM paused_flows)",
            &[&dest],
        )
        .await
        .map_err(db("read next due time"))?;
    get(&row, 0)
}

pub(crate) async fn items<C: GenericClient + Sync>(
    c: &C,
    dest: Option<&str>,
    state: ItemState,
    limit: usize,
) -> Result<Vec<OutboxItem>> {
    let state = codec::item_state_str(state);
    let limit = codec::limit(limit);
    let cols = codec::ITEM_COLS;
    let rows = match dest {
        Some(dest) => {
            c.query(
                &format!(
                    "SELECT {cols} FROM outbox WHERE dest = $1 AND state = $2 ORDER BY id LIMIT $3"
                ),
                &[&dest, &state, &limit],
            )
            .await
        }
        None => {
            c.query(
                &format!("SELECT {cols} FROM outbox WHERE state = $1 ORDER BY id LIMIT $2"),
                &[&state, &limit],
            )
            .await
        }
    }
    .map_err(db("read outbox items"))?;
    codec::outbox_items(c, &rows).await
}

pub(crate) async fn dead_letters<C: GenericClient + Sync>(
    c: &C,
    filter: &DeadLetterFilter,
) -> Result<Vec<DeadLetter>> {
    let state = filter.state.unwrap_or(DeadLetterState::Open);
    let mut args = Args::default();
    let mut sql = format!(
        "SELECT {} FROM dead_letters WHERE state = {}",
        codec::DL_COLS,
        args.push(codec::dl_state_str(state))
    );
    if let Some(e) = &filter.endpoint {
        sql.push_str(&format!(" AND endpoint = {}", args.push(e.clone())));
    }
    if let Some(k) = filter.kind {
        sql.push_str(&format!(" AND kind = {}", args.push(k.as_str())));
    }
    if let Some(k) = &filter.key {
        sql.push_str(&format!(" AND key = {}", args.push(k.clone())));
    }
    // Oldest first: the dead-letter queue is worked through in the order things failed.
    sql.push_str(" ORDER BY id");
    if let Some(limit) = filter.limit {
        sql.push_str(&format!(" LIMIT {}", args.push(codec::limit(limit))));
    }
    c.query(&sql, &args.refs())
        .await
        .map_err(db("read dead letters"))?
        .iter()
        .map(codec::dead_letter)
        .collect()
}

pub(crate) async fn dead_letter<C: GenericClient + Sync>(
    c: &C,
    id: DeadLetterId,
) -> Result<Option<DeadLetter>> {
    c.query_opt(
        &format!("SELECT {} FROM dead_letters WHERE id = $1", codec::DL_COLS),
        &[&id],
    )
    .await
    .map_err(db("read dead letter"))?
    .as_ref()
    .map(codec::dead_letter)
    .transpose()
}

pub(crate) async fn audit_log<C: GenericClient + Sync>(
    c: &C,
    limit: usize,
) -> Result<Vec<StoredAudit>> {
    c.query(
        &format!(
            "SELECT {} FROM audit ORDER BY id DESC LIMIT $1",
            codec::AUDIT_COLS
        ),
        &[&codec::limit(limit)],
    )
    .await
    .map_err(db("read audit log"))?
    .iter()
    .map(codec::stored_audit)
    .collect()
}

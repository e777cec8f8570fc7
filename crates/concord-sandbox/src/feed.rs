//! The change feed both emulators keep: the latest state of every record, indexed by id (for
//! the snapshot, `GET /api/records`) and by its latest `seq` (for `GET /api/changes`). The `seq`
//! is global, monotonic and assigned under the feed lock together with the write, so it is
//! gapless for readers: a keyset read after seq N never misses a record committed later.
//!
//! Must never: do I/O or hold its lock across an `.await`.

use super::core::{error, lock, now_ms, Core, HttpError};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use concord_core::Kind;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub seq: u64,
    pub updated_at: i64,
    pub record: Value,
}

#[derive(Default)]
struct KindLog {
    by_id: BTreeMap<String, Entry>,
    by_seq: BTreeMap<u64, String>,
}

/// The latest state of every record, indexed by id and by its latest seq.
#[derive(Default)]
pub(crate) struct Feed {
    seq: u64,
    kinds: BTreeMap<Kind, KindLog>,
}

/// One feed row as served and as sent in webhooks.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub id: String,
    pub version: String,
    pub updated_at: i64,
    pub record: Value,
}

impl Feed {
    pub fn get(&self, kind: Kind, id: &str) -> Option<&Entry> {
        self.kinds.get(&kind)?.by_id.get(id)
    }

    pub(crate) fn last_seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn put(&mut self, kind: Kind, id: &str, record: Value) -> Entry {
        self.seq += 1;
        let entry = Entry {
            seq: self.seq,
            updated_at: now_ms(),
            record,
        };
        let log = self.kinds.entry(kind).or_default();
        if let Some(old) = log.by_id.insert(id.to_string(), entry.clone()) {
            log.by_seq.remove(&old.seq);
        }
        log.by_seq.insert(entry.seq, id.to_string());
        entry
    }

    /// Remove a record (deleted in the system): it leaves the snapshot; the feed says nothing.
    pub(crate) fn remove(&mut self, kind: Kind, id: &str) -> bool {
        let Some(log) = self.kinds.get_mut(&kind) else {
            return false;
        };
        match log.by_id.remove(id) {
            Some(old) => {
                log.by_seq.remove(&old.seq);
                true
            }
            None => false,
        }
    }

    pub(crate) fn row(id: &str, e: &Entry) -> Row {
        Row {
            id: id.to_string(),
            version: e.seq.to_string(),
            updated_at: e.updated_at,
            record: e.record.clone(),
        }
    }

    /// Records whose latest seq is after `after`, in seq order; `more` = some are left.
    pub fn changes(&self, kind: Kind, after: u64, limit: usize) -> (Vec<Row>, bool) {
        let Some(log) = self.kinds.get(&kind) else {
            return (Vec::new(), false);
        };
        let mut it = log.by_seq.range(after.saturating_add(1)..);
        let rows = it
            .by_ref()
            .take(limit)
            .filter_map(|(_, id)| log.by_id.get(id).map(|e| Self::row(id, e)))
            .collect();
        (rows, it.next().is_some())
    }

    /// Records with an id after `after_id`, in id order.
    pub fn snapshot(&self, kind: Kind, after_id: Option<&str>, limit: usize) -> (Vec<Row>, bool) {
        let Some(log) = self.kinds.get(&kind) else {
            return (Vec::new(), false);
        };
        let mut it = log
            .by_id
            .iter()
            .filter(|(id, _)| after_id.is_none_or(|a| id.as_str() > a));
        let rows = it
            .by_ref()
            .take(limit)
            .map(|(id, e)| Self::row(id, e))
            .collect();
        (rows, it.next().is_some())
    }
}

#[derive(Deserialize)]
pub(crate) struct FeedQuery {
    kind: Option<String>,
    after: Option<String>,
    after_id: Option<String>,
    limit: Option<String>,
}

fn feed_params(core: &Core, q: &FeedQuery) -> Result<(Kind, usize), HttpError> {
    let name = q.kind.as_deref().ok_or_else(|| {
        HttpError(
            StatusCode::BAD_REQUEST,
            "query parameter `kind` is required".into(),
        )
    })?;
    let kind: Kind = name.parse().map_err(|e: concord_core::kind::UnknownKind| {
        HttpError(StatusCode::BAD_REQUEST, e.to_string())
    })?;
    if !core.kinds.contains(&kind) {
        return Err(HttpError(
            StatusCode::BAD_REQUEST,
            format!("kind `{kind}` is not served by this system"),
        ));
    }
    let limit = match &q.limit {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| HttpError(StatusCode::BAD_REQUEST, "`limit` must be 1..=1000".into()))?,
    };
    Ok((kind, limit))
}

/// `GET /api/changes?kind=K&after=<seq>&limit=N`.
pub(crate) async fn changes(State(core): State<Arc<Core>>, Query(q): Query<FeedQuery>) -> Response {
    let (kind, limit) = match feed_params(&core, &q) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let after = match q.after.as_deref().filter(|a| !a.is_empty()) {
        None => 0,
        Some(a) => match a.parse::<u64>() {
            Ok(a) => a,
            Err(_) => return error(StatusCode::BAD_REQUEST, "`after` must be a sequence number"),
        },
    };
    let (rows, more) = lock(&core.feed).changes(kind, after, limit);
    let next = rows.last().map_or(after.to_string(), |r| r.version.clone());
    Json(json!({"records": rows, "next": next, "more": more})).into_response()
}

/// `GET /api/records?kind=K&after_id=<id>&limit=N`.
pub(crate) async fn records(State(core): State<Arc<Core>>, Query(q): Query<FeedQuery>) -> Response {
    let (kind, limit) = match feed_params(&core, &q) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let after_id = q.after_id.as_deref().filter(|a| !a.is_empty());
    let (rows, more) = lock(&core.feed).snapshot(kind, after_id, limit);
    let next = rows.last().map(|r| r.id.clone());
    Json(json!({"records": rows, "next": next, "more": more})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_keeps_latest_state_in_seq_order() {
        let mut f = Feed::default();
        f.put(Kind::Product, "A", json!(1));
        f.put(Kind::Product, "B", json!(2));
        f.put(Kind::Stock, "A@W", json!(3));
        f.put(Kind::Product, "A", json!(4));
        let (rows, more) = f.changes(Kind::Product, 0, 10);
        assert!(!more);
        let ids: Vec<_> = rows
            .iter()
            .map(|r| (r.id.as_str(), r.version.as_str()))
            .collect();
        assert_eq!(ids, [("B", "2"), ("A", "4")]);
        let (rows, more) = f.changes(Kind::Product, 0, 1);
        assert!(more && rows[0].id == "B");
        let (rows, more) = f.snapshot(Kind::Product, Some("A"), 10);
        assert!(!more && rows.len() == 1 && rows[0].id == "B");
    }
}

//! Changed-since reading of any Tryton model, by `write_date` (Tryton has no webhooks).
//!
//! Tryton stamps `create_date` on create and leaves `write_date` null until the first write; both
//! are the *start* time of the writing transaction (so every row of one transaction shares one
//! timestamp, and a long transaction can commit rows stamped earlier than rows already read —
//! the engine's `overlap` re-reads that window; the journal drops the duplicates).
//!
//! "Changed after `since`" is therefore `write_date > since OR (write_date IS NULL AND
//! create_date > since)`, which no single ORDER BY walks in timestamp order. A page is read as two
//! keyset queries, each ordered by its own timestamp then id and limited to the page size:
//! rows written (`write_date > since`) and rows never written (`write_date = null, create_date >
//! since`). When either is cut off by the limit, the page ends at the earlier of their last
//! timestamps `b`: rows stamped before `b` are kept, *every* row stamped exactly `b` is fetched by
//! a third, unlimited query (one transaction's rows share `b`, so a page can never split them),
//! the cursor becomes `b` and the next page reads strictly after it. Nothing is skipped and every
//! page advances.
//!
//! Cursor: one fixed-width RFC 3339 UTC timestamp (see `mapping`). Reads start at `cursor -
//! overlap` (the engine passes overlap on the first page of each poll cycle only).
//!
//! Must never: move the cursor past a row it did not return.

use super::client::Rpc;
use super::mapping::{changed_at, format_ts, parse_ts, ts_minus, ts_to_tryton};
use chrono::NaiveDateTime;
use concord_engine::connector::{DeliveryError, ReadRequest};
use serde_json::{json, Value};

/// One page of changed rows, oldest first.
#[derive(Debug, Default)]
pub struct ChangedRows {
    pub rows: Vec<Value>,
    /// The new cursor (`None`: unchanged).
    pub cursor: Option<String>,
    pub more: bool,
    /// The newest change among `rows` (what the page's records are "as of").
    pub newest: Option<NaiveDateTime>,
}

/// Parse the stored cursor into the lower bound of this read.
pub fn since(req: &ReadRequest<'_>) -> Result<Option<NaiveDateTime>, DeliveryError> {
    match req.cursor {
        None => Ok(None),
        Some(c) => parse_ts(c)
            .map(|t| Some(ts_minus(t, req.overlap)))
            .ok_or_else(|| DeliveryError::Permanent {
                reason: format!("cursor `{c}` is not a timestamp like 2026-11-25T19:33:26.123456Z"),
            }),
    }
}

fn and(mut base: Vec<Value>, more: Vec<Value>) -> Value {
    base.extend(more);
    Value::Array(base)
}

/// Read the next page of rows of `model` matching `filter` that changed after the cursor.
pub async fn changed_since(
    rpc: &Rpc,
    model: &str,
    filter: &[Value],
    fields: &[&str],
    req: &ReadRequest<'_>,
) -> Result<ChangedRows, DeliveryError> {
    let since = since(req)?;
    let limit = req.limit.clamp(1, 5000);
    let mut fields: Vec<&str> = fields.to_vec();
    fields.extend(["write_date", "create_date"]);
    let (written, created) = match since {
        Some(t) => (
            vec![json!(["write_date", ">", ts_to_tryton(t)])],
            vec![
                json!(["write_date", "=", null]),
                json!(["create_date", ">", ts_to_tryton(t)]),
            ],
        ),
        None => (
            vec![json!(["write_date", "!=", null])],
            vec![json!(["write_date", "=", null])],
        ),
    };
    let a = rpc
        .search_read(
            model,
            and(filter.to_vec(), written),
            Some(limit),
            json!([["write_date", "ASC"], ["id", "ASC"]]),
            &fields,
        )
        .await?;
    let b = rpc
        .search_read(
            model,
            and(filter.to_vec(), created),
            Some(limit),
            json!([["create_date", "ASC"], ["id", "ASC"]]),
            &fields,
        )
        .await?;
    let last = |rows: &Vec<Value>| {
        if rows.len() >= limit {
            rows.last().and_then(changed_at)
        } else {
            None
        }
    };
    let boundary = match (last(&a), last(&b)) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    let mut rows: Vec<(NaiveDateTime, i64, Value)> = a
        .into_iter()
        .chain(b)
        .filter_map(|r| {
            let t = changed_at(&r)?;
            let id = r.get("id").and_then(Value::as_i64).unwrap_or(0);
            Some((t, id, r))
        })
        .filter(|(t, _, _)| boundary.is_none_or(|b| *t < b))
        .collect();
    if let Some(b) = boundary {
        let at = ts_to_tryton(b);
        let ties = rpc
            .search_read(
                model,
                and(
                    filter.to_vec(),
                    vec![json!([
                        "OR",
                        [["write_date", "=", at]],
                        [["write_date", "=", null], ["create_date", "=", at]]
                    ])],
                ),
                None,
                json!([["id", "ASC"]]),
                &fields,
            )
            .await?;
        rows.extend(ties.into_iter().filter_map(|r| {
            let id = r.get("id").and_then(Value::as_i64).unwrap_or(0);
            Some((changed_at(&r)?, id, r))
        }));
    }
    rows.sort_by_key(|r| (r.0, r.1));
    rows.dedup_by(|x, y| x.1 == y.1);
    let newest = rows.last().map(|r| r.0);
    let stored = req.cursor.and_then(parse_ts);
    let cursor = match boundary {
        Some(b) => Some(format_ts(b)),
        // Never regress past the stored cursor just because only the overlap window was seen.
        None => match (newest, stored) {
            (Some(n), Some(s)) if n > s => Some(format_ts(n)),
            (Some(n), None) => Some(format_ts(n)),
            _ => None,
        },
    };
    Ok(ChangedRows {
        rows: rows.into_iter().map(|r| r.2).collect(),
        cursor,
        more: boundary.is_some(),
        newest,
    })
}

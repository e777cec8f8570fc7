//! Changed-since reading of any Tryton model, by `write_date` (Tryton has no webhooks).
//!
//! Tryton stamps `create_date` on create and leaves `write_date` null until the first write; both
//! are the *start* time of the writing transaction (so every row of one transaction shares one
//! timestamp — one `write` of 10,000 parties gives them all the same `write_date` —, and a long
//! transaction can commit rows stamped earlier than rows already read: the engine's `overlap`
//! re-reads that window; the journal drops the duplicates).
//!
//! A row's position is its **key** `(changed_at, id)`, `changed_at` = `write_date`, else
//! `create_date`. Rows are read in key order with a keyset cursor, so any number of rows sharing
//! one timestamp are paged through by id, never skipped and never all fetched at once. "After
//! key `(t, i)`" is no single ORDER BY (rows never written are ordered by `create_date`), so a
//! page is two keyset queries, each ordered by its own timestamp then id and limited to the
//! page size: rows written (`write_date > t`, or `= t` and `id > i`) and rows never written
//! (`write_date = null` and the same on `create_date`). The page is the first `limit` of both
//! merged in key order — every one of them is among the first `limit` of its own query, so
//! nothing in between is left out — and the cursor becomes the key of its last row.
//!
//! Cursor: a fixed-width RFC 3339 UTC timestamp (see `mapping`), alone — every row changed at
//! or before it was returned (the only form before keysets, still read) — or `<timestamp>#<id>`:
//! every row up to that key was returned.
//!
//! Overlap (`ReadRequest::overlap`, on the first page of each poll cycle): the newest `limit`
//! rows changed in `(t − overlap, t]` are re-read *besides* the page after the cursor, never
//! instead of it, so the cursor never goes back and a cycle that ends after one page still
//! moves it on.
//!
//! Must never: move the cursor past a row it did not return, or back.

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

/// Every row up to this key was returned; `id: None` = every row of timestamp `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    at: NaiveDateTime,
    id: Option<i64>,
}

impl Key {
    fn parse(c: &str) -> Result<Key, DeliveryError> {
        let bad = || DeliveryError::Permanent {
            reason: format!(
                "cursor `{c}` is not a timestamp like 2026-11-25T19:33:26.123456Z (optionally \
                 followed by #<id>)"
            ),
        };
        let (ts, id) = match c.split_once('#') {
            None => (c, None),
            Some((ts, id)) => (ts, Some(id.parse::<i64>().map_err(|_| bad())?)),
        };
        Ok(Key {
            at: parse_ts(ts).ok_or_else(bad)?,
            id,
        })
    }

    fn format(&self) -> String {
        match self.id {
            None => format_ts(self.at),
            Some(id) => format!("{}#{id}", format_ts(self.at)),
        }
    }

    /// Whether a row at `(at, id)` comes after this key.
    fn before(&self, at: NaiveDateTime, id: i64) -> bool {
        at > self.at || (at == self.at && self.id.is_some_and(|k| id > k))
    }
}

/// The key of a read row.
fn key_of(row: &Value) -> Option<(NaiveDateTime, i64)> {
    Some((changed_at(row)?, row.get("id").and_then(Value::as_i64)?))
}

fn and(mut base: Vec<Value>, more: Vec<Value>) -> Value {
    base.extend(more);
    Value::Array(base)
}

/// `field` after `key` (`field > t`, or `field = t` and `id > i`).
fn after(field: &str, key: &Key) -> Value {
    let t = ts_to_tryton(key.at);
    match key.id {
        None => json!([field, ">", t]),
        Some(i) => json!(["OR", [[field, ">", t]], [[field, "=", t], ["id", ">", i]]]),
    }
}

/// The two keyset domains (rows written; rows never written) after `key`.
fn domains_after(key: Option<&Key>) -> (Vec<Value>, Vec<Value>) {
    match key {
        Some(k) => (
            vec![after("write_date", k)],
            vec![json!(["write_date", "=", null]), after("create_date", k)],
        ),
        None => (
            vec![json!(["write_date", "!=", null])],
            vec![json!(["write_date", "=", null])],
        ),
    }
}

/// Merge the two queries' rows (each the first `limit` of its sequence after the cursor) into
/// the page: the first `limit` in key order, and whether more may follow.
fn merge(a: Vec<Value>, b: Vec<Value>, limit: usize) -> (Vec<(NaiveDateTime, i64, Value)>, bool) {
    let cut = a.len() >= limit || b.len() >= limit;
    let mut rows: Vec<(NaiveDateTime, i64, Value)> = a
        .into_iter()
        .chain(b)
        .filter_map(|r| {
            let (t, id) = key_of(&r)?;
            Some((t, id, r))
        })
        .collect();
    rows.sort_by_key(|r| (r.0, r.1));
    rows.dedup_by_key(|r| r.1);
    let more = cut || rows.len() > limit;
    rows.truncate(limit);
    (rows, more)
}

/// Read the next page of rows of `model` matching `filter` that changed after the cursor.
pub async fn changed_since(
    rpc: &Rpc,
    model: &str,
    filter: &[Value],
    fields: &[&str],
    req: &ReadRequest<'_>,
) -> Result<ChangedRows, DeliveryError> {
    let stored = req.cursor.map(Key::parse).transpose()?;
    let limit = req.limit.clamp(1, 5000);
    let mut fields: Vec<&str> = fields.to_vec();
    fields.extend(["write_date", "create_date"]);
    let query = |domain: Vec<Value>, order: Value, limit: usize| {
        let domain = and(filter.to_vec(), domain);
        let fields = fields.clone();
        async move {
            rpc.search_read(model, domain, Some(limit), order, &fields)
                .await
        }
    };
    let asc = |f: &str| json!([[f, "ASC"], ["id", "ASC"]]);
    let desc = |f: &str| json!([[f, "DESC"], ["id", "DESC"]]);

    // Re-read behind the cursor (overlap): the newest `limit` rows of (t − overlap, t].
    let mut reread: Vec<(NaiveDateTime, i64, Value)> = Vec::new();
    if let (Some(k), false) = (&stored, req.overlap.is_zero()) {
        let (from, to) = (
            ts_to_tryton(ts_minus(k.at, req.overlap)),
            ts_to_tryton(k.at),
        );
        let a = query(
            vec![
                json!(["write_date", ">", from]),
                json!(["write_date", "<=", to]),
            ],
            desc("write_date"),
            limit,
        )
        .await?;
        let b = query(
            vec![
                json!(["write_date", "=", null]),
                json!(["create_date", ">", from]),
                json!(["create_date", "<=", to]),
            ],
            desc("create_date"),
            limit,
        )
        .await?;
        let mut rows: Vec<(NaiveDateTime, i64, Value)> = a
            .into_iter()
            .chain(b)
            .filter_map(|r| {
                let (t, id) = key_of(&r)?;
                Some((t, id, r))
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse((r.0, r.1)));
        rows.truncate(limit);
        reread = rows;
    }

    let (written, created) = domains_after(stored.as_ref());
    let a = query(written, asc("write_date"), limit).await?;
    let b = query(created, asc("create_date"), limit).await?;
    let (page, more) = merge(a, b, limit);
    let cursor = page
        .last()
        .map(|r| Key {
            at: r.0,
            id: Some(r.1),
        })
        // Never back: every row of the page is after the stored key, so this only guards
        // against a server answering out of order.
        .filter(|k| stored.is_none_or(|s| s.before(k.at, k.id.unwrap_or(i64::MAX))))
        .map(|k| k.format());
    let mut rows = reread;
    rows.extend(page);
    rows.sort_by_key(|r| (r.0, r.1));
    rows.dedup_by_key(|r| r.1);
    let newest = rows.last().map(|r| r.0);
    Ok(ChangedRows {
        rows: rows.into_iter().map(|r| r.2).collect(),
        cursor,
        more,
        newest,
    })
}

#[cfg(test)]
mod tests {
    //! The keyset logic against rows in memory: the two queries Tryton would answer for a key
    //! (rows written / never written, each in its own timestamp order, limited), merged.
    use super::*;

    fn t(s: u32) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_796_000_000 + i64::from(s), 0)
            .unwrap()
            .naive_utc()
    }

    /// A row: id, write_date (None: never written), create_date.
    fn row(id: i64, written: Option<u32>, created: u32) -> Value {
        json!({"id": id,
               "write_date": written.map(|w| ts_to_tryton(t(w))).unwrap_or(Value::Null),
               "create_date": ts_to_tryton(t(created))})
    }

    /// What Tryton answers the two keyset queries after `key`.
    fn queries(all: &[Value], key: Option<&Key>, limit: usize) -> (Vec<Value>, Vec<Value>) {
        let after =
            |r: &Value| key_of(r).is_some_and(|(at, id)| key.is_none_or(|k| k.before(at, id)));
        let mut a: Vec<Value> = all
            .iter()
            .filter(|r| !r["write_date"].is_null() && after(r))
            .cloned()
            .collect();
        let mut b: Vec<Value> = all
            .iter()
            .filter(|r| r["write_date"].is_null() && after(r))
            .cloned()
            .collect();
        for v in [&mut a, &mut b] {
            v.sort_by_key(|r| key_of(r).unwrap());
            v.truncate(limit);
        }
        (a, b)
    }

    #[test]
    fn keys_parse_in_both_forms_and_order_rows() {
        let old = "2026-11-25T19:33:26.123456Z";
        let k = Key::parse(old).unwrap();
        assert_eq!((k.id, k.format()), (None, old.to_string()));
        let k2 = Key::parse(&format!("{old}#42")).unwrap();
        assert_eq!(k2.id, Some(42));
        assert_eq!(Key::parse(&k2.format()).unwrap(), k2);
        for bad in [
            "",
            "soon",
            "2026-11-25T19:33:26.123456Z#",
            "2026-11-25T19:33:26.123456Z#x",
        ] {
            assert!(Key::parse(bad).is_err(), "{bad}");
        }
        // A plain timestamp: every row of that timestamp was returned.
        assert!(!k.before(k.at, i64::MAX));
        assert!(k2.before(k2.at, 43) && !k2.before(k2.at, 42));
        assert!(k2.before(t(10_000_000), 1));
    }

    #[test]
    fn any_number_of_rows_sharing_a_timestamp_is_paged_exactly_once() {
        // 40 rows written in one transaction (one write_date), 7 never written sharing one
        // create_date with some of them, and a few others; ids interleaved.
        let mut all = Vec::new();
        for id in 1..=60 {
            let r = match id % 4 {
                0 => row(id, None, 5),
                3 if id > 40 => row(id, Some(9), 1),
                _ => row(id, Some(5), 1),
            };
            all.push(r);
        }
        for limit in [1, 2, 3, 7, 100] {
            let mut key: Option<Key> = None;
            let mut seen = Vec::new();
            for _ in 0..1000 {
                let (a, b) = queries(&all, key.as_ref(), limit);
                let (page, more) = merge(a, b, limit);
                assert!(page.len() <= limit);
                let mut last = None;
                for (at, id, _) in &page {
                    if let Some(k) = key {
                        assert!(k.before(*at, *id), "a row at or before the cursor");
                    }
                    last = Some(Key {
                        at: *at,
                        id: Some(*id),
                    });
                    seen.push(*id);
                }
                key = last.or(key);
                if !more {
                    break;
                }
            }
            let mut sorted = seen.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (1..=60).collect::<Vec<_>>(),
                "limit {limit}: {seen:?}"
            );
        }
    }

    #[test]
    fn domains_say_after_the_key() {
        let k = Key {
            at: t(5),
            id: Some(7),
        };
        let (w, c) = domains_after(Some(&k));
        assert_eq!(w[0][0], "OR");
        assert_eq!(w[0][2][1], json!(["id", ">", 7]));
        assert_eq!(c[0], json!(["write_date", "=", null]));
        let plain = Key { at: t(5), id: None };
        let (w, _) = domains_after(Some(&plain));
        assert_eq!(w[0][1], ">");
        let (w, c) = domains_after(None);
        assert_eq!(
            (w[0][1].as_str(), c[0][1].as_str()),
            (Some("!="), Some("="))
        );
    }
}

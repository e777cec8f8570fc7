//! Polling for the `http` connector: one page per call, every pagination kind, an incremental
//! cursor that cannot lose or double a record at a page boundary.
//!
//! **A run** is the sequence of pages of one listing, from its first page until the API says it
//! is done. The durable cursor (stored by the engine with each page's records, in the same
//! transaction) is a small JSON document:
//! `{"since": S, "bound": B, "high": H, "page": P, "pages": N}`:
//! - `since` — the incremental high-water mark reached by the previous complete run;
//! - `bound` — the lower bound this run sends as `$cursor` (`since` minus the look-back — the
//!   flow's `overlap` and `incremental.look_back` — fixed for the whole run, so a page boundary
//!   inside a run of equal cursor values is handled by the API's own pagination, never by
//!   moving the bound);
//! - `high` — the largest cursor value seen so far in this run;
//! - `page` — the pagination state of the next page (offset, page number, token, `Link` URL),
//!   absent between runs;
//! - `pages` — pages taken in this run (bounded by `max_pages`).
//!
//! When a run ends, `since` becomes `high` (never lower than before) and the next run starts
//! again at `since − look-back`, **inclusive** (`>=`): the records at the boundary are read
//! again and the journal drops them (same id and version). So a record whose value equals the
//! boundary is never lost, and never journaled twice.
//!
//! A crash between pages resumes the run from the stored `page`. A stored cursor that is not
//! such a document (set by hand) is taken as `since`.
//!
//! A record that *maps* into something invalid is the engine's to reject (journaled as rejected
//! and dead-lettered, never blocking the feed). A jq program that *fails* on a record (`id`,
//! `version`, `map`, `incremental.field`: a type error, an empty id) stops the read at that
//! page with the record's index, and the cursor stays: that is a configuration that does not
//! fit the data, and skipping the record would lose it. Write programs that give something for
//! every record (`// null`) and let validation judge.
//!
//! Guards: a next token, URL or GraphQL `endCursor` equal to the current one is an error (an
//! API stuck on one page would otherwise be read forever); so is a run longer than `max_pages`
//! pages; a `Link` to another origin is refused (it would receive the credentials).
//!
//! Must never: move the cursor past a record it did not return; follow a page to another host.

use super::client::Client;
use super::config::{CursorFormat, Incremental, Pagination, Read};
use super::jq::Vars;
use super::limits::headers_json;
use chrono::{DateTime, SecondsFormat, Utc};
use concord_core::Kind;
use concord_engine::connector::{Captured, DeliveryError, Page, ReadRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cmp::Ordering;

/// Longest page token or URL kept in the cursor.
const MAX_TOKEN: usize = 4096;

/// The durable cursor of a kind's polling (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<Value>,
    #[serde(default)]
    pub pages: u64,
}

impl RunState {
    pub fn decode(cursor: Option<&str>) -> RunState {
        match cursor {
            None => RunState::default(),
            Some(c) if c.trim_start().starts_with('{') => {
                serde_json::from_str(c).unwrap_or_else(|_| RunState {
                    since: Some(c.to_string()),
                    ..RunState::default()
                })
            }
            // "done" is the engine's mark of a finished migration; anything else is a bound.
            Some(c) => RunState {
                since: Some(c.to_string()),
                ..RunState::default()
            },
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn permanent(kind: Kind, msg: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Permanent {
        reason: format!("options.read.{kind}: {msg}"),
    }
}

/// Compare two cursor values of `format`.
fn compare(format: CursorFormat, a: &str, b: &str) -> Option<Ordering> {
    match format {
        CursorFormat::Rfc3339 => Some(parse_ts(a)?.cmp(&parse_ts(b)?)),
        CursorFormat::Number => Some(a.parse::<i64>().ok()?.cmp(&b.parse::<i64>().ok()?)),
        CursorFormat::Text => Some(a.cmp(b)),
    }
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The lower bound of a new run: `since` minus the look-back (timestamps only).
fn run_bound(
    inc: &Incremental,
    since: Option<&str>,
    overlap: std::time::Duration,
) -> Option<String> {
    let since = since.or(inc.start.as_deref())?;
    let back = overlap.max(inc.look_back);
    if inc.format != CursorFormat::Rfc3339 || back.is_zero() {
        return Some(since.to_string());
    }
    let t = parse_ts(since)?;
    let back = chrono::Duration::from_std(back).unwrap_or(chrono::Duration::zero());
    let b = t.checked_sub_signed(back).unwrap_or(t);
    Some(b.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn cursor_value(format: CursorFormat, v: &str) -> Value {
    match format {
        CursorFormat::Number => v
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(v.to_string())),
        _ => Value::String(v.to_string()),
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `rel="next"` target of an RFC 8288 `Link` header.
pub fn link_next(header: &str) -> Option<String> {
    for part in header.split(',') {
        let part = part.trim();
        let (target, params) = part.split_once('>')?;
        let target = target.trim().strip_prefix('<')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|r| {
                    r.trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|x| x == "next")
                })
                .unwrap_or(false)
        });
        if is_next {
            return Some(target.to_string());
        }
    }
    None
}

/// Read one page of `kind` (`snapshot`: a full listing, no incremental bound).
pub async fn read_page(
    client: &Client,
    kind: Kind,
    cfg: &Read,
    req: &ReadRequest<'_>,
    snapshot: bool,
) -> Result<Page, DeliveryError> {
    let mut state = RunState::decode(req.cursor);
    let inc = if snapshot {
        None
    } else {
        cfg.incremental.as_ref()
    };
    if state.page.is_none() {
        // A new run.
        state.bound = inc.and_then(|i| run_bound(i, state.since.as_deref(), req.overlap));
        state.high = None;
        state.pages = 0;
        state.page = match &cfg.pagination {
            Pagination::Offset { .. } => Some(Value::from(0)),
            Pagination::Page { start, .. } => Some(Value::from(*start)),
            _ => None,
        };
    }
    let limit = req.limit.clamp(1, 10_000);
    let cursor_var = match (inc, &state.bound) {
        (Some(i), Some(b)) => cursor_value(i.format, b),
        _ => Value::Null,
    };
    let vars = Vars::new()
        .with("cursor", cursor_var)
        .with("page", state.page.clone().unwrap_or(Value::Null))
        .with("limit", Value::from(limit as u64));
    let mut prepared = client
        .prepare_for(&cfg.request, &Value::Null, &vars, Some(kind))
        .await?;
    if let (Pagination::Link, Some(Value::String(next))) = (&cfg.pagination, &state.page) {
        let url = client.resolve(next)?;
        if !client.same_origin(&url) {
            return Err(permanent(
                kind,
                format!("the next page's Link `{next}` is on another origin; refused"),
            ));
        }
        prepared.url = url;
    }
    let sent = client.send(prepared).await?;
    client.classify(&cfg.request, &sent).await?;
    let env = client.env(Some(kind));
    let body_vars = Vars::new()
        .with("vars", client.vars().clone())
        .with("headers", headers_json(&sent.headers))
        .with("status", Value::from(sent.status))
        .with("page", state.page.clone().unwrap_or(Value::Null))
        .with("limit", Value::from(limit as u64));
    let raw = match &cfg.records {
        None => sent.body.clone(),
        Some(p) => p
            .run(&sent.body, &body_vars, &env)
            .await
            .map_err(|e| permanent(kind, format!("records: {e}")))?,
    };
    let raw = match raw {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => {
            return Err(permanent(
                kind,
                format!(
                    "records: expected an array, got {}",
                    super::limits::snippet(&other)
                ),
            ))
        }
    };
    let rv = Vars::new().with("vars", client.vars().clone());
    let mut records = Vec::with_capacity(raw.len());
    for (i, rec) in raw.iter().enumerate() {
        let at = |what: &str, e: String| permanent(kind, format!("{what} of record {i}: {e}"));
        let id = cfg.id.run(rec, &rv, &env).await.map_err(|e| at("id", e))?;
        let external_id = as_text(&id).ok_or_else(|| {
            at(
                "id",
                format!(
                    "gave {}, expected a non-empty string or a number",
                    super::limits::snippet(&id)
                ),
            )
        })?;
        let mut cursor = None;
        if let Some(i) = inc {
            let v = i
                .field
                .run(rec, &rv, &env)
                .await
                .map_err(|e| at("incremental.field", e))?;
            let text = as_text(&v).ok_or_else(|| {
                at(
                    "incremental.field",
                    format!(
                        "gave {}, expected a {:?} value",
                        super::limits::snippet(&v),
                        i.format
                    ),
                )
            })?;
            if compare(i.format, &text, &text).is_none() {
                return Err(at(
                    "incremental.field",
                    format!("`{text}` is not a {:?} value", i.format),
                ));
            }
            let higher = match &state.high {
                None => true,
                Some(h) => compare(i.format, &text, h) == Some(Ordering::Greater),
            };
            if higher {
                state.high = Some(text.clone());
            }
            cursor = Some(text);
        }
        let version = match &cfg.version {
            Some(p) => as_text(&p.run(rec, &rv, &env).await.map_err(|e| at("version", e))?),
            None => cursor,
        };
        let record = match &cfg.map {
            Some(p) => p.run(rec, &rv, &env).await.map_err(|e| at("map", e))?,
            None => rec.clone(),
        };
        records.push(Captured {
            kind,
            external_id,
            version,
            record,
        });
    }

    // The next page, if any.
    let n = records.len();
    let has_more = async |p: &Option<super::jq::Program>| -> Result<Option<bool>, DeliveryError> {
        match p {
            None => Ok(None),
            Some(p) => p
                .test(&sent.body, &body_vars, &env)
                .await
                .map(Some)
                .map_err(|e| permanent(kind, format!("pagination.has_more: {e}"))),
        }
    };
    let next: Option<Value> = match &cfg.pagination {
        Pagination::None => None,
        Pagination::Cursor { next, has_more: hm } => {
            let t = next
                .run(&sent.body, &body_vars, &env)
                .await
                .map_err(|e| permanent(kind, format!("pagination.next: {e}")))?;
            match (as_text(&t), has_more(hm).await?) {
                (None, _) | (_, Some(false)) => None,
                (Some(t), _) => Some(Value::String(t)),
            }
        }
        Pagination::Link => sent
            .headers
            .get_all("link")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(link_next)
            .map(Value::String),
        Pagination::Page { has_more: hm, .. } => {
            let more = has_more(hm).await?.unwrap_or(n > 0);
            let cur = state.page.as_ref().and_then(Value::as_i64).unwrap_or(1);
            more.then(|| Value::from(cur.saturating_add(1)))
        }
        Pagination::Offset { has_more: hm } => {
            let more = has_more(hm).await?.unwrap_or(n > 0);
            if more && n == 0 {
                return Err(permanent(
                    kind,
                    "pagination.has_more says there is more, but the page is empty: the offset cannot advance",
                ));
            }
            let cur = state.page.as_ref().and_then(Value::as_i64).unwrap_or(0);
            more.then(|| Value::from(cur.saturating_add(n as i64)))
        }
        Pagination::Graphql { page_info } => {
            let info = page_info
                .run(&sent.body, &body_vars, &env)
                .await
                .map_err(|e| permanent(kind, format!("pagination.page_info: {e}")))?;
            let more = info
                .get("hasNextPage")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match (more, info.get("endCursor").and_then(as_text)) {
                (true, Some(c)) => Some(Value::String(c)),
                (true, None) => {
                    return Err(permanent(
                        kind,
                        "pagination.page_info: hasNextPage is true but there is no endCursor",
                    ))
                }
                (false, _) => None,
            }
        }
    };
    if let Some(nx) = &next {
        let text = as_text(nx).unwrap_or_default();
        if text.len() > MAX_TOKEN {
            return Err(permanent(
                kind,
                format!("the next page's token is longer than {MAX_TOKEN} bytes"),
            ));
        }
        let repeated = match (&cfg.pagination, &state.page) {
            (
                Pagination::Cursor { .. } | Pagination::Graphql { .. } | Pagination::Link,
                Some(cur),
            ) => cur == nx,
            _ => false,
        };
        if repeated {
            return Err(permanent(
                kind,
                format!("the API gave the same next page `{text}` twice; stopping instead of reading it forever"),
            ));
        }
        if state.pages + 1 >= cfg.max_pages {
            return Err(permanent(
                kind,
                format!(
                    "more than max_pages = {} pages in one run (raise options.read.{kind}.max_pages if the listing is really that long)",
                    cfg.max_pages
                ),
            ));
        }
    }
    let more = next.is_some();
    if more {
        state.page = next;
        state.pages += 1;
    } else {
        // The run is complete: the next one starts at the highest value seen (never lower).
        if let (Some(i), Some(h)) = (inc, state.high.take()) {
            let keep_old = state
                .since
                .as_deref()
                .is_some_and(|s| compare(i.format, s, &h) == Some(Ordering::Greater));
            if !keep_old {
                state.since = Some(h);
            }
        }
        state.page = None;
        state.bound = None;
        state.pages = 0;
    }
    Ok(Page {
        records,
        cursor: Some(state.encode()),
        more,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            link_next(
                r#"<https://a.example/x?page=2>; rel="next", <https://a.example/x?page=9>; rel="last""#
            ),
            Some("https://a.example/x?page=2".into())
        );
        assert_eq!(
            link_next(r#"<https://a.example/x?page=1>; rel="prev first""#),
            None
        );
        assert_eq!(
            link_next(r#"</x?p=3>; rel="prev next""#),
            Some("/x?p=3".into())
        );
        assert_eq!(link_next("garbage"), None);
        assert_eq!(link_next(""), None);
    }

    #[test]
    fn cursors_round_trip_and_hand_set_values_are_bounds() {
        let s = RunState {
            since: Some("2026-01-01T00:00:00Z".into()),
            page: Some(Value::from(40)),
            pages: 2,
            ..RunState::default()
        };
        assert_eq!(RunState::decode(Some(&s.encode())), s);
        assert_eq!(
            RunState::decode(Some("2026-01-01T00:00:00Z"))
                .since
                .as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            RunState::decode(Some("{not json")).since.as_deref(),
            Some("{not json")
        );
    }

    #[test]
    fn look_back_moves_timestamp_bounds_only() {
        let inc = |format, look_back| Incremental {
            field: super::super::jq::Program::compile(".t", &["vars"]).unwrap(),
            format,
            look_back,
            start: None,
        };
        let d = std::time::Duration::from_secs;
        assert_eq!(
            run_bound(
                &inc(CursorFormat::Rfc3339, d(2)),
                Some("2026-01-01T00:00:10.5Z"),
                d(1)
            ),
            Some("2026-01-01T00:00:08.500Z".into())
        );
        assert_eq!(
            run_bound(&inc(CursorFormat::Number, d(0)), Some("41"), d(5)),
            Some("41".into())
        );
        assert_eq!(
            run_bound(&inc(CursorFormat::Rfc3339, d(0)), None, d(5)),
            None
        );
        assert_eq!(
            compare(
                CursorFormat::Rfc3339,
                "2026-01-01T00:00:00+01:00",
                "2025-12-31T23:30:00Z"
            ),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(CursorFormat::Number, "9", "10"),
            Some(Ordering::Less)
        );
        assert_eq!(compare(CursorFormat::Number, "x", "10"), None);
    }
}

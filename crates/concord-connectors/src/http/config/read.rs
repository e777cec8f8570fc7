//! `options.read.KIND`: how one kind is polled — the request, the records and their id,
//! version and mapping, pagination (cursor, link, page, offset, GraphQL) and incremental
//! (changed-since) cursors. No I/O: the reading itself is `http/paginate.rs`.

use super::super::jq::Program;
use super::request::{
    de, duration, opt_program, plain_request, program, request, RawRequest, Request, Result,
};
use super::{READ_REQUEST, RECORD, RESPONSE};
use crate::options::err;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// How the records of a response come in pages.
#[derive(Debug, Clone, PartialEq)]
pub enum Pagination {
    /// One request is the whole answer.
    None,
    /// A token in the body (`next`: jq → token or null), sent back as `$page`.
    Cursor {
        next: Program,
        has_more: Option<Program>,
    },
    /// RFC 8288 `Link: <…>; rel="next"` (same origin as the endpoint only).
    Link,
    /// `$page` = page number from `start`; next while `has_more` (else while the page is not
    /// empty).
    Page {
        start: i64,
        has_more: Option<Program>,
    },
    /// `$page` = offset of the page's first record (0 first); next while `has_more` (else
    /// while the page is not empty).
    Offset { has_more: Option<Program> },
    /// GraphQL connections: `page_info` (jq) gives `{hasNextPage, endCursor}`; `$page` is the
    /// `endCursor` (null first).
    Graphql { page_info: Program },
}

/// The type of an incremental cursor's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorFormat {
    /// RFC 3339 timestamps (look-back applies).
    Rfc3339,
    /// Integers.
    Number,
    /// Opaque strings ordered as text.
    Text,
}

/// Changed-since reading by a field of the records.
#[derive(Debug, Clone, PartialEq)]
pub struct Incremental {
    /// jq on a record: its cursor value.
    pub field: Program,
    pub format: CursorFormat,
    /// Re-read this much before the stored bound (timestamps), on top of the flow's overlap.
    pub look_back: Duration,
    /// Lower bound of the very first run (`$cursor`), default none (`null`).
    pub start: Option<String>,
}

/// How one kind is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub request: Request,
    pub records: Option<Program>,
    pub id: Program,
    pub version: Option<Program>,
    pub map: Option<Program>,
    pub pagination: Pagination,
    pub incremental: Option<Incremental>,
    pub max_pages: u64,
    /// A full listing through an export job (`read_snapshot` only).
    pub bulk: Option<super::bulk::BulkExport>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRead {
    /// The request (its templates see `$cursor`, `$page`, `$limit`, `$vars`).
    request: Option<RawRequest>,
    /// jq on the response body: the array of records (default `.`).
    records: Option<String>,
    /// jq on a record: its id at the endpoint (default `.id`).
    id: Option<String>,
    /// jq on a record: its version (default: the incremental field, else a content hash).
    version: Option<String>,
    /// jq on a record: the canonical record (default: the record as is; a flow's `map_in`
    /// runs after it).
    map: Option<String>,
    pagination: Option<Value>,
    incremental: Option<RawIncremental>,
    /// Overrides `options.max_pages` for this kind.
    max_pages: Option<u64>,
    /// Full listings through an asynchronous export job (`config/bulk.rs`).
    bulk: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIncremental {
    /// jq on a record: the cursor value (e.g. `.updated_at`).
    field: Option<String>,
    /// `rfc3339` (default), `number` or `text`.
    format: Option<String>,
    /// Extra look-back before the stored bound (timestamps only), on top of the flow's
    /// `overlap`.
    look_back: Option<String>,
    /// Lower bound of the first run (default: none, `$cursor` is null).
    start: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPagination {
    /// `none` (default), `cursor`, `link`, `page`, `offset` or `graphql`.
    kind: Option<String>,
    /// `cursor`: jq on the body → the next token (null/empty: done).
    next: Option<String>,
    /// `cursor`, `page`, `offset`: jq test on the body → is there another page?
    has_more: Option<String>,
    /// `page`: the first page's number (default 1).
    start: Option<i64>,
    /// `graphql`: jq on the body → `{hasNextPage, endCursor}`.
    page_info: Option<String>,
}

pub(super) fn pagination(path: &str, v: Option<&Value>) -> Result<Pagination> {
    let Some(v) = v else {
        return Ok(Pagination::None);
    };
    let r: RawPagination = de(v, path)?;
    let kind = r.kind.as_deref().unwrap_or("none");
    let allowed: &[&str] = match kind {
        "none" | "link" => &[],
        "cursor" => &["next", "has_more"],
        "page" => &["has_more", "start"],
        "offset" => &["has_more"],
        "graphql" => &["page_info"],
        other => {
            return Err(err(
                &format!("{path}.kind"),
                format!("`{other}` is not one of none, cursor, link, page, offset, graphql"),
            ))
        }
    };
    for (field, present) in [
        ("next", r.next.is_some()),
        ("has_more", r.has_more.is_some()),
        ("start", r.start.is_some()),
        ("page_info", r.page_info.is_some()),
    ] {
        if present && !allowed.contains(&field) {
            return Err(err(
                &format!("{path}.{field}"),
                format!("is not used by pagination kind `{kind}`"),
            ));
        }
    }
    let has_more = opt_program(
        &format!("{path}.has_more"),
        r.has_more.as_ref(),
        RESPONSE,
        &[],
    )?;
    Ok(match kind {
        "cursor" => Pagination::Cursor {
            next: program(
                &format!("{path}.next"),
                r.next.as_deref().ok_or_else(|| {
                    err(
                        &format!("{path}.next"),
                        "is required: jq giving the next page's token (e.g. `.next_cursor`)",
                    )
                })?,
                RESPONSE,
            )?,
            has_more,
        },
        "link" => Pagination::Link,
        "page" => Pagination::Page {
            start: r.start.unwrap_or(1),
            has_more,
        },
        "offset" => Pagination::Offset { has_more },
        "graphql" => Pagination::Graphql {
            page_info: program(
                &format!("{path}.page_info"),
                r.page_info.as_deref().ok_or_else(|| {
                    err(
                        &format!("{path}.page_info"),
                        "is required: jq giving the connection's pageInfo (e.g. `.data.orders.pageInfo`)",
                    )
                })?,
                RESPONSE,
            )?,
        },
        _ => Pagination::None,
    })
}

pub(super) fn read(
    path: &str,
    v: &Value,
    max_pages: u64,
    max_response_bytes: usize,
) -> Result<Read> {
    let r: RawRead = de(v, path)?;
    let raw_req = r
        .request
        .ok_or_else(|| err(&format!("{path}.request"), "is required"))?;
    plain_request(&format!("{path}.request"), &raw_req)?;
    let request = request(&format!("{path}.request"), &raw_req, READ_REQUEST, &[])?;
    let incremental = match r.incremental {
        None => None,
        Some(i) => {
            let at = format!("{path}.incremental");
            let format = match i.format.as_deref() {
                None | Some("rfc3339") => CursorFormat::Rfc3339,
                Some("number") => CursorFormat::Number,
                Some("text") => CursorFormat::Text,
                Some(other) => {
                    return Err(err(
                        &format!("{at}.format"),
                        format!("`{other}` is not one of rfc3339, number, text"),
                    ))
                }
            };
            if i.look_back.is_some() && format != CursorFormat::Rfc3339 {
                return Err(err(
                    &format!("{at}.look_back"),
                    "applies only to rfc3339 cursors",
                ));
            }
            if let Some(s) = &i.start {
                let ok = match format {
                    CursorFormat::Rfc3339 => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
                    CursorFormat::Number => s.parse::<i64>().is_ok(),
                    CursorFormat::Text => true,
                };
                if !ok {
                    return Err(err(
                        &format!("{at}.start"),
                        format!("`{s}` is not a value of format {format:?}"),
                    ));
                }
            }
            Some(Incremental {
                field: program(
                    &format!("{at}.field"),
                    i.field.as_deref().ok_or_else(|| {
                        err(
                            &format!("{at}.field"),
                            "is required: jq giving a record's cursor value (e.g. `.updated_at`)",
                        )
                    })?,
                    RECORD,
                )?,
                format,
                look_back: duration(
                    &format!("{at}.look_back"),
                    i.look_back.as_deref(),
                    Duration::ZERO,
                )?,
                start: i.start,
            })
        }
    };
    let max_pages = match r.max_pages {
        Some(0) => return Err(err(&format!("{path}.max_pages"), "must be at least 1")),
        Some(n) => n,
        None => max_pages,
    };
    Ok(Read {
        request,
        records: opt_program(
            &format!("{path}.records"),
            r.records.as_ref(),
            RESPONSE,
            &[],
        )?,
        id: program(
            &format!("{path}.id"),
            r.id.as_deref().unwrap_or(".id"),
            RECORD,
        )?,
        version: opt_program(&format!("{path}.version"), r.version.as_ref(), RECORD, &[])?,
        map: opt_program(&format!("{path}.map"), r.map.as_ref(), RECORD, &[])?,
        pagination: pagination(&format!("{path}.pagination"), r.pagination.as_ref())?,
        incremental,
        max_pages,
        bulk: r
            .bulk
            .as_ref()
            .map(|b| super::bulk::bulk(&format!("{path}.bulk"), b, max_response_bytes))
            .transpose()?,
    })
}

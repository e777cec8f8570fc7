//! `options.read.KIND.bulk`: a full listing (`read_snapshot`) through an asynchronous export
//! job — start it, poll it by id until it is done, download its result as JSON lines from the
//! URL it gives (Shopify's `bulkOperationRunQuery`, and any API of the same shape). No I/O: the
//! reading itself is `http/bulk.rs`.

use super::super::jq::Program;
use super::request::{de, duration, opt_program, plain_request, program, request, RawRequest};
use super::request::{Request, Result};
use super::{READ_REQUEST, RECORD};
use crate::options::err;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// The poll request's templates and body: `$job` is the job's id.
pub const BULK_POLL: &[&str] = &["vars", "job"];
/// Programs on the start and poll answers (`job`, `status`, `error`, `url`).
pub const BULK_ANSWER: &[&str] = &["vars", "job", "headers", "status"];

pub const DEFAULT_BULK_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_BULK_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_BULK_MAX_LINE_BYTES: u64 = 1024 * 1024;
pub const DEFAULT_BULK_MAX_BYTES: u64 = 1024 * 1024 * 1024;

/// A full listing read through an export job.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkExport {
    /// The request that starts the job.
    pub start: Request,
    /// jq on the start answer: the job's id.
    pub job: Program,
    /// The request that reads the job's state (`$job`).
    pub poll: Request,
    /// jq on the poll answer: the job's status, as text.
    pub status: Program,
    /// Statuses meaning "still working: poll again".
    pub running: Vec<String>,
    /// Statuses meaning "finished: the result is at `url`". Any other status is a failure.
    pub done: Vec<String>,
    /// jq on the poll answer: what to name in a failure (an error code), optional.
    pub error: Option<Program>,
    /// jq on the poll answer of a finished job: the result's URL, or null for an empty result.
    pub url: Program,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_line_bytes: usize,
    pub max_bytes: u64,
    /// jq on one line: the record, an array of records, or null to skip the line (default `.`).
    pub records: Option<Program>,
    /// jq on a record: its id / version / canonical record; default: the read's own.
    pub id: Option<Program>,
    pub version: Option<Program>,
    pub map: Option<Program>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBulk {
    /// The request that starts the export job (templates see `$vars`, `$limit`).
    start: Option<RawRequest>,
    /// jq on the start answer → the job's id (a string or number).
    job: Option<String>,
    /// The request polling the job (templates see `$job`, `$vars`).
    poll: Option<RawRequest>,
    /// jq on the poll answer → the job's status (text).
    status: Option<String>,
    /// Statuses that mean "still running".
    running: Option<Vec<String>>,
    /// Statuses that mean "done, the result is ready". Anything else is a failure.
    done: Option<Vec<String>>,
    /// jq on the poll answer → a text naming the failure (an error code).
    error: Option<String>,
    /// jq on the poll answer → the result's URL (null: an empty result).
    url: Option<String>,
    /// Wait between polls (default 2s).
    interval: Option<String>,
    /// Longest wait for the job in one read (default 10m).
    timeout: Option<String>,
    /// Longest line of the result, in bytes (default 1 MiB).
    max_line_bytes: Option<u64>,
    /// Largest result read, in bytes (default 1 GiB).
    max_bytes: Option<u64>,
    /// jq on one line → a record, an array of records, or null (skip).
    records: Option<String>,
    id: Option<String>,
    version: Option<String>,
    map: Option<String>,
}

fn statuses(path: &str, v: Option<Vec<String>>) -> Result<Vec<String>> {
    let v = v.ok_or_else(|| err(path, "is required: a list of status values"))?;
    if v.is_empty() {
        return Err(err(path, "must name at least one status"));
    }
    for (i, s) in v.iter().enumerate() {
        if s.trim().is_empty() {
            return Err(err(&format!("{path}[{i}]"), "is empty"));
        }
    }
    Ok(v)
}

pub(super) fn bulk(path: &str, v: &Value, max_response_bytes: usize) -> Result<BulkExport> {
    let r: RawBulk = de(v, path)?;
    let required = |field: &str, what: &str| err(&format!("{path}.{field}"), what.to_string());
    let start_raw = r
        .start
        .ok_or_else(|| required("start", "is required: the request that starts the job"))?;
    plain_request(&format!("{path}.start"), &start_raw)?;
    let start = request(&format!("{path}.start"), &start_raw, READ_REQUEST, &[])?;
    let poll_raw = r.poll.ok_or_else(|| {
        required(
            "poll",
            "is required: the request that reads the job's state by `$job`",
        )
    })?;
    plain_request(&format!("{path}.poll"), &poll_raw)?;
    let poll = request(&format!("{path}.poll"), &poll_raw, BULK_POLL, &[])?;
    let prog = |field: &str, src: Option<&String>, hint: &str| -> Result<Program> {
        let at = format!("{path}.{field}");
        let s = src.ok_or_else(|| err(&at, format!("is required: {hint}")))?;
        program(&at, s, BULK_ANSWER)
    };
    let running = statuses(&format!("{path}.running"), r.running)?;
    let done = statuses(&format!("{path}.done"), r.done)?;
    if let Some(s) = done.iter().find(|s| running.contains(s)) {
        return Err(err(
            &format!("{path}.done"),
            format!("`{s}` is also in `running`"),
        ));
    }
    let interval = duration(
        &format!("{path}.interval"),
        r.interval.as_deref(),
        DEFAULT_BULK_INTERVAL,
    )?;
    if interval.is_zero() || interval > Duration::from_secs(600) {
        return Err(err(
            &format!("{path}.interval"),
            "must be more than 0 and at most 10m",
        ));
    }
    let timeout = duration(
        &format!("{path}.timeout"),
        r.timeout.as_deref(),
        DEFAULT_BULK_TIMEOUT,
    )?;
    if timeout < interval || timeout > Duration::from_secs(24 * 3600) {
        return Err(err(
            &format!("{path}.timeout"),
            "must be at least the interval and at most 24h",
        ));
    }
    let max_bytes = r.max_bytes.unwrap_or(DEFAULT_BULK_MAX_BYTES);
    if max_bytes < 1024 {
        return Err(err(&format!("{path}.max_bytes"), "must be at least 1024"));
    }
    let max_line = r
        .max_line_bytes
        .unwrap_or(DEFAULT_BULK_MAX_LINE_BYTES.min(max_response_bytes as u64));
    if max_line < 64 || max_line > max_bytes || max_line > max_response_bytes as u64 {
        return Err(err(
            &format!("{path}.max_line_bytes"),
            "must be at least 64 and at most max_bytes and options.max_response_bytes",
        ));
    }
    Ok(BulkExport {
        start,
        job: prog(
            "job",
            r.job.as_ref(),
            "jq giving the job's id from the start answer",
        )?,
        poll,
        status: prog(
            "status",
            r.status.as_ref(),
            "jq giving the job's status from the poll answer",
        )?,
        running,
        done,
        error: opt_program(&format!("{path}.error"), r.error.as_ref(), BULK_ANSWER, &[])?,
        url: prog(
            "url",
            r.url.as_ref(),
            "jq giving the result's URL (or null) from the poll answer",
        )?,
        interval,
        timeout,
        max_line_bytes: usize::try_from(max_line).unwrap_or(usize::MAX),
        max_bytes,
        records: opt_program(&format!("{path}.records"), r.records.as_ref(), RECORD, &[])?,
        id: opt_program(&format!("{path}.id"), r.id.as_ref(), RECORD, &[])?,
        version: opt_program(&format!("{path}.version"), r.version.as_ref(), RECORD, &[])?,
        map: opt_program(&format!("{path}.map"), r.map.as_ref(), RECORD, &[])?,
    })
}

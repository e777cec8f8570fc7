//! Full listings through an asynchronous export job (`options.read.KIND.bulk`): the
//! `read_snapshot` of a kind that declares one starts the job (Shopify's
//! `bulkOperationRunQuery`), polls it by id every `interval` until it is done (at most
//! `timeout` in one read), then streams its result — JSON lines at the URL the job gives —
//! into pages of at most `limit` records.
//!
//! Pages and cursors: the page token is `{"bulk_job": ID, "line": N}`, N the result's
//! non-blank lines consumed so far. Between pages the open download is kept in memory and
//! continues where it stopped; after a restart (or any other token) the result is downloaded
//! again from its URL (polled again by the job's id) and N lines are skipped — no line is read
//! twice into a snapshot, none is lost. A page is never empty while more lines follow (the
//! engine takes an empty page for the end). A job still running when `timeout` passes is a
//! transient error, and the next read polls the same job instead of starting another.
//!
//! Bounds: each line at most `max_line_bytes`, the whole result at most `max_bytes`, read
//! chunk by chunk (never held whole); polls at most `timeout / interval`.
//!
//! Must never: send the endpoint's credential or configured headers to the result's URL (it is
//! on another origin; see [`Client::download`]), store or print that URL (a signed URL is a
//! credential to the data), hold a whole result in memory, or wait longer than `timeout` in one
//! read. The poll wait is this connector's one sleep, declared by the configuration.

use super::client::Client;
use super::config::{BulkExport, Read};
use super::jq::Vars;
use super::limits::{headers_json, snippet};
use concord_core::Kind;
use concord_engine::connector::{Captured, DeliveryError, Page, ReadRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;

/// The page token of a listing read through an export job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Token {
    bulk_job: String,
    line: u64,
}

/// The export jobs open on an endpoint, by kind (in memory only).
#[derive(Default)]
pub struct Exports(tokio::sync::Mutex<BTreeMap<Kind, Open>>);

impl std::fmt::Debug for Exports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exports")
    }
}

struct Open {
    job: String,
    /// `None` while the job runs; `Some(None)`: done with an empty result.
    url: Option<Option<reqwest::Url>>,
    lines: Option<Lines>,
}

fn permanent(kind: Kind, msg: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Permanent {
        reason: format!("options.read.{kind}.bulk: {msg}"),
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The next page of a full listing of `kind` through its export job.
pub async fn read_snapshot(
    client: &Client,
    exports: &Exports,
    kind: Kind,
    cfg: &Read,
    b: &BulkExport,
    req: &ReadRequest<'_>,
) -> Result<Page, DeliveryError> {
    let token = req
        .cursor
        .and_then(|c| serde_json::from_str::<Token>(c).ok());
    let mut open = exports.0.lock().await;
    let (job, skip) = match &token {
        Some(t) => (t.bulk_job.clone(), t.line),
        None => {
            // A new listing: poll the job a previous read left running, else start one.
            let job = match open.get(&kind) {
                Some(o) if o.url.is_none() => o.job.clone(),
                _ => start(client, kind, b, req).await?,
            };
            (job, 0)
        }
    };
    let known = open
        .get(&kind)
        .filter(|o| o.job == job)
        .and_then(|o| o.url.clone());
    let url = match known {
        Some(u) => u,
        None => {
            if token.is_none() {
                open.insert(
                    kind,
                    Open {
                        job: job.clone(),
                        url: None,
                        lines: None,
                    },
                );
            }
            match wait(client, kind, b, &job).await {
                Ok(u) => u,
                Err(e) => {
                    // A failed job is forgotten (the next listing starts another); one still
                    // running (timeout, throttled poll) is polled again next time.
                    if e.is_permanent() && open.get(&kind).is_some_and(|o| o.job == job) {
                        open.remove(&kind);
                    }
                    return Err(e);
                }
            }
        }
    };
    let Some(url) = url else {
        open.remove(&kind);
        return Ok(Page {
            records: Vec::new(),
            cursor: None,
            more: false,
        });
    };
    let kept = open
        .get_mut(&kind)
        .filter(|o| o.job == job)
        .and_then(|o| o.lines.take())
        .filter(|l| l.line == skip);
    let mut lines = match kept {
        Some(l) => l,
        None => {
            let mut l = Lines::new(client.download(&url).await?, b);
            for _ in 0..skip {
                if l.next(kind).await?.is_none() {
                    return Err(permanent(
                        kind,
                        format!("the result of job `{job}` has fewer than {skip} lines: it is not the one this listing was reading"),
                    ));
                }
            }
            l
        }
    };
    let limit = req.limit.clamp(1, 10_000);
    let env = client.env(Some(kind));
    let rv = Vars::new().with("vars", client.vars().clone());
    let mut records = Vec::new();
    while records.len() < limit {
        let Some(raw) = lines.next(kind).await? else {
            break;
        };
        let n = lines.line;
        let at = |what: &str, e: String| permanent(kind, format!("{what} of line {n}: {e}"));
        let line: Value = serde_json::from_slice(&raw).map_err(|e| {
            at(
                "JSON",
                format!(
                    "{e}: {}",
                    snippet(&Value::String(String::from_utf8_lossy(&raw).into_owned()))
                ),
            )
        })?;
        let items = match &b.records {
            None => vec![line],
            Some(p) => match p
                .run(&line, &rv, &env)
                .await
                .map_err(|e| at("records", e))?
            {
                Value::Null => Vec::new(),
                Value::Array(a) => a,
                other => vec![other],
            },
        };
        for rec in items {
            let id =
                b.id.as_ref()
                    .unwrap_or(&cfg.id)
                    .run(&rec, &rv, &env)
                    .await
                    .map_err(|e| at("id", e))?;
            let external_id = as_text(&id).ok_or_else(|| {
                at(
                    "id",
                    format!(
                        "gave {}, expected a non-empty string or a number",
                        snippet(&id)
                    ),
                )
            })?;
            let version = match b.version.as_ref().or(cfg.version.as_ref()) {
                Some(p) => as_text(&p.run(&rec, &rv, &env).await.map_err(|e| at("version", e))?),
                None => None,
            };
            let record = match b.map.as_ref().or(cfg.map.as_ref()) {
                Some(p) => p.run(&rec, &rv, &env).await.map_err(|e| at("map", e))?,
                None => rec,
            };
            records.push(Captured {
                kind,
                external_id,
                version,
                record,
            });
        }
    }
    let more = lines.peek(kind).await?;
    let cursor = Token {
        bulk_job: job.clone(),
        line: lines.line,
    };
    if more {
        open.insert(
            kind,
            Open {
                job,
                url: Some(Some(url)),
                lines: Some(lines),
            },
        );
    } else {
        open.remove(&kind);
    }
    Ok(Page {
        records,
        cursor: Some(serde_json::to_string(&cursor).unwrap_or_default()),
        more,
    })
}

/// Start the job: its id.
async fn start(
    client: &Client,
    kind: Kind,
    b: &BulkExport,
    req: &ReadRequest<'_>,
) -> Result<String, DeliveryError> {
    let vars = Vars::new()
        .with("cursor", Value::Null)
        .with("page", Value::Null)
        .with("limit", Value::from(req.limit as u64));
    let sent = client
        .call(&b.start, &Value::Null, &vars, Some(kind), &[])
        .await?;
    let av = Vars::new()
        .with("vars", client.vars().clone())
        .with("job", Value::Null)
        .with("headers", headers_json(&sent.headers))
        .with("status", Value::from(sent.status));
    let id = b
        .job
        .run(&sent.body, &av, &client.env(Some(kind)))
        .await
        .map_err(|e| permanent(kind, format!("job: {e}")))?;
    as_text(&id).ok_or_else(|| {
        permanent(
            kind,
            format!(
                "the start answer gave no job id (job gave {}): {}",
                snippet(&id),
                snippet(&sent.body)
            ),
        )
    })
}

/// Poll the job until it is done: its result's URL (`None`: an empty result).
async fn wait(
    client: &Client,
    kind: Kind,
    b: &BulkExport,
    job: &str,
) -> Result<Option<reqwest::Url>, DeliveryError> {
    let deadline = Instant::now() + b.timeout;
    let env = client.env(Some(kind));
    loop {
        let vars = Vars::new().with("job", Value::from(job));
        let sent = client
            .call(&b.poll, &Value::Null, &vars, Some(kind), &[])
            .await?;
        let av = Vars::new()
            .with("vars", client.vars().clone())
            .with("job", Value::from(job))
            .with("headers", headers_json(&sent.headers))
            .with("status", Value::from(sent.status));
        let st = b
            .status
            .run(&sent.body, &av, &env)
            .await
            .map_err(|e| permanent(kind, format!("status: {e}")))?;
        let st = as_text(&st).ok_or_else(|| {
            permanent(
                kind,
                format!(
                    "job `{job}`: status gave {} from {}",
                    snippet(&st),
                    snippet(&sent.body)
                ),
            )
        })?;
        if b.done.contains(&st) {
            let u = b
                .url
                .run(&sent.body, &av, &env)
                .await
                .map_err(|e| permanent(kind, format!("url: {e}")))?;
            return match u {
                Value::Null => Ok(None),
                Value::String(s) if s.is_empty() => Ok(None),
                Value::String(s) => reqwest::Url::parse(&s).map(Some).map_err(|e| {
                    permanent(
                        kind,
                        format!("job `{job}`: the result URL is not a URL: {e}"),
                    )
                }),
                other => Err(permanent(
                    kind,
                    format!("job `{job}`: url gave {}", snippet(&other)),
                )),
            };
        }
        if !b.running.contains(&st) {
            let why = match &b.error {
                Some(p) => p
                    .run(&sent.body, &av, &env)
                    .await
                    .ok()
                    .and_then(|v| as_text(&v))
                    .unwrap_or_else(|| "no error code".into()),
                None => "no error code".into(),
            };
            return Err(permanent(
                kind,
                format!("export job `{job}` ended {st} ({why}); the next listing starts a new one"),
            ));
        }
        if Instant::now() + b.interval > deadline {
            return Err(DeliveryError::Transient {
                reason: format!(
                    "options.read.{kind}.bulk: export job `{job}` still {st} after {:?}; the next read polls it again",
                    b.timeout
                ),
                retry_after: Some(b.interval),
            });
        }
        tokio::time::sleep(b.interval).await;
    }
}

/// A result read line by line, within the configured bounds.
struct Lines {
    resp: reqwest::Response,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    at: usize,
    eof: bool,
    /// Bytes received so far.
    read: u64,
    /// Non-blank lines handed out so far.
    line: u64,
    peeked: Option<Vec<u8>>,
    max_line: usize,
    max_bytes: u64,
}

impl Lines {
    fn new(resp: reqwest::Response, b: &BulkExport) -> Lines {
        Lines {
            resp,
            buf: Vec::new(),
            at: 0,
            eof: false,
            read: 0,
            line: 0,
            peeked: None,
            max_line: b.max_line_bytes,
            max_bytes: b.max_bytes,
        }
    }

    /// The next non-blank line, counted.
    async fn next(&mut self, kind: Kind) -> Result<Option<Vec<u8>>, DeliveryError> {
        let l = match self.peeked.take() {
            Some(l) => Some(l),
            None => self.raw(kind).await?,
        };
        if l.is_some() {
            self.line += 1;
        }
        Ok(l)
    }

    /// Is there another non-blank line?
    async fn peek(&mut self, kind: Kind) -> Result<bool, DeliveryError> {
        if self.peeked.is_none() {
            self.peeked = self.raw(kind).await?;
        }
        Ok(self.peeked.is_some())
    }

    async fn raw(&mut self, kind: Kind) -> Result<Option<Vec<u8>>, DeliveryError> {
        loop {
            if let Some(pos) = self.buf[self.at..].iter().position(|c| *c == b'\n') {
                let end = self.at + pos;
                let line = self.buf[self.at..end].trim_ascii().to_vec();
                self.at = end + 1;
                if line.len() > self.max_line {
                    return Err(self.too_long(kind));
                }
                if !line.is_empty() {
                    return Ok(Some(line));
                }
                continue;
            }
            if self.buf.len() - self.at > self.max_line {
                return Err(self.too_long(kind));
            }
            if self.eof {
                let line = self.buf[self.at..].trim_ascii().to_vec();
                self.at = self.buf.len();
                return Ok((!line.is_empty()).then_some(line));
            }
            // Drop what was read before taking more.
            self.buf.drain(..self.at);
            self.at = 0;
            match self.resp.chunk().await {
                Ok(Some(c)) => {
                    self.read += c.len() as u64;
                    if self.read > self.max_bytes {
                        return Err(permanent(
                            kind,
                            format!(
                                "the export's result is larger than max_bytes ({} bytes)",
                                self.max_bytes
                            ),
                        ));
                    }
                    self.buf.extend_from_slice(&c);
                }
                Ok(None) => self.eof = true,
                Err(e) => {
                    return Err(DeliveryError::Transient {
                        reason: format!(
                            "options.read.{kind}.bulk: the export's result broke off after {} bytes: {}",
                            self.read,
                            e.without_url()
                        ),
                        retry_after: None,
                    })
                }
            }
        }
    }

    fn too_long(&self, kind: Kind) -> DeliveryError {
        permanent(
            kind,
            format!(
                "line {} of the export's result is longer than max_line_bytes ({} bytes)",
                self.line + 1,
                self.max_line
            ),
        )
    }
}

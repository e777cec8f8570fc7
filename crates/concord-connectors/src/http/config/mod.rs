//! The `http` connector's options (`[endpoints.NAME.options]`), parsed and checked without I/O.
//!
//! Two stages, as for every connector: serde reads the raw tables (unknown fields refused, the
//! error at its path, e.g. `options.read.order.pagination.has_mor`), then [`Options::parse`]
//! checks every value and compiles every jq program and template once, naming the field of
//! anything wrong (`options.write.stock.upsert.path: placeholder …`). Nothing here does I/O.
//!
//! The reference of every option, with examples, is the README's "Connect any HTTP API"; the
//! doc comments of the raw structs (in each file below) are the same reference, field by field.
//!
//! Files by concern: `request.rs` (a request, its templates and programs, and the parsing
//! helpers every part shares), `auth.rs`, `limits.rs` (rate limits and error rules),
//! `read.rs` (reads, pagination, incremental cursors), `bulk.rs` (full listings through an
//! export job), `write.rs` (ops, steps, find, bulk),
//! `webhook.rs` (signatures, dedupe, routes); this file the whole: [`Options::parse`] and
//! [`Options::capabilities`]. Every checked type is re-exported here.
//!
//! Must never: do I/O, or print a secret (tokens, passwords, client secrets, webhook secrets —
//! every `Debug` here redacts them).

mod auth;
mod bulk;
mod limits;
mod read;
mod request;
mod webhook;
mod write;

pub use auth::{ApiKeyIn, Auth, Grant};
pub use bulk::{BulkExport, BULK_ANSWER, BULK_POLL};
pub use limits::{ErrorClass, ErrorRule, RateLimit, ResetKind};
pub use read::{CursorFormat, Incremental, Pagination, Read};
pub use request::Request;
pub use webhook::{
    Algorithm, Dedupe, Encoding, Route, Signature, SignedPart, TimestampFormat, Webhook,
};
pub use write::{Bulk, Find, IfMissing, Step, Write, OPS};

use super::template::Template;
use crate::options::err;
use auth::auth;
use concord_core::Kind;
use concord_engine::connector::{Capabilities, KindCaps, RateLimitProfile, ReadModes, WriteModes};
use limits::{error_rule, rate_limit, RawRateLimit};
use read::read;
use request::{de, templates, Result};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use webhook::webhook;
use write::write;

// ---- variable names offered to jq programs, per place -------------------------------------

/// Request templates and body of a read (`$cursor`: the incremental lower bound or null;
/// `$page`: the pagination state — offset, page number or token — null on a run's first page
/// for tokens; `$limit`: the page size).
pub const READ_REQUEST: &[&str] = &["vars", "cursor", "page", "limit"];
/// Programs on a response body (`records`, pagination's `next`/`has_more`/`page_info`;
/// `$page` and `$limit` are those the request was sent with).
pub const RESPONSE: &[&str] = &["vars", "headers", "status", "page", "limit"];
/// Programs on one record read (`id`, `version`, `map`, `incremental.field`).
pub const RECORD: &[&str] = &["vars"];
/// Webhook programs (`records`, `dedupe.body`, every route's programs).
pub const WEBHOOK: &[&str] = &["vars", "headers"];
/// Write programs (templates, bodies, `when`, `select`, `id`, `version`); the names of the
/// write's steps are bound too. `$record` is the record written, for the programs whose `.`
/// is a response (`select`, `find.select`: "the one of these that is this record").
pub const WRITE: &[&str] = &[
    "vars",
    "record",
    "key",
    "op",
    "refs",
    "id",
    "found",
    "idempotency_key",
    "status",
];
/// A bulk write's body: `.` is the array of items (`{record, key, op, id, refs}`).
pub const BULK: &[&str] = &["vars"];
/// Error rules (`.` is the response body, JSON or the text as a string).
pub const ERROR_RULE: &[&str] = &["vars", "status", "headers"];
/// The login request and its token program.
pub const LOGIN: &[&str] = &["vars", "headers", "status"];

/// Names a step may not take (they would shadow the variables above).
const RESERVED: &[&str] = &[
    "vars",
    "record",
    "key",
    "op",
    "refs",
    "id",
    "found",
    "idempotency_key",
    "status",
    "headers",
    "cursor",
    "page",
    "limit",
    "dest",
    "source",
    "kind",
];

/// Defaults.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
pub const DEFAULT_MAX_PAGES: u64 = 10_000;
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(60);

// ---- raw (serde) --------------------------------------------------------------------------

/// `[endpoints.NAME.options]` of `connector = "http"`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    /// Constants bound as `$vars` in every jq program and template (ids of the API's own
    /// objects, a sales channel, a currency…). Values may be `${ENV}` references.
    vars: Option<Map<String, Value>>,
    /// Headers sent with every request: name → template.
    headers: Option<BTreeMap<String, String>>,
    /// How requests authenticate (default: none).
    auth: Option<Value>,
    /// The API's published budget and its rate-limit headers.
    rate_limit: Option<RawRateLimit>,
    /// Classification rules for responses, tried in order before the default by status.
    errors: Option<Vec<Value>>,
    /// Largest response body read, in bytes (default 8 MiB); a larger one is an error.
    max_response_bytes: Option<u64>,
    /// Most pages one read run may take (default 10000): a guard against an API that never
    /// says it is done.
    max_pages: Option<u64>,
    /// Inbound webhooks at `/hooks/NAME`.
    webhook: Option<Value>,
    /// How each kind is read (polled), by kind name.
    read: Option<BTreeMap<String, Value>>,
    /// How each kind is written, by kind name.
    write: Option<BTreeMap<String, Value>>,
}

/// A secret string: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The checked options.
#[derive(Clone, PartialEq)]
pub struct Options {
    pub vars: Value,
    pub headers: Vec<(String, Template)>,
    pub auth: Auth,
    pub rate_limit: RateLimit,
    pub errors: Vec<ErrorRule>,
    pub max_response_bytes: usize,
    pub webhook: Option<Webhook>,
    pub read: BTreeMap<Kind, Read>,
    pub write: BTreeMap<Kind, Write>,
}

/// `vars` may hold secrets (a login's password): only their names are shown.
impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let var_names: Vec<&String> = self
            .vars
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        f.debug_struct("Options")
            .field("vars", &var_names)
            .field("headers", &self.headers)
            .field("auth", &self.auth)
            .field("rate_limit", &self.rate_limit)
            .field("errors", &self.errors)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("webhook", &self.webhook)
            .field("read", &self.read)
            .field("write", &self.write)
            .finish()
    }
}

fn kind_of(path: &str, name: &str) -> Result<Kind> {
    name.parse::<Kind>().map_err(|e| err(path, e.to_string()))
}

impl Options {
    /// Check the options of an `http` endpoint. `endpoint_secret` is its `webhook_secret`.
    pub fn parse(options: &Value, endpoint_secret: Option<&str>) -> Result<Options> {
        if !options.is_object() {
            return Err(err(
                "options",
                "is required: a table with at least one of `read`, `write` or `webhook`",
            ));
        }
        let raw: RawOptions = de(options, "options")?;
        let max_pages = match raw.max_pages {
            Some(0) => return Err(err("options.max_pages", "must be at least 1")),
            Some(n) => n,
            None => DEFAULT_MAX_PAGES,
        };
        let max_response_bytes = match raw.max_response_bytes {
            None => DEFAULT_MAX_RESPONSE_BYTES,
            Some(n) if n >= 1024 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(_) => return Err(err("options.max_response_bytes", "must be at least 1024")),
        };
        let mut read_kinds = BTreeMap::new();
        for (k, v) in raw.read.iter().flatten() {
            let at = format!("options.read.{k}");
            read_kinds.insert(
                kind_of(&at, k)?,
                read(&at, v, max_pages, max_response_bytes)?,
            );
        }
        let mut write_kinds = BTreeMap::new();
        for (k, v) in raw.write.iter().flatten() {
            let at = format!("options.write.{k}");
            write_kinds.insert(kind_of(&at, k)?, write(&at, v)?);
        }
        let webhook = raw
            .webhook
            .as_ref()
            .map(|v| webhook("options.webhook", v, endpoint_secret))
            .transpose()?;
        if read_kinds.is_empty() && write_kinds.is_empty() && webhook.is_none() {
            return Err(err(
                "options",
                "declares nothing: add `read`, `write` or `webhook` tables",
            ));
        }
        let mut errors = Vec::new();
        for (i, v) in raw.errors.iter().flatten().enumerate() {
            errors.push(error_rule(&format!("options.errors[{i}]"), v)?);
        }
        Ok(Options {
            vars: Value::Object(raw.vars.unwrap_or_default()),
            headers: templates(
                "options.headers",
                raw.headers.as_ref(),
                &["vars"],
                &[],
                true,
            )?,
            auth: auth("options.auth", raw.auth.as_ref())?,
            rate_limit: rate_limit("options.rate_limit", raw.rate_limit)?,
            errors,
            max_response_bytes,
            webhook,
            read: read_kinds,
            write: write_kinds,
        })
    }

    /// What this configuration can do, per kind.
    pub fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities {
            rate_limit: RateLimitProfile {
                requests_per_sec: self.rate_limit.requests_per_sec,
                max_concurrency: self.rate_limit.concurrency,
                adaptive: self.rate_limit.adaptive,
            },
            ..Capabilities::default()
        };
        for kind in Kind::ALL {
            let read = self.read.get(&kind);
            let webhook = self
                .webhook
                .as_ref()
                .is_some_and(|w| w.routes.iter().any(|r| r.kind == kind));
            let write = self.write.get(&kind).map(|w| WriteModes {
                upsert: ["create", "update", "upsert"]
                    .iter()
                    .any(|o| w.ops.contains_key(*o)),
                max_batch: w.bulk.as_ref().map_or(1, |b| b.max),
                amend: kind == Kind::Order && w.ops.contains_key("amend"),
            });
            if read.is_none() && !webhook && write.is_none() {
                continue;
            }
            caps.kinds.insert(
                kind,
                KindCaps {
                    read: ReadModes {
                        webhook,
                        changes: read.is_some(),
                        snapshot: read.is_some(),
                    },
                    write: write.unwrap_or_default(),
                },
            );
        }
        caps
    }
}

#[cfg(test)]
mod tests;

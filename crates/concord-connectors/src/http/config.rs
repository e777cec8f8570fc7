//! The `http` connector's options (`[endpoints.NAME.options]`), parsed and checked without I/O.
//!
//! Two stages, as for every connector: serde reads the raw tables (unknown fields refused, the
//! error at its path, e.g. `options.read.order.pagination.has_mor`), then [`Options::parse`]
//! checks every value and compiles every jq program and template once, naming the field of
//! anything wrong (`options.write.stock.upsert.path: placeholder …`). Nothing here does I/O.
//!
//! The reference of every option, with examples, is the README's "Connect any HTTP API"; the
//! doc comments of the raw structs below are the same reference, field by field.
//!
//! Must never: do I/O, or print a secret (tokens, passwords, client secrets, webhook secrets —
//! every `Debug` here redacts them).

use super::jq::{is_identifier, Program};
use super::template::Template;
use crate::options::err;
use concord_core::Kind;
use concord_engine::connector::{
    BuildError, Capabilities, KindCaps, RateLimitProfile, ReadModes, WriteModes,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

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

/// One HTTP request (also a step of a write).
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    /// `GET` (default without a body), `POST` (default with a body), `PUT`, `PATCH`, `DELETE`.
    method: Option<String>,
    /// Path after the endpoint's `url`, a template: `/admin/orders/{$id}`.
    path: Option<String>,
    /// Query parameters: name → template.
    query: Option<BTreeMap<String, String>>,
    /// Headers: name → template (added to `options.headers`).
    headers: Option<BTreeMap<String, String>>,
    /// jq producing the JSON body.
    body: Option<String>,
    /// Statuses that mean success (default: any 2xx).
    success: Option<Vec<u16>>,
    // Write steps only:
    /// The step's name: its response (after `select`) is bound as `$NAME` in later steps.
    name: Option<String>,
    /// jq test: the step runs only when true.
    when: Option<String>,
    /// jq on the response body giving the value bound to `$NAME` (default `.`).
    select: Option<String>,
    /// For a named step: what to do when it finds nothing (its value is `null` or `[]`):
    /// `continue` (default: bound as null), `retry` (a transient failure: the engine retries
    /// later, e.g. the product is not created there yet), `skip` (done, nothing written: the
    /// destination does not carry this record), `fail` (a permanent failure).
    if_missing: Option<String>,
    /// For `find` only: statuses that mean "not found" (default `[404]`).
    not_found: Option<Vec<u16>>,
    /// For `find` only: jq on the found record giving its id (default `.id`).
    id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    /// A published budget: this many requests per `per` (default per second).
    requests: Option<f64>,
    per: Option<String>,
    /// A published concurrency limit.
    concurrency: Option<u64>,
    /// Let the engine find the capacity (AIMD); default true when no budget is declared.
    adaptive: Option<bool>,
    /// Header with the requests left in the window (e.g. `x-ratelimit-remaining`).
    remaining_header: Option<String>,
    /// Header saying when the window resets (e.g. `x-ratelimit-reset`).
    reset_header: Option<String>,
    /// What the reset header holds: `seconds` (delta), `milliseconds` (delta), `epoch` (Unix
    /// time), `auto` (default: a value above 10^9 is a Unix time, else seconds).
    reset: Option<String>,
    /// Longest wait taken from `Retry-After` or a reset header (default 15m).
    max_wait: Option<String>,
    /// jq on every response body (`$headers`, `$status`, `$vars`): seconds to hold the next
    /// request back (null, 0 or less: none) — for APIs that report their budget in the body
    /// (a GraphQL query cost) or in a shape the header options cannot read.
    pace: Option<String>,
}

// ---- checked ------------------------------------------------------------------------------

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

/// A checked request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: reqwest::Method,
    pub path: Template,
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Program>,
    /// Empty = any 2xx.
    pub success: Vec<u16>,
}

impl Request {
    pub fn is_success(&self, status: u16) -> bool {
        if self.success.is_empty() {
            (200..300).contains(&status)
        } else {
            self.success.contains(&status)
        }
    }
}

/// What a named step does when it finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IfMissing {
    #[default]
    Continue,
    Retry,
    Skip,
    Fail,
}

/// One step of a write.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: Option<String>,
    pub when: Option<Program>,
    pub request: Request,
    pub select: Option<Program>,
    pub if_missing: IfMissing,
}

/// The lookup made before a create (and to find the id of an update without a known one).
#[derive(Debug, Clone, PartialEq)]
pub struct Find {
    pub request: Request,
    /// jq on the response: the record found, or `null`/nothing for none.
    pub select: Option<Program>,
    pub not_found: Vec<u16>,
    /// jq on the found record: its id.
    pub id: Program,
}

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
}

/// A bulk write: many items in one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Bulk {
    /// Most items per request.
    pub max: usize,
    /// The ops sent in bulk (default `upsert`).
    pub ops: Vec<String>,
    pub request: Request,
    /// jq on the response: one entry per item, in order: `{id?, version?, error?}`; absent:
    /// every item succeeded without an id.
    pub results: Option<Program>,
}

/// How one kind is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub find: Option<Find>,
    /// jq on the last step's response body (and the steps' bindings): the created record's id.
    pub id: Option<Program>,
    pub version: Option<Program>,
    /// Steps by op (`create`, `update`, `upsert`, `cancel`, `delete`, `amend`).
    pub ops: BTreeMap<String, Vec<Step>>,
    pub bulk: Option<Bulk>,
    /// Header carrying a key deterministic per item and content.
    pub idempotency_header: Option<String>,
}

/// What a webhook signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedPart {
    Lit(String),
    Body,
    Timestamp,
    Id,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
    /// No signature: the header carries a shared secret itself (for senders that cannot sign
    /// but send headers chosen at subscription, e.g. BigCommerce), compared in constant time.
    Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampFormat {
    /// Unix seconds.
    Unix,
    /// Unix milliseconds.
    UnixMs,
    Rfc3339,
}

/// Webhook signature verification.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub header: String,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    pub prefix: Option<String>,
    pub signed: Vec<SignedPart>,
    pub timestamp_header: Option<String>,
    pub timestamp_format: TimestampFormat,
    pub tolerance: Duration,
    /// Every secret accepted (rotation: the new and the old one).
    pub secrets: Vec<Secret>,
}

/// Where a webhook delivery's dedupe key comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Dedupe {
    Header(String),
    Body(Program),
}

/// Which records of a webhook payload are of which kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub kind: Kind,
    pub when: Option<Program>,
    /// For thin deliveries that carry only an id: the request (templates on the delivered
    /// record) whose answer is the record; a 404 drops it (gone since).
    pub fetch: Option<Request>,
    pub id: Program,
    pub version: Option<Program>,
    pub map: Option<Program>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub signature: Signature,
    pub dedupe: Option<Dedupe>,
    pub records: Option<Program>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyIn {
    Header,
    Query,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    ClientCredentials,
    RefreshToken,
}

/// How requests authenticate.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    None,
    Bearer {
        token: Secret,
    },
    Basic {
        user: String,
        password: Secret,
    },
    ApiKey {
        name: String,
        value: Secret,
        location: ApiKeyIn,
    },
    OAuth2 {
        /// Absolute URL, or a path on the endpoint's URL.
        token_url: String,
        client_id: String,
        client_secret: Option<Secret>,
        grant: Grant,
        refresh_token: Option<Secret>,
        scope: Option<String>,
        /// Send the client credentials as HTTP Basic (default) or in the form body.
        basic_client_auth: bool,
        refresh_before: Duration,
    },
    /// OAuth 1.0a token-based authentication: each request signed (RFC 5849).
    OAuth1(Box<super::oauth1::Keys>),
    Login {
        request: Request,
        /// jq on the response body: the token (used as `prefix` + token in `header`).
        token: Option<Program>,
        /// Or the cookies the response sets (empty with `token`): the first is the session
        /// cookie and must be set; the others (`also_cookies`: a load balancer's route cookie,
        /// e.g. SAP Business One's `ROUTEID`) are sent along when the response sets them.
        cookies: Vec<String>,
        header: String,
        prefix: String,
        /// Log in again after this long (default: only on 401).
        ttl: Option<Duration>,
    },
}

/// Error classes a rule may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Success,
    Transient,
    Permanent,
    RateLimited,
    Unavailable,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRule {
    /// Empty = every status ≥ 300.
    pub status: Vec<u16>,
    pub when: Option<Program>,
    pub class: ErrorClass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    Seconds,
    Millis,
    Epoch,
    Auto,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub requests_per_sec: Option<f64>,
    pub concurrency: Option<usize>,
    pub adaptive: bool,
    pub remaining_header: Option<String>,
    pub reset_header: Option<String>,
    pub reset: ResetKind,
    pub max_wait: Duration,
    /// jq on each response: seconds to hold the next request back.
    pub pace: Option<Program>,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            requests_per_sec: None,
            concurrency: None,
            adaptive: true,
            remaining_header: None,
            reset_header: None,
            reset: ResetKind::Auto,
            max_wait: DEFAULT_MAX_WAIT,
            pace: None,
        }
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

// ---- parsing helpers ----------------------------------------------------------------------

type Result<T> = std::result::Result<T, BuildError>;

/// Deserialize `value` at `path`, naming the exact field of a problem.
fn de<T: DeserializeOwned>(value: &Value, path: &str) -> Result<T> {
    serde_path_to_error::deserialize::<_, T>(value.clone()).map_err(|e| {
        let inner = e.path().to_string();
        let at = if inner.is_empty() || inner == "." {
            path.to_string()
        } else {
            format!("{path}.{inner}")
        };
        let msg = e.inner().to_string();
        // serde names the unknown field in backticks: `foo`.
        match msg
            .strip_prefix("unknown field `")
            .and_then(|r| r.split_once('`'))
        {
            Some((field, rest)) => {
                // serde_path_to_error's path already ends with the unknown field.
                let at = if inner.ends_with(field) {
                    at
                } else {
                    format!("{at}.{field}")
                };
                err(
                    &at,
                    format!(
                        "unknown option;{}",
                        rest.split_once(',').map_or("", |x| x.1)
                    ),
                )
            }
            None => err(&at, msg),
        }
    })
}

fn program(path: &str, src: &str, names: &'static [&'static str]) -> Result<Program> {
    Program::compile(src, names).map_err(|e| err(path, e))
}

fn program_with(
    path: &str,
    src: &str,
    names: &'static [&'static str],
    extra: &[String],
) -> Result<Program> {
    Program::compile_with(src, names, extra).map_err(|e| err(path, e))
}

fn opt_program(
    path: &str,
    src: Option<&String>,
    names: &'static [&'static str],
    extra: &[String],
) -> Result<Option<Program>> {
    src.map(|s| program_with(path, s, names, extra)).transpose()
}

fn duration(path: &str, v: Option<&str>, default: Duration) -> Result<Duration> {
    match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s.trim()).map_err(|e| {
            err(
                path,
                format!("`{s}` is not a duration like \"30s\" or \"5m\": {e}"),
            )
        }),
    }
}

fn header_name(path: &str, name: &str) -> Result<String> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map(|h| h.as_str().to_string())
        .map_err(|_| err(path, format!("`{name}` is not a valid HTTP header name")))
}

fn templates(
    path: &str,
    map: Option<&BTreeMap<String, String>>,
    names: &'static [&'static str],
    extra: &[String],
    check_name: bool,
) -> Result<Vec<(String, Template)>> {
    let mut out = Vec::new();
    for (k, v) in map.into_iter().flatten() {
        let at = format!("{path}.{}", quote_key(k));
        let name = if check_name {
            header_name(&at, k)?
        } else {
            if k.is_empty() {
                return Err(err(&at, "a query parameter needs a name"));
            }
            k.clone()
        };
        out.push((
            name,
            Template::parse(v, names, extra).map_err(|e| err(&at, e))?,
        ));
    }
    Ok(out)
}

/// `key` as it appears in a path: bare when it is a bare TOML key, else quoted.
fn quote_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

fn request(
    path: &str,
    raw: &RawRequest,
    names: &'static [&'static str],
    extra: &[String],
) -> Result<Request> {
    let p = raw
        .path
        .as_deref()
        .ok_or_else(|| err(&format!("{path}.path"), "is required (e.g. \"/orders\")"))?;
    if !p.starts_with('/') {
        return Err(err(
            &format!("{path}.path"),
            format!("`{p}` must start with `/` (it is appended to the endpoint's url)"),
        ));
    }
    let method = match raw.method.as_deref() {
        None if raw.body.is_some() => reqwest::Method::POST,
        None => reqwest::Method::GET,
        Some(m) => match m.to_ascii_uppercase().as_str() {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            "PATCH" => reqwest::Method::PATCH,
            "DELETE" => reqwest::Method::DELETE,
            _ => {
                return Err(err(
                    &format!("{path}.method"),
                    format!("`{m}` is not one of GET, POST, PUT, PATCH, DELETE"),
                ))
            }
        },
    };
    for (i, s) in raw.success.iter().flatten().enumerate() {
        if !(100..=599).contains(s) {
            return Err(err(
                &format!("{path}.success[{i}]"),
                format!("{s} is not an HTTP status"),
            ));
        }
    }
    Ok(Request {
        method,
        path: Template::parse(p, names, extra).map_err(|e| err(&format!("{path}.path"), e))?,
        query: templates(
            &format!("{path}.query"),
            raw.query.as_ref(),
            names,
            extra,
            false,
        )?,
        headers: templates(
            &format!("{path}.headers"),
            raw.headers.as_ref(),
            names,
            extra,
            true,
        )?,
        body: opt_program(&format!("{path}.body"), raw.body.as_ref(), names, extra)?,
        success: raw.success.clone().unwrap_or_default(),
    })
}

/// Refuse the step-only fields of a request where they mean nothing.
fn plain_request(path: &str, raw: &RawRequest) -> Result<()> {
    for (field, present) in [
        ("name", raw.name.is_some()),
        ("when", raw.when.is_some()),
        ("select", raw.select.is_some()),
        ("if_missing", raw.if_missing.is_some()),
        ("not_found", raw.not_found.is_some()),
        ("id", raw.id.is_some()),
    ] {
        if present {
            return Err(err(
                &format!("{path}.{field}"),
                "is only allowed in a write's steps",
            ));
        }
    }
    Ok(())
}

// ---- the parts ----------------------------------------------------------------------------

fn auth(path: &str, v: Option<&Value>) -> Result<Auth> {
    let Some(v) = v else { return Ok(Auth::None) };
    let obj = v
        .as_object()
        .ok_or_else(|| err(path, "must be a table with a `type`"))?;
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            err(
                &format!("{path}.type"),
                "is required: none, bearer, basic, api_key, oauth1, oauth2 or login",
            )
        })?
        .to_string();
    let mut rest = obj.clone();
    rest.remove("type");
    let rest = Value::Object(rest);
    let secret = |field: &str, v: Option<String>| -> Result<Secret> {
        match v {
            Some(s) if !s.is_empty() => Ok(Secret(s)),
            _ => Err(err(
                &format!("{path}.{field}"),
                "is required (use a \"${ENV_VAR}\" reference)",
            )),
        }
    };
    match ty.as_str() {
        "none" => {
            de::<Empty>(&rest, path)?;
            Ok(Auth::None)
        }
        "bearer" => {
            let r: RawBearer = de(&rest, path)?;
            Ok(Auth::Bearer {
                token: secret("token", r.token)?,
            })
        }
        "basic" => {
            let r: RawBasic = de(&rest, path)?;
            let user = r
                .user
                .filter(|u| !u.is_empty())
                .ok_or_else(|| err(&format!("{path}.user"), "is required"))?;
            if user.contains(':') {
                return Err(err(&format!("{path}.user"), "must not contain `:`"));
            }
            Ok(Auth::Basic {
                user,
                // An API key as the user name with an empty password is common (Stripe, Medusa).
                password: Secret(r.password.unwrap_or_default()),
            })
        }
        "api_key" => {
            let r: RawApiKey = de(&rest, path)?;
            let name = r
                .name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| err(&format!("{path}.name"), "is required"))?;
            let location = match r.location.as_deref() {
                None | Some("header") => ApiKeyIn::Header,
                Some("query") => ApiKeyIn::Query,
                Some(other) => {
                    return Err(err(
                        &format!("{path}.in"),
                        format!("`{other}` is not one of header, query"),
                    ))
                }
            };
            let name = match location {
                ApiKeyIn::Header => header_name(&format!("{path}.name"), &name)?,
                ApiKeyIn::Query => name,
            };
            Ok(Auth::ApiKey {
                name,
                value: secret("value", r.value)?,
                location,
            })
        }
        "oauth2" => {
            let r: RawOAuth2 = de(&rest, path)?;
            let token_url = r
                .token_url
                .filter(|u| !u.is_empty())
                .ok_or_else(|| err(&format!("{path}.token_url"), "is required"))?;
            if !(token_url.starts_with('/')
                || token_url.starts_with("https://")
                || token_url.starts_with("http://"))
            {
                return Err(err(
                    &format!("{path}.token_url"),
                    "must be an http(s) URL or a path on the endpoint's url",
                ));
            }
            let grant = match r.grant.as_deref() {
                None | Some("client_credentials") => Grant::ClientCredentials,
                Some("refresh_token") => Grant::RefreshToken,
                Some(other) => {
                    return Err(err(
                        &format!("{path}.grant"),
                        format!("`{other}` is not one of client_credentials, refresh_token"),
                    ))
                }
            };
            let refresh_token = match grant {
                Grant::RefreshToken => Some(secret("refresh_token", r.refresh_token)?),
                Grant::ClientCredentials => r.refresh_token.map(Secret),
            };
            let client_secret = match grant {
                Grant::ClientCredentials => Some(secret("client_secret", r.client_secret)?),
                Grant::RefreshToken => r.client_secret.filter(|s| !s.is_empty()).map(Secret),
            };
            let basic_client_auth = match r.client_auth.as_deref() {
                None | Some("basic") => true,
                Some("body") => false,
                Some(other) => {
                    return Err(err(
                        &format!("{path}.client_auth"),
                        format!("`{other}` is not one of basic, body"),
                    ))
                }
            };
            Ok(Auth::OAuth2 {
                token_url,
                client_id: r
                    .client_id
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| err(&format!("{path}.client_id"), "is required"))?,
                client_secret,
                grant,
                refresh_token,
                scope: r.scope,
                basic_client_auth,
                refresh_before: duration(
                    &format!("{path}.refresh_before"),
                    r.refresh_before.as_deref(),
                    DEFAULT_REFRESH_BEFORE,
                )?,
            })
        }
        "oauth1" => {
            let r: RawOAuth1 = de(&rest, path)?;
            let method = match r.signature_method.as_deref() {
                None | Some("HMAC-SHA256") => super::oauth1::Method::HmacSha256,
                Some("HMAC-SHA1") => super::oauth1::Method::HmacSha1,
                Some(other) => {
                    return Err(err(
                        &format!("{path}.signature_method"),
                        format!("`{other}` is not one of HMAC-SHA256, HMAC-SHA1"),
                    ))
                }
            };
            let named = |field: &str, v: Option<String>| -> Result<String> {
                v.filter(|s| !s.is_empty())
                    .ok_or_else(|| err(&format!("{path}.{field}"), "is required"))
            };
            Ok(Auth::OAuth1(Box::new(super::oauth1::Keys {
                consumer_key: named("consumer_key", r.consumer_key)?,
                consumer_secret: secret("consumer_secret", r.consumer_secret)?,
                token: named("token", r.token)?,
                token_secret: secret("token_secret", r.token_secret)?,
                realm: r.realm.filter(|s| !s.is_empty()),
                method,
            })))
        }
        "login" => {
            let r: RawLogin = de(&rest, path)?;
            let raw_req = r
                .request
                .ok_or_else(|| err(&format!("{path}.request"), "is required"))?;
            plain_request(&format!("{path}.request"), &raw_req)?;
            let request = request(&format!("{path}.request"), &raw_req, LOGIN, &[])?;
            let token = opt_program(&format!("{path}.token"), r.token.as_ref(), LOGIN, &[])?;
            let cookie = r.cookie.filter(|c| !c.is_empty());
            if token.is_some() == cookie.is_some() {
                return Err(err(
                    path,
                    "needs exactly one of `token` (jq on the login response) or `cookie` (the name of the session cookie)",
                ));
            }
            let also_cookies = r.also_cookies.unwrap_or_default();
            if !also_cookies.is_empty() && cookie.is_none() {
                return Err(err(
                    &format!("{path}.also_cookies"),
                    "needs `cookie` (the session cookie they go with)",
                ));
            }
            for (i, c) in also_cookies.iter().enumerate() {
                if c.is_empty() || c.contains(['=', ';', ' ']) {
                    return Err(err(
                        &format!("{path}.also_cookies[{i}]"),
                        format!("`{c}` is not a cookie name"),
                    ));
                }
            }
            Ok(Auth::Login {
                request,
                token,
                cookies: cookie.into_iter().chain(also_cookies).collect(),
                header: header_name(
                    &format!("{path}.header"),
                    r.header.as_deref().unwrap_or("authorization"),
                )?,
                prefix: r.prefix.unwrap_or_else(|| "Bearer ".into()),
                ttl: r
                    .ttl
                    .as_deref()
                    .map(|t| duration(&format!("{path}.ttl"), Some(t), Duration::ZERO))
                    .transpose()?,
            })
        }
        other => Err(err(
            &format!("{path}.type"),
            format!("`{other}` is not one of none, bearer, basic, api_key, oauth1, oauth2, login"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBearer {
    /// The token (`${ENV}`).
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasic {
    user: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    /// Header or query parameter name.
    name: Option<String>,
    value: Option<String>,
    /// `header` (default) or `query`.
    #[serde(rename = "in")]
    location: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth2 {
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    /// `client_credentials` (default) or `refresh_token`.
    grant: Option<String>,
    /// The refresh token to start from; when the provider rotates it, the new one is kept
    /// in the store and used from then on (until this value changes in the config).
    refresh_token: Option<String>,
    scope: Option<String>,
    /// `basic` (default) or `body`.
    client_auth: Option<String>,
    /// Refresh this long before the access token expires (default 60s).
    refresh_before: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth1 {
    /// The integration's consumer key.
    consumer_key: Option<String>,
    /// Its consumer secret (`${ENV}`).
    consumer_secret: Option<String>,
    /// The access token (token id).
    token: Option<String>,
    /// Its secret (`${ENV}`).
    token_secret: Option<String>,
    /// `realm` of the header (NetSuite: the account id, e.g. `1234567_SB1`).
    realm: Option<String>,
    /// `HMAC-SHA256` (default) or `HMAC-SHA1`.
    signature_method: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogin {
    request: Option<RawRequest>,
    token: Option<String>,
    cookie: Option<String>,
    /// With `cookie`: more cookies of the login response, sent along when it sets them.
    also_cookies: Option<Vec<String>>,
    /// Header the token goes in (default `authorization`).
    header: Option<String>,
    /// Before the token (default `"Bearer "`).
    prefix: Option<String>,
    ttl: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawErrorRule {
    /// Statuses this rule applies to (default: every status ≥ 300).
    status: Option<Vec<u16>>,
    /// jq test on the body (`.`; `$status`, `$headers`).
    when: Option<String>,
    /// `success`, `transient`, `permanent`, `rate_limited` or `unavailable`.
    class: Option<String>,
}

fn error_rule(path: &str, v: &Value) -> Result<ErrorRule> {
    let r: RawErrorRule = de(v, path)?;
    let class = match r.class.as_deref() {
        Some("success") => ErrorClass::Success,
        Some("transient") => ErrorClass::Transient,
        Some("permanent") => ErrorClass::Permanent,
        Some("rate_limited") => ErrorClass::RateLimited,
        Some("unavailable") => ErrorClass::Unavailable,
        Some(other) => {
            return Err(err(
                &format!("{path}.class"),
                format!(
                "`{other}` is not one of success, transient, permanent, rate_limited, unavailable"
            ),
            ))
        }
        None => return Err(err(&format!("{path}.class"), "is required")),
    };
    if r.status.is_none() && r.when.is_none() {
        return Err(err(path, "needs `status`, `when` or both"));
    }
    Ok(ErrorRule {
        status: r.status.unwrap_or_default(),
        when: opt_program(&format!("{path}.when"), r.when.as_ref(), ERROR_RULE, &[])?,
        class,
    })
}

fn rate_limit(path: &str, r: Option<RawRateLimit>) -> Result<RateLimit> {
    let r = r.unwrap_or_default();
    let per = duration(
        &format!("{path}.per"),
        r.per.as_deref(),
        Duration::from_secs(1),
    )?;
    if per.is_zero() {
        return Err(err(&format!("{path}.per"), "must be longer than zero"));
    }
    let requests_per_sec = match r.requests {
        None => None,
        Some(n) if n.is_finite() && n > 0.0 => Some(n / per.as_secs_f64()),
        Some(n) => {
            return Err(err(
                &format!("{path}.requests"),
                format!("{n} must be a positive number"),
            ))
        }
    };
    let concurrency = match r.concurrency {
        None => None,
        Some(0) => return Err(err(&format!("{path}.concurrency"), "must be at least 1")),
        Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
    };
    let reset = match r.reset.as_deref() {
        None | Some("auto") => ResetKind::Auto,
        Some("seconds") => ResetKind::Seconds,
        Some("milliseconds") => ResetKind::Millis,
        Some("epoch") => ResetKind::Epoch,
        Some(other) => {
            return Err(err(
                &format!("{path}.reset"),
                format!("`{other}` is not one of auto, seconds, milliseconds, epoch"),
            ))
        }
    };
    Ok(RateLimit {
        requests_per_sec,
        concurrency,
        adaptive: r
            .adaptive
            .unwrap_or(requests_per_sec.is_none() && concurrency.is_none()),
        remaining_header: r
            .remaining_header
            .map(|h| header_name(&format!("{path}.remaining_header"), &h))
            .transpose()?,
        reset_header: r
            .reset_header
            .map(|h| header_name(&format!("{path}.reset_header"), &h))
            .transpose()?,
        reset,
        max_wait: duration(
            &format!("{path}.max_wait"),
            r.max_wait.as_deref(),
            DEFAULT_MAX_WAIT,
        )?,
        pace: opt_program(&format!("{path}.pace"), r.pace.as_ref(), ERROR_RULE, &[])?,
    })
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

fn pagination(path: &str, v: Option<&Value>) -> Result<Pagination> {
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

fn read(path: &str, v: &Value, max_pages: u64) -> Result<Read> {
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
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWrite {
    /// Lookup before a create (and to find the id of an update without a known one).
    find: Option<RawRequest>,
    /// jq on the last step's response: the id of the record written (default `.id`).
    id: Option<String>,
    /// jq on the last step's response: its version there.
    version: Option<String>,
    create: Option<Value>,
    update: Option<Value>,
    upsert: Option<Value>,
    cancel: Option<Value>,
    delete: Option<Value>,
    amend: Option<Value>,
    bulk: Option<Value>,
    /// Header carrying a key deterministic per outbox item and content (e.g.
    /// `Idempotency-Key`): a retried request is recognised by the API.
    idempotency_header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBulk {
    /// Most items per request (≥ 2).
    max: Option<u64>,
    /// Ops sent in bulk (default `["upsert"]`).
    ops: Option<Vec<String>>,
    request: Option<RawRequest>,
    /// jq on the response: one `{id?, version?, error?}` per item, in order.
    results: Option<String>,
}

pub const OPS: &[&str] = &["create", "update", "upsert", "cancel", "delete", "amend"];

/// The steps of one op: one request (a table) or several (an array of tables).
fn steps(path: &str, v: &Value) -> Result<Vec<Step>> {
    let raws: Vec<(String, RawRequest)> = match v {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(err(path, "needs at least one step"));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let at = format!("{path}[{i}]");
                    de(item, &at).map(|r| (at, r))
                })
                .collect::<Result<_>>()?
        }
        other => vec![(path.to_string(), de(other, path)?)],
    };
    let mut names: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (at, raw) in raws {
        for (field, present) in [
            ("not_found", raw.not_found.is_some()),
            ("id", raw.id.is_some()),
        ] {
            if present {
                return Err(err(
                    &format!("{at}.{field}"),
                    "is only allowed in `find` (the write's `id` reads the created id)",
                ));
            }
        }
        if raw.select.is_some() && raw.name.is_none() {
            return Err(err(
                &format!("{at}.select"),
                "needs a `name`: the selected value is bound as `$NAME` for later steps",
            ));
        }
        let if_missing = match raw.if_missing.as_deref() {
            None | Some("continue") => IfMissing::Continue,
            Some("retry") => IfMissing::Retry,
            Some("skip") => IfMissing::Skip,
            Some("fail") => IfMissing::Fail,
            Some(other) => {
                return Err(err(
                    &format!("{at}.if_missing"),
                    format!("`{other}` is not one of continue, retry, skip, fail"),
                ))
            }
        };
        if raw.if_missing.is_some() && raw.name.is_none() {
            return Err(err(
                &format!("{at}.if_missing"),
                "needs a `name` (it judges the step's selected value)",
            ));
        }
        let step = Step {
            name: raw.name.clone(),
            when: opt_program(&format!("{at}.when"), raw.when.as_ref(), WRITE, &names)?,
            request: request(&at, &raw, WRITE, &names)?,
            select: opt_program(&format!("{at}.select"), raw.select.as_ref(), WRITE, &names)?,
            if_missing,
        };
        if let Some(n) = &raw.name {
            if !is_identifier(n) || RESERVED.contains(&n.as_str()) {
                return Err(err(
                    &format!("{at}.name"),
                    format!(
                        "`{n}` must be an identifier (letters, digits, `_`) other than {}",
                        RESERVED.join(", ")
                    ),
                ));
            }
            if names.contains(n) {
                return Err(err(
                    &format!("{at}.name"),
                    format!("`{n}` is used by an earlier step"),
                ));
            }
            names.push(n.clone());
        }
        out.push(step);
    }
    Ok(out)
}

fn write(path: &str, v: &Value) -> Result<Write> {
    let r: RawWrite = de(v, path)?;
    let find = match &r.find {
        None => None,
        Some(raw) => {
            let at = format!("{path}.find");
            for (field, present) in [
                ("name", raw.name.is_some()),
                ("when", raw.when.is_some()),
                ("if_missing", raw.if_missing.is_some()),
            ] {
                if present {
                    return Err(err(
                        &format!("{at}.{field}"),
                        "is not allowed in `find` (its result is `$found`)",
                    ));
                }
            }
            for (i, s) in raw.not_found.iter().flatten().enumerate() {
                if !(100..=599).contains(s) {
                    return Err(err(
                        &format!("{at}.not_found[{i}]"),
                        format!("{s} is not an HTTP status"),
                    ));
                }
            }
            Some(Find {
                request: request(&at, raw, WRITE, &[])?,
                select: opt_program(&format!("{at}.select"), raw.select.as_ref(), WRITE, &[])?,
                not_found: raw.not_found.clone().unwrap_or_else(|| vec![404]),
                id: program(
                    &format!("{at}.id"),
                    raw.id.as_deref().unwrap_or(".id"),
                    WRITE,
                )?,
            })
        }
    };
    let mut ops = BTreeMap::new();
    let mut all_names: Vec<String> = Vec::new();
    for (op, v) in [
        ("create", &r.create),
        ("update", &r.update),
        ("upsert", &r.upsert),
        ("cancel", &r.cancel),
        ("delete", &r.delete),
        ("amend", &r.amend),
    ] {
        if let Some(v) = v {
            let s = steps(&format!("{path}.{op}"), v)?;
            for n in s.iter().filter_map(|s| s.name.clone()) {
                if !all_names.contains(&n) {
                    all_names.push(n);
                }
            }
            ops.insert(op.to_string(), s);
        }
    }
    if ops.is_empty() {
        return Err(err(
            path,
            format!(
                "needs at least one of {} (the request(s) of that operation)",
                OPS.join(", ")
            ),
        ));
    }
    let bulk = match &r.bulk {
        None => None,
        Some(v) => {
            let at = format!("{path}.bulk");
            let b: RawBulk = de(v, &at)?;
            let max = match b.max {
                None => 100,
                Some(n) if n >= 2 => usize::try_from(n.min(10_000)).unwrap_or(10_000),
                Some(_) => return Err(err(&format!("{at}.max"), "must be at least 2")),
            };
            let ops_ = b.ops.unwrap_or_else(|| vec!["upsert".into()]);
            for (i, o) in ops_.iter().enumerate() {
                if !["create", "update", "upsert"].contains(&o.as_str()) {
                    return Err(err(
                        &format!("{at}.ops[{i}]"),
                        format!("`{o}` is not one of create, update, upsert"),
                    ));
                }
            }
            let raw_req = b
                .request
                .ok_or_else(|| err(&format!("{at}.request"), "is required"))?;
            plain_request(&format!("{at}.request"), &raw_req)?;
            Some(Bulk {
                max,
                ops: ops_,
                request: request(&format!("{at}.request"), &raw_req, BULK, &[])?,
                results: opt_program(&format!("{at}.results"), b.results.as_ref(), RESPONSE, &[])?,
            })
        }
    };
    Ok(Write {
        find,
        id: opt_program(&format!("{path}.id"), r.id.as_ref(), WRITE, &all_names)?,
        version: opt_program(
            &format!("{path}.version"),
            r.version.as_ref(),
            WRITE,
            &all_names,
        )?,
        ops,
        bulk,
        idempotency_header: r
            .idempotency_header
            .map(|h| header_name(&format!("{path}.idempotency_header"), &h))
            .transpose()?,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    signature: Option<RawSignature>,
    /// Where the delivery's id comes from: `{ header = "x-event-id" }` or `{ body = "jq" }`.
    /// It becomes the version of the delivery's records (unless a route gives one), so a
    /// delivery sent twice is dropped by the journal.
    dedupe: Option<RawDedupe>,
    /// jq on the body: the array of records (default `[.]`).
    records: Option<String>,
    /// Which records are of which kind; the first route whose `when` holds takes a record.
    routes: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDedupe {
    header: Option<String>,
    body: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    /// The header carrying the signature(s).
    header: Option<String>,
    /// `sha256` (default), `sha1` or `sha512` (HMAC), or `secret`: the header carries a shared
    /// secret (no signature; for senders that only send fixed headers).
    algorithm: Option<String>,
    /// `hex` (default) or `base64`.
    encoding: Option<String>,
    /// Before the signature in the header, e.g. `sha256=` or `v1,`.
    prefix: Option<String>,
    /// What is signed: `{body}` (default), or e.g. `{timestamp}.{body}`, `{id}.{timestamp}.{body}`.
    signed: Option<String>,
    /// The header with the time of signing; required when `signed` has `{timestamp}`.
    timestamp_header: Option<String>,
    /// `unix` (default), `unix_ms` or `rfc3339`.
    timestamp_format: Option<String>,
    /// How far the timestamp may be from now (default 5m); older is a replay.
    tolerance: Option<String>,
    /// Secrets accepted (rotation: list the new and the old). Default: the endpoint's
    /// `webhook_secret`.
    secrets: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    /// The canonical kind of the records this route takes.
    kind: Option<Kind>,
    /// jq test on the record (`$headers` bound): does this route take it? Default: yes.
    when: Option<String>,
    /// jq on the record: its id (default `.id`).
    id: Option<String>,
    /// jq on the record: its version (default: the dedupe key, else a content hash).
    version: Option<String>,
    /// jq on the record: the canonical record (default: as is).
    map: Option<String>,
    /// A request whose answer replaces the delivered record before `id`, `version` and `map`
    /// (for deliveries that carry only an id); its templates see the delivered record.
    fetch: Option<RawRequest>,
}

fn signed_parts(path: &str, s: &str) -> Result<Vec<SignedPart>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find('{') {
        if at > 0 {
            out.push(SignedPart::Lit(rest[..at].to_string()));
        }
        let end = rest[at..]
            .find('}')
            .ok_or_else(|| err(path, "a `{` is not closed"))?;
        let name = &rest[at + 1..at + end];
        out.push(match name {
            "body" => SignedPart::Body,
            "timestamp" => SignedPart::Timestamp,
            "id" => SignedPart::Id,
            other => {
                return Err(err(
                    path,
                    format!("`{{{other}}}` is not one of {{body}}, {{timestamp}}, {{id}}"),
                ))
            }
        });
        rest = &rest[at + end + 1..];
    }
    if !rest.is_empty() {
        out.push(SignedPart::Lit(rest.to_string()));
    }
    if !out.contains(&SignedPart::Body) {
        return Err(err(path, "must contain {body}"));
    }
    Ok(out)
}

fn webhook(path: &str, v: &Value, endpoint_secret: Option<&str>) -> Result<Webhook> {
    let r: RawWebhook = de(v, path)?;
    let sp = format!("{path}.signature");
    let s = r.signature.ok_or_else(|| {
        err(
            &sp,
            "is required: webhooks are accepted only with a valid HMAC signature",
        )
    })?;
    let header = header_name(
        &format!("{sp}.header"),
        s.header
            .as_deref()
            .ok_or_else(|| err(&format!("{sp}.header"), "is required"))?,
    )?;
    let algorithm = match s.algorithm.as_deref() {
        None | Some("sha256") => Algorithm::Sha256,
        Some("sha1") => Algorithm::Sha1,
        Some("sha512") => Algorithm::Sha512,
        Some("secret") => Algorithm::Secret,
        Some(other) => {
            return Err(err(
                &format!("{sp}.algorithm"),
                format!("`{other}` is not one of sha256, sha1, sha512, secret"),
            ))
        }
    };
    if algorithm == Algorithm::Secret {
        for (field, present) in [
            ("signed", s.signed.is_some()),
            ("timestamp_header", s.timestamp_header.is_some()),
            ("encoding", s.encoding.is_some()),
        ] {
            if present {
                return Err(err(
                    &format!("{sp}.{field}"),
                    "does not apply to algorithm `secret` (the header carries the secret itself)",
                ));
            }
        }
    }
    let encoding = match s.encoding.as_deref() {
        None | Some("hex") => Encoding::Hex,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(err(
                &format!("{sp}.encoding"),
                format!("`{other}` is not one of hex, base64"),
            ))
        }
    };
    let signed = signed_parts(
        &format!("{sp}.signed"),
        s.signed.as_deref().unwrap_or("{body}"),
    )?;
    let timestamp_header = s
        .timestamp_header
        .map(|h| header_name(&format!("{sp}.timestamp_header"), &h))
        .transpose()?;
    if signed.contains(&SignedPart::Timestamp) && timestamp_header.is_none() {
        return Err(err(
            &format!("{sp}.timestamp_header"),
            "is required when `signed` contains {timestamp}",
        ));
    }
    let timestamp_format = match s.timestamp_format.as_deref() {
        None | Some("unix") => TimestampFormat::Unix,
        Some("unix_ms") => TimestampFormat::UnixMs,
        Some("rfc3339") => TimestampFormat::Rfc3339,
        Some(other) => {
            return Err(err(
                &format!("{sp}.timestamp_format"),
                format!("`{other}` is not one of unix, unix_ms, rfc3339"),
            ))
        }
    };
    let tolerance = duration(
        &format!("{sp}.tolerance"),
        s.tolerance.as_deref(),
        DEFAULT_TOLERANCE,
    )?;
    if tolerance.is_zero() {
        return Err(err(&format!("{sp}.tolerance"), "must be longer than zero"));
    }
    let secrets: Vec<Secret> = match s.secrets {
        Some(list) => {
            if list.is_empty() {
                return Err(err(&format!("{sp}.secrets"), "needs at least one secret"));
            }
            let mut out = Vec::new();
            for (i, x) in list.into_iter().enumerate() {
                if x.is_empty() {
                    return Err(err(
                        &format!("{sp}.secrets[{i}]"),
                        "is empty (is its environment variable set?)",
                    ));
                }
                out.push(Secret(x));
            }
            out
        }
        None => match endpoint_secret {
            Some(x) if !x.is_empty() => vec![Secret(x.to_string())],
            _ => {
                return Err(err(
                    &format!("{sp}.secrets"),
                    "is required (or set the endpoint's `webhook_secret`)",
                ))
            }
        },
    };
    let signed_has_id = signed.contains(&SignedPart::Id);
    let dedupe = match r.dedupe {
        None => None,
        Some(d) => match (d.header, d.body) {
            (Some(h), None) => Some(Dedupe::Header(header_name(
                &format!("{path}.dedupe.header"),
                &h,
            )?)),
            (None, Some(b)) => Some(Dedupe::Body(program(
                &format!("{path}.dedupe.body"),
                &b,
                WEBHOOK,
            )?)),
            _ => {
                return Err(err(
                    &format!("{path}.dedupe"),
                    "needs exactly one of `header` or `body`",
                ))
            }
        },
    };
    if signed_has_id && !matches!(dedupe, Some(Dedupe::Header(_))) {
        return Err(err(
            &format!("{sp}.signed"),
            "{id} needs `dedupe.header` (the header carrying the delivery id)",
        ));
    }
    let raw_routes = r
        .routes
        .ok_or_else(|| err(&format!("{path}.routes"), "is required: at least one route"))?;
    if raw_routes.is_empty() {
        return Err(err(&format!("{path}.routes"), "needs at least one route"));
    }
    let mut routes = Vec::new();
    for (i, v) in raw_routes.iter().enumerate() {
        let at = format!("{path}.routes[{i}]");
        let rr: RawRoute = de(v, &at)?;
        let fetch = match &rr.fetch {
            None => None,
            Some(raw) => {
                plain_request(&format!("{at}.fetch"), raw)?;
                Some(request(&format!("{at}.fetch"), raw, WEBHOOK, &[])?)
            }
        };
        routes.push(Route {
            fetch,
            kind: rr
                .kind
                .ok_or_else(|| err(&format!("{at}.kind"), "is required"))?,
            when: opt_program(&format!("{at}.when"), rr.when.as_ref(), WEBHOOK, &[])?,
            id: program(
                &format!("{at}.id"),
                rr.id.as_deref().unwrap_or(".id"),
                WEBHOOK,
            )?,
            version: opt_program(&format!("{at}.version"), rr.version.as_ref(), WEBHOOK, &[])?,
            map: opt_program(&format!("{at}.map"), rr.map.as_ref(), WEBHOOK, &[])?,
        });
    }
    Ok(Webhook {
        signature: Signature {
            header,
            algorithm,
            encoding,
            prefix: s.prefix.filter(|p| !p.is_empty()),
            signed,
            timestamp_header,
            timestamp_format,
            tolerance,
            secrets,
        },
        dedupe,
        records: opt_program(&format!("{path}.records"), r.records.as_ref(), WEBHOOK, &[])?,
        routes,
    })
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
        let mut read_kinds = BTreeMap::new();
        for (k, v) in raw.read.iter().flatten() {
            let at = format!("options.read.{k}");
            read_kinds.insert(kind_of(&at, k)?, read(&at, v, max_pages)?);
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
        let max_response_bytes = match raw.max_response_bytes {
            None => DEFAULT_MAX_RESPONSE_BYTES,
            Some(n) if n >= 1024 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(_) => return Err(err("options.max_response_bytes", "must be at least 1024")),
        };
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
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Options> {
        Options::parse(&v, Some("whsec"))
    }

    /// The field path of the error `v` is refused with.
    fn path(v: Value) -> String {
        match parse(v) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.path,
        }
    }

    fn minimal() -> Value {
        json!({
            "read": {"order": {
                "request": {"path": "/orders", "query": {"since": "{$cursor}", "offset": "{$page}"}},
                "records": ".orders",
                "pagination": {"kind": "offset", "has_more": ".more"},
                "incremental": {"field": ".updated_at", "look_back": "2s"}
            }},
            "write": {"stock": {
                "upsert": {"method": "PUT", "path": "/inventory/{.sku}", "body": "{on_hand}"}
            }},
        })
    }

    #[test]
    fn a_complete_configuration_parses_and_declares_its_capabilities() {
        let o = parse(json!({
            "vars": {"channel": "sc_1"},
            "headers": {"x-client": "concord"},
            "auth": {"type": "oauth2", "token_url": "/oauth/token", "client_id": "c",
                     "grant": "refresh_token", "refresh_token": "r0"},
            "rate_limit": {"requests": 40, "per": "20s", "concurrency": 4,
                           "remaining_header": "x-ratelimit-remaining",
                           "reset_header": "x-ratelimit-reset"},
            "errors": [{"status": [409], "when": ".type == \"conflict\"", "class": "transient"}],
            "webhook": {
                "signature": {"header": "x-signature", "algorithm": "sha1", "encoding": "base64",
                              "prefix": "sha1=", "signed": "{timestamp}.{body}",
                              "timestamp_header": "x-timestamp", "secrets": ["a", "b"]},
                "dedupe": {"header": "x-event-id"},
                "records": ".events",
                "routes": [{"kind": "stock", "when": ".type == \"inventory\"", "id": ".sku",
                            "map": "{sku, location, on_hand, committed: 0}"}]
            },
            "read": {"order": {
                "request": {"path": "/orders"},
                "pagination": {"kind": "graphql", "page_info": ".data.orders.pageInfo"}
            }},
            "write": {
                "product": {
                    "find": {"path": "/products", "query": {"sku": "{.sku}"}, "select": ".products[0]"},
                    "create": {"path": "/products", "body": "{title: .name}"},
                    "update": {"path": "/products/{$id}", "body": "{title: .name}"},
                    "id": ".product.id",
                    "idempotency_header": "Idempotency-Key"
                },
                "shipment": {"create": [
                    {"name": "ful", "path": "/orders/{$refs[\"order:\" + .order]}/fulfillments",
                     "body": "{}", "select": ".fulfillment"},
                    {"path": "/fulfillments/{$ful.id}/shipments", "body": "{tracking: .tracking_number}"}
                ]},
                "stock": {"upsert": {"method": "PUT", "path": "/inventory/{.sku}", "body": "."},
                          "bulk": {"max": 50, "request": {"path": "/inventory/batch", "body": "map(.record)"}}}
            }
        }))
        .unwrap();
        let caps = o.capabilities();
        assert!(caps.kind(Kind::Order).read.changes && caps.kind(Kind::Order).read.snapshot);
        assert!(!caps.kind(Kind::Order).write.upsert);
        assert!(caps.kind(Kind::Stock).read.webhook && caps.kind(Kind::Stock).write.upsert);
        assert_eq!(caps.kind(Kind::Stock).write.max_batch, 50);
        assert!(caps.kind(Kind::Shipment).write.upsert);
        assert!(!caps.kind(Kind::Customer).write.upsert && !caps.kind(Kind::Customer).read.changes);
        assert_eq!(caps.rate_limit.requests_per_sec, Some(2.0));
        assert_eq!(caps.rate_limit.max_concurrency, Some(4));
        assert!(!caps.rate_limit.adaptive);
        // Secrets never print.
        let shown = format!("{o:?}");
        assert!(!shown.contains("r0") || !shown.contains("refresh_token: Some(Secret(\"r0"));
        assert!(shown.contains("***"));
        assert!(!shown.contains("\"whsec\""));
        let o = parse(json!({"vars": {"password": "hunter2"},
            "write": {"stock": {"upsert": {"path": "/a"}}}}))
        .unwrap();
        let shown = format!("{o:?}");
        assert!(
            shown.contains("password") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn bad_configurations_are_refused_with_the_field_path() {
        assert!(parse(minimal()).is_ok());
        // `minimal()` with the value at `pointer` set (parents must exist).
        let with = |pointer: &str, v: Value| {
            let mut m = minimal();
            let (parent, last) = pointer.rsplit_once('/').expect(pointer);
            m.pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .expect(parent)
                .insert(last.to_string(), v);
            m
        };
        let cases: Vec<(Value, &str)> = vec![
            (Value::Null, "options"),
            (json!({}), "options"),
            (json!({"reed": {}}), "options.reed"),
            (json!({"read": {"orders": {}}}), "options.read.orders"),
            (
                with("/read/order/request/path", json!("orders")),
                "options.read.order.request.path",
            ),
            (
                with("/read/order/request/path", json!("/orders/{.x")),
                "options.read.order.request.path",
            ),
            (
                with("/read/order/request/method", json!("FETCH")),
                "options.read.order.request.method",
            ),
            (
                with("/read/order/request/query/since", json!("{$nope}")),
                "options.read.order.request.query.since",
            ),
            (
                with("/read/order/records", json!(".orders[")),
                "options.read.order.records",
            ),
            (
                with("/read/order/pagination/kind", json!("pages")),
                "options.read.order.pagination.kind",
            ),
            (
                with("/read/order/pagination/has_more", json!(1)),
                "options.read.order.pagination.has_more",
            ),
            (
                with(
                    "/read/order/pagination",
                    json!({"kind": "offset", "next": ".n"}),
                ),
                "options.read.order.pagination.next",
            ),
            (
                with("/read/order/pagination", json!({"kind": "cursor"})),
                "options.read.order.pagination.next",
            ),
            (
                with("/read/order/pagination", json!({"kind": "graphql"})),
                "options.read.order.pagination.page_info",
            ),
            (
                with("/read/order/incremental/format", json!("date")),
                "options.read.order.incremental.format",
            ),
            (
                with("/read/order/incremental/look_back", json!("soon")),
                "options.read.order.incremental.look_back",
            ),
            (
                with("/read/order/incremental/field", json!("$found")),
                "options.read.order.incremental.field",
            ),
            (
                with("/read/order/request/when", json!("true")),
                "options.read.order.request.when",
            ),
            (
                with("/read/order/max_pages", json!(0)),
                "options.read.order.max_pages",
            ),
            (
                with("/write/stock/upsert/body", json!("{on_hand")),
                "options.write.stock.upsert.body",
            ),
            (
                with(
                    "/write/stock/upsert/path",
                    json!("/inventory/{$refs[\"a\"}"),
                ),
                "options.write.stock.upsert.path",
            ),
            (
                with("/write/stock/upsert/headers", json!({"bad header": "x"})),
                "options.write.stock.upsert.headers.\"bad header\"",
            ),
            (
                with("/write/stock/upsert/success", json!([99])),
                "options.write.stock.upsert.success[0]",
            ),
            (
                with("/write/stock/upsert/id", json!(".id")),
                "options.write.stock.upsert.id",
            ),
            (with("/write/stock", json!({})), "options.write.stock"),
            (
                with("/write/stock", json!({"upsert": []})),
                "options.write.stock.upsert",
            ),
            (
                with(
                    "/write/stock",
                    json!({"create": [{"name": "vars", "path": "/a"}]}),
                ),
                "options.write.stock.create[0].name",
            ),
            (
                with(
                    "/write/stock",
                    json!({"create": [{"path": "/a", "select": "."}]}),
                ),
                "options.write.stock.create[0].select",
            ),
            (
                with(
                    "/write/stock",
                    json!({"create": [{"path": "/a/{$later.id}"}, {"name": "later", "path": "/b"}]}),
                ),
                "options.write.stock.create[0].path",
            ),
            (
                with(
                    "/write/stock",
                    json!({"create": {"path": "/a"}, "find": {"path": "/a", "when": "true"}}),
                ),
                "options.write.stock.find.when",
            ),
            (
                with(
                    "/write/stock",
                    json!({"upsert": {"path": "/a"}, "bulk": {"max": 1, "request": {"path": "/b"}}}),
                ),
                "options.write.stock.bulk.max",
            ),
            (
                with(
                    "/write/stock",
                    json!({"upsert": {"path": "/a"}, "bulk": {"ops": ["cancel"], "request": {"path": "/b"}}}),
                ),
                "options.write.stock.bulk.ops[0]",
            ),
            (
                with(
                    "/write/stock",
                    json!({"upsert": {"path": "/a"}, "idempotency_header": "a b"}),
                ),
                "options.write.stock.idempotency_header",
            ),
            (
                with("/write/stock/upsert/frobnicate", json!(1)),
                "options.write.stock.upsert.frobnicate",
            ),
            (
                json!({"auth": {"type": "bearer"}, "write": minimal()["write"]}),
                "options.auth.token",
            ),
            (
                json!({"auth": {"type": "magic"}, "write": minimal()["write"]}),
                "options.auth.type",
            ),
            (
                json!({"auth": {"type": "basic", "user": "a:b"}, "write": minimal()["write"]}),
                "options.auth.user",
            ),
            (
                json!({"auth": {"type": "api_key", "name": "k", "value": "v", "in": "body"}, "write": minimal()["write"]}),
                "options.auth.in",
            ),
            (
                json!({"auth": {"type": "oauth2", "token_url": "ftp://x", "client_id": "c", "client_secret": "s"}, "write": minimal()["write"]}),
                "options.auth.token_url",
            ),
            (
                json!({"auth": {"type": "oauth2", "token_url": "/t", "client_id": "c", "grant": "refresh_token"}, "write": minimal()["write"]}),
                "options.auth.refresh_token",
            ),
            (
                json!({"auth": {"type": "oauth2", "token_url": "/t", "client_id": "c", "client_secret": "s", "extra": 1}, "write": minimal()["write"]}),
                "options.auth.extra",
            ),
            (
                json!({"auth": {"type": "login", "request": {"path": "/login"}}, "write": minimal()["write"]}),
                "options.auth",
            ),
            (
                json!({"auth": {"type": "login", "request": {"path": "/login"}, "token": ".token ["}, "write": minimal()["write"]}),
                "options.auth.token",
            ),
            (
                json!({"rate_limit": {"requests": -1}, "write": minimal()["write"]}),
                "options.rate_limit.requests",
            ),
            (
                json!({"rate_limit": {"concurrency": 0}, "write": minimal()["write"]}),
                "options.rate_limit.concurrency",
            ),
            (
                json!({"rate_limit": {"per": "0s", "requests": 1}, "write": minimal()["write"]}),
                "options.rate_limit.per",
            ),
            (
                json!({"rate_limit": {"reset": "later"}, "write": minimal()["write"]}),
                "options.rate_limit.reset",
            ),
            (
                json!({"errors": [{"class": "transient"}], "write": minimal()["write"]}),
                "options.errors[0]",
            ),
            (
                json!({"errors": [{"status": [500], "class": "fatal"}], "write": minimal()["write"]}),
                "options.errors[0].class",
            ),
            (
                json!({"errors": [{"when": ".a ==", "class": "permanent"}], "write": minimal()["write"]}),
                "options.errors[0].when",
            ),
            (
                json!({"max_response_bytes": 10, "write": minimal()["write"]}),
                "options.max_response_bytes",
            ),
            (
                json!({"webhook": {"routes": [{"kind": "stock"}]}}),
                "options.webhook.signature",
            ),
            (
                json!({"webhook": {"signature": {}, "routes": [{"kind": "stock"}]}}),
                "options.webhook.signature.header",
            ),
            (
                json!({"webhook": {"signature": {"header": "x-s", "algorithm": "md5"}, "routes": [{"kind": "stock"}]}}),
                "options.webhook.signature.algorithm",
            ),
            (
                json!({"webhook": {"signature": {"header": "x-s", "encoding": "hex64"}, "routes": [{"kind": "stock"}]}}),
                "options.webhook.signature.encoding",
            ),
            (
                json!({"webhook": {"signature": {"header": "x-s", "signed": "{timestamp}"}, "routes": [{"kind": "stock"}]}}),
                "options.webhook.signature.signed",
            ),
            (
                json!({"webhook": {"signature": {"header": "x-s", "signed": "{timestamp}.{body}"}, "routes": [{"kind": "stock"}]}}),
                "options.webhook.signature.timestamp_header",
            ),
            (
                json!({"webhook": {"signature": {"header": "x-s", "signed": "{id}.{body}"}, "routes": [{"kind": "stock"}]}}),
                "options.webhook.signature.signed",
            ),
            (
                json!({"webhook": {"signature": {"header": "x-s", "signed": "{nonce}.{body}"}, "routes": [{"kind": "stock"}]}}),
                "options.webhook.signature.signed",
            ),
            (
                json!({"webhook": {"signature": {"header": "x-s", "tolerance": "0s"}, "routes": [{"kind": "stock"}]}}),
                "options.webhook.signature.tolerance",
            ),
            (
                json!({"webhook": {"signature": {"header": "x-s", "secrets": []}, "routes": [{"kind": "stock"}]}}),
                "options.webhook.signature.secrets",
            ),
            (
                json!({"webhook": {"signature": {"header": "x-s", "secrets": ["a", ""]}, "routes": [{"kind": "stock"}]}}),
                "options.webhook.signature.secrets[1]",
            ),
            (
                json!({"webhook": {"signature": {"header": "x-s"}, "dedupe": {}, "routes": [{"kind": "stock"}]}}),
                "options.webhook.dedupe",
            ),
            (
                json!({"webhook": {"signature": {"header": "x-s"}}}),
                "options.webhook.routes",
            ),
            (
                json!({"webhook": {"signature": {"header": "x-s"}, "routes": []}}),
                "options.webhook.routes",
            ),
            (
                json!({"webhook": {"signature": {"header": "x-s"}, "routes": [{"kind": "stocks"}]}}),
                "options.webhook.routes[0].kind",
            ),
            (
                json!({"webhook": {"signature": {"header": "x-s"}, "routes": [{"kind": "stock", "when": "$key"}]}}),
                "options.webhook.routes[0].when",
            ),
        ];
        for (v, want) in cases {
            let got = path(v.clone());
            assert_eq!(got, want, "for {v}");
        }
        // Without a webhook_secret and without secrets.
        let e = Options::parse(
            &json!({"webhook": {"signature": {"header": "x-s"}, "routes": [{"kind": "stock"}]}}),
            None,
        )
        .unwrap_err();
        assert_eq!(e.path, "options.webhook.signature.secrets");
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let e = parse(json!({"read": {"order": {"request": {"path": "/o/{$nope}"}}}})).unwrap_err();
        assert!(e.message.contains("nope"), "{e}");
        let e = parse(json!({"write": {"stock": {"upsert": {"path": "/a", "mehtod": "PUT"}}}}))
            .unwrap_err();
        assert_eq!(e.path, "options.write.stock.upsert.mehtod");
        assert!(e.message.contains("unknown option"), "{e}");
        let e =
            parse(json!({"read": {"order": {"request": {"path": "/o"}, "records": ".a |\n ]"}}}))
                .unwrap_err();
        assert!(e.message.contains("line 2"), "{e}");
    }
}

//! A request (`path`, `method`, `query`, `headers`, `body`, `success`) — of a read, a write's
//! step, a login — with its templates and jq body compiled; and the parsing helpers every
//! part of the options shares (serde with the field's path, jq programs, durations, header
//! names). No I/O; a refused value names its field.

use super::super::jq::Program;
use super::super::template::Template;
use crate::options::err;
use concord_engine::connector::BuildError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// One HTTP request (also a step of a write).
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequest {
    /// `GET` (default without a body), `POST` (default with a body), `PUT`, `PATCH`, `DELETE`.
    pub(super) method: Option<String>,
    /// Path after the endpoint's `url`, a template: `/admin/orders/{$id}`.
    pub(super) path: Option<String>,
    /// Query parameters: name → template.
    pub(super) query: Option<BTreeMap<String, String>>,
    /// Headers: name → template (added to `options.headers`).
    pub(super) headers: Option<BTreeMap<String, String>>,
    /// jq producing the JSON body.
    pub(super) body: Option<String>,
    /// Statuses that mean success (default: any 2xx).
    pub(super) success: Option<Vec<u16>>,
    // Write steps only:
    /// The step's name: its response (after `select`) is bound as `$NAME` in later steps.
    pub(super) name: Option<String>,
    /// jq test: the step runs only when true.
    pub(super) when: Option<String>,
    /// jq on the response body giving the value bound to `$NAME` (default `.`).
    pub(super) select: Option<String>,
    /// For a named step: what to do when it finds nothing (its value is `null` or `[]`):
    /// `continue` (default: bound as null), `retry` (a transient failure: the engine retries
    /// later, e.g. the product is not created there yet), `skip` (done, nothing written: the
    /// destination does not carry this record), `fail` (a permanent failure).
    pub(super) if_missing: Option<String>,
    /// For `find` only: statuses that mean "not found" (default `[404]`).
    pub(super) not_found: Option<Vec<u16>>,
    /// For `find` only: jq on the found record giving its id (default `.id`).
    pub(super) id: Option<String>,
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

pub(super) type Result<T> = std::result::Result<T, BuildError>;

/// Deserialize `value` at `path`, naming the exact field of a problem.
pub(super) fn de<T: DeserializeOwned>(value: &Value, path: &str) -> Result<T> {
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

pub(super) fn program(path: &str, src: &str, names: &'static [&'static str]) -> Result<Program> {
    Program::compile(src, names).map_err(|e| err(path, e))
}

pub(super) fn program_with(
    path: &str,
    src: &str,
    names: &'static [&'static str],
    extra: &[String],
) -> Result<Program> {
    Program::compile_with(src, names, extra).map_err(|e| err(path, e))
}

pub(super) fn opt_program(
    path: &str,
    src: Option<&String>,
    names: &'static [&'static str],
    extra: &[String],
) -> Result<Option<Program>> {
    src.map(|s| program_with(path, s, names, extra)).transpose()
}

pub(super) fn duration(path: &str, v: Option<&str>, default: Duration) -> Result<Duration> {
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

pub(super) fn header_name(path: &str, name: &str) -> Result<String> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map(|h| h.as_str().to_string())
        .map_err(|_| err(path, format!("`{name}` is not a valid HTTP header name")))
}

pub(super) fn templates(
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
pub(super) fn quote_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

pub(super) fn request(
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
pub(super) fn plain_request(path: &str, raw: &RawRequest) -> Result<()> {
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

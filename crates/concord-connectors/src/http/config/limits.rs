//! `options.rate_limit` (a published budget, concurrency, the rate-limit headers) and
//! `options.errors` (rules classifying responses before the default by status). No I/O: the
//! limiter and the classification at run time are `http/limits.rs`.

use super::super::jq::Program;
use super::request::{de, duration, header_name, opt_program, Result};
use super::{DEFAULT_MAX_WAIT, ERROR_RULE};
use crate::options::err;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    /// A published budget: this many requests per `per` (default per second).
    pub(super) requests: Option<f64>,
    pub(super) per: Option<String>,
    /// A published concurrency limit.
    pub(super) concurrency: Option<u64>,
    /// Let the engine find the capacity (AIMD); default true when no budget is declared.
    pub(super) adaptive: Option<bool>,
    /// Header with the requests left in the window (e.g. `x-ratelimit-remaining`).
    pub(super) remaining_header: Option<String>,
    /// Header saying when the window resets (e.g. `x-ratelimit-reset`).
    pub(super) reset_header: Option<String>,
    /// What the reset header holds: `seconds` (delta), `milliseconds` (delta), `epoch` (Unix
    /// time), `auto` (default: a value above 10^9 is a Unix time, else seconds).
    pub(super) reset: Option<String>,
    /// Longest wait taken from `Retry-After` or a reset header (default 15m).
    pub(super) max_wait: Option<String>,
    /// jq on every response body (`$headers`, `$status`, `$vars`): seconds to hold the next
    /// request back (null, 0 or less: none) — for APIs that report their budget in the body
    /// (a GraphQL query cost) or in a shape the header options cannot read.
    pub(super) pace: Option<String>,
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

pub(super) fn error_rule(path: &str, v: &Value) -> Result<ErrorRule> {
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

pub(super) fn rate_limit(path: &str, r: Option<RawRateLimit>) -> Result<RateLimit> {
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

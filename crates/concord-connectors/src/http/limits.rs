//! Rate limits and the classification of responses for the `http` connector.
//!
//! - [`retry_after`]: an HTTP `Retry-After` value, delta-seconds or an HTTP date, capped; never
//!   panics on any input (negative, huge, fractional, garbage).
//! - [`reset_wait`]: an `X-RateLimit-Reset`-style header (delta seconds or milliseconds, or a
//!   Unix time).
//! - [`pace_wait`]: the configured `rate_limit.pace` program's answer (seconds to hold back,
//!   read from a body such as a GraphQL query cost), bounded.
//! - [`Gate`]: when the API said "0 requests left until the reset", the next call before the
//!   reset is answered `RateLimited` without being sent. The engine then pauses the endpoint
//!   and its AIMD backs off; the connector itself never sleeps.
//! - [`classify`]: the configured `errors` rules first (status and/or a jq test on the body),
//!   then the request's success statuses, then `classify_status` (429 → rate limited, 408, 425,
//!   5xx → transient, 503 → unavailable, other 4xx → permanent).
//!
//! Must never: sleep or retry, or trust a number from a header without a bound.

use super::config::{ErrorClass, ErrorRule, RateLimit, ResetKind};
use super::jq::Vars;
use concord_engine::connector::{classify_status, DeliveryError};
use concord_engine::mapping::MapVars;
use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Parse a `Retry-After` value (RFC 9110 §10.2.3): delta-seconds (integer; a decimal is
/// accepted too) or an HTTP date, as a wait from `now`, at most `cap`. A date in the past is
/// zero. Anything else is `None`.
///
/// This is the connector's one Retry-After parser (a shared one in the engine may replace it).
pub fn retry_after(value: &str, now: SystemTime, cap: Duration) -> Option<Duration> {
    // One rule for the whole hub (`concord_engine::connector::parse_retry_after_at`): delta
    // seconds or an HTTP date, never negative, capped; anything else is no hint (the engine's
    // own backoff applies).
    concord_engine::connector::parse_retry_after_at(Some(value), now).map(|d| d.min(cap))
}

/// A reset header's wait: delta seconds (`Seconds`), delta milliseconds (`Millis`), or a Unix
/// time (seconds) with `ResetKind::Epoch` or, with `Auto`, when the number is above 10^9.
pub fn reset_wait(
    value: &str,
    kind: ResetKind,
    now: SystemTime,
    cap: Duration,
) -> Option<Duration> {
    let n: f64 = value.trim().parse().ok().filter(|n: &f64| n.is_finite())?;
    let n = if kind == ResetKind::Millis {
        n / 1000.0
    } else {
        n
    };
    let epoch = match kind {
        ResetKind::Epoch => true,
        ResetKind::Seconds | ResetKind::Millis => false,
        ResetKind::Auto => n > 1e9,
    };
    let secs = if epoch {
        let now_s = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        n - now_s
    } else {
        n
    };
    if secs <= 0.0 {
        return Some(Duration::ZERO);
    }
    Some(Duration::from_secs_f64(secs.min(cap.as_secs_f64())))
}

/// The header's value as text (the first one), when it is visible ASCII.
pub fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `pace` program's answer as a wait: a finite positive number of seconds, at most `cap`;
/// anything else (null, zero, negative, not a number) is no wait.
pub fn pace_wait(answer: &Value, cap: Duration) -> Option<Duration> {
    let secs = answer.as_f64().filter(|s| s.is_finite() && *s > 0.0)?;
    Some(Duration::from_secs_f64(secs.min(cap.as_secs_f64())))
}

/// "Don't call before" from the API's remaining/reset headers (or its `pace` program).
#[derive(Debug, Default)]
pub struct Gate {
    until: Mutex<Option<Instant>>,
}

impl Gate {
    /// `Some(wait)` while the API's window is exhausted.
    pub fn closed_for(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut g = self.until.lock().ok()?;
        match *g {
            Some(t) if t > now => Some(t - now),
            Some(_) => {
                *g = None;
                None
            }
            None => None,
        }
    }

    /// Note a response's headers: remaining 0 with a reset closes the gate until then.
    pub fn observe(&self, limits: &RateLimit, headers: &http::HeaderMap) {
        let (Some(rem), Some(reset)) = (&limits.remaining_header, &limits.reset_header) else {
            return;
        };
        let exhausted = header(headers, rem)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|n| n <= 0.0);
        if !exhausted {
            return;
        }
        if let Some(wait) = header(headers, reset)
            .and_then(|v| reset_wait(v, limits.reset, SystemTime::now(), limits.max_wait))
        {
            self.close_for(wait);
        }
    }

    /// Hold requests back for `wait` (a later deadline already set is kept).
    pub fn close_for(&self, wait: Duration) {
        if wait.is_zero() {
            return;
        }
        if let Ok(mut g) = self.until.lock() {
            let t = Instant::now() + wait;
            *g = Some(g.map_or(t, |old| old.max(t)));
        }
    }
}

/// How long the API asked us to wait, from `Retry-After`, else the reset header.
pub fn wait_hint(limits: &RateLimit, headers: &http::HeaderMap) -> Option<Duration> {
    let now = SystemTime::now();
    header(headers, "retry-after")
        .and_then(|v| retry_after(v, now, limits.max_wait))
        .or_else(|| {
            limits
                .reset_header
                .as_deref()
                .and_then(|h| header(headers, h))
                .and_then(|v| reset_wait(v, limits.reset, now, limits.max_wait))
        })
}

/// Response headers as a JSON object (lower-case names; repeated headers joined by `, `),
/// for `$headers`.
pub fn headers_json(headers: &http::HeaderMap) -> Value {
    let mut m = serde_json::Map::new();
    for (name, value) in headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match m.get_mut(name.as_str()) {
            Some(Value::String(s)) => {
                s.push_str(", ");
                s.push_str(&v);
            }
            _ => {
                m.insert(name.as_str().to_string(), Value::String(v));
            }
        }
    }
    Value::Object(m)
}

/// A short quote of a body for an error message.
pub fn snippet(body: &Value) -> String {
    let text = match body {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut s: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        s.push('…');
    }
    s
}

/// Classify a response: `Ok(())` is success.
#[allow(clippy::too_many_arguments)]
pub async fn classify(
    rules: &[ErrorRule],
    limits: &RateLimit,
    success: impl Fn(u16) -> bool,
    status: u16,
    headers: &http::HeaderMap,
    body: &Value,
    vars: &Value,
    env: &MapVars,
) -> Result<(), DeliveryError> {
    let wait = || wait_hint(limits, headers);
    for rule in rules {
        let status_matches = if rule.status.is_empty() {
            status >= 300
        } else {
            rule.status.contains(&status)
        };
        if !status_matches {
            continue;
        }
        if let Some(when) = &rule.when {
            let v = Vars::new()
                .with("vars", vars.clone())
                .with("status", Value::from(status))
                .with("headers", headers_json(headers));
            match when.test(body, &v, env).await {
                Ok(true) => {}
                Ok(false) => continue,
                // A rule that cannot judge this body does not apply to it.
                Err(_) => continue,
            }
        }
        let reason = format!("HTTP {status}: {}", snippet(body));
        return match rule.class {
            ErrorClass::Success => Ok(()),
            ErrorClass::Transient => Err(DeliveryError::Transient {
                reason,
                retry_after: wait(),
            }),
            ErrorClass::RateLimited => Err(DeliveryError::RateLimited {
                reason,
                retry_after: wait(),
            }),
            ErrorClass::Unavailable => Err(DeliveryError::Unavailable {
                reason,
                retry_after: wait(),
            }),
            ErrorClass::Permanent => Err(DeliveryError::Permanent { reason }),
        };
    }
    if success(status) {
        return Ok(());
    }
    let mut e = classify_status(status, None, &snippet(body));
    // Our own Retry-After (HTTP dates, a cap) and the reset header instead of the engine's.
    match &mut e {
        DeliveryError::Transient { retry_after, .. }
        | DeliveryError::RateLimited { retry_after, .. }
        | DeliveryError::Unavailable { retry_after, .. }
        | DeliveryError::NotYet { retry_after, .. } => *retry_after = wait(),
        DeliveryError::Permanent { .. } => {}
    }
    // A 2xx the request did not list as success (e.g. 200 where only 201 means created).
    if (200..300).contains(&status) {
        return Err(DeliveryError::Permanent {
            reason: format!(
                "HTTP {status} is not one of the request's success statuses: {}",
                snippet(body)
            ),
        });
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(600);

    fn at(s: &str) -> SystemTime {
        let t = chrono::DateTime::parse_from_rfc3339(s).unwrap();
        UNIX_EPOCH + Duration::from_millis(t.timestamp_millis() as u64)
    }

    #[test]
    fn retry_after_takes_seconds_and_dates_capped() {
        let now = at("2015-10-21T07:27:00Z");
        assert_eq!(retry_after("3", now, CAP), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after(" 0.5 ", now, CAP),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now, CAP),
            Some(Duration::from_secs(60))
        );
        // In the past: no wait.
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now, CAP),
            Some(Duration::ZERO)
        );
        // Capped, however large.
        assert_eq!(retry_after("99999999999999999999", now, CAP), Some(CAP));
        assert_eq!(retry_after(&"9".repeat(100), now, CAP), Some(CAP));
        assert_eq!(retry_after("1e300", now, CAP), None, "not delta-seconds");
        assert_eq!(
            retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now, CAP),
            Some(CAP)
        );
        assert_eq!(retry_after("-5", now, CAP), None, "not delta-seconds");
        for junk in ["", "soon", "1e999", "NaN", "inf", "-inf", "\u{0}"] {
            assert_eq!(retry_after(junk, now, CAP), None, "{junk:?}");
        }
    }

    #[test]
    fn reset_headers_are_deltas_or_epochs() {
        let now = at("2020-01-01T00:00:00Z");
        let epoch = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(
            reset_wait("30", ResetKind::Auto, now, CAP),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            reset_wait(&(epoch + 7).to_string(), ResetKind::Auto, now, CAP),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            reset_wait(&(epoch - 7).to_string(), ResetKind::Epoch, now, CAP),
            Some(Duration::ZERO)
        );
        assert_eq!(reset_wait("1e308", ResetKind::Seconds, now, CAP), Some(CAP));
        assert_eq!(reset_wait("x", ResetKind::Auto, now, CAP), None);
        // BigCommerce's X-Rate-Limit-Time-Reset-Ms: milliseconds from now, never a date.
        assert_eq!(
            reset_wait("1500", ResetKind::Millis, now, CAP),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            reset_wait("15000000000000", ResetKind::Millis, now, CAP),
            Some(CAP)
        );
        assert_eq!(
            reset_wait("-3", ResetKind::Millis, now, CAP),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn a_pace_answer_is_a_bounded_wait_and_closes_the_gate() {
        use serde_json::json;
        assert_eq!(
            pace_wait(&json!(1.5), CAP),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(pace_wait(&json!(1e300), CAP), Some(CAP));
        for none in [json!(null), json!(0), json!(-2), json!("3"), json!([1])] {
            assert_eq!(pace_wait(&none, CAP), None, "{none}");
        }
        let gate = Gate::default();
        gate.close_for(Duration::ZERO);
        assert_eq!(gate.closed_for(), None);
        gate.close_for(Duration::from_secs(5));
        gate.close_for(Duration::from_secs(1));
        let w = gate.closed_for().expect("closed");
        assert!(
            w > Duration::from_secs(4),
            "the later deadline is kept: {w:?}"
        );
    }

    #[test]
    fn an_exhausted_window_closes_the_gate_until_the_reset() {
        let limits = RateLimit {
            remaining_header: Some("x-ratelimit-remaining".into()),
            reset_header: Some("x-ratelimit-reset".into()),
            ..RateLimit::default()
        };
        let gate = Gate::default();
        let mut h = http::HeaderMap::new();
        h.insert("x-ratelimit-remaining", "3".parse().unwrap());
        h.insert("x-ratelimit-reset", "20".parse().unwrap());
        gate.observe(&limits, &h);
        assert_eq!(gate.closed_for(), None);
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        gate.observe(&limits, &h);
        let w = gate.closed_for().expect("closed");
        assert!(
            w > Duration::from_secs(19) && w <= Duration::from_secs(20),
            "{w:?}"
        );
    }

    proptest::proptest! {
        /// Any header value at all: no panic, never more than the cap.
        #[test]
        fn retry_after_is_bounded_for_any_text(v in ".{0,80}", cap_s in 0u64..100_000) {
            let cap = Duration::from_secs(cap_s);
            if let Some(d) = retry_after(&v, SystemTime::now(), cap) {
                proptest::prop_assert!(d <= cap);
            }
            if let Some(d) = reset_wait(&v, ResetKind::Auto, SystemTime::now(), cap) {
                proptest::prop_assert!(d <= cap);
            }
        }

        #[test]
        fn retry_after_is_bounded_for_any_number(n in proptest::num::i64::ANY, f in proptest::num::f64::ANY) {
            for v in [n.to_string(), f.to_string(), format!("{f:e}"), (n as i128 * 1000).to_string()] {
                for kind in [ResetKind::Auto, ResetKind::Seconds, ResetKind::Millis, ResetKind::Epoch] {
                    if let Some(d) = reset_wait(&v, kind, SystemTime::now(), CAP) {
                        proptest::prop_assert!(d <= CAP);
                    }
                }
                if let Some(d) = retry_after(&v, SystemTime::now(), CAP) {
                    proptest::prop_assert!(d <= CAP);
                }
            }
        }
    }
}

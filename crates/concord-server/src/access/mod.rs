//! Access control for the HTTP surface: admin API tokens and dashboard sessions (`/api/v1`),
//! and per-channel keys of the storefront API (`/v1`). Tokens and keys are compared by their
//! SHA-256 in constant time (why SHA-256: `concord_engine::config::access`).
//!
//! - Admin: `Authorization: Bearer TOKEN`, or the `concord_session` cookie set by
//!   `POST /api/v1/session` (HttpOnly, SameSite=Strict, Path=/api/v1, Secure with
//!   `[admin] secure_cookie`; server-side session, ended by
//!   `DELETE /api/v1/session` or after `[admin] session_ttl`). Missing or unknown → 401; a
//!   viewer asking for an operator action → 403 (recorded in the audit trail as
//!   `admin.denied`); no `[admin]` tokens configured → 403 naming the fix (the admin API is
//!   never open by default). A state-changing request without a bearer token that a browser
//!   marks as coming from another origin (`Sec-Fetch-Site`) is refused with 403 (CSRF defence
//!   beyond SameSite=Strict; actions are never reachable by GET).
//! - Storefront: with `[[commerce.keys]]` configured, every `/v1` request needs a key
//!   (`Authorization: Bearer KEY` or `X-Concord-Key: KEY`) and acts only for that key's channel
//!   (403 otherwise); without keys `/v1` stays open (the server logs a WARN at start).
//!
//! - Metrics (`/metrics` on the main port): `Authorization: Bearer TOKEN` with a metrics token
//!   (`[[metrics.tokens]]`) or an admin token; no token of either kind configured → 403. On the
//!   separate `[metrics] listen` address: a metrics token when any is configured, else open.
//!
//! Failed attempts (an unknown admin token, storefront key or metrics token, a failed login) are
//! throttled per client ([`crate::throttle`]: a few tries, then 429 with `Retry-After` for every
//! attempt of that client, a correct one too, until a try comes back) and written to the audit
//! trail (`auth.failed`, and `auth.throttled` once per spell) with the client's address, what
//! was presented (the kind of credential, never its value) and the path. A missing credential
//! or an expired session cookie is not a guess and is not counted (session ids are 256 random
//! bits).
//!
//! `admin.rs` holds the admin API's tokens, sessions and extractors, `storefront.rs` the
//! channel keys, `metrics.rs` the `/metrics` tokens; this module the registry they share
//! ([`Access`]), the throttling and auditing of failed attempts, and the header parsing.
//!
//! Must never log, store or echo a token, key or session id in clear. Webhooks (`/hooks`) are
//! not handled here: they stay authenticated by their HMAC signature only.

mod admin;
mod metrics;
mod storefront;

pub use admin::{cross_site_refusal, require_admin, Caller, Operator, SESSION_COOKIE};
pub use metrics::{require_metrics_token, require_metrics_token_separate};
pub use storefront::{require_channel_key, ChannelScope};

use crate::throttle::{ClientKey, Throttle};
use crate::{ApiError, ErrorCode};
use admin::Session;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use concord_engine::config::access::token_hash;
use concord_engine::config::{AccessToken, AdminConfig, CommerceConfig, MetricsToken};
use concord_engine::Engine;
use concord_store::AuditEvent;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Tokens, keys and live sessions. One per server, shared by every request.
pub struct Access {
    admin: AdminConfig,
    commerce: CommerceConfig,
    /// `[[metrics.tokens]]`.
    metrics: Vec<MetricsToken>,
    /// By SHA-256 of the session id — only without an engine (unit tests): a server with an
    /// engine keeps sessions in its store, shared by every instance and kept across restarts.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    /// Failed attempts per client.
    throttle: Throttle,
    /// Where failed attempts are audited and sessions kept (`None`: not recorded, sessions in
    /// memory, e.g. unit tests).
    engine: Option<Engine>,
}

/// The kind of credential a failed attempt presented (audit trail, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    AdminToken,
    StorefrontKey,
    MetricsToken,
    /// `POST /api/v1/session` with a token.
    Login,
}

impl Credential {
    pub fn as_str(self) -> &'static str {
        match self {
            Credential::AdminToken => "admin token",
            Credential::StorefrontKey => "storefront key",
            Credential::MetricsToken => "metrics token",
            Credential::Login => "login",
        }
    }
}

/// The throttle key of a request's client (its connection's address, when served with
/// `ConnectInfo`).
pub fn client_of(extensions: &axum::http::Extensions) -> ClientKey {
    ClientKey::of(
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
    )
}

/// 429 with `Retry-After` for a throttled client.
pub fn too_many_attempts(wait: Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut r = ApiError::new(
        ErrorCode::RateLimited,
        format!("too many failed authentication attempts from this address; try again in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn unauthorized(message: String) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message)
}

/// Find the entry whose hash equals `hash`, comparing every entry in constant time (no early
/// exit: the time taken does not depend on which entry, if any, matched).
fn find_by_hash<'a, T>(
    entries: &'a [T],
    hash: &[u8; 32],
    of: impl Fn(&T) -> &[u8; 32],
) -> Option<&'a T> {
    let mut found = None;
    for e in entries {
        if bool::from(of(e).ct_eq(hash)) {
            found = Some(e);
        }
    }
    found
}

/// The bearer token of `Authorization: Bearer X`, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// 32 random bytes as 64 hex digits (a token, a key or a session id).
pub fn random_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

impl Access {
    pub fn new(admin: AdminConfig, commerce: CommerceConfig) -> Access {
        Access {
            metrics: Vec::new(),
            sessions: Mutex::new(HashMap::new()),
            throttle: Throttle::new(admin.failed_attempts, admin.failed_attempts_refill),
            admin,
            commerce,
            engine: None,
        }
    }

    /// Also accept these tokens for `/metrics`.
    pub fn with_metrics_tokens(mut self, tokens: Vec<MetricsToken>) -> Access {
        self.metrics = tokens;
        self
    }

    /// Record failed attempts in this engine's audit trail, and keep dashboard sessions in its
    /// store.
    pub fn with_audit(mut self, engine: Engine) -> Access {
        self.engine = Some(engine);
        self
    }

    /// `Err(wait)` when `client` used up its tries: refuse its request unchecked.
    pub fn throttled(&self, client: ClientKey) -> Result<(), Duration> {
        self.throttle.check(client, Instant::now())
    }

    /// Count a failed attempt of `client` and record it in the audit trail (`auth.failed`, and
    /// `auth.throttled` when it used the client's last try).
    pub async fn refused(
        &self,
        client: ClientKey,
        credential: Credential,
        method: &Method,
        path: &str,
    ) {
        let failed = self.throttle.fail(client, Instant::now());
        ::metrics::counter!("concord_auth_failures_total", "credential" => credential.as_str())
            .increment(1);
        if failed.now_throttled {
            ::metrics::counter!("concord_auth_throttled_total").increment(1);
            tracing::warn!(client = %client, credential = credential.as_str(),
                "too many failed authentication attempts; throttling this client");
        }
        let Some(engine) = &self.engine else { return };
        // The path as requested, bounded (it is the caller's text).
        let path: String = path.chars().take(256).collect();
        let detail = |outcome: &str| {
            serde_json::json!({
                "client": client.to_string(),
                "credential": credential.as_str(),
                "method": method.as_str(),
                "path": path,
                "result": outcome,
            })
        };
        let mut events = vec![AuditEvent {
            at: engine.now(),
            event: "auth.failed".into(),
            endpoint: None,
            kind: None,
            key: None,
            detail: detail("refused: unknown credential"),
        }];
        if failed.now_throttled {
            events.push(AuditEvent {
                at: engine.now(),
                event: "auth.throttled".into(),
                endpoint: None,
                kind: None,
                key: None,
                detail: detail(&format!(
                    "{} failed attempts: further attempts answer 429 until a try comes back (one every {} s)",
                    self.throttle.burst(),
                    self.throttle.refill().as_secs_f64()
                )),
            });
        }
        if let Err(e) = engine.store().record_audit(events).await {
            tracing::error!(error = %e, client = %client, "could not record a failed authentication in the audit trail");
        }
    }

    /// The configured token `token` is, if any.
    pub fn token(&self, token: &str) -> Option<&AccessToken> {
        find_by_hash(&self.admin.tokens, &token_hash(token), |t| &t.sha256)
    }
}

#[cfg(test)]
mod test_support {
    use super::*;
    use concord_engine::config::access::ChannelKey;
    use concord_engine::config::Role;

    pub(super) fn access(tokens: &[(&str, Role, &str)], keys: &[(&str, &str, &str)]) -> Access {
        Access::new(
            AdminConfig {
                tokens: tokens
                    .iter()
                    .map(|(name, role, t)| AccessToken {
                        name: name.to_string(),
                        role: *role,
                        sha256: token_hash(t),
                    })
                    .collect(),
                ..AdminConfig::default()
            },
            CommerceConfig {
                keys: keys
                    .iter()
                    .map(|(name, channel, k)| ChannelKey {
                        name: name.to_string(),
                        channel: channel.to_string(),
                        sha256: token_hash(k),
                    })
                    .collect(),
            },
        )
    }

    pub(super) fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::headers;

    #[test]
    fn bearer_and_cookie_parsing() {
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&headers(&[("authorization", "bearer  abc ")])),
            Some("abc")
        );
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Bearer ")])), None);
        let h = headers(&[
            ("cookie", "a=1; concord_session=xyz; b=2"),
            ("cookie", "c=3"),
        ]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "d"), None);
    }
}

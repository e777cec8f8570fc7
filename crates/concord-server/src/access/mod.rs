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
//! Must never log, store or echo a token, key or session id in clear. Webhooks (`/hooks`) are
//! not handled here: they stay authenticated by their HMAC signature only.

use crate::throttle::{ClientKey, Throttle};
use crate::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use concord_engine::config::access::{token_hash, ChannelKey};
use concord_engine::config::{AccessToken, AdminConfig, CommerceConfig, MetricsToken, Role};
use concord_engine::Engine;
use concord_store::AuditEvent;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Name of the dashboard session cookie.
pub const SESSION_COOKIE: &str = "concord_session";

/// Who is calling the admin API (put in the request's extensions by [`require_admin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's configured name (audit trail).
    pub name: String,
    pub role: Role,
}

/// A caller with the operator role: take it as a handler argument to require that role (403
/// for a viewer).
#[derive(Debug, Clone)]
pub struct Operator(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| unauthorized("authentication required".into()))
    }
}

impl FromRequestParts<crate::AppState> for Operator {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        s: &crate::AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, s).await?;
        if caller.role < Role::Operator {
            let message = format!(
                "token `{}` has role {}; this action needs role operator",
                caller.name, caller.role
            );
            // A refused attempt is part of the trail too.
            crate::admin::audit(
                s,
                &caller,
                "denied",
                serde_json::json!({"method": parts.method.as_str(), "path": parts.uri.path()}),
                serde_json::json!({"ok": false, "error": message}),
            )
            .await;
            return Err(ApiError {
                status: StatusCode::FORBIDDEN,
                message,
                details: vec![],
            });
        }
        Ok(Operator(caller))
    }
}

struct Session {
    caller: Caller,
    expires: Instant,
}

/// Tokens, keys and live sessions. One per server, shared by every request.
pub struct Access {
    admin: AdminConfig,
    commerce: CommerceConfig,
    /// `[[metrics.tokens]]`.
    metrics: Vec<MetricsToken>,
    /// By SHA-256 of the session id.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    /// Failed attempts per client.
    throttle: Throttle,
    /// Where failed attempts are audited (`None`: not recorded, e.g. unit tests).
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
    let mut r = ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        message: format!(
            "too many failed authentication attempts from this address; try again in {secs} s"
        ),
        details: vec![],
    }
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn unauthorized(message: String) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        message,
        details: vec![],
    }
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

    /// Record failed attempts in this engine's audit trail.
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
        metrics::counter!("concord_auth_failures_total", "credential" => credential.as_str())
            .increment(1);
        if failed.now_throttled {
            metrics::counter!("concord_auth_throttled_total").increment(1);
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

    /// May this request read `/metrics`? `separate`: on the `[metrics] listen` address (metrics
    /// tokens only, open when none are configured); else the main port (a metrics or admin
    /// token; 403 when neither kind is configured).
    pub fn check_metrics(&self, headers: &HeaderMap, separate: bool) -> Result<(), ApiError> {
        if separate && self.metrics.is_empty() {
            return Ok(());
        }
        if !separate && self.metrics.is_empty() && self.admin.tokens.is_empty() {
            return Err(ApiError {
                status: StatusCode::FORBIDDEN,
                message: "/metrics is not served on this port without a token: add a \
                          [[metrics.tokens]] entry (`concord token new --name prometheus \
                          --metrics`) or serve it on a separate address with [metrics] listen"
                    .into(),
                details: vec![],
            });
        }
        let Some(t) = bearer(headers) else {
            return Err(unauthorized(
                "a token is required: send `Authorization: Bearer TOKEN`".into(),
            ));
        };
        let hash = token_hash(t);
        let known = find_by_hash(&self.metrics, &hash, |m| &m.sha256).is_some()
            || (!separate && find_by_hash(&self.admin.tokens, &hash, |a| &a.sha256).is_some());
        if known {
            Ok(())
        } else {
            Err(unauthorized("unknown token".into()))
        }
    }

    /// The configured token `token` is, if any.
    pub fn token(&self, token: &str) -> Option<&AccessToken> {
        find_by_hash(&self.admin.tokens, &token_hash(token), |t| &t.sha256)
    }

    /// The channel key `key` is, if any.
    pub fn channel_key(&self, key: &str) -> Option<&ChannelKey> {
        find_by_hash(&self.commerce.keys, &token_hash(key), |k| &k.sha256)
    }

    pub fn commerce_open(&self) -> bool {
        self.commerce.keys.is_empty()
    }

    fn session(&self, id: &str) -> Option<Caller> {
        let hash = token_hash(id);
        let mut sessions = self.sessions.lock().ok()?;
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        // HashMap lookup by the hash of a 256-bit random id: timing reveals nothing useful
        // about an id an attacker does not already hold.
        sessions.get(&hash).map(|s| s.caller.clone())
    }

    /// Who the request's credentials belong to. A bearer header wins over a cookie.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if self.admin.tokens.is_empty() {
            return Err(ApiError {
                status: StatusCode::FORBIDDEN,
                message: "the admin API is disabled: no tokens are configured. Create one with \
                          `concord token new --name NAME --role viewer|operator` and add the \
                          printed [[admin.tokens]] entry to the config"
                    .into(),
                details: vec![],
            });
        }
        if let Some(t) = bearer(headers) {
            return self
                .token(t)
                .map(|t| Caller {
                    name: t.name.clone(),
                    role: t.role,
                })
                .ok_or_else(|| unauthorized("unknown token".into()));
        }
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            return self
                .session(id)
                .ok_or_else(|| unauthorized("session expired or logged out; log in again".into()));
        }
        Err(unauthorized(
            "authentication required: send `Authorization: Bearer TOKEN` or log in with POST /api/v1/session".into(),
        ))
    }

    /// Start a session for `token`; returns the caller and the `Set-Cookie` value.
    pub fn login(&self, token: &str) -> Result<(Caller, HeaderValue), ApiError> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(header::AUTHORIZATION, v);
        }
        let caller = self.authenticate(&headers)?;
        let id = random_secret().map_err(|e| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("no randomness source for a session id: {e}"),
            details: vec![],
        })?;
        let ttl = self.admin.session_ttl;
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(
                token_hash(&id),
                Session {
                    caller: caller.clone(),
                    // The config caps the TTL (a year); a larger one must not panic here.
                    expires: Instant::now()
                        .checked_add(ttl)
                        .unwrap_or_else(|| Instant::now() + Duration::from_secs(366 * 24 * 3600)),
                },
            );
        }
        let cookie = format!(
            "{SESSION_COOKIE}={id}; Path=/api/v1; HttpOnly; SameSite=Strict; Max-Age={}{}",
            ttl.as_secs(),
            if self.admin.secure_cookie {
                "; Secure"
            } else {
                ""
            }
        );
        let value = HeaderValue::from_str(&cookie).map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("session cookie: {e}"),
            details: vec![],
        })?;
        Ok((caller, value))
    }

    /// End the session of the request's cookie (if any); returns the clearing `Set-Cookie`.
    pub fn logout(&self, headers: &HeaderMap) -> HeaderValue {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            if let Ok(mut s) = self.sessions.lock() {
                s.remove(&token_hash(id));
            }
        }
        HeaderValue::from_static(if self.admin.secure_cookie {
            "concord_session=; Path=/api/v1; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
        } else {
            "concord_session=; Path=/api/v1; HttpOnly; SameSite=Strict; Max-Age=0"
        })
    }

    pub fn session_ttl(&self) -> Duration {
        self.admin.session_ttl
    }
}

/// Refuse a state-changing request that a browser says came from another origin, unless it
/// carries a bearer token (which a cross-origin page cannot attach without a CORS preflight
/// this server never grants). Defence in depth against CSRF with the session cookie: the
/// cookie is SameSite=Strict, but "same-site" still includes sibling subdomains; browsers mark
/// every request with `Sec-Fetch-Site` (on https and localhost), and the dashboard's own calls
/// are `same-origin`. Requests without the header (curl, scripts, old browsers) are let through.
pub fn cross_site_refusal(method: &Method, headers: &HeaderMap) -> Option<ApiError> {
    if method.is_safe() || bearer(headers).is_some() {
        return None;
    }
    let site = headers
        .get("sec-fetch-site")?
        .to_str()
        .unwrap_or("unreadable");
    if site == "same-origin" || site == "none" {
        return None;
    }
    Some(ApiError {
        status: StatusCode::FORBIDDEN,
        message: format!(
            "Sec-Fetch-Site: a {method} without a bearer token from another origin ({site}) is \
             refused; the dashboard acts from its own origin, tools send \
             `Authorization: Bearer TOKEN`"
        ),
        details: vec![],
    })
}

/// Middleware for the admin API: authenticates and puts the [`Caller`] in the extensions.
pub async fn require_admin(
    State(access): State<Arc<Access>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(e) = cross_site_refusal(req.method(), req.headers()) {
        return e.into_response();
    }
    let client = client_of(req.extensions());
    let presented = bearer(req.headers()).is_some();
    if presented || cookie(req.headers(), SESSION_COOKIE).is_some() {
        if let Err(wait) = access.throttled(client) {
            return too_many_attempts(wait);
        }
    }
    match access.authenticate(req.headers()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            if presented && e.status == StatusCode::UNAUTHORIZED {
                access
                    .refused(
                        client,
                        Credential::AdminToken,
                        req.method(),
                        req.uri().path(),
                    )
                    .await;
            }
            let mut r = e.into_response();
            if r.status() == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"concord\""),
                );
            }
            r
        }
    }
}

/// The channel a storefront API request's key acts for (`None`: no keys configured, open).
#[derive(Debug, Clone)]
pub struct ChannelScope(pub Option<String>);

impl ChannelScope {
    /// 403 unless this request may act for `channel`.
    pub fn check(&self, channel: &str) -> Result<(), ApiError> {
        match &self.0 {
            Some(own) if own != channel => Err(ApiError {
                status: StatusCode::FORBIDDEN,
                message: format!("channel: this key acts for channel `{own}`, not `{channel}`"),
                details: vec![],
            }),
            _ => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ChannelScope {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ChannelScope>()
            .cloned()
            .unwrap_or(ChannelScope(None)))
    }
}

/// Middleware for the storefront API: with keys configured, requires one and records its
/// channel as the request's [`ChannelScope`].
pub async fn require_channel_key(
    State(access): State<Arc<Access>>,
    mut req: Request,
    next: Next,
) -> Response {
    if access.commerce_open() {
        req.extensions_mut().insert(ChannelScope(None));
        return next.run(req).await;
    }
    let presented = bearer(req.headers()).or_else(|| {
        req.headers()
            .get("x-concord-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    });
    let Some(presented) = presented else {
        return unauthorized(
            "a storefront key is required: send `Authorization: Bearer KEY` or `X-Concord-Key: KEY`"
                .into(),
        )
        .into_response();
    };
    let client = client_of(req.extensions());
    if let Err(wait) = access.throttled(client) {
        return too_many_attempts(wait);
    }
    match access.channel_key(presented) {
        Some(k) => {
            req.extensions_mut()
                .insert(ChannelScope(Some(k.channel.clone())));
            next.run(req).await
        }
        None => {
            access
                .refused(
                    client,
                    Credential::StorefrontKey,
                    req.method(),
                    req.uri().path(),
                )
                .await;
            unauthorized("unknown storefront key".into()).into_response()
        }
    }
}

/// Middleware for `/metrics` on the main port (see [`Access::check_metrics`]).
pub async fn require_metrics_token(
    State(access): State<Arc<Access>>,
    req: Request,
    next: Next,
) -> Response {
    metrics_gate(&access, req, next, false).await
}

/// Middleware for `/metrics` on the separate `[metrics] listen` address.
pub async fn require_metrics_token_separate(
    State(access): State<Arc<Access>>,
    req: Request,
    next: Next,
) -> Response {
    metrics_gate(&access, req, next, true).await
}

async fn metrics_gate(access: &Access, req: Request, next: Next, separate: bool) -> Response {
    let client = client_of(req.extensions());
    let presented = bearer(req.headers()).is_some();
    if presented {
        if let Err(wait) = access.throttled(client) {
            return too_many_attempts(wait);
        }
    }
    match access.check_metrics(req.headers(), separate) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            if presented && e.status == StatusCode::UNAUTHORIZED {
                access
                    .refused(
                        client,
                        Credential::MetricsToken,
                        req.method(),
                        req.uri().path(),
                    )
                    .await;
            }
            let mut r = e.into_response();
            if r.status() == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"concord\""),
                );
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_engine::config::access::token_hash;

    fn access(tokens: &[(&str, Role, &str)], keys: &[(&str, &str, &str)]) -> Access {
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

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

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

    #[test]
    fn tokens_roles_and_sessions() {
        let a = access(
            &[("ann", Role::Viewer, "t1"), ("ops", Role::Operator, "t2")],
            &[],
        );
        let who = |h: HeaderMap| a.authenticate(&h).map(|c| (c.name, c.role));
        assert_eq!(
            who(headers(&[("authorization", "Bearer t2")])).ok(),
            Some(("ops".into(), Role::Operator))
        );
        let e = who(headers(&[("authorization", "Bearer t3")])).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            who(HeaderMap::new()).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        // A session: the cookie holds a fresh random id, never the token.
        let (caller, set_cookie) = a.login("t1").expect("login");
        assert_eq!(caller.name, "ann");
        let set_cookie = set_cookie.to_str().expect("ascii").to_string();
        assert!(!set_cookie.contains("t1;"));
        let pair = set_cookie.split(';').next().expect("pair").to_string();
        assert_eq!(
            who(headers(&[("cookie", &pair)])).ok(),
            Some(("ann".into(), Role::Viewer))
        );
        a.logout(&headers(&[("cookie", &pair)]));
        assert_eq!(
            who(headers(&[("cookie", &pair)])).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            a.login("nope").unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn a_huge_session_ttl_does_not_panic_the_login() {
        let mut a = access(&[("ops", Role::Operator, "t2")], &[]);
        a.admin.session_ttl = Duration::MAX;
        let (_, set_cookie) = a.login("t2").expect("login");
        let pair = set_cookie
            .to_str()
            .expect("ascii")
            .split(';')
            .next()
            .expect("pair")
            .to_string();
        assert!(a.authenticate(&headers(&[("cookie", &pair)])).is_ok());
    }

    #[test]
    fn no_tokens_means_closed() {
        let a = access(&[], &[]);
        let e = a
            .authenticate(&headers(&[("authorization", "Bearer anything")]))
            .unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(e.message.contains("concord token new"), "{}", e.message);
        assert!(a.commerce_open());
    }

    #[test]
    fn channel_keys_scope_their_channel() {
        let a = access(&[], &[("k1", "web1", "key-1"), ("k2", "web2", "key-2")]);
        assert!(!a.commerce_open());
        assert_eq!(
            a.channel_key("key-2").map(|k| k.channel.as_str()),
            Some("web2")
        );
        assert!(a.channel_key("key-3").is_none());
        let scope = ChannelScope(Some("web1".into()));
        assert!(scope.check("web1").is_ok());
        assert_eq!(
            scope.check("web2").unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert!(ChannelScope(None).check("web2").is_ok());
    }
}

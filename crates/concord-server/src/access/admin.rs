//! The admin API's access (`/api/v1`): bearer tokens with a role, dashboard sessions behind a
//! cookie, the CSRF refusal of cross-site requests, and the [`Caller`] / [`Operator`]
//! extractors handlers take.
//!
//! Must never put a token in a session cookie (a session is a fresh random id), nor open the
//! admin API when no token is configured.

use super::{bearer, client_of, cookie, random_secret, too_many_attempts, unauthorized};
use super::{Access, Credential};
use crate::{ApiError, ErrorCode};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use concord_engine::config::access::token_hash;
use concord_engine::config::Role;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
            return Err(ApiError::new(ErrorCode::Forbidden, message));
        }
        Ok(Operator(caller))
    }
}

/// A dashboard session kept in memory (an [`Access`] without an engine): whose token, and until
/// when.
pub(super) struct Session {
    name: String,
    expires: Instant,
}

/// The store was out of reach while a session was looked up or kept.
fn session_store_error(e: concord_store::StoreError) -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        format!("dashboard sessions are kept in the store, which failed: {e}"),
    )
}

impl Access {
    /// The caller of session `id`: the session must exist and not have expired, and the token
    /// it was opened with must still be configured (its current role applies) — removing a
    /// token from the config ends its sessions, also those kept across a restart.
    async fn session(&self, id: &str) -> Result<Option<Caller>, ApiError> {
        let hash = token_hash(id);
        let name = match &self.engine {
            Some(engine) => engine
                .store()
                .session(&hex::encode(hash), engine.now())
                .await
                .map_err(session_store_error)?,
            None => {
                let Ok(mut sessions) = self.sessions.lock() else {
                    return Ok(None);
                };
                let now = Instant::now();
                sessions.retain(|_, s| s.expires > now);
                // HashMap lookup by the hash of a 256-bit random id: timing reveals nothing
                // useful about an id an attacker does not already hold.
                sessions.get(&hash).map(|s| s.name.clone())
            }
        };
        Ok(name.and_then(|name| {
            self.admin
                .tokens
                .iter()
                .find(|t| t.name == name)
                .map(|t| Caller {
                    name: t.name.clone(),
                    role: t.role,
                })
        }))
    }

    /// Who the request's credentials belong to. A bearer header wins over a cookie.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if self.admin.tokens.is_empty() {
            return Err(ApiError::new(
                ErrorCode::AccessNotConfigured,
                "the admin API is disabled: no tokens are configured. Create one with \
                 `concord token new --name NAME --role viewer|operator` and add the \
                 printed [[admin.tokens]] entry to the config",
            ));
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
                .await?
                .ok_or_else(|| unauthorized("session expired or logged out; log in again".into()));
        }
        Err(unauthorized(
            "authentication required: send `Authorization: Bearer TOKEN` or log in with POST /api/v1/session".into(),
        ))
    }

    /// Start a session for `token`; returns the caller and the `Set-Cookie` value. With an
    /// engine the session is kept in its store (durable before the cookie is sent).
    pub async fn login(&self, token: &str) -> Result<(Caller, HeaderValue), ApiError> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(header::AUTHORIZATION, v);
        }
        let caller = self.authenticate(&headers).await?;
        let id = random_secret().map_err(|e| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!("no randomness source for a session id: {e}"),
            )
        })?;
        let ttl = self.admin.session_ttl;
        match &self.engine {
            Some(engine) => {
                let now = engine.now();
                // The config caps the TTL (a year); a larger one must not overflow here.
                let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
                engine
                    .store()
                    .create_session(
                        &hex::encode(token_hash(&id)),
                        &caller.name,
                        now.saturating_add(ttl_ms),
                        now,
                    )
                    .await
                    .map_err(session_store_error)?;
            }
            None => {
                if let Ok(mut s) = self.sessions.lock() {
                    s.insert(
                        token_hash(&id),
                        Session {
                            name: caller.name.clone(),
                            // The config caps the TTL (a year); a larger one must not panic.
                            expires: Instant::now().checked_add(ttl).unwrap_or_else(|| {
                                Instant::now() + Duration::from_secs(366 * 24 * 3600)
                            }),
                        },
                    );
                }
            }
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
        let value = HeaderValue::from_str(&cookie)
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("session cookie: {e}")))?;
        Ok((caller, value))
    }

    /// End the session of the request's cookie (if any); returns the clearing `Set-Cookie`.
    pub async fn logout(&self, headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            match &self.engine {
                Some(engine) => engine
                    .store()
                    .delete_session(&hex::encode(token_hash(id)))
                    .await
                    .map_err(session_store_error)?,
                None => {
                    if let Ok(mut s) = self.sessions.lock() {
                        s.remove(&token_hash(id));
                    }
                }
            }
        }
        Ok(HeaderValue::from_static(if self.admin.secure_cookie {
            "concord_session=; Path=/api/v1; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
        } else {
            "concord_session=; Path=/api/v1; HttpOnly; SameSite=Strict; Max-Age=0"
        }))
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
    Some(ApiError::new(
        ErrorCode::CrossSite,
        format!(
            "Sec-Fetch-Site: a {method} without a bearer token from another origin ({site}) is \
             refused; the dashboard acts from its own origin, tools send \
             `Authorization: Bearer TOKEN`"
        ),
    ))
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
    match access.authenticate(req.headers()).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::test_support::{access, headers};

    #[tokio::test]
    async fn tokens_roles_and_sessions() {
        let a = access(
            &[("ann", Role::Viewer, "t1"), ("ops", Role::Operator, "t2")],
            &[],
        );
        let who = async |h: HeaderMap| a.authenticate(&h).await.map(|c| (c.name, c.role));
        assert_eq!(
            who(headers(&[("authorization", "Bearer t2")])).await.ok(),
            Some(("ops".into(), Role::Operator))
        );
        let e = who(headers(&[("authorization", "Bearer t3")]))
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            who(HeaderMap::new()).await.unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        // A session: the cookie holds a fresh random id, never the token.
        let (caller, set_cookie) = a.login("t1").await.expect("login");
        assert_eq!(caller.name, "ann");
        let set_cookie = set_cookie.to_str().expect("ascii").to_string();
        assert!(!set_cookie.contains("t1;"));
        let pair = set_cookie.split(';').next().expect("pair").to_string();
        assert_eq!(
            who(headers(&[("cookie", &pair)])).await.ok(),
            Some(("ann".into(), Role::Viewer))
        );
        a.logout(&headers(&[("cookie", &pair)]))
            .await
            .expect("logout");
        assert_eq!(
            who(headers(&[("cookie", &pair)])).await.unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            a.login("nope").await.unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn a_huge_session_ttl_does_not_panic_the_login() {
        let mut a = access(&[("ops", Role::Operator, "t2")], &[]);
        a.admin.session_ttl = Duration::MAX;
        let (_, set_cookie) = a.login("t2").await.expect("login");
        let pair = set_cookie
            .to_str()
            .expect("ascii")
            .split(';')
            .next()
            .expect("pair")
            .to_string();
        assert!(a.authenticate(&headers(&[("cookie", &pair)])).await.is_ok());
    }

    #[tokio::test]
    async fn no_tokens_means_closed() {
        let a = access(&[], &[]);
        let e = a
            .authenticate(&headers(&[("authorization", "Bearer anything")]))
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(e.message.contains("concord token new"), "{}", e.message);
        assert!(a.commerce_open());
    }
}

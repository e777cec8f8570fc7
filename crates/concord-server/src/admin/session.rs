//! `POST /api/v1/session` (log in with a token: sets the HttpOnly session cookie),
//! `DELETE /api/v1/session` (log out) and `GET /api/v1/me` (who am I). A failed login counts
//! against the client's tries and is audited (`crate::access`, `crate::throttle`); a throttled
//! client's login answers 429 unchecked. Must never echo the token or put it in the cookie (the
//! cookie holds a fresh random session id).

use super::ErrorBody;
use crate::access::{Access, Caller, Credential};
use crate::throttle::ClientKey;
use crate::ApiError;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use utoipa::ToSchema;

/// Log-in request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// An admin token (as printed by `concord token new`).
    pub token: String,
}

/// Who a token or session belongs to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// The token's configured name.
    pub name: String,
    /// `viewer` or `operator`.
    pub role: String,
}

impl From<Caller> for Me {
    fn from(c: Caller) -> Me {
        Me {
            name: c.name,
            role: c.role.as_str().to_string(),
        }
    }
}

/// Log in with a token; the answer sets the `concord_session` cookie (HttpOnly,
/// SameSite=Strict) that authenticates the dashboard's requests. The session is kept in the
/// store (shared by instances on one database, kept across restarts) until it expires, the
/// caller logs out, or its token is removed from the config.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    tag = "session",
    security(()),
    request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in; `Set-Cookie: concord_session=…`", body = Me),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Unknown token", body = ErrorBody),
        (status = 403, description = "The admin API has no tokens configured, or a browser sent the request from another origin", body = ErrorBody),
        (status = 429, description = "Too many failed attempts from this address; `Retry-After` says when to try again", body = ErrorBody),
        (status = 503, description = "The store, which keeps sessions, is out of reach", body = ErrorBody),
    )
)]
pub async fn login(
    Extension(access): Extension<Arc<Access>>,
    connection: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // A cross-origin page must not log a browser in (login CSRF).
    if let Some(e) = crate::access::cross_site_refusal(&method, &headers) {
        return Err(e);
    }
    let client = ClientKey::of(connection.map(|c| c.0 .0.ip()));
    if let Err(wait) = access.throttled(client) {
        return Ok(crate::access::too_many_attempts(wait));
    }
    let b: LoginBody = crate::parse_json_body(&body)?;
    if b.token.trim().is_empty() {
        return Err(ApiError::invalid_field("token", "must not be empty"));
    }
    let (caller, cookie) = match access.login(b.token.trim()).await {
        Ok(ok) => ok,
        Err(e) => {
            if e.status == StatusCode::UNAUTHORIZED {
                access
                    .refused(client, Credential::Login, &method, "/api/v1/session")
                    .await;
            }
            return Err(e);
        }
    };
    Ok((
        StatusCode::OK,
        [(header::SET_COOKIE, cookie)],
        Json(Me::from(caller)),
    )
        .into_response())
}

/// Log out: ends the session of the request's cookie and clears the cookie.
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    tag = "session",
    security(()),
    responses(
        (status = 204, description = "Logged out (also when there was no session)"),
        (status = 503, description = "The store, which keeps sessions, is out of reach", body = ErrorBody),
    )
)]
pub async fn logout(Extension(access): Extension<Arc<Access>>, headers: HeaderMap) -> Response {
    match access.logout(&headers).await {
        Ok(clear) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The caller's token name and role.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "session",
    responses(
        (status = 200, body = Me),
        (status = 401, description = "Missing or unknown token / session", body = ErrorBody),
    )
)]
pub async fn me(caller: Caller) -> Json<Me> {
    Json(Me::from(caller))
}

//! The Vendure Admin API client: GraphQL over `POST <url>/admin-api`, an authenticated session,
//! and every failure classified the engine's way.
//!
//! API reference followed: Vendure 3.7 docs, "Admin API" (docs.vendure.io/reference/graphql-api/admin)
//! and "Managing sessions" / `AuthOptions.tokenMethod` (docs.vendure.io/guides/developer-guide/
//! authentication): the `login(username, password)` mutation answers a `CurrentUser` or an
//! `ErrorResult`, and with `tokenMethod: 'bearer'` the session token comes back in the
//! `vendure-auth-token` response header and is sent as `Authorization: Bearer <token>`; a
//! `vendure-token` header selects the channel. GraphQL errors arrive with HTTP 200 and
//! `errors[].extensions.code` (`FORBIDDEN` for a missing or expired session); malformed queries
//! with HTTP 400. Mutations that can fail for business reasons return a union with
//! `ErrorResult { errorCode message }`, checked by [`ok`].
//!
//! Sessions: the client logs in lazily on the first call. When a call is answered `FORBIDDEN`
//! (the session expired, or the server restarted with a fresh session store), the client logs in
//! again and resends that one call, **once**; a second `FORBIDDEN` is permanent (the user lacks the
//! permission). That is not a retry loop: every other failure is classified and returned to the
//! engine, which owns retries, backoff and the breaker.
//!
//! Classification: connection refused → `Unavailable`; timeout/reset → `Transient`; HTTP status
//! through `classify_status`; GraphQL errors: `FORBIDDEN` (after the re-login) and validation
//! (`BAD_USER_INPUT`, `GRAPHQL_VALIDATION_FAILED`, `USER_INPUT_ERROR`, `ENTITY_NOT_FOUND`) →
//! `Permanent`; `INTERNAL_SERVER_ERROR` → `Transient` when it is a database lock
//! (`SQLITE_BUSY`, "database is locked", deadlock), else `Permanent` with the message.
//!
//! Transport: the engine's shared outbound client (`concord_engine::outbound`): a redirect is
//! refused, never followed (it would re-send the `login` mutation with the password), answers
//! are read up to the endpoint's `max_response_bytes`, and URLs in errors are redacted.
//!
//! Must never: sleep, loop to retry, or log the password or the session token.

use concord_engine::connector::{classify_status, DeliveryError};
use concord_engine::outbound;
use concord_engine::secret::Secret;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// Building the client failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("`{0}` must be an http:// or https:// URL")]
    Url(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

#[derive(Clone)]
struct Session {
    token: String,
    generation: u64,
}

/// A GraphQL client for one Vendure API (admin or shop).
pub struct Gql {
    http: reqwest::Client,
    url: String,
    user: String,
    password: Secret,
    channel_token: Option<Secret>,
    /// Largest answer read (`max_response_bytes`).
    max_body: usize,
    session: Mutex<Option<Session>>,
    logins: AtomicU64,
    calls: AtomicU64,
}

impl std::fmt::Debug for Gql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gql")
            .field("url", &outbound::redact_url(&self.url))
            .field("user", &self.user)
            .field("password", &self.password)
            .field("channel_token", &self.channel_token)
            .finish()
    }
}

enum Failure {
    /// `FORBIDDEN`: re-login and resend once.
    Forbidden(String),
    Other(DeliveryError),
}

impl Gql {
    /// No I/O. `base` is the server's root URL, `path` the API path (`admin-api`); answers
    /// larger than `max_body` bytes are refused.
    pub fn new(
        base: &str,
        path: &str,
        user: &str,
        password: &str,
        channel_token: Option<&str>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Gql, ClientError> {
        let shown = || outbound::redact_url(base);
        let parsed = reqwest::Url::parse(base).map_err(|_| ClientError::Url(shown()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::Url(shown()));
        }
        let http = outbound::client(timeout).map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Gql {
            http,
            url: format!("{}/{}", base.trim_end_matches('/'), path.trim_matches('/')),
            user: user.to_string(),
            password: Secret::from(password),
            channel_token: channel_token.map(Secret::from),
            max_body,
            session: Mutex::new(None),
            logins: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        })
    }

    /// How many times this client has logged in (tests check re-login).
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// How many HTTP requests this client has sent (logins included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Run `query` with `variables`; the `data` object. Re-logs in once on `FORBIDDEN`.
    pub async fn query(&self, query: &str, variables: Value) -> Result<Value, DeliveryError> {
        let session = self.session(None).await?;
        match self.send(query, &variables, Some(&session.token)).await {
            Ok((data, _)) => Ok(data),
            Err(Failure::Other(e)) => Err(e),
            Err(Failure::Forbidden(_)) => {
                let fresh = self.session(Some(session.generation)).await?;
                match self.send(query, &variables, Some(&fresh.token)).await {
                    Ok((data, _)) => Ok(data),
                    Err(Failure::Other(e)) => Err(e),
                    Err(Failure::Forbidden(m)) => Err(DeliveryError::Permanent {
                        reason: format!(
                            "Vendure refused the query right after a fresh login as `{}` \
                             (FORBIDDEN: {m}); does the user have the permission?",
                            self.user
                        ),
                    }),
                }
            }
        }
    }

    /// The current session, or a new one when there is none or it is generation `stale`.
    async fn session(&self, stale: Option<u64>) -> Result<Session, DeliveryError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref() {
            if Some(s.generation) != stale {
                return Ok(s.clone());
            }
        }
        let (data, token) = self
            .send(
                "mutation($u:String!,$p:String!){ login(username:$u,password:$p){ \
                 __typename ... on CurrentUser { id } ... on ErrorResult { errorCode message } } }",
                &json!({"u": self.user, "p": self.password.expose()}),
                None,
            )
            .await
            .map_err(|f| match f {
                Failure::Forbidden(m) => DeliveryError::Permanent {
                    reason: format!("Vendure refused the login of `{}`: {m}", self.user),
                },
                Failure::Other(e) => e,
            })?;
        ok(&data, "login").map_err(|e| DeliveryError::Permanent {
            reason: format!("login as `{}` failed: {e}", self.user),
        })?;
        let token = token.ok_or_else(|| DeliveryError::Permanent {
            reason: "Vendure answered the login without a `vendure-auth-token` header; set \
                     authOptions.tokenMethod to include 'bearer'"
                .into(),
        })?;
        let generation = self.logins.fetch_add(1, Ordering::Relaxed) + 1;
        let s = Session { token, generation };
        *guard = Some(s.clone());
        Ok(s)
    }

    /// One HTTP request: the `data` and the `vendure-auth-token` header, or the failure.
    async fn send(
        &self,
        query: &str,
        variables: &Value,
        token: Option<&str>,
    ) -> Result<(Value, Option<String>), Failure> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut req = self
            .http
            .post(&self.url)
            .json(&json!({"query": query, "variables": variables}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(c) = &self.channel_token {
            req = req.header("vendure-token", c.expose());
        }
        let resp = outbound::send(req, self.max_body)
            .await
            .map_err(|e| Failure::Other(e.into()))?;
        let status = resp.status;
        let new_token = resp.header("vendure-auth-token").map(str::to_string);
        let text = resp.text();
        if !status.is_success() {
            return Err(Failure::Other(classify_status(
                status.as_u16(),
                resp.header("retry-after"),
                &text,
            )));
        }
        let body: Value = serde_json::from_str(&text).map_err(|e| {
            Failure::Other(DeliveryError::Transient {
                reason: format!("malformed GraphQL answer: {e}"),
                retry_after: None,
            })
        })?;
        if let Some(errors) = body
            .get("errors")
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty())
        {
            return Err(classify_errors(errors));
        }
        Ok((body.get("data").cloned().unwrap_or(Value::Null), new_token))
    }
}

fn classify_errors(errors: &[Value]) -> Failure {
    let code = |e: &Value| {
        e.pointer("/extensions/code")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let message: String = errors
        .iter()
        .map(|e| {
            format!(
                "{}{}",
                e.get("message").and_then(Value::as_str).unwrap_or("error"),
                match code(e).as_str() {
                    "" => String::new(),
                    c => format!(" ({c})"),
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
        .chars()
        .take(500)
        .collect();
    if errors.iter().any(|e| code(e) == "FORBIDDEN") {
        return Failure::Forbidden(message);
    }
    let lower = message.to_lowercase();
    let locked = [
        "sqlite_busy",
        "database is locked",
        "deadlock",
        "lock wait timeout",
    ]
    .iter()
    .any(|m| lower.contains(m));
    let reason = format!("Vendure GraphQL: {message}");
    if locked {
        Failure::Other(DeliveryError::Transient {
            reason,
            retry_after: None,
        })
    } else {
        Failure::Other(DeliveryError::Permanent { reason })
    }
}

/// Check a union result at `data.<field>`: an `ErrorResult` (an object with `errorCode`) is a
/// permanent failure naming the code; otherwise the object.
pub fn ok<'a>(data: &'a Value, field: &str) -> Result<&'a Value, DeliveryError> {
    let v = data.get(field).ok_or_else(|| DeliveryError::Transient {
        reason: format!("Vendure answered without `{field}`"),
        retry_after: None,
    })?;
    if let Some(code) = v.get("errorCode").and_then(Value::as_str) {
        let msg = v.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(DeliveryError::Permanent {
            reason: format!("Vendure `{field}`: {code}: {msg}"),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let f = classify_errors(&[json!({"message": "You are not currently authorized",
                                          "extensions": {"code": "FORBIDDEN"}})]);
        assert!(matches!(f, Failure::Forbidden(_)));
        let f = classify_errors(&[json!({"message": "SQLITE_BUSY: database is locked",
                                          "extensions": {"code": "INTERNAL_SERVER_ERROR"}})]);
        assert!(matches!(f, Failure::Other(DeliveryError::Transient { .. })));
        let f = classify_errors(&[json!({"message": "Variable \"$i\" got invalid value",
                                          "extensions": {"code": "BAD_USER_INPUT"}})]);
        let Failure::Other(e) = f else {
            panic!("not forbidden")
        };
        assert!(
            e.is_permanent() && e.to_string().contains("BAD_USER_INPUT"),
            "{e}"
        );
        let data = json!({"x": {"errorCode": "ITEMS_ALREADY_FULFILLED_ERROR", "message": "m"}});
        assert!(ok(&data, "x")
            .unwrap_err()
            .to_string()
            .contains("ITEMS_ALREADY"));
        assert!(ok(&json!({"x": {"id": "1"}}), "x").is_ok());
    }

    #[test]
    fn urls_and_debug_hide_the_password() {
        let g = Gql::new(
            "http://h:1/",
            "/admin-api",
            "u",
            "secret",
            Some("chan-tok"),
            Duration::ZERO,
            1 << 20,
        )
        .unwrap();
        assert_eq!(g.url, "http://h:1/admin-api");
        let shown = format!("{g:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("chan-tok"),
            "{shown}"
        );
        assert!(Gql::new("ftp://h", "admin-api", "u", "p", None, Duration::ZERO, 1).is_err());
    }
}

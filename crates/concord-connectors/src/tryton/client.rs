//! The Tryton JSON-RPC client: one `POST <url>/<database>/rpc/` per call with
//! `{"id","method","params"}`, a session from `common.db.login`, and every failure classified
//! the engine's way.
//!
//! API reference followed: Tryton 8.2, `trytond/protocols/jsonrpc.py` and
//! `trytond/protocols/dispatcher.py` — JSON-RPC 1.0-style bodies, answered HTTP 200 with either
//! `{"result"}` or `{"error": [name, args]}`; HTTP 401 for a missing or expired session; 429 after
//! too many failed logins; `Authorization: Session base64(login:user_id:token)`. Model methods are
//! `model.<name>.<method>` and take the context as their last parameter.
//!
//! Sessions: the client logs in lazily on the first call and keeps the session. When a call is
//! answered 401 (the session expired or the server restarted and lost it), the client logs in
//! again and resends that one call, **once**. That is not a retry loop: a 401 on a fresh session,
//! or any other failure, is classified and returned to the engine, which owns retries, backoff
//! and the breaker.
//!
//! Classification: connection refused → `Unavailable`; timeout/reset → `Transient`; HTTP status
//! through `classify_status`; RPC errors by name — `UserError`, `UserWarning`, `AccessError` and
//! other validation errors are `Permanent` (the same request will fail again), lock and
//! concurrency errors (`DatabaseOperationalError`, `ConcurrencyException`, "database is locked")
//! are `Transient`, and so is a create losing a race for a sequence-assigned unique code;
//! unknown server exceptions are `Permanent` (they are bugs the same request
//! would hit again; the dead letter keeps the message).
//!
//! Transport: the engine's shared outbound client (`concord_engine::outbound`): a redirect is
//! refused, never followed (it would re-send the login body with the password), answers are read
//! up to the endpoint's `max_response_bytes`, and URLs in errors are redacted.
//!
//! Must never: sleep, loop to retry, or log the password or the session token.

use concord_engine::connector::{classify_status, DeliveryError};
use concord_engine::outbound;
use concord_engine::secret::Secret;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// A logged-in session.
#[derive(Clone)]
struct Session {
    /// `Session base64(login:uid:token)`.
    header: String,
    /// The user's context (`company`, `companies`, `language`, …) from `get_preferences`.
    context: Value,
    /// Bumped on every login, so concurrent callers that all saw a 401 log in only once.
    generation: u64,
}

/// JSON-RPC client bound to one database.
pub struct Rpc {
    http: reqwest::Client,
    url: String,
    user: String,
    password: Secret,
    /// Largest answer read (`max_response_bytes`).
    max_body: usize,
    session: Mutex<Option<Session>>,
    logins: AtomicU64,
    ids: AtomicU64,
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rpc")
            .field("url", &outbound::redact_url(&self.url))
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

/// Building the client failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("`{0}` must be an http:// or https:// URL")]
    Url(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

impl Rpc {
    /// No I/O. `base` is the server's root URL, `database` the Tryton database name; answers
    /// larger than `max_body` bytes are refused.
    pub fn new(
        base: &str,
        database: &str,
        user: &str,
        password: &str,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Rpc, ClientError> {
        let shown = || outbound::redact_url(base);
        let parsed = reqwest::Url::parse(base).map_err(|_| ClientError::Url(shown()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::Url(shown()));
        }
        let http = outbound::client(timeout).map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Rpc {
            http,
            url: format!("{}/{}/rpc/", base.trim_end_matches('/'), database),
            user: user.to_string(),
            password: Secret::from(password),
            max_body,
            session: Mutex::new(None),
            logins: AtomicU64::new(0),
            ids: AtomicU64::new(1),
        })
    }

    /// How many times this client has logged in (tests check re-login).
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// The user's context (company, language); logs in when needed.
    pub async fn context(&self) -> Result<Value, DeliveryError> {
        Ok(self.session(None).await?.context)
    }

    /// Call `method` with `params`; model and wizard methods get the session's context appended
    /// (merged with `extra_context`). Re-logs in once on 401.
    pub async fn call(
        &self,
        method: &str,
        params: Vec<Value>,
        extra_context: Option<&Value>,
    ) -> Result<Value, DeliveryError> {
        let session = self.session(None).await?;
        match self
            .send(method, &params, extra_context, Some(&session))
            .await
        {
            Err(Unauthorized) => {
                // The session is gone (expired, server restarted): log in again and resend this
                // call once. A second 401 is returned as a failure, not retried here.
                let fresh = self.session(Some(session.generation)).await?;
                match self
                    .send(method, &params, extra_context, Some(&fresh))
                    .await
                {
                    Err(Unauthorized) => Err(DeliveryError::Permanent {
                        reason: format!(
                            "Tryton answered 401 to `{method}` right after a fresh login as `{}`",
                            self.user
                        ),
                    }),
                    Ok(r) => r,
                }
            }
            Ok(r) => r,
        }
    }

    /// A model method: `model.<model>.<method>`.
    pub async fn model(
        &self,
        model: &str,
        method: &str,
        params: Vec<Value>,
    ) -> Result<Value, DeliveryError> {
        self.call(&format!("model.{model}.{method}"), params, None)
            .await
    }

    /// `search_read(domain, offset, limit, order, fields)`.
    pub async fn search_read(
        &self,
        model: &str,
        domain: Value,
        limit: Option<usize>,
        order: Value,
        fields: &[&str],
    ) -> Result<Vec<Value>, DeliveryError> {
        let r = self
            .model(
                model,
                "search_read",
                vec![domain, json!(0), json!(limit), order, json!(fields)],
            )
            .await?;
        rows(r, model)
    }

    /// The id of the first record matching `domain`, if any.
    pub async fn first_id(&self, model: &str, domain: Value) -> Result<Option<i64>, DeliveryError> {
        let rows = self
            .search_read(model, domain, Some(1), json!(null), &["id"])
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_i64))
    }

    /// `read(ids, fields)` with an extra context (e.g. `locations` for quantities).
    pub async fn read_ctx(
        &self,
        model: &str,
        ids: &[i64],
        fields: &[&str],
        ctx: &Value,
    ) -> Result<Vec<Value>, DeliveryError> {
        let r = self
            .call(
                &format!("model.{model}.read"),
                vec![json!(ids), json!(fields)],
                Some(ctx),
            )
            .await?;
        rows(r, model)
    }

    /// The current session, or a new one when there is none or it is the generation
    /// `stale` (the one a 401 was answered to).
    async fn session(&self, stale: Option<u64>) -> Result<Session, DeliveryError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref() {
            if Some(s.generation) != stale {
                return Ok(s.clone());
            }
        }
        let login = self
            .send(
                "common.db.login",
                &[
                    json!(self.user),
                    json!({"password": self.password.expose()}),
                    json!("en"),
                ],
                None,
                None,
            )
            .await
            .map_err(|Unauthorized| DeliveryError::Permanent {
                reason: format!("Tryton refused the login of `{}` (401)", self.user),
            })?
            .map_err(|e| match e {
                DeliveryError::Permanent { reason } => DeliveryError::Permanent {
                    reason: format!("login as `{}` failed: {reason}", self.user),
                },
                other => other,
            })?;
        let (uid, token) = match (
            login.get(0).and_then(Value::as_i64),
            login.get(1).and_then(Value::as_str),
        ) {
            (Some(u), Some(t)) => (u, t.to_string()),
            _ => {
                return Err(DeliveryError::Permanent {
                    reason: format!(
                        "login as `{}` failed (wrong password or unknown user)",
                        self.user
                    ),
                })
            }
        };
        let header = format!(
            "Session {}",
            base64(format!("{}:{uid}:{token}", self.user).as_bytes())
        );
        let generation = self.logins.fetch_add(1, Ordering::Relaxed) + 1;
        let partial = Session {
            header,
            context: json!({}),
            generation,
        };
        let prefs = self
            .send(
                "model.res.user.get_preferences",
                &[json!(true)],
                None,
                Some(&partial),
            )
            .await
            .map_err(|Unauthorized| DeliveryError::Transient {
                reason: "Tryton dropped the session right after login".into(),
                retry_after: None,
            })??;
        let mut context = serde_json::Map::new();
        // Only what company-owned records need; the full preferences carry UI settings.
        for key in ["company", "companies", "language", "employee"] {
            if let Some(v) = prefs.get(key).filter(|v| !v.is_null()) {
                context.insert(key.to_string(), v.clone());
            }
        }
        let s = Session {
            context: Value::Object(context),
            ..partial
        };
        *guard = Some(s.clone());
        Ok(s)
    }

    /// One HTTP request. `Err(Unauthorized)` for a 401; otherwise the result or the classified
    /// failure.
    async fn send(
        &self,
        method: &str,
        params: &[Value],
        extra_context: Option<&Value>,
        session: Option<&Session>,
    ) -> Result<Result<Value, DeliveryError>, Unauthorized> {
        let mut params = params.to_vec();
        if let Some(s) = session {
            if method.starts_with("model.") || method.starts_with("wizard.") {
                let mut ctx = s.context.clone();
                if let (Some(c), Some(Value::Object(extra))) = (ctx.as_object_mut(), extra_context)
                {
                    for (k, v) in extra {
                        c.insert(k.clone(), v.clone());
                    }
                }
                params.push(ctx);
            }
        }
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let body = json!({"id": id, "method": method, "params": params});
        let mut req = self.http.post(&self.url).json(&body);
        if let Some(s) = session {
            req = req.header(reqwest::header::AUTHORIZATION, &s.header);
        }
        let resp = match outbound::send(req, self.max_body).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.into())),
        };
        let status = resp.status;
        if status == reqwest::StatusCode::UNAUTHORIZED && session.is_some() {
            return Err(Unauthorized);
        }
        let text = resp.text();
        if !status.is_success() {
            return Ok(Err(classify_status(
                status.as_u16(),
                resp.header(reqwest::header::RETRY_AFTER.as_str()),
                &text,
            )));
        }
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Err(DeliveryError::Transient {
                    reason: format!("`{method}`: malformed JSON-RPC answer: {e}"),
                    retry_after: None,
                }))
            }
        };
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Ok(Err(classify_rpc_error(method, err)));
        }
        Ok(Ok(v.get("result").cloned().unwrap_or(Value::Null)))
    }
}

/// Standard base64 with padding (RFC 4648 §4), for the `Session` header.
fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A 401 answer (handled by re-login in [`Rpc::call`]).
struct Unauthorized;

fn rows(v: Value, model: &str) -> Result<Vec<Value>, DeliveryError> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(DeliveryError::Transient {
            reason: format!("`{model}` answered a non-list: {other}"),
            retry_after: None,
        }),
    }
}

/// Classify `{"error": [name, args]}`.
pub fn classify_rpc_error(method: &str, err: &Value) -> DeliveryError {
    let name = err
        .get(0)
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    // UserError args: [message, description, domain]; others: whatever the server sent.
    let detail = match err.get(1) {
        Some(Value::Array(a)) => a
            .iter()
            .take(2)
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" — "),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let mut reason = format!("Tryton `{method}`: {name}");
    if !detail.is_empty() {
        let snippet: String = detail.chars().take(400).collect();
        reason.push_str(": ");
        reason.push_str(&snippet);
    }
    // Two creates racing for the same sequence-assigned code ("The code on party must be
    // unique") fail for one of them; the retry either finds the record by its natural key or
    // gets the next code. A create whose own data collides fails again and ends in the DLQ
    // after the engine's max attempts.
    let create_race = method.ends_with(".create") && detail.contains("must be unique");
    let transient = ["DatabaseOperationalError", "ConcurrencyException"]
        .iter()
        .any(|t| name.contains(t))
        || name.contains("database is locked")
        || detail.contains("database is locked")
        || create_race;
    if name.contains("RateLimit") {
        DeliveryError::RateLimited {
            reason,
            retry_after: None,
        }
    } else if transient {
        DeliveryError::Transient {
            reason,
            retry_after: None,
        }
    } else {
        DeliveryError::Permanent { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_errors_are_classified_by_name() {
        let e = classify_rpc_error(
            "model.sale.sale.create",
            &json!(["UserError", ["The field \"Party\" is required.", "", null]]),
        );
        assert!(e.is_permanent(), "{e}");
        assert!(e.to_string().contains("Party"), "{e}");
        let e = classify_rpc_error("x", &json!(["DatabaseOperationalError", []]));
        assert!(matches!(e, DeliveryError::Transient { .. }));
        let e = classify_rpc_error("x", &json!(["database is locked", ["tb"]]));
        assert!(matches!(e, DeliveryError::Transient { .. }));
        assert!(classify_rpc_error("x", &json!("weird")).is_permanent());
        // Concurrent creates racing for a sequence-assigned code: retried.
        let e = classify_rpc_error(
            "model.party.party.create",
            &json!(["UserError", ["The code on party must be unique.", "", null]]),
        );
        assert!(matches!(e, DeliveryError::Transient { .. }), "{e}");
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"admin:1:abc"), "YWRtaW46MTphYmM=");
    }

    #[test]
    fn urls_and_debug_hide_the_password() {
        let r = Rpc::new("http://h:1/", "db", "u", "secret", Duration::ZERO, 1 << 20).unwrap();
        assert_eq!(r.url, "http://h:1/db/rpc/");
        assert!(!format!("{r:?}").contains("secret"));
        assert!(Rpc::new("ftp://h", "db", "u", "p", Duration::ZERO, 1 << 20).is_err());
        let e = Rpc::new("ftp://u:pw@h/?key=k", "db", "u", "p", Duration::ZERO, 1).unwrap_err();
        assert!(
            !e.to_string().contains("pw") && !e.to_string().contains("=k"),
            "{e}"
        );
    }
}

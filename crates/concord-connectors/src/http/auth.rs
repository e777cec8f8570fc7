//! Authentication of the `http` connector's requests.
//!
//! - `bearer`, `basic`, `api_key` (header or query): fixed credentials added to every request.
//! - `oauth2`: an access token from the token endpoint (grant `client_credentials` or
//!   `refresh_token`), cached and refreshed `refresh_before` its expiry; a 401 drops it and the
//!   request is sent once more with a new one. When the provider rotates the refresh token (the
//!   token response carries a new one), the new one is used from then on and published on
//!   [`Authenticator::updates`]: the engine keeps it in the store and hands it back at the next
//!   start ([`Authenticator::restore`]). The saved token is used only while the configured
//!   `refresh_token` is the one it was rotated from (its SHA-256 is saved with it), so an
//!   operator who pastes a new token into the config wins over the store.
//! - `oauth1`: OAuth 1.0a token-based authentication (NetSuite TBA): each request signed with
//!   HMAC-SHA256 over its RFC 5849 base string when it is sent (`super::oauth1`).
//! - `login`: a configured request returning a session token (jq on the body) or cookie; the
//!   session is kept and renewed after `ttl`, or once when a request is answered 401.
//!
//! Concurrent requests share one token; when several see it expire or get a 401, only one of
//! them fetches the next (a generation number tells who is late).
//!
//! Must never: log, trace or print a credential; loop on a failing login (one re-login per
//! request, then the failure goes to the engine, which owns retries).

use super::client::{Client, Prepared};
use super::config::{ApiKeyIn, Auth, Grant, Secret};
use super::jq::Vars;
use concord_engine::connector::DeliveryError;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One credential to add to a request.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Header(String, String),
    Query(String, String),
    /// Signed per request (the signature covers the method and the URL with its query).
    OAuth1(Box<super::oauth1::Keys>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Header(n, _) => write!(f, "Header({n}: ***)"),
            Credential::Query(n, _) => write!(f, "Query({n}=***)"),
            Credential::OAuth1(_) => write!(f, "OAuth1(***)"),
        }
    }
}

#[derive(Clone)]
struct Token {
    credential: Credential,
    /// Renew at (expiry minus `refresh_before`, or the login's ttl).
    renew_at: Option<Instant>,
    generation: u64,
}

/// The credentials of one endpoint.
pub struct Authenticator {
    auth: Auth,
    token: tokio::sync::Mutex<Option<Token>>,
    generation: AtomicU64,
    /// The refresh token in use (the configured one, or a rotated one).
    refresh: Mutex<Option<Secret>>,
    /// SHA-256 (hex) of the configured refresh token.
    configured: Option<String>,
    updates: watch::Sender<Option<String>>,
    logins: AtomicU64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl Authenticator {
    pub fn new(auth: Auth) -> Authenticator {
        let (refresh, configured) = match &auth {
            Auth::OAuth2 {
                refresh_token: Some(t),
                ..
            } => (Some(t.clone()), Some(sha256_hex(t.expose()))),
            _ => (None, None),
        };
        Authenticator {
            auth,
            token: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            refresh: Mutex::new(refresh),
            configured,
            updates: watch::channel(None).0,
            logins: AtomicU64::new(0),
        }
    }

    /// Tokens fetched so far (logins and OAuth2 token requests); tests check re-login.
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// Rotated refresh tokens to keep (see the module doc).
    pub fn updates(&self) -> Option<watch::Receiver<Option<String>>> {
        matches!(
            self.auth,
            Auth::OAuth2 {
                refresh_token: Some(_),
                ..
            }
        )
        .then(|| self.updates.subscribe())
    }

    /// Take back a rotated refresh token the engine kept, unless the configured one changed.
    pub fn restore(&self, saved: &str) {
        let Ok(v) = serde_json::from_str::<Value>(saved) else {
            tracing::warn!("ignoring unreadable saved connector state");
            return;
        };
        let (Some(token), Some(from)) = (
            v.get("refresh_token").and_then(Value::as_str),
            v.get("configured").and_then(Value::as_str),
        ) else {
            return;
        };
        if self.configured.as_deref() == Some(from) && !token.is_empty() {
            if let Ok(mut r) = self.refresh.lock() {
                *r = Some(Secret(token.to_string()));
            }
        }
    }

    /// Can a 401 be cured by fetching new credentials?
    pub fn renewable(&self) -> bool {
        matches!(self.auth, Auth::OAuth2 { .. } | Auth::Login { .. })
    }

    /// The credential for a request, and the generation it belongs to (for [`Self::expire`]).
    pub async fn credential(
        &self,
        client: &Client,
    ) -> Result<(Option<Credential>, u64), DeliveryError> {
        match &self.auth {
            Auth::None => Ok((None, 0)),
            Auth::Bearer { token } => Ok((
                Some(Credential::Header(
                    "authorization".into(),
                    format!("Bearer {}", token.expose()),
                )),
                0,
            )),
            Auth::Basic { user, password } => Ok((
                Some(Credential::Header(
                    "authorization".into(),
                    basic(user, password.expose()),
                )),
                0,
            )),
            Auth::ApiKey {
                name,
                value,
                location,
            } => Ok((
                Some(match location {
                    ApiKeyIn::Header => Credential::Header(name.clone(), value.expose().into()),
                    ApiKeyIn::Query => Credential::Query(name.clone(), value.expose().into()),
                }),
                0,
            )),
            Auth::OAuth1(keys) => Ok((Some(Credential::OAuth1(keys.clone())), 0)),
            Auth::OAuth2 { .. } | Auth::Login { .. } => {
                let mut guard = self.token.lock().await;
                if let Some(t) = guard.as_ref() {
                    if t.renew_at.is_none_or(|at| Instant::now() < at) {
                        return Ok((Some(t.credential.clone()), t.generation));
                    }
                }
                let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
                let (credential, renew_at) = self.fetch(client).await?;
                self.logins.fetch_add(1, Ordering::Relaxed);
                *guard = Some(Token {
                    credential: credential.clone(),
                    renew_at,
                    generation,
                });
                Ok((Some(credential), generation))
            }
        }
    }

    /// A request with the credential of `generation` was refused (401): drop that credential,
    /// unless a newer one was fetched meanwhile.
    pub async fn expire(&self, generation: u64) {
        let mut guard = self.token.lock().await;
        if guard.as_ref().is_some_and(|t| t.generation == generation) {
            *guard = None;
        }
    }

    async fn fetch(&self, client: &Client) -> Result<(Credential, Option<Instant>), DeliveryError> {
        match &self.auth {
            Auth::OAuth2 {
                token_url,
                client_id,
                client_secret,
                grant,
                scope,
                basic_client_auth,
                refresh_before,
                ..
            } => {
                let refresh = self.refresh.lock().ok().and_then(|r| r.clone());
                let mut form: Vec<(&str, String)> = Vec::new();
                match grant {
                    Grant::ClientCredentials => {
                        form.push(("grant_type", "client_credentials".into()))
                    }
                    Grant::RefreshToken => {
                        let Some(r) = &refresh else {
                            return Err(DeliveryError::Permanent {
                                reason: "oauth2: no refresh token".into(),
                            });
                        };
                        form.push(("grant_type", "refresh_token".into()));
                        form.push(("refresh_token", r.expose().to_string()));
                    }
                }
                if let Some(s) = scope {
                    form.push(("scope", s.clone()));
                }
                let mut headers = Vec::new();
                if *basic_client_auth {
                    let secret = client_secret.as_ref().map_or("", |s| s.expose());
                    headers.push(("authorization".to_string(), basic(client_id, secret)));
                } else {
                    form.push(("client_id", client_id.clone()));
                    if let Some(s) = client_secret {
                        form.push(("client_secret", s.expose().to_string()));
                    }
                }
                let url = client.resolve(token_url)?;
                let body = form_encode(&form);
                let sent = client
                    .send_raw(Prepared {
                        method: reqwest::Method::POST,
                        url,
                        headers,
                        body: Some((body.into_bytes(), "application/x-www-form-urlencoded")),
                        secret_body: true,
                    })
                    .await?;
                if !(200..300).contains(&sent.status) {
                    return Err(token_error("oauth2 token request", sent.status, &sent.body));
                }
                let access = sent
                    .body
                    .get("access_token")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| DeliveryError::Permanent {
                        reason: "oauth2 token response has no `access_token`".into(),
                    })?;
                let ttype = sent
                    .body
                    .get("token_type")
                    .and_then(Value::as_str)
                    .unwrap_or("Bearer");
                let ttype = if ttype.eq_ignore_ascii_case("bearer") {
                    "Bearer"
                } else {
                    ttype
                };
                let expires_in = sent
                    .body
                    .get("expires_in")
                    .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
                    .filter(|s| s.is_finite() && *s > 0.0)
                    // A year at most: an absurd lifetime must not overflow the clock.
                    .map(|s| Duration::from_secs_f64(s.min(31_536_000.0)));
                let renew_at =
                    expires_in.map(|e| Instant::now() + e.saturating_sub(*refresh_before));
                if let Some(new) = sent
                    .body
                    .get("refresh_token")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    let rotated = refresh.as_ref().is_none_or(|r| r.expose() != new);
                    if rotated {
                        if let Ok(mut r) = self.refresh.lock() {
                            *r = Some(Secret(new.to_string()));
                        }
                        if let Some(configured) = &self.configured {
                            self.updates.send_replace(Some(
                                json!({"refresh_token": new, "configured": configured}).to_string(),
                            ));
                        }
                    }
                }
                Ok((
                    Credential::Header("authorization".into(), format!("{ttype} {access}")),
                    renew_at,
                ))
            }
            Auth::Login {
                request,
                token,
                cookies,
                header,
                prefix,
                ttl,
            } => {
                let vars = Vars::new().with("vars", client.vars().clone());
                let mut prepared = client.prepare(request, &Value::Null, &vars).await?;
                prepared.secret_body = true;
                let sent = client.send_raw(prepared).await?;
                if !request.is_success(sent.status) {
                    return Err(token_error("login", sent.status, &sent.body));
                }
                let value = match (token, cookies.split_first()) {
                    (Some(program), _) => {
                        let v = Vars::new()
                            .with("vars", client.vars().clone())
                            .with("headers", super::limits::headers_json(&sent.headers))
                            .with("status", Value::from(sent.status));
                        let t = program
                            .run(&sent.body, &v, &client.env(None))
                            .await
                            .map_err(|e| DeliveryError::Permanent {
                                reason: format!("login: options.auth.token: {e}"),
                            })?;
                        let t = t.as_str().filter(|t| !t.is_empty()).ok_or_else(|| {
                            DeliveryError::Permanent {
                                reason: "login: options.auth.token gave no token (not a non-empty string)".into(),
                            }
                        })?;
                        format!("{prefix}{t}")
                    }
                    (None, Some((name, also_cookies))) => {
                        let set = |name: &str| {
                            sent.headers
                                .get_all("set-cookie")
                                .iter()
                                .filter_map(|v| v.to_str().ok())
                                .find_map(|v| {
                                    let pair = v.split(';').next()?.trim();
                                    let (n, val) = pair.split_once('=')?;
                                    (n.trim() == name)
                                        .then(|| format!("{}={}", n.trim(), val.trim()))
                                })
                        };
                        let mut c = set(name).ok_or_else(|| DeliveryError::Permanent {
                            reason: format!("login: the response sets no cookie `{name}`"),
                        })?;
                        // Optional: a route cookie is set only behind a load balancer.
                        for extra in also_cookies {
                            if let Some(x) = set(extra) {
                                c.push_str("; ");
                                c.push_str(&x);
                            }
                        }
                        return Ok((
                            Credential::Header("cookie".into(), c),
                            ttl.map(|t| Instant::now() + t),
                        ));
                    }
                    (None, None) => {
                        return Err(DeliveryError::Permanent {
                            reason: "login needs `token` or `cookie`".into(),
                        })
                    }
                };
                Ok((
                    Credential::Header(header.clone(), value),
                    ttl.map(|t| Instant::now() + t),
                ))
            }
            _ => Err(DeliveryError::Permanent {
                reason: "this authentication needs no token".into(),
            }),
        }
    }
}

/// A failed token or login request: 5xx and 429 are worth retrying; anything else (bad
/// credentials, a revoked refresh token) will not get better by itself.
fn token_error(what: &str, status: u16, body: &Value) -> DeliveryError {
    // A token endpoint's error body says why (`invalid_grant`); it carries no token.
    let reason = format!(
        "{what} answered HTTP {status}: {}",
        super::limits::snippet(body)
    );
    match status {
        429 => DeliveryError::RateLimited {
            reason,
            retry_after: None,
        },
        500..=599 | 408 => DeliveryError::Transient {
            reason,
            retry_after: None,
        },
        _ => DeliveryError::Permanent { reason },
    }
}

/// `application/x-www-form-urlencoded`.
pub fn form_encode(pairs: &[(&str, String)]) -> String {
    let enc = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("a b", "x/y&z=1".into()), ("k", "~".into())]),
            "a+b=x%2Fy%26z%3D1&k=%7E"
        );
    }

    #[test]
    fn credentials_do_not_print() {
        let c = Credential::Header("authorization".into(), "Bearer s3cret".into());
        assert!(!format!("{c:?}").contains("s3cret"));
        let a = Authenticator::new(Auth::Bearer {
            token: Secret("s3cret".into()),
        });
        assert!(!format!("{a:?}").contains("s3cret"));
    }

    #[test]
    fn a_saved_token_is_used_only_while_the_configured_one_is_unchanged() {
        let auth = |t: &str| {
            Authenticator::new(Auth::OAuth2 {
                token_url: "/token".into(),
                client_id: "c".into(),
                client_secret: None,
                grant: Grant::RefreshToken,
                refresh_token: Some(Secret(t.into())),
                scope: None,
                basic_client_auth: true,
                refresh_before: Duration::from_secs(60),
            })
        };
        let a = auth("r0");
        let saved = json!({"refresh_token": "r5", "configured": sha256_hex("r0")}).to_string();
        a.restore(&saved);
        assert_eq!(a.refresh.lock().unwrap().as_ref().unwrap().expose(), "r5");
        let b = auth("fresh-from-operator");
        b.restore(&saved);
        assert_eq!(
            b.refresh.lock().unwrap().as_ref().unwrap().expose(),
            "fresh-from-operator"
        );
        b.restore("not json");
        assert!(a.updates().is_some());
    }
}

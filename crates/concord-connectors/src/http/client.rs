//! The `http` connector's HTTP client: renders a configured [`Request`] into a URL, headers and
//! a JSON body, sends it with the endpoint's credentials, reads the answer within a size
//! bound, and classifies it.
//!
//! Outside input is bounded here: redirects are never followed (a 3xx is an answer, classified
//! like any other — a redirect could carry the credentials to another host); a response body
//! is read chunk by chunk and refused past `max_response_bytes`; a `Link` URL is followed only
//! on the endpoint's own origin; transport errors are reported without their URL (a query may
//! hold an API key).
//!
//! A 401 on a renewable credential (OAuth2, login) drops it and resends the request once with a
//! fresh one; anything else is classified and returned to the engine, which owns retries.
//!
//! [`Client::enable_trace`] records every exchange with credentials redacted, for `concord try`.
//!
//! Must never: follow a redirect, log or trace a credential, read an unbounded body, sleep or
//! retry (apart from the one resend after a renewed credential).

use super::auth::{Authenticator, Credential};
use super::config::{Options, Request};
use super::jq::Vars;
use super::limits::{self, Gate};
use super::template::Encode;
use concord_core::Kind;
use concord_engine::connector::{BuildError, DeliveryError, EndpointSpec};
use concord_engine::mapping::MapVars;
use serde::Serialize;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Build the outbound HTTP client of an endpoint. This is the connector's one place that
/// constructs a `reqwest::Client` (a shared builder in the engine may replace it): no
/// redirects, a per-request timeout, a connect timeout.
pub fn build_http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    // The one outbound client of the hub (`concord_engine::outbound`): no redirects, connect
    // and request timeouts.
    concord_engine::outbound::client(timeout).map_err(|e| e.to_string())
}

/// A request ready to send.
#[derive(Clone)]
pub struct Prepared {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<(Vec<u8>, &'static str)>,
    /// The exchange carries credentials (token and login requests): neither its body nor its
    /// answer's is traced.
    pub secret_body: bool,
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Sent {
    pub status: u16,
    pub headers: http::HeaderMap,
    /// JSON when the body parses as JSON, else its text as a string; `null` when empty.
    pub body: Value,
}

/// One request and its answer, credentials redacted (`concord try`).
#[derive(Debug, Clone, Serialize)]
pub struct Exchange {
    pub method: String,
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Option<String>,
    pub status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

/// The client of one `http` endpoint.
pub struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    endpoint: String,
    opts: Arc<Options>,
    auth: Authenticator,
    gate: Gate,
    trace: Option<Mutex<Vec<Exchange>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("base", &self.base.as_str())
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// Map a transport error, without its URL (a query may carry an API key).
fn transport_error(e: reqwest::Error) -> DeliveryError {
    let timeout = e.is_timeout();
    let connect = e.is_connect();
    let e = e.without_url();
    let mut reason = e.to_string();
    // reqwest's message names the cause only in its source chain.
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason.push_str(&format!(": {s}"));
        source = s.source();
    }
    if timeout {
        DeliveryError::Transient {
            reason: format!("timed out: {reason}"),
            retry_after: None,
        }
    } else if connect {
        DeliveryError::Unavailable {
            reason: format!("cannot connect: {reason}"),
            retry_after: None,
        }
    } else {
        DeliveryError::Transient {
            reason,
            retry_after: None,
        }
    }
}

fn redacted_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "auth",
        "token",
        "key",
        "secret",
        "cookie",
        "signature",
        "password",
        "session",
    ]
    .iter()
    .any(|w| n.contains(w))
}

impl Client {
    /// No I/O.
    pub fn new(spec: &EndpointSpec, opts: Arc<Options>) -> Result<Client, BuildError> {
        let base = reqwest::Url::parse(&spec.url).map_err(|e| BuildError {
            path: "url".into(),
            message: format!("`{}` is not a URL: {e}", spec.url),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(BuildError {
                path: "url".into(),
                message: format!("`{}` must be an http:// or https:// URL", spec.url),
            });
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(BuildError {
                path: "url".into(),
                message: "must not have a query or a fragment (put them in the requests)".into(),
            });
        }
        let http = build_http_client(spec.timeout).map_err(|e| BuildError {
            path: "url".into(),
            message: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(Client {
            http,
            base,
            endpoint: spec.name.clone(),
            auth: Authenticator::new(opts.auth.clone()),
            opts,
            gate: Gate::default(),
            trace: None,
        })
    }

    pub fn auth(&self) -> &Authenticator {
        &self.auth
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Record every exchange from now on (`concord try`).
    pub fn enable_trace(&mut self) {
        self.trace = Some(Mutex::new(Vec::new()));
    }

    /// The exchanges recorded since the last call.
    pub fn take_trace(&self) -> Vec<Exchange> {
        self.trace
            .as_ref()
            .and_then(|t| t.lock().ok().map(|mut v| std::mem::take(&mut *v)))
            .unwrap_or_default()
    }

    /// `$vars`.
    pub fn vars(&self) -> &Value {
        &self.opts.vars
    }

    /// The engine's globals for jq programs (`$source` = this endpoint, `$kind`).
    pub fn env(&self, kind: Option<Kind>) -> MapVars {
        MapVars {
            dest: String::new(),
            source: self.endpoint.clone(),
            kind: kind.map(|k| k.as_str().to_string()).unwrap_or_default(),
        }
    }

    /// An absolute URL, or a path on the endpoint's URL.
    pub fn resolve(&self, url_or_path: &str) -> Result<reqwest::Url, DeliveryError> {
        let text = if url_or_path.starts_with('/') {
            format!("{}{url_or_path}", self.base.as_str().trim_end_matches('/'))
        } else {
            url_or_path.to_string()
        };
        reqwest::Url::parse(&text).map_err(|e| DeliveryError::Permanent {
            reason: format!("`{url_or_path}` does not make a URL: {e}"),
        })
    }

    /// Is `url` on the endpoint's own origin (scheme, host, port)?
    pub fn same_origin(&self, url: &reqwest::Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// Render `req` for `input` with `vars` (plus `$vars`).
    pub async fn prepare(
        &self,
        req: &Request,
        input: &Value,
        vars: &Vars,
    ) -> Result<Prepared, DeliveryError> {
        self.prepare_for(req, input, vars, None).await
    }

    pub async fn prepare_for(
        &self,
        req: &Request,
        input: &Value,
        vars: &Vars,
        kind: Option<Kind>,
    ) -> Result<Prepared, DeliveryError> {
        let mut vars = vars.clone();
        vars.set("vars", self.opts.vars.clone());
        let env = self.env(kind);
        let bad = |what: &str, e: String| DeliveryError::Permanent {
            reason: format!("{what}: {e}"),
        };
        let path = req
            .path
            .render(input, &vars, &env, Encode::PathSegment)
            .await
            .map_err(|e| bad(&format!("path `{}`", req.path.source()), e))?;
        let mut url = self.resolve(&path)?;
        {
            let mut pairs = Vec::new();
            for (name, t) in &req.query {
                for v in t
                    .render_query(input, &vars, &env)
                    .await
                    .map_err(|e| bad(&format!("query `{name}`"), e))?
                {
                    pairs.push((name.as_str(), v));
                }
            }
            if !pairs.is_empty() {
                let mut q = url.query_pairs_mut();
                for (n, v) in pairs {
                    q.append_pair(n, &v);
                }
            }
        }
        let mut headers = vec![("accept".to_string(), "application/json".to_string())];
        for (name, t) in self.opts.headers.iter().chain(&req.headers) {
            let v = t
                .render(input, &vars, &env, Encode::Raw)
                .await
                .map_err(|e| bad(&format!("header `{name}`"), e))?;
            headers.retain(|(n, _)| n != name);
            headers.push((name.clone(), v));
        }
        let body = match &req.body {
            None => None,
            Some(p) => {
                let v = p
                    .run(input, &vars, &env)
                    .await
                    .map_err(|e| bad("body", e))?;
                Some((
                    serde_json::to_vec(&v).map_err(|e| bad("body", e.to_string()))?,
                    "application/json",
                ))
            }
        };
        Ok(Prepared {
            method: req.method.clone(),
            url,
            headers,
            body,
            secret_body: false,
        })
    }

    /// Send without credentials or the rate-limit gate (token and login requests).
    pub async fn send_raw(&self, p: Prepared) -> Result<Sent, DeliveryError> {
        self.exchange(p, None).await
    }

    /// Send with the endpoint's credentials; a 401 on a renewable credential renews it and
    /// resends once. Every status comes back as `Ok` (classify with [`Client::classify`]).
    pub async fn send(&self, p: Prepared) -> Result<Sent, DeliveryError> {
        if let Some(wait) = self.gate.closed_for() {
            return Err(DeliveryError::RateLimited {
                reason: "the API's rate-limit window is exhausted (remaining 0 until its reset)"
                    .into(),
                retry_after: Some(wait),
            });
        }
        let (cred, generation) = self.auth.credential(self).await?;
        let sent = self.exchange(p.clone(), cred).await?;
        self.gate.observe(&self.opts.rate_limit, &sent.headers);
        self.pace(&sent).await;
        if sent.status != 401 || !self.auth.renewable() {
            return Ok(sent);
        }
        self.auth.expire(generation).await;
        let (cred, _) = self.auth.credential(self).await?;
        let again = self.exchange(p, cred).await?;
        self.gate.observe(&self.opts.rate_limit, &again.headers);
        self.pace(&again).await;
        if again.status == 401 {
            return Err(DeliveryError::Permanent {
                reason: format!(
                    "HTTP 401 right after new credentials were fetched: {}",
                    limits::snippet(&again.body)
                ),
            });
        }
        Ok(again)
    }

    /// Run `rate_limit.pace` on an answer: a wait it gives holds the next requests back. A
    /// program that fails on this body gives no wait (the API's own limits still apply).
    async fn pace(&self, sent: &Sent) {
        let Some(pace) = &self.opts.rate_limit.pace else {
            return;
        };
        let vars = Vars::new()
            .with("vars", self.opts.vars.clone())
            .with("status", Value::from(sent.status))
            .with("headers", limits::headers_json(&sent.headers));
        if let Ok(answer) = pace.run(&sent.body, &vars, &self.env(None)).await {
            if let Some(wait) = limits::pace_wait(&answer, self.opts.rate_limit.max_wait) {
                self.gate.close_for(wait);
            }
        }
    }

    /// Classify an answer to `req`. A rate-limited answer without a wait of its own
    /// (`Retry-After`, reset header) waits as long as the gate is closed (`pace`).
    pub async fn classify(&self, req: &Request, sent: &Sent) -> Result<(), DeliveryError> {
        let out = self.classify_inner(req, sent).await;
        match out {
            Err(DeliveryError::RateLimited {
                reason,
                retry_after: None,
            }) => Err(DeliveryError::RateLimited {
                reason,
                retry_after: self.gate.closed_for(),
            }),
            other => other,
        }
    }

    async fn classify_inner(&self, req: &Request, sent: &Sent) -> Result<(), DeliveryError> {
        limits::classify(
            &self.opts.errors,
            &self.opts.rate_limit,
            |s| req.is_success(s),
            sent.status,
            &sent.headers,
            &sent.body,
            &self.opts.vars,
            &self.env(None),
        )
        .await
    }

    /// Prepare, send, classify.
    pub async fn call(
        &self,
        req: &Request,
        input: &Value,
        vars: &Vars,
        kind: Option<Kind>,
        extra_headers: &[(String, String)],
    ) -> Result<Sent, DeliveryError> {
        let mut p = self.prepare_for(req, input, vars, kind).await?;
        for (n, v) in extra_headers {
            p.headers.retain(|(h, _)| h != n);
            p.headers.push((n.clone(), v.clone()));
        }
        let sent = self.send(p).await?;
        self.classify(req, &sent).await?;
        Ok(sent)
    }

    /// Open the result of an export job (`options.read.KIND.bulk`) at `url` for streaming: a
    /// GET with NO credential and none of the configured headers, whatever its origin (the
    /// result of a Shopify bulk operation is a signed URL on another host; the shop's token must
    /// never go there). `https` only, or `http` when the endpoint itself is `http`. Any status
    /// but 200 is classified like an answer (its body read within a small bound). Not traced
    /// with its query (a signed URL's query is the credential to the file).
    pub async fn download(&self, url: &reqwest::Url) -> Result<reqwest::Response, DeliveryError> {
        let scheme_ok =
            url.scheme() == "https" || (url.scheme() == "http" && self.base.scheme() == "http");
        if !scheme_ok || url.host_str().is_none() {
            return Err(DeliveryError::Permanent {
                reason: format!(
                    "the export's result URL must be https (scheme `{}` refused)",
                    url.scheme()
                ),
            });
        }
        let started = Instant::now();
        let result = self
            .http
            .get(url.clone())
            .header(http::header::ACCEPT, "application/jsonl, */*")
            .send()
            .await
            .map_err(transport_error);
        if let Some(store) = self.trace.as_ref() {
            let mut shown = url.clone();
            shown.set_query(None);
            let (status, error) = match &result {
                Ok(r) => (Some(r.status().as_u16()), None),
                Err(e) => (None, Some(e.to_string())),
            };
            if let Ok(mut v) = store.lock() {
                v.push(Exchange {
                    method: "GET".into(),
                    url: format!("{shown}?…"),
                    request_headers: Vec::new(),
                    request_body: None,
                    status,
                    response_headers: Vec::new(),
                    response_body: Some("(export result, streamed)".into()),
                    error,
                    elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                });
            }
        }
        let resp = result?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = concord_engine::outbound::read_capped(resp, 4096)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Err(concord_engine::connector::classify_status(
            status,
            retry_after.as_deref(),
            &format!("the export's result: {body}"),
        ))
    }

    async fn exchange(&self, p: Prepared, cred: Option<Credential>) -> Result<Sent, DeliveryError> {
        let started = Instant::now();
        let mut url = p.url.clone();
        let mut headers = http::HeaderMap::new();
        for (n, v) in &p.headers {
            let name = http::HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                DeliveryError::Permanent {
                    reason: format!("`{n}` is not a valid header name"),
                }
            })?;
            let value = http::HeaderValue::from_str(v).map_err(|_| DeliveryError::Permanent {
                reason: format!("the value of header `{n}` has characters a header cannot carry"),
            })?;
            headers.insert(name, value);
        }
        match &cred {
            Some(Credential::Header(n, v)) => {
                let name = http::HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                    DeliveryError::Permanent {
                        reason: format!("`{n}` is not a valid header name"),
                    }
                })?;
                let mut value =
                    http::HeaderValue::from_str(v).map_err(|_| DeliveryError::Permanent {
                        reason: "the credential has characters a header cannot carry".into(),
                    })?;
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            Some(Credential::Query(n, v)) => {
                url.query_pairs_mut().append_pair(n, v);
            }
            Some(Credential::OAuth1(keys)) => {
                // Signed now, over the final method and URL: a fresh timestamp and nonce each
                // time (a resend is a new request to the server).
                let ts = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let h = keys.header(p.method.as_str(), &url, ts, &super::oauth1::nonce());
                let mut value =
                    http::HeaderValue::from_str(&h).map_err(|_| DeliveryError::Permanent {
                        reason: "the OAuth 1.0a header has characters a header cannot carry".into(),
                    })?;
                value.set_sensitive(true);
                headers.insert(http::header::AUTHORIZATION, value);
            }
            None => {}
        }
        let mut trace = self.trace.as_ref().map(|_| Exchange {
            method: p.method.to_string(),
            // Before the credential: an API key in the query is never in the trace.
            url: p.url.to_string(),
            request_headers: p
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.clone(),
                        if redacted_header(n) {
                            "***".into()
                        } else {
                            v.clone()
                        },
                    )
                })
                .chain(cred.iter().filter_map(|c| match c {
                    Credential::Header(n, _) => Some((n.clone(), "***".to_string())),
                    Credential::OAuth1(_) => Some(("authorization".to_string(), "***".to_string())),
                    Credential::Query(..) => None,
                }))
                .collect(),
            request_body: p.body.as_ref().map(|(b, _)| {
                if p.secret_body {
                    "*** (credentials)".into()
                } else {
                    truncate(&String::from_utf8_lossy(b), 8192)
                }
            }),
            status: None,
            response_headers: Vec::new(),
            response_body: None,
            error: None,
            elapsed_ms: 0,
        });
        let secret = p.secret_body;
        let mut rb = self.http.request(p.method.clone(), url).headers(headers);
        if let Some((body, ctype)) = p.body {
            rb = rb.header(http::header::CONTENT_TYPE, ctype).body(body);
        }
        let result = self.read(rb).await;
        if let (Some(t), Some(store)) = (trace.as_mut(), self.trace.as_ref()) {
            t.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            match &result {
                Ok(s) => {
                    t.status = Some(s.status);
                    t.response_headers = s
                        .headers
                        .iter()
                        .map(|(n, v)| {
                            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                            (
                                n.as_str().to_string(),
                                if n.as_str() == "set-cookie" || redacted_header(n.as_str()) {
                                    "***".into()
                                } else {
                                    v
                                },
                            )
                        })
                        .collect();
                    // A token or login answer is the credential itself.
                    t.response_body = Some(if secret {
                        "*** (credentials)".into()
                    } else {
                        truncate(
                            &match &s.body {
                                Value::String(x) => x.clone(),
                                other => serde_json::to_string_pretty(other).unwrap_or_default(),
                            },
                            16384,
                        )
                    });
                }
                Err(e) => t.error = Some(e.to_string()),
            }
            if let (Ok(mut v), Some(t)) = (store.lock(), trace) {
                v.push(t);
            }
        }
        result
    }

    async fn read(&self, rb: reqwest::RequestBuilder) -> Result<Sent, DeliveryError> {
        let resp = rb.send().await.map_err(transport_error)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let cap = self.opts.max_response_bytes;
        // Read chunk by chunk up to the cap (`concord_engine::outbound::read_capped`).
        let buf = concord_engine::outbound::read_capped(resp, cap)
            .await
            .map_err(|e| match e {
                concord_engine::outbound::OutboundError::TooLarge { .. } => too_large(status, cap),
                other => DeliveryError::Transient {
                    reason: other.to_string(),
                    retry_after: None,
                },
            })?;
        let body = if buf.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&buf)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&buf).into_owned()))
        };
        Ok(Sent {
            status,
            headers,
            body,
        })
    }
}

fn too_large(status: u16, cap: usize) -> DeliveryError {
    DeliveryError::Permanent {
        reason: format!(
            "HTTP {status}: the response is larger than options.max_response_bytes ({cap} bytes)"
        ),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

//! Outbound HTTP: how the hub calls other systems (every connector's API client, the alert
//! webhook). One client builder ([`client`]) and one response reader ([`send`]) shared by all of
//! them, so these rules hold for every outbound call:
//!
//! - **Redirects are never followed.** A 3xx answer is an error naming the host it pointed to
//!   ([`OutboundError::Redirect`]). Following one re-sends the request — a login body with a
//!   password, a bearer token — to wherever the answer points.
//! - **Every request is bounded in time**: a connect timeout and a total timeout.
//! - **Response bodies are bounded in size**: read chunk by chunk up to a limit (default
//!   [`DEFAULT_MAX_RESPONSE_BYTES`], `[endpoints.NAME] max_response_bytes`); a larger body is an
//!   error ([`OutboundError::TooLarge`]), never unbounded memory.
//! - **Errors never carry a URL's secrets**: user info and query values are masked
//!   ([`redact_url`]) in every message built here.
//! - **Credentials never travel in clear to another machine**: [`check_transport`] (called at
//!   config load) refuses `http://` to a host other than loopback for an endpoint that carries
//!   credentials, unless the endpoint sets `allow_insecure_http = true`.
//!
//! Must never: follow a redirect, return or log a URL unredacted, buffer a body past its limit.

use bytes::{Bytes, BytesMut};
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use std::time::Duration;

/// Largest response body read by default (16 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Longest wait for a TCP/TLS connection (the request's own timeout applies when shorter).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Used when a caller passes a zero timeout.
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an outbound call failed, with every URL already redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// No answer in time (connect or whole request).
    #[error("timed out: {0}")]
    Timeout(String),
    /// No connection could be made (refused, DNS, unreachable).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection broke, or the request could not be sent.
    #[error("{0}")]
    Transport(String),
    /// The server answered a redirect; it was not followed.
    #[error(
        "HTTP {status}: the server redirects to {location}; redirects are never followed (they would re-send credentials): set the endpoint's url to the final address"
    )]
    Redirect {
        status: u16,
        /// `host `x`` of the `Location` header, or a note that it had none.
        location: String,
    },
    /// The body was larger than the limit; reading stopped there.
    #[error(
        "HTTP {status}: response body larger than {limit} bytes refused (raise the endpoint's max_response_bytes if such answers are expected)"
    )]
    TooLarge { status: u16, limit: usize },
    /// The client could not be built (TLS backend).
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// A response that arrived in full (any non-redirect status) within the size limit.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// A header as text, when present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The HTTP client every outbound caller uses: no redirects, a connect timeout, `timeout` per
/// request (zero: 30 s).
pub fn client(timeout: Duration) -> Result<reqwest::Client, OutboundError> {
    let timeout = if timeout.is_zero() {
        FALLBACK_TIMEOUT
    } else {
        timeout
    };
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        .build()
        .map_err(|e| OutboundError::Build(describe(&e)))
}

/// Send `req` and read its answer: a redirect is refused, the body is read up to `max_body`
/// bytes (more is [`OutboundError::TooLarge`]).
pub async fn send(
    req: reqwest::RequestBuilder,
    max_body: usize,
) -> Result<Response, OutboundError> {
    let resp = req.send().await.map_err(|e| error(&e))?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(OutboundError::Redirect {
            status: status.as_u16(),
            location: location_host(resp.url(), resp.headers()),
        });
    }
    let headers = resp.headers().clone();
    let body = read_capped(resp, max_body).await?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Read a body chunk by chunk, refusing it as soon as it passes `limit` bytes (a declared
/// `Content-Length` above the limit is refused before reading anything).
pub async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Bytes, OutboundError> {
    let status = resp.status().as_u16();
    let too_large = || OutboundError::TooLarge { status, limit };
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(too_large());
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| error(&e))? {
        if buf.len().saturating_add(chunk.len()) > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Classify a reqwest error, its URL redacted and its causes appended.
pub fn error(e: &reqwest::Error) -> OutboundError {
    let reason = describe(e);
    if e.is_timeout() {
        OutboundError::Timeout(reason)
    } else if e.is_connect() {
        OutboundError::Connect(reason)
    } else {
        OutboundError::Transport(reason)
    }
}

/// A reqwest error's message and its causes, with the URL it names redacted.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), &redact_url(url.as_str()));
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Where a redirect points, as much as is safe to quote: `host `h`` (never the path or query).
fn location_host(base: &Url, headers: &HeaderMap) -> String {
    let Some(loc) = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
    else {
        return "an unreadable or missing Location".to_string();
    };
    match base.join(loc) {
        Ok(u) => match u.host_str() {
            Some(h) => format!("host `{h}`"),
            None => "a Location without a host".to_string(),
        },
        Err(_) => "a malformed Location".to_string(),
    }
}

/// `url` safe to print: user info replaced by `***`, every query value by `***`, the fragment
/// dropped. Scheme, host, port and path stay (they say which call failed). Text that is not a
/// URL is reduced to a note, since it cannot be taken apart safely.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = Url::parse(url) else {
        return "(unparsable URL)".to_string();
    };
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_password(None);
        let _ = u.set_username("***");
    }
    if u.query().is_some() {
        let names: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        if names.is_empty() {
            u.set_query(None);
        } else {
            let mut q = u.query_pairs_mut();
            q.clear();
            for n in &names {
                q.append_pair(n, "***");
            }
        }
    }
    u.set_fragment(None);
    u.to_string()
}

/// The host of `url` alone, for messages about URLs whose path is itself a secret (an alert
/// webhook such as `https://hooks.example/services/T0/B0/XXXX`).
pub fn url_host(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "(unparsable URL)".to_string())
}

/// Is `host` this machine (`localhost`, `*.localhost`, 127.0.0.0/8, `::1`)?
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let lower = h.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Does `url` itself carry credentials (user info, or a query string, which is where API keys
/// and tokens go when they are put in a URL)?
pub fn url_carries_credentials(url: &str) -> bool {
    Url::parse(url).is_ok_and(|u| {
        !u.username().is_empty()
            || u.password().is_some()
            || u.query().is_some_and(|q| !q.is_empty())
    })
}

/// Refuse to send `credentials` (a description such as "options.password") over plain
/// `http://` to a host other than loopback, unless `allow_insecure` (the endpoint's
/// `allow_insecure_http`). `Ok` for https, loopback, or nothing secret to send.
pub fn check_transport(
    url: &str,
    credentials: Option<&str>,
    allow_insecure: bool,
) -> Result<(), String> {
    let Some(what) = credentials else {
        return Ok(());
    };
    let Ok(u) = Url::parse(url) else {
        return Ok(()); // the URL check itself reports an unparsable URL
    };
    if u.scheme() != "http" || allow_insecure {
        return Ok(());
    }
    let host = u.host_str().unwrap_or("");
    if is_loopback_host(host) {
        return Ok(());
    }
    Err(format!(
        "plain http:// to `{host}` would send {what} in clear over the network; use https://, or set `allow_insecure_http = true` if this network is trusted"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("https://ann:hunter2@erp.example.com:8443/db/rpc/?token=abc&x=1#frag"),
            "https://***@erp.example.com:8443/db/rpc/?token=***&x=***"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:7001/api/products"),
            "http://127.0.0.1:7001/api/products"
        );
        assert_eq!(redact_url("http://h/?"), "http://h/");
        assert_eq!(redact_url("not a url with hunter2"), "(unparsable URL)");
        assert_eq!(
            url_host("https://hooks.example/services/T0/B0/XXXX"),
            "hooks.example"
        );
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST",
            "a.localhost",
            "127.0.0.1",
            "127.9.9.9",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "10.0.0.1",
            "erp.example.com",
            "localhost.example.com",
            "[::2]",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn credentials_over_plain_http_need_an_explicit_option() {
        let pw = Some("options.password");
        assert!(check_transport("http://erp.example.com", pw, false)
            .unwrap_err()
            .contains("allow_insecure_http"));
        assert!(check_transport("http://erp.example.com", pw, true).is_ok());
        assert!(check_transport("https://erp.example.com", pw, false).is_ok());
        assert!(check_transport("http://127.0.0.1:8011", pw, false).is_ok());
        assert!(check_transport("http://localhost:8011", pw, false).is_ok());
        assert!(check_transport("http://erp.example.com", None, false).is_ok());
        assert!(url_carries_credentials("http://u:p@h/"));
        assert!(url_carries_credentials("http://h/?key=1"));
        assert!(!url_carries_credentials("http://h/path"));
    }
}

//! Shared HTTP client helpers for the sandbox connectors: build URLs from path segments (so SKUs
//! with `/` or spaces stay one segment), send JSON, and classify every failure the engine's way —
//! non-2xx through `classify_status` (Retry-After honoured), connection refused → `Unavailable`,
//! timeout → `Transient`. The client and the response reading are the engine's shared outbound
//! ones (`concord_engine::outbound`): redirects refused, bodies read up to the endpoint's
//! `max_response_bytes`, URLs redacted in every error.
//!
//! Must never: sleep, retry or loop — a failure is classified and returned to the engine.

use concord_engine::connector::{classify_status, DeliveryError};
use concord_engine::outbound::{self, DEFAULT_MAX_RESPONSE_BYTES};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use std::time::Duration;

/// An HTTP client bound to one base URL.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    max_body: usize,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &outbound::redact_url(self.base.as_str()))
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// A response that arrived (any status).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub retry_after: Option<String>,
    pub text: String,
}

impl Reply {
    /// The body as JSON when 2xx; otherwise the classified failure.
    pub fn ok(self) -> Result<Value, DeliveryError> {
        if !self.status.is_success() {
            return Err(self.error());
        }
        if self.text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.text).map_err(|e| DeliveryError::Transient {
            reason: format!("malformed JSON in a {} response: {e}", self.status),
            retry_after: None,
        })
    }

    /// The classified failure of a non-2xx reply.
    pub fn error(&self) -> DeliveryError {
        classify_status(
            self.status.as_u16(),
            self.retry_after.as_deref(),
            &self.text,
        )
    }
}

/// Why a client could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("`{0}` is not a valid URL: {1}")]
    Url(String, String),
    #[error("`{0}` must be an http:// or https:// URL")]
    Scheme(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl Api {
    /// No I/O: parses the URL and builds the client (default response limit).
    pub fn new(base: &str, timeout: Duration) -> Result<Api, ApiError> {
        Api::with_limit(base, timeout, DEFAULT_MAX_RESPONSE_BYTES)
    }

    /// [`Api::new`] reading at most `max_body` bytes of any answer.
    pub fn with_limit(base: &str, timeout: Duration, max_body: usize) -> Result<Api, ApiError> {
        let shown = outbound::redact_url(base);
        let mut base = Url::parse(base).map_err(|e| ApiError::Url(shown.clone(), e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ApiError::Scheme(shown));
        }
        // Segments are appended, so the base path must not end in an empty segment.
        let trimmed = base.path().trim_end_matches('/').to_string();
        base.set_path(&trimmed);
        let http = outbound::client(timeout).map_err(|e| ApiError::Client(e.to_string()))?;
        Ok(Api {
            http,
            base,
            max_body,
        })
    }

    /// `base` + `/seg/seg…` (each segment percent-encoded) + query.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut p) = url.path_segments_mut() {
            p.pop_if_empty();
            p.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Send one request; `Err` only when no response arrived.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Reply, DeliveryError> {
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = outbound::send(req, self.max_body).await?;
        Ok(Reply {
            status: resp.status,
            retry_after: resp
                .header(reqwest::header::RETRY_AFTER.as_str())
                .map(str::to_string),
            text: resp.text(),
        })
    }

    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Reply, DeliveryError> {
        self.send(Method::GET, self.url(segments, query), None)
            .await
    }

    pub async fn put(&self, segments: &[&str], body: &Value) -> Result<Reply, DeliveryError> {
        self.send(Method::PUT, self.url(segments, &[]), Some(body))
            .await
    }

    pub async fn post(&self, segments: &[&str], body: &Value) -> Result<Reply, DeliveryError> {
        self.send(Method::POST, self.url(segments, &[]), Some(body))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_segments_and_reject_bad_bases() {
        let api = Api::new("http://127.0.0.1:9/base/", Duration::ZERO).unwrap();
        let u = api.url(&["api", "products", "A/B C"], &[("email", "a+b@x.io")]);
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:9/base/api/products/A%2FB%20C?email=a%2Bb%40x.io"
        );
        assert!(matches!(
            Api::new("nope", Duration::ZERO),
            Err(ApiError::Url(..))
        ));
        assert!(matches!(
            Api::new("ftp://x.io", Duration::ZERO),
            Err(ApiError::Scheme(_))
        ));
    }
}

//! The storefront API's access (`/v1`): with `[[commerce.keys]]` configured, every request
//! needs a key and acts only for that key's channel ([`ChannelScope`]); without keys `/v1` stays
//! open.
//!
//! Must never let a key act for another channel than its own.

use super::{bearer, client_of, find_by_hash, too_many_attempts, unauthorized};
use super::{Access, Credential};
use crate::{ApiError, ErrorCode};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use concord_engine::config::access::{token_hash, ChannelKey};
use std::sync::Arc;

impl Access {
    /// The channel key `key` is, if any.
    pub fn channel_key(&self, key: &str) -> Option<&ChannelKey> {
        find_by_hash(&self.commerce.keys, &token_hash(key), |k| &k.sha256)
    }

    pub fn commerce_open(&self) -> bool {
        self.commerce.keys.is_empty()
    }
}

/// The channel a storefront API request's key acts for (`None`: no keys configured, open).
#[derive(Debug, Clone)]
pub struct ChannelScope(pub Option<String>);

impl ChannelScope {
    /// 403 unless this request may act for `channel`.
    pub fn check(&self, channel: &str) -> Result<(), ApiError> {
        match &self.0 {
            Some(own) if own != channel => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("channel: this key acts for channel `{own}`, not `{channel}`"),
            )
            .with_field("channel")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::test_support::access;
    use axum::http::StatusCode;

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

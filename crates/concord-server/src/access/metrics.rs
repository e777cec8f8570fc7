//! Access to `/metrics`: on the main port a metrics or admin token (403 when neither kind is
//! configured); on the separate `[metrics] listen` address a metrics token when any is
//! configured, else open.
//!
//! Must never serve `/metrics` on the main port without a token.

use super::{bearer, client_of, find_by_hash, too_many_attempts, unauthorized};
use super::{Access, Credential};
use crate::{ApiError, ErrorCode};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use concord_engine::config::access::token_hash;
use std::sync::Arc;

impl Access {
    /// May this request read `/metrics`? `separate`: on the `[metrics] listen` address (metrics
    /// tokens only, open when none are configured); else the main port (a metrics or admin
    /// token; 403 when neither kind is configured).
    pub fn check_metrics(&self, headers: &HeaderMap, separate: bool) -> Result<(), ApiError> {
        if separate && self.metrics.is_empty() {
            return Ok(());
        }
        if !separate && self.metrics.is_empty() && self.admin.tokens.is_empty() {
            return Err(ApiError::new(
                ErrorCode::AccessNotConfigured,
                "/metrics is not served on this port without a token: add a \
                 [[metrics.tokens]] entry (`concord token new --name prometheus \
                 --metrics`) or serve it on a separate address with [metrics] listen",
            ));
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

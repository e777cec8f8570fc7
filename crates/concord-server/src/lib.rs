//! Concord's HTTP surface (axum): `/hooks/{endpoint}` for webhooks, `/healthz`, `/readyz` and
//! `/metrics` (Prometheus), the storefront API `/v1/...` ([`commerce`], per-channel keys), and
//! the admin API `/api/v1/...` ([`admin`], tokens and roles; OpenAPI at
//! `/api/v1/openapi.json`), and the dashboard at `/` ([`dashboard`], embedded assets over the admin
//! API). [`access`] holds the authentication of both APIs; [`error`] the one error shape of every
//! answer that is not a success (`{"error", "code", "field", "details"}`, a stable [`ErrorCode`]).
//!
//! Architecture invariant: a webhook is answered 2xx only after the engine has journaled its
//! events; any failure to store answers 503 so the sender retries. Handlers never call a
//! connector's write path and never block on delivery.
//!
//! Limits (`[server]`, [`ServerConfig`]): nothing from outside can hold the server's resources
//! for long. [`serve_with`] closes a connection that takes longer than `header_read_timeout` to
//! send a request's headers (or sits idle that long between requests) and accepts at most
//! `max_connections` at once (the rest wait in the OS's accept queue); [`app`] bounds every
//! route's body (`max_body_bytes` for webhooks, `api_max_body_bytes` for everything else: 413),
//! the wait for each piece of a body (`body_read_timeout`) and each request as a whole
//! (`request_timeout`: 503). Every request runs inside [`concord_store::admission::fail_fast`]:
//! when the store's write queue is full, a write is refused at once and answered 503 instead of
//! queueing without bound. Every 503 carries `Retry-After`.

pub mod access;
pub mod admin;
pub mod commerce;
pub mod dashboard;
pub mod error;
pub mod input;
pub mod throttle;

pub use error::{ApiError, ErrorBody, ErrorCode};

pub(crate) use commerce::parse_body as parse_json_body;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
pub use concord_engine::config::ServerConfig;
use concord_engine::{CaptureError, Engine, Readiness};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The `Retry-After` of every 503: the hub's overload and store outages are short-lived, and a
/// sender that waits a second lets the writer's queue drain.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    /// Renders `/metrics`; `None` when no recorder is installed (tests).
    pub metrics: Option<PrometheusHandle>,
    /// Set once the engine's tasks are running.
    pub ready: Arc<AtomicBool>,
}

impl From<CaptureError> for ApiError {
    fn from(e: CaptureError) -> Self {
        use concord_engine::connector::WebhookError;
        let (code, details) = match &e {
            CaptureError::UnknownEndpoint(_) => (ErrorCode::UnknownEndpoint, vec![]),
            CaptureError::Webhook(WebhookError::Unauthorized(_)) => {
                (ErrorCode::InvalidSignature, vec![])
            }
            CaptureError::Webhook(WebhookError::BadRequest(_)) => {
                (ErrorCode::InvalidPayload, vec![])
            }
            CaptureError::Webhook(WebhookError::NotSupported) => {
                (ErrorCode::WebhooksNotSupported, vec![])
            }
            CaptureError::Invalid(list) => (ErrorCode::InvalidRecords, list.clone()),
            CaptureError::Store(concord_store::StoreError::Busy) => {
                tracing::warn!("webhook refused: the store's write queue is full (503, retry)");
                (ErrorCode::Overloaded, vec![])
            }
            CaptureError::Store(_) => {
                tracing::error!(error = %e, "webhook could not be stored");
                (ErrorCode::StoreUnavailable, vec![])
            }
        };
        ApiError::new(code, e.to_string()).with_details(details)
    }
}

/// The router. `max_body_bytes` bounds webhook bodies (larger ones get 413); every other
/// route's body is bounded by `[server] api_max_body_bytes`, and the body and request timeouts
/// come from `[server]` too (see the module docs). Access control (admin tokens, storefront
/// keys) comes from the engine's config (`[admin]`, `[commerce]`).
pub fn app(state: AppState, max_body_bytes: usize) -> Router {
    let limits = state.engine.config().server.clone();
    let access = Arc::new(access_of(&state));
    let router = Router::new()
        .route(
            "/hooks/{endpoint}",
            post(hook).layer(DefaultBodyLimit::max(max_body_bytes)),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(metrics).route_layer(axum::middleware::from_fn_with_state(
                access.clone(),
                access::require_metrics_token,
            )),
        )
        .merge(
            commerce::routes().route_layer(axum::middleware::from_fn_with_state(
                access.clone(),
                access::require_channel_key,
            )),
        )
        .merge(admin::router(access))
        .merge(dashboard::routes())
        .with_state(state);
    with_limits(router, &limits)
}

/// Wrap `router` in the request limits of `[server]` (outermost first): `Retry-After` on every
/// 503, the whole-request timeout (503), the body's read timeout, the store's fail-fast
/// admission, and the body limit of every route that sets none of its own (webhooks do).
fn with_limits(router: Router, limits: &ServerConfig) -> Router {
    router
        .layer(DefaultBodyLimit::max(limits.api_max_body_bytes))
        .layer(axum::middleware::from_fn(fail_fast_when_busy))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_read_timeout,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(axum::middleware::from_fn(retry_after_on_503))
        .layer(axum::middleware::from_fn(error::json_errors))
}

/// Every request is someone outside who can retry: when the store's writer is saturated its
/// writes fail at once (`StoreError::Busy` → 503) instead of waiting in an unbounded line.
async fn fail_fast_when_busy(req: Request, next: Next) -> Response {
    concord_store::admission::fail_fast(next.run(req)).await
}

/// A 503 says "try again later": say when.
async fn retry_after_on_503(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    if res.status() == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .entry(axum::http::header::RETRY_AFTER)
            .or_insert(HeaderValue::from(RETRY_AFTER_SECS));
    }
    res
}

/// The access rules of the engine's config, failed attempts audited in its store.
fn access_of(state: &AppState) -> access::Access {
    let config = state.engine.config();
    access::Access::new(config.admin.clone(), config.commerce.clone())
        .with_metrics_tokens(config.metrics.tokens.clone())
        .with_audit(state.engine.clone())
}

/// The router of the separate metrics address (`[metrics] listen`): `/metrics` only, with a
/// metrics token when `[[metrics.tokens]]` are configured.
pub fn metrics_app(state: AppState) -> Router {
    let access = Arc::new(access_of(&state));
    Router::new()
        .route(
            "/metrics",
            get(metrics).route_layer(axum::middleware::from_fn_with_state(
                access,
                access::require_metrics_token_separate,
            )),
        )
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(state)
}

/// What access control leaves open or exposed, for a WARN at start and `concord validate`: one
/// line per concern (including secrets written as literals in the file), empty when nothing is.
pub fn access_warnings(config: &concord_engine::config::Config) -> Vec<String> {
    let mut out = config.literal_secret_warnings();
    if let Some(addr) = config.metrics.listen {
        if config.metrics.tokens.is_empty() && !addr.ip().is_loopback() {
            out.push(format!(
                "/metrics is open to anyone who can reach {addr} ([metrics] listen without [[metrics.tokens]]); bind it to a private address or add a token with `concord token new --name prometheus --metrics`"
            ));
        }
    }
    if config.commerce.keys.is_empty() {
        out.push(
            "the storefront API (/v1) is open: no [[commerce.keys]] are configured, so anyone who can reach the port can reserve stock; create keys with `concord token new --name NAME --channel CHANNEL`".to_string(),
        );
    }
    if !config.admin.tokens.is_empty()
        && !config.admin.secure_cookie
        && !config.server.listen.ip().is_loopback()
    {
        out.push(format!(
            "the dashboard's session cookie is sent over plain HTTP: the hub listens on {} and [admin] secure_cookie is off; serve it behind TLS and set secure_cookie = true",
            config.server.listen
        ));
    }
    if config.admin.tokens.is_empty() {
        out.push(
            "the admin API (/api/v1) and dashboard refuse every request: no [[admin.tokens]] are configured; create one with `concord token new --name NAME --role operator`".to_string(),
        );
    }
    out
}

async fn hook(
    State(state): State<AppState>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ack = state
        .engine
        .capture_webhook(&endpoint, &headers, &body)
        .await?;
    Ok(Json(
        json!({ "stored": ack.stored, "duplicates": ack.duplicates, "ignored": ack.ignored }),
    ))
}

/// `200 ready`, or `503` (code `not_ready`) with a stable reason as the message and nothing else — never an internal error
/// text (that goes to the logs): `engine_starting`, `engine_task_failed:<task>` (the engine gave
/// up restarting a task: see `concord_engine::runtime::supervise`), `store_unavailable`.
async fn ready(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    let unavailable = |reason: String| ApiError::new(ErrorCode::NotReady, reason);
    if !state.ready.load(Ordering::Acquire) {
        return Err(unavailable("engine_starting".into()));
    }
    if let Readiness::Failed(failure) = state.engine.readiness() {
        return Err(unavailable(failure.code()));
    }
    if let Err(e) = state.engine.store().ping().await {
        tracing::error!(error = %e, "readiness: the store cannot be read");
        return Err(unavailable("store_unavailable".into()));
    }
    Ok("ready")
}

async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(h) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no metrics recorder installed").into_response(),
    }
}

/// Serve `app` on `listener` with the default `[server]` limits until `shutdown` resolves (see
/// [`serve_with`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, &ServerConfig::default(), shutdown).await
}

/// Serve `app` on `listener` until `shutdown` resolves, under `limits`' connection limits: at
/// most `max_connections` open at once (further ones wait in the OS's accept queue), and each
/// closed when it takes longer than `header_read_timeout` to send a request's headers or sits
/// that long idle between requests. (`axum::serve` has no header timeout: half-open connections
/// stayed open for ever.) At shutdown the listener closes, idle connections close at once and
/// requests in progress finish. Handlers can read the peer address as
/// `axum::extract::ConnectInfo<SocketAddr>`.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: &ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free slot first, then accept: beyond the cap, connections wait in the backlog.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service =
            app.clone()
                .map_request(move |req: axum::http::Request<hyper::body::Incoming>| {
                    let mut req = req.map(axum::body::Body::new);
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    req
                });
        let conn = http.serve_connection(
            TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(service),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Header timeouts and clients that went away: routine, not worth a warning.
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// An accept that failed: a connection reset before it was accepted is nothing; anything else
/// (out of file descriptors) is logged and waited out for a second, as hyper and axum do.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use concord_engine::config::Config;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"{extra}
[endpoints.erp]
connector = "sandbox-erp"
url = "http://127.0.0.1:7001"

[endpoints.web1]
connector = "sandbox-shop"
url = "http://127.0.0.1:7002"

[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web1"]

[[admin.tokens]]
name = "ops"
role = "operator"
sha256 = "2fb442ee80a639f235ae5a0ea63b74b6c9ef1f4b127400e18a200f215d3dd7e1"
"#
        );
        Config::from_toml_str_with_env(&text, Path::new("t.toml"), |_| None)
            .unwrap_or_else(|e| panic!("config: {e}"))
    }

    /// Regression (issue 12): `concord validate` and the start said nothing about a password
    /// written in the config file, nor about `/metrics` open on the network.
    #[test]
    fn literal_secrets_and_open_metrics_are_warned_about() {
        let warned =
            |c: &Config, needle: &str| super::access_warnings(c).iter().any(|w| w.contains(needle));
        let literal = config(
            "[endpoints.tryton]\nconnector = \"tryton\"\nurl = \"http://127.0.0.1:8011\"\n\
             [endpoints.tryton.options]\ndatabase = \"db\"\npassword = \"hunter2\"\n",
        );
        assert!(warned(
            &literal,
            "endpoints.tryton.options.password is a secret written as a literal"
        ));
        assert!(super::access_warnings(&literal)
            .iter()
            .all(|w| !w.contains("hunter2")));
        assert!(!warned(&config(""), "literal"));
        let open = config("[metrics]\nlisten = \"0.0.0.0:9090\"\n");
        assert!(warned(
            &open,
            "/metrics is open to anyone who can reach 0.0.0.0:9090"
        ));
        assert!(!warned(
            &config("[metrics]\nlisten = \"127.0.0.1:9090\"\n"),
            "/metrics is open"
        ));
    }

    #[test]
    fn a_session_cookie_over_plain_http_on_the_network_is_warned_about() {
        let plain = |c: &Config| {
            super::access_warnings(c)
                .iter()
                .any(|w| w.contains("secure_cookie"))
        };
        assert!(!plain(&config("")), "loopback: local use, no warning");
        assert!(plain(&config("[server]\nlisten = \"0.0.0.0:8080\"\n")));
        assert!(!plain(&config(
            "[server]\nlisten = \"0.0.0.0:8080\"\n[admin]\nsecure_cookie = true\n"
        )));
    }
}

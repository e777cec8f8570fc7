//! The admin API, `/api/v1/...`: what the dashboard and operators' tools read and do —
//! endpoints and their health, flows (with per-minute event counts), the journal, dead letters,
//! parked items, reservations, orders, the stock pool of a SKU, and the operator actions
//! (replay, drop, pause, resume, run now). JSON in and out (bodies declared
//! `application/json`, else 415; parsed strictly: [`crate::input`]); errors are
//! [`ErrorBody`] `{"error", "code", "field", "details"}`: a stable [`ErrorCode`] and, for bad
//! input, the field at fault (the message names it too). The OpenAPI document is generated from the handlers'
//! `#[utoipa::path]` attributes and the types' `ToSchema` derives, and served at
//! `/api/v1/openapi.json`.
//!
//! Adding a route (the pattern every part of the admin API follows):
//! 1. write the handler in a module here with `#[utoipa::path(get|post|…, path = "/api/v1/…",
//!    tag = "…", params(…), responses(…))]` (its request and response types derive
//!    `utoipa::ToSchema`); take [`Operator`](crate::access::Operator) as an argument when it
//!    acts (403 for a viewer) and record the action with [`audit`];
//! 2. add `.routes(routes!(module::handler))` to [`protected`] (or [`public`] for routes that
//!    need no token).
//!
//! Access (`crate::access`): every route of [`protected`] needs a token or a session; the
//! openapi document and `POST`/`DELETE /api/v1/session` do not. Must never expose a token, key
//! or session id, and never call a connector on a request's behalf.

mod actions;
mod alerts;
mod dead_letters;
mod dry_run;
mod endpoints;
mod flows;
mod journal;
mod orders;
mod overview;
mod reconcile;
mod session;
mod stock;

use crate::access::{require_admin, Access, Caller};
use crate::{ApiError, AppState, ErrorCode};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{middleware, Extension, Router};
use concord_store::AuditEvent;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Every error answer of the admin API (the one error shape of the whole surface).
pub use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Concord admin API",
        description = "Monitoring and operating a Concord hub: endpoints, flows, journal, dead letters, parked items, reservations, orders, stock, and operator actions. Authenticate with `Authorization: Bearer TOKEN` (a token from `concord token new`) or the session cookie of `POST /api/v1/session`. Viewers read; operators also act."
    ),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
    components(schemas(ErrorBody, crate::ErrorCode)),
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::access::SESSION_COOKIE,
            ))),
        );
    }
}

/// Routes that need a token or a session (read: viewer; actions: operator).
fn protected() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(session::me))
        .routes(routes!(overview::show))
        .routes(routes!(endpoints::list))
        .routes(routes!(flows::list))
        .routes(routes!(flows::show))
        .routes(routes!(journal::search))
        .routes(routes!(journal::show))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::show))
        .routes(routes!(dead_letters::replay))
        .routes(routes!(dead_letters::drop_letters))
        .routes(routes!(stock::pool))
        .routes(routes!(stock::reservations))
        .routes(routes!(orders::list))
        .routes(routes!(orders::counts))
        .routes(routes!(orders::show))
        .routes(routes!(orders::parked))
        .routes(routes!(actions::pause))
        .routes(routes!(actions::resume))
        .routes(routes!(actions::run_now))
        .routes(routes!(actions::audit_log))
        .routes(routes!(alerts::list))
        .routes(routes!(reconcile::list, reconcile::run))
        .routes(routes!(reconcile::show))
        .routes(routes!(dry_run::planned))
}

/// Routes open without a token.
fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(session::login, session::logout))
}

/// The OpenAPI document of the admin API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = protected().split_for_parts();
    let (_, public_doc) = public().split_for_parts();
    doc.merge(public_doc);
    finish_document(&mut doc);
    doc
}

/// What the derive cannot say, added to the merged document (served and exported alike).
fn finish_document(doc: &mut utoipa::openapi::OpenApi) {
    describe_error_codes(doc);
    document_throttling(doc);
}

/// `429` on every operation that authenticates: a client that has used up its failed
/// attempts ([`crate::throttle`]) is refused unchecked — a correct token too — until a try comes
/// back. The handlers cannot declare it themselves (the refusal comes from the access layer in
/// front of them), so it is added here, to every operation that does not already say it.
fn document_throttling(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let response = ResponseBuilder::new()
        .description(
            "Too many failed authentication attempts from this client (`rate_limited`): every \
             request of it is refused unchecked until `Retry-After` seconds have passed",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("429".to_string())
                .or_insert_with(|| response.clone().into());
        }
    }
}

/// Each error code's meaning in the `ErrorCode` schema, which the derive leaves a bare list of
/// names. Done on the finished document: every route's `ErrorBody` registers the derived schema
/// again, replacing an earlier edit.
fn describe_error_codes(doc: &mut utoipa::openapi::OpenApi) {
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    if let Some(utoipa::openapi::RefOr::T(utoipa::openapi::Schema::Object(o))) =
        components.schemas.get_mut("ErrorCode")
    {
        o.description = Some(format!(
            "Why an error was answered, for programs: stable (codes are only added; a code's meaning and status never change). The `error` message beside it is for people and may change.\n\n{}",
            crate::ErrorCode::markdown_list()
        ));
    }
}

/// The admin API router (`/api/v1/...`), to merge into the app.
pub fn router(access: Arc<Access>) -> Router<AppState> {
    let (protected, mut doc) = protected().split_for_parts();
    let (public, public_doc) = public().split_for_parts();
    doc.merge(public_doc);
    finish_document(&mut doc);
    let json: Arc<str> = match doc.to_json() {
        Ok(j) => j.into(),
        Err(e) => format!("{{\"error\": \"openapi document: {e}\"}}").into(),
    };
    protected
        .route_layer(middleware::from_fn_with_state(
            access.clone(),
            require_admin,
        ))
        .merge(public)
        // Unknown admin paths answer JSON like everything else (wrong methods on known paths
        // still get 405 from their route).
        .route("/api/v1/{*rest}", axum::routing::any(unknown_route))
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let json = json.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        json.to_string(),
                    )
                }
            }),
        )
        // Bodies are JSON, declared as such (415 otherwise), before any handler reads one.
        .layer(middleware::from_fn(crate::input::require_json))
        .layer(Extension(access))
        .layer(middleware::map_response(private_headers))
}

/// Every admin answer is private to its caller: never stored by a browser or proxy cache, and
/// never content-sniffed into something other than JSON.
async fn private_headers(mut r: axum::response::Response) -> axum::response::Response {
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    r
}

/// Record an operator action in the audit trail: who, what, target, result. The action's
/// outcome is returned to the caller even if recording fails (logged as an error then).
pub(crate) async fn audit(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: serde_json::Value,
    result: serde_json::Value,
) {
    let event = AuditEvent {
        at: state.engine.now(),
        event: format!("admin.{action}"),
        endpoint: None,
        kind: None,
        key: None,
        detail: serde_json::json!({
            "who": caller.name,
            "role": caller.role.as_str(),
            "action": action,
            "target": target,
            "result": result,
        }),
    };
    if let Err(e) = state.engine.store().record_audit(vec![event]).await {
        tracing::error!(error = %e, who = %caller.name, action, "could not record an operator action in the audit trail");
    }
}

pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::NotFound, message)
}

impl From<concord_engine::EngineError> for ApiError {
    fn from(e: concord_engine::EngineError) -> Self {
        use concord_engine::EngineError;
        let code = match e {
            EngineError::Store(e) => return e.into(),
            EngineError::UnknownFlow(_) => ErrorCode::NotFound,
            EngineError::ShuttingDown => ErrorCode::ShuttingDown,
            EngineError::Capability { .. }
            | EngineError::MissingConnector(_)
            | EngineError::NotPossible(_) => ErrorCode::Conflict,
        };
        ApiError::new(code, e.to_string())
    }
}

/// Parse a query string into `T`, rejecting unknown parameters and naming the bad one. Decoded
/// strictly first ([`crate::input::query_pairs`]: a value that is not UTF-8 is a 400 naming it),
/// so the decoding below never replaces anything.
pub(crate) fn parse_query<T: for<'de> Deserialize<'de>>(q: Option<&str>) -> Result<T, ApiError> {
    crate::input::query_pairs(q)?;
    let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(q.unwrap_or("")));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        crate::input::deserialize_error(&path, &e.into_inner().to_string(), "query string")
    })
}

fn form_urlencoded_parse(q: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(q.as_bytes())
}

/// `IntoResponse` for handlers answering JSON with a status.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: T) -> axum::response::Response {
    (status, axum::Json(body)).into_response()
}

/// Most items one listing returns.
pub(crate) const MAX_LIMIT: u32 = 1000;

/// A listing's `limit` parameter: 1 to [`MAX_LIMIT`], `default` when absent.
pub(crate) fn limit(given: Option<u32>, default: u32) -> Result<usize, ApiError> {
    match given.unwrap_or(default) {
        n @ 1..=MAX_LIMIT => Ok(n as usize),
        n => Err(ApiError::invalid_field(
            "limit",
            format!("must be from 1 to {MAX_LIMIT}, got {n}"),
        )),
    }
}

/// An `{id}` path segment as an integer (400 naming `id` otherwise; axum's own rejection would
/// answer plain text).
pub(crate) fn path_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidPath,
            format!("id: expected an integer, got {raw:?}"),
        )
        .with_field("id")
    })
}

async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    not_found(format!(
        "no admin API route {}; the routes are listed in /api/v1/openapi.json",
        uri.path()
    ))
}

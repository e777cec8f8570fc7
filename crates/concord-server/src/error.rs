//! The one error shape of every HTTP answer that is not a success — webhooks (`/hooks`), the
//! storefront API (`/v1`), the admin API (`/api/v1`), `/readyz`, `/metrics` and axum's own
//! rejections alike: `{"error": "<message for a person>", "code": "<stable code>", "field":
//! "<path of the field at fault, when one is>", "details": [...]}`.
//!
//! [`ErrorCode`] is the contract with programs: a client branches on `code` (and `field`), never
//! on `error`, whose wording may change. Codes are only ever added; a code's meaning and status
//! never change. [`json_errors`] turns whatever answers an error without a JSON body (axum's
//! rejections, 405, the request timeout's 503, a body over its limit) into the same shape, so
//! no error of the surface is plain text.
//!
//! Must never: put a secret, a stored payload or an internal error's text in `field` or `code`
//! (they are fixed names chosen here), or let an error leave without a code.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The stable, machine-readable reason of an error answer (`code` in the body). Each code has
/// one HTTP status, given first in its description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400; see [`ALL`].
    InvalidJson,
    /// 400; see [`ALL`].
    InvalidField,
    /// 400; see [`ALL`].
    MissingField,
    /// 400; see [`ALL`].
    UnknownField,
    /// 400; see [`ALL`].
    InvalidPath,
    /// 400; see [`ALL`].
    BadRequest,
    /// 400; see [`ALL`].
    InvalidPayload,
    /// 401; see [`ALL`].
    Unauthorized,
    /// 401; see [`ALL`].
    InvalidSignature,
    /// 403; see [`ALL`].
    Forbidden,
    /// 403; see [`ALL`].
    CrossSite,
    /// 403; see [`ALL`].
    AccessNotConfigured,
    /// 404; see [`ALL`].
    NotFound,
    /// 404; see [`ALL`].
    UnknownReservation,
    /// 404; see [`ALL`].
    UnknownEndpoint,
    /// 404; see [`ALL`].
    WebhooksNotSupported,
    /// 404; see [`ALL`].
    NotConfigured,
    /// 404; see [`ALL`].
    NoPrice,
    /// 405; see [`ALL`].
    MethodNotAllowed,
    /// 408; see [`ALL`].
    BodyTimeout,
    /// 409; see [`ALL`].
    Conflict,
    /// 409; see [`ALL`].
    InsufficientStock,
    /// 409; see [`ALL`].
    ReservationExpired,
    /// 409; see [`ALL`].
    ReservationClosed,
    /// 409; see [`ALL`].
    ShuttingDown,
    /// 413; see [`ALL`].
    BodyTooLarge,
    /// 415; see [`ALL`].
    UnsupportedMediaType,
    /// 422; see [`ALL`].
    InvalidRecords,
    /// 429; see [`ALL`].
    RateLimited,
    /// 500; see [`ALL`].
    Internal,
    /// 503; see [`ALL`].
    Overloaded,
    /// 503; see [`ALL`].
    StoreUnavailable,
    /// 503; see [`ALL`].
    NotReady,
    /// 503; see [`ALL`].
    Timeout,
    /// 503; see [`ALL`].
    Unavailable,
}

impl ErrorCode {
    /// Every code as a Markdown list (`- `code`: meaning`), for the OpenAPI document.
    pub fn markdown_list() -> String {
        ALL.iter()
            .map(|(_, name, meaning)| format!("- `{name}`: {meaning}\n"))
            .collect()
    }

    /// The HTTP status this code is always answered with.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidJson | InvalidField | MissingField | UnknownField | InvalidPath | BadRequest
            | InvalidPayload => StatusCode::BAD_REQUEST,
            Unauthorized | InvalidSignature => StatusCode::UNAUTHORIZED,
            Forbidden | CrossSite | AccessNotConfigured => StatusCode::FORBIDDEN,
            NotFound | UnknownReservation | UnknownEndpoint | WebhooksNotSupported
            | NotConfigured | NoPrice => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Conflict | InsufficientStock | ReservationExpired | ReservationClosed
            | ShuttingDown => StatusCode::CONFLICT,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InvalidRecords => StatusCode::UNPROCESSABLE_ENTITY,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Overloaded | StoreUnavailable | NotReady | Timeout | Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The code of an error answer that carries none (axum's rejections, tower's layers): the
    /// one code of its status that says no more than the status does.
    pub fn of_status(status: StatusCode) -> ErrorCode {
        match status {
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
            StatusCode::FORBIDDEN => ErrorCode::Forbidden,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => ErrorCode::BodyTimeout,
            StatusCode::CONFLICT => ErrorCode::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::BodyTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            // No route reads with axum's `Json` extractor (whose 422 this would be); the hub's
            // own 422 is a webhook's invalid records.
            StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::InvalidRecords,
            StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Timeout,
            s if s.is_client_error() => ErrorCode::BadRequest,
            _ => ErrorCode::Internal,
        }
    }

    /// The code as it appears in the body (`"invalid_field"`).
    pub fn as_str(self) -> &'static str {
        ALL.iter()
            .find(|(c, _, _)| *c == self)
            .map_or("internal", |(_, name, _)| name)
    }
}

/// Every code with its spelling and meaning: the one list the OpenAPI document and README
/// are written from (a test checks it against the serde names and the schema, so none is
/// missing). A meaning starts with the code's status.
pub const ALL: &[(ErrorCode, &str, &str)] = &[
    (
        ErrorCode::InvalidJson,
        "invalid_json",
        "400: the body is not JSON: not UTF-8, a syntax error, a duplicate key, nested too deep, or not the JSON value the endpoint reads (e.g. an array for an object).",
    ),
    (
        ErrorCode::InvalidField,
        "invalid_field",
        "400: a body field or query parameter has a value it cannot take (`field` names it; the message says why).",
    ),
    (
        ErrorCode::MissingField,
        "missing_field",
        "400: a required body field or query parameter is missing (`field`).",
    ),
    (
        ErrorCode::UnknownField,
        "unknown_field",
        "400: a body field or query parameter the endpoint does not know (`field`).",
    ),
    (
        ErrorCode::InvalidPath,
        "invalid_path",
        "400: a path segment (`field`, e.g. `id`) is malformed.",
    ),
    (
        ErrorCode::BadRequest,
        "bad_request",
        "400: the request could not be read for another reason (the message says which).",
    ),
    (
        ErrorCode::InvalidPayload,
        "invalid_payload",
        "400: a webhook body that is not what this endpoint's system sends.",
    ),
    (
        ErrorCode::Unauthorized,
        "unauthorized",
        "401: no credential, an unknown token or key, or an expired session.",
    ),
    (
        ErrorCode::InvalidSignature,
        "invalid_signature",
        "401: a webhook whose signature is missing or wrong.",
    ),
    (
        ErrorCode::Forbidden,
        "forbidden",
        "403: the credential is known but may not do this (a viewer asking for an operator action, a storefront key asking for another channel).",
    ),
    (
        ErrorCode::CrossSite,
        "cross_site",
        "403: a state-changing request from another origin without a bearer token (CSRF defence).",
    ),
    (
        ErrorCode::AccessNotConfigured,
        "access_not_configured",
        "403: this surface is closed until credentials are configured (no `[[admin.tokens]]`; `/metrics` on the main port without any token configured).",
    ),
    (
        ErrorCode::NotFound,
        "not_found",
        "404: no such route or record (flow, journal entry, dead letter, order).",
    ),
    (
        ErrorCode::UnknownReservation,
        "unknown_reservation",
        "404: no reservation has this id (or it belongs to another channel than the key's).",
    ),
    (
        ErrorCode::UnknownEndpoint,
        "unknown_endpoint",
        "404: no endpoint of this name receives webhooks.",
    ),
    (
        ErrorCode::WebhooksNotSupported,
        "webhooks_not_supported",
        "404: the endpoint's connector does not receive webhooks.",
    ),
    (
        ErrorCode::NotConfigured,
        "not_configured",
        "404: the feature is not configured (`[inventory]` for reservations and availability, `[pricing]` for prices).",
    ),
    (
        ErrorCode::NoPrice,
        "no_price",
        "404: no price applies (the message says which filter excluded the candidates).",
    ),
    (
        ErrorCode::MethodNotAllowed,
        "method_not_allowed",
        "405: the path exists, the method does not (`Allow` lists the methods).",
    ),
    (
        ErrorCode::BodyTimeout,
        "body_timeout",
        "408: the body did not arrive in time (`[server] body_read_timeout`).",
    ),
    (
        ErrorCode::Conflict,
        "conflict",
        "409: the request conflicts with the current state (the message says why).",
    ),
    (
        ErrorCode::InsufficientStock,
        "insufficient_stock",
        "409: stock is short for at least one line; nothing was reserved (`short` lists them).",
    ),
    (
        ErrorCode::ReservationExpired,
        "reservation_expired",
        "409: the reservation expired; its stock is free again.",
    ),
    (
        ErrorCode::ReservationClosed,
        "reservation_closed",
        "409: the reservation is committed, released or cancelled: this action is not possible.",
    ),
    (
        ErrorCode::ShuttingDown,
        "shutting_down",
        "409: the engine is shutting down; the request was not done.",
    ),
    (
        ErrorCode::BodyTooLarge,
        "body_too_large",
        "413: the body is larger than the route's limit (`[server] max_body_bytes` for webhooks, `api_max_body_bytes` for everything else).",
    ),
    (
        ErrorCode::UnsupportedMediaType,
        "unsupported_media_type",
        "415: a body not declared `Content-Type: application/json`.",
    ),
    (
        ErrorCode::InvalidRecords,
        "invalid_records",
        "422: records of a webhook failed mapping or validation; nothing was stored (`details`: one message per bad record, naming the record and the field).",
    ),
    (
        ErrorCode::RateLimited,
        "rate_limited",
        "429: too many failed authentication attempts from this address (`Retry-After`).",
    ),
    (
        ErrorCode::Internal,
        "internal",
        "500: an error inside the hub (logged).",
    ),
    (
        ErrorCode::Overloaded,
        "overloaded",
        "503: the store's write queue is full; nothing was written (`Retry-After`).",
    ),
    (
        ErrorCode::StoreUnavailable,
        "store_unavailable",
        "503: the store could not be read or written (logged; `Retry-After`).",
    ),
    (
        ErrorCode::NotReady,
        "not_ready",
        "503: `/readyz` — the hub is not ready (the message is the reason: `engine_starting`, `engine_task_failed:<task>`, `store_unavailable`).",
    ),
    (
        ErrorCode::Timeout,
        "timeout",
        "503: the request took longer than `[server] request_timeout` (`Retry-After`).",
    ),
    (
        ErrorCode::Unavailable,
        "unavailable",
        "503: a resource of the host failed (e.g. its random source); try again (`Retry-After`).",
    ),
];

/// The body of every error answer (see the module docs).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person; names the field for bad input. Its wording may change:
    /// programs read `code` and `field`.
    pub error: String,
    /// Why, for a program: stable, see [`ErrorCode`].
    pub code: ErrorCode,
    /// The body field, query parameter or path segment at fault (`lines[0].quantity`,
    /// `channel`, `id`), when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Further messages (one per bad record or field), often empty.
    pub details: Vec<String>,
}

/// One error type for every HTTP answer that is not a success.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    pub details: Vec<String>,
}

impl ApiError {
    /// An error with `code` (and its status) and a message for a person.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: code.status(),
            code,
            message: message.into(),
            field: None,
            details: vec![],
        }
    }

    /// The field, parameter or path segment at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    pub fn with_details(mut self, details: Vec<String>) -> ApiError {
        self.details = details;
        self
    }

    /// 400 `invalid_field` naming `field`; the message is `"{field}: {why}"`.
    pub fn invalid_field(field: impl Into<String>, why: impl std::fmt::Display) -> ApiError {
        let field = field.into();
        ApiError::new(ErrorCode::InvalidField, format!("{field}: {why}")).with_field(field)
    }

    /// 400 `missing_field` naming `field` (`"{field}: required"`).
    pub fn missing_field(field: impl Into<String>) -> ApiError {
        let field = field.into();
        ApiError::new(ErrorCode::MissingField, format!("{field}: required")).with_field(field)
    }

    /// The body this error answers.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.message.clone(),
            code: self.code,
            field: self.field.clone(),
            details: self.details.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<concord_store::StoreError> for ApiError {
    fn from(e: concord_store::StoreError) -> Self {
        if matches!(e, concord_store::StoreError::Busy) {
            return ApiError::new(ErrorCode::Overloaded, format!("store: {e}"));
        }
        tracing::error!(error = %e, "the HTTP API could not read or write the store");
        ApiError::new(ErrorCode::StoreUnavailable, format!("store: {e}"))
    }
}

/// The largest non-JSON error body [`json_errors`] reads to keep as the message (axum's
/// rejections are one line).
const MAX_PLAIN_ERROR: usize = 16 * 1024;

/// Middleware (outermost): an error answer without a JSON body — axum's extractor rejections
/// (a path segment that is not valid percent-encoding, a body over its limit), 405 on a known
/// path, the timeout layers' empty 408/503, a plain-text 404 — is answered as [`ErrorBody`]
/// with the code of its status ([`ErrorCode::of_status`]) and its text as the message. Status
/// and headers (`Allow`, `Retry-After`, `WWW-Authenticate`) are kept.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::input::is_json);
    if is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase()
        });
    let code = ErrorCode::of_status(status);
    let body = ApiError {
        status,
        code,
        message: text,
        field: None,
        details: vec![],
    }
    .body();
    let bytes = match serde_json::to_vec(&body) {
        Ok(b) => b,
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_spelled_as_serde_spells_it() {
        for (code, name, meaning) in ALL {
            assert!(
                meaning.starts_with(&code.status().as_u16().to_string()),
                "{name}: {meaning}"
            );
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(name.to_string())
            );
            assert_eq!(code.as_str(), *name);
            assert_eq!(ErrorCode::of_status(code.status()).status(), code.status());
        }
        let names: std::collections::BTreeSet<_> = ALL.iter().map(|(_, n, _)| *n).collect();
        assert_eq!(names.len(), ALL.len(), "a spelling is used twice");
        // The schema lists every variant: none is missing from `ALL`.
        let schema = serde_json::to_value(<ErrorCode as utoipa::PartialSchema>::schema()).unwrap();
        let listed: std::collections::BTreeSet<_> = schema["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(listed, names);
    }

    #[test]
    fn the_readme_lists_every_code() {
        let readme = include_str!("../../../README.md");
        for (_, name, _) in ALL {
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "README lacks {name}"
            );
        }
    }

    #[test]
    fn the_body_keeps_its_fields_and_gains_code_and_field() {
        let v = serde_json::to_value(ApiError::invalid_field("lines[0].sku", "too long").body())
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "lines[0].sku: too long", "code": "invalid_field",
                "field": "lines[0].sku", "details": []})
        );
        let v = serde_json::to_value(ApiError::new(ErrorCode::NotFound, "no").body()).unwrap();
        assert!(v.get("field").is_none(), "{v}");
    }
}

//! The storefront (commerce) API, `/v1/...`: availability, reservations and prices for
//! checkouts, served from the hub's ledger and price index, never by calling the ERP.
//!
//! - `GET /v1/availability?channel=C&sku=A&sku=B` → `{"channel", "skus": [{sku, ats, locations,
//!   incoming, backorderable}]}`
//! - `POST /v1/reservations` `{"channel", "key", "lines": [{"sku", "quantity"}]}` → 201 with the
//!   reservation (200 with the earlier one when `key` was used before: idempotent); 409
//!   `{"error", "code": "insufficient_stock", "details", "short": [{sku, requested, available}]}`
//!   when stock is short (nothing reserved)
//! - `POST /v1/reservations/{id}/commit` `{"order": "<channel order number>"}` → 200
//! - `DELETE /v1/reservations/{id}` → 200 (cancelled; its stock is free again)
//! - `GET /v1/reservations/{id}` → 200
//! - `GET /v1/prices?channel=C&sku=A&qty=48[&customer=K][&currency=USD]` → 200 `{channel,
//!   customer, customer_group, sku, quantity, list, scope, currency, tier_min_quantity,
//!   unit_minor, extended_minor, rule}` from the hub's price index (`runtime/pricing.rs`); 404
//!   `{"error"}` saying why no price applies (no list has the SKU, none for this buyer, none in
//!   the currency, none valid today) or that `[pricing]` is not configured
//!
//! Errors are [`crate::error::ErrorBody`] with a stable `code` (`unknown_reservation`,
//! `reservation_expired`, `no_price`, …). Bad input answers 400 naming the field (`field`); values outside the bounded domain
//! (`concord_core::limits`: more than 500 lines or 200 `sku` values, quantities above 10⁹,
//! control characters or more than 256 bytes in a SKU or key) are refused before the store is
//! asked. Bodies must be declared JSON (415 otherwise) and are parsed strictly, queries decoded
//! strictly ([`crate::input`]). With `[[commerce.keys]]` configured every request needs a key,
//! which acts only for its channel (401 without a known key, 403 for another channel's
//! availability or prices: [`crate::access`]); another channel's reservation is answered 404,
//! exactly like one that does not exist, so a key cannot learn which ids exist elsewhere. Must
//! never block on a connector.

use crate::access::ChannelScope;
use crate::{ApiError, AppState, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use concord_core::inventory::Line;
use concord_engine::runtime::inventory::InventoryError;
use concord_engine::runtime::pricing::{PriceRequest, PricingError};
use concord_store::{ReservationState, ReserveOutcome};
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/availability", get(availability))
        .route("/v1/reservations", post(reserve))
        .route("/v1/reservations/{id}", get(show).delete(cancel))
        .route("/v1/reservations/{id}/commit", post(commit))
        .route("/v1/prices", get(prices))
        .route_layer(axum::middleware::from_fn(crate::input::require_json))
}

impl From<PricingError> for ApiError {
    fn from(e: PricingError) -> Self {
        match e {
            PricingError::NotConfigured => ApiError::new(ErrorCode::NotConfigured, e.to_string()),
            PricingError::NoPrice(_) => ApiError::new(ErrorCode::NoPrice, e.to_string()),
            PricingError::Invalid { field, message } => ApiError::invalid_field(field, message),
            PricingError::Store(e) => e.into(),
        }
    }
}

async fn prices(
    State(s): State<AppState>,
    scope: ChannelScope,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = crate::input::query_pairs(q.as_deref())?;
    let mut req = PriceRequest::default();
    let (mut channel, mut sku, mut qty) = (None, None, None);
    for (k, v) in pairs {
        let slot = match k.as_str() {
            "channel" => &mut channel,
            "sku" => &mut sku,
            "qty" => &mut qty,
            "customer" => &mut req.customer,
            "currency" => &mut req.currency,
            other => {
                return Err(unknown_parameter(
                    other,
                    "`channel`, `sku`, `qty`, `customer`, `currency`",
                ))
            }
        };
        if slot.replace(v).is_some() {
            return Err(ApiError::invalid_field(k, "given more than once"));
        }
    }
    req.channel = channel.ok_or_else(|| ApiError::missing_field("channel"))?;
    scope.check(&req.channel)?;
    req.sku = sku.ok_or_else(|| ApiError::missing_field("sku"))?;
    req.quantity = match qty {
        None => 1,
        Some(q) => q.parse().map_err(|_| {
            ApiError::invalid_field("qty", format!("must be a whole number, got {q:?}"))
        })?,
    };
    Ok(Json(s.engine.price(&req)?).into_response())
}

impl From<InventoryError> for ApiError {
    fn from(e: InventoryError) -> Self {
        let code = match &e {
            InventoryError::NotConfigured => ErrorCode::NotConfigured,
            InventoryError::NotFound(_) => ErrorCode::UnknownReservation,
            InventoryError::Invalid { field, message } => {
                return ApiError::invalid_field(field.clone(), message)
            }
            InventoryError::WrongState { state, .. } => match state {
                ReservationState::Expired => ErrorCode::ReservationExpired,
                _ => ErrorCode::ReservationClosed,
            },
            InventoryError::Store(concord_store::StoreError::Busy) => ErrorCode::Overloaded,
            InventoryError::Store(_) => ErrorCode::StoreUnavailable,
            InventoryError::Random(_) => ErrorCode::Unavailable,
        };
        if matches!(code, ErrorCode::StoreUnavailable | ErrorCode::Unavailable) {
            tracing::error!(error = %e, "commerce API could not reach the store");
        }
        ApiError::new(code, e.to_string())
    }
}

/// 400 `unknown_field` for a query parameter this endpoint does not read.
fn unknown_parameter(name: &str, expected: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownField,
        format!("{name}: unknown parameter, expected {expected}"),
    )
    .with_field(name)
}

/// Parse a JSON body into `T`, strictly, naming the offending field on failure (see
/// [`crate::input::parse_json`]; every JSON body of both APIs is read through it).
pub(crate) use crate::input::parse_json as parse_body;

async fn availability(
    State(s): State<AppState>,
    scope: ChannelScope,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = crate::input::query_pairs(q.as_deref())?;
    let mut channel = None;
    let mut skus = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "channel" => channel = Some(v),
            "sku" => skus.push(v),
            other => return Err(unknown_parameter(other, "`channel` and `sku`")),
        }
    }
    let channel = channel.ok_or_else(|| ApiError::missing_field("channel"))?;
    scope.check(&channel)?;
    let list = s.engine.availability(&channel, &skus).await?;
    Ok(Json(json!({ "channel": channel, "skus": list })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveBody {
    channel: String,
    /// Client idempotency key (cart or checkout id).
    key: String,
    lines: Vec<Line>,
}

async fn reserve(
    State(s): State<AppState>,
    scope: ChannelScope,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: ReserveBody = parse_body(&body)?;
    scope.check(&b.channel)?;
    match s.engine.reserve(&b.channel, &b.key, b.lines).await? {
        ReserveOutcome::Reserved(r) => Ok((StatusCode::CREATED, Json(r)).into_response()),
        ReserveOutcome::Existing(r) => Ok((StatusCode::OK, Json(r)).into_response()),
        ReserveOutcome::Short(short) => Ok((
            StatusCode::CONFLICT,
            Json(json!({
                "error": "insufficient stock; nothing was reserved",
                "code": ErrorCode::InsufficientStock,
                "details": [],
                "short": short,
            })),
        )
            .into_response()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    /// The channel's order number.
    order: String,
}

/// 404 unless the request's key acts for the channel of reservation `id` (no-op when open):
/// another channel's reservation is answered exactly like an unknown id, so that a key learns
/// nothing about ids outside its channel.
async fn check_reservation(s: &AppState, scope: &ChannelScope, id: &str) -> Result<(), ApiError> {
    if let Some(own) = &scope.0 {
        let r = s.engine.reservation(id).await?;
        if &r.channel != own {
            return Err(InventoryError::NotFound(id.to_string()).into());
        }
    }
    Ok(())
}

async fn commit(
    State(s): State<AppState>,
    scope: ChannelScope,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: CommitBody = parse_body(&body)?;
    check_reservation(&s, &scope, &id).await?;
    let r = s.engine.commit_reservation(&id, &b.order).await?;
    Ok(Json(r).into_response())
}

async fn cancel(
    State(s): State<AppState>,
    scope: ChannelScope,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_reservation(&s, &scope, &id).await?;
    Ok(Json(s.engine.cancel_reservation(&id).await?).into_response())
}

async fn show(
    State(s): State<AppState>,
    scope: ChannelScope,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_reservation(&s, &scope, &id).await?;
    Ok(Json(s.engine.reservation(&id).await?).into_response())
}

//! `GET /api/v1/stock/{sku}` (the pool's view of one SKU: positions with on hand, committed,
//! held, incoming with ETA; per channel buffer and available-to-sell) and
//! `GET /api/v1/reservations` (by state, channel, SKU). From the ledger only, never the ERP.

use super::{limit, parse_query, ErrorBody};
use crate::{ApiError, AppState};
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use concord_engine::runtime::inventory::StockPool;
use concord_store::{Reservation, ReservationState};
use serde::Deserialize;
use utoipa::IntoParams;

/// The stock pool of one SKU.
#[utoipa::path(
    get,
    path = "/api/v1/stock/{sku}",
    tag = "stock",
    params(("sku" = String, Path, description = "SKU")),
    responses(
        (status = 200, body = StockPool),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No `[inventory]` pool is configured", body = ErrorBody),
    )
)]
pub async fn pool(
    State(s): State<AppState>,
    Path(sku): Path<String>,
) -> Result<Json<StockPool>, ApiError> {
    Ok(Json(s.engine.stock_pool(&sku).await?))
}

/// Reservation filters; all optional.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReservationParams {
    pub state: Option<ReservationState>,
    /// Channel (endpoint name).
    pub channel: Option<String>,
    /// Only reservations with a line of this SKU.
    pub sku: Option<String>,
    /// Most reservations returned, newest first, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Reservations, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/reservations",
    tag = "stock",
    params(ReservationParams),
    responses(
        (status = 200, body = Vec<Reservation>),
        (status = 400, description = "A bad parameter (named)", body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn reservations(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<Reservation>>, ApiError> {
    let p: ReservationParams = parse_query(q.as_deref())?;
    let limit = limit(p.limit, 100)?;
    // The channel filter is applied here: read a larger (bounded) selection first.
    let fetch = if p.channel.is_some() { 100_000 } else { limit };
    let mut list = match s
        .engine
        .store()
        .reservations(p.state, p.sku.as_deref(), fetch)
        .await
    {
        Ok(l) => l,
        Err(concord_store::StoreError::Unsupported(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    if let Some(c) = &p.channel {
        list.retain(|r| &r.channel == c);
    }
    list.truncate(limit);
    Ok(Json(list))
}

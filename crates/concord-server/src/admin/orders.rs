//! Orders and parked items: `GET /api/v1/orders` (by state, channel; paged by key),
//! `GET /api/v1/orders/counts` (state → count), `GET /api/v1/orders/{key}` (one order's whole
//! history: lifecycle events incl. refused transitions, journal, delivery attempts, dead
//! letters) and `GET /api/v1/parked` (items waiting on dependencies, with what they wait on).
//! Read-only; from the engine's order-lifecycle views. Must never move an order's state.

use super::{limit, not_found, parse_query, ErrorBody};
use crate::{ApiError, AppState};
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use concord_core::model::OrderStatus;
use concord_engine::runtime::orders::{OrderFilter, OrderHistory, OrderSummary, ParkedItem};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// Order filters; all optional.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OrderParams {
    /// Lifecycle state (`placed`, `accepted`, `partially_shipped`, `shipped`, `cancelled`, …).
    pub state: Option<String>,
    /// Channel (endpoint name).
    pub channel: Option<String>,
    /// Paging: orders whose key sorts after this one (the `next_after` of the previous page).
    pub after: Option<String>,
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A page of orders, in key order.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderSummary>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// Orders by state and channel.
#[utoipa::path(
    get,
    path = "/api/v1/orders",
    tag = "orders",
    params(OrderParams),
    responses(
        (status = 200, body = OrderPage),
        (status = 400, description = "A bad parameter (named)", body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn list(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<OrderPage>, ApiError> {
    let p: OrderParams = parse_query(q.as_deref())?;
    let limit = limit(p.limit, 100)?;
    if let Some(state) = p.state.as_deref() {
        if OrderStatus::parse(state).is_none() {
            let known: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
            return Err(ApiError::invalid_field(
                "state",
                format!(
                    "unknown order state {state:?}; expected one of {}",
                    known.join(", ")
                ),
            ));
        }
    }
    let orders = s
        .engine
        .orders(OrderFilter {
            state: p.state,
            channel: p.channel,
            after: p.after,
            limit,
        })
        .await?;
    let next_after = if orders.len() == limit {
        orders.last().map(|o| o.key.clone())
    } else {
        None
    };
    Ok(Json(OrderPage { orders, next_after }))
}

/// How many orders are in each lifecycle state.
#[utoipa::path(
    get,
    path = "/api/v1/orders/counts",
    tag = "orders",
    responses(
        (status = 200, body = BTreeMap<String, u64>),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn counts(State(s): State<AppState>) -> Result<Json<BTreeMap<String, u64>>, ApiError> {
    Ok(Json(s.engine.order_counts().await?))
}

/// One order's whole history.
#[utoipa::path(
    get,
    path = "/api/v1/orders/{key}",
    tag = "orders",
    params(("key" = String, Path, description = "Canonical order key `channel/number`, its `/` sent as %2F (`web1%2F1001`)")),
    responses(
        (status = 200, body = OrderHistory),
        (status = 401, body = ErrorBody),
        (status = 404, description = "The hub has never seen this order", body = ErrorBody),
    )
)]
pub async fn show(
    State(s): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<OrderHistory>, ApiError> {
    s.engine
        .order_history(&key)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(format!("key: no order `{key}`")))
}

/// Parked-items query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ParkedParams {
    /// Most items returned, oldest first, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Outbox items waiting for dependencies at their destination, with what each waits on.
#[utoipa::path(
    get,
    path = "/api/v1/parked",
    tag = "orders",
    params(ParkedParams),
    responses(
        (status = 200, body = Vec<ParkedItem>),
        (status = 400, description = "A bad parameter (named)", body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn parked(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<ParkedItem>>, ApiError> {
    let p: ParkedParams = parse_query(q.as_deref())?;
    Ok(Json(s.engine.parked(limit(p.limit, 100)?).await?))
}

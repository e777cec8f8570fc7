//! `GET /api/v1/flows` and `GET /api/v1/flows/{name}`: mode, schedule, paused, last and next
//! run, deliveries per minute for the last 30 minutes (sparklines), throughput, queue and lag.
//! Read-only: must never change a flow (that is `actions.rs`).

use super::{not_found, ErrorBody};
use crate::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::Json;
use concord_engine::runtime::flows::FlowView;

/// Every flow, in config order.
#[utoipa::path(
    get,
    path = "/api/v1/flows",
    tag = "flows",
    responses(
        (status = 200, body = Vec<FlowView>),
        (status = 401, body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn list(State(s): State<AppState>) -> Result<Json<Vec<FlowView>>, ApiError> {
    Ok(Json(s.engine.flows().await?))
}

/// One flow.
#[utoipa::path(
    get,
    path = "/api/v1/flows/{name}",
    tag = "flows",
    params(("name" = String, Path, description = "Flow name")),
    responses(
        (status = 200, body = FlowView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No flow has this name", body = ErrorBody),
    )
)]
pub async fn show(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<FlowView>, ApiError> {
    s.engine
        .flow(&name)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(format!("name: no flow is named `{name}`")))
}

//! `GET /api/v1/alerts`: the `[alerts]` episodes — firing ones first, then recently resolved
//! ones — as the engine keeps them (`Engine::alerts`). Read-only; rules live in the config.
//! Must never change an episode or send a notification.

use super::{limit, parse_query, ErrorBody};
use crate::{ApiError, AppState};
use axum::extract::{RawQuery, State};
use axum::Json;
use concord_engine::runtime::alerts::Alert;
use serde::Deserialize;
use utoipa::IntoParams;

/// Alert listing options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlertParams {
    /// Most alerts returned, 1-1000 (default 100): firing ones first (newest first), then
    /// resolved ones (most recently resolved first).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Only firing alerts (default `false`).
    pub firing: Option<bool>,
}

/// Alerts, firing first.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    params(AlertParams),
    responses(
        (status = 200, body = Vec<Alert>),
        (status = 400, description = "A bad parameter (named)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn list(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<Alert>>, ApiError> {
    let p: AlertParams = parse_query(q.as_deref())?;
    let limit = limit(p.limit, 100)?;
    let mut alerts = s.engine.alerts(limit).await?;
    if p.firing == Some(true) {
        alerts.retain(|a| a.state == "firing");
    }
    Ok(Json(alerts))
}

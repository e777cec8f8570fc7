//! `GET /api/v1/endpoints`: every configured endpoint, its connector, delivery health (breaker,
//! concurrency, last success, last error, 429s) when it is a destination, and its queue.
//! Read-only; must never show an endpoint's credentials or probe the endpoint.

use super::ErrorBody;
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;
use concord_engine::runtime::EndpointHealth;
use concord_store::QueueStats;
use serde::Serialize;
use utoipa::ToSchema;

/// One endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub name: String,
    /// Connector type (`sandbox-erp`, `tryton`, `vendure`, …).
    pub connector: String,
    /// Delivery health; absent for an endpoint that is only ever read from.
    pub health: Option<EndpointHealth>,
    /// Its outbox queue; absent when nothing was ever queued for it.
    pub queue: Option<QueueStats>,
}

/// Endpoints and their health.
#[utoipa::path(
    get,
    path = "/api/v1/endpoints",
    tag = "endpoints",
    responses(
        (status = 200, body = Vec<EndpointView>),
        (status = 401, body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn list(State(s): State<AppState>) -> Result<Json<Vec<EndpointView>>, ApiError> {
    let stats = s.engine.store().stats().await?;
    let health = s.engine.endpoint_health();
    let out = s
        .engine
        .config()
        .endpoints
        .iter()
        .map(|(name, spec)| EndpointView {
            name: name.clone(),
            connector: spec.connector.clone(),
            health: health.iter().find(|h| &h.endpoint == name).cloned(),
            queue: stats.queues.iter().find(|q| &q.dest == name).cloned(),
        })
        .collect();
    Ok(Json(out))
}

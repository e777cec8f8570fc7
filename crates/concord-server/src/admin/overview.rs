//! `GET /api/v1/overview`: the hub at a glance — the server's clock (so a client computes ages
//! with the hub's time), counters and lag percentiles since start (last 5 minutes), journal and
//! dead-letter totals, every destination's queue, and which flows are paused. Read-only; must
//! never call a connector (figures come from the store and the engine's counters).

use super::ErrorBody;
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;
use concord_engine::runtime::stats::StatsSnapshot;
use concord_store::StoreStats;
use serde::Serialize;
use utoipa::ToSchema;

/// The hub at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    /// The hub's clock, ms since the Unix epoch.
    pub now: i64,
    /// Counters since this process started; lag percentiles over the last 5 minutes.
    pub stats: StatsSnapshot,
    /// Journal, dead-letter and per-destination queue figures from the store.
    pub store: StoreStats,
    /// Names of the paused flows.
    pub paused_flows: Vec<String>,
}

/// The hub at a glance.
#[utoipa::path(
    get,
    path = "/api/v1/overview",
    tag = "overview",
    responses(
        (status = 200, body = Overview),
        (status = 401, body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn show(State(s): State<AppState>) -> Result<Json<Overview>, ApiError> {
    let now = s.engine.now();
    let store = s.engine.store().stats().await?;
    let paused_flows = s
        .engine
        .flows()
        .await?
        .into_iter()
        .filter(|f| f.paused)
        .map(|f| f.name)
        .collect();
    Ok(Json(Overview {
        now,
        stats: s.engine.stats(Some(now - 5 * 60_000)),
        store,
        paused_flows,
    }))
}

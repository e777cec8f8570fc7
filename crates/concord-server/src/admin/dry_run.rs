//! `GET /api/v1/dry-run` (viewer): whether this hub is a dry run (`concord run --dry-run`) and
//! what it would write — every queued item: destination, kind, op, key, payload, and where the
//! destination can be listed its current record and the fields the write would change.
//! Read-only; must never deliver or drop an item.

use super::{limit, parse_query, ErrorBody};
use crate::{ApiError, AppState};
use axum::extract::{RawQuery, State};
use axum::Json;
use concord_engine::runtime::dry_run::PlannedWrite;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Listing options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PlannedParams {
    /// Most planned writes returned, 1-1000 (default 1000), oldest first. Each call reads the
    /// destinations' listings to show what would change.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// What a dry run would write.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DryRun {
    /// True when this hub runs with `--dry-run` (nothing is written to any endpoint).
    pub dry_run: bool,
    /// Queued writes (pending or waiting for dependencies), oldest first, each with the
    /// destination's current record and the fields it would change where the destination can
    /// be listed. On a hub that is not a dry run these are the writes not delivered yet.
    pub planned: Vec<PlannedWrite>,
}

/// The writes a dry run planned.
#[utoipa::path(
    get,
    path = "/api/v1/dry-run",
    tag = "dry run",
    params(PlannedParams),
    responses(
        (status = 200, body = DryRun),
        (status = 400, description = "A bad parameter (named)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn planned(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<DryRun>, ApiError> {
    let p: PlannedParams = parse_query(q.as_deref())?;
    let planned = s.engine.planned_differences(limit(p.limit, 1000)?).await?;
    Ok(Json(DryRun {
        dry_run: s.engine.is_dry_run(),
        planned,
    }))
}

//! Drift reconciliation (issue 16): `GET /api/v1/reconcile` (the stored runs, newest first,
//! with their counts), `GET /api/v1/reconcile/{id}` (one run with every drifted key and its
//! differences, and what was healed), and `POST /api/v1/reconcile` (operator, audited): run
//! one now (`{"flows": [...], "heal": bool}`, both optional) and answer its report. Must never
//! run one for a viewer nor without an audit record, and never call a connector itself (the
//! engine reads the destinations: `Engine::reconcile`).

use super::{audit, limit, not_found, parse_query, ErrorBody};
use crate::access::Operator;
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use concord_engine::runtime::reconcile::ReconcileRun;
use concord_store::StoredReconcileRun;
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// Listing options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    /// Most runs returned, 1-1000 (default 50), newest first.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Stored reconciliation runs, newest first (their reports are `null` here).
#[utoipa::path(
    get,
    path = "/api/v1/reconcile",
    tag = "reconcile",
    params(RunParams),
    responses(
        (status = 200, body = Vec<StoredReconcileRun>),
        (status = 400, description = "A bad parameter (named)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn list(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<StoredReconcileRun>>, ApiError> {
    let p: RunParams = parse_query(q.as_deref())?;
    Ok(Json(s.engine.reconcile_runs(limit(p.limit, 50)?).await?))
}

/// One run with its report: per flow and destination the counts, every drifted key with its
/// differences, the keys in flight and what was healed.
#[utoipa::path(
    get,
    path = "/api/v1/reconcile/{id}",
    tag = "reconcile",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, body = StoredReconcileRun),
        (status = 400, description = "Not an id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StoredReconcileRun>, ApiError> {
    let id = super::path_id(&id)?;
    s.engine
        .reconcile_run(id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(format!("run: no reconciliation run {id}")))
}

/// What to reconcile now.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// Flow names (every flow when absent or empty).
    #[serde(default)]
    pub flows: Vec<String>,
    /// Plan one corrective write per drifted key (never a delete). Default `false`.
    #[serde(default)]
    pub heal: bool,
}

/// Run a reconciliation now (operator; audited) and answer its report. It reads every
/// destination of the flows named, so it can take a while on a large catalogue.
#[utoipa::path(
    post,
    path = "/api/v1/reconcile",
    tag = "reconcile",
    request_body = RunBody,
    responses(
        (status = 200, body = ReconcileRun),
        (status = 400, description = "Bad body (field named)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Needs role operator", body = ErrorBody),
        (status = 404, description = "No flow has this name", body = ErrorBody),
    )
)]
pub async fn run(
    State(s): State<AppState>,
    op: Operator,
    body: Bytes,
) -> Result<Json<ReconcileRun>, ApiError> {
    let req: RunBody = if body.is_empty() {
        RunBody::default()
    } else {
        crate::input::parse_json(&body)?
    };
    let result = s.engine.reconcile(&req.flows, req.heal, "api").await;
    let outcome = match &result {
        Ok(r) => json!({"ok": true, "run": r.id, "drifted": r.drifted(),
                        "healed": r.results.iter().map(|x| x.healed.len()).sum::<usize>()}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    audit(
        &s,
        &op.0,
        "reconcile.run",
        json!({"flows": req.flows, "heal": req.heal}),
        outcome,
    )
    .await;
    Ok(Json(result?))
}

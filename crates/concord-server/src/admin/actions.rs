//! Operator actions on flows — `POST /api/v1/flows/{name}/pause`, `/resume`, `/run` — and the
//! audit trail they are written to (`GET /api/v1/audit`). Pausing holds the flow's deliveries
//! (capture and planning go on; see `concord_engine::runtime::flows`); it survives a restart.
//! Running now starts a batch flow's read at once (409 for other modes). Must never act for a
//! viewer (the [`Operator`] extractor) nor act without recording it in the audit trail.

use super::{audit, json, parse_query, ErrorBody};
use crate::access::Operator;
use crate::{ApiError, AppState};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use concord_store::StoredAudit;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// The state of a flow after pause / resume.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PauseResult {
    pub flow: String,
    pub paused: bool,
    /// False when the flow already was in that state.
    pub changed: bool,
}

/// A run started.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunResult {
    pub flow: String,
    /// Always true: the run happens in the background; see the flow's `last_run`.
    pub started: bool,
}

async fn set_paused(
    s: &AppState,
    op: &Operator,
    name: &str,
    paused: bool,
) -> Result<Json<PauseResult>, ApiError> {
    let action = if paused { "flow.pause" } else { "flow.resume" };
    let result = s.engine.set_flow_paused(name, paused).await;
    let outcome = match &result {
        Ok(changed) => json!({"ok": true, "changed": changed}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    audit(s, &op.0, action, json!({"flow": name}), outcome).await;
    let changed = result?;
    Ok(Json(PauseResult {
        flow: name.to_string(),
        paused,
        changed,
    }))
}

/// Pause a flow: its deliveries are held until resumed (operator).
#[utoipa::path(
    post,
    path = "/api/v1/flows/{name}/pause",
    tag = "actions",
    params(("name" = String, Path, description = "Flow name")),
    responses(
        (status = 200, body = PauseResult),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Needs role operator", body = ErrorBody),
        (status = 404, description = "No flow has this name", body = ErrorBody),
    )
)]
pub async fn pause(
    State(s): State<AppState>,
    op: Operator,
    Path(name): Path<String>,
) -> Result<Json<PauseResult>, ApiError> {
    set_paused(&s, &op, &name, true).await
}

/// Resume a paused flow: its held deliveries go out (operator).
#[utoipa::path(
    post,
    path = "/api/v1/flows/{name}/resume",
    tag = "actions",
    params(("name" = String, Path, description = "Flow name")),
    responses(
        (status = 200, body = PauseResult),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Needs role operator", body = ErrorBody),
        (status = 404, description = "No flow has this name", body = ErrorBody),
    )
)]
pub async fn resume(
    State(s): State<AppState>,
    op: Operator,
    Path(name): Path<String>,
) -> Result<Json<PauseResult>, ApiError> {
    set_paused(&s, &op, &name, false).await
}

/// Run a batch flow now (operator); its schedule is unchanged.
#[utoipa::path(
    post,
    path = "/api/v1/flows/{name}/run",
    tag = "actions",
    params(("name" = String, Path, description = "Flow name")),
    responses(
        (status = 202, body = RunResult),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Needs role operator", body = ErrorBody),
        (status = 404, description = "No flow has this name", body = ErrorBody),
        (status = 409, description = "Not a batch flow", body = ErrorBody),
    )
)]
pub async fn run_now(
    State(s): State<AppState>,
    op: Operator,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let result = s.engine.run_flow_now(&name);
    let outcome = match &result {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    audit(&s, &op.0, "flow.run", json!({"flow": name}), outcome).await;
    result?;
    Ok(json(
        StatusCode::ACCEPTED,
        RunResult {
            flow: name,
            started: true,
        },
    ))
}

/// Audit-trail query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Most events returned, newest first (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The audit trail, newest first: operator actions (`admin.*`, with who, what, target,
/// result), conflicts, breaker transitions, dead-letter actions.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "actions",
    params(AuditQuery),
    responses(
        (status = 200, body = Vec<StoredAudit>),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn audit_log(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<StoredAudit>>, ApiError> {
    let q: AuditQuery = parse_query(q.as_deref())?;
    let limit = super::limit(q.limit, 100)?;
    Ok(Json(s.engine.store().audit_log(limit).await?))
}

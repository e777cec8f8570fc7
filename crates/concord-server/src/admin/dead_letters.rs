//! Dead letters: `GET /api/v1/dead-letters` (filters), `GET /api/v1/dead-letters/{id}` (payload
//! and reason), `POST /api/v1/dead-letters/replay` and `/drop` with `{"ids": [...]}` (one or
//! many; operator; audited). Replay re-plans outbound state kinds from the current state
//! (`Engine::replay_dead_letters`); drop keeps the letter for the audit trail. Must never act
//! for a viewer nor without an audit record, and never call a connector itself.

use super::{audit, limit, not_found, parse_query, ErrorBody};
use crate::access::Operator;
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use concord_core::Kind;
use concord_store::{DeadLetter, DeadLetterFilter, DeadLetterState};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// Dead-letter filters; all optional.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterParams {
    /// Destination (outbound) or source (inbound) endpoint.
    pub endpoint: Option<String>,
    pub kind: Option<Kind>,
    /// Default `open`.
    pub state: Option<DeadLetterState>,
    /// Canonical key (or external id for inbound letters not yet resolved).
    pub key: Option<String>,
    /// Most letters returned, newest first, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// List dead letters.
#[utoipa::path(
    get,
    path = "/api/v1/dead-letters",
    tag = "dead letters",
    params(DeadLetterParams),
    responses(
        (status = 200, body = Vec<DeadLetter>),
        (status = 400, description = "A bad parameter (named)", body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn list(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    let p: DeadLetterParams = parse_query(q.as_deref())?;
    let limit = limit(p.limit, 100)?;
    let list = s
        .engine
        .store()
        .dead_letters(DeadLetterFilter {
            endpoint: p.endpoint,
            kind: p.kind,
            state: p.state,
            key: p.key,
            limit: Some(limit),
        })
        .await?;
    Ok(Json(list))
}

/// One dead letter: payload, reason, attempts.
#[utoipa::path(
    get,
    path = "/api/v1/dead-letters/{id}",
    tag = "dead letters",
    params(("id" = i64, Path, description = "Dead-letter id")),
    responses(
        (status = 200, body = DeadLetter),
        (status = 400, description = "Not an id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeadLetter>, ApiError> {
    let id = super::path_id(&id)?;
    s.engine
        .store()
        .dead_letter(id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(format!("id: no dead letter {id}")))
}

/// Which dead letters to act on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdsBody {
    /// Dead-letter ids, 1-1000 of them.
    #[schema(min_items = 1, max_items = 1000)]
    pub ids: Vec<i64>,
}

/// What an action did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActionResult {
    /// The ids asked for.
    pub requested: Vec<i64>,
    /// The ids acted on.
    pub done: Vec<i64>,
    /// The ids not acted on: unknown, or not open any more.
    pub skipped: Vec<i64>,
}

fn ids(body: &[u8]) -> Result<Vec<i64>, ApiError> {
    let b: IdsBody = crate::parse_json_body(body)?;
    if b.ids.is_empty() {
        return Err(ApiError::invalid_field(
            "ids",
            "give at least one dead-letter id",
        ));
    }
    if b.ids.len() > 1000 {
        return Err(ApiError::invalid_field(
            "ids",
            format!("at most 1000 per request, got {}", b.ids.len()),
        ));
    }
    let mut ids = b.ids;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

fn result(requested: Vec<i64>, done: Vec<i64>) -> ActionResult {
    let skipped = requested
        .iter()
        .copied()
        .filter(|id| !done.contains(id))
        .collect();
    ActionResult {
        requested,
        done,
        skipped,
    }
}

/// Replay dead letters (operator).
#[utoipa::path(
    post,
    path = "/api/v1/dead-letters/replay",
    tag = "dead letters",
    request_body = IdsBody,
    responses(
        (status = 200, body = ActionResult),
        (status = 400, description = "Bad body (field named)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Needs role operator", body = ErrorBody),
    )
)]
pub async fn replay(
    State(s): State<AppState>,
    op: Operator,
    body: Bytes,
) -> Result<Json<ActionResult>, ApiError> {
    act(&s, &op, &body, "dlq.replay", "replayed", |ids| {
        s.engine.replay_dead_letters(ids)
    })
    .await
}

/// Drop dead letters (operator); they stay listed with state `dropped`.
#[utoipa::path(
    post,
    path = "/api/v1/dead-letters/drop",
    tag = "dead letters",
    request_body = IdsBody,
    responses(
        (status = 200, body = ActionResult),
        (status = 400, description = "Bad body (field named)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Needs role operator", body = ErrorBody),
    )
)]
pub async fn drop_letters(
    State(s): State<AppState>,
    op: Operator,
    body: Bytes,
) -> Result<Json<ActionResult>, ApiError> {
    act(&s, &op, &body, "dlq.drop", "dropped", |ids| {
        s.engine.drop_dead_letters(ids)
    })
    .await
}

/// An operator action on the dead letters of `body`: run it, record it in the audit trail
/// (`done_as`: the name of the acted-on ids in the audit result) whether it worked or not, and
/// answer what was done and skipped.
async fn act<F, Fut>(
    s: &AppState,
    op: &Operator,
    body: &[u8],
    action: &str,
    done_as: &str,
    run: F,
) -> Result<Json<ActionResult>, ApiError>
where
    F: FnOnce(Vec<i64>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<i64>, concord_engine::EngineError>>,
{
    let ids = ids(body)?;
    let outcome = run(ids.clone()).await;
    let detail = match &outcome {
        Ok(done) => json!({"ok": true, done_as: done}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    audit(s, &op.0, action, json!({"dead_letters": ids}), detail).await;
    Ok(Json(result(ids, outcome?)))
}

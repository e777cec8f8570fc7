//! `GET /api/v1/journal` (search by kind, key, endpoint, status, time range; paged by id) and
//! `GET /api/v1/journal/{id}`. Read-only: must never change an entry or its status.

use super::{limit, not_found, parse_query, ErrorBody};
use crate::{ApiError, AppState};
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use concord_core::Kind;
use concord_store::{JournalEntry, JournalQuery, JournalStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Journal search parameters; all optional.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JournalParams {
    /// Source endpoint.
    pub endpoint: Option<String>,
    pub kind: Option<Kind>,
    /// Canonical key (`SKU-1`, `shop_a/1001`, an e-mail, …).
    pub key: Option<String>,
    pub status: Option<JournalStatus>,
    /// Received at or after (milliseconds since the Unix epoch).
    pub from: Option<i64>,
    /// Received before (milliseconds since the Unix epoch).
    pub to: Option<i64>,
    /// Paging: entries older than this id (the `next_before_id` of the previous page).
    pub before_id: Option<i64>,
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A page of journal entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JournalPage {
    pub entries: Vec<JournalEntry>,
    /// Pass as `before_id` for the next page; absent on the last page.
    pub next_before_id: Option<i64>,
}

/// Search the journal.
#[utoipa::path(
    get,
    path = "/api/v1/journal",
    tag = "journal",
    params(JournalParams),
    responses(
        (status = 200, body = JournalPage),
        (status = 400, description = "A bad parameter (named)", body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn search(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<JournalPage>, ApiError> {
    let p: JournalParams = parse_query(q.as_deref())?;
    let limit = limit(p.limit, 100)?;
    if let (Some(from), Some(to)) = (p.from, p.to) {
        if from > to {
            return Err(ApiError::invalid_field(
                "from",
                format!("{from} is after to ({to}); expected from <= to"),
            ));
        }
    }
    let entries = s
        .engine
        .store()
        .search_journal(JournalQuery {
            endpoint: p.endpoint,
            kind: p.kind,
            key: p.key,
            status: p.status,
            from: p.from,
            to: p.to,
            before_id: p.before_id,
            limit,
        })
        .await?;
    let next_before_id = if entries.len() == limit {
        entries.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(JournalPage {
        entries,
        next_before_id,
    }))
}

/// One journal entry with its payload.
#[utoipa::path(
    get,
    path = "/api/v1/journal/{id}",
    tag = "journal",
    params(("id" = i64, Path, description = "Journal entry id")),
    responses(
        (status = 200, body = JournalEntry),
        (status = 400, description = "Not an id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JournalEntry>, ApiError> {
    let id = super::path_id(&id)?;
    s.engine
        .store()
        .journal_entry(id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(format!("id: no journal entry {id}")))
}

//! Capture: getting changes into the journal.
//!
//! - Webhooks: verified and parsed by the connector, mapped (`map_in`) and validated here, then
//!   journaled; the caller is answered only after the commit. A request with any invalid record
//!   stores nothing and is refused with every bad record named (the sender can fix and resend).
//! - Delta polling: per (source endpoint, kind) a poller reads pages after the durable cursor
//!   (with overlap on the first page of each cycle) and stores each page's records *and* its
//!   cursor in one transaction, so the cursor never passes an unstored change. Invalid polled
//!   records are journaled as rejected and dead-lettered; they never block the others.
//! - Batch: on a cron schedule, a full listing is captured; unchanged records are dropped by the
//!   journal's dedupe and by the merge.
//! - Migration: a full listing once, resumable: its page token is a durable cursor, and the
//!   cursor value `done` ends it for good.
//!
//! Must never acknowledge, or move a cursor, before the store has committed.

use super::{CaptureError, Inner, WebhookAck};
use crate::config::Mode;
use crate::connector::{Captured, ReadRequest};
use concord_core::{content_hash, validate, Kind, Millis};
use concord_store::{Capture, CursorUpdate, IngestOutcome};
use futures::FutureExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// Why a record was not captured.
#[derive(Debug)]
pub(crate) struct Refused {
    /// Names the record and what is wrong with it.
    pub reason: String,
    /// Its inbound mapping ran over the jq budget (or its input was too large for it).
    pub over_budget: bool,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl From<String> for Refused {
    fn from(reason: String) -> Self {
        Refused {
            reason,
            over_budget: false,
        }
    }
}

/// Map (when the endpoint's flows for this kind have an inbound mapping) and validate one
/// record. Returns the capture or why it is invalid (a mapping over its budget is invalid
/// too: the sender is told, and a polled record is dead-lettered).
pub(crate) async fn to_capture(
    inner: &Inner,
    endpoint: &str,
    c: Captured,
    now: Millis,
) -> Result<Capture, Refused> {
    // The record's id and version are identifiers like any other (concord_core::limits): they
    // become journal keys, log fields and the version order's input.
    concord_core::limits::key("id", &c.external_id).map_err(|e| {
        format!(
            "{} {} from `{endpoint}`: {e}",
            c.kind,
            concord_core::limits::excerpt(&c.external_id)
        )
    })?;
    let who = format!("{} `{}` from `{endpoint}`", c.kind, c.external_id);
    if let Some(v) = &c.version {
        concord_core::limits::key("version", v).map_err(|e| format!("{who}: {e}"))?;
    }
    let map_in = inner
        .config
        .flows_for(c.kind, endpoint)
        .find_map(|f| f.map_in.as_ref());
    let record = match map_in {
        Some(m) => {
            let vars = crate::mapping::MapVars {
                dest: String::new(),
                source: endpoint.to_string(),
                kind: c.kind.as_str().to_string(),
            };
            m.apply(&c.record, &vars).await.map_err(|e| Refused {
                over_budget: matches!(e, crate::mapping::MappingError::Budget { .. }),
                reason: format!("{who}: inbound mapping failed: {e}"),
            })?
        }
        None => c.record.clone(),
    };
    let payload = validate(c.kind, &record).map_err(|e| format!("{who}: {e}"))?;
    let version = c.version.unwrap_or_else(|| content_hash(&payload));
    Ok(Capture {
        endpoint: endpoint.to_string(),
        kind: c.kind,
        external_id: c.external_id,
        version,
        payload,
        received_at: now,
        rejected: None,
    })
}

/// Like [`to_capture`], but an invalid record becomes a rejected capture (journaled and
/// dead-lettered) instead of an error: polled data must never block the feed.
async fn to_capture_or_reject(inner: &Inner, endpoint: &str, c: Captured, now: Millis) -> Capture {
    let raw = c.clone();
    match to_capture(inner, endpoint, c, now).await {
        Ok(cap) => cap,
        Err(reason) => Capture {
            endpoint: endpoint.to_string(),
            kind: raw.kind,
            external_id: raw.external_id,
            version: raw.version.unwrap_or_else(|| content_hash(&raw.record)),
            payload: raw.record,
            received_at: now,
            rejected: Some(reason.reason),
        },
    }
}

pub(crate) async fn webhook(
    inner: &Arc<Inner>,
    endpoint: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<WebhookAck, CaptureError> {
    let connector = inner
        .connectors
        .get(endpoint)
        .ok_or_else(|| CaptureError::UnknownEndpoint(endpoint.to_string()))?;
    let records = connector.parse_webhook(headers, body).await?;
    let now = inner.now();
    let mut ack = WebhookAck::default();
    let mut captures = Vec::with_capacity(records.len());
    let mut errors = Vec::new();
    let count = records.len();
    for (i, c) in records.into_iter().enumerate() {
        if inner.config.flows_for(c.kind, endpoint).next().is_none() {
            ack.ignored += 1;
            continue;
        }
        match to_capture(inner, endpoint, c, now).await {
            Ok(cap) => captures.push(cap),
            Err(refused) => {
                errors.push(format!("events[{i}]: {refused}"));
                // The request is refused anyway: mapping the rest could cost a budget each.
                if refused.over_budget && i + 1 < count {
                    errors.push(format!(
                        "events[{}..{count}]: not checked (the request is refused)",
                        i + 1
                    ));
                    break;
                }
            }
        }
    }
    if !errors.is_empty() {
        super::Stats::add(&inner.stats.rejected, errors.len() as u64);
        return Err(CaptureError::Invalid(errors));
    }
    if captures.is_empty() {
        return Ok(ack);
    }
    let kinds: Vec<Kind> = captures.iter().map(|c| c.kind).collect();
    let outcomes = inner.store.ingest(captures, None).await?;
    for (o, kind) in outcomes.iter().zip(kinds) {
        match o {
            IngestOutcome::Stored(_) => {
                ack.stored += 1;
                metrics::counter!("concord_captured_total", "endpoint" => endpoint.to_string(), "kind" => kind.as_str()).increment(1);
            }
            IngestOutcome::Duplicate => ack.duplicates += 1,
        }
    }
    super::Stats::add(&inner.stats.captured, ack.stored as u64);
    super::Stats::add(&inner.stats.duplicates, ack.duplicates as u64);
    inner.journal_notify.notify_one();
    Ok(ack)
}

/// What one reader task does.
#[derive(Debug, Clone)]
enum ReadJob {
    Poll { interval: Duration },
    Batch { schedule: Box<cron::Schedule> },
    Migration,
}

/// Spawn pollers, batch schedulers and migrations for every flow source. Several flows polling
/// the same (endpoint, kind) share one poller at the shortest interval.
pub(crate) fn spawn_readers(inner: &Arc<Inner>, tasks: &mut JoinSet<()>) {
    let mut polls: BTreeMap<(String, Kind), (Duration, Duration, usize)> = BTreeMap::new();
    for flow in &inner.config.flows {
        for src in &flow.from {
            let job = match &flow.mode {
                Mode::Realtime { poll: Some(p) } => ReadJob::Poll { interval: *p },
                Mode::Realtime { poll: None } => continue,
                Mode::Delta { interval } => ReadJob::Poll {
                    interval: *interval,
                },
                Mode::Batch { schedule, .. } => ReadJob::Batch {
                    schedule: schedule.clone(),
                },
                Mode::Migration => ReadJob::Migration,
            };
            match job {
                ReadJob::Poll { interval } => {
                    let e = polls.entry((src.clone(), flow.kind)).or_insert((
                        interval,
                        flow.overlap,
                        flow.page_size,
                    ));
                    e.0 = e.0.min(interval);
                }
                other => {
                    let i = inner.clone();
                    let (src, kind, page) = (src.clone(), flow.kind, flow.page_size);
                    let flow = flow.name.clone();
                    let task = match &other {
                        ReadJob::Batch { .. } => format!("batch:{flow}:{src}"),
                        _ => format!("migration:{flow}:{src}"),
                    };
                    super::supervise::spawn(inner, tasks, task, move || {
                        let (i, src, flow) = (i.clone(), src.clone(), flow.clone());
                        match &other {
                            ReadJob::Batch { schedule } => {
                                batch_loop(i, src, kind, page, (**schedule).clone(), flow).boxed()
                            }
                            _ => migrate(i, src, kind, page, flow).boxed(),
                        }
                    });
                }
            }
        }
    }
    for ((src, kind), (interval, overlap, page)) in polls {
        let i = inner.clone();
        super::supervise::spawn(inner, tasks, format!("poll:{src}:{kind}"), move || {
            poll_loop(i.clone(), src.clone(), kind, interval, overlap, page).boxed()
        });
    }
}

/// Sleep `d`, or less if the engine starts shutting down; true when it is.
pub(crate) async fn sleep_or_shutdown(inner: &Inner, d: Duration) -> bool {
    let mut shutdown = inner.shutdown.subscribe();
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.changed() => true,
    }
}

async fn poll_loop(
    inner: Arc<Inner>,
    src: String,
    kind: Kind,
    interval: Duration,
    overlap: Duration,
    page: usize,
) {
    let stream = kind.as_str().to_string();
    // The polling flows this poller reads for (their `last_run` is this poller's).
    let flows: Vec<Arc<super::flows::FlowState>> = inner
        .config
        .flows_for(kind, &src)
        .filter(|f| {
            matches!(
                f.mode,
                Mode::Delta { .. } | Mode::Realtime { poll: Some(_) }
            )
        })
        .filter_map(|f| inner.flows.get(&f.name).cloned())
        .collect();
    loop {
        let started_at = inner.now();
        let result = poll_once(&inner, &src, kind, &stream, overlap, page).await;
        if let Err(e) = &result {
            super::Stats::add(&inner.stats.poll_errors, 1);
            tracing::warn!(endpoint = %src, %kind, error = %e, "poll failed; cursor unchanged, will retry");
        }
        let run = super::flows::FlowRun {
            started_at,
            finished_at: inner.now(),
            stored: *result.as_ref().unwrap_or(&0),
            error: result.err(),
            trigger: "poll".into(),
        };
        for f in &flows {
            f.set_last_run(run.clone());
        }
        if sleep_or_shutdown(&inner, interval).await {
            return;
        }
    }
}

/// One poll cycle: pages until the feed says there is no more. Public to the crate for tests.
pub(crate) async fn poll_once(
    inner: &Inner,
    src: &str,
    kind: Kind,
    stream: &str,
    overlap: Duration,
    page_size: usize,
) -> Result<usize, String> {
    let connector = inner
        .connectors
        .get(src)
        .ok_or_else(|| format!("no connector for `{src}`"))?;
    let mut first = true;
    let mut total = 0;
    loop {
        let cursor = inner
            .store
            .cursor(src, stream)
            .await
            .map_err(|e| e.to_string())?;
        let req = ReadRequest {
            kind,
            cursor: cursor.as_deref(),
            limit: page_size,
            overlap: if first { overlap } else { Duration::ZERO },
        };
        super::Stats::add(&inner.stats.api_calls, 1);
        metrics::counter!("concord_api_calls_total", "endpoint" => src.to_string(), "op" => "read")
            .increment(1);
        let page = connector.read_changes(req).await.map_err(|e| {
            if let crate::connector::DeliveryError::RateLimited { .. } = e {
                metrics::counter!("concord_rate_limited_total", "endpoint" => src.to_string())
                    .increment(1);
            }
            e.to_string()
        })?;
        let n = page.records.len();
        // An empty page that moved the cursor (every record of it filtered out by the
        // connector) is not the end: the next page is read in this cycle. One that did not move
        // it ends the cycle whatever `more` says (a feed that answers "more" without moving
        // would loop forever).
        let moved = page.cursor.is_some() && page.cursor.as_deref() != cursor.as_deref();
        total += store_page(
            inner,
            src,
            page.records,
            page.cursor.map(|value| CursorUpdate {
                endpoint: src.to_string(),
                stream: stream.to_string(),
                value,
            }),
        )
        .await?;
        if !page.more || (n == 0 && !moved) {
            return Ok(total);
        }
        first = false;
    }
}

pub(crate) async fn store_page(
    inner: &Inner,
    src: &str,
    records: Vec<Captured>,
    cursor: Option<CursorUpdate>,
) -> Result<usize, String> {
    let now = inner.now();
    // At shutdown the page is dropped before anything is stored (the cursor stays).
    let mapped = inner.unless_shutdown(async {
        let mut captures: Vec<Capture> = Vec::with_capacity(records.len());
        for c in records {
            captures.push(to_capture_or_reject(inner, src, c, now).await);
        }
        captures
    });
    let Some(captures) = mapped.await else {
        return Err("the engine is shutting down; the page will be read again".into());
    };
    let rejected = captures.iter().filter(|c| c.rejected.is_some()).count() as u64;
    for c in captures.iter().filter(|c| c.rejected.is_some()) {
        tracing::warn!(endpoint = %src, reason = c.rejected.as_deref().unwrap_or(""), "record rejected and dead-lettered");
    }
    if captures.is_empty() && cursor.is_none() {
        return Ok(0);
    }
    let outcomes = inner
        .store
        .ingest(captures, cursor)
        .await
        .map_err(|e| e.to_string())?;
    let stored = outcomes
        .iter()
        .filter(|o| matches!(o, IngestOutcome::Stored(_)))
        .count();
    super::Stats::add(
        &inner.stats.captured,
        stored as u64 - rejected.min(stored as u64),
    );
    super::Stats::add(&inner.stats.rejected, rejected);
    super::Stats::add(&inner.stats.duplicates, (outcomes.len() - stored) as u64);
    if stored > 0 {
        inner.journal_notify.notify_one();
    }
    Ok(stored)
}

/// Read a full listing, page by page; `resume` is where a previous run stopped.
async fn snapshot(
    inner: &Inner,
    src: &str,
    kind: Kind,
    page_size: usize,
    durable_stream: Option<&str>,
) -> Result<usize, String> {
    let connector = inner
        .connectors
        .get(src)
        .ok_or_else(|| format!("no connector for `{src}`"))?;
    // An empty value is a forgotten migration (`concord backfill --restart`): from the start.
    let mut token: Option<String> = match durable_stream {
        Some(s) => inner
            .store
            .cursor(src, s)
            .await
            .map_err(|e| e.to_string())?
            .filter(|v| !v.is_empty()),
        None => None,
    };
    let mut total = 0;
    loop {
        super::Stats::add(&inner.stats.api_calls, 1);
        let page = connector
            .read_snapshot(ReadRequest {
                kind,
                cursor: token.as_deref(),
                limit: page_size,
                overlap: Duration::ZERO,
            })
            .await
            .map_err(|e| e.to_string())?;
        let n = page.records.len();
        // Like a poll cycle: an empty page that moved the token is not the end of the listing.
        let moved = page.cursor.is_some() && page.cursor != token;
        let done = !page.more || (n == 0 && !moved);
        let next = if done {
            Some("done".to_string())
        } else {
            page.cursor.clone()
        };
        let cursor = durable_stream.and_then(|s| {
            next.clone().map(|value| CursorUpdate {
                endpoint: src.to_string(),
                stream: s.to_string(),
                value,
            })
        });
        total += store_page(inner, src, page.records, cursor).await?;
        if done {
            return Ok(total);
        }
        token = page.cursor;
        if inner.is_shutting_down() {
            return Ok(total);
        }
    }
}

async fn batch_loop(
    inner: Arc<Inner>,
    src: String,
    kind: Kind,
    page: usize,
    schedule: cron::Schedule,
    flow: String,
) {
    let state = inner.flows.get(&flow).cloned().unwrap_or_default();
    let mut run_now = state.run_now.subscribe();
    run_now.mark_unchanged();
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let next = schedule.upcoming(chrono::Utc).next();
        if next.is_none() {
            tracing::warn!(%flow, "schedule has no future run; only `run now` starts one");
        }
        let wait = next
            .and_then(|n| (n - chrono::Utc::now()).to_std().ok())
            .unwrap_or(Duration::from_secs(86_400));
        // A run-now request (admin API) starts a run at once; the schedule is unchanged.
        let trigger = tokio::select! {
            _ = tokio::time::sleep(wait) => if next.is_some() { "schedule" } else { continue },
            r = run_now.changed() => match r {
                Ok(()) => "manual",
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let started_at = inner.now();
        let result = snapshot(&inner, &src, kind, page, None).await;
        match &result {
            Ok(n) => {
                tracing::info!(%flow, endpoint = %src, %kind, stored = n, trigger, "batch run finished")
            }
            Err(e) => {
                super::Stats::add(&inner.stats.poll_errors, 1);
                tracing::warn!(%flow, endpoint = %src, error = %e, "batch run failed; next run on schedule");
            }
        }
        state.set_last_run(super::flows::FlowRun {
            started_at,
            finished_at: inner.now(),
            stored: *result.as_ref().unwrap_or(&0),
            error: result.err(),
            trigger: trigger.into(),
        });
    }
}

/// The durable cursor stream of flow `flow`'s migration of `kind` records.
pub(crate) fn migration_stream(kind: Kind, flow: &str) -> String {
    format!("{}:migration:{flow}", kind.as_str())
}

pub(crate) async fn migrate(inner: Arc<Inner>, src: String, kind: Kind, page: usize, flow: String) {
    let stream = migration_stream(kind, &flow);
    let mut delay = Duration::from_secs(1);
    let state = inner.flows.get(&flow).cloned().unwrap_or_default();
    loop {
        let started_at = inner.now();
        let run = |stored: usize, error: Option<String>| super::flows::FlowRun {
            started_at,
            finished_at: inner.now(),
            stored,
            error,
            trigger: "migration".into(),
        };
        match inner.store.cursor(&src, &stream).await {
            Ok(Some(v)) if v == "done" => return,
            Ok(_) => {}
            Err(e) => tracing::warn!(%flow, error = %e, "cannot read migration cursor"),
        }
        match snapshot(&inner, &src, kind, page, Some(&stream)).await {
            Ok(n) => {
                tracing::info!(%flow, endpoint = %src, %kind, stored = n, "migration finished");
                state.set_last_run(run(n, None));
                return;
            }
            Err(e) => {
                tracing::warn!(%flow, error = %e, "migration interrupted; resuming from its cursor");
                state.set_last_run(run(0, Some(e.clone())));
                if sleep_or_shutdown(&inner, delay).await {
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    }
}

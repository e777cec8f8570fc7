//! Delivery: one dispatcher per destination endpoint.
//!
//! The dispatcher claims due outbox items (the store guarantees at most one in flight per key and
//! no overtaking within a key), groups them into batches of one kind and op up to the
//! connector's bulk size, and writes them under three limits: the circuit breaker (closed → open
//! → one half-open probe), a token bucket when the API publishes a request budget, and adaptive
//! concurrency (AIMD, Vector's way) under it. Outcomes are settled in the store: delivered
//! (xref + written hash), retry (full-jitter backoff, or the server's Retry-After), dead letter
//! (permanent errors, or too many attempts), or — for an order's `amend` the connector cannot
//! apply ([`WriteOutcome::CannotAmend`]) — the `[orders] edits` fallback (cancel-and-replace or
//! a dead letter), planned by the store in the settlement's own transaction.
//!
//! Architecture invariant: connectors only classify; all waiting, retrying and breaking happens
//! here, once, for every connector.
//!
//! `endpoint.rs` keeps each destination's delivery state (breaker, pacing, in-flight count,
//! health), `limits.rs` the pacing controls; this module is the dispatcher loop and the
//! settlement of outcomes.
//!
//! Must never let a connector's panic stop the dispatcher (a write that panics is a transient
//! failure of its batch), nor keep an item past its claim without settling it: an outcome is
//! settled, or the lease runs out and the item is claimed again.

mod endpoint;
mod limits;

use super::Inner;
use crate::config::EditPolicy;
use crate::connector::{DeliveryError, WriteOp, WriteOutcome};
use concord_core::retry::Admit;
use concord_core::{dependencies, Kind, Millis};
use concord_store::{AuditEvent, Claimed, EditFallback, Settlement};
use endpoint::InFlight;
use futures::FutureExt;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Kept at this path: the runtime builds one per destination (`runtime/mod.rs`).
pub(crate) use endpoint::EndpointRuntime;

/// The dispatcher loop of one destination.
pub(crate) async fn run(inner: Arc<Inner>, ep: Arc<EndpointRuntime>) {
    let mut shutdown = inner.shutdown.subscribe();
    let caps = ep.connector.capabilities();
    loop {
        if inner.is_shutting_down() {
            // Let in-flight writes settle before returning.
            while ep.inflight.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            return;
        }
        let notified = ep.notify.notified();
        let now = inner.now();
        let mut wait_until: Option<Millis> = None;
        let paused = ep.paused_until.load(Ordering::Relaxed);
        let slots = if paused > now {
            wait_until = Some(paused);
            0
        } else {
            let inflight = ep.inflight.load(Ordering::Acquire);
            let permits = ep.aimd.lock().map(|a| a.permits()).unwrap_or(1);
            if inflight >= permits {
                0
            } else {
                match ep.admit(now) {
                    Admit::Yes => permits - inflight,
                    Admit::Probe => usize::MAX, // marker: one probe
                    Admit::No { until } => {
                        wait_until = Some(until);
                        0
                    }
                }
            }
        };
        let mut claimed_any = false;
        if slots > 0 {
            let probe = slots == usize::MAX;
            let max_batch = Kind::ALL
                .iter()
                .map(|k| caps.kind(*k).write.max_batch)
                .max()
                .unwrap_or(1)
                .max(1);
            let limit = if probe { 1 } else { slots * max_batch };
            let lease_until = now + ep.lease.as_millis() as i64;
            match inner.store.claim(&ep.name, limit, now, lease_until).await {
                Ok(claimed) if !claimed.is_empty() => {
                    claimed_any = true;
                    for chunk in chunk(claimed, &caps, if probe { 1 } else { slots }) {
                        let guard = InFlight::start(&ep, probe);
                        let (inner, ep) = (inner.clone(), ep.clone());
                        tokio::spawn(async move {
                            deliver(&inner, &ep, chunk, probe).await;
                            guard.finished();
                        });
                    }
                }
                Ok(_) => {
                    if probe {
                        // Nothing to probe with: stay half-open until work arrives.
                        ep.release_probe();
                    }
                    if let Ok(Some(due)) = inner.store.next_due(&ep.name).await {
                        wait_until = Some(wait_until.map_or(due, |w| w.min(due)));
                    }
                }
                Err(e) => {
                    tracing::error!(endpoint = %ep.name, error = %e, "claim failed");
                    if probe {
                        ep.release_probe();
                    }
                    wait_until = Some(now + 1_000);
                }
            }
        }
        if claimed_any {
            continue;
        }
        let wait = wait_until
            .map(|t| Duration::from_millis((t - inner.now()).clamp(1, 1_000) as u64))
            .unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Group claimed items into write batches of one (kind, op), each at most the connector's bulk
/// size, spreading them over `slots` batches when the bulk size allows.
fn chunk(
    claimed: Vec<Claimed>,
    caps: &crate::connector::Capabilities,
    slots: usize,
) -> Vec<Vec<Claimed>> {
    let mut groups: BTreeMap<(Kind, String), Vec<Claimed>> = BTreeMap::new();
    for c in claimed {
        groups
            .entry((c.item.kind, c.item.op.clone()))
            .or_default()
            .push(c);
    }
    let mut out = Vec::new();
    for ((kind, _), items) in groups {
        let max = caps.kind(kind).write.max_batch.max(1);
        let per = items.len().div_ceil(slots.max(1)).clamp(1, max);
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            out.push(items.by_ref().take(per).collect());
        }
    }
    out
}

async fn deliver(inner: &Arc<Inner>, ep: &Arc<EndpointRuntime>, batch: Vec<Claimed>, probe: bool) {
    if let Some(bucket) = &ep.bucket {
        let wait = bucket.lock().map(|mut b| b.wait()).unwrap_or_default();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    let ops = write_ops(inner, &ep.name, &batch).await;
    let started = Instant::now();
    super::Stats::add(&inner.stats.api_calls, 1);
    super::Stats::add(&inner.stats.write_calls, 1);
    metrics::counter!("concord_api_calls_total", "endpoint" => ep.name.clone(), "op" => "write")
        .increment(1);
    let timeout = inner
        .config
        .endpoints
        .get(&ep.name)
        .map(|s| s.timeout)
        .unwrap_or(Duration::from_secs(30))
        + Duration::from_secs(5);
    // A connector that panics (a bug, or input it did not expect) fails this batch like a
    // transient error — retried with backoff, dead-lettered after `max_attempts` — instead of
    // taking the delivery task and its claimed items with it.
    let write = std::panic::AssertUnwindSafe(ep.connector.write(ops)).catch_unwind();
    let outcomes = match tokio::time::timeout(timeout, write).await {
        Ok(Ok(o)) if o.len() == batch.len() => o,
        Ok(Err(panic)) => {
            let reason = format!(
                "the connector panicked: {}",
                super::supervise::panic_message(panic.as_ref())
            );
            tracing::error!(endpoint = %ep.name, %reason, "write failed");
            vec![
                WriteOutcome::Failed(DeliveryError::Transient {
                    reason,
                    retry_after: None
                });
                batch.len()
            ]
        }
        Ok(Ok(o)) => {
            let reason = format!(
                "connector returned {} outcomes for {} items",
                o.len(),
                batch.len()
            );
            vec![
                WriteOutcome::Failed(DeliveryError::Transient {
                    reason,
                    retry_after: None
                });
                batch.len()
            ]
        }
        Err(_) => {
            let reason = format!("no answer within {timeout:?}");
            vec![
                WriteOutcome::Failed(DeliveryError::Transient {
                    reason,
                    retry_after: None
                });
                batch.len()
            ]
        }
    };
    let rtt_ms = started.elapsed().as_secs_f64() * 1000.0;
    let now = inner.now();
    let mut settlements = Vec::with_capacity(batch.len());
    let mut any_success = false;
    let mut endpoint_failure: Option<String> = None;
    let mut back_pressure = false;
    let mut audit = Vec::new();
    for (c, outcome) in batch.iter().zip(outcomes) {
        let item = &c.item;
        let labels = [
            ("endpoint", ep.name.clone()),
            ("kind", item.kind.as_str().to_string()),
        ];
        match outcome {
            WriteOutcome::Done {
                external_id,
                version,
            } => {
                any_success = true;
                let lag = (now - item.captured_at).max(0) as u64;
                inner.stats.record_lag(now, lag);
                super::Stats::add(&inner.stats.delivered, 1);
                if let Some(f) = inner.flows.get(&item.flow) {
                    f.record_delivered(now, 1, lag);
                }
                metrics::counter!("concord_deliveries_total", &labels).increment(1);
                metrics::histogram!("concord_lag_seconds", "flow" => item.flow.clone())
                    .record(lag as f64 / 1000.0);
                settlements.push(Settlement::Delivered {
                    id: item.id,
                    token: c.token,
                    external_id,
                    version,
                    at: now,
                });
            }
            WriteOutcome::NoMatch => {
                any_success = true;
                super::Stats::add(&inner.stats.skipped, 1);
                settlements.push(Settlement::Skipped {
                    id: item.id,
                    token: c.token,
                    reason: format!("no matching {} at `{}` (correlation syncs only records found on both sides)", item.kind, ep.name),
                    at: now,
                });
            }
            WriteOutcome::CannotAmend { reason }
                if item.kind == Kind::Order && item.op == "amend" =>
            {
                // The endpoint answered sensibly: this edit needs `[orders] edits`, decided in
                // the settlement's transaction (see `Settlement::AmendRefused`).
                any_success = true;
                let reason = format!("`{}` cannot amend this order: {reason}", ep.name);
                let fallback = match inner.config.orders.edits {
                    EditPolicy::CancelAndReplace => EditFallback::CancelAndReplace,
                    EditPolicy::Reject => {
                        super::Stats::add(&inner.stats.dead_lettered, 1);
                        metrics::counter!("concord_dead_letters_total", &labels).increment(1);
                        EditFallback::Reject
                    }
                };
                tracing::warn!(endpoint = %ep.name, key = %item.key, %reason, ?fallback, "amend refused; following [orders] edits");
                settlements.push(Settlement::AmendRefused {
                    id: item.id,
                    token: c.token,
                    reason,
                    fallback,
                    at: now,
                });
            }
            WriteOutcome::CannotAmend { reason } => {
                // Only an order's amend may be answered so: a broken connector, dead-lettered.
                any_success = true;
                let reason = format!(
                    "connector answered \"cannot amend\" to {} `{}` ({reason})",
                    item.kind, item.op
                );
                super::Stats::add(&inner.stats.dead_lettered, 1);
                metrics::counter!("concord_dead_letters_total", &labels).increment(1);
                settlements.push(Settlement::Dead {
                    id: item.id,
                    token: c.token,
                    reason,
                    at: now,
                });
            }
            WriteOutcome::Failed(err) => {
                let reason = err.to_string();
                if let Ok(mut last) = ep.last_error.lock() {
                    *last = Some(reason.clone());
                }
                match &err {
                    DeliveryError::Permanent { .. } => {
                        any_success = true; // the endpoint answered sensibly
                        super::Stats::add(&inner.stats.dead_lettered, 1);
                        metrics::counter!("concord_dead_letters_total", &labels).increment(1);
                        tracing::warn!(endpoint = %ep.name, kind = %item.kind, key = %item.key, %reason, "dead-lettered");
                        settlements.push(Settlement::Dead {
                            id: item.id,
                            token: c.token,
                            reason,
                            at: now,
                        });
                    }
                    DeliveryError::RateLimited { retry_after, .. } => {
                        back_pressure = true;
                        let wait = ep.retry_after_ms(*retry_after).unwrap_or(1_000);
                        let until = now.saturating_add(wait);
                        ep.paused_until.fetch_max(until, Ordering::Relaxed);
                        ep.rate_limited.fetch_add(1, Ordering::Relaxed);
                        super::Stats::add(&inner.stats.rate_limited, 1);
                        super::Stats::add(&inner.stats.retried, 1);
                        metrics::counter!("concord_rate_limited_total", "endpoint" => ep.name.clone()).increment(1);
                        metrics::counter!("concord_retries_total", &labels).increment(1);
                        settlements.push(Settlement::Retry {
                            id: item.id,
                            token: c.token,
                            next_at: until,
                            error: reason,
                            count: false,
                        });
                    }
                    DeliveryError::Transient { retry_after, .. }
                    | DeliveryError::Unavailable { retry_after, .. }
                    | DeliveryError::NotYet { retry_after, .. } => {
                        if matches!(err, DeliveryError::NotYet { .. }) {
                            // The endpoint answered sensibly; only this item must wait.
                            any_success = true;
                        } else {
                            back_pressure = true;
                            endpoint_failure = Some(reason.clone());
                        }
                        let attempts = item.attempts + 1;
                        if !probe && attempts >= ep.max_attempts {
                            let reason =
                                format!("gave up after {attempts} attempts; last error: {reason}");
                            super::Stats::add(&inner.stats.dead_lettered, 1);
                            metrics::counter!("concord_dead_letters_total", &labels).increment(1);
                            settlements.push(Settlement::Dead {
                                id: item.id,
                                token: c.token,
                                reason,
                                at: now,
                            });
                        } else {
                            super::Stats::add(&inner.stats.retried, 1);
                            metrics::counter!("concord_retries_total", &labels).increment(1);
                            let ra = ep
                                .retry_after_ms(*retry_after)
                                .map(|ms| u64::try_from(ms).unwrap_or(0));
                            let next_at =
                                ep.backoff
                                    .next_attempt_at(now, item.attempts, fastrand::f64(), ra);
                            settlements.push(Settlement::Retry {
                                id: item.id,
                                token: c.token,
                                next_at,
                                error: reason,
                                count: !probe,
                            });
                        }
                    }
                }
            }
        }
    }
    // Breaker and concurrency bookkeeping.
    let saturated =
        ep.inflight.load(Ordering::Acquire) >= ep.aimd.lock().map(|a| a.permits()).unwrap_or(1);
    if let Ok(mut a) = ep.aimd.lock() {
        a.on_response(rtt_ms, back_pressure, saturated);
    }
    if any_success {
        ep.last_success.store(now, Ordering::Relaxed);
        let closed = ep
            .breaker
            .lock()
            .map(|mut b| b.on_success())
            .unwrap_or(false);
        if closed {
            tracing::info!(endpoint = %ep.name, "circuit breaker closed: endpoint recovered");
            audit.push(breaker_event(now, &ep.name, "breaker.closed", None));
        }
    } else if let Some(reason) = endpoint_failure {
        let opened = ep
            .breaker
            .lock()
            .map(|mut b| b.on_failure(now))
            .unwrap_or(false);
        if opened {
            tracing::warn!(endpoint = %ep.name, %reason, "circuit breaker opened");
            audit.push(breaker_event(now, &ep.name, "breaker.opened", Some(reason)));
        }
    } else if probe {
        // The probe was only rate-limited (429): no verdict; probe again after the pause.
        ep.release_probe();
    }
    if let Err(e) = inner.store.settle(settlements).await {
        // The leases will expire and the items be delivered again (idempotent writes).
        tracing::error!(endpoint = %ep.name, error = %e, "settling deliveries failed");
    }
    if !audit.is_empty() {
        let _ = inner.store.record_audit(audit).await;
    }
}

fn breaker_event(at: Millis, endpoint: &str, event: &str, reason: Option<String>) -> AuditEvent {
    AuditEvent {
        at,
        event: event.into(),
        endpoint: Some(endpoint.to_string()),
        kind: None,
        key: None,
        detail: json!({ "reason": reason }),
    }
}

/// Build the connector's view of a batch's items: each item's external id and the external ids
/// of what it refers to at this destination. Read in three batched lookups whatever the batch
/// size; a failed lookup leaves the ids unknown (the connector then looks them up or creates).
async fn write_ops(inner: &Inner, dest: &str, batch: &[Claimed]) -> Vec<WriteOp> {
    let store = &inner.store;
    let at_dest: Vec<(String, Kind, String)> = batch
        .iter()
        .map(|c| (dest.to_string(), c.item.kind, c.item.key.clone()))
        .collect();
    let entity_keys: Vec<(Kind, String)> = batch
        .iter()
        .map(|c| (c.item.kind, c.item.key.clone()))
        .collect();
    let (externals, entities) =
        tokio::join!(store.xref_externals(&at_dest), store.entities(&entity_keys));
    let externals = externals.unwrap_or_else(|_| vec![None; batch.len()]);
    let entities = entities.unwrap_or_else(|_| vec![None; batch.len()]);
    // Dependencies of every item, looked up together.
    let deps: Vec<Vec<(Kind, String)>> = batch
        .iter()
        .zip(&entities)
        .map(|(c, e)| {
            e.as_ref()
                .map(|e| dependencies(c.item.kind, &e.state))
                .unwrap_or_default()
        })
        .collect();
    let mut dep_keys: Vec<(String, Kind, String)> = deps
        .iter()
        .flatten()
        .map(|(dk, dkey)| (dest.to_string(), *dk, dkey.clone()))
        .collect();
    dep_keys.sort();
    dep_keys.dedup();
    let dep_ext: BTreeMap<(Kind, String), String> = match store.xref_externals(&dep_keys).await {
        Ok(found) => dep_keys
            .into_iter()
            .zip(found)
            .filter_map(|((_, k, key), ext)| ext.map(|ext| ((k, key), ext)))
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    batch
        .iter()
        .zip(externals)
        .zip(deps)
        .map(|((c, external_id), deps)| {
            let item = &c.item;
            let mut refs = BTreeMap::new();
            for (dk, dkey) in deps {
                if let Some(ext) = dep_ext.get(&(dk, dkey.clone())) {
                    refs.insert(format!("{dk}:{dkey}"), ext.clone());
                }
            }
            WriteOp {
                item_id: item.id,
                kind: item.kind,
                key: item.key.clone(),
                op: item.op.clone(),
                payload: item.payload.clone(),
                external_id,
                refs,
            }
        })
        .collect()
}

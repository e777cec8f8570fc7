//! The webhook sender both emulators run: events are queued in seq order, batched (consecutive
//! events of one kind, one topic per POST, at most `batch`, no waiting when the queue is empty),
//! signed (`X-Sandbox-Signature`), and retried after 100 ms, 400 ms and 1.6 s before the batch is
//! dropped and counted — as real platforms do; the changes feed is the safety net.
//!
//! Must never: reorder events, or block the emulator (the queue is unbounded, the sender is a task).

use super::core::CounterSet;
use super::feed::Row;
use super::{sign, SIGNATURE_HEADER, TOPIC_HEADER};
use concord_core::Kind;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A change on its way to the webhook receiver.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub kind: Kind,
    pub row: Row,
}

/// Webhook settings common to both emulators.
#[derive(Debug, Clone)]
pub(crate) struct WebhookConfig {
    pub url: String,
    pub secret: Option<String>,
    pub kinds: Option<Vec<Kind>>,
    pub batch: usize,
}

/// Batches consecutive events of one kind (one topic per POST), up to `cfg.batch`, without
/// waiting for more when the queue is empty.
pub(crate) async fn webhook_sender(
    mut rx: mpsc::UnboundedReceiver<Event>,
    cfg: WebhookConfig,
    http: reqwest::Client,
    counters: Arc<CounterSet>,
) {
    let mut pending: Option<Event> = None;
    loop {
        let first = match pending.take() {
            Some(e) => e,
            None => match rx.recv().await {
                Some(e) => e,
                None => return,
            },
        };
        let kind = first.kind;
        let mut batch = vec![first.row];
        while batch.len() < cfg.batch.max(1) {
            match rx.try_recv() {
                Ok(e) if e.kind == kind => batch.push(e.row),
                Ok(e) => {
                    pending = Some(e);
                    break;
                }
                Err(_) => break,
            }
        }
        deliver(&http, &cfg, kind, batch, &counters).await;
    }
}

async fn deliver(
    http: &reqwest::Client,
    cfg: &WebhookConfig,
    kind: Kind,
    batch: Vec<Row>,
    counters: &CounterSet,
) {
    let n = batch.len() as u64;
    let events: Vec<Value> = batch
        .into_iter()
        .map(|r| json!({"kind": kind.as_str(), "id": r.id, "version": r.version, "record": r.record}))
        .collect();
    let body = json!({ "events": events }).to_string().into_bytes();
    let signature = cfg.secret.as_ref().map(|s| sign(s.as_bytes(), &body));
    let backoff = [100u64, 400, 1600];
    for attempt in 0..=backoff.len() {
        let mut req = http
            .post(&cfg.url)
            .header("Content-Type", "application/json")
            .header(TOPIC_HEADER, kind.as_str())
            .body(body.clone());
        if let Some(sig) = &signature {
            req = req.header(SIGNATURE_HEADER, sig);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                counters.webhooks_sent.fetch_add(1, Relaxed);
                counters.webhook_events_sent.fetch_add(n, Relaxed);
                return;
            }
            Ok(resp) => {
                tracing::debug!(status = %resp.status(), "sandbox webhook refused");
                counters.webhooks_failed.fetch_add(1, Relaxed);
            }
            Err(e) => {
                tracing::debug!(error = %e, "sandbox webhook failed");
                counters.webhooks_failed.fetch_add(1, Relaxed);
            }
        }
        if let Some(ms) = backoff.get(attempt) {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
        }
    }
    tracing::warn!(kind = %kind, events = n, "sandbox webhook batch dropped");
    counters.webhooks_dropped.fetch_add(1, Relaxed);
    counters.webhook_events_dropped.fetch_add(n, Relaxed);
}

//! The running engine: the tasks that move every change along
//! capture → journal → resolve → merge → plan → outbox → deliver.
//!
//! - [`capture`]: webhooks (acknowledged only after the journal commit), delta pollers with
//!   durable cursors, batch (cron) snapshots and one-off migrations.
//! - [`process`]: the single processor that turns journal entries into entity state and outbox
//!   items (resolve by xref or natural key, field-ownership merge, jq mapping, hash skip,
//!   dependency parking).
//! - [`deliver`]: one dispatcher per destination endpoint: claims due items (one in flight per
//!   key), batches them, writes through the connector under a rate limiter, adaptive concurrency
//!   and a circuit breaker, and settles outcomes (retry with full-jitter backoff or Retry-After,
//!   dead letter on permanent errors).
//!
//! Architecture invariant: no state lives only in memory that the store does not also hold,
//! except health figures (breaker, concurrency, counters): a crash (kill -9) at any point loses
//! nothing, and restarting resumes from the journal, the outbox and the cursors.

pub mod alerts;
pub mod backfill;
pub mod capture;
pub mod clock;
pub mod connector_state;
pub mod deliver;
pub mod dry_run;
pub mod flows;
pub mod inventory;
pub mod orders;
pub mod pricing;
pub mod process;
pub mod reconcile;
pub mod replay;
pub mod retention;
pub mod stats;
pub mod supervise;

use crate::config::Config;
use crate::connector::{Connector, WebhookError};
use clock::{Clock, SystemClock};
use concord_core::{Kind, Millis};
use concord_store::{DeadLetterId, Store, StoreError};
use deliver::EndpointRuntime;
use futures::FutureExt;
use stats::{Stats, StatsSnapshot};
use std::collections::BTreeMap;
use std::sync::Arc;
pub use supervise::{Readiness, TaskFailure};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configuration asks for something the connectors cannot do (checked before start).
    #[error("{path}: {message}")]
    Capability { path: String, message: String },
    /// No flow has this name.
    #[error("no flow is named `{0}`")]
    UnknownFlow(String),
    /// An endpoint named in a flow has no connector instance.
    #[error("no connector was built for endpoint `{0}`")]
    MissingConnector(String),
    /// The request cannot be done in the current state (the message says why).
    #[error("{0}")]
    NotPossible(String),
    /// The engine is stopping: the work in hand was dropped before anything of it was
    /// committed (it is done again after the restart).
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// Why a webhook was not accepted. Maps to an HTTP status in the server.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("unknown endpoint `{0}`")]
    UnknownEndpoint(String),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    /// Records failed mapping or validation; nothing was stored. One message per bad record,
    /// naming the record and the field.
    #[error("{} invalid record(s): {}", .0.len(), .0.join("; "))]
    Invalid(Vec<String>),
    /// Storing failed; nothing was acknowledged.
    #[error("could not store the events: {0}")]
    Store(#[from] StoreError),
}

/// What a webhook delivery led to.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WebhookAck {
    pub stored: usize,
    pub duplicates: usize,
    /// Events of kinds no flow takes from this endpoint.
    pub ignored: usize,
}

pub(crate) struct Inner {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub connectors: BTreeMap<String, Arc<dyn Connector>>,
    pub clock: Arc<dyn Clock>,
    pub stats: Stats,
    /// Wakes the processor when something was journaled.
    pub journal_notify: Notify,
    /// Delivery runtimes of destination endpoints.
    pub endpoints: BTreeMap<String, Arc<EndpointRuntime>>,
    /// The stock pool, when `[inventory]` is configured.
    pub pool: Option<inventory::Pool>,
    /// The price index, when `[pricing]` is configured (loaded by [`Engine::start`]).
    pub prices: Option<pricing::PriceIndex>,
    /// Operator state per flow (paused, run now, last run, events per minute), by flow name.
    pub flows: BTreeMap<String, Arc<flows::FlowState>>,
    pub shutdown: watch::Sender<bool>,
    /// The tasks' supervisor: restarts, and the task given up on (readiness).
    pub supervisor: supervise::Supervisor,
    /// Drifted keys per (flow, destination) found by the latest reconciliation (alert `drift`).
    pub drift: reconcile::DriftFigures,
    /// A dry run (`dry_run.rs`): no dispatcher, no alert task.
    pub dry_run: std::sync::atomic::AtomicBool,
}

impl Inner {
    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// Wake the dispatchers of these destinations.
    pub fn wake(&self, dests: impl IntoIterator<Item = String>) {
        for d in dests {
            if let Some(ep) = self.endpoints.get(&d) {
                ep.notify.notify_one();
            }
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Await `fut` unless the engine shuts down first (then `None`). For jq evaluations:
    /// dropping one stops it on its jq thread, so no jq program holds up a shutdown.
    pub async fn unless_shutdown<T>(&self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        let mut shutdown = self.shutdown.subscribe();
        tokio::select! {
            biased;
            out = fut => Some(out),
            _ = shutdown.wait_for(|stopping| *stopping) => None,
        }
    }
}

/// Health of one endpoint as seen by its dispatcher.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndpointHealth {
    pub endpoint: String,
    pub breaker: String,
    pub concurrency_limit: f64,
    pub inflight: usize,
    pub paused_until: Option<Millis>,
    pub last_success: Option<Millis>,
    pub last_error: Option<String>,
    pub rate_limited: u64,
}

/// The engine. Cheap to clone; all clones drive the same tasks.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl Engine {
    /// Build an engine over a validated config, a store and one connector per endpoint. Checks
    /// that every flow asks only for what its connectors can do. Starts nothing.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        connectors: BTreeMap<String, Arc<dyn Connector>>,
    ) -> Result<Engine, EngineError> {
        Self::with_clock(config, store, connectors, Arc::new(SystemClock))
    }

    pub fn with_clock(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        connectors: BTreeMap<String, Arc<dyn Connector>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine, EngineError> {
        check_capabilities(&config, &connectors)?;
        let mut endpoints = BTreeMap::new();
        for flow in &config.flows {
            for dest in &flow.to {
                if endpoints.contains_key(dest) {
                    continue;
                }
                let connector = connectors
                    .get(dest)
                    .cloned()
                    .ok_or_else(|| EngineError::MissingConnector(dest.clone()))?;
                endpoints.insert(
                    dest.clone(),
                    Arc::new(EndpointRuntime::new(
                        dest.clone(),
                        connector,
                        &config.engine,
                    )),
                );
            }
        }
        let (shutdown, _) = watch::channel(false);
        let pool = config
            .inventory
            .clone()
            .map(|cfg| inventory::Pool::new(cfg, &config.flows));
        let prices = config
            .pricing
            .as_ref()
            .map(|_| pricing::PriceIndex::default());
        let flows = config
            .flows
            .iter()
            .map(|f| (f.name.clone(), Arc::new(flows::FlowState::default())))
            .collect();
        Ok(Engine {
            inner: Arc::new(Inner {
                config,
                store,
                connectors,
                clock,
                stats: Stats::default(),
                journal_notify: Notify::new(),
                endpoints,
                pool,
                prices,
                flows,
                shutdown,
                supervisor: supervise::Supervisor::new(),
                drift: reconcile::DriftFigures::default(),
                dry_run: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Start every task: processor, dispatchers, pollers, schedulers, each supervised (see
    /// [`supervise`]: restarted when it fails, [`Engine::readiness`] when it keeps failing).
    /// Returns their join set; call [`Engine::shutdown`] to stop them.
    pub async fn start(&self) -> Result<JoinSet<()>, EngineError> {
        let mut tasks = self.start_without_readers().await?;
        capture::spawn_readers(&self.inner, &mut tasks);
        reconcile::spawn_schedules(&self.inner, &mut tasks);
        Ok(tasks)
    }

    /// Everything [`Engine::start`] starts except the pollers, schedulers and migrations.
    pub(crate) async fn start_without_readers(&self) -> Result<JoinSet<()>, EngineError> {
        let inner = &self.inner;
        // A store used by this process alone: every in-flight claim belongs to a dead process.
        let before = if inner.store.is_exclusive() {
            Millis::MAX
        } else {
            inner.now()
        };
        let recovered = inner.store.recover_expired(before).await?;
        if recovered > 0 {
            tracing::info!(
                recovered,
                "returned in-flight deliveries of a previous run to the queue"
            );
        }
        // Flows paused by an operator stay paused across restarts (the store holds them).
        match inner.store.paused_flows().await {
            Ok(paused) => {
                for name in paused {
                    if let Some(f) = inner.flows.get(&name) {
                        f.paused.store(true, std::sync::atomic::Ordering::Release);
                        tracing::warn!(flow = %name, "flow is paused (deliveries held); resume it with the admin API");
                    }
                }
            }
            Err(StoreError::Unsupported(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // The price index is rebuilt from the store before the processor may update it.
        if let Some(index) = &inner.prices {
            pricing::load(inner, index).await?;
        }
        // Connectors get back what they asked to keep (a rotated refresh token) before any
        // reader or dispatcher calls them.
        connector_state::restore(inner).await?;
        let mut tasks = JoinSet::new();
        connector_state::spawn(inner, &mut tasks);
        let run = |name: &str, tasks: &mut JoinSet<()>, f: fn(Arc<Inner>) -> _| {
            let i = inner.clone();
            supervise::spawn(inner, tasks, name.to_string(), move || f(i.clone()));
        };
        run("process", &mut tasks, |i| process::run(i).boxed());
        // A dry run delivers nothing: no dispatcher runs (`dry_run.rs`).
        let dry_run = inner.dry_run.load(std::sync::atomic::Ordering::Acquire);
        for ep in inner.endpoints.values().filter(|_| !dry_run) {
            let (i, ep) = (inner.clone(), ep.clone());
            supervise::spawn(
                inner,
                &mut tasks,
                format!("deliver:{}", ep.name),
                move || deliver::run(i.clone(), ep.clone()).boxed(),
            );
        }
        if inner.pool.is_some() {
            run("inventory", &mut tasks, |i| inventory::run(i).boxed());
        }
        if !dry_run {
            run("alerts", &mut tasks, |i| alerts::run(i).boxed());
        }
        run("metrics", &mut tasks, |i| metrics_loop(i).boxed());
        run("retention", &mut tasks, |i| retention::run(i).boxed());
        Ok(tasks)
    }

    /// Ask every task to stop; in-flight deliveries finish and settle first.
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        self.inner.journal_notify.notify_waiters();
        if let Some(pool) = &self.inner.pool {
            pool.notify.notify_waiters();
        }
        for ep in self.inner.endpoints.values() {
            ep.notify.notify_waiters();
        }
    }

    /// Accept a webhook for `endpoint`: verify, parse, map, validate and journal it. Returns only
    /// after the events are durably stored (or not at all).
    pub async fn capture_webhook(
        &self,
        endpoint: &str,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookAck, CaptureError> {
        capture::webhook(&self.inner, endpoint, headers, body).await
    }

    pub fn stats(&self, lag_since: Option<Millis>) -> StatsSnapshot {
        self.inner.stats.snapshot(lag_since)
    }

    pub fn now(&self) -> Millis {
        self.inner.now()
    }

    pub fn endpoint_health(&self) -> Vec<EndpointHealth> {
        self.inner.endpoints.values().map(|e| e.health()).collect()
    }

    /// True when nothing is waiting: every journal entry processed and no delivery pending or
    /// in flight (parked items wait for dependencies and do not count).
    pub async fn is_drained(&self) -> Result<bool, EngineError> {
        let s = self.inner.store.stats().await?;
        Ok(s.journal_pending == 0 && s.queues.iter().all(|q| q.pending == 0 && q.inflight == 0))
    }

    /// Replay open dead letters. Outbound state kinds are re-planned from the entity's current
    /// state (never an outdated payload); command kinds resend their stored payload; inbound ones
    /// are validated and journaled again. Returns the ids replayed.
    pub async fn replay_dead_letters(
        &self,
        ids: Vec<DeadLetterId>,
    ) -> Result<Vec<DeadLetterId>, EngineError> {
        replay::replay(&self.inner, ids).await
    }

    /// Every flow with its operator state and figures, in config order.
    pub async fn flows(&self) -> Result<Vec<flows::FlowView>, EngineError> {
        let stats = self.inner.store.stats().await?;
        Ok(self
            .inner
            .config
            .flows
            .iter()
            .map(|f| self.flow_view(f, &stats))
            .collect())
    }

    /// One flow (`None` when no flow has this name).
    pub async fn flow(&self, name: &str) -> Result<Option<flows::FlowView>, EngineError> {
        let Some(f) = self.inner.config.flow(name) else {
            return Ok(None);
        };
        let stats = self.inner.store.stats().await?;
        Ok(Some(self.flow_view(f, &stats)))
    }

    fn flow_view(
        &self,
        f: &crate::config::FlowConfig,
        stats: &concord_store::StoreStats,
    ) -> flows::FlowView {
        use crate::config::Mode;
        let now = self.now();
        let state = self.inner.flows.get(&f.name).cloned().unwrap_or_default();
        let last_run = state.last_run();
        let (schedule, poll) = match &f.mode {
            Mode::Batch { expr, .. } => (Some(expr.clone()), None),
            Mode::Delta { interval } => (None, Some(*interval)),
            Mode::Realtime { poll } => (None, *poll),
            Mode::Migration => (None, None),
        };
        let next_run = match &f.mode {
            Mode::Batch { schedule, .. } => schedule
                .upcoming(chrono::Utc)
                .next()
                .map(|t| t.timestamp_millis()),
            _ => poll.and_then(|p| {
                last_run
                    .as_ref()
                    .map(|r| r.finished_at + p.as_millis() as i64)
            }),
        };
        let (mut pending, mut parked, mut oldest) = (0, 0, None::<Millis>);
        for q in stats.queues.iter().filter(|q| f.to.contains(&q.dest)) {
            pending += q.pending + q.inflight;
            parked += q.parked;
            if let Some(t) = q.oldest_captured_at {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
        }
        let per_minute = state.per_minute(now);
        flows::FlowView {
            name: f.name.clone(),
            kind: f.kind,
            pattern: f.pattern.as_str().to_string(),
            mode: f.mode.as_str().to_string(),
            from: f.from.clone(),
            to: f.to.clone(),
            schedule,
            poll_interval_ms: poll.map(|p| p.as_millis() as u64),
            paused: state.is_paused(),
            last_run,
            next_run,
            delivered: state.delivered.load(std::sync::atomic::Ordering::Relaxed),
            throughput_per_minute: per_minute.len().checked_sub(2).map_or(0, |i| per_minute[i]),
            events_per_minute: per_minute,
            queue_pending: pending,
            queue_parked: parked,
            lag_ms: oldest.map_or(0, |t| (now - t).max(0) as u64),
            last_delivery_lag_ms: state.last_lag_ms.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn flow_state(&self, name: &str) -> Result<&Arc<flows::FlowState>, EngineError> {
        self.inner
            .flows
            .get(name)
            .ok_or_else(|| EngineError::UnknownFlow(name.to_string()))
    }

    /// Pause (`true`) or resume a flow: its deliveries are held (see [`flows`] for the
    /// semantics). Durable across restarts. Returns whether the state changed.
    pub async fn set_flow_paused(&self, name: &str, paused: bool) -> Result<bool, EngineError> {
        let state = self.flow_state(name)?;
        let changed = self
            .inner
            .store
            .set_flow_paused(name, paused, self.now())
            .await?;
        state
            .paused
            .store(paused, std::sync::atomic::Ordering::Release);
        if !paused {
            if let Some(f) = self.inner.config.flow(name) {
                self.inner.wake(f.to.iter().cloned());
            }
        }
        Ok(changed)
    }

    /// Start a read run of a batch flow now (its scheduled runs are unchanged). Returns at
    /// once; the run shows in the flow's `last_run` when it finishes.
    pub fn run_flow_now(&self, name: &str) -> Result<(), EngineError> {
        let state = self.flow_state(name)?;
        let Some(flow) = self.inner.config.flow(name) else {
            return Err(EngineError::UnknownFlow(name.to_string()));
        };
        if !matches!(flow.mode, crate::config::Mode::Batch { .. }) {
            return Err(EngineError::NotPossible(format!(
                "flow `{name}` is a {} flow; only batch flows can be run now (delta and realtime flows read continuously)",
                flow.mode
            )));
        }
        state.run_now.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Drop open dead letters (kept in the audit trail).
    pub async fn drop_dead_letters(
        &self,
        ids: Vec<DeadLetterId>,
    ) -> Result<Vec<DeadLetterId>, EngineError> {
        let now = self.inner.now();
        let dropped = self.inner.store.drop_dead_letters(ids, now).await?;
        Ok(dropped)
    }
}

/// Check every flow against its connectors' declared capabilities.
pub fn check_capabilities(
    config: &Config,
    connectors: &BTreeMap<String, Arc<dyn Connector>>,
) -> Result<(), EngineError> {
    use crate::config::Mode;
    for (i, flow) in config.flows.iter().enumerate() {
        let path = |f: &str| format!("flows[{i}].{f}");
        for src in &flow.from {
            let c = connectors
                .get(src)
                .ok_or_else(|| EngineError::MissingConnector(src.clone()))?;
            let caps = c.capabilities().kind(flow.kind);
            let (ok, need) = match &flow.mode {
                Mode::Realtime { poll } => (
                    caps.read.webhook && (poll.is_none() || caps.read.changes),
                    "webhooks (and changed-since reads for `poll`)",
                ),
                Mode::Delta { .. } => (caps.read.changes, "changed-since reads"),
                Mode::Batch { .. } | Mode::Migration => (caps.read.snapshot, "full listings"),
            };
            if !ok {
                return Err(EngineError::Capability {
                    path: path("mode"),
                    message: format!(
                        "endpoint `{src}` ({}) cannot provide {} of {} records, which this mode needs",
                        c.connector_type(),
                        need,
                        flow.kind
                    ),
                });
            }
        }
        for dest in &flow.to {
            let c = connectors
                .get(dest)
                .ok_or_else(|| EngineError::MissingConnector(dest.clone()))?;
            // A refund a destination cannot record is not a configuration error: each one
            // becomes a "needs attention" dead letter for an operator (runtime/orders/).
            if flow.kind != Kind::Refund && !c.capabilities().kind(flow.kind).write.upsert {
                return Err(EngineError::Capability {
                    path: path("to"),
                    message: format!(
                        "endpoint `{dest}` ({}) cannot write {} records",
                        c.connector_type(),
                        flow.kind
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Kinds for which `endpoint` can come to know records (it is a source or a destination of a
/// flow of that kind). Dependencies on other kinds cannot be satisfied there and are not waited
/// for.
pub(crate) fn reachable_kinds(config: &Config, endpoint: &str) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = config
        .flows
        .iter()
        .filter(|f| f.from.iter().chain(&f.to).any(|e| e == endpoint))
        .map(|f| f.kind)
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

async fn metrics_loop(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        if let Ok(s) = inner.store.stats().await {
            for q in &s.queues {
                let labels = [("endpoint", q.dest.clone())];
                metrics::gauge!("concord_queue_depth", &labels)
                    .set((q.pending + q.inflight) as f64);
                metrics::gauge!("concord_parked", &labels).set(q.parked as f64);
                let lag = q
                    .oldest_captured_at
                    .map(|t| (inner.now() - t).max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                metrics::gauge!("concord_oldest_pending_seconds", &labels).set(lag);
            }
            metrics::gauge!("concord_journal_pending").set(s.journal_pending as f64);
            metrics::gauge!("concord_dead_letters_open").set(s.dead_letters_open as f64);
        }
        for ep in inner.endpoints.values() {
            let open = if ep.health().breaker == "closed" {
                0.0
            } else {
                1.0
            };
            metrics::gauge!("concord_breaker_open", "endpoint" => ep.name.clone()).set(open);
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

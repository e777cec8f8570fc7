//! Drift reconciliation (issue 16): for each flow and destination, read what the destination
//! holds (its connector's paged listing, paced like its deliveries), compute what it should
//! hold (the hub's canonical state through the flow's filter and mapping; a pool channel's
//! available-to-sell), and compare key by key with [`concord_core::reconcile::compare`]:
//! missing, unknown to the hub, different (field, expected, actual), or in flight (a delivery
//! pending, parked or in progress, a change journaled but not yet planned, a SKU whose
//! figures are being recomputed: not drift). The stock pool is checked both ways: each
//! channel's figure against its ats, and the pool source's (the ERP's) own figures against the
//! hub's ledger.
//!
//! Healing (`heal = true`) plans one corrective write per drifted key through the normal
//! outbox — the hub's current record, idempotent, delivered, rate-limited and retried like any
//! other — and audits it (`reconcile.heal`). A figure the ledger missed is healed by journaling
//! the ERP's record as it was read (the processor applies it like any change). Records unknown
//! to the hub are reported, never deleted; nothing is ever written to the pool's source.
//!
//! A change captured, planned and delivered entirely while one destination is being read can
//! show as drift in that run (the listing is not one snapshot with the hub's state); keys whose
//! hub state changed during the run are counted as in flight for that reason, and a heal of
//! such a key writes the hub's current record again, which changes nothing. The next run
//! reports 0.
//!
//! Must never: delete anything at a destination; write to the pool's source; count an
//! in-flight key as drift; bypass the outbox.

pub(crate) mod sides;

use super::{EngineError, Inner};
use crate::config::{FlowConfig, Pattern};
use crate::Engine;
use concord_core::reconcile::{Comparison, Drift};
use concord_core::{content_hash, Kind, Millis};
use concord_store::{
    AuditEvent, IngestOutcome, NewItem, NewReconcileRun, ProcessBatch, StoreError,
    StoredReconcileRun,
};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::task::JoinSet;

/// What one check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Check {
    /// The hub's records through the flow's filter and mapping against the destination's.
    Destination,
    /// A pool channel's stock against its available-to-sell.
    ChannelStock,
    /// The pool source's (the ERP's) own stock figures against the hub's ledger.
    Ledger,
}

/// The outcome for one (flow, destination, check).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DestinationDrift {
    pub flow: String,
    /// The endpoint read (for [`Check::Ledger`], the pool's source).
    pub dest: String,
    pub kind: Kind,
    pub check: Check,
    pub comparison: Comparison,
    /// Listing pages read from the endpoint.
    pub reads: u64,
    /// Keys a corrective write was planned for (or, for the ledger, whose figure was journaled).
    pub healed: Vec<String>,
    /// Why this check could not finish (the endpoint could not be read, …); nothing compared.
    pub error: Option<String>,
}

impl DestinationDrift {
    /// Drifted keys (in flight not counted).
    pub fn drifted(&self) -> usize {
        self.comparison.drifted.len()
    }
}

/// One reconciliation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReconcileRun {
    /// The stored run's id (`None` until stored).
    pub id: Option<i64>,
    pub started_at: Millis,
    pub finished_at: Millis,
    /// `cli`, `api`, `schedule`.
    pub trigger: String,
    pub heal: bool,
    pub results: Vec<DestinationDrift>,
    /// Flows or destinations not reconciled, with why.
    pub skipped: Vec<String>,
}

impl ReconcileRun {
    /// Drifted keys over every check.
    pub fn drifted(&self) -> usize {
        self.results.iter().map(DestinationDrift::drifted).sum()
    }

    /// Checks that could not finish.
    pub fn errors(&self) -> usize {
        self.results.iter().filter(|r| r.error.is_some()).count()
    }
}

/// Drifted keys per (flow, destination) of the latest run that checked them, for the `drift`
/// alert (in memory: after a restart the next run fills it again; every run is stored too).
#[derive(Debug, Default)]
pub(crate) struct DriftFigures(std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>);

impl DriftFigures {
    fn set(&self, flow: &str, dest: &str, drifted: u64) {
        if let Ok(mut m) = self.0.lock() {
            m.insert((flow.to_string(), dest.to_string()), drifted);
        }
    }

    pub(crate) fn latest(&self) -> Vec<((String, String), u64)> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }
}

/// One check to run.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub flow: FlowConfig,
    pub dest: String,
    pub check: Check,
}

impl Engine {
    /// Reconcile `flows` (every flow when empty); with `heal`, plan the corrective writes.
    /// Unknown flow names are an error before anything is read.
    pub async fn reconcile(
        &self,
        flows: &[String],
        heal: bool,
        trigger: &str,
    ) -> Result<ReconcileRun, EngineError> {
        let inner = &self.inner;
        let (targets, skipped) = targets(inner, flows)?;
        let started_at = inner.now();
        let mut results = Vec::with_capacity(targets.len());
        for t in &targets {
            let mut r = match sides::check(inner, t, started_at).await {
                Ok(checked) => {
                    let mut r = checked.report.clone();
                    if heal {
                        if let Err(e) = heal_one(inner, t, &checked, &mut r).await {
                            r.error = Some(format!("healing failed: {e}"));
                        }
                    }
                    r
                }
                Err(EngineError::ShuttingDown) => return Err(EngineError::ShuttingDown),
                Err(e) => DestinationDrift {
                    flow: t.flow.name.clone(),
                    dest: t.dest.clone(),
                    kind: t.flow.kind,
                    check: t.check,
                    comparison: Comparison::default(),
                    reads: 0,
                    healed: Vec::new(),
                    error: Some(e.to_string()),
                },
            };
            if r.error.is_some() {
                r.comparison.drifted.clear();
            }
            metrics::gauge!("concord_drift_keys", "flow" => r.flow.clone(), "dest" => r.dest.clone())
                .set(r.drifted() as f64);
            inner.drift.set(&r.flow, &r.dest, r.drifted() as u64);
            results.push(r);
        }
        let mut run = ReconcileRun {
            id: None,
            started_at,
            finished_at: inner.now(),
            trigger: trigger.to_string(),
            heal,
            results,
            skipped,
        };
        let counts: Vec<_> = run
            .results
            .iter()
            .map(|r| {
                json!({"flow": r.flow, "dest": r.dest, "check": r.check,
                       "drifted": r.drifted(), "in_flight": r.comparison.in_flight.len(),
                       "healed": r.healed.len(), "error": r.error})
            })
            .collect();
        inner
            .store
            .record_audit(vec![AuditEvent {
                at: run.finished_at,
                event: "reconcile.run".into(),
                endpoint: None,
                kind: None,
                key: None,
                detail: json!({"trigger": trigger, "heal": heal, "results": counts}),
            }
            .bounded()])
            .await?;
        // Kept for the admin API (`GET /api/v1/reconcile`); a store that cannot keep runs
        // still gets its report back.
        let stored = NewReconcileRun {
            started_at: run.started_at,
            finished_at: run.finished_at,
            trigger: run.trigger.clone(),
            heal,
            drifted: run.drifted() as u64,
            healed: run.results.iter().map(|r| r.healed.len() as u64).sum(),
            errors: run.errors() as u64,
            report: serde_json::to_value(&run).unwrap_or_default(),
        };
        match inner.store.record_reconcile_run(stored).await {
            Ok(id) => run.id = Some(id),
            Err(StoreError::Unsupported(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(run)
    }

    /// Stored runs, newest first, without their reports.
    pub async fn reconcile_runs(
        &self,
        limit: usize,
    ) -> Result<Vec<StoredReconcileRun>, EngineError> {
        Ok(self.inner.store.reconcile_runs(limit).await?)
    }

    /// One stored run with its report.
    pub async fn reconcile_run(&self, id: i64) -> Result<Option<StoredReconcileRun>, EngineError> {
        Ok(self.inner.store.reconcile_run(id).await?)
    }

    /// Start the processor, the dispatchers and the pool's broadcaster without any reader:
    /// what `concord reconcile --heal` runs to deliver its corrective writes. Stop it with
    /// [`Engine::shutdown`].
    pub async fn start_for_heal(&self) -> Result<tokio::task::JoinSet<()>, EngineError> {
        self.start_without_readers().await
    }

    /// Is nothing a run healed still on its way (no item of a healed key pending, parked or in
    /// flight, no journal entry waiting, no SKU waiting for its channel figures)? The CLI waits
    /// for this before it stops the engine.
    pub async fn reconcile_settled(&self, run: &ReconcileRun) -> Result<bool, EngineError> {
        let inner = &self.inner;
        if !inner.store.pending_journal(1).await?.is_empty() {
            return Ok(false);
        }
        if inner.pool.is_some() && !inner.store.dirty_skus(1).await?.is_empty() {
            return Ok(false);
        }
        for r in run.results.iter().filter(|r| !r.healed.is_empty()) {
            if r.check == Check::Ledger {
                continue;
            }
            let flying = sides::queued(inner, &r.dest, r.kind).await?;
            if r.healed.iter().any(|k| flying.contains(k)) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// One task per flow with a `reconcile` schedule (supervised like every reader).
pub(crate) fn spawn_schedules(inner: &Arc<Inner>, tasks: &mut JoinSet<()>) {
    for flow in inner.config.flows.iter().filter(|f| f.reconcile.is_some()) {
        let (i, name) = (inner.clone(), flow.name.clone());
        super::supervise::spawn(inner, tasks, format!("reconcile:{name}"), move || {
            scheduled(i.clone(), name.clone()).boxed()
        });
    }
}

/// Reconcile `flow` at each time of its schedule until shutdown; each run is stored.
async fn scheduled(inner: Arc<Inner>, flow: String) {
    let Some(s) = inner.config.flow(&flow).and_then(|f| f.reconcile.clone()) else {
        return;
    };
    let engine = Engine {
        inner: inner.clone(),
    };
    loop {
        let Some(next) = s.schedule.upcoming(chrono::Utc).next() else {
            tracing::warn!(%flow, schedule = %s.expr, "reconcile schedule has no future run");
            return;
        };
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        if super::capture::sleep_or_shutdown(&inner, wait).await {
            return;
        }
        match engine
            .reconcile(std::slice::from_ref(&flow), s.heal, "schedule")
            .await
        {
            Ok(run) => tracing::info!(
                %flow,
                run = run.id,
                drifted = run.drifted(),
                failed_checks = run.errors(),
                heal = s.heal,
                "reconciliation finished"
            ),
            Err(EngineError::ShuttingDown) => return,
            Err(e) => {
                tracing::warn!(%flow, error = %e, "reconciliation failed; next run on schedule")
            }
        }
    }
}

/// The checks for `names` (all flows when empty), and what is not reconciled with why.
fn targets(inner: &Inner, names: &[String]) -> Result<(Vec<Target>, Vec<String>), EngineError> {
    let config = &inner.config;
    for n in names {
        if config.flow(n).is_none() {
            return Err(EngineError::UnknownFlow(n.clone()));
        }
    }
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut ledger_done = BTreeSet::new();
    for flow in config
        .flows
        .iter()
        .filter(|f| names.is_empty() || names.contains(&f.name))
    {
        let why = if flow.kind.is_order_scoped() {
            Some(format!(
                "{} records belong to their order and are not listed on their own",
                flow.kind
            ))
        } else if flow.pattern == Pattern::Correlation {
            Some("a correlation flow only updates what the destination already has".into())
        } else {
            None
        };
        if let Some(why) = why {
            skipped.push(format!("flow `{}`: {why}", flow.name));
            continue;
        }
        let pool = inner.pool.as_ref().filter(|_| flow.kind == Kind::Stock);
        if let Some(pool) = pool {
            let source = &pool.cfg.source;
            if flow.from.contains(source) && ledger_done.insert(source.clone()) {
                if can_list(inner, source, Kind::Stock) {
                    out.push(Target {
                        flow: flow.clone(),
                        dest: source.clone(),
                        check: Check::Ledger,
                    });
                } else {
                    skipped.push(format!(
                        "flow `{}`: the ledger against `{source}`: it cannot list stock",
                        flow.name
                    ));
                }
            }
        }
        for dest in &flow.to {
            if flow.from.contains(dest) && flow.pattern != Pattern::Bidirectional {
                continue;
            }
            if !can_list(inner, dest, flow.kind) {
                skipped.push(format!(
                    "flow `{}` → `{dest}`: `{dest}` cannot list {} records",
                    flow.name, flow.kind
                ));
                continue;
            }
            let check = if pool.is_some_and(|p| p.is_channel(dest)) {
                Check::ChannelStock
            } else {
                Check::Destination
            };
            out.push(Target {
                flow: flow.clone(),
                dest: dest.clone(),
                check,
            });
        }
    }
    Ok((out, skipped))
}

fn can_list(inner: &Inner, endpoint: &str, kind: Kind) -> bool {
    inner
        .connectors
        .get(endpoint)
        .is_some_and(|c| c.capabilities().kind(kind).read.snapshot)
}

/// Plan the corrective writes of one check (see the module docs).
async fn heal_one(
    inner: &Inner,
    t: &Target,
    checked: &sides::Checked,
    r: &mut DestinationDrift,
) -> Result<(), EngineError> {
    let now = inner.now();
    let kind = t.flow.kind;
    if t.check == Check::Ledger {
        // A figure the ledger missed (different, or a position it never saw): journal the
        // ERP's record as read; the processor applies it to the ledger like any change.
        let mut captures = Vec::new();
        let mut keys = Vec::new();
        for d in &r.comparison.drifted {
            if matches!(d.drift, Drift::Missing { .. }) {
                continue;
            }
            let Some(c) = checked.captured.get(&d.key) else {
                continue;
            };
            match super::capture::to_capture(inner, &t.dest, c.clone(), now).await {
                Ok(capture) => {
                    captures.push(capture);
                    keys.push(d.key.clone());
                }
                Err(e) => {
                    tracing::warn!(key = %d.key, error = %e, "reconcile: the ERP's record cannot be journaled")
                }
            }
        }
        if captures.is_empty() {
            return Ok(());
        }
        let outcomes = inner.store.ingest(captures, None).await?;
        for (key, o) in keys.into_iter().zip(outcomes) {
            if matches!(o, IngestOutcome::Stored(_)) {
                r.healed.push(key);
            }
        }
        if !r.healed.is_empty() {
            inner.journal_notify.notify_one();
            inner
                .store
                .record_audit(vec![AuditEvent {
                    at: now,
                    event: "reconcile.heal".into(),
                    endpoint: Some(t.dest.clone()),
                    kind: Some(kind),
                    key: None,
                    detail: json!({"flow": t.flow.name, "check": "ledger", "journaled": r.healed}),
                }
                .bounded()])
                .await?;
        }
        return Ok(());
    }
    let mut items = Vec::new();
    for d in &r.comparison.drifted {
        if matches!(d.drift, Drift::Unknown { .. }) {
            continue;
        }
        let Some(payload) = checked.payloads.get(&d.key).cloned() else {
            continue;
        };
        let op = match (kind, t.flow.pattern) {
            (Kind::Order, _) => "create",
            (_, Pattern::Correlation) => "update_only",
            _ => "upsert",
        };
        items.push(NewItem {
            dest: t.dest.clone(),
            kind,
            key: d.key.clone(),
            op: op.into(),
            hash: content_hash(&payload),
            payload,
            flow: t.flow.name.clone(),
            journal_id: None,
            captured_at: now,
            waiting_on: Vec::new(),
            coalesce: kind.is_state(),
            not_before: now,
        });
        r.healed.push(d.key.clone());
    }
    if items.is_empty() {
        return Ok(());
    }
    let batch = ProcessBatch {
        items,
        audit: vec![AuditEvent {
            at: now,
            event: "reconcile.heal".into(),
            endpoint: Some(t.dest.clone()),
            kind: Some(kind),
            key: None,
            detail: json!({"flow": t.flow.name, "keys": r.healed}),
        }
        .bounded()],
        ..ProcessBatch::default()
    };
    inner.store.apply(batch, now).await?;
    super::Stats::add(&inner.stats.planned, r.healed.len() as u64);
    inner.wake([t.dest.clone()]);
    Ok(())
}

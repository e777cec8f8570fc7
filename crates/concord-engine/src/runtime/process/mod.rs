//! The processor: journal entries → entity state → outbox items, one batch per transaction.
//!
//! For each pending journal entry, in journal order: resolve its canonical key (xref, else the
//! natural key — correlation; order-scoped records are keyed `{order}:{id}`), drop it if stale
//! or if it reports an ERP order that cancel-and-replace superseded, refuse an order-scoped
//! record whose order changed, merge it under field ownership, and when the entity changed plan
//! a delivery to every destination of every flow that takes this kind from this source:
//! order-scoped routing, jq filter, jq outbound mapping, skip when the destination already has
//! (or is about to get) the same hash, park when dependencies are unknown there.
//!
//! Architecture invariant: exactly one processor runs per store, and it commits everything it
//! decided for a batch in one `Store::apply`, together with the journal status. A crash between
//! batches re-processes nothing twice and loses nothing: unprocessed entries stay pending. One
//! entry that cannot be processed never stalls the journal: a failed batch is retried one entry
//! at a time, and an entry that keeps failing alone becomes an inbound dead letter (`run`).
//!
//! Dead-letter replay is not here: it lives in `replay.rs`, which reuses `operation` so that a
//! replayed delivery gets the same write operation the planner would give it.

use super::orders::{legacy_miscorrelation, other_order, superseded};
use super::{reachable_kinds, EngineError, Inner};
use crate::config::{FlowConfig, Pattern};
use crate::mapping::{filter_then_map, Filtered, MapVars, Stage};
use concord_core::retry::Backoff;
use concord_core::{content_hash, dependencies, merge, natural_key, Kind, Millis};
use concord_store::{
    AuditEvent, Direction, Entity, EntityWrite, JournalEntry, JournalStatus, NewDeadLetter,
    NewItem, ProcessBatch, StoreError, Xref,
};
use futures::FutureExt;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Attempts at one journal entry processed alone before it is set aside as an inbound dead
/// letter (see [`isolate`]).
pub(crate) const ENTRY_ATTEMPTS: u32 = 5;

/// Run until shutdown.
///
/// A batch that fails is not retried whole forever: its entries are processed one at a time
/// ([`isolate`]), so that one entry that cannot be processed holds up nothing but itself, and
/// only for [`ENTRY_ATTEMPTS`] tries.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    let batch_size = inner.config.engine.batch_size.max(1);
    let backoff = Backoff {
        base_ms: u64::try_from(inner.config.engine.backoff_base.as_millis()).unwrap_or(u64::MAX),
        cap_ms: u64::try_from(inner.config.engine.backoff_cap.as_millis()).unwrap_or(u64::MAX),
    };
    let mut failing = Failing::default();
    loop {
        if inner.is_shutting_down() {
            return;
        }
        let notified = inner.journal_notify.notified();
        let wait = match guarded(step(&inner, batch_size)).await {
            Ok(0) => {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            Ok(_) => None,
            // Stopped mid-batch by the shutdown (nothing of the batch was committed).
            Err(StepError::Engine(EngineError::ShuttingDown)) => return,
            Err(e) if e.is_systemic() => {
                tracing::error!(error = %e, "processing failed; retrying in 1 s");
                Some(Duration::from_secs(1))
            }
            Err(e) => {
                tracing::warn!(error = %e, "a batch of journal entries failed; processing them one at a time");
                isolate(&inner, batch_size, &mut failing, &backoff).await
            }
        };
        if let Some(wait) = wait {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Why processing a batch (or one entry) failed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A bug met on the way (in a mapping, the merge, the store's apply…): caught so that one
    /// entry cannot take the processor down again at every restart.
    #[error("processing panicked: {0}")]
    Panic(String),
}

impl StepError {
    /// A failure of the store as a whole rather than of what was being processed: no entry is
    /// to blame, so none is counted against or set aside.
    fn is_systemic(&self) -> bool {
        matches!(
            self,
            StepError::Engine(
                EngineError::ShuttingDown
                    | EngineError::Store(
                        StoreError::Closed | StoreError::Busy | StoreError::Open { .. }
                    )
            )
        )
    }
}

/// Run a processing step with its panics caught.
async fn guarded<T>(
    f: impl std::future::Future<Output = Result<T, EngineError>>,
) -> Result<T, StepError> {
    match std::panic::AssertUnwindSafe(f).catch_unwind().await {
        Ok(r) => Ok(r?),
        Err(panic) => Err(StepError::Panic(super::supervise::panic_message(
            panic.as_ref(),
        ))),
    }
}

/// The journal entry that last failed alone, and how many times in a row it did.
#[derive(Debug, Default)]
struct Failing {
    id: Option<i64>,
    attempts: u32,
}

impl Failing {
    /// Count a failure of entry `id`; returns its failures in a row.
    fn record(&mut self, id: i64) -> u32 {
        if self.id != Some(id) {
            *self = Failing {
                id: Some(id),
                attempts: 0,
            };
        }
        self.attempts += 1;
        self.attempts
    }
}

/// After a batch failed: process the pending entries one at a time, in journal order, up to
/// the first one that fails alone. The entries before it are committed; it is tried again after
/// a backoff (returned), still ahead of every later entry, so changes keep their order; once it
/// has failed [`ENTRY_ATTEMPTS`] times in a row it is set aside — journaled as rejected with an
/// inbound dead letter giving the reason — and the entries after it flow on. A systemic
/// failure (the store closed) stops the round without blaming any entry.
async fn isolate(
    inner: &Inner,
    batch_size: usize,
    failing: &mut Failing,
    backoff: &Backoff,
) -> Option<Duration> {
    let entries = match inner.store.pending_journal(batch_size).await {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!(error = %e, "processing failed; retrying in 1 s");
            return Some(Duration::from_secs(1));
        }
    };
    for entry in entries {
        let id = entry.id;
        let error = match guarded(step_entries(inner, vec![entry.clone()])).await {
            Ok(_) => {
                if failing.id == Some(id) {
                    *failing = Failing::default();
                }
                continue;
            }
            Err(e) if e.is_systemic() => {
                tracing::error!(error = %e, "processing failed; retrying in 1 s");
                return Some(Duration::from_secs(1));
            }
            Err(e) => e,
        };
        let attempts = failing.record(id);
        if attempts < ENTRY_ATTEMPTS {
            let wait = Duration::from_millis(backoff.delay_ms(attempts - 1, fastrand::f64()));
            tracing::warn!(journal_id = id, endpoint = %entry.endpoint, kind = %entry.kind,
                external_id = %entry.external_id, attempts, error = %error,
                "journal entry failed on its own; trying it again");
            return Some(wait.max(Duration::from_millis(10)));
        }
        let reason = format!("processing failed {attempts} times: {error}");
        let batch = ProcessBatch {
            journal: vec![(id, JournalStatus::Rejected, Some(reason.clone()), None)],
            dead_letters: vec![NewDeadLetter {
                direction: Direction::Inbound,
                endpoint: entry.endpoint.clone(),
                kind: entry.kind,
                key: entry.external_id.clone(),
                payload: entry.payload.clone(),
                reason: reason.clone(),
                journal_id: Some(id),
                // An inbound entry that could not be processed at all: no flow is to blame.
                flow: None,
                at: inner.now(),
            }],
            ..ProcessBatch::default()
        };
        if let Err(e) = inner.store.apply(batch, inner.now()).await {
            tracing::error!(journal_id = id, error = %e, "could not set the failing journal entry aside; retrying in 1 s");
            return Some(Duration::from_secs(1));
        }
        *failing = Failing::default();
        super::Stats::add(&inner.stats.rejected, 1);
        metrics::counter!("concord_dead_letters_total", "endpoint" => entry.endpoint.clone(), "kind" => entry.kind.as_str()).increment(1);
        tracing::error!(journal_id = id, endpoint = %entry.endpoint, kind = %entry.kind,
            external_id = %entry.external_id, %reason,
            "journal entry set aside as an inbound dead letter; the entries after it go on");
    }
    None
}

/// Process one batch of pending journal entries. Returns how many were processed.
pub(crate) async fn step(inner: &Inner, batch_size: usize) -> Result<usize, EngineError> {
    let entries = inner.store.pending_journal(batch_size).await?;
    step_entries(inner, entries).await
}

/// Process these journal entries as one batch (one `Store::apply`).
async fn step_entries(inner: &Inner, entries: Vec<JournalEntry>) -> Result<usize, EngineError> {
    if entries.is_empty() {
        return Ok(0);
    }
    let n = entries.len();
    let now = inner.now();
    let mut planner = Planner::new(inner, now);
    planner.prefetch(&entries).await?;
    for entry in entries {
        planner.entry(entry).await?;
    }
    let (batch, dests) = planner.finish();
    let planned = batch.items.len() as u64;
    let conflicts = batch.audit.iter().filter(|a| a.event == "conflict").count() as u64;
    let index_updates = match &inner.prices {
        Some(_) => super::pricing::updates_of(&batch.entities),
        None => Vec::new(),
    };
    inner.store.apply(batch, now).await?;
    // The price index follows the store, only once the batch is committed.
    if let Some(index) = &inner.prices {
        index.apply(
            index_updates
                .iter()
                .map(|(k, key, v)| (*k, key.as_str(), v)),
        );
    }
    super::Stats::add(&inner.stats.processed, n as u64);
    super::Stats::add(&inner.stats.planned, planned);
    super::Stats::add(&inner.stats.conflicts, conflicts);
    inner.wake(dests);
    Ok(n)
}

/// Accumulates one batch's decisions, with an overlay so that later entries of the batch see
/// what earlier ones decided.
pub(super) struct Planner<'a> {
    pub(super) inner: &'a Inner,
    pub(super) now: Millis,
    pub(super) batch: ProcessBatch,
    /// Order lifecycle rows read and written by this batch (see `orders.rs`).
    pub(super) orders: super::orders::Tracker,
    /// How the current entry's order edit is to be planned (set by `track_order`).
    pub(super) edit: Option<super::orders::EditPlan>,
    entities: HashMap<(Kind, String), Entity>,
    xref_keys: HashMap<(String, Kind, String), String>,
    known_at: BTreeSet<(String, Kind, String)>,
    planned: HashMap<(String, Kind, String), String>,
    dests: BTreeSet<String>,
    /// Store reads for the whole batch, made at its start in a few batched lookups (see
    /// [`Planner::prefetch`]); the overlays above take precedence. Misses are remembered too.
    pre_keys: HashMap<(String, Kind, String), Option<String>>,
    pre_entities: HashMap<(Kind, String), Option<Entity>>,
    pre_hashes: HashMap<(String, Kind, String), Option<String>>,
}

impl<'a> Planner<'a> {
    fn new(inner: &'a Inner, now: Millis) -> Self {
        Planner {
            inner,
            now,
            batch: ProcessBatch::default(),
            orders: super::orders::Tracker::default(),
            edit: None,
            entities: HashMap::new(),
            xref_keys: HashMap::new(),
            known_at: BTreeSet::new(),
            planned: HashMap::new(),
            dests: BTreeSet::new(),
            pre_keys: HashMap::new(),
            pre_entities: HashMap::new(),
            pre_hashes: HashMap::new(),
        }
    }

    /// Read what the batch's entries will look up — their xrefs, then the entities and planned
    /// hashes of the keys they resolve to — in three batched store calls instead of three reads
    /// per entry. Reading at the start of the batch rather than entry by entry changes nothing:
    /// this processor is the only writer of entities and planned hashes until its `apply`, and
    /// a concurrent settlement could as well have landed just after a per-entry read.
    async fn prefetch(&mut self, entries: &[JournalEntry]) -> Result<(), EngineError> {
        let config = &self.inner.config;
        let mut ids: Vec<(String, Kind, String)> = Vec::new();
        let mut seen = BTreeSet::new();
        for e in entries {
            if config.flows_for(e.kind, &e.endpoint).next().is_none() {
                continue;
            }
            let id = (e.endpoint.clone(), e.kind, e.external_id.clone());
            if seen.insert(id.clone()) {
                ids.push(id);
            }
        }
        let found = self.inner.store.xref_keys(&ids).await?;
        self.pre_keys = ids.into_iter().zip(found).collect();
        let mut entity_keys: Vec<(Kind, String)> = Vec::new();
        let mut hash_keys: Vec<(String, Kind, String)> = Vec::new();
        let mut order_keys: Vec<String> = Vec::new();
        let (mut seen_e, mut seen_h) = (BTreeSet::new(), BTreeSet::new());
        for e in entries {
            if e.kind.is_order_scoped() {
                if let Some(o) = e.payload.get("order").and_then(Value::as_str) {
                    order_keys.push(o.to_string());
                }
            }
            let id = (e.endpoint.clone(), e.kind, e.external_id.clone());
            let key = match self.pre_keys.get(&id) {
                Some(Some(k)) => k.clone(),
                Some(None) => match natural_key(e.kind, &record_of(e), &e.endpoint) {
                    Ok(k) => k,
                    Err(_) => continue,
                },
                None => continue,
            };
            for flow in config.flows_for(e.kind, &e.endpoint) {
                for dest in flow.to.iter().filter(|d| **d != e.endpoint) {
                    let k = (dest.clone(), e.kind, key.clone());
                    if seen_h.insert(k.clone()) {
                        hash_keys.push(k);
                    }
                }
            }
            if e.kind == Kind::Order {
                order_keys.push(key.clone());
            }
            if seen_e.insert((e.kind, key.clone())) {
                entity_keys.push((e.kind, key));
            }
        }
        // Only batches with orders or order-scoped records read lifecycle rows.
        self.orders.prefetch(self.inner, order_keys).await?;
        let store = &self.inner.store;
        let (entities, hashes) =
            tokio::try_join!(store.entities(&entity_keys), store.hashes_of(&hash_keys))?;
        self.pre_entities = entity_keys.into_iter().zip(entities).collect();
        self.pre_hashes = hash_keys
            .into_iter()
            .zip(hashes.into_iter().map(|(planned, _)| planned))
            .collect();
        Ok(())
    }

    fn finish(self) -> (ProcessBatch, BTreeSet<String>) {
        (self.batch, self.dests)
    }

    fn done(&mut self, e: &JournalEntry, status: JournalStatus, note: String, key: Option<String>) {
        self.batch.journal.push((e.id, status, Some(note), key));
    }

    pub(super) async fn entity(
        &mut self,
        kind: Kind,
        key: &str,
    ) -> Result<Option<Entity>, EngineError> {
        let k = (kind, key.to_string());
        if let Some(e) = self.entities.get(&k) {
            return Ok(Some(e.clone()));
        }
        if let Some(e) = self.pre_entities.get(&k) {
            return Ok(e.clone());
        }
        Ok(self.inner.store.entity(kind, key).await?)
    }

    async fn is_known_at(
        &mut self,
        endpoint: &str,
        kind: Kind,
        key: &str,
    ) -> Result<bool, EngineError> {
        let k = (endpoint.to_string(), kind, key.to_string());
        if self.known_at.contains(&k) {
            return Ok(true);
        }
        let known = self
            .inner
            .store
            .xref_external(endpoint, kind, key)
            .await?
            .is_some();
        if known {
            self.known_at.insert(k);
        }
        Ok(known)
    }

    pub(super) async fn planned_hash(
        &mut self,
        dest: &str,
        kind: Kind,
        key: &str,
    ) -> Result<Option<String>, EngineError> {
        let k = (dest.to_string(), kind, key.to_string());
        if let Some(h) = self.planned.get(&k) {
            return Ok(Some(h.clone()));
        }
        if let Some(h) = self.pre_hashes.get(&k) {
            return Ok(h.clone());
        }
        Ok(self.inner.store.hashes(dest, kind, key).await?.0)
    }

    async fn entry(&mut self, e: JournalEntry) -> Result<(), EngineError> {
        let flows: Vec<&FlowConfig> = self.inner.config.flows_for(e.kind, &e.endpoint).collect();
        if flows.is_empty() {
            self.done(
                &e,
                JournalStatus::Processed,
                "no flow takes this kind from this endpoint".into(),
                None,
            );
            return Ok(());
        }
        let record = record_of(&e);
        // Resolve: known xref, else correlate by natural key.
        let xk = (e.endpoint.clone(), e.kind, e.external_id.clone());
        let known = match (self.xref_keys.get(&xk), self.pre_keys.get(&xk)) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(pre)) => pre.clone(),
            (None, None) => {
                self.inner
                    .store
                    .xref_key(&e.endpoint, e.kind, &e.external_id)
                    .await?
            }
        };
        let mut key = match known {
            Some(k) => k,
            None => match natural_key(e.kind, &record, &e.endpoint) {
                Ok(k) => {
                    self.xref_keys.insert(xk, k.clone());
                    self.known_at
                        .insert((e.endpoint.clone(), e.kind, k.clone()));
                    self.batch.xrefs.push(Xref {
                        endpoint: e.endpoint.clone(),
                        kind: e.kind,
                        external_id: e.external_id.clone(),
                        key: k.clone(),
                    });
                    k
                }
                Err(err) => {
                    let reason = format!("cannot identify the record: {err}");
                    self.reject(&e, reason);
                    return Ok(());
                }
            },
        };
        let mut current = self.entity(e.kind, &key).await?;
        // A store from before order-scoped keys may map this endpoint's id to another order's
        // record keyed by the bare id (see `legacy_miscorrelation`): the record is its own.
        if let Some(own) = current
            .as_ref()
            .and_then(|cur| legacy_miscorrelation(e.kind, &key, cur, &e.endpoint, &record))
        {
            key = own;
            current = self.entity(e.kind, &key).await?;
        }
        if let Some(cur) = &current {
            if let Some(prev) = cur.versions.get(&e.endpoint) {
                if is_older(&e.version, prev) {
                    let note = format!(
                        "stale: version {} is older than {} already applied",
                        e.version, prev
                    );
                    self.done(&e, JournalStatus::Processed, note, Some(key));
                    return Ok(());
                }
            }
        }
        // An ERP order superseded by cancel-and-replace reports the fate of that ERP order (its
        // cancellation, for the replacement), not of the canonical order: skipped, not merged.
        if let Some(note) = superseded(
            e.kind,
            &key,
            &e.endpoint,
            self.orders.reference(&key).as_deref(),
            &record,
        ) {
            self.done(&e, JournalStatus::Processed, note, Some(key));
            return Ok(());
        }
        // Order-scoped records are keyed `{order}:{id}`, so the same id under two orders is
        // two records. Only an xref can resolve a record to a key of another order (a record
        // whose `order` changed at its source, or an endpoint reusing an external id): refused
        // visibly rather than moved or merged.
        if let Some(reason) = current
            .as_ref()
            .and_then(|cur| other_order(e.kind, &key, &cur.state, &record))
        {
            self.reject(&e, reason);
            return Ok(());
        }
        let ownership = self
            .inner
            .config
            .ownership
            .get(&e.kind)
            .cloned()
            .unwrap_or_default();
        let outcome = merge(
            current.as_ref().map(|c| &c.state),
            &record,
            &e.endpoint,
            &ownership,
        );
        for c in &outcome.conflicts {
            self.batch.audit.push(AuditEvent {
                at: self.now,
                event: "conflict".into(),
                endpoint: Some(e.endpoint.clone()),
                kind: Some(e.kind),
                key: Some(key.clone()),
                detail: json!({"field": c.field, "owner": c.owner, "attempted": c.attempted,
                               "kept": c.kept, "journal_id": e.id}),
            });
        }
        // The order lifecycle: tracked in this same batch, before the entity is written. A
        // refused order change is not applied at all (see `orders.rs`).
        let mut order_note = String::new();
        self.edit = None;
        if outcome.changed || current.is_none() {
            if e.kind == Kind::Order {
                match self
                    .track_order(&e, &key, current.as_ref(), &outcome.state)
                    .await?
                {
                    super::orders::Tracked::Apply { note } => order_note = note,
                    super::orders::Tracked::Reject(reason) => {
                        self.reject_order(&e, &key, reason);
                        return Ok(());
                    }
                }
            } else if e.kind.is_order_scoped() {
                order_note = self.track_child(&e, &key, &outcome.state).await?;
            }
        }
        let mut versions = current
            .as_ref()
            .map(|c| c.versions.clone())
            .unwrap_or_default();
        versions.insert(e.endpoint.clone(), e.version.clone());
        let hash = content_hash(&outcome.state);
        let entity = Entity {
            kind: e.kind,
            key: key.clone(),
            state: outcome.state.clone(),
            hash: hash.clone(),
            versions,
            updated_at: self.now,
        };
        self.entities.insert((e.kind, key.clone()), entity);
        // The stock pool's ledger takes every figure of its source, changed or not: a figure's
        // version may release reservations even when the numbers look the same.
        let pool = self
            .inner
            .pool
            .as_ref()
            .filter(|p| e.kind == Kind::Stock && p.cfg.source == e.endpoint);
        if let Some(pool) = pool {
            // `[inventory] release_grace`: for orders whose acceptance carried no version
            // comparable with the figures, time decides (see `Store::update_levels`).
            self.batch.release_grace_ms =
                Some(i64::try_from(pool.cfg.release_grace.as_millis()).unwrap_or(i64::MAX));
            if let Some(update) = level_update(&record, &e.version, e.received_at) {
                self.batch.levels.push(update);
            }
        }
        self.batch.entities.push(EntityWrite {
            kind: e.kind,
            key: key.clone(),
            state: outcome.state.clone(),
            hash,
            endpoint: e.endpoint.clone(),
            version: e.version.clone(),
            at: self.now,
        });
        if !outcome.changed {
            let note = if outcome.conflicts.is_empty() {
                "unchanged (echo or repeat)".to_string()
            } else {
                format!(
                    "unchanged: {} field(s) owned by another endpoint ignored",
                    outcome.conflicts.len()
                )
            };
            self.done(&e, JournalStatus::Processed, note, Some(key));
            return Ok(());
        }
        let mut planned = 0usize;
        for flow in flows {
            for dest in &flow.to {
                if dest == &e.endpoint {
                    continue;
                }
                // Pool channels get available-to-sell from the pool, not per-location copies.
                if pool.is_some_and(|p| p.is_channel(dest)) {
                    continue;
                }
                if self
                    .plan(
                        flow,
                        dest,
                        e.kind,
                        &key,
                        &outcome.state,
                        &e.endpoint,
                        Some(e.id),
                        e.received_at,
                    )
                    .await?
                {
                    planned += 1;
                }
            }
        }
        let price_note = if e.kind == Kind::Order && current.is_none() {
            self.check_prices(&e, &key, &outcome.state)
        } else {
            String::new()
        };
        self.edit = None;
        self.done(
            &e,
            JournalStatus::Processed,
            format!("applied; {planned} delivery(ies) planned{price_note}{order_note}"),
            Some(key),
        );
        Ok(())
    }

    /// Check a newly seen channel order's line prices against the price index: a
    /// `price_mismatch` audit event per line off by more than the tolerance, and a note suffix
    /// naming them (see `runtime/pricing.rs`). Never blocks the order.
    fn check_prices(&mut self, e: &JournalEntry, key: &str, order: &Value) -> String {
        let (Some(cfg), Some(index)) = (&self.inner.config.pricing, &self.inner.prices) else {
            return String::new();
        };
        let from_channel = order.get("channel").and_then(Value::as_str) == Some(&e.endpoint);
        if !cfg.check_orders || !from_channel {
            return String::new();
        }
        let check = super::pricing::check_order(index, cfg, order, self.now);
        let mut parts = Vec::new();
        for m in &check.mismatches {
            self.batch.audit.push(AuditEvent {
                at: self.now,
                event: "price_mismatch".into(),
                endpoint: Some(e.endpoint.clone()),
                kind: Some(Kind::Order),
                key: Some(key.to_string()),
                detail: json!({"order": key, "line": m.line, "line_id": m.line_id, "sku": m.sku,
                               "quantity": m.quantity, "expected_minor": m.expected_minor,
                               "actual_minor": m.actual_minor, "list": m.list, "rule": m.rule,
                               "journal_id": e.id}),
            });
            parts.push(format!(
                "line {} ({}) expected {} got {}",
                m.line, m.sku, m.expected_minor, m.actual_minor
            ));
        }
        let mut note = String::new();
        if !parts.is_empty() {
            note.push_str(&format!("; price_mismatch: {}", parts.join(", ")));
        }
        if !check.unpriced.is_empty() {
            let lines: Vec<String> = check.unpriced.iter().map(|i| i.to_string()).collect();
            note.push_str(&format!("; no hub price for line(s) {}", lines.join(", ")));
        }
        note
    }

    fn reject(&mut self, e: &JournalEntry, reason: String) {
        self.batch.dead_letters.push(NewDeadLetter {
            direction: Direction::Inbound,
            endpoint: e.endpoint.clone(),
            kind: e.kind,
            key: e.external_id.clone(),
            payload: e.payload.clone(),
            reason: reason.clone(),
            journal_id: Some(e.id),
            flow: None,
            at: self.now,
        });
        self.done(e, JournalStatus::Rejected, reason, None);
    }

    /// Plan one delivery of `state` to `dest`. Returns whether an item was enqueued.
    #[allow(clippy::too_many_arguments)]
    async fn plan(
        &mut self,
        flow: &FlowConfig,
        dest: &str,
        kind: Kind,
        key: &str,
        state: &Value,
        source: &str,
        journal_id: Option<i64>,
        captured_at: Millis,
    ) -> Result<bool, EngineError> {
        // Shipments, invoices, payments and refunds from the ERP go back only to the order's
        // channel; from the order's own channel (a refund, a captured payment) they go wherever
        // their flow sends them (the ERP).
        if kind.is_order_scoped() {
            if let Some(order_key) = state.get("order").and_then(Value::as_str) {
                let channel = self
                    .entity(Kind::Order, order_key)
                    .await?
                    .and_then(|o| {
                        o.state
                            .get("channel")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .or_else(|| order_key.split_once('/').map(|(c, _)| c.to_string()));
                if channel.as_deref().is_some_and(|c| c != dest && c != source) {
                    return Ok(false);
                }
            }
        }
        let vars = MapVars {
            dest: dest.to_string(),
            source: source.to_string(),
            kind: kind.as_str().to_string(),
        };
        // The filter and the mapping, in one trip to a jq thread.
        let mapping = flow.map_out.get(dest).or_else(|| flow.map_out.get("*"));
        let planned = self
            .inner
            .unless_shutdown(filter_then_map(flow.filter.as_ref(), mapping, state, &vars))
            .await
            .ok_or(EngineError::ShuttingDown)?;
        let payload = match planned {
            Ok(Filtered::Dropped) => return Ok(false),
            Err((Stage::Filter, err)) => {
                self.dead_out(
                    flow,
                    dest,
                    kind,
                    key,
                    state,
                    journal_id,
                    format!("filter of flow `{}` failed: {err}", flow.name),
                );
                return Ok(false);
            }
            Ok(Filtered::Kept(payload)) => Ok(payload),
            Err((Stage::Mapping, err)) => Err(err),
        };
        // A refund for a destination that cannot record refunds: an operator must (the config
        // is accepted; see `check_capabilities`).
        if kind == Kind::Refund && !self.can_write(dest, kind) {
            let connector = self
                .inner
                .connectors
                .get(dest)
                .map_or("?", |c| c.connector_type());
            self.dead_out(
                flow,
                dest,
                kind,
                key,
                state,
                journal_id,
                format!(
                    "needs attention: `{dest}` ({connector}) cannot record refunds; record this \
                     refund (credit note / return) there by hand, then drop this dead letter"
                ),
            );
            return Ok(false);
        }
        let mut payload = match payload {
            Ok(v) => v,
            Err(err) => {
                self.dead_out(
                    flow,
                    dest,
                    kind,
                    key,
                    state,
                    journal_id,
                    format!("mapping of flow `{}` for `{dest}` failed: {err}", flow.name),
                );
                return Ok(false);
            }
        };
        // An ERP order keyed by another reference (cancel-and-replace) is addressed by it.
        let channel_of_order =
            kind == Kind::Order && state.get("channel").and_then(Value::as_str) == Some(dest);
        let replacing = match (&self.edit, kind == Kind::Order && !channel_of_order) {
            (Some(edit), true) => Some(edit.clone()),
            _ => None,
        };
        if kind == Kind::Order && !channel_of_order {
            if let Some(r) = self.orders.reference(key) {
                set_reference(&mut payload, Some(&r));
            }
        }
        let hash = content_hash(&payload);
        let previous = self.planned_hash(dest, kind, key).await?;
        if previous.as_deref() == Some(hash.as_str()) {
            return Ok(false);
        }
        let mut op = operation(flow, kind, state, previous.is_some());
        let mut coalesce = kind.is_state();
        if let (Some(edit), true, "update") = (&replacing, previous.is_some(), op.as_str()) {
            if self.can_amend(dest) {
                op = "amend".into();
            } else if edit.new_reference.is_some() {
                // Cancel the current ERP order, then create the replacement (this item).
                let mut cancel = payload.clone();
                set_reference(&mut cancel, edit.old_reference.as_deref());
                if let Some(obj) = cancel.as_object_mut() {
                    obj.insert("status".into(), Value::String("cancelled".into()));
                }
                self.batch.items.push(NewItem {
                    dest: dest.to_string(),
                    kind,
                    key: key.to_string(),
                    op: "cancel".into(),
                    hash: content_hash(&cancel),
                    payload: cancel,
                    flow: flow.name.clone(),
                    journal_id,
                    captured_at,
                    waiting_on: Vec::new(),
                    coalesce: false,
                    not_before: self.now,
                });
                op = "create".into();
                coalesce = false;
            }
        }
        let mut waiting_on = Vec::new();
        let reachable = reachable_kinds(&self.inner.config, dest);
        for (dk, dkey) in dependencies(kind, state) {
            if reachable.contains(&dk) && !self.is_known_at(dest, dk, &dkey).await? {
                waiting_on.push((dk, dkey));
            }
        }
        self.planned
            .insert((dest.to_string(), kind, key.to_string()), hash.clone());
        self.batch.items.push(NewItem {
            dest: dest.to_string(),
            kind,
            key: key.to_string(),
            op,
            payload,
            hash,
            flow: flow.name.clone(),
            journal_id,
            captured_at,
            waiting_on,
            coalesce,
            not_before: self.now,
        });
        self.dests.insert(dest.to_string());
        Ok(true)
    }

    fn can_write(&self, dest: &str, kind: Kind) -> bool {
        self.inner
            .connectors
            .get(dest)
            .is_some_and(|c| c.capabilities().kind(kind).write.upsert)
    }

    fn can_amend(&self, dest: &str) -> bool {
        self.inner
            .connectors
            .get(dest)
            .is_some_and(|c| c.capabilities().kind(Kind::Order).write.amend)
    }

    #[allow(clippy::too_many_arguments)]
    fn dead_out(
        &mut self,
        flow: &FlowConfig,
        dest: &str,
        kind: Kind,
        key: &str,
        state: &Value,
        journal_id: Option<i64>,
        reason: String,
    ) {
        tracing::warn!(flow = %flow.name, dest, %kind, key, %reason, "dead-lettered while planning");
        self.batch.dead_letters.push(NewDeadLetter {
            direction: Direction::Outbound,
            endpoint: dest.to_string(),
            kind,
            key: key.to_string(),
            payload: state.clone(),
            reason,
            journal_id,
            flow: Some(flow.name.clone()),
            at: self.now,
        });
    }
}

/// The ledger figure in a validated canonical stock record.
fn level_update(
    record: &Value,
    version: &str,
    captured_at: Millis,
) -> Option<concord_store::LevelUpdate> {
    Some(concord_store::LevelUpdate {
        sku: record.get("sku")?.as_str()?.to_string(),
        location: record.get("location")?.as_str()?.to_string(),
        on_hand: record.get("on_hand")?.as_i64()?,
        committed: record.get("committed").and_then(Value::as_i64).unwrap_or(0),
        incoming: record
            .get("incoming")
            .cloned()
            .unwrap_or_else(|| Value::Array(vec![])),
        version: version.to_string(),
        captured_at,
    })
}

/// The entry's record as processed: orders remember the channel they were sold through.
fn record_of(e: &JournalEntry) -> Value {
    let mut record = e.payload.clone();
    if e.kind == Kind::Order && record.get("channel").is_none_or(Value::is_null) {
        if let Some(obj) = record.as_object_mut() {
            obj.insert("channel".into(), Value::String(e.endpoint.clone()));
        }
    }
    record
}

/// Set (or, with `None`, remove) an order payload's `reference`.
pub(super) fn set_reference(payload: &mut Value, reference: Option<&str>) {
    if let Some(obj) = payload.as_object_mut() {
        match reference {
            Some(r) => {
                obj.insert("reference".into(), Value::String(r.to_string()));
            }
            None => {
                obj.remove("reference");
            }
        }
    }
}

/// The write operation for a planned delivery (also used by dead-letter replay).
pub(super) fn operation(flow: &FlowConfig, kind: Kind, state: &Value, sent_before: bool) -> String {
    if kind == Kind::Order {
        let cancelled = state.get("status").and_then(Value::as_str) == Some("cancelled");
        return if cancelled {
            "cancel"
        } else if sent_before {
            "update"
        } else {
            "create"
        }
        .to_string();
    }
    if flow.pattern == Pattern::Correlation {
        "update_only".into()
    } else if kind == Kind::Refund {
        // A refund is a new document at the destination (credit note), idempotent by its id.
        "create".into()
    } else {
        "upsert".into()
    }
}

/// Is the change's version older than the one already applied from its endpoint? The one
/// order of versions, [`concord_core::version::compare`]: integers of any length numerically,
/// RFC 3339 date-times as instants (offsets, daylight saving); what cannot be ordered (content
/// hashes, mixed shapes) is never older, so the change is applied.
fn is_older(new: &str, applied: &str) -> bool {
    concord_core::version::is_older(new, applied)
}

#[cfg(test)]
mod tests {
    use super::is_older;

    #[test]
    fn versions_order_only_when_comparable() {
        assert!(is_older("9", "10"));
        assert!(!is_older("10", "9"));
        assert!(is_older("2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z"));
        assert!(!is_older("abc", "abd"), "content hashes are unordered");
        // Offsets: 10:00+02:00 is 08:00 UTC, older than 09:30 UTC — it must not roll back.
        assert!(is_older(
            "2026-03-01T10:00:00+02:00",
            "2026-03-01T09:30:00+00:00"
        ));
        // Daylight-saving fall-back: 02:10+01:00 is after 02:30+02:00 — applied, not stale.
        assert!(!is_older(
            "2026-10-25T02:10:00+01:00",
            "2026-10-25T02:30:00+02:00"
        ));
        assert!(is_older("99999999999999999999", "100000000000000000000"));
    }
}

//! SQLite implementation of [`crate::Store`]: the embedded default, one process per database.
//!
//! Layout: one writer thread with group commit (`writer`) runs every mutating method; a small
//! pool of `query_only` connections serves the read-only methods on tokio's blocking threads, in
//! parallel with the writer thanks to WAL. The write path, one file per stage: `journal`
//! (ingest), `apply` (a processing step), `enqueue` (an outbox item), `outbox` (claim and
//! settle), `amend` (a refused amend's fallback), `dead_letters`; the stock ledger in
//! `ledger`; the order lifecycle in `orders`, alert episodes in `alerts`, history pruning
//! in `retention`, small standalone writes (audit, flow pauses) in `writes`, the other reads
//! in `reads`. `open` opens the database (options, private files, migrations, the writer
//! thread); the schema and its versioned migrations live in `schema`, column encodings in
//! `codec`. Every business decision those files act on is made in the store-neutral
//! `crate::ledger` and `crate::sync`: this module loads rows and writes plans.
//!
//! This module must never write outside the writer thread and never block an async worker
//! thread on SQLite (reads go through `spawn_blocking`, writes through a channel).

mod alerts;
mod amend;
mod apply;
mod codec;
mod dead_letters;
mod enqueue;
mod journal;
mod ledger;
mod open;
mod orders;
mod outbox;
mod reads;
mod reconcile;
mod retention;
pub(crate) mod schema;
mod writer;
mod writes;

use crate::alerts::{AlertEpisode, AlertId, AlertNotice, AlertObservation};
use crate::{
    AuditEvent, Capture, Claimed, CursorUpdate, DeadLetter, DeadLetterFilter, DeadLetterId,
    DirtySku, Entity, IngestOutcome, ItemState, JournalEntry, JournalId, LevelOutcome, LevelUpdate,
    OutboxItem, ProcessBatch, Replay, Reservation, ReservationState, ReserveOutcome,
    ReserveRequest, Result, Settlement, StockLevel, Store, StoreError, StoreStats, StoredAudit,
    TransitionError,
};
use async_trait::async_trait;
use concord_core::{Kind, Millis};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use tokio::sync::Semaphore;
use writer::{Job, WriterCtx};

pub use open::{SqliteOptions, Synchronous};

/// The SQLite store. Cheap to share behind an `Arc`; dropping it (or [`SqliteStore::close`])
/// lets the writer finish what is queued, then stops it and closes the database.
pub struct SqliteStore {
    path: PathBuf,
    /// `None` once closed.
    writer: Mutex<Option<mpsc::Sender<Box<dyn Job>>>>,
    /// One permit per place in the writer's queue (`SqliteOptions::write_queue`); a job holds
    /// its permit until it is answered.
    queue: Arc<Semaphore>,
    thread: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// One permit per reader connection: waiting for a free connection happens here, on the
    /// async side, instead of parking a blocking thread.
    reader_permits: Arc<Semaphore>,
    /// Write transactions committed (see [`writer::WriterCtx::groups`]).
    groups: Arc<AtomicU64>,
}

/// Lock a mutex whose data stays valid even if a holder panicked (a sender, a handle, a pool of
/// connections): poisoning carries no meaning for them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SqliteStore {
    /// Write transactions committed since open: with group commit, usually far fewer than write
    /// calls under load.
    pub fn write_groups(&self) -> u64 {
        self.groups.load(Ordering::Relaxed)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop accepting work, let the writer commit what is queued, and close the database. Later
    /// calls fail with [`StoreError::Closed`]. Idempotent.
    pub async fn close(&self) {
        self.reader_permits.close();
        // Writers waiting for room are told at once; queued jobs keep their slots and commit.
        self.queue.close();
        let handle = self.stop_writer();
        if let Some(handle) = handle {
            // Joining blocks until the last group commits: do it off the async workers.
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        lock(&self.readers).clear();
    }

    /// Drop the sender (the writer exits once its queue is empty) and hand back its thread.
    fn stop_writer(&self) -> Option<JoinHandle<()>> {
        lock(&self.writer).take();
        lock(&self.thread).take()
    }

    /// Run `f` on the writer thread as part of the next group commit. When the writer's queue
    /// is full this waits for room, or fails with [`StoreError::Busy`] inside
    /// [`crate::admission::fail_fast`] (see there).
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut WriterCtx) -> Result<T> + Send + 'static,
    {
        let queue = Arc::clone(&self.queue);
        let slot = if crate::admission::fails_fast() {
            queue.try_acquire_owned().map_err(|e| match e {
                tokio::sync::TryAcquireError::NoPermits => StoreError::Busy,
                tokio::sync::TryAcquireError::Closed => StoreError::Closed,
            })?
        } else {
            queue
                .acquire_owned()
                .await
                .map_err(|_| StoreError::Closed)?
        };
        let (job, reply) = writer::job(f, slot);
        {
            let guard = lock(&self.writer);
            let sender = guard.as_ref().ok_or(StoreError::Closed)?;
            sender.send(job).map_err(|_| StoreError::Closed)?;
        }
        // A dropped reply means the writer thread is gone.
        reply.await.map_err(|_| StoreError::Closed)?
    }

    /// Run `f` on a reader connection, on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let permit = self
            .reader_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let conn = lock(&pool).pop().ok_or(StoreError::Closed)?;
            let out = f(&conn);
            lock(&pool).push(conn);
            drop(permit);
            out
        })
        .await
        .map_err(|e| StoreError::Db(format!("read task: {e}")))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Blocks until the writer's last group commits (at most one group of work), so that the
        // database is closed when the store is gone and can be reopened right away.
        if let Some(handle) = self.stop_writer() {
            if handle.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn is_exclusive(&self) -> bool {
        true
    }

    async fn ingest(
        &self,
        captures: Vec<Capture>,
        cursor: Option<CursorUpdate>,
    ) -> Result<Vec<IngestOutcome>> {
        self.write(move |c, _| journal::ingest(c, &captures, cursor.as_ref()))
            .await
    }

    async fn cursor(&self, endpoint: &str, stream: &str) -> Result<Option<String>> {
        let (endpoint, stream) = (endpoint.to_owned(), stream.to_owned());
        self.read(move |c| reads::cursor(c, &endpoint, &stream))
            .await
    }

    async fn pending_journal(&self, limit: usize) -> Result<Vec<JournalEntry>> {
        self.read(move |c| reads::pending_journal(c, limit)).await
    }

    async fn journal_entry(&self, id: JournalId) -> Result<Option<JournalEntry>> {
        self.read(move |c| reads::journal_entry(c, id)).await
    }

    async fn journal(
        &self,
        endpoint: Option<&str>,
        kind: Option<Kind>,
        key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JournalEntry>> {
        let endpoint = endpoint.map(str::to_owned);
        let key = key.map(str::to_owned);
        self.read(move |c| reads::journal(c, endpoint.as_deref(), kind, key.as_deref(), limit))
            .await
    }

    async fn search_journal(&self, q: crate::JournalQuery) -> Result<Vec<JournalEntry>> {
        self.read(move |c| reads::search_journal(c, &q)).await
    }

    async fn set_flow_paused(&self, flow: &str, paused: bool, now: Millis) -> Result<bool> {
        let flow = flow.to_owned();
        self.write(move |c, _| writes::set_flow_paused(c, &flow, paused, now))
            .await
    }

    async fn paused_flows(&self) -> Result<Vec<String>> {
        self.read(reads::paused_flows).await
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(codec::db("ping the store"))
        })
        .await
    }

    async fn connector_state(&self, endpoint: &str) -> Result<Option<String>> {
        let endpoint = endpoint.to_owned();
        self.read(move |c| reads::connector_state(c, &endpoint))
            .await
    }

    async fn set_connector_state(&self, endpoint: &str, value: &str, now: Millis) -> Result<()> {
        let (endpoint, value) = (endpoint.to_owned(), value.to_owned());
        self.write(move |c, _| writes::set_connector_state(c, &endpoint, &value, now))
            .await
    }

    async fn create_session(
        &self,
        hash: &str,
        name: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<()> {
        let (hash, name) = (hash.to_owned(), name.to_owned());
        self.write(move |c, _| writes::create_session(c, &hash, &name, expires_at, now))
            .await
    }

    async fn session(&self, hash: &str, now: Millis) -> Result<Option<String>> {
        let hash = hash.to_owned();
        self.read(move |c| reads::session(c, &hash, now)).await
    }

    async fn delete_session(&self, hash: &str) -> Result<()> {
        let hash = hash.to_owned();
        self.write(move |c, _| writes::delete_session(c, &hash))
            .await
    }

    async fn entity(&self, kind: Kind, key: &str) -> Result<Option<Entity>> {
        let key = key.to_owned();
        self.read(move |c| reads::entity(c, kind, &key)).await
    }

    async fn xref_key(
        &self,
        endpoint: &str,
        kind: Kind,
        external_id: &str,
    ) -> Result<Option<String>> {
        let (endpoint, external_id) = (endpoint.to_owned(), external_id.to_owned());
        self.read(move |c| reads::xref_key(c, &endpoint, kind, &external_id))
            .await
    }

    async fn xref_external(&self, endpoint: &str, kind: Kind, key: &str) -> Result<Option<String>> {
        let (endpoint, key) = (endpoint.to_owned(), key.to_owned());
        self.read(move |c| reads::xref_external(c, &endpoint, kind, &key))
            .await
    }

    async fn hashes(
        &self,
        dest: &str,
        kind: Kind,
        key: &str,
    ) -> Result<(Option<String>, Option<String>)> {
        let (dest, key) = (dest.to_owned(), key.to_owned());
        self.read(move |c| reads::hashes(c, &dest, kind, &key))
            .await
    }

    async fn xref_keys(&self, ids: &[(String, Kind, String)]) -> Result<Vec<Option<String>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.read(move |c| reads::many(c, &ids, |c, (e, k, x)| reads::xref_key(c, e, *k, x)))
            .await
    }

    async fn xref_externals(&self, keys: &[(String, Kind, String)]) -> Result<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys = keys.to_vec();
        self.read(move |c| {
            reads::many(c, &keys, |c, (e, k, key)| {
                reads::xref_external(c, e, *k, key)
            })
        })
        .await
    }

    async fn entities(&self, keys: &[(Kind, String)]) -> Result<Vec<Option<Entity>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys = keys.to_vec();
        self.read(move |c| reads::many(c, &keys, |c, (k, key)| reads::entity(c, *k, key)))
            .await
    }

    async fn entities_of_kind(
        &self,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entity>> {
        let after = after.map(str::to_owned);
        self.read(move |c| reads::entities_of_kind(c, kind, after.as_deref(), limit))
            .await
    }

    async fn hashes_of(
        &self,
        keys: &[(String, Kind, String)],
    ) -> Result<Vec<(Option<String>, Option<String>)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys = keys.to_vec();
        self.read(move |c| reads::many(c, &keys, |c, (d, k, key)| reads::hashes(c, d, *k, key)))
            .await
    }

    async fn apply(&self, batch: ProcessBatch, now: Millis) -> Result<()> {
        self.write(move |c, ctx| apply::apply(c, ctx, &batch, now))
            .await
    }

    async fn claim(
        &self,
        dest: &str,
        limit: usize,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Vec<Claimed>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let dest = dest.to_owned();
        self.write(move |c, ctx| outbox::claim(c, ctx, &dest, limit, now, lease_until))
            .await
    }

    async fn settle(&self, outcomes: Vec<Settlement>) -> Result<usize> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        self.write(move |c, ctx| outbox::settle(c, ctx, &outcomes))
            .await
    }

    async fn recover_expired(&self, before: Millis) -> Result<usize> {
        self.write(move |c, _| outbox::recover_expired(c, before))
            .await
    }

    async fn next_due(&self, dest: &str) -> Result<Option<Millis>> {
        let dest = dest.to_owned();
        self.read(move |c| reads::next_due(c, &dest)).await
    }

    async fn items(
        &self,
        dest: Option<&str>,
        state: ItemState,
        limit: usize,
    ) -> Result<Vec<OutboxItem>> {
        let dest = dest.map(str::to_owned);
        self.read(move |c| reads::items(c, dest.as_deref(), state, limit))
            .await
    }

    async fn dead_letters(&self, filter: DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        self.read(move |c| reads::dead_letters(c, &filter)).await
    }

    async fn dead_letter(&self, id: DeadLetterId) -> Result<Option<DeadLetter>> {
        self.read(move |c| reads::dead_letter(c, id)).await
    }

    async fn replay_dead_letters(
        &self,
        replays: Vec<(DeadLetterId, Replay)>,
        now: Millis,
    ) -> Result<Vec<DeadLetterId>> {
        self.write(move |c, _| dead_letters::replay_dead_letters(c, &replays, now))
            .await
    }

    async fn drop_dead_letters(
        &self,
        ids: Vec<DeadLetterId>,
        now: Millis,
    ) -> Result<Vec<DeadLetterId>> {
        self.write(move |c, _| dead_letters::drop_dead_letters(c, &ids, now))
            .await
    }

    async fn record_audit(&self, events: Vec<AuditEvent>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.write(move |c, _| writes::record_audit(c, &events))
            .await
    }

    async fn audit_log(&self, limit: usize) -> Result<Vec<StoredAudit>> {
        self.read(move |c| reads::audit_log(c, limit)).await
    }

    async fn record_reconcile_run(&self, run: crate::NewReconcileRun) -> Result<i64> {
        self.write(move |c, _| reconcile::record(c, &run)).await
    }

    async fn reconcile_runs(&self, limit: usize) -> Result<Vec<crate::StoredReconcileRun>> {
        self.read(move |c| reconcile::list(c, limit)).await
    }

    async fn reconcile_run(&self, id: i64) -> Result<Option<crate::StoredReconcileRun>> {
        self.read(move |c| reconcile::one(c, id)).await
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.read(reads::stats).await
    }

    async fn recount_stats(&self) -> Result<StoreStats> {
        self.read(reads::recount_stats).await
    }

    async fn update_levels(
        &self,
        updates: Vec<LevelUpdate>,
        release_grace_ms: i64,
        now: Millis,
    ) -> Result<Vec<LevelOutcome>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |c, ctx| {
            ledger::levels::update_levels(c, ctx, &updates, Some(release_grace_ms), now)
        })
        .await
    }

    async fn levels(&self, skus: &[String]) -> Result<Vec<StockLevel>> {
        let skus = skus.to_vec();
        self.read(move |c| ledger::reads::levels(c, &skus)).await
    }

    async fn reserve(&self, req: ReserveRequest) -> Result<ReserveOutcome> {
        self.write(move |c, ctx| ledger::reserve::reserve(c, ctx, &req))
            .await
    }

    async fn reservation(&self, id: &str) -> Result<Option<Reservation>> {
        let id = id.to_owned();
        self.read(move |c| ledger::reads::reservation(c, &id)).await
    }

    async fn commit_reservation(
        &self,
        id: &str,
        order: &str,
        now: Millis,
    ) -> Result<Result<Reservation, TransitionError>> {
        let (id, order) = (id.to_owned(), order.to_owned());
        self.write(move |c, ctx| ledger::orders::commit_reservation(c, ctx, &id, &order, now))
            .await
    }

    async fn cancel_reservation(
        &self,
        id: &str,
        now: Millis,
    ) -> Result<Result<Reservation, TransitionError>> {
        let id = id.to_owned();
        self.write(move |c, ctx| ledger::orders::cancel_reservation(c, ctx, &id, now))
            .await
    }

    async fn expire_reservations(&self, now: Millis) -> Result<Vec<Reservation>> {
        self.write(move |c, ctx| ledger::orders::expire_reservations(c, ctx, now))
            .await
    }

    async fn next_expiry(&self) -> Result<Option<Millis>> {
        self.read(ledger::reads::next_expiry).await
    }

    async fn reservations(
        &self,
        state: Option<ReservationState>,
        sku: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Reservation>> {
        let sku = sku.map(str::to_owned);
        self.read(move |c| ledger::reads::reservations(c, state, sku.as_deref(), limit))
            .await
    }

    async fn dirty_skus(&self, limit: usize) -> Result<Vec<DirtySku>> {
        self.read(move |c| ledger::reads::dirty_skus(c, limit))
            .await
    }

    async fn observe_alert(&self, obs: AlertObservation, now: Millis) -> Result<AlertEpisode> {
        self.write(move |c, _| alerts::observe(c, &obs, now)).await
    }

    async fn resolve_alert(
        &self,
        rule: &str,
        subject: &str,
        now: Millis,
    ) -> Result<Option<AlertEpisode>> {
        let (rule, subject) = (rule.to_owned(), subject.to_owned());
        self.write(move |c, _| alerts::resolve(c, &rule, &subject, now))
            .await
    }

    async fn mark_alert_notified(
        &self,
        id: AlertId,
        notice: AlertNotice,
        now: Millis,
    ) -> Result<bool> {
        self.write(move |c, _| alerts::mark_notified(c, id, notice, now))
            .await
    }

    async fn alert_episodes(&self, open_only: bool, limit: usize) -> Result<Vec<AlertEpisode>> {
        self.read(move |c| alerts::episodes(c, open_only, limit))
            .await
    }

    async fn unnotified_alerts(&self, limit: usize) -> Result<Vec<AlertEpisode>> {
        self.read(move |c| alerts::unnotified(c, limit)).await
    }

    async fn oversold_positions(&self, limit: usize) -> Result<Vec<StockLevel>> {
        self.read(move |c| alerts::oversold_positions(c, limit))
            .await
    }
    async fn adjust_order_reservation(
        &self,
        req: crate::AdjustRequest,
    ) -> Result<crate::AdjustOutcome> {
        self.write(move |c, ctx| ledger::orders::adjust_order_reservation(c, ctx, &req))
            .await
    }

    async fn order_lifecycles(&self, keys: &[String]) -> Result<Vec<Option<crate::OrderSummary>>> {
        let keys = keys.to_vec();
        self.read(move |c| orders::order_lifecycles(c, &keys)).await
    }

    async fn orders(&self, filter: crate::OrderFilter) -> Result<Vec<crate::OrderSummary>> {
        self.read(move |c| orders::orders(c, &filter)).await
    }

    async fn order_counts(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        self.read(orders::order_counts).await
    }

    async fn order_history(&self, key: &str) -> Result<Option<crate::OrderHistory>> {
        let key = key.to_owned();
        self.read(move |c| orders::order_history(c, &key)).await
    }

    async fn parked(&self, limit: usize) -> Result<Vec<crate::ParkedItem>> {
        self.read(move |c| orders::parked(c, limit)).await
    }

    async fn prune_history(&self, before: Millis, batch: usize) -> Result<crate::Pruned> {
        self.write(move |c, _| retention::prune(c, before, batch))
            .await
    }
}

#[cfg(test)]
mod tests;

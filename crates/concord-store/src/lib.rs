//! The store: Concord's only durable state, behind one [`Store`] trait.
//!
//! Every implementation (SQLite, PostgreSQL) must pass the same [`conformance`] suite.
//! Methods are *transactional units* of the sync path, not generic SQL: each one commits
//! atomically or not at all, so the engine can promise "a webhook is acknowledged only after its
//! event is stored" and "a cursor never moves past a change that was not stored".
//!
//! Architecture invariants:
//! - Connectors never touch the store; only the engine (and the CLI's admin commands) do.
//! - The store never interprets payloads beyond what it indexes (kind, keys, hashes); merging,
//!   mapping and planning are the engine's. One exception, because it must happen inside a
//!   settlement's transaction: cancel-and-replace after a refused amend (`sync::amend`) sets
//!   an order payload's `reference` (and the cancel's `status`), and the lifecycle row's facts
//!   `accepted`, `reference` and `replacements` (`sync::lifecycle`).
//! - Every business decision of a write — the stock ledger's (`ledger/`: routing, watermarks,
//!   acceptance, edits, re-holds, transitions) and the sync path's (`sync/`: dedupe, the order
//!   of a processing step, coalescing, settlement, a refused amend's fallback) — is made once,
//!   in store-neutral code over the rows a backend loaded; a backend does SQL and locking only.
//! - Outbox settlements are conditional on the claim token (River's way): a worker whose lease
//!   expired can never complete work that was handed to another.

pub mod admission;
pub mod alerts;
pub mod audit;
pub(crate) mod codec;
pub mod conformance;
pub mod copy;
pub mod dead_letters;
pub mod entities;
pub mod inventory;
pub mod journal;
pub(crate) mod ledger;
pub mod orders;
pub mod outbox;
pub mod postgres;
pub mod reconcile;
pub mod sqlite;
pub(crate) mod stats;
pub(crate) mod sync;

use async_trait::async_trait;
use concord_core::{Kind, Millis};
use serde::{Deserialize, Serialize};

pub use alerts::{AlertEpisode, AlertId, AlertNotice, AlertObservation};
pub use audit::{
    AuditEvent, StoredAudit, MAX_AUDIT_DETAIL_BYTES, MAX_AUDIT_EVENT_BYTES, MAX_AUDIT_FIELD_BYTES,
};
pub use dead_letters::{
    DeadLetter, DeadLetterFilter, DeadLetterState, Direction, NewDeadLetter, Replay,
};
pub use entities::{Entity, EntityWrite, Xref};
pub use inventory::{
    compare_versions, DirtySku, Feed, LevelOutcome, LevelUpdate, Reservation, ReservationLine,
    ReservationState, ReserveOutcome, ReserveRequest, StockLevel, TransitionError,
};
pub use journal::{
    Capture, CursorUpdate, IngestOutcome, JournalEntry, JournalQuery, JournalStatus,
};
pub use orders::{
    AdjustOutcome, AdjustRequest, DeliveryAttempt, NewOrderEvent, OrderEvent, OrderFilter,
    OrderHistory, OrderSummary, OrderWrite, ParkedItem,
};
pub use outbox::{Claimed, EditFallback, ItemState, NewItem, OutboxItem, Settlement};
pub use postgres::{
    InstanceLock, InstanceLockError, PgOptions, PgStore, INSTANCE_HEARTBEAT,
    INSTANCE_HEARTBEAT_TIMEOUT, INSTANCE_LOCK_KEY,
};
pub use reconcile::{NewReconcileRun, StoredReconcileRun};
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};

pub type JournalId = i64;
pub type ItemId = i64;
pub type DeadLetterId = i64;

/// Errors of a store implementation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error (message includes the statement's purpose).
    #[error("database error: {0}")]
    Db(String),
    /// A stored JSON value could not be decoded (corruption or a newer schema).
    #[error("stored data could not be decoded: {0}")]
    Decode(String),
    /// The store was closed or its writer stopped.
    #[error("store is closed")]
    Closed,
    /// This store does not implement the operation (yet).
    #[error("this store does not support {0}")]
    Unsupported(&'static str),
    /// A ledger figure, or a sum of figures, would leave the range the ledger keeps (an
    /// overflowing quantity): refused, nothing written. The message names the position or line.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// Opening or migrating the database failed.
    #[error("cannot open store at {path}: {reason}")]
    Open { path: String, reason: String },
    /// The store's write queue is full and the caller asked not to wait
    /// ([`admission::fail_fast`]): nothing was written; try again shortly.
    #[error("the store is busy: its write queue is full; nothing was written, try again shortly")]
    Busy,
    /// The database aborted the transaction because of a concurrent one (PostgreSQL: a
    /// serialization failure or a deadlock) and it still failed after the store's bounded
    /// retries: nothing was written; try again.
    #[error("concurrent transactions conflicted; nothing was written, try again: {0}")]
    Conflict(String),
    /// The database server could not be reached, or the connection was lost (PostgreSQL:
    /// refused, reset, shut down, SQLSTATE class 08): a failure of the store as a whole, not of
    /// what was being written. Nothing was written, or the transaction's outcome is what the
    /// server decided; try again.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything one processing step decided, committed at once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessBatch {
    /// Journal entries this batch processed: (id, status, note, resolved key).
    pub journal: Vec<(JournalId, JournalStatus, Option<String>, Option<String>)>,
    pub entities: Vec<EntityWrite>,
    /// Inserted if absent (an existing xref is never changed by processing).
    pub xrefs: Vec<Xref>,
    /// Enqueued in order; each also sets the planned hash of its (dest, kind, key).
    pub items: Vec<NewItem>,
    pub dead_letters: Vec<NewDeadLetter>,
    pub audit: Vec<AuditEvent>,
    /// ERP figures for the stock ledger, applied exactly as [`Store::update_levels`] does.
    pub levels: Vec<LevelUpdate>,
    /// Dirty SKUs whose channel figures this batch planned: cleared unless marked again since
    /// (their generation changed). Applied after `levels`.
    pub clean: Vec<DirtySku>,
    /// The `release_grace_ms` of [`Store::update_levels`] for `levels`. `None` (the default)
    /// disables the time-based release fallback for this batch: only a figure whose version is
    /// comparable with, and newer than, the order's accepted version releases.
    pub release_grace_ms: Option<i64>,
    /// Order lifecycle changes (state, facts, events, children), written with the entity
    /// changes that caused them.
    pub orders: Vec<OrderWrite>,
    /// Cancelled orders (canonical keys): every active reservation committed to one is
    /// cancelled (its unreleased lines released) in this transaction.
    pub cancel_reservations: Vec<String>,
}

/// Queue figures for one destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueStats {
    pub dest: String,
    pub pending: u64,
    pub inflight: u64,
    pub parked: u64,
    pub done: u64,
    pub dead: u64,
    /// Oldest `captured_at` among pending/inflight/parked items.
    pub oldest_captured_at: Option<Millis>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreStats {
    pub journal_total: u64,
    pub journal_pending: u64,
    pub journal_rejected: u64,
    pub dead_letters_open: u64,
    pub queues: Vec<QueueStats>,
}

/// Concord's durable state. See the module docs for the invariants every implementation keeps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// True when this store serves exactly one Concord process (SQLite): at start-up every
    /// in-flight claim then belongs to a dead process and can be released at once.
    fn is_exclusive(&self) -> bool;

    // ---- capture ----

    /// Journal `captures` and move `cursor` in one transaction. Duplicates (same endpoint, kind,
    /// external id and version as the last journaled one) are not stored. Rejected captures are
    /// stored as `Rejected` and get an inbound dead letter. Outcomes are in input order.
    async fn ingest(
        &self,
        captures: Vec<Capture>,
        cursor: Option<CursorUpdate>,
    ) -> Result<Vec<IngestOutcome>>;

    async fn cursor(&self, endpoint: &str, stream: &str) -> Result<Option<String>>;

    // ---- processing ----

    /// Up to `limit` journal entries with status `Pending`, oldest first.
    async fn pending_journal(&self, limit: usize) -> Result<Vec<JournalEntry>>;
    async fn journal_entry(&self, id: JournalId) -> Result<Option<JournalEntry>>;
    /// Newest first; filter by endpoint/kind/key when given.
    async fn journal(
        &self,
        endpoint: Option<&str>,
        kind: Option<Kind>,
        key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JournalEntry>>;

    /// Journal entries matching `q`, newest first, at most `q.limit`.
    async fn search_journal(&self, q: JournalQuery) -> Result<Vec<JournalEntry>> {
        let _ = q;
        Err(StoreError::Unsupported("search_journal"))
    }

    async fn entity(&self, kind: Kind, key: &str) -> Result<Option<Entity>>;
    /// Canonical key for an external id at an endpoint.
    async fn xref_key(
        &self,
        endpoint: &str,
        kind: Kind,
        external_id: &str,
    ) -> Result<Option<String>>;
    /// External id at an endpoint for a canonical key.
    async fn xref_external(&self, endpoint: &str, kind: Kind, key: &str) -> Result<Option<String>>;
    /// (planned, written) hashes for (dest, kind, key).
    async fn hashes(
        &self,
        dest: &str,
        kind: Kind,
        key: &str,
    ) -> Result<(Option<String>, Option<String>)>;

    // Batched lookups: the processor and the dispatchers read per journal entry or per item; these
    // answer a whole batch in one call (one result per input, in order). The defaults loop over
    // the single lookups; an implementation should answer from one snapshot and one round trip.

    /// [`Store::xref_key`] for each `(endpoint, kind, external_id)`.
    async fn xref_keys(&self, ids: &[(String, Kind, String)]) -> Result<Vec<Option<String>>> {
        let mut out = Vec::with_capacity(ids.len());
        for (endpoint, kind, external_id) in ids {
            out.push(self.xref_key(endpoint, *kind, external_id).await?);
        }
        Ok(out)
    }

    /// [`Store::xref_external`] for each `(endpoint, kind, key)`.
    async fn xref_externals(&self, keys: &[(String, Kind, String)]) -> Result<Vec<Option<String>>> {
        let mut out = Vec::with_capacity(keys.len());
        for (endpoint, kind, key) in keys {
            out.push(self.xref_external(endpoint, *kind, key).await?);
        }
        Ok(out)
    }

    /// [`Store::entity`] for each `(kind, key)`.
    async fn entities(&self, keys: &[(Kind, String)]) -> Result<Vec<Option<Entity>>> {
        let mut out = Vec::with_capacity(keys.len());
        for (kind, key) in keys {
            out.push(self.entity(*kind, key).await?);
        }
        Ok(out)
    }

    /// Up to `limit` entities of `kind` with a key greater than `after` (all when `None`), in
    /// ascending key order: a paged scan, for in-memory indexes rebuilt at start (the engine's
    /// price index). Each page is read from one snapshot; pages are not one snapshot together.
    async fn entities_of_kind(
        &self,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entity>> {
        let _ = (kind, after, limit);
        Err(StoreError::Unsupported("entities_of_kind"))
    }

    /// [`Store::hashes`] for each `(dest, kind, key)`.
    async fn hashes_of(
        &self,
        keys: &[(String, Kind, String)],
    ) -> Result<Vec<(Option<String>, Option<String>)>> {
        let mut out = Vec::with_capacity(keys.len());
        for (dest, kind, key) in keys {
            out.push(self.hashes(dest, *kind, key).await?);
        }
        Ok(out)
    }

    /// Commit one processing step atomically (see [`ProcessBatch`]). Xrefs inserted here also
    /// un-park items waiting on them (an entity captured from endpoint E is known at E).
    async fn apply(&self, batch: ProcessBatch, now: Millis) -> Result<()>;

    // ---- delivery ----

    /// Claim up to `limit` due items of `dest`, in enqueue order, such that no two items of the
    /// same (kind, key) are in flight and no item overtakes an earlier unfinished (pending,
    /// in-flight or parked) item of its (kind, key). Claimed items are `Inflight` until
    /// `lease_until`.
    async fn claim(
        &self,
        dest: &str,
        limit: usize,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Vec<Claimed>>;

    /// Apply outcomes; each only if its item is still in flight under that token. Returns how
    /// many applied.
    async fn settle(&self, outcomes: Vec<Settlement>) -> Result<usize>;

    /// Return in-flight items whose lease ended before `before` to pending. Returns how many.
    async fn recover_expired(&self, before: Millis) -> Result<usize>;

    /// Earliest `next_at` among pending items of `dest`.
    async fn next_due(&self, dest: &str) -> Result<Option<Millis>>;

    /// Items of `dest` (all destinations when `None`) in `state`, oldest first.
    async fn items(
        &self,
        dest: Option<&str>,
        state: ItemState,
        limit: usize,
    ) -> Result<Vec<OutboxItem>>;

    // ---- dead letters and audit ----

    async fn dead_letters(&self, filter: DeadLetterFilter) -> Result<Vec<DeadLetter>>;
    async fn dead_letter(&self, id: DeadLetterId) -> Result<Option<DeadLetter>>;
    /// For each (id, replay) whose dead letter is still `Open`: mark it `Replayed` and enqueue the
    /// item / journal the capture, all in one transaction. Returns the ids replayed.
    async fn replay_dead_letters(
        &self,
        replays: Vec<(DeadLetterId, Replay)>,
        now: Millis,
    ) -> Result<Vec<DeadLetterId>>;
    /// Mark open dead letters `Dropped` (kept for the audit trail). Returns the ids dropped.
    async fn drop_dead_letters(
        &self,
        ids: Vec<DeadLetterId>,
        now: Millis,
    ) -> Result<Vec<DeadLetterId>>;

    // ---- flow control (the admin API's pause / resume) ----

    /// Pause (`true`) or resume a flow: `claim` and `next_due` skip the pending items of a
    /// paused flow until it is resumed; nothing else changes (capture and planning go on).
    /// Durable. Returns whether the state changed.
    async fn set_flow_paused(&self, flow: &str, paused: bool, now: Millis) -> Result<bool> {
        let _ = (flow, paused, now);
        Err(StoreError::Unsupported("set_flow_paused"))
    }

    /// Names of the paused flows, sorted.
    async fn paused_flows(&self) -> Result<Vec<String>> {
        Err(StoreError::Unsupported("paused_flows"))
    }

    // ---- connector state (see `Connector::state_updates` in concord-engine) ----

    /// The state a connector asked the engine to keep for `endpoint` (e.g. an OAuth2 refresh
    /// token its provider rotated), as the connector wrote it; `None` when nothing was kept.
    /// The store never interprets it, and never lists it anywhere else (it may be a secret).
    async fn connector_state(&self, endpoint: &str) -> Result<Option<String>> {
        let _ = endpoint;
        Err(StoreError::Unsupported("connector_state"))
    }

    /// Keep `value` as `endpoint`'s connector state, replacing what was kept. Durable when it
    /// returns.
    async fn set_connector_state(&self, endpoint: &str, value: &str, now: Millis) -> Result<()> {
        let _ = (endpoint, value, now);
        Err(StoreError::Unsupported("set_connector_state"))
    }

    // ---- dashboard sessions (shared by every instance on the store; survive a restart) ----

    /// Keep a dashboard session: `hash` is the hex SHA-256 of its id (the id itself is never
    /// stored), `name` the admin token it was opened with, valid until `expires_at`. Also
    /// deletes the sessions that expired by `now`. Durable when it returns.
    async fn create_session(
        &self,
        hash: &str,
        name: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<()> {
        let _ = (hash, name, expires_at, now);
        Err(StoreError::Unsupported("create_session"))
    }

    /// The token name of the session with this id hash, if it exists and has not expired by
    /// `now`.
    async fn session(&self, hash: &str, now: Millis) -> Result<Option<String>> {
        let _ = (hash, now);
        Err(StoreError::Unsupported("session"))
    }

    /// End the session with this id hash (nothing when there is none).
    async fn delete_session(&self, hash: &str) -> Result<()> {
        let _ = hash;
        Err(StoreError::Unsupported("delete_session"))
    }

    async fn record_audit(&self, events: Vec<AuditEvent>) -> Result<()>;
    /// Newest first.
    async fn audit_log(&self, limit: usize) -> Result<Vec<StoredAudit>>;

    /// Journal, dead-letter and queue figures, from counters maintained in the same transaction
    /// as the rows they count (database triggers on both backends), so the cost does not grow
    /// with the retained history: a handful of counter rows plus one index seek per destination
    /// for `oldest_captured_at`. The metrics loop, alerts and the admin pages call it often.
    /// Always equal to [`Store::recount_stats`] (conformance: `stats_counters_equal_fresh_counts`).
    async fn stats(&self) -> Result<StoreStats>;

    /// The figures of [`Store::stats`] counted from the rows themselves (`COUNT(*)` over the
    /// journal, the outbox and the dead letters): cost grows with the history. For checks and
    /// diagnosis (does a counter still equal its rows?), never for a loop.
    async fn recount_stats(&self) -> Result<StoreStats> {
        Err(StoreError::Unsupported("recount_stats"))
    }

    /// Can the store be read right now? One trivial query (readiness probes call this often:
    /// it must stay as cheap as a query can be).
    async fn ping(&self) -> Result<()> {
        self.stats().await.map(|_| ())
    }

    // ---- reconciliation (issue 16) ----

    /// Store a reconciliation run; returns its id (ascending).
    async fn record_reconcile_run(&self, run: NewReconcileRun) -> Result<i64> {
        let _ = run;
        Err(StoreError::Unsupported("record_reconcile_run"))
    }

    /// Runs, newest first, at most `limit`, without their reports (`report` is `null`).
    async fn reconcile_runs(&self, limit: usize) -> Result<Vec<StoredReconcileRun>> {
        let _ = limit;
        Err(StoreError::Unsupported("reconcile_runs"))
    }

    /// One run with its report.
    async fn reconcile_run(&self, id: i64) -> Result<Option<StoredReconcileRun>> {
        let _ = id;
        Err(StoreError::Unsupported("reconcile_run"))
    }

    // ---- inventory (design §5) ----

    /// Apply ERP figures in one transaction. A stale update (older version than stored) changes
    /// nothing. An applied one replaces on_hand, committed and incoming, and releases the active
    /// lines at that position whose reservation was accepted by the ERP and whose order the
    /// figure now includes: when both versions can be ordered ([`compare_versions`]: integers,
    /// or RFC 3339 date-times as instants) the figure's version must be greater than the
    /// reservation's `accepted_version`; otherwise the figure must have been captured at least
    /// `release_grace_ms` after `accepted_at`. Each released line lowers `held` (or
    /// `backordered`) once; a reservation whose lines are all released becomes `Released`.
    /// Every SKU touched is marked dirty.
    async fn update_levels(
        &self,
        updates: Vec<LevelUpdate>,
        release_grace_ms: i64,
        now: Millis,
    ) -> Result<Vec<LevelOutcome>> {
        let _ = (updates, release_grace_ms, now);
        Err(StoreError::Unsupported("update_levels"))
    }

    /// Ledger positions of these SKUs (every location), sorted by SKU then location.
    async fn levels(&self, skus: &[String]) -> Result<Vec<StockLevel>> {
        let _ = skus;
        Err(StoreError::Unsupported("levels"))
    }

    /// Reserve all lines or nothing, atomically with respect to every other reservation and
    /// every ledger update: idempotent on (channel, client_key); reads the positions of the
    /// request's feeds, computes what each can give (`max(0, on_hand − committed − held −
    /// buffer)`), routes with `concord_core::inventory::route` (backorders: up to
    /// `backorder_limit` per SKU and no more than the feeds' incoming minus what is already
    /// backordered, at the first feed with incoming stock), and on success stores the
    /// reservation as `Held` until `expires_at`, raises `held`/`backordered`, marks the SKUs
    /// dirty.
    async fn reserve(&self, req: ReserveRequest) -> Result<ReserveOutcome> {
        let _ = req;
        Err(StoreError::Unsupported("reserve"))
    }

    async fn reservation(&self, id: &str) -> Result<Option<Reservation>> {
        let _ = id;
        Err(StoreError::Unsupported("reservation"))
    }

    /// `Held → Committed` for `order` (canonical order key); no expiry from then on. Committing
    /// again with the same order is a no-op returning the reservation. If the order was accepted
    /// already, the reservation takes over that acceptance, and lines whose position's stored
    /// figure is newer than it are released at once (as a settlement's acceptance does).
    async fn commit_reservation(
        &self,
        id: &str,
        order: &str,
        now: Millis,
    ) -> Result<Result<Reservation, TransitionError>> {
        let _ = (id, order, now);
        Err(StoreError::Unsupported("commit_reservation"))
    }

    /// `Held | Committed → Cancelled`: every unreleased line lowers `held` once. (Safe for a
    /// committed one too: until the ERP cancels the order its own `committed` still counts it.)
    /// Cancelling a cancelled reservation is a no-op returning it.
    async fn cancel_reservation(
        &self,
        id: &str,
        now: Millis,
    ) -> Result<Result<Reservation, TransitionError>> {
        let _ = (id, now);
        Err(StoreError::Unsupported("cancel_reservation"))
    }

    /// `Held → Expired` for every held reservation with `expires_at <= now`; returns them.
    async fn expire_reservations(&self, now: Millis) -> Result<Vec<Reservation>> {
        let _ = now;
        Err(StoreError::Unsupported("expire_reservations"))
    }

    /// Earliest `expires_at` among held reservations.
    async fn next_expiry(&self) -> Result<Option<Millis>> {
        Err(StoreError::Unsupported("next_expiry"))
    }

    /// Reservations, newest first, optionally only in `state` / with a line of `sku`.
    async fn reservations(
        &self,
        state: Option<ReservationState>,
        sku: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Reservation>> {
        let _ = (state, sku, limit);
        Err(StoreError::Unsupported("reservations"))
    }

    /// SKUs marked dirty (their channel figures need recomputing), oldest mark first.
    async fn dirty_skus(&self, limit: usize) -> Result<Vec<DirtySku>> {
        let _ = limit;
        Err(StoreError::Unsupported("dirty_skus"))
    }

    /// Bring the active reservations committed to an order to new quantities (an edit before
    /// shipment), atomically with respect to every other reservation and ledger update: an
    /// increase the pool cannot cover changes nothing and answers `Short` (never oversells).
    /// Idempotent. See [`AdjustRequest`].
    async fn adjust_order_reservation(&self, req: AdjustRequest) -> Result<AdjustOutcome> {
        let _ = req;
        Err(StoreError::Unsupported("adjust_order_reservation"))
    }

    // ---- orders (issue 6; see `orders.rs`) ----

    /// The lifecycle rows of these order keys (one result per key, in order).
    async fn order_lifecycles(&self, keys: &[String]) -> Result<Vec<Option<OrderSummary>>> {
        let _ = keys;
        Err(StoreError::Unsupported("order_lifecycles"))
    }

    /// Orders in key order, filtered by state / channel, after a key (paging).
    async fn orders(&self, filter: OrderFilter) -> Result<Vec<OrderSummary>> {
        let _ = filter;
        Err(StoreError::Unsupported("orders"))
    }

    /// Number of orders per state.
    async fn order_counts(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        Err(StoreError::Unsupported("order_counts"))
    }

    /// One order's lifecycle row, events, and the journal entries, delivery attempts and dead
    /// letters of the order and its order-scoped children. `None` when the hub has no such order.
    async fn order_history(&self, key: &str) -> Result<Option<OrderHistory>> {
        let _ = key;
        Err(StoreError::Unsupported("order_history"))
    }

    /// Parked outbox items (oldest first) with what each still waits on.
    async fn parked(&self, limit: usize) -> Result<Vec<ParkedItem>> {
        let _ = limit;
        Err(StoreError::Unsupported("parked"))
    }

    // ---- alerts (see `alerts.rs`) ----

    /// A rule's condition holds for `obs.subject`: open an episode (since `obs.since`) unless one
    /// is open for (rule, subject), else update its value and summary. Returns the episode.
    async fn observe_alert(&self, obs: AlertObservation, now: Millis) -> Result<AlertEpisode> {
        let _ = (obs, now);
        Err(StoreError::Unsupported("observe_alert"))
    }

    /// The condition no longer holds: close the open episode of (rule, subject), if any, at
    /// `now`. Returns the closed episode.
    async fn resolve_alert(
        &self,
        rule: &str,
        subject: &str,
        now: Millis,
    ) -> Result<Option<AlertEpisode>> {
        let _ = (rule, subject, now);
        Err(StoreError::Unsupported("resolve_alert"))
    }

    /// Record that a notification of episode `id` was delivered. Returns false when it was
    /// already recorded (or, for `Resolved`, the episode is still open).
    async fn mark_alert_notified(
        &self,
        id: AlertId,
        notice: AlertNotice,
        now: Millis,
    ) -> Result<bool> {
        let _ = (id, notice, now);
        Err(StoreError::Unsupported("mark_alert_notified"))
    }

    /// Episodes: open ones first (newest `since` first), then resolved ones, most recently
    /// resolved first; only open ones when `open_only`.
    async fn alert_episodes(&self, open_only: bool, limit: usize) -> Result<Vec<AlertEpisode>> {
        let _ = (open_only, limit);
        Err(StoreError::Unsupported("alert_episodes"))
    }

    /// Episodes with a notification not yet delivered, oldest first.
    async fn unnotified_alerts(&self, limit: usize) -> Result<Vec<AlertEpisode>> {
        let _ = limit;
        Err(StoreError::Unsupported("unnotified_alerts"))
    }

    /// Ledger positions whose on-hand is below committed + held (oversold risk), sorted by SKU
    /// then location; at most the positions of `limit` SKUs.
    async fn oversold_positions(&self, limit: usize) -> Result<Vec<StockLevel>> {
        let _ = limit;
        Err(StoreError::Unsupported("oversold_positions"))
    }

    // ---- retention ----

    /// Delete history older than `before`, at most `batch` rows of each table per call:
    /// - delivery attempts made before it;
    /// - alert episodes resolved before it whose notifications were all delivered (open
    ///   episodes and owed notifications are never deleted);
    /// - audit events recorded before it;
    /// - outbox items delivered (`done`) before it;
    /// - journal entries received before it that are processed or rejected (never pending)
    ///   and that no outbox item (in any state, after the previous step) and no open dead
    ///   letter refers to. Closed dead letters and order events may keep the id of a pruned
    ///   entry; looking it up then finds nothing;
    /// - reconciliation runs finished before it (report and all: `GET /api/v1/reconcile/{id}`
    ///   then answers 404). The `drift` alert and `concord_drift_keys` read the engine's
    ///   memory, not these rows.
    async fn prune_history(&self, before: Millis, batch: usize) -> Result<Pruned> {
        let _ = (before, batch);
        Err(StoreError::Unsupported("prune_history"))
    }
}

/// What one [`Store::prune_history`] call deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    pub delivery_attempts: u64,
    pub alert_episodes: u64,
    pub audit: u64,
    /// Delivered outbox items.
    pub outbox_items: u64,
    pub journal: u64,
    /// Stored reconciliation runs.
    #[serde(default)]
    pub reconcile_runs: u64,
}

impl Pruned {
    /// Add another call's counts.
    pub fn add(&mut self, other: Pruned) {
        self.delivery_attempts += other.delivery_attempts;
        self.alert_episodes += other.alert_episodes;
        self.audit += other.audit;
        self.outbox_items += other.outbox_items;
        self.journal += other.journal;
        self.reconcile_runs += other.reconcile_runs;
    }

    /// Did any table delete a full `batch` (so more may be left)?
    pub fn any_full(&self, batch: usize) -> bool {
        let b = batch as u64;
        [
            self.delivery_attempts,
            self.alert_episodes,
            self.audit,
            self.outbox_items,
            self.journal,
            self.reconcile_runs,
        ]
        .iter()
        .any(|n| *n >= b)
    }
}

//! PostgreSQL implementation of [`crate::Store`]: one database, built to be shared by several
//! Concord processes. Until the leader lease and the outbox rescuer exist, `concord run` takes
//! the database's instance lock (`instance`: one running instance per database); a handle that
//! holds it answers `is_exclusive() == true`, any other handle `false`.
//!
//! Layout mirrors `sqlite/`: `schema` (numbered migrations applied once under an advisory lock),
//! `codec` (row decoding and the one database-error mapping), the write path one file per stage
//! — `journal` (ingest), `apply`, `enqueue`, `outbox` (claim and settle), `dead_letters`,
//! `writes` (audit, flow pauses, connector state) — and `reads`, `alerts`, `retention`,
//! `reconcile`. The stock ledger (`ledger/`), the order lifecycle (`orders`) and a refused
//! amend's fallback (`amend`) are the ledger module's (see the contract below). Every business
//! decision is made in the store-neutral `crate::ledger` and `crate::sync`: this module loads
//! rows, locks them and writes plans. It must never compute a ledger figure in SQL.
//!
//! Concurrency: every write method is one transaction at READ COMMITTED run by
//! [`PgStore::write_tx`], retried on a serialization failure or a deadlock. Correctness across
//! handles comes from the database, never from this process: ingest's dedupe by the
//! `inbox_last` primary key (insert first, else lock the row), one item in flight per key by
//! `claim`'s `FOR UPDATE SKIP LOCKED` plus the `outbox_one_inflight` unique index, claim tokens
//! and dirty-SKU generations from the `concord_tokens` sequence.
//!
//! Transport: `NoTls` for now — use it on loopback or a private network only.
//!
//! # Contract with the ledger module (`ledger/`, `orders.rs`, `amend.rs`)
//!
//! Stable since the skeleton commit; the ledger module may rely on exactly this:
//! - [`PgStore::write_tx`]`(what, |tx| Box::pin(async move { … }))`: runs the closure in a READ
//!   COMMITTED transaction and commits; retries the whole closure (bounded, jittered backoff)
//!   when it, or the commit, fails with [`StoreError::Conflict`] (SQLSTATE 40001 / 40P01).
//!   Inputs are moved in per attempt (clone, or an `Arc`). [`PgStore::write_tx_at`] takes an
//!   isolation level (e.g. SERIALIZABLE). Ledger functions called inside *this* module's
//!   transactions (`apply`, `settle`) run at READ COMMITTED: they must lock what they decide
//!   on (`SELECT … FOR UPDATE`, positions in (sku, location) order).
//! - [`PgStore::read_tx`]`(what, |tx| …)`: one REPEATABLE READ, READ ONLY snapshot (not
//!   retried); [`PgStore::client`] for a single statement (`&**conn` is the `Client`).
//!   Inside `crate::admission::fail_fast`, `write_tx` answers [`StoreError::Busy`] when every
//!   pooled connection is in use (added after the skeleton; no signature changed). Also
//!   added: `codec::db` maps the server out of reach (connection refused, lost, class 08) to
//!   [`StoreError::Unavailable`], and a connection that failed so is discarded by `write_tx`,
//!   `read_tx` and this module's reads (not by a caller holding [`PgStore::client`]).
//! - [`next_token`]`(tx)`: a dirty-SKU generation (or claim token) from `concord_tokens`
//!   (`claim` draws its tokens with `nextval` in its own statement).
//! - `codec::db(context)`: `tokio_postgres::Error` → [`StoreError`] (40001/40P01 →
//!   `Conflict`); `codec::get(row, i)` checked column reads; `codec::{journal_entry,
//!   dead_letter, outbox_item, stored_audit}` row decoders with `JOURNAL_COLS`, `DL_COLS`,
//!   `ITEM_COLS`, `AUDIT_COLS`; the shared encodings (`kind`, `json`, `to_json`, …).
//! - Booleans are BIGINT 0/1 columns (as in SQLite); `reservations.row_seq` replaces rowid.
//!   (Added after the skeleton, no signature changed: every TEXT column is `COLLATE "C"`,
//!   so `ORDER BY sku` and key comparisons are bytewise as in SQLite on any database locale.)
//! - From this module, for `amend`: `outbox::Held` (the settled item), `outbox::dead_letter(tx,
//!   id, &held, reason, at)`, `outbox::finish_item(tx, id, state, error, at)`,
//!   `enqueue::enqueue(tx, &item, now) -> ItemId`.
//! - This module calls (all `async`, `tx: &tokio_postgres::Transaction<'_>`):
//!   `ledger::update_levels(tx, &[LevelUpdate], grace: Option<i64>, now) -> Vec<LevelOutcome>`,
//!   `ledger::clean(tx, &DirtySku)`, `ledger::cancel_order_reservations(tx, order, now) ->
//!   usize`, `ledger::mark_accepted(tx, order, source, at, version: Option<&str>)`,
//!   `orders::write_orders(tx, &[OrderWrite], now)`, `orders::log_attempt(tx, item_id, dest,
//!   kind, key, op, at, outcome, error: Option<&str>)`, `orders::accept(tx, key, dest, at)`,
//!   `amend::amend_refused(tx, id, &Held, reason, fallback, at)`. Declared for the read side
//!   (not called here yet): `ledger::reads_levels(client: &impl GenericClient, &[String]) ->
//!   Vec<StockLevel>`. (`orders::log_attempt`, one INSERT, was written in the skeleton so that
//!   settlements work; the module owns it like the rest.)
//! - The trait's ledger and order methods delegate to `impl PgStore` methods in `ledger/mod.rs`
//!   named `ledger_<method>` with the trait method's arguments (`self.ledger_reserve(req)`).

mod alerts;
mod amend;
mod apply;
mod codec;
mod dead_letters;
mod enqueue;
mod instance;
mod journal;
mod ledger;
mod orders;
mod outbox;
mod reads;
mod reconcile;
mod retention;
mod schema;
pub(crate) mod stats;
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
use codec::db;
use concord_core::{Kind, Millis};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{IsolationLevel, NoTls, Transaction};

/// The future a transaction closure returns: borrows the transaction, sendable.
pub(crate) type TxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// How many times a transaction is tried when the database aborts it for a concurrent one.
const TX_ATTEMPTS: u32 = 10;
/// The first retry's backoff ceiling; doubled per retry (full jitter), capped at [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(2);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// Options of [`PgStore::connect`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections in the pool (at least 1).
    pub pool_size: usize,
    /// The schema the store lives in (created when missing, then the connections' only
    /// `search_path` entry). `None`: the server's default search path (usually `public`).
    /// Tests give each store its own schema.
    pub schema: Option<String>,
    /// Most writes waiting for a connection (all `pool_size` in use) before a write inside
    /// [`crate::admission::fail_fast`] is refused with [`StoreError::Busy`] — the counterpart of
    /// SQLite's write queue (approximate: the count is read, then the write waits). 0: refused
    /// as soon as no connection is free. Outside `fail_fast` writes always wait.
    pub write_queue: usize,
}

impl PgOptions {
    /// The default [`PgOptions::write_queue`].
    pub const DEFAULT_WRITE_QUEUE: usize = 1024;
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 8,
            schema: None,
            write_queue: Self::DEFAULT_WRITE_QUEUE,
        }
    }
}

/// The PostgreSQL store: a pool of connections to one database. Cheap to share behind an
/// `Arc`; any number of instances (processes) may use one database at once.
pub struct PgStore {
    pool: Pool,
    /// [`PgOptions::write_queue`].
    write_queue: usize,
    /// How to connect (for the instance lock's dedicated connection).
    config: tokio_postgres::Config,
    /// True while this handle's [`InstanceLock`] holds the database's instance lock.
    exclusive: Arc<AtomicBool>,
}

pub use instance::{
    InstanceLock, InstanceLockError, INSTANCE_HEARTBEAT, INSTANCE_HEARTBEAT_TIMEOUT,
    INSTANCE_LOCK_KEY,
};

/// Is `name` a plain identifier we may put in a `search_path` and `CREATE SCHEMA` unquoted?
fn plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

fn open_err(reason: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: "postgres".into(),
        reason: reason.to_string(),
    }
}

impl PgStore {
    /// Connect to the database at `url` (`postgres://user[:password]@host[:port]/db`, or the
    /// key=value form), create the schema when asked, and apply the migrations not yet applied
    /// (once, whatever other instances start together).
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgStore> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
            open_err("not a well-formed PostgreSQL URL (not repeated here: it may hold a password)")
        })?;
        if let Some(schema) = &options.schema {
            if !plain_identifier(schema) {
                return Err(open_err(format!(
                    "schema `{schema}` must be a lower-case identifier ([a-z_][a-z0-9_]*)"
                )));
            }
            // Create it first, on a connection of its own (the pool's connections need it).
            let (client, connection) = config
                .connect(NoTls)
                .await
                .map_err(|e| open_err(codec::describe(&e)))?;
            let task = tokio::spawn(connection);
            let created = client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await;
            drop(client);
            let _ = task.await;
            // Two instances creating it together: one may lose the race on the catalog.
            if let Err(e) = created {
                if e.code() != Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                    return Err(open_err(format!(
                        "create schema {schema}: {}",
                        codec::describe(&e)
                    )));
                }
            }
            config.options(format!("-c search_path={schema}"));
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .map_err(open_err)?;
        let store = PgStore {
            pool,
            write_queue: options.write_queue,
            config,
            exclusive: Arc::new(AtomicBool::new(false)),
        };
        {
            let mut conn = store.conn().await.map_err(|e| open_err(e.to_string()))?;
            let client: &mut tokio_postgres::Client = &mut conn;
            schema::migrate(client).await?;
        }
        Ok(store)
    }

    /// Check a connection URL without connecting (for config validation): `postgres://` or
    /// `postgresql://`, well formed, naming a host. The reason never repeats the URL (it may
    /// hold a password).
    pub fn check_url(url: &str) -> std::result::Result<(), String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("the scheme must be postgres:// or postgresql://".into());
        }
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| "not a well-formed PostgreSQL connection URL".to_string())?;
        if config.get_hosts().is_empty() {
            return Err("it names no host".into());
        }
        Ok(())
    }

    /// Close the pool: later calls fail with [`StoreError::Closed`]. Idempotent.
    pub fn close(&self) {
        self.pool.close();
    }

    /// A pooled connection (waits for one when all are in use).
    async fn conn(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_err)
    }

    /// A pooled connection for a write: inside [`crate::admission::fail_fast`], when every
    /// connection is in use and [`PgOptions::write_queue`] writes already wait for one, the
    /// write is refused at once with [`StoreError::Busy`] (nothing written); otherwise, and
    /// always outside `fail_fast`, it waits for a connection.
    async fn conn_for_write(&self) -> Result<deadpool_postgres::Object> {
        let status = self.pool.status();
        let saturated = status.available == 0 && status.size >= status.max_size;
        if crate::admission::fails_fast() && saturated && status.waiting >= self.write_queue {
            // A zero wait is deadpool's non-blocking acquire.
            return self
                .pool
                .timeout_get(&deadpool_postgres::Timeouts::wait_millis(0))
                .await
                .map_err(|e| match e {
                    deadpool_postgres::PoolError::Timeout(_) => StoreError::Busy,
                    other => pool_err(other),
                });
        }
        self.conn().await
    }

    /// A pooled connection for single-statement reads (it derefs to `tokio_postgres::Client`).
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.conn().await
    }

    /// Run `f` in a READ COMMITTED transaction and commit; see [`PgStore::write_tx_at`].
    pub(crate) async fn write_tx<T, F>(&self, what: &'static str, f: F) -> Result<T>
    where
        T: Send,
        F: for<'a> FnMut(&'a Transaction<'a>) -> TxFuture<'a, T> + Send,
    {
        self.write_tx_at(IsolationLevel::ReadCommitted, what, f)
            .await
    }

    /// Run `f` in a transaction at `isolation` and commit. When `f` or the commit fails with
    /// [`StoreError::Conflict`] (a serialization failure or a deadlock) the transaction is rolled
    /// back and `f` runs again on a fresh one, at most [`TX_ATTEMPTS`] times in all, after a
    /// full-jitter backoff. Any other error rolls back and is returned at once.
    pub(crate) async fn write_tx_at<T, F>(
        &self,
        isolation: IsolationLevel,
        what: &'static str,
        mut f: F,
    ) -> Result<T>
    where
        T: Send,
        F: for<'a> FnMut(&'a Transaction<'a>) -> TxFuture<'a, T> + Send,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = {
                let mut conn = self.conn_for_write().await?;
                let outcome = run_tx(&mut conn, isolation, what, &mut f).await;
                discard_if_unavailable(conn, &outcome);
                outcome
            };
            match outcome {
                Err(StoreError::Conflict(reason)) if attempt < TX_ATTEMPTS => {
                    tracing::debug!(what, attempt, %reason, "transaction conflicted; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Run `f` in one REPEATABLE READ, READ ONLY transaction (one snapshot). Not retried.
    pub(crate) async fn read_tx<T, F>(&self, what: &'static str, f: F) -> Result<T>
    where
        T: Send,
        F: for<'a> FnOnce(&'a Transaction<'a>) -> TxFuture<'a, T> + Send,
    {
        let mut conn = self.conn().await?;
        let out = {
            let client: &mut tokio_postgres::Client = &mut conn;
            match client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(db(what))
            {
                Ok(tx) => {
                    let out = f(&tx).await;
                    // Read only: ending it either way changes nothing.
                    let _ = tx.rollback().await;
                    out
                }
                Err(e) => Err(e),
            }
        };
        discard_if_unavailable(conn, &out);
        out
    }
}

/// One transaction of `f` on `conn`: committed when it succeeds, rolled back explicitly
/// otherwise so the connection goes back to the pool clean.
async fn run_tx<T, F>(
    conn: &mut deadpool_postgres::Object,
    isolation: IsolationLevel,
    what: &'static str,
    f: &mut F,
) -> Result<T>
where
    F: for<'a> FnMut(&'a Transaction<'a>) -> TxFuture<'a, T>,
{
    let client: &mut tokio_postgres::Client = conn;
    let tx = client
        .build_transaction()
        .isolation_level(isolation)
        .start()
        .await
        .map_err(db(what))?;
    match f(&tx).await {
        Ok(value) => tx.commit().await.map(|()| value).map_err(db(what)),
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Closed => StoreError::Closed,
        deadpool_postgres::PoolError::Backend(e) => db("connect")(e),
        other => StoreError::Db(format!("connection pool: {other}")),
    }
}

/// Full jitter: uniform in `[0, min(MAX, BASE · 2^(attempt-1))]`.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BASE_BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(fastrand::f64())
}

/// A claim token or dirty-SKU generation: the next value of `concord_tokens`, never reused for
/// the life of the database, whichever instance draws it.
#[allow(dead_code)] // The ledger module's (dirty-SKU generations); claim draws in SQL.
pub(crate) async fn next_token(tx: &Transaction<'_>) -> Result<i64> {
    let row = tx
        .query_one("SELECT nextval('concord_tokens')", &[])
        .await
        .map_err(db("draw a token"))?;
    codec::get(&row, 0)
}

/// Run one read on a pooled connection: `on_client!(self, |c| reads::cursor(c, a, b))`. A
/// connection that failed as unavailable is discarded, never handed out again.
macro_rules! on_client {
    ($store:ident, |$c:ident| $call:expr) => {{
        let conn = $store.client().await?;
        let out = {
            let $c: &tokio_postgres::Client = &conn;
            $call.await
        };
        discard_if_unavailable(conn, &out);
        out
    }};
}

/// Drop a connection from the pool for good when what ran on it found the server out of reach
/// (a killed or reset connection must not be reused before the pool notices it closed).
fn discard_if_unavailable<T>(conn: deadpool_postgres::Object, out: &Result<T>) {
    if matches!(out, Err(StoreError::Unavailable(_))) {
        drop(deadpool_postgres::Object::take(conn));
    }
}

#[async_trait]
impl Store for PgStore {
    /// True while this handle holds the instance lock ([`PgStore::lock_instance`]): no other
    /// Concord runs on the database, so every in-flight claim at start-up is a dead process's.
    fn is_exclusive(&self) -> bool {
        self.exclusive.load(Ordering::Acquire)
    }

    async fn ingest(
        &self,
        captures: Vec<Capture>,
        cursor: Option<CursorUpdate>,
    ) -> Result<Vec<IngestOutcome>> {
        let input = Arc::new((captures, cursor));
        self.write_tx("ingest", move |tx| {
            let input = Arc::clone(&input);
            Box::pin(async move { journal::ingest(tx, &input.0, input.1.as_ref()).await })
        })
        .await
    }

    async fn cursor(&self, endpoint: &str, stream: &str) -> Result<Option<String>> {
        on_client!(self, |c| reads::cursor(c, endpoint, stream))
    }

    async fn pending_journal(&self, limit: usize) -> Result<Vec<JournalEntry>> {
        on_client!(self, |c| reads::pending_journal(c, limit))
    }

    async fn journal_entry(&self, id: JournalId) -> Result<Option<JournalEntry>> {
        on_client!(self, |c| reads::journal_entry(c, id))
    }

    async fn journal(
        &self,
        endpoint: Option<&str>,
        kind: Option<Kind>,
        key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JournalEntry>> {
        on_client!(self, |c| reads::journal(c, endpoint, kind, key, limit))
    }

    async fn search_journal(&self, q: crate::JournalQuery) -> Result<Vec<JournalEntry>> {
        on_client!(self, |c| reads::search_journal(c, &q))
    }

    async fn set_flow_paused(&self, flow: &str, paused: bool, now: Millis) -> Result<bool> {
        let flow = Arc::new(flow.to_owned());
        self.write_tx("pause or resume a flow", move |tx| {
            let flow = Arc::clone(&flow);
            Box::pin(async move { writes::set_flow_paused(tx, &flow, paused, now).await })
        })
        .await
    }

    async fn paused_flows(&self) -> Result<Vec<String>> {
        on_client!(self, |c| reads::paused_flows(c))
    }

    async fn ping(&self) -> Result<()> {
        on_client!(self, |c| async {
            c.query_one("SELECT 1", &[])
                .await
                .map(|_| ())
                .map_err(codec::db("ping the store"))
        })
    }

    async fn connector_state(&self, endpoint: &str) -> Result<Option<String>> {
        on_client!(self, |c| reads::connector_state(c, endpoint))
    }

    async fn set_connector_state(&self, endpoint: &str, value: &str, now: Millis) -> Result<()> {
        let input = Arc::new((endpoint.to_owned(), value.to_owned()));
        self.write_tx("keep connector state", move |tx| {
            let input = Arc::clone(&input);
            Box::pin(async move { writes::set_connector_state(tx, &input.0, &input.1, now).await })
        })
        .await
    }

    async fn create_session(
        &self,
        hash: &str,
        name: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<()> {
        let input = Arc::new((hash.to_owned(), name.to_owned()));
        self.write_tx("keep a dashboard session", move |tx| {
            let input = Arc::clone(&input);
            Box::pin(async move {
                writes::create_session(tx, &input.0, &input.1, expires_at, now).await
            })
        })
        .await
    }

    async fn session(&self, hash: &str, now: Millis) -> Result<Option<String>> {
        on_client!(self, |c| reads::session(c, hash, now))
    }

    async fn delete_session(&self, hash: &str) -> Result<()> {
        let hash = Arc::new(hash.to_owned());
        self.write_tx("end a dashboard session", move |tx| {
            let hash = Arc::clone(&hash);
            Box::pin(async move { writes::delete_session(tx, &hash).await })
        })
        .await
    }

    async fn entity(&self, kind: Kind, key: &str) -> Result<Option<Entity>> {
        on_client!(self, |c| reads::entity(c, kind, key))
    }

    async fn xref_key(
        &self,
        endpoint: &str,
        kind: Kind,
        external_id: &str,
    ) -> Result<Option<String>> {
        on_client!(self, |c| reads::xref_key(c, endpoint, kind, external_id))
    }

    async fn xref_external(&self, endpoint: &str, kind: Kind, key: &str) -> Result<Option<String>> {
        on_client!(self, |c| reads::xref_external(c, endpoint, kind, key))
    }

    async fn hashes(
        &self,
        dest: &str,
        kind: Kind,
        key: &str,
    ) -> Result<(Option<String>, Option<String>)> {
        on_client!(self, |c| reads::hashes(c, dest, kind, key))
    }

    async fn xref_keys(&self, ids: &[(String, Kind, String)]) -> Result<Vec<Option<String>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        on_client!(self, |c| reads::xref_keys(c, ids))
    }

    async fn xref_externals(&self, keys: &[(String, Kind, String)]) -> Result<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        on_client!(self, |c| reads::xref_externals(c, keys))
    }

    async fn entities(&self, keys: &[(Kind, String)]) -> Result<Vec<Option<Entity>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        on_client!(self, |c| reads::entities(c, keys))
    }

    async fn entities_of_kind(
        &self,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entity>> {
        on_client!(self, |c| reads::entities_of_kind(c, kind, after, limit))
    }

    async fn hashes_of(
        &self,
        keys: &[(String, Kind, String)],
    ) -> Result<Vec<(Option<String>, Option<String>)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        on_client!(self, |c| reads::hashes_of(c, keys))
    }

    async fn apply(&self, batch: ProcessBatch, now: Millis) -> Result<()> {
        let batch = Arc::new(batch);
        self.write_tx("apply a processing step", move |tx| {
            let batch = Arc::clone(&batch);
            Box::pin(async move { apply::apply(tx, &batch, now).await })
        })
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
        let dest = Arc::new(dest.to_owned());
        self.write_tx("claim items", move |tx| {
            let dest = Arc::clone(&dest);
            Box::pin(async move { outbox::claim(tx, &dest, limit, now, lease_until).await })
        })
        .await
    }

    async fn settle(&self, outcomes: Vec<Settlement>) -> Result<usize> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        let outcomes = Arc::new(outcomes);
        self.write_tx("settle items", move |tx| {
            let outcomes = Arc::clone(&outcomes);
            Box::pin(async move { outbox::settle(tx, &outcomes).await })
        })
        .await
    }

    async fn recover_expired(&self, before: Millis) -> Result<usize> {
        self.write_tx("recover expired leases", move |tx| {
            Box::pin(async move { outbox::recover_expired(tx, before).await })
        })
        .await
    }

    async fn next_due(&self, dest: &str) -> Result<Option<Millis>> {
        on_client!(self, |c| reads::next_due(c, dest))
    }

    async fn items(
        &self,
        dest: Option<&str>,
        state: ItemState,
        limit: usize,
    ) -> Result<Vec<OutboxItem>> {
        let dest = dest.map(str::to_owned);
        self.read_tx("list items", move |tx| {
            Box::pin(async move { reads::items(tx, dest.as_deref(), state, limit).await })
        })
        .await
    }

    async fn dead_letters(&self, filter: DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        on_client!(self, |c| reads::dead_letters(c, &filter))
    }

    async fn dead_letter(&self, id: DeadLetterId) -> Result<Option<DeadLetter>> {
        on_client!(self, |c| reads::dead_letter(c, id))
    }

    async fn replay_dead_letters(
        &self,
        replays: Vec<(DeadLetterId, Replay)>,
        now: Millis,
    ) -> Result<Vec<DeadLetterId>> {
        let replays = Arc::new(replays);
        self.write_tx("replay dead letters", move |tx| {
            let replays = Arc::clone(&replays);
            Box::pin(async move { dead_letters::replay_dead_letters(tx, &replays, now).await })
        })
        .await
    }

    async fn drop_dead_letters(
        &self,
        ids: Vec<DeadLetterId>,
        now: Millis,
    ) -> Result<Vec<DeadLetterId>> {
        let ids = Arc::new(ids);
        self.write_tx("drop dead letters", move |tx| {
            let ids = Arc::clone(&ids);
            Box::pin(async move { dead_letters::drop_dead_letters(tx, &ids, now).await })
        })
        .await
    }

    async fn record_audit(&self, events: Vec<AuditEvent>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let events = Arc::new(events);
        self.write_tx("record audit events", move |tx| {
            let events = Arc::clone(&events);
            Box::pin(async move { writes::record_audit(tx, &events).await })
        })
        .await
    }

    async fn audit_log(&self, limit: usize) -> Result<Vec<StoredAudit>> {
        on_client!(self, |c| reads::audit_log(c, limit))
    }

    async fn record_reconcile_run(&self, run: crate::NewReconcileRun) -> Result<i64> {
        let run = Arc::new(run);
        self.write_tx("record a reconcile run", move |tx| {
            let run = Arc::clone(&run);
            Box::pin(async move { reconcile::record(tx, &run).await })
        })
        .await
    }

    async fn reconcile_runs(&self, limit: usize) -> Result<Vec<crate::StoredReconcileRun>> {
        on_client!(self, |c| reconcile::list(c, limit))
    }

    async fn reconcile_run(&self, id: i64) -> Result<Option<crate::StoredReconcileRun>> {
        on_client!(self, |c| reconcile::one(c, id))
    }

    async fn stats(&self) -> Result<StoreStats> {
        let (figures, summed) = self
            .read_tx("read stats", |tx| Box::pin(stats::stats(tx)))
            .await?;
        if summed > stats::FOLD_ABOVE {
            // Keeps the next reads small; the figures above are already exact, so a failed
            // fold (e.g. the database just went away) only leaves more rows to sum next time.
            if let Err(e) = self
                .write_tx("fold stats counters", |tx| Box::pin(stats::fold(tx)))
                .await
            {
                tracing::warn!(error = %e, "could not fold the stats counters");
            }
        }
        Ok(figures)
    }

    async fn recount_stats(&self) -> Result<StoreStats> {
        self.read_tx("recount stats", |tx| Box::pin(stats::recount(tx)))
            .await
    }

    async fn update_levels(
        &self,
        updates: Vec<LevelUpdate>,
        release_grace_ms: i64,
        now: Millis,
    ) -> Result<Vec<LevelOutcome>> {
        self.ledger_update_levels(updates, release_grace_ms, now)
            .await
    }

    async fn levels(&self, skus: &[String]) -> Result<Vec<StockLevel>> {
        self.ledger_levels(skus).await
    }

    async fn reserve(&self, req: ReserveRequest) -> Result<ReserveOutcome> {
        self.ledger_reserve(req).await
    }

    async fn reservation(&self, id: &str) -> Result<Option<Reservation>> {
        self.ledger_reservation(id).await
    }

    async fn commit_reservation(
        &self,
        id: &str,
        order: &str,
        now: Millis,
    ) -> Result<Result<Reservation, TransitionError>> {
        self.ledger_commit_reservation(id, order, now).await
    }

    async fn cancel_reservation(
        &self,
        id: &str,
        now: Millis,
    ) -> Result<Result<Reservation, TransitionError>> {
        self.ledger_cancel_reservation(id, now).await
    }

    async fn expire_reservations(&self, now: Millis) -> Result<Vec<Reservation>> {
        self.ledger_expire_reservations(now).await
    }

    async fn next_expiry(&self) -> Result<Option<Millis>> {
        self.ledger_next_expiry().await
    }

    async fn reservations(
        &self,
        state: Option<ReservationState>,
        sku: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Reservation>> {
        self.ledger_reservations(state, sku, limit).await
    }

    async fn dirty_skus(&self, limit: usize) -> Result<Vec<DirtySku>> {
        self.ledger_dirty_skus(limit).await
    }

    async fn adjust_order_reservation(
        &self,
        req: crate::AdjustRequest,
    ) -> Result<crate::AdjustOutcome> {
        self.ledger_adjust_order_reservation(req).await
    }

    async fn order_lifecycles(&self, keys: &[String]) -> Result<Vec<Option<crate::OrderSummary>>> {
        self.ledger_order_lifecycles(keys).await
    }

    async fn orders(&self, filter: crate::OrderFilter) -> Result<Vec<crate::OrderSummary>> {
        self.ledger_orders(filter).await
    }

    async fn order_counts(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        self.ledger_order_counts().await
    }

    async fn order_history(&self, key: &str) -> Result<Option<crate::OrderHistory>> {
        self.ledger_order_history(key).await
    }

    async fn parked(&self, limit: usize) -> Result<Vec<crate::ParkedItem>> {
        self.ledger_parked(limit).await
    }

    async fn oversold_positions(&self, limit: usize) -> Result<Vec<StockLevel>> {
        self.ledger_oversold_positions(limit).await
    }

    async fn observe_alert(&self, obs: AlertObservation, now: Millis) -> Result<AlertEpisode> {
        let obs = Arc::new(obs);
        self.write_tx("observe an alert", move |tx| {
            let obs = Arc::clone(&obs);
            Box::pin(async move { alerts::observe(tx, &obs, now).await })
        })
        .await
    }

    async fn resolve_alert(
        &self,
        rule: &str,
        subject: &str,
        now: Millis,
    ) -> Result<Option<AlertEpisode>> {
        let input = Arc::new((rule.to_owned(), subject.to_owned()));
        self.write_tx("resolve an alert", move |tx| {
            let input = Arc::clone(&input);
            Box::pin(async move { alerts::resolve(tx, &input.0, &input.1, now).await })
        })
        .await
    }

    async fn mark_alert_notified(
        &self,
        id: AlertId,
        notice: AlertNotice,
        now: Millis,
    ) -> Result<bool> {
        self.write_tx("mark an alert notified", move |tx| {
            Box::pin(async move { alerts::mark_notified(tx, id, notice, now).await })
        })
        .await
    }

    async fn alert_episodes(&self, open_only: bool, limit: usize) -> Result<Vec<AlertEpisode>> {
        on_client!(self, |c| alerts::episodes(c, open_only, limit))
    }

    async fn unnotified_alerts(&self, limit: usize) -> Result<Vec<AlertEpisode>> {
        on_client!(self, |c| alerts::unnotified(c, limit))
    }

    async fn prune_history(&self, before: Millis, batch: usize) -> Result<crate::Pruned> {
        self.write_tx("prune history", move |tx| {
            Box::pin(async move { retention::prune(tx, before, batch).await })
        })
        .await
    }
}

#[cfg(test)]
mod tests;

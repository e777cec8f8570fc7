//! Test support for the engine behaviour tests: a scripted, fault-injecting fake connector, a
//! harness that runs a real engine over a real `SqliteStore` in a fresh temporary directory, and
//! `wait_until`, the only way these tests wait (a condition polled every 10 ms under a deadline).
//!
//! The fake records every `write` call (when it started, its ops and the outcomes it answered),
//! answers outcomes scripted per call or per key, can add random latency, can be held shut by a
//! gate so items pile up, tracks the most writes it ever had in flight at once, can echo what it
//! wrote back through `Engine::capture_webhook` (as a real system's webhook would), and serves
//! `read_changes` from an in-memory feed with a sequence-number cursor.

#![allow(dead_code)] // each test binary uses a different part of the support module

use async_trait::async_trait;
use concord_core::Kind;
use concord_engine::config::Config;
use concord_engine::connector::{
    Capabilities, Captured, Connector, DeliveryError, KindCaps, Page, RateLimitProfile, ReadModes,
    ReadRequest, WebhookError, WriteModes, WriteOp, WriteOutcome,
};
use concord_engine::runtime::Engine;
use concord_store::{SqliteStore, Store};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long any condition may take to become true. Generous: the machine is small and shared.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The one wait of the workspace's tests (a condition polled under a deadline; here, usually
/// [`DEADLINE`]).
pub use concord_testkit::wait_until;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the fake answers for one op.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    RateLimited(Duration),
    Transient,
    Unavailable,
    Permanent(String),
    /// `DeliveryError::NotYet`: the endpoint lacks a record this write needs.
    NotYet,
    /// `WriteOutcome::CannotAmend` (only meaningful for an order's `amend`).
    CannotAmend(String),
}

impl Outcome {
    fn to_write(&self, external_id: String) -> WriteOutcome {
        let fail = WriteOutcome::Failed;
        match self {
            Outcome::Done => WriteOutcome::Done {
                external_id: Some(external_id),
                version: None,
            },
            Outcome::RateLimited(d) => fail(DeliveryError::RateLimited {
                reason: "HTTP 429: slow down".into(),
                retry_after: Some(*d),
            }),
            Outcome::Transient => fail(DeliveryError::Transient {
                reason: "HTTP 502: bad gateway".into(),
                retry_after: None,
            }),
            Outcome::Unavailable => fail(DeliveryError::Unavailable {
                reason: "connection refused".into(),
                retry_after: None,
            }),
            Outcome::Permanent(reason) => fail(DeliveryError::Permanent {
                reason: reason.clone(),
            }),
            Outcome::NotYet => fail(DeliveryError::NotYet {
                reason: "the product is not there yet".into(),
                retry_after: None,
            }),
            Outcome::CannotAmend(reason) => WriteOutcome::CannotAmend {
                reason: reason.clone(),
            },
        }
    }
}

/// One op of a recorded `write` call, with the outcome the fake answered.
#[derive(Debug, Clone)]
pub struct Written {
    /// When the call started.
    pub at: Instant,
    /// Index of the call among all calls to this fake.
    pub call: usize,
    pub op: WriteOp,
    pub outcome: Outcome,
}

impl Written {
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Done
    }
}

/// One recorded `read_changes` call.
#[derive(Debug, Clone)]
pub struct ReadCall {
    pub cursor: Option<String>,
    pub failed: bool,
}

#[derive(Default)]
struct Script {
    /// Consumed one per op, for ops without a per-key answer.
    queue: VecDeque<Outcome>,
    /// Consumed one per op of that key, before `sticky`.
    per_key_queue: HashMap<String, VecDeque<Outcome>>,
    /// Answered to every op of that key while set.
    sticky: HashMap<String, Outcome>,
    /// Answered when nothing else applies.
    default: Option<Outcome>,
}

/// External ids of feed entries a read never returns (see [`Fake::feed_filtered`]).
const FILTERED: &str = "~filtered-";

/// The scripted fake connector. Build with [`Fake::new`] and the `with_*` methods, then share it
/// as `Arc<Fake>`.
pub struct Fake {
    pub name: String,
    kinds: Vec<Kind>,
    changes: bool,
    max_batch: usize,
    /// Declares `amend` for orders.
    amend: bool,
    /// Kinds it reads but cannot write.
    read_only: Vec<Kind>,
    script: Mutex<Script>,
    writes: Mutex<Vec<Written>>,
    calls: AtomicUsize,
    latency_ms: Mutex<Option<(u64, u64)>>,
    gate: watch::Sender<bool>,
    at_gate: AtomicUsize,
    inflight: AtomicUsize,
    max_inflight: AtomicUsize,
    ids: Mutex<HashMap<(Kind, String), String>>,
    echo: Mutex<Option<Engine>>,
    feed: Mutex<Vec<(u64, Captured)>>,
    read_failures: Mutex<u32>,
    reads: Mutex<Vec<ReadCall>>,
    /// The next this-many `write` / `read_changes` calls panic (a connector bug).
    write_panics: Mutex<u32>,
    read_panics: Mutex<u32>,
}

impl Fake {
    /// A fake endpoint that receives webhooks for and upserts `kinds`, one op per write call.
    pub fn new(name: &str, kinds: &[Kind]) -> Fake {
        Fake {
            name: name.to_string(),
            kinds: kinds.to_vec(),
            changes: false,
            max_batch: 1,
            amend: false,
            read_only: Vec::new(),
            script: Mutex::new(Script::default()),
            writes: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
            latency_ms: Mutex::new(None),
            gate: watch::channel(true).0,
            at_gate: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
            max_inflight: AtomicUsize::new(0),
            ids: Mutex::new(HashMap::new()),
            echo: Mutex::new(None),
            feed: Mutex::new(Vec::new()),
            read_failures: Mutex::new(0),
            reads: Mutex::new(Vec::new()),
            write_panics: Mutex::new(0),
            read_panics: Mutex::new(0),
        }
    }

    /// Also serve `read_changes` (delta polling) and `read_snapshot` (full listings, the same
    /// pages) from the in-memory feed.
    pub fn with_changes(mut self) -> Fake {
        self.changes = true;
        self
    }

    /// Declare that orders can be amended (op `amend`).
    pub fn with_amend(mut self) -> Fake {
        self.amend = true;
        self
    }

    /// Declare `kind` readable but not writable (e.g. an ERP that cannot record refunds).
    pub fn without_write(mut self, kind: Kind) -> Fake {
        self.read_only.push(kind);
        self
    }

    pub fn with_max_batch(mut self, n: usize) -> Fake {
        self.max_batch = n.max(1);
        self
    }

    // ---- scripting ----

    /// Answer the next ops (of keys without their own script) with these, in order.
    pub fn push_outcomes(&self, outcomes: impl IntoIterator<Item = Outcome>) {
        lock(&self.script).queue.extend(outcomes);
    }

    /// Answer the next ops of `key` with these, in order.
    pub fn push_key_outcomes(&self, key: &str, outcomes: impl IntoIterator<Item = Outcome>) {
        lock(&self.script)
            .per_key_queue
            .entry(key.to_string())
            .or_default()
            .extend(outcomes);
    }

    /// Answer every op of `key` with `outcome` (`None`: stop doing so).
    pub fn set_key(&self, key: &str, outcome: Option<Outcome>) {
        let mut s = lock(&self.script);
        match outcome {
            Some(o) => s.sticky.insert(key.to_string(), o),
            None => s.sticky.remove(key),
        };
    }

    /// Answer every op without a more specific script with `outcome` (`None`: `Done`).
    pub fn set_default(&self, outcome: Option<Outcome>) {
        lock(&self.script).default = outcome;
    }

    /// Every write call sleeps a random time in `min..=max` ms.
    pub fn set_latency_ms(&self, min: u64, max: u64) {
        *lock(&self.latency_ms) = Some((min, max));
    }

    /// Hold every write call at the gate until [`Fake::open`].
    pub fn close(&self) {
        self.gate.send_replace(false);
    }

    pub fn open(&self) {
        self.gate.send_replace(true);
    }

    /// Write calls now waiting at the closed gate.
    pub fn waiting_at_gate(&self) -> usize {
        self.at_gate.load(Ordering::SeqCst)
    }

    /// After every successful write, report the record back to `engine` as this endpoint's
    /// webhook would (`None`: stop).
    pub fn echo_to(&self, engine: Option<Engine>) {
        *lock(&self.echo) = engine;
    }

    // ---- the feed ----

    /// Append records to the change feed; each gets the next sequence number.
    pub fn feed(&self, records: impl IntoIterator<Item = Captured>) {
        let mut feed = lock(&self.feed);
        for r in records {
            let seq = feed.len() as u64 + 1;
            feed.push((seq, r));
        }
    }

    /// Append `n` entries that take sequence numbers but are never returned, like records a
    /// connector's own filter drops from a page: a page of only these is empty but moves the
    /// cursor.
    pub fn feed_filtered(&self, kind: Kind, n: usize) {
        let mut feed = lock(&self.feed);
        for i in 0..n {
            let seq = feed.len() as u64 + 1;
            feed.push((
                seq,
                Captured {
                    kind,
                    external_id: format!("{FILTERED}{i}"),
                    version: None,
                    record: Value::Null,
                },
            ));
        }
    }

    pub fn last_seq(&self) -> u64 {
        lock(&self.feed).len() as u64
    }

    /// The next `n` reads fail transiently.
    pub fn fail_reads(&self, n: u32) {
        *lock(&self.read_failures) = n;
    }

    pub fn reads(&self) -> Vec<ReadCall> {
        lock(&self.reads).clone()
    }

    /// The next `n` write calls panic (before writing anything).
    pub fn panic_writes(&self, n: u32) {
        *lock(&self.write_panics) = n;
    }

    /// The next `n` `read_changes` calls panic (`u32::MAX`: every one).
    pub fn panic_reads(&self, n: u32) {
        *lock(&self.read_panics) = n;
    }

    /// Take one of the scripted panics of `which`, if any is left.
    fn take_panic(which: &Mutex<u32>) -> bool {
        let mut n = lock(which);
        let panic = *n > 0;
        if *n != u32::MAX {
            *n = n.saturating_sub(1);
        }
        panic
    }

    // ---- observations ----

    /// Every op of every write call so far, in call order.
    pub fn writes(&self) -> Vec<Written> {
        lock(&self.writes).clone()
    }

    pub fn writes_of(&self, key: &str) -> Vec<Written> {
        self.writes()
            .into_iter()
            .filter(|w| w.op.key == key)
            .collect()
    }

    /// Successful writes of `key`.
    pub fn done_of(&self, key: &str) -> Vec<Written> {
        self.writes_of(key)
            .into_iter()
            .filter(Written::ok)
            .collect()
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn max_inflight(&self) -> usize {
        self.max_inflight.load(Ordering::SeqCst)
    }

    /// The id this endpoint gave the record (`kind`, `key`) when it first wrote it.
    pub fn external_id(&self, kind: Kind, key: &str) -> Option<String> {
        lock(&self.ids).get(&(kind, key.to_string())).cloned()
    }

    fn next_outcome(&self, key: &str) -> Outcome {
        let mut s = lock(&self.script);
        if let Some(o) = s.per_key_queue.get_mut(key).and_then(VecDeque::pop_front) {
            return o;
        }
        if let Some(o) = s.sticky.get(key) {
            return o.clone();
        }
        if let Some(o) = s.queue.pop_front() {
            return o;
        }
        s.default.clone().unwrap_or(Outcome::Done)
    }

    fn id_for(&self, op: &WriteOp) -> String {
        let mut ids = lock(&self.ids);
        let next = ids.len() + 1;
        ids.entry((op.kind, op.key.clone()))
            .or_insert_with(|| {
                op.external_id
                    .clone()
                    .unwrap_or_else(|| format!("{}-{}", self.name, next))
            })
            .clone()
    }
}

/// `{"events": [{"kind", "id", "version", "record"}]}`: the fake's webhook body.
pub fn webhook_body(events: &[(Kind, &str, Option<&str>, Value)]) -> Vec<u8> {
    let events: Vec<Value> = events
        .iter()
        .map(|(kind, id, version, record)| {
            json!({"kind": kind.as_str(), "id": id, "version": version, "record": record})
        })
        .collect();
    serde_json::to_vec(&json!({ "events": events })).unwrap_or_default()
}

#[async_trait]
impl Connector for Fake {
    fn connector_type(&self) -> &'static str {
        "fake"
    }

    fn capabilities(&self) -> Capabilities {
        let caps = KindCaps {
            read: ReadModes {
                webhook: true,
                changes: self.changes,
                // The same feed serves full listings (batch flows, reconcile).
                snapshot: self.changes,
            },
            write: WriteModes {
                upsert: true,
                max_batch: self.max_batch,
                amend: false,
            },
        };
        let caps_of = |k: &Kind| {
            let mut c = caps;
            c.write.amend = self.amend && *k == Kind::Order;
            if self.read_only.contains(k) {
                c.write = WriteModes::default();
            }
            (*k, c)
        };
        Capabilities {
            kinds: self.kinds.iter().map(caps_of).collect(),
            rate_limit: RateLimitProfile {
                requests_per_sec: None,
                max_concurrency: None,
                adaptive: false,
            },
        }
    }

    async fn parse_webhook(
        &self,
        _headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Vec<Captured>, WebhookError> {
        let bad = |m: String| WebhookError::BadRequest(m);
        let v: Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
        let events = v
            .get("events")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `events` array".into()))?;
        events
            .iter()
            .map(|e| {
                let kind = e
                    .get("kind")
                    .and_then(Value::as_str)
                    .and_then(|k| k.parse::<Kind>().ok())
                    .ok_or_else(|| bad("bad `kind`".into()))?;
                let id = e
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("bad `id`".into()))?;
                Ok(Captured {
                    kind,
                    external_id: id.to_string(),
                    version: e.get("version").and_then(Value::as_str).map(str::to_string),
                    record: e.get("record").cloned().unwrap_or(Value::Null),
                })
            })
            .collect()
    }

    async fn read_snapshot(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        self.read_changes(req).await
    }

    async fn read_changes(&self, req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        if Fake::take_panic(&self.read_panics) {
            panic!("fake read_changes panicked (internal detail: /srv/secret/path)");
        }
        let cursor = req.cursor.map(str::to_string);
        let fail = {
            let mut f = lock(&self.read_failures);
            let fail = *f > 0;
            *f = f.saturating_sub(1);
            fail
        };
        lock(&self.reads).push(ReadCall {
            cursor: cursor.clone(),
            failed: fail,
        });
        if fail {
            return Err(DeliveryError::Transient {
                reason: "HTTP 502: feed unavailable".into(),
                retry_after: None,
            });
        }
        let after: u64 = cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0);
        let feed = lock(&self.feed);
        let rest: Vec<&(u64, Captured)> = feed
            .iter()
            .filter(|(seq, c)| *seq > after && c.kind == req.kind)
            .collect();
        let page: Vec<&(u64, Captured)> = rest.iter().take(req.limit.max(1)).copied().collect();
        Ok(Page {
            cursor: page.last().map(|(seq, _)| seq.to_string()),
            more: rest.len() > page.len(),
            records: page
                .into_iter()
                .filter(|(_, c)| !c.external_id.starts_with(FILTERED))
                .map(|(_, c)| c.clone())
                .collect(),
        })
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Vec<WriteOutcome> {
        if Fake::take_panic(&self.write_panics) {
            panic!("fake write panicked");
        }
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let at = Instant::now();
        let now_inflight = self.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_inflight.fetch_max(now_inflight, Ordering::SeqCst);

        let mut gate = self.gate.subscribe();
        if !*gate.borrow() {
            self.at_gate.fetch_add(1, Ordering::SeqCst);
            let _ = gate.wait_for(|open| *open).await;
            self.at_gate.fetch_sub(1, Ordering::SeqCst);
        }
        let latency = *lock(&self.latency_ms);
        if let Some((min, max)) = latency {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(min..=max))).await;
        }

        let mut outcomes = Vec::with_capacity(ops.len());
        let mut echoes = Vec::new();
        {
            let mut writes = lock(&self.writes);
            for op in ops {
                let outcome = self.next_outcome(&op.key);
                let id = self.id_for(&op);
                if outcome == Outcome::Done {
                    echoes.push((op.kind, id.clone(), op.payload.clone()));
                }
                outcomes.push(outcome.to_write(id));
                writes.push(Written {
                    at,
                    call,
                    op,
                    outcome,
                });
            }
        }
        let echo = lock(&self.echo).clone();
        if let Some(engine) = echo {
            for (kind, id, record) in echoes {
                let body = webhook_body(&[(kind, &id, None, record)]);
                if let Err(e) = engine
                    .capture_webhook(&self.name, &http::HeaderMap::new(), &body)
                    .await
                {
                    panic!("echo of {kind} {id} to the engine failed: {e}");
                }
            }
        }
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        outcomes
    }
}

/// The flow `orders`: the channel `web`'s orders into the ERP `erp` (realtime aggregation).
pub const ORDERS_TO_ERP: &str = r#"
[[flows]]
name = "orders"
kind = "order"
pattern = "aggregation"
mode = "realtime"
from = ["web"]
to = ["erp"]
"#;

/// A config with fast engine settings (`engine` overrides them: `("max_attempts", "3")`, values
/// as TOML), one `[endpoints.NAME]` per name, and `flows` (TOML `[[flows]]` tables).
pub fn config_text(endpoints: &[&str], engine: &[(&str, &str)], flows: &str) -> String {
    let mut settings: BTreeMap<&str, &str> = [
        ("backoff_base", "\"20ms\""),
        ("backoff_cap", "\"200ms\""),
        ("breaker_open", "\"200ms\""),
        ("breaker_max_open", "\"400ms\""),
        ("endpoint_concurrency", "4"),
    ]
    .into_iter()
    .collect();
    settings.extend(engine.iter().copied());
    let mut text = String::from("[engine]\n");
    for (k, v) in settings {
        text.push_str(&format!("{k} = {v}\n"));
    }
    for (i, e) in endpoints.iter().enumerate() {
        text.push_str(&format!(
            "\n[endpoints.{e}]\nconnector = \"fake\"\nurl = \"http://127.0.0.1:{}\"\n",
            9000 + i
        ));
    }
    text.push('\n');
    text.push_str(flows);
    text
}

/// A running engine over a fresh SQLite store and fake endpoints.
pub struct Harness {
    pub engine: Engine,
    pub store: Arc<dyn Store>,
    pub fakes: BTreeMap<String, Arc<Fake>>,
    tasks: Option<JoinSet<()>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Load `config` (TOML), open a store in a new temporary directory, build and start the
    /// engine with `fakes` as its endpoints.
    pub async fn start(config: &str, fakes: Vec<Fake>) -> Harness {
        let config = Config::from_toml_str_with_env(config, Path::new("test.toml"), |_| None)
            .unwrap_or_else(|e| panic!("test config: {e}\n{config}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path().join("concord.sqlite")).expect("open store"));
        let fakes: BTreeMap<String, Arc<Fake>> = fakes
            .into_iter()
            .map(|f| (f.name.clone(), Arc::new(f)))
            .collect();
        let connectors: BTreeMap<String, Arc<dyn Connector>> = fakes
            .iter()
            .map(|(n, f)| (n.clone(), f.clone() as Arc<dyn Connector>))
            .collect();
        let engine =
            Engine::new(Arc::new(config), store.clone(), connectors).expect("engine builds");
        let tasks = engine.start().await.expect("engine starts");
        Harness {
            engine,
            store,
            fakes,
            tasks: Some(tasks),
            _dir: dir,
        }
    }

    pub fn fake(&self, name: &str) -> &Arc<Fake> {
        &self.fakes[name]
    }

    /// The SQLite file of this harness's store.
    pub fn db_path(&self) -> std::path::PathBuf {
        self._dir.path().join("concord.sqlite")
    }

    /// Deliver a webhook of the fake's envelope to `endpoint`; panics if it is refused.
    pub async fn capture(&self, endpoint: &str, events: &[(Kind, &str, Option<&str>, Value)]) {
        let body = webhook_body(events);
        self.engine
            .capture_webhook(endpoint, &http::HeaderMap::new(), &body)
            .await
            .unwrap_or_else(|e| panic!("webhook to {endpoint} refused: {e}"));
    }

    /// Nothing left to process or deliver (parked items aside).
    pub async fn drained(&self) -> bool {
        self.engine.is_drained().await.unwrap_or(false)
    }

    pub async fn journal_pending(&self) -> u64 {
        self.store
            .stats()
            .await
            .map(|s| s.journal_pending)
            .unwrap_or(u64::MAX)
    }

    pub fn breaker(&self, endpoint: &str) -> String {
        self.engine
            .endpoint_health()
            .into_iter()
            .find(|h| h.endpoint == endpoint)
            .map(|h| h.breaker)
            .unwrap_or_default()
    }

    /// Open every gate, stop the engine and wait for its tasks.
    pub async fn stop(mut self) {
        for f in self.fakes.values() {
            f.echo_to(None);
            f.open();
        }
        self.engine.shutdown();
        if let Some(mut tasks) = self.tasks.take() {
            let joined = tokio::time::timeout(DEADLINE, async {
                while let Some(r) = tasks.join_next().await {
                    if let Err(e) = r {
                        if e.is_panic() {
                            std::panic::resume_unwind(e.into_panic());
                        }
                    }
                }
            })
            .await;
            assert!(joined.is_ok(), "engine tasks did not stop after shutdown");
        }
    }
}

/// A canonical stock record.
pub fn stock(sku: &str, on_hand: i64) -> Value {
    json!({"sku": sku, "location": "WH", "on_hand": on_hand})
}

/// A canonical customer record.
pub fn customer(email: &str, name: &str) -> Value {
    json!({"email": email, "name": name})
}

/// A canonical order record.
pub fn order(number: &str, email: &str, status: &str) -> Value {
    json!({"number": number, "customer": {"email": email}, "currency": "USD", "status": status,
           "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1100}]})
}

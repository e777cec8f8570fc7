//! The machinery both emulators share: the change feed (global gapless `seq`), the webhook
//! sender (batched, signed, retried with backoff 100 ms / 400 ms / 1.6 s, then dropped), the fault
//! middleware, the write log, the `/api/changes`, `/api/records` and `/_control/*` routes, and the
//! server lifecycle (start, real outage by closing the listener, re-bind on the same port).
//!
//! Must never: hold a lock across an `.await`, or fault `/_control/*`.

use super::{sign, Counters, Faults, SimError, SIGNATURE_HEADER, TOPIC_HEADER};
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use concord_core::Kind;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Lock a std mutex, ignoring poisoning (a panicked handler must not wedge the emulator).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A JSON error response `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// `{"id": id, ..record}`.
pub(crate) fn with_id(id: &str, record: &Value) -> Value {
    let mut m = record.as_object().cloned().unwrap_or_default();
    m.insert("id".into(), Value::String(id.to_string()));
    Value::Object(m)
}

/// Fill `field` from the URL when the body lacks it; refuse a body that disagrees with the URL.
pub(crate) fn bind_path_field(body: &mut Value, field: &str, value: &str) -> Result<(), String> {
    let obj = body
        .as_object_mut()
        .ok_or_else(|| "body must be a JSON object".to_string())?;
    match obj.get(field) {
        None => {
            obj.insert(field.into(), Value::String(value.to_string()));
            Ok(())
        }
        Some(Value::String(s)) if s.trim() == value => Ok(()),
        Some(other) => Err(format!(
            "field `{field}`: {other} does not match the URL's `{value}`"
        )),
    }
}

/// Parse a request body as JSON; a malformed body is a 400 naming the position.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!(
                "malformed JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

/// One write request received by an emulator (after fault injection let it through).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteEntry {
    pub method: String,
    pub path: String,
    /// The body as JSON (`Value::String` with the raw text when it is not JSON).
    pub body: Value,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub seq: u64,
    pub updated_at: i64,
    pub record: Value,
}

#[derive(Default)]
struct KindLog {
    by_id: BTreeMap<String, Entry>,
    by_seq: BTreeMap<u64, String>,
}

/// The latest state of every record, indexed by id and by its latest seq.
#[derive(Default)]
pub(crate) struct Feed {
    seq: u64,
    kinds: BTreeMap<Kind, KindLog>,
}

/// One feed row as served and as sent in webhooks.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub id: String,
    pub version: String,
    pub updated_at: i64,
    pub record: Value,
}

impl Feed {
    pub fn get(&self, kind: Kind, id: &str) -> Option<&Entry> {
        self.kinds.get(&kind)?.by_id.get(id)
    }

    fn put(&mut self, kind: Kind, id: &str, record: Value) -> Entry {
        self.seq += 1;
        let entry = Entry {
            seq: self.seq,
            updated_at: now_ms(),
            record,
        };
        let log = self.kinds.entry(kind).or_default();
        if let Some(old) = log.by_id.insert(id.to_string(), entry.clone()) {
            log.by_seq.remove(&old.seq);
        }
        log.by_seq.insert(entry.seq, id.to_string());
        entry
    }

    fn row(id: &str, e: &Entry) -> Row {
        Row {
            id: id.to_string(),
            version: e.seq.to_string(),
            updated_at: e.updated_at,
            record: e.record.clone(),
        }
    }

    /// Records whose latest seq is after `after`, in seq order; `more` = some are left.
    pub fn changes(&self, kind: Kind, after: u64, limit: usize) -> (Vec<Row>, bool) {
        let Some(log) = self.kinds.get(&kind) else {
            return (Vec::new(), false);
        };
        let mut it = log.by_seq.range(after.saturating_add(1)..);
        let rows = it
            .by_ref()
            .take(limit)
            .filter_map(|(_, id)| log.by_id.get(id).map(|e| Self::row(id, e)))
            .collect();
        (rows, it.next().is_some())
    }

    /// Records with an id after `after_id`, in id order.
    pub fn snapshot(&self, kind: Kind, after_id: Option<&str>, limit: usize) -> (Vec<Row>, bool) {
        let Some(log) = self.kinds.get(&kind) else {
            return (Vec::new(), false);
        };
        let mut it = log
            .by_id
            .iter()
            .filter(|(id, _)| after_id.is_none_or(|a| id.as_str() > a));
        let rows = it
            .by_ref()
            .take(limit)
            .map(|(id, e)| Self::row(id, e))
            .collect();
        (rows, it.next().is_some())
    }
}

/// A change on its way to the webhook receiver.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    kind: Kind,
    row: Row,
}

#[derive(Default)]
pub(crate) struct CounterSet {
    pub requests: AtomicU64,
    pub responses_429: AtomicU64,
    pub responses_5xx: AtomicU64,
    pub webhooks_sent: AtomicU64,
    pub webhook_events_sent: AtomicU64,
    pub webhooks_failed: AtomicU64,
    pub webhooks_dropped: AtomicU64,
    pub webhook_events_dropped: AtomicU64,
    pub oversell_refused: AtomicU64,
    pub writes: Mutex<BTreeMap<String, u64>>,
}

/// Webhook settings common to both emulators.
#[derive(Debug, Clone)]
pub(crate) struct WebhookConfig {
    pub url: String,
    pub secret: Option<String>,
    pub kinds: Option<Vec<Kind>>,
    pub batch: usize,
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

struct ServerSlot {
    router: Option<Router>,
    running: Option<Running>,
}

/// Shared state of one emulator.
pub(crate) struct Core {
    pub addr: SocketAddr,
    /// The kinds this emulator serves in its feed.
    pub kinds: &'static [Kind],
    pub faults: Mutex<Faults>,
    pub counters: Arc<CounterSet>,
    pub feed: Mutex<Feed>,
    write_log: Mutex<Vec<WriteEntry>>,
    webhook_tx: Option<mpsc::UnboundedSender<Event>>,
    webhook_kinds: Option<Vec<Kind>>,
    server: tokio::sync::Mutex<ServerSlot>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Core {
    /// Bind the listener (so the address is known before the routes are built).
    pub async fn bind(
        bind: SocketAddr,
        kinds: &'static [Kind],
        webhook: Option<WebhookConfig>,
    ) -> Result<(Arc<Core>, tokio::net::TcpListener), SimError> {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|source| SimError::Bind {
                addr: bind.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: bind.to_string(),
            source,
        })?;
        let counters = Arc::new(CounterSet::default());
        let mut tasks = Vec::new();
        let (webhook_tx, webhook_kinds) = match webhook {
            Some(cfg) => {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .map_err(|e| SimError::Client(e.to_string()))?;
                let (tx, rx) = mpsc::unbounded_channel();
                let kinds = cfg.kinds.clone();
                tasks.push(tokio::spawn(webhook_sender(
                    rx,
                    cfg,
                    http,
                    counters.clone(),
                )));
                (Some(tx), kinds)
            }
            None => (None, None),
        };
        let core = Arc::new(Core {
            addr,
            kinds,
            faults: Mutex::new(Faults::default()),
            counters,
            feed: Mutex::new(Feed::default()),
            write_log: Mutex::new(Vec::new()),
            webhook_tx,
            webhook_kinds,
            server: tokio::sync::Mutex::new(ServerSlot {
                router: None,
                running: None,
            }),
            tasks: Mutex::new(tasks),
        });
        Ok((core, listener))
    }

    /// Serve `api` (the emulator's own routes, state already applied) plus the shared routes.
    pub async fn serve(self: &Arc<Self>, listener: tokio::net::TcpListener, api: Router) {
        let shared = Router::new()
            .route("/api/changes", get(changes))
            .route("/api/records", get(records))
            .route("/_control/faults", post(set_faults).get(get_faults))
            .route("/_control/counters", get(get_counters))
            .with_state(self.clone());
        let router = api
            .merge(shared)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                fault_middleware,
            ));
        let mut slot = self.server.lock().await;
        slot.running = Some(spawn_server(listener, router.clone()));
        slot.router = Some(router);
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add_task(&self, task: JoinHandle<()>) {
        lock(&self.tasks).push(task);
    }

    /// Record a change: new seq, new `updated_at`, queued for webhooks. Returns `None` (and does
    /// nothing) when the record equals the stored one: a no-op save is not a change.
    pub fn emit(&self, kind: Kind, id: &str, record: Value) -> Option<u64> {
        let mut feed = lock(&self.feed);
        if feed.get(kind, id).is_some_and(|e| e.record == record) {
            return None;
        }
        let entry = feed.put(kind, id, record);
        // Queued under the feed lock, so webhooks leave in seq order.
        if let Some(tx) = &self.webhook_tx {
            if self
                .webhook_kinds
                .as_ref()
                .is_none_or(|k| k.contains(&kind))
            {
                let _ = tx.send(Event {
                    kind,
                    row: Feed::row(id, &entry),
                });
            }
        }
        Some(entry.seq)
    }

    pub fn record(&self, kind: Kind, id: &str) -> Option<Value> {
        lock(&self.feed).get(kind, id).map(|e| e.record.clone())
    }

    pub fn count_writes(&self, kind: Kind, n: u64) {
        *lock(&self.counters.writes)
            .entry(kind.as_str().to_string())
            .or_default() += n;
    }

    pub fn counters(&self) -> Counters {
        let c = &self.counters;
        Counters {
            requests: c.requests.load(Relaxed),
            responses_429: c.responses_429.load(Relaxed),
            responses_5xx: c.responses_5xx.load(Relaxed),
            writes: lock(&c.writes).clone(),
            webhooks_sent: c.webhooks_sent.load(Relaxed),
            webhook_events_sent: c.webhook_events_sent.load(Relaxed),
            webhooks_failed: c.webhooks_failed.load(Relaxed),
            webhooks_dropped: c.webhooks_dropped.load(Relaxed),
            webhook_events_dropped: c.webhook_events_dropped.load(Relaxed),
            oversell_refused: c.oversell_refused.load(Relaxed),
        }
    }

    pub fn write_log(&self) -> Vec<WriteEntry> {
        lock(&self.write_log).clone()
    }

    pub fn set_faults(&self, f: Faults) {
        *lock(&self.faults) = f;
    }

    /// A real outage: `true` closes the listener (connections are refused) and ends open
    /// connections once their request is answered; `false` re-binds the same port.
    pub async fn set_down(&self, down: bool) -> Result<(), SimError> {
        let mut slot = self.server.lock().await;
        if down {
            if let Some(r) = slot.running.take() {
                stop_server(r).await;
            }
            return Ok(());
        }
        if slot.running.is_some() {
            return Ok(());
        }
        let router = slot.router.clone().ok_or(SimError::ShutDown)?;
        let listener = bind_retrying(self.addr).await?;
        slot.running = Some(spawn_server(listener, router));
        Ok(())
    }

    /// Stop serving and stop every background task (webhook sender, auto-ship).
    pub async fn shutdown(&self) {
        let mut slot = self.server.lock().await;
        slot.router = None; // breaks the router → state → core cycle
        if let Some(r) = slot.running.take() {
            stop_server(r).await;
        }
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

fn spawn_server(listener: tokio::net::TcpListener, router: Router) -> Running {
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Running { stop, task }
}

async fn stop_server(r: Running) {
    let _ = r.stop.send(());
    let abort = r.task.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), r.task)
        .await
        .is_err()
    {
        abort.abort();
    }
}

/// The old socket may linger briefly; retry the bind for up to a second.
async fn bind_retrying(addr: SocketAddr) -> Result<tokio::net::TcpListener, SimError> {
    let mut last = None;
    for _ in 0..50 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(SimError::Bind {
        addr: addr.to_string(),
        source: last.unwrap_or_else(|| std::io::Error::other("bind failed")),
    })
}

/// Batches consecutive events of one kind (one topic per POST), up to `cfg.batch`, without
/// waiting for more when the queue is empty.
async fn webhook_sender(
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

async fn fault_middleware(State(core): State<Arc<Core>>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api") {
        return next.run(req).await;
    }
    let n = core.counters.requests.fetch_add(1, Relaxed) + 1;
    let faults = lock(&core.faults).clone();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let resp = if faults.down {
        (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response()
    } else if faults.rate_limit_every > 0 && n % u64::from(faults.rate_limit_every) == 0 {
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
        if let Ok(v) = HeaderValue::from_str(&faults.retry_after_header()) {
            r.headers_mut().insert("Retry-After", v);
        }
        r
    } else if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
        error(StatusCode::INTERNAL_SERVER_ERROR, "injected internal error")
    } else {
        let req = if req.method() == Method::GET {
            req
        } else {
            log_write(&core, req).await
        };
        next.run(req).await
    };
    if resp.status() == StatusCode::TOO_MANY_REQUESTS {
        core.counters.responses_429.fetch_add(1, Relaxed);
    } else if resp.status().is_server_error() {
        core.counters.responses_5xx.fetch_add(1, Relaxed);
    }
    resp
}

async fn log_write(core: &Core, req: Request) -> Request {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let body_json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    lock(&core.write_log).push(WriteEntry {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        body: body_json,
    });
    Request::from_parts(parts, Body::from(bytes))
}

#[derive(Deserialize)]
struct FeedQuery {
    kind: Option<String>,
    after: Option<String>,
    after_id: Option<String>,
    limit: Option<String>,
}

fn feed_params(core: &Core, q: &FeedQuery) -> Result<(Kind, usize), Response> {
    let name = q.kind.as_deref().ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "query parameter `kind` is required",
        )
    })?;
    let kind: Kind = name.parse().map_err(|e: concord_core::kind::UnknownKind| {
        error(StatusCode::BAD_REQUEST, e.to_string())
    })?;
    if !core.kinds.contains(&kind) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("kind `{kind}` is not served by this system"),
        ));
    }
    let limit = match &q.limit {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "`limit` must be 1..=1000"))?,
    };
    Ok((kind, limit))
}

/// `GET /api/changes?kind=K&after=<seq>&limit=N`.
async fn changes(State(core): State<Arc<Core>>, Query(q): Query<FeedQuery>) -> Response {
    let (kind, limit) = match feed_params(&core, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let after = match q.after.as_deref().filter(|a| !a.is_empty()) {
        None => 0,
        Some(a) => match a.parse::<u64>() {
            Ok(a) => a,
            Err(_) => return error(StatusCode::BAD_REQUEST, "`after` must be a sequence number"),
        },
    };
    let (rows, more) = lock(&core.feed).changes(kind, after, limit);
    let next = rows.last().map_or(after.to_string(), |r| r.version.clone());
    Json(json!({"records": rows, "next": next, "more": more})).into_response()
}

/// `GET /api/records?kind=K&after_id=<id>&limit=N`.
async fn records(State(core): State<Arc<Core>>, Query(q): Query<FeedQuery>) -> Response {
    let (kind, limit) = match feed_params(&core, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let after_id = q.after_id.as_deref().filter(|a| !a.is_empty());
    let (rows, more) = lock(&core.feed).snapshot(kind, after_id, limit);
    let next = rows.last().map(|r| r.id.clone());
    Json(json!({"records": rows, "next": next, "more": more})).into_response()
}

async fn set_faults(State(core): State<Arc<Core>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(f) => {
            core.set_faults(f.clone());
            Json(f).into_response()
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

async fn get_faults(State(core): State<Arc<Core>>) -> Response {
    Json(lock(&core.faults).clone()).into_response()
}

async fn get_counters(State(core): State<Arc<Core>>) -> Response {
    Json(core.counters()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_keeps_latest_state_in_seq_order() {
        let mut f = Feed::default();
        f.put(Kind::Product, "A", json!(1));
        f.put(Kind::Product, "B", json!(2));
        f.put(Kind::Stock, "A@W", json!(3));
        f.put(Kind::Product, "A", json!(4));
        let (rows, more) = f.changes(Kind::Product, 0, 10);
        assert!(!more);
        let ids: Vec<_> = rows
            .iter()
            .map(|r| (r.id.as_str(), r.version.as_str()))
            .collect();
        assert_eq!(ids, [("B", "2"), ("A", "4")]);
        let (rows, more) = f.changes(Kind::Product, 0, 1);
        assert!(more && rows[0].id == "B");
        let (rows, more) = f.snapshot(Kind::Product, Some("A"), 10);
        assert!(!more && rows.len() == 1 && rows[0].id == "B");
    }
}

//! The machinery both emulators share: the change feed (global gapless `seq`), the webhook
//! sender (batched, signed, retried with backoff 100 ms / 400 ms / 1.6 s, then dropped), the fault
//! middleware, the write log, the `/api/changes`, `/api/records` and shared `/_control/*` routes
//! (faults, outage, counters, write log, seq: documented in the crate docs), and the server
//! lifecycle (start, real outage by closing the listener, re-bind on the same port).
//!
//! Must never: hold a std lock across an `.await`, or fault `/_control/*`.

use super::feed::{changes, records, Feed};
pub(crate) use super::webhook::WebhookConfig;
use super::webhook::{webhook_sender, Event};
use super::{Counters, Faults, SimError};
use axum::body::Body;
use axum::extract::{Request, State};
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

/// The handle methods both emulators share, forwarded to their [`Core`] (`self.inner.core`).
macro_rules! core_handle_methods {
    () => {
        /// `http://127.0.0.1:<port>`.
        pub fn base_url(&self) -> String {
            self.inner.core.base_url()
        }

        /// Stop serving and stop the background tasks (without it the emulator runs until the
        /// tokio runtime ends).
        pub async fn shutdown(&self) {
            self.inner.core.shutdown().await;
        }

        pub fn set_faults(&self, faults: $crate::Faults) {
            self.inner.core.set_faults(faults);
        }

        /// A real outage: `true` closes the port (connections refused); `false` re-binds it.
        pub async fn set_down(&self, down: bool) -> Result<(), $crate::SimError> {
            self.inner.core.set_down(down).await
        }

        pub fn counters(&self) -> $crate::Counters {
            self.inner.core.counters()
        }

        /// The last change's seq (0 before any change): unchanged means nothing happened.
        pub fn last_seq(&self) -> u64 {
            self.inner.core.last_seq()
        }

        /// Every write request received (after fault injection), for counting
        /// duplicates/echoes.
        pub fn write_log(&self) -> Vec<$crate::WriteEntry> {
            self.inner.core.write_log()
        }
    };
}
pub(crate) use core_handle_methods;

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

/// A small error answer (status + message) that becomes `{"error": message}`.
#[derive(Debug)]
pub(crate) struct HttpError(pub StatusCode, pub String);

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
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
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, HttpError> {
    serde_json::from_slice(body).map_err(|e| {
        HttpError(
            StatusCode::BAD_REQUEST,
            format!(
                "malformed JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

/// A control call's body as `T`: a malformed body is a 400 naming the position; a missing,
/// unknown or mistyped field is a 422 naming its path (`lines[0].quantity: invalid type…`).
pub(crate) fn control_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    let v = parse_json(body)?;
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        HttpError(StatusCode::UNPROCESSABLE_ENTITY, message)
    })
}

/// [`control_body`] for a call whose fields are all optional: an empty body is the default.
pub(crate) fn control_body_or_default<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, HttpError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    control_body(body)
}

/// One write request received by an emulator (after fault injection let it through).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteEntry {
    pub method: String,
    pub path: String,
    /// The body as JSON (`Value::String` with the raw text when it is not JSON).
    pub body: Value,
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
    pub hub_refused: AtomicU64,
    pub oversold_units: AtomicU64,
    pub writes: Mutex<BTreeMap<String, u64>>,
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

struct ServerSlot {
    router: Option<Router>,
    running: Option<Running>,
    /// Bumped by every change of the server's state, so that the end of a timed outage
    /// (`POST /_control/outage`) never undoes a later `set_down`.
    generation: u64,
}

/// The longest outage `POST /_control/outage` takes (10 minutes): a typo must not take the
/// emulator away for a day.
pub(crate) const MAX_OUTAGE_MS: u64 = 600_000;

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
                generation: 0,
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
            .route("/_control/outage", post(outage))
            .route("/_control/counters", get(get_counters))
            .route("/_control/write-log", get(get_write_log))
            .route("/_control/seq", get(get_seq))
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
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
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

    /// A change whose event got lost: stored with a new seq (a changes poll finds it, the
    /// snapshot shows it) but never sent as a webhook. For drift tests.
    pub fn emit_unannounced(&self, kind: Kind, id: &str, record: Value) -> Option<u64> {
        let mut feed = lock(&self.feed);
        if feed.get(kind, id).is_some_and(|e| e.record == record) {
            return None;
        }
        Some(feed.put(kind, id, record).seq)
    }

    /// Delete a record in the system (an operator deleting it in its admin): it leaves the
    /// snapshot, and no event says so. For drift tests.
    pub fn forget(&self, kind: Kind, id: &str) -> bool {
        lock(&self.feed).remove(kind, id)
    }

    /// The last seq assigned (0 before any change).
    pub fn last_seq(&self) -> u64 {
        lock(&self.feed).last_seq()
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
            hub_refused: c.hub_refused.load(Relaxed),
            oversold_units: c.oversold_units.load(Relaxed),
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
        slot.generation += 1;
        self.apply_down(&mut slot, down).await
    }

    /// A real outage of `duration`: the listener is closed at once and bound again on the same
    /// port afterwards — unless the server's state was changed meanwhile (a `set_down`, another
    /// outage, a shutdown), which then stands.
    pub async fn outage(&self, duration: Duration) -> Result<(), SimError> {
        let generation = {
            let mut slot = self.server.lock().await;
            slot.generation += 1;
            self.apply_down(&mut slot, true).await?;
            slot.generation
        };
        tokio::time::sleep(duration).await;
        let mut slot = self.server.lock().await;
        if slot.generation != generation {
            return Ok(());
        }
        self.apply_down(&mut slot, false).await
    }

    async fn apply_down(&self, slot: &mut ServerSlot, down: bool) -> Result<(), SimError> {
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
        slot.generation += 1;
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
        let write = req.method() != Method::GET;
        let req = if write {
            log_write(&core, req).await
        } else {
            req
        };
        let resp = next.run(req).await;
        if write && faults.reply_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.reply_delay_ms)).await;
        }
        resp
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

async fn set_faults(State(core): State<Arc<Core>>, body: axum::body::Bytes) -> Response {
    match control_body::<Faults>(&body) {
        Ok(f) => {
            core.set_faults(f.clone());
            Json(f).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn get_faults(State(core): State<Arc<Core>>) -> Response {
    Json(lock(&core.faults).clone()).into_response()
}

async fn get_counters(State(core): State<Arc<Core>>) -> Response {
    Json(core.counters()).into_response()
}

/// `POST /_control/outage` `{"duration_ms"}`: answered 202 first; the listener closes right
/// after (the graceful shutdown lets this request's answer out) and comes back on the same port.
async fn outage(State(core): State<Arc<Core>>, body: axum::body::Bytes) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outage {
        duration_ms: u64,
    }
    let req: Outage = match control_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if !(1..=MAX_OUTAGE_MS).contains(&req.duration_ms) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "duration_ms: must be 1..={MAX_OUTAGE_MS}, got {}",
                req.duration_ms
            ),
        );
    }
    let ms = req.duration_ms;
    let task_core = core.clone();
    core.add_task(tokio::spawn(async move {
        if let Err(e) = task_core.outage(Duration::from_millis(ms)).await {
            tracing::warn!(error = %e, "sandbox outage: cannot bind the port again");
        }
    }));
    (StatusCode::ACCEPTED, Json(json!({ "down_for_ms": ms }))).into_response()
}

async fn get_write_log(State(core): State<Arc<Core>>) -> Response {
    Json(json!({ "writes": core.write_log() })).into_response()
}

async fn get_seq(State(core): State<Arc<Core>>) -> Response {
    Json(json!({ "last_seq": core.last_seq() })).into_response()
}

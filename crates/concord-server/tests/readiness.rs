//! Issue 12: "nothing restarts a dead engine task and readiness does not notice". An engine
//! whose poller panics at every start (its connector's `read_changes` panics, with internal
//! details in the message): the supervisor restarts it up to `[engine] task_restart_limit`, then
//! gives up, and `/readyz` answers 503 with the stable code naming the task — never the panic's
//! text, which stays in the logs.

use async_trait::async_trait;
use concord_core::Kind;
use concord_engine::config::Config;
use concord_engine::connector::{
    Capabilities, Connector, DeliveryError, KindCaps, Page, ReadModes, ReadRequest, WriteModes,
    WriteOp, WriteOutcome,
};
use concord_engine::Engine;
use concord_server::AppState;
use concord_store::{SqliteStore, Store};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

const SECRET_DETAIL: &str = "db password hunter2 at /srv/concord/secret.rs:42";

/// A connector whose changes feed panics every time.
struct PanickingFeed;

#[async_trait]
impl Connector for PanickingFeed {
    fn connector_type(&self) -> &'static str {
        "panicking"
    }

    fn capabilities(&self) -> Capabilities {
        let caps = KindCaps {
            read: ReadModes {
                webhook: false,
                changes: true,
                snapshot: false,
            },
            write: WriteModes {
                upsert: true,
                max_batch: 1,
                amend: false,
            },
        };
        Capabilities {
            kinds: [(Kind::Stock, caps)].into_iter().collect(),
            ..Capabilities::default()
        }
    }

    async fn read_changes(&self, _req: ReadRequest<'_>) -> Result<Page, DeliveryError> {
        panic!("{SECRET_DETAIL}");
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Vec<WriteOutcome> {
        ops.iter()
            .map(|_| WriteOutcome::Done {
                external_id: None,
                version: None,
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_cannot_run_makes_readyz_name_it_without_its_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"
[store]
path = "{db}"

[engine]
backoff_base = "10ms"
backoff_cap = "50ms"
task_restart_limit = 2

[endpoints.erp]
connector = "panicking"
url = "http://127.0.0.1:9"

[endpoints.web]
connector = "panicking"
url = "http://127.0.0.1:9"

[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "delta"
interval = "20ms"
from = ["erp"]
to = ["web"]
"#,
        db = dir.path().join("concord.sqlite").display()
    );
    let config = Config::from_toml_str(&text, Path::new("t.toml")).expect("config");
    let mut connectors: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
    connectors.insert("erp".into(), Arc::new(PanickingFeed));
    connectors.insert("web".into(), Arc::new(PanickingFeed));
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&config.store.path).expect("open the store"));
    let engine = Engine::new(Arc::new(config), store, connectors).expect("engine");
    let mut tasks = engine.start().await.expect("start");
    let app = concord_server::app(
        AppState {
            engine: engine.clone(),
            metrics: None,
            ready: Arc::new(AtomicBool::new(true)),
        },
        1 << 20,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(concord_server::serve(listener, app, async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();

    let (status, retry_after, body) = concord_testkit::wait_for_some(
        "readiness notices the dead poller",
        concord_testkit::DEADLINE,
        async || {
            let r = http
                .get(format!("{base}/readyz"))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .expect("GET /readyz");
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or("").to_string());
            let body = r.text().await.unwrap_or_default();
            (status != 200).then_some((status, retry_after, body))
        },
    )
    .await;
    assert_eq!(
        status, 503,
        "readiness never noticed the dead poller: {body}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["code"], "not_ready", "{body}");
    // The reason is itself a stable code naming the task.
    assert_eq!(
        v["error"], "engine_task_failed:poll:erp:stock",
        "names the task: {body}"
    );
    assert!(
        !body.contains("hunter2") && !body.contains("secret.rs") && !body.contains("panick"),
        "no internal error text: {body}"
    );
    assert_eq!(retry_after.as_deref(), Some("1"));
    // The engine reports the failure (what makes `concord run` exit non-zero).
    let failure = tokio::time::timeout(Duration::from_secs(5), engine.failed())
        .await
        .expect("failed() resolves");
    assert_eq!(failure.task, "poll:erp:stock");
    assert!(
        failure.reason.contains("hunter2"),
        "the logs get the reason"
    );
    // Liveness is unaffected.
    let r = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status().as_u16(), 200);

    let _ = stop.send(());
    let _ = server.await;
    engine.shutdown();
    while tasks.join_next().await.is_some() {}
}

/// `/readyz` probes the store with one trivial query (`Store::ping`, not the history-sized
/// counts of `stats`): ready while the store reads, `store_unavailable` once it cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_store_unavailable_when_the_store_cannot_be_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[store]\npath = \"{}\"\n\n[endpoints.erp]\nconnector = \"panicking\"\nurl = \"http://127.0.0.1:9\"\n\n\
         [endpoints.web]\nconnector = \"panicking\"\nurl = \"http://127.0.0.1:9\"\n\n\
         [[flows]]\nname = \"stock\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"delta\"\ninterval = \"1s\"\n\
         from = [\"erp\"]\nto = [\"web\"]\n",
        dir.path().join("concord.sqlite").display()
    );
    let config = Config::from_toml_str(&text, Path::new("t.toml")).expect("config");
    let sqlite = Arc::new(SqliteStore::open(&config.store.path).expect("open the store"));
    let store: Arc<dyn Store> = sqlite.clone();
    let mut connectors: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
    connectors.insert("erp".into(), Arc::new(PanickingFeed));
    connectors.insert("web".into(), Arc::new(PanickingFeed));
    // Not started: no engine task runs (and none can fail first).
    let engine = Engine::new(Arc::new(config), store, connectors).expect("engine");
    let app = concord_server::app(
        AppState {
            engine: engine.clone(),
            metrics: None,
            ready: Arc::new(AtomicBool::new(true)),
        },
        1 << 20,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(concord_server::serve(listener, app, async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let readyz = async || {
        let r = http
            .get(format!("{base}/readyz"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("GET /readyz");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    };
    assert_eq!(readyz().await, (200, "ready".to_string()));
    sqlite.close().await;
    let (status, body) = readyz().await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["error"], "store_unavailable", "{body}");
    let _ = stop.send(());
    let _ = server.await;
}

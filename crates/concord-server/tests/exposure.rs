//! What the hub exposes to whoever can reach it (issue 12), over real HTTP against a real engine
//! and store:
//!
//! - `/metrics` on the main port needs a metrics or admin token (403 when none is configured),
//!   and the separate `[metrics] listen` router serves `/metrics` alone, with a metrics token
//!   when one is configured;
//! - failed authentications are throttled per client address: 50 wrong logins from one address
//!   → 401 for the first tries, then 429 with `Retry-After` (a correct login from that address
//!   too), each failure audited and the throttle once; another address is unaffected; the same
//!   for unknown admin bearer tokens and storefront keys. (That the tries come back after the
//!   refill period is checked without waiting, in `throttle.rs`.)
//!
//! Clients are told apart by their source address: the tests connect from 127.0.0.x, all
//! loopback on Linux.

use concord_engine::config::Config;
use concord_engine::Engine;
use concord_server::AppState;
use concord_store::{SqliteStore, Store};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const OPERATOR: &str = "exposure-operator";
const OPERATOR_SHA: &str = "f5ea6ac932488d0092453deff27f87173d94bb92866c6056a3c51a582122354a";
const METRICS: &str = "exposure-metrics";
const METRICS_SHA: &str = "6bf33995a542bda1d3a3c2fa503390e6891348803daed95a244600e4322e5948";
const KEY: &str = "exposure-key";
const KEY_SHA: &str = "11d01e4620856afb541ab7649aadc37f21a4a112c7ecd79d08147d23a856b0a7";

fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("install the recorder")
        })
        .clone()
}

/// A config of two unreachable sandbox endpoints and one stock flow, then `access`.
fn config(dir: &Path, access: &str) -> String {
    format!(
        r#"
[store]
path = "{store}"

[endpoints.erp]
connector = "sandbox-erp"
url = "http://127.0.0.1:9"

[endpoints.web]
connector = "sandbox-shop"
url = "http://127.0.0.1:9"

[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]
{access}
"#,
        store = dir.join("concord.sqlite").display()
    )
}

const ALL_TOKENS: &str = r#"
[[admin.tokens]]
name = "ops"
role = "operator"
sha256 = "OPERATOR_SHA"

[[metrics.tokens]]
name = "prometheus"
sha256 = "METRICS_SHA"

[[commerce.keys]]
name = "web"
channel = "web"
sha256 = "KEY_SHA"
"#;

fn all_tokens() -> String {
    ALL_TOKENS
        .replace("OPERATOR_SHA", OPERATOR_SHA)
        .replace("METRICS_SHA", METRICS_SHA)
        .replace("KEY_SHA", KEY_SHA)
}

struct Hub {
    engine: Engine,
    store: Arc<SqliteStore>,
    base: String,
    state: AppState,
    tasks: tokio::task::JoinSet<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Hub {
    async fn start(access: &str) -> Hub {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = config(dir.path(), access);
        let config = Config::from_toml_str(&text, &dir.path().join("concord.toml"))
            .unwrap_or_else(|e| panic!("config: {e}"));
        let mut connectors = BTreeMap::new();
        for (name, spec) in &config.endpoints {
            connectors.insert(
                name.clone(),
                concord_connectors::build(spec).expect("build"),
            );
        }
        let store = Arc::new(SqliteStore::open(&config.store.path).expect("store"));
        let engine = Engine::new(
            Arc::new(config),
            store.clone() as Arc<dyn Store>,
            connectors,
        )
        .expect("engine");
        let tasks = engine.start().await.expect("start");
        let state = AppState {
            engine: engine.clone(),
            metrics: Some(recorder()),
            ready: Arc::new(AtomicBool::new(true)),
        };
        let app = concord_server::app(state.clone(), 1 << 20);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(concord_server::serve(listener, app, async move {
            let _ = rx.await;
        }));
        Hub {
            engine,
            store,
            base: format!("http://127.0.0.1:{port}"),
            state,
            tasks,
            stop: Some(stop),
            server,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.server).await;
        self.engine.shutdown();
        while self.tasks.join_next().await.is_some() {}
        self.store.close().await;
    }

    /// Audit events named `event`.
    async fn audited(&self, event: &str) -> Vec<serde_json::Value> {
        self.store
            .audit_log(1000)
            .await
            .expect("audit")
            .into_iter()
            .filter(|a| a.event.event == event)
            .map(|a| a.event.detail)
            .collect()
    }
}

/// A client whose connections come from `from` (127.0.0.x).
fn client(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().expect("ip"))
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

async fn get(c: &reqwest::Client, url: String, token: Option<&str>) -> (u16, String) {
    let mut req = c.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("GET");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

/// Regression: `/metrics` was open to anyone who could reach the webhook port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_token_on_the_main_port() {
    let hub = Hub::start(&all_tokens()).await;
    let c = client("127.0.0.1");
    let url = format!("{}/metrics", hub.base);
    assert_eq!(get(&c, url.clone(), None).await.0, 401);
    assert_eq!(get(&c, url.clone(), Some("not-a-token")).await.0, 401);
    let (status, body) = get(&c, url.clone(), Some(METRICS)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("concord_"), "{body}");
    assert_eq!(get(&c, url.clone(), Some(OPERATOR)).await.0, 200);
    // A storefront key is not a metrics token.
    assert_eq!(get(&c, url, Some(KEY)).await.0, 401);
    hub.stop().await;

    // No token of any kind configured: refused, saying how to open it.
    let hub = Hub::start("").await;
    let (status, body) = get(&c, format!("{}/metrics", hub.base), None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("[metrics] listen"), "{body}");
    hub.stop().await;
}

/// `[metrics] listen`: its own router, `/metrics` only; open without metrics tokens, else a
/// metrics token (an admin token is not accepted there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_separate_metrics_address_serves_metrics_alone() {
    let c = client("127.0.0.1");
    for (access, open) in [("", true), (all_tokens().as_str(), false)] {
        let hub = Hub::start(access).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(concord_server::serve(
            listener,
            concord_server::metrics_app(hub.state.clone()),
            async move {
                let _ = rx.await;
            },
        ));
        let url = format!("{base}/metrics");
        if open {
            assert_eq!(get(&c, url.clone(), None).await.0, 200);
        } else {
            assert_eq!(get(&c, url.clone(), None).await.0, 401);
            assert_eq!(get(&c, url.clone(), Some(OPERATOR)).await.0, 401);
            assert_eq!(get(&c, url.clone(), Some(METRICS)).await.0, 200);
        }
        for other in ["/healthz", "/api/v1/me", "/v1/availability?sku=A", "/"] {
            assert_eq!(
                get(&c, format!("{base}{other}"), None).await.0,
                404,
                "{other}"
            );
        }
        let _ = stop.send(());
        let _ = server.await;
        hub.stop().await;
    }
}

async fn login(c: &reqwest::Client, hub: &Hub, token: &str) -> reqwest::Response {
    c.post(format!("{}/api/v1/session", hub.base))
        .json(&json!({ "token": token }))
        .send()
        .await
        .expect("POST /api/v1/session")
}

/// Regression: wrong tokens were accepted as fast as they came (~49,000/s) with no trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_logins_are_throttled_per_client_and_audited() {
    let hub = Hub::start(&all_tokens()).await;
    let attacker = client("127.0.0.1");
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..50 {
        let r = login(&attacker, &hub, &format!("guess-{i}")).await;
        if r.status().as_u16() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
        }
        statuses.push(r.status().as_u16());
    }
    let tries = concord_server::throttle::DEFAULT_BURST as usize;
    assert!(
        statuses[..tries].iter().all(|s| *s == 401),
        "the first tries are checked: {statuses:?}"
    );
    assert!(
        statuses[tries..].iter().all(|s| *s == 429),
        "then throttled: {statuses:?}"
    );
    let wait = retry_after.expect("429 carries Retry-After in seconds");
    assert!(
        (1..=concord_server::throttle::DEFAULT_REFILL.as_secs()).contains(&wait),
        "{wait}"
    );
    // The correct token from the throttled address is refused unchecked too.
    assert_eq!(
        login(&attacker, &hub, OPERATOR).await.status().as_u16(),
        429
    );
    // Another address is unaffected.
    let other = client("127.0.0.2");
    let ok = login(&other, &hub, OPERATOR).await;
    assert_eq!(ok.status().as_u16(), 200);
    // Audited: each checked failure, and the throttle once (not the 40 refused unchecked).
    let failed = hub.audited("auth.failed").await;
    assert_eq!(failed.len(), tries, "{failed:?}");
    assert_eq!(failed[0]["client"], "127.0.0.1");
    assert_eq!(failed[0]["credential"], "login");
    assert!(
        failed.iter().all(|d| !d.to_string().contains("guess-")),
        "a presented credential is never recorded"
    );
    let throttled = hub.audited("auth.throttled").await;
    assert_eq!(throttled.len(), 1, "{throttled:?}");
    assert_eq!(throttled[0]["client"], "127.0.0.1");
    hub.stop().await;
}

/// The same throttle for unknown bearer tokens on the admin API and unknown storefront keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tokens_and_keys_are_throttled_and_audited() {
    let hub = Hub::start(&all_tokens()).await;
    let tries = concord_server::throttle::DEFAULT_BURST as usize;
    for (from, path, credential) in [
        ("127.0.0.3", "/api/v1/me", "admin token"),
        (
            "127.0.0.4",
            "/v1/availability?channel=web&sku=A",
            "storefront key",
        ),
    ] {
        let c = client(from);
        let url = format!("{}{path}", hub.base);
        let mut statuses = Vec::new();
        for i in 0..(tries + 5) {
            statuses.push(get(&c, url.clone(), Some(&format!("wrong-{i}"))).await.0);
        }
        assert!(
            statuses[..tries].iter().all(|s| *s == 401),
            "{path}: {statuses:?}"
        );
        assert!(
            statuses[tries..].iter().all(|s| *s == 429),
            "{path}: {statuses:?}"
        );
        let right = if credential == "admin token" {
            OPERATOR
        } else {
            KEY
        };
        assert_eq!(get(&c, url.clone(), Some(right)).await.0, 429, "{path}");
        assert_ne!(
            get(&client("127.0.0.5"), url, Some(right)).await.0,
            429,
            "{path}"
        );
        let failed: Vec<_> = hub
            .audited("auth.failed")
            .await
            .into_iter()
            .filter(|d| d["client"] == from)
            .collect();
        assert_eq!(failed.len(), tries, "{path}: {failed:?}");
        assert_eq!(failed[0]["credential"], credential);
    }
    hub.stop().await;
}

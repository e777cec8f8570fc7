//! Test support shared by the server's end-to-end tests (`admin.rs`, `orders.rs`, `pool.rs`): a
//! running hub — the real engine over a real SQLite store with the connectors its config names,
//! served over real HTTP on a listener the test bound first (the sandboxes need its address for
//! their webhooks and checkouts) — the pieces every topology is built from (`hub_listener`,
//! `start_erp`, `start_shop`, `config_head`, `shop_endpoint`), and `wait_for`, the only way these
//! tests wait (a condition polled every 20 ms under a deadline). Each test file adds its own
//! helpers with further `impl Hub` blocks.

#![allow(dead_code)] // each test binary uses a different part of the support module

use concord_engine::config::Config;
use concord_engine::Engine;
use concord_sandbox::erp::{ErpHandle, ErpOptions, ErpSim};
use concord_sandbox::shop::{HubCheckout, ShopHandle, ShopOptions, ShopSim};
use concord_server::AppState;
use concord_store::{SqliteStore, Store};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// Poll `cond` every 20 ms until it holds; panic naming `what` after the deadline.
pub async fn wait_for(what: &str, cond: impl AsyncFnMut() -> bool) {
    if !wait_until(cond).await {
        panic!("timed out after {DEADLINE:?} waiting until {what}");
    }
}

/// Poll `cond` every 20 ms until it holds (true) or the deadline passes (false): for a caller
/// that prints the state it waited on before failing.
pub async fn wait_until(mut cond: impl AsyncFnMut() -> bool) -> bool {
    let until = Instant::now() + DEADLINE;
    while !cond().await {
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// A listener for the hub on a free local port, its address and base URL: bound first, because
/// the sandboxes need the hub's address (webhooks, checkouts) before the hub starts.
pub async fn hub_listener() -> (tokio::net::TcpListener, SocketAddr, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the hub");
    let addr = listener.local_addr().expect("addr");
    (listener, addr, format!("http://{addr}"))
}

/// The sandbox ERP, sending its webhooks to the hub at `base` signed with `secret`; the rest of
/// its options from `options`.
pub async fn start_erp(base: &str, secret: &str, options: ErpOptions) -> ErpHandle {
    ErpSim::start(ErpOptions {
        webhook_url: Some(format!("{base}/hooks/erp")),
        webhook_secret: Some(secret.into()),
        ..options
    })
    .await
    .expect("start the ERP")
}

/// The sandbox storefront `name`, sending its webhooks to the hub at `base` signed with `secret`;
/// with `checkout: Some(key)` it checks out through the hub (with that storefront key, if any).
pub async fn start_shop(
    base: &str,
    secret: &str,
    name: &str,
    checkout: Option<Option<&str>>,
) -> ShopHandle {
    ShopSim::start(ShopOptions {
        name: name.to_string(),
        webhook_url: Some(format!("{base}/hooks/{name}")),
        webhook_secret: Some(secret.into()),
        hub: checkout.map(|key| HubCheckout {
            base_url: base.to_string(),
            channel: name.to_string(),
            key: key.map(str::to_string),
        }),
        ..ShopOptions::default()
    })
    .await
    .expect("start a storefront")
}

/// The start of a test hub's config: `[store]` in `dir`, `[server]` on `addr`, `[engine]` with a
/// fast backoff, and the sandbox ERP at `erp_url` as endpoint `erp`.
pub fn config_head(dir: &Path, addr: SocketAddr, erp_url: &str, secret: &str) -> String {
    format!(
        r#"
[store]
path = "{store}"

[server]
listen = "{addr}"

[engine]
backoff_base = "50ms"
backoff_cap = "500ms"

[endpoints.erp]
connector = "sandbox-erp"
url = "{erp_url}"
webhook_secret = "{secret}"
timeout = "5s"
"#,
        store = dir.join("concord.sqlite").display(),
    )
}

/// `[endpoints.{name}]`: a sandbox storefront at `url`.
pub fn shop_endpoint(name: &str, url: &str, secret: &str) -> String {
    format!(
        "[endpoints.{name}]\nconnector = \"sandbox-shop\"\nurl = \"{url}\"\nwebhook_secret = \"{secret}\"\ntimeout = \"5s\"\n"
    )
}

/// A running hub: engine + HTTP server.
pub struct Hub {
    pub engine: Engine,
    pub store: Arc<SqliteStore>,
    pub base: String,
    pub http: reqwest::Client,
    tasks: tokio::task::JoinSet<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Hub {
    /// Load `config_text` (as if it were `dir/concord.toml`), build its connectors, open its
    /// store, start the engine and serve the app on `listener`.
    pub async fn start(listener: tokio::net::TcpListener, config_text: &str, dir: &Path) -> Hub {
        let config = Config::from_toml_str(config_text, &dir.join("concord.toml"))
            .unwrap_or_else(|e| panic!("test config: {e}\n{config_text}"));
        let mut connectors = BTreeMap::new();
        for (name, spec) in &config.endpoints {
            connectors.insert(
                name.clone(),
                concord_connectors::build(spec).expect("build connector"),
            );
        }
        let store = Arc::new(
            SqliteStore::open_with(&config.store.path, config.store.sqlite_options())
                .expect("open the store"),
        );
        let dyn_store: Arc<dyn Store> = store.clone();
        let max_body = config.server.max_body_bytes;
        let limits = config.server.clone();
        let engine = Engine::new(Arc::new(config), dyn_store, connectors).expect("engine");
        let tasks = engine.start().await.expect("start the engine");
        let app = concord_server::app(
            AppState {
                engine: engine.clone(),
                metrics: None,
                ready: Arc::new(AtomicBool::new(true)),
            },
            max_body,
        );
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            concord_server::serve_with(listener, app, &limits, async move {
                let _ = rx.await;
            })
            .await
        });
        Hub {
            engine,
            store,
            base,
            http: reqwest::Client::new(),
            tasks,
            server,
            stop: Some(stop),
        }
    }

    /// Stop the server and the engine, and close the store (as a shutdown would).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.server).await;
        self.engine.shutdown();
        while self.tasks.join_next().await.is_some() {}
        self.store.close().await;
    }
}

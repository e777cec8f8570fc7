//! Test support shared by the server's end-to-end tests (`admin.rs`, `orders.rs`, `pool.rs`, …):
//! a running hub — the real engine over a real SQLite store with the connectors its config
//! names, served over real HTTP on a listener the test bound first (the sandboxes need its
//! address for their webhooks and checkouts). Each test file adds its own helpers with further
//! `impl Hub` blocks, which is why `Hub` lives here and not in `concord-testkit`; the pieces
//! every topology is built from (`hub_listener`, `start_erp`, `start_shop`, `config_head`,
//! `shop_endpoint`) and the one wait (`wait_until` under a deadline) are re-exported from
//! `concord-testkit`.

#![allow(dead_code)] // each test binary uses a different part of the support module

use concord_engine::config::Config;
use concord_engine::Engine;
use concord_server::AppState;
use concord_store::{SqliteStore, Store};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[allow(unused_imports)] // each test binary uses a different part
pub use concord_testkit::sandbox::{
    config_head, hub_listener, shop_endpoint, start_erp, start_shop,
};
#[allow(unused_imports)]
pub use concord_testkit::{try_wait_until, wait_until, DEADLINE};

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

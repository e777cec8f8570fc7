//! Shared by the preset tests: a stand-in sales channel that stores every stock figure it is
//! sent (`PUT /stock/{sku}/{location}`, answered 204), for tests that broadcast an ERP preset's
//! stock through the real engine; and one that logs every shipment it is sent
//! (`PUT /shipments/{id}`, answered 204), for tests that bring an ERP preset's shipments back to
//! the order's channel through the real engine.
//!
//! Must never judge what it receives: the tests assert on what it stored.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::put;
use axum::Router;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What the shipment channel was sent, in arrival order: `(shipment id, body)` (the body JSON, or
/// null when not JSON). Every request is kept, so a shipment sent twice is there twice.
pub type ShipmentLog = Arc<Mutex<Vec<(String, Value)>>>;

/// What the channel holds: `"{sku}@{location}"` → the last body (JSON, or null when not JSON).
pub type StockSink = Arc<Mutex<BTreeMap<String, Value>>>;

/// Starts the channel on a free loopback port; returns what it stores and its base URL.
pub async fn stock_channel() -> (StockSink, String) {
    let channel: StockSink = Arc::default();
    let app = Router::new()
        .route(
            "/stock/{sku}/{location}",
            put(
                |State(c): State<StockSink>,
                 Path((sku, location)): Path<(String, String)>,
                 body: Bytes| async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    c.lock()
                        .expect("stock channel lock")
                        .insert(format!("{sku}@{location}"), v);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(channel.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the stock channel");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("stock channel address")
    );
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (channel, url)
}

/// Starts the shipment channel on a free loopback port; returns its log and its base URL.
#[allow(dead_code)] // not every test binary that includes this module takes shipments
pub async fn shipment_channel() -> (ShipmentLog, String) {
    let log: ShipmentLog = Arc::default();
    let app = Router::new()
        .route(
            "/shipments/{id}",
            put(
                |State(l): State<ShipmentLog>, Path(id): Path<String>, body: Bytes| async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    l.lock().expect("shipment channel lock").push((id, v));
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the shipment channel");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("shipment channel address")
    );
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (log, url)
}

/// The real engine over a real SQLite store at `dir/hub.sqlite` (the config's `[store] path`),
/// from a whole config text: every endpoint's connector built, capabilities checked, the
/// engine's tasks started. Returns the engine, its store and its tasks (join them after
/// `engine.shutdown()`).
pub async fn start_engine(
    text: &str,
    dir: &std::path::Path,
) -> (
    concord_engine::runtime::Engine,
    Arc<dyn concord_store::Store>,
    tokio::task::JoinSet<()>,
) {
    use concord_engine::config::Config;
    use concord_engine::connector::Connector;
    let config = Arc::new(
        Config::from_toml_str(text, &dir.join("c.toml"))
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}")),
    );
    let mut cs: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
    for (n, s) in &config.endpoints {
        cs.insert(
            n.clone(),
            concord_connectors::build(s).expect("connector builds"),
        );
    }
    concord_engine::runtime::check_capabilities(&config, &cs).expect("capabilities");
    let store: Arc<dyn concord_store::Store> =
        Arc::new(concord_store::SqliteStore::open(dir.join("hub.sqlite")).expect("store"));
    let engine = concord_engine::runtime::Engine::new(config, store.clone(), cs).expect("engine");
    let tasks = engine.start().await.expect("engine starts");
    (engine, store, tasks)
}

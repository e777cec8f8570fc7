//! Shared by the preset tests: a stand-in sales channel that stores every stock figure it is
//! sent (`PUT /stock/{sku}/{location}`, answered 204), for tests that broadcast an ERP preset's
//! stock through the real engine.
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

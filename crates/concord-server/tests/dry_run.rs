//! Dry run on the sandbox (issue 16): a hub started as a dry run captures the ERP's catalogue,
//! stock and prices and plans every write for the storefront, but writes nothing (the
//! storefront's write counters and write log stay empty, and so do the ERP's); the planned
//! writes are listed by the engine and by `GET /api/v1/dry-run`, and the store is marked so a
//! real run never delivers them.

mod support;

use concord_engine::config::Config;
use concord_engine::runtime::dry_run::without_writes;
use concord_engine::Engine;
use concord_store::{SqliteStore, Store};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use support::*;

const SECRET: &str = "dry-run-secret";
const VIEWER: &str = "viewer-token-dry-run-0123456789abcdef012345";
const SKUS: usize = 3;

fn sha(t: &str) -> String {
    concord_engine::config::access::token_hash(t)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_writes_nothing_and_lists_every_planned_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (listener, addr, base) = hub_listener().await;
    let erp = start_erp(&base, SECRET, Default::default()).await;
    let shop = start_shop(&base, SECRET, "web", None).await;
    let text = format!(
        r#"{head}
{shop}

[[flows]]
name = "products"
kind = "product"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]

[[flows]]
name = "prices"
kind = "price"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]

[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]

[inventory]
source = "erp"

[inventory.channels.web]
locations = ["WH1"]
stock_location = "WH1"

[[admin.tokens]]
name = "watcher"
role = "viewer"
sha256 = "{v}"
"#,
        head = config_head(dir.path(), addr, &erp.base_url(), SECRET),
        shop = shop_endpoint("web", &shop.base_url(), SECRET),
        v = sha(VIEWER),
    );
    // The hub as `concord run --dry-run` builds it: connectors without writes, marked store.
    let config = Config::from_toml_str(&text, &dir.path().join("concord.toml")).expect("config");
    let mut connectors = BTreeMap::new();
    for (name, spec) in &config.endpoints {
        connectors.insert(
            name.clone(),
            concord_connectors::build(spec).expect("build"),
        );
    }
    let store = Arc::new(
        SqliteStore::open_with(&config.store.path, config.store.sqlite_options()).expect("store"),
    );
    let dyn_store: Arc<dyn Store> = store.clone();
    let limits = config.server.clone();
    let engine =
        Engine::new(Arc::new(config), dyn_store, without_writes(connectors)).expect("engine");
    engine.set_dry_run().await.expect("dry run");
    assert!(engine.is_dry_run());
    let mut tasks = engine.start().await.expect("start");
    let app = concord_server::app(
        concord_server::AppState {
            engine: engine.clone(),
            metrics: None,
            ready: Arc::new(AtomicBool::new(true)),
        },
        limits.max_body_bytes,
    );
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        concord_server::serve_with(listener, app, &limits, async move {
            let _ = rx.await;
        })
        .await
    });

    erp.seed(SKUS, &["WH1"], 10).expect("seed");
    let expected: BTreeSet<(String, String)> = (1..=SKUS)
        .flat_map(|i| {
            let sku = format!("SKU-{i:04}");
            [
                ("product".to_string(), sku.clone()),
                ("price".to_string(), format!("default:{sku}")),
                ("stock".to_string(), format!("{sku}@WH1")),
            ]
        })
        .collect();
    wait_until(
        "every write for the store is planned",
        DEADLINE,
        async || {
            let planned = engine.planned_writes(1000).await.expect("planned");
            let got: BTreeSet<(String, String)> = planned
                .iter()
                .filter(|i| i.dest == "web")
                .map(|i| (i.kind.as_str().to_string(), i.key.clone()))
                .collect();
            got == expected
        },
    )
    .await;
    let planned = engine.planned_writes(1000).await.expect("planned");
    assert_eq!(
        planned.len(),
        expected.len(),
        "one write per key: {planned:#?}"
    );
    let stock = planned
        .iter()
        .find(|i| i.key == "SKU-0001@WH1")
        .expect("stock write");
    assert_eq!(stock.payload["on_hand"], 10);

    // Listed by the admin API too.
    let body: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/dry-run"))
        .bearer_auth(VIEWER)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(body["dry_run"], true);
    let listed = body["planned"].as_array().expect("planned");
    assert_eq!(listed.len(), expected.len(), "{body}");
    // Each compared with what the store holds now: it has nothing yet, so every write is new.
    assert!(
        listed
            .iter()
            .all(|w| w["compared"] == true && w["current"].is_null()),
        "{body}"
    );

    // A record the store already has, with another figure: the difference is shown.
    shop.set_inventory("SKU-0002", "WH1", 4)
        .expect("store's own figure");
    let planned = engine.planned_differences(1000).await.expect("differences");
    let w = planned
        .iter()
        .find(|w| w.item.key == "SKU-0002@WH1")
        .expect("stock write");
    assert!(w.compared);
    assert_eq!(w.differences.len(), 1, "{w:?}");
    assert_eq!(w.differences[0].field, "on_hand");
    assert_eq!(
        (&w.differences[0].expected, &w.differences[0].actual),
        (&serde_json::json!(10), &serde_json::json!(4))
    );

    // Nothing was written anywhere, and nothing will be: no dispatcher runs.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for (name, counters, log) in [
        ("web", shop.counters(), shop.write_log()),
        ("erp", erp.counters(), erp.write_log()),
    ] {
        assert!(
            counters.writes.values().all(|n| *n == 0),
            "{name} wrote: {counters:?}"
        );
        assert!(log.is_empty(), "{name} write log: {log:?}");
    }
    assert!(shop.inventory("SKU-0001").is_empty());
    assert!(engine.store_is_dry_run().await.expect("mark"));
    assert_eq!(
        engine.planned_writes(1000).await.expect("planned").len(),
        expected.len(),
        "still queued, never delivered"
    );

    let _ = stop.send(());
    let _ = server.await;
    engine.shutdown();
    while tasks.join_next().await.is_some() {}
    store.close().await;
}

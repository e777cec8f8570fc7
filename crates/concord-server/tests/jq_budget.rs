//! A runaway jq program never stalls the HTTP server: a real hub (engine over a `SqliteStore`,
//! sandbox connectors, the router on 127.0.0.1) whose stock flow's inbound mapping loops
//! without end on one SKU. While several such webhooks are being mapped (more than the
//! runtime has worker threads), `/healthz` answers and a valid webhook is journaled and
//! delivered; each runaway webhook is answered 422 naming the record, the program and the
//! limit once its budget runs out; the hub then stops cleanly.
//!
//! Before jq ran on its own threads under a budget, each such webhook held an async worker
//! for good: with two of them the server answered nothing more, and a shutdown never finished.

mod support;

use concord_sandbox::shop::ShopHandle;
use concord_sandbox::{sign, SIGNATURE_HEADER, TOPIC_HEADER};
use serde_json::{json, Value};
use std::time::Duration;
use support::{hub_listener, shop_endpoint, start_shop, wait_until, Hub, DEADLINE};

const SECRET: &str = "jq-budget-secret";

fn config(dir: &std::path::Path, addr: std::net::SocketAddr, shop: &ShopHandle) -> String {
    format!(
        r#"
[store]
path = "{store}"

[server]
listen = "{addr}"

[engine]
backoff_base = "50ms"
backoff_cap = "500ms"
# Only the clock stops the runaway: long enough to be sure it is still running while the
# server is asked for /healthz.
jq_steps = 1000000000000
jq_timeout = "4s"

[endpoints.erp]
connector = "sandbox-erp"
url = "http://127.0.0.1:9"
webhook_secret = "{SECRET}"

{shop_endpoint}
[[flows]]
name = "stock-to-shop"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["shop"]
map_in = 'if .sku == "LOOP" then (last(range(1e15)) | {{}}) else . end'
"#,
        store = dir.join("concord.sqlite").display(),
        shop_endpoint = shop_endpoint("shop", &shop.base_url(), SECRET),
    )
}

fn stock_events(id: &str, sku: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"events": [{
        "kind": "stock", "id": id, "version": "1",
        "record": {"sku": sku, "location": "WH1", "on_hand": 3}
    }]}))
    .expect("json")
}

async fn post_webhook(http: reqwest::Client, base: String, body: Vec<u8>) -> (u16, Value) {
    let resp = http
        .post(format!("{base}/hooks/erp"))
        .header("content-type", "application/json")
        .header(TOPIC_HEADER, "stock")
        .header(SIGNATURE_HEADER, sign(SECRET.as_bytes(), &body))
        .timeout(Duration::from_secs(60))
        .body(body)
        .send()
        .await
        .expect("POST the webhook");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_while_runaway_mappings_are_evaluated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (listener, addr, base) = hub_listener().await;
    let shop = start_shop(&base, SECRET, "shop", None).await;
    let hub = Hub::start(listener, &config(dir.path(), addr, &shop), dir.path()).await;

    // Four runaway webhooks: twice as many as the runtime's worker threads.
    let runaways: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(post_webhook(
                hub.http.clone(),
                hub.base.clone(),
                stock_events(&format!("LOOP-{i}@WH1"), "LOOP"),
            ))
        })
        .collect();
    let healthz = hub
        .http
        .get(format!("{}/healthz", hub.base))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("/healthz answers while the runaways are mapped");
    assert_eq!(healthz.status().as_u16(), 200);
    assert!(
        runaways.iter().any(|r| !r.is_finished()),
        "the runaways were answered before /healthz: the test proves nothing"
    );

    // A valid webhook is journaled and delivered (it waits for a jq thread of the inbound
    // lane, at most until the runaways' budget runs out).
    let (status, v) = post_webhook(
        hub.http.clone(),
        hub.base.clone(),
        stock_events("A@WH1", "A"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    wait_until("A reaches the storefront", DEADLINE, async || {
        shop.inventory("A").get("WH1") == Some(&3)
    })
    .await;

    for r in runaways {
        let (status, v) = r.await.expect("webhook task");
        assert_eq!(status, 422, "{v}");
        let text = v.to_string();
        assert!(
            text.contains("events[0]")
                && text.contains("inbound mapping failed: jq program `flows[0].map_in` stopped after running 4s (engine.jq_timeout)"),
            "{v}"
        );
    }
    tokio::time::timeout(Duration::from_secs(30), hub.stop())
        .await
        .expect("the hub stops");
    shop.shutdown().await;
}

//! The emulators' own behaviour over real HTTP on 127.0.0.1: webhooks (signed, in order,
//! batched; retried, then dropped) received by a local receiver — and accepted by the connector
//! that reads them, so the two sides of the wire contract are checked against each other — and
//! the storefront's inventory watchers. Waits poll a condition with a deadline; nothing sleeps
//! and hopes.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use concord_core::Kind;
use concord_engine::connector::{Connector, EndpointSpec};
use concord_sandbox::{ErpOptions, ErpSim, ShopOptions, ShopSim, TOPIC_HEADER};
use concord_testkit::wait_until;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "s3cret";

/// The connector of `kind` at `url`, verifying webhooks with [`SECRET`].
fn connector(kind: &str, url: &str) -> Arc<dyn Connector> {
    concord_connectors::build(&EndpointSpec {
        name: "x".into(),
        connector: kind.into(),
        url: url.into(),
        webhook_secret: Some(SECRET.into()),
        timeout: Duration::from_secs(5),
        max_response_bytes: concord_engine::outbound::DEFAULT_MAX_RESPONSE_BYTES,
        allow_insecure_http: false,
        options: Value::Null,
    })
    .unwrap()
}

/// A webhook receiver: keeps every POST, after answering 500 to the first `fail_first`.
#[derive(Clone, Default)]
struct Receiver {
    posts: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(fail_first: usize) -> (Receiver, String) {
        let r = Receiver::default();
        r.fail_first.store(fail_first, Ordering::SeqCst);
        let state = r.clone();
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    let left = state.fail_first.load(Ordering::SeqCst);
                    if left > 0 {
                        state.fail_first.store(left - 1, Ordering::SeqCst);
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    state.posts.lock().unwrap().push((headers, body));
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    fn posts(&self) -> Vec<(HeaderMap, Bytes)> {
        self.posts.lock().unwrap().clone()
    }

    fn event_count(&self) -> usize {
        self.posts()
            .iter()
            .map(|(_, b)| {
                serde_json::from_slice::<Value>(b).unwrap()["events"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .sum()
    }
}

#[tokio::test]
async fn webhooks_are_signed_ordered_and_batched_under_load() {
    let (rx, url) = Receiver::start(0).await;
    let erp = ErpSim::start(ErpOptions {
        webhook_url: Some(url),
        webhook_secret: Some(SECRET.into()),
        webhook_kinds: Some(vec![Kind::Stock]),
        ..ErpOptions::default()
    })
    .await
    .unwrap();
    erp.upsert_product(json!({"sku": "A", "name": "A"}))
        .unwrap(); // not a webhook kind
    for i in 0..500 {
        erp.set_stock("A", "WH1", i + 1).unwrap();
    }
    wait_until("500 stock events", Duration::from_secs(5), async || {
        rx.event_count() == 500
    })
    .await;
    let conn = connector("sandbox-erp", &erp.base_url());
    let posts = rx.posts();
    assert!(
        posts.len() < 500,
        "events were not batched: {} posts",
        posts.len()
    );
    let mut last_version = 0u64;
    let mut last_on_hand = 0;
    for (headers, body) in &posts {
        assert_eq!(headers[TOPIC_HEADER], "stock");
        assert_eq!(headers["content-type"], "application/json");
        let captured = conn
            .parse_webhook(headers, body)
            .await
            .expect("valid signature");
        assert!(captured.len() <= 100);
        for c in captured {
            let v: u64 = c.version.unwrap().parse().unwrap();
            assert!(v > last_version, "out of order");
            last_version = v;
            assert_eq!(c.external_id, "A@WH1");
            assert_eq!(c.record["on_hand"], last_on_hand + 1);
            last_on_hand += 1;
        }
    }
    let c = erp.counters();
    assert_eq!(c.webhook_events_sent, 500);
    assert_eq!(c.webhooks_sent as usize, posts.len());
    erp.shutdown().await;
}

#[tokio::test]
async fn webhook_failures_are_retried_then_dropped() {
    let (rx, url) = Receiver::start(2).await;
    let shop = ShopSim::start(ShopOptions {
        webhook_url: Some(url),
        webhook_secret: Some(SECRET.into()),
        ..ShopOptions::default()
    })
    .await
    .unwrap();
    shop.set_inventory("A", "L1", 3).unwrap();
    wait_until(
        "delivery after two failures",
        Duration::from_secs(5),
        async || shop.counters().webhooks_sent == 1,
    )
    .await;
    assert_eq!(shop.counters().webhooks_failed, 2);
    assert_eq!(rx.event_count(), 1);

    // Always failing: 1 try + 3 retries (0.1 + 0.4 + 1.6 s), then the batch is dropped.
    rx.fail_first.store(usize::MAX, Ordering::SeqCst);
    shop.set_inventory("A", "L1", 4).unwrap();
    wait_until("drop", Duration::from_secs(5), async || {
        shop.counters().webhooks_dropped == 1
    })
    .await;
    let c = shop.counters();
    assert_eq!((c.webhooks_failed, c.webhook_events_dropped), (6, 1));
    shop.shutdown().await;
}

#[tokio::test]
async fn shop_tells_watchers_every_level_set_in_order() {
    let shop = ShopSim::start(ShopOptions::default()).await.unwrap();
    let mut rx = shop.watch_inventory();
    let before = Instant::now();
    shop.set_inventory("A", "WH1", 5).unwrap();
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/api/inventory/set", shop.base_url()))
        .json(
            &json!({"items": [{"sku": "A", "location": "WH1", "available": 7},
                                {"sku": "B", "location": "WH1", "available": -1}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let first = rx.recv().await.unwrap();
    let second = rx.recv().await.unwrap();
    assert_eq!((first.sku.as_str(), first.available), ("A", 5));
    assert_eq!((second.location.as_str(), second.available), ("WH1", 7));
    assert!(before <= first.at && first.at <= second.at);
    assert!(rx.try_recv().is_err(), "the refused item is not reported");
    drop(rx);
    shop.set_inventory("A", "WH1", 8).unwrap();
    shop.shutdown().await;
}

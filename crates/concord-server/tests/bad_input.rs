//! Fault test: malformed and unsigned webhooks (design §9) against a real hub — a real engine
//! over a `SqliteStore` in a temporary directory, sandbox connectors, and the router served on
//! 127.0.0.1 — spoken to over real HTTP.
//!
//! Every kind of bad input gets its own status and a message naming what is wrong (malformed
//! JSON → 400 with the position; an unknown field or a negative quantity in a record → 422
//! naming the field and the record; too large → 413; invalid UTF-8 → 400; missing or wrong
//! signature → 401; unknown endpoint → 404), and none of it stores anything: a batch with one
//! bad record is refused whole. Afterwards the process still serves: a valid signed webhook is
//! journaled (and a resend is answered as a duplicate), delivered to the storefront emulator,
//! `/healthz` answers, and `/metrics` renders the `concord_*` metrics when a recorder is
//! installed (and says why not with 404 when none is).

use concord_engine::config::Config;
use concord_engine::Engine;
use concord_sandbox::shop::{ShopHandle, ShopOptions, ShopSim};
use concord_sandbox::{sign, SIGNATURE_HEADER, TOPIC_HEADER};
use concord_server::AppState;
use concord_store::{SqliteStore, Store};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const SECRET: &str = "bad-input-secret";
/// `/metrics` needs a token on the main port; the config holds its SHA-256.
const METRICS_TOKEN: &str = "bad-input-metrics-token";
use concord_testkit::{wait_until, DEADLINE};

/// The process-wide Prometheus recorder (a recorder can be installed once per process).
fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("install the Prometheus recorder")
        })
        .clone()
}

/// A running hub: engine + HTTP server, with a storefront emulator as the stock destination.
struct Hub {
    engine: Engine,
    base: String,
    shop: ShopHandle,
    http: reqwest::Client,
    tasks: tokio::task::JoinSet<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Hub {
    async fn start(metrics: Option<PrometheusHandle>) -> Hub {
        let dir = tempfile::tempdir().expect("tempdir");
        let shop = ShopSim::start(ShopOptions {
            name: "shop".into(),
            ..ShopOptions::default()
        })
        .await
        .expect("start the storefront emulator");
        let text = format!(
            r#"
[store]
path = "{store}"

[server]
listen = "127.0.0.1:0"
max_body_bytes = "1MiB"

[endpoints.erp]
connector = "sandbox-erp"
url = "http://127.0.0.1:9"
webhook_secret = "{SECRET}"

[endpoints.shop]
connector = "sandbox-shop"
url = "{shop}"

[[flows]]
name = "stock-to-shop"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["shop"]
[flows.map_out]
"*" = '{{sku, location, available: ([.on_hand - .committed, 0] | max)}}'

[[metrics.tokens]]
name = "prometheus"
sha256 = "6154797d6ae9b4f6f3ca67150928c9537e7bcd7e0bd49d9a61396a694c463ff1"
"#,
            store = dir.path().join("concord.sqlite").display(),
            shop = shop.base_url(),
        );
        let config = Config::from_toml_str(&text, &dir.path().join("concord.toml"))
            .unwrap_or_else(|e| panic!("test config: {e}"));
        let mut connectors = BTreeMap::new();
        for (name, spec) in &config.endpoints {
            connectors.insert(
                name.clone(),
                concord_connectors::build(spec).expect("build connector"),
            );
        }
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&config.store.path).expect("open the store"));
        let max_body = config.server.max_body_bytes;
        let engine = Engine::new(Arc::new(config), store, connectors).expect("engine");
        let tasks = engine.start().await.expect("start the engine");
        let app = concord_server::app(
            AppState {
                engine: engine.clone(),
                metrics,
                ready: Arc::new(AtomicBool::new(true)),
            },
            max_body,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(concord_server::serve(listener, app, async move {
            let _ = rx.await;
        }));
        Hub {
            engine,
            base,
            shop,
            http: reqwest::Client::new(),
            tasks,
            server,
            stop: Some(stop),
            _dir: dir,
        }
    }

    async fn journal_total(&self) -> u64 {
        self.engine.store().stats().await.unwrap().journal_total
    }

    /// POST raw bytes to `/hooks/{endpoint}` with an optional signature header.
    async fn post(&self, endpoint: &str, body: Vec<u8>, signature: Option<String>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/hooks/{endpoint}", self.base))
            .header("content-type", "application/json")
            .header(TOPIC_HEADER, "stock")
            .timeout(Duration::from_secs(20));
        if let Some(s) = signature {
            req = req.header(SIGNATURE_HEADER, s);
        }
        let resp = req.body(body).send().await.expect("POST the webhook");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    /// POST a signed `{"events": [], "pad": "xxx…"}` of about `size` bytes over a raw TCP
    /// connection, writing the body while reading the answer; returns the status code.
    async fn post_big(&self, size: usize, chunked: bool) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut body = br#"{"events": [], "pad": ""#.to_vec();
        body.extend(std::iter::repeat_n(b'x', size));
        body.extend(br#""}"#);
        let sig = sign(SECRET.as_bytes(), &body);
        let addr = self.base.trim_start_matches("http://").to_string();
        let stream = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let (mut rd, mut wr) = stream.into_split();
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            format!("Content-Length: {}", body.len())
        };
        let head = format!(
            "POST /hooks/erp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             {SIGNATURE_HEADER}: {sig}\r\n{framing}\r\nConnection: close\r\n\r\n"
        );
        let writer = tokio::spawn(async move {
            wr.write_all(head.as_bytes()).await?;
            for piece in body.chunks(64 << 10) {
                if chunked {
                    wr.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                        .await?;
                    wr.write_all(piece).await?;
                    wr.write_all(b"\r\n").await?;
                } else {
                    wr.write_all(piece).await?;
                }
            }
            if chunked {
                wr.write_all(b"0\r\n\r\n").await?;
            }
            // Keep the write half open until the answer is read: hyper drops a connection whose
            // client has half-closed without answering it.
            std::future::pending::<()>().await;
            std::io::Result::Ok(())
        });
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let read = tokio::time::timeout(DEADLINE, async {
            while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        writer.abort();
        assert!(
            read.is_ok(),
            "no answer to a {size}-byte body within {DEADLINE:?}"
        );
        let text = String::from_utf8_lossy(&answer);
        text.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status line in {text:?}"))
    }

    /// POST bytes signed with the endpoint's secret.
    async fn signed(&self, body: &[u8]) -> (u16, Value) {
        self.post("erp", body.to_vec(), Some(sign(SECRET.as_bytes(), body)))
            .await
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if path == "/metrics" {
            req = req.bearer_auth(METRICS_TOKEN);
        }
        let resp = req
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("GET");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.server).await;
        self.engine.shutdown();
        while self.tasks.join_next().await.is_some() {}
        self.shop.shutdown().await;
    }
}

fn stock(id: &str, version: u64, record: Value) -> Value {
    json!({"kind": "stock", "id": id, "version": version.to_string(), "record": record})
}

fn events(list: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "events": list })).unwrap()
}

fn message(v: &Value) -> String {
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhooks_are_refused_and_store_nothing_and_the_hub_keeps_serving() {
    let hub = Hub::start(None).await;
    assert_eq!(hub.journal_total().await, 0);

    // Malformed JSON: 400 naming the position.
    let (status, v) = hub
        .signed(br#"{"events": [ {"kind": "stock", "id": }"#)
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["code"], "invalid_payload", "{v}");
    assert!(message(&v).contains("line 1 column"), "{v}");

    // Valid JSON, a record with a field the canonical stock does not have: 422 naming both.
    let body = events(vec![stock(
        "A@WH1",
        1,
        json!({"sku": "A", "location": "WH1", "on_hand": 3, "colour": "red"}),
    )]);
    let (status, v) = hub.signed(&body).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["code"], "invalid_records", "{v}");
    let details = v["details"].as_array().expect("details").clone();
    assert_eq!(details.len(), 1, "{v}");
    let d = details[0].as_str().unwrap();
    assert!(d.contains("colour") && d.contains("events[0]"), "{v}");

    // A negative quantity: 422 naming the field.
    let body = events(vec![stock(
        "B@WH1",
        2,
        json!({"sku": "B", "location": "WH1", "on_hand": -4}),
    )]);
    let (status, v) = hub.signed(&body).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["code"], "invalid_records", "{v}");
    // Which record and field: the per-record detail names both.
    let d = v["details"][0].as_str().unwrap_or("");
    assert!(d.contains("on_hand") && d.contains("events[0]"), "{v}");

    // A batch with one bad record among good ones: refused whole, naming the bad one only.
    let body = events(vec![
        stock(
            "C@WH1",
            3,
            json!({"sku": "C", "location": "WH1", "on_hand": 1}),
        ),
        stock(
            "D@WH1",
            4,
            json!({"sku": "D", "location": "WH1", "on_hand": "many"}),
        ),
        stock(
            "E@WH1",
            5,
            json!({"sku": "E", "location": "WH1", "on_hand": 2}),
        ),
    ]);
    let (status, v) = hub.signed(&body).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["code"], "invalid_records", "{v}");
    let details = v["details"].as_array().expect("details");
    assert_eq!(details.len(), 1, "{v}");
    assert!(details[0].as_str().unwrap().contains("events[1]"), "{v}");
    assert!(details[0].as_str().unwrap().contains("on_hand"), "{v}");

    // An envelope without `events`, and an event with an unknown kind: 400.
    let (status, v) = hub.signed(br#"{"records": []}"#).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["code"], "invalid_payload", "{v}");
    assert!(message(&v).contains("events"), "{v}");
    let body = events(vec![
        json!({"kind": "stocks", "id": "x", "version": "1", "record": {}}),
    ]);
    let (status, v) = hub.signed(&body).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["code"], "invalid_payload", "{v}");
    assert!(message(&v).contains("events[0].kind"), "{v}");

    // 10 MB: 413 (the limit is 1 MiB), whether announced by Content-Length or streamed in chunks.
    // Raw TCP: the hub answers before the body is through and closes, so an HTTP client that
    // insists on writing the whole body first would only see a broken pipe.
    for chunked in [false, true] {
        let status = hub.post_big(10 << 20, chunked).await;
        assert_eq!(status, 413, "10 MB body (chunked: {chunked})");
        // The same request, small, is fine (the helper is not what fails).
        assert_eq!(hub.post_big(1000, chunked).await, 200, "chunked: {chunked}");
    }
    // Invalid UTF-8, between tokens and inside a string: 400.
    let (status, v) = hub.signed(b"{\"events\": [\xff\xfe]}").await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["code"], "invalid_payload", "{v}");
    let (status, v) = hub
        .signed(b"{\"events\": [{\"kind\": \"stock\", \"id\": \"\xc3\x28\", \"version\": \"9\", \"record\": {}}]}")
        .await;
    assert_eq!(status, 400, "{v}");

    // Signatures: missing, malformed, wrong secret, or over another body: 401.
    let good = events(vec![stock(
        "F@WH1",
        6,
        json!({"sku": "F", "location": "WH1", "on_hand": 7, "committed": 2}),
    )]);
    for (what, sig) in [
        ("missing", None),
        ("malformed", Some("md5=abc".to_string())),
        ("wrong secret", Some(sign(b"not-the-secret", &good))),
        ("another body", Some(sign(SECRET.as_bytes(), b"{}"))),
    ] {
        let (status, v) = hub.post("erp", good.clone(), sig).await;
        assert_eq!(status, 401, "{what} signature: {v}");
        assert_eq!(v["code"], "invalid_signature", "{what}: {v}");
    }

    // Unknown endpoint: 404 naming it.
    let (status, v) = hub
        .post("nope", good.clone(), Some(sign(SECRET.as_bytes(), &good)))
        .await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["code"], "unknown_endpoint", "{v}");
    // A path segment axum itself refuses (not UTF-8 once decoded): its rejection answers the
    // same JSON shape, with a code.
    let (status, v) = hub.post("%FF", good.clone(), None).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["code"], "bad_request", "{v}");
    assert!(v["error"].is_string(), "{v}");

    // None of that stored anything or reached the store front.
    assert_eq!(
        hub.journal_total().await,
        0,
        "bad input reached the journal"
    );
    for sku in ["A", "B", "C", "D", "E", "F"] {
        assert!(
            hub.shop.inventory(sku).is_empty(),
            "bad input reached the shop ({sku})"
        );
    }

    // The hub still serves: a valid signed webhook is stored once…
    let (status, v) = hub.signed(&good).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["stored"], 1, "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");
    assert_eq!(hub.journal_total().await, 1);
    // …a resend is answered as a duplicate and stores nothing…
    let (status, v) = hub.signed(&good).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["stored"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(1)),
        "{v}"
    );
    assert_eq!(hub.journal_total().await, 1);
    // …and the change reaches the storefront (on hand 7 − committed 2).
    wait_until(
        "the valid stock change reaches the storefront",
        DEADLINE,
        async || hub.shop.inventory("F").get("WH1") == Some(&5),
    )
    .await;

    assert_eq!(hub.get("/healthz").await, (200, "ok".to_string()));
    assert_eq!(hub.get("/readyz").await.0, 200);
    // No recorder in this hub: /metrics says so.
    let (status, body) = hub.get("/metrics").await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["code"], "not_found", "{body}");
    assert!(body.contains("no metrics recorder"), "{body}");

    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_render_after_a_delivery() {
    let hub = Hub::start(Some(recorder())).await;
    let good = events(vec![stock(
        "M@WH1",
        1,
        json!({"sku": "M", "location": "WH1", "on_hand": 4}),
    )]);
    let (status, v) = hub.signed(&good).await;
    assert_eq!((status, v["stored"].as_u64()), (200, Some(1)), "{v}");
    wait_until(
        "the stock change reaches the storefront",
        DEADLINE,
        async || hub.shop.inventory("M").get("WH1") == Some(&4),
    )
    .await;
    wait_until(
        "/metrics shows the capture and the delivery",
        DEADLINE,
        async || {
            let (status, body) = hub.get("/metrics").await;
            status == 200
                && body.contains("concord_captured_total")
                && body.contains("concord_deliveries_total")
        },
    )
    .await;
    hub.stop().await;
}

//! End-to-end tests of the sandbox: emulators over real HTTP on 127.0.0.1, webhooks to a local
//! receiver, and the connectors built through the registry. Waits poll a condition with a
//! deadline; nothing sleeps and hopes.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use concord_connectors::sandbox::{
    ErpOptions, ErpSim, Faults, ShopError, ShopOptions, ShopSim, SIGNATURE_HEADER, TOPIC_HEADER,
};
use concord_core::Kind;
use concord_engine::connector::{
    Connector, DeliveryError, EndpointSpec, ReadRequest, WebhookError, WriteOp, WriteOutcome,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "s3cret";

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

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

fn spec(connector: &str, url: &str, secret: Option<&str>, options: Value) -> EndpointSpec {
    EndpointSpec {
        name: "x".into(),
        connector: connector.into(),
        url: url.into(),
        webhook_secret: secret.map(str::to_string),
        timeout: Duration::from_secs(5),
        options,
    }
}

fn connector(kind: &str, url: &str) -> Arc<dyn Connector> {
    concord_connectors::build(&spec(kind, url, Some(SECRET), Value::Null)).unwrap()
}

fn op(kind: Kind, key: &str, op: &str, payload: Value) -> WriteOp {
    WriteOp {
        item_id: 1,
        kind,
        key: key.into(),
        op: op.into(),
        payload,
        external_id: None,
        refs: BTreeMap::new(),
    }
}

fn req(kind: Kind, cursor: Option<&str>, limit: usize) -> ReadRequest<'_> {
    ReadRequest {
        kind,
        cursor,
        limit,
        overlap: Duration::from_secs(30),
    }
}

fn ext_id(o: &WriteOutcome) -> String {
    match o {
        WriteOutcome::Done {
            external_id: Some(id),
            ..
        } => id.clone(),
        other => panic!("expected Done with an id, got {other:?}"),
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
    wait_until("500 stock events", || rx.event_count() == 500).await;
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
        let captured = conn.parse_webhook(headers, body).expect("valid signature");
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
    wait_until("delivery after two failures", || {
        shop.counters().webhooks_sent == 1
    })
    .await;
    assert_eq!(shop.counters().webhooks_failed, 2);
    assert_eq!(rx.event_count(), 1);

    // Always failing: 1 try + 3 retries (0.1 + 0.4 + 1.6 s), then the batch is dropped.
    rx.fail_first.store(usize::MAX, Ordering::SeqCst);
    shop.set_inventory("A", "L1", 4).unwrap();
    wait_until("drop", || shop.counters().webhooks_dropped == 1).await;
    let c = shop.counters();
    assert_eq!((c.webhooks_failed, c.webhook_events_dropped), (6, 1));
    shop.shutdown().await;
}

#[tokio::test]
async fn webhook_verification_rejects_tampering_missing_signature_and_bad_envelopes() {
    let conn = connector("sandbox-shop", "http://127.0.0.1:9");
    let body = br#"{"events":[{"kind":"stock","id":"A@L","version":"7","record":{"sku":"A"}}]}"#;
    let mut headers = HeaderMap::new();
    let sig = concord_connectors::sandbox::sign(SECRET.as_bytes(), body);
    headers.insert(SIGNATURE_HEADER, sig.parse().unwrap());
    let ok = conn.parse_webhook(&headers, body).unwrap();
    assert_eq!(ok[0].kind, Kind::Stock);
    assert_eq!(ok[0].version.as_deref(), Some("7"));

    let mut tampered = body.to_vec();
    tampered[30] ^= 1;
    assert!(matches!(
        conn.parse_webhook(&headers, &tampered),
        Err(WebhookError::Unauthorized(_))
    ));
    let e = conn.parse_webhook(&HeaderMap::new(), body).unwrap_err();
    assert!(
        matches!(&e, WebhookError::Unauthorized(m) if m.contains("missing")),
        "{e}"
    );

    let no_secret = concord_connectors::build(&spec(
        "sandbox-shop",
        "http://127.0.0.1:9",
        None,
        Value::Null,
    ))
    .unwrap();
    let e = no_secret.parse_webhook(&headers, body).unwrap_err();
    assert!(
        matches!(&e, WebhookError::Unauthorized(m) if m.contains("webhook_secret")),
        "{e}"
    );

    let signed = |b: &[u8]| {
        let mut h = HeaderMap::new();
        h.insert(
            SIGNATURE_HEADER,
            concord_connectors::sandbox::sign(SECRET.as_bytes(), b)
                .parse()
                .unwrap(),
        );
        conn.parse_webhook(&h, b).unwrap_err().to_string()
    };
    assert!(signed(b"{\"events\": [").contains("line 1 column"));
    assert!(
        signed(br#"{"events":[{"kind":"widget","id":"1","version":"1","record":{}}]}"#)
            .contains("events[0].kind")
    );
    assert!(
        signed(br#"{"events":[{"kind":"invoice","id":"1","version":"1","record":{}}]}"#)
            .contains("events[0].kind")
    );
    assert!(
        signed(br#"{"events":[{"kind":"order","version":"1","record":{}}]}"#)
            .contains("events[0].id")
    );
}

#[tokio::test]
async fn changes_feed_and_snapshot_page_without_gaps_or_repeats() {
    let erp = ErpSim::start(ErpOptions::default()).await.unwrap();
    erp.seed(40, &["WH1"], 5).unwrap();
    let conn = connector("sandbox-erp", &erp.base_url());
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    let mut last = 0u64;
    loop {
        let page = conn
            .read_changes(req(Kind::Product, cursor.as_deref(), 7))
            .await
            .unwrap();
        for r in &page.records {
            let v: u64 = r.version.as_deref().unwrap().parse().unwrap();
            assert!(v > last);
            last = v;
            seen.push(r.external_id.clone());
        }
        cursor = page.cursor;
        if !page.more {
            break;
        }
    }
    let expected: Vec<String> = (1..=40).map(|i| format!("SKU-{i:04}")).collect();
    assert_eq!(seen, expected);
    // An empty poll keeps the cursor; an update shows up once, after it.
    let page = conn
        .read_changes(req(Kind::Product, cursor.as_deref(), 7))
        .await
        .unwrap();
    assert!(page.records.is_empty() && !page.more && page.cursor == cursor);
    erp.upsert_product(json!({"sku": "SKU-0003", "name": "renamed"}))
        .unwrap();
    let page = conn
        .read_changes(req(Kind::Product, cursor.as_deref(), 7))
        .await
        .unwrap();
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].record["name"], "renamed");

    let mut token: Option<String> = None;
    let mut listed = Vec::new();
    loop {
        let page = conn
            .read_snapshot(req(Kind::Stock, token.as_deref(), 15))
            .await
            .unwrap();
        listed.extend(page.records.iter().map(|r| r.external_id.clone()));
        token = page.cursor;
        if !page.more {
            break;
        }
    }
    assert_eq!(listed.len(), 40);
    assert_eq!(listed[0], "SKU-0001@WH1");
    let e = conn
        .read_changes(req(Kind::Invoice, None, 5))
        .await
        .unwrap_err();
    assert!(e.is_permanent());
    erp.shutdown().await;
}

#[tokio::test]
async fn faults_are_classified() {
    let erp = ErpSim::start(ErpOptions::default()).await.unwrap();
    let conn = connector("sandbox-erp", &erp.base_url());
    let read = || conn.read_changes(req(Kind::Product, None, 10));

    erp.set_faults(Faults {
        rate_limit_every: 1,
        rate_limit_retry_after_secs: 2.0,
        ..Faults::default()
    });
    let e = read().await.unwrap_err();
    assert!(
        matches!(e, DeliveryError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(2)),
        "{e}"
    );
    erp.set_faults(Faults {
        rate_limit_every: 1,
        rate_limit_retry_after_secs: 0.5,
        ..Faults::default()
    });
    let e = read().await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_millis(500)));

    erp.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    assert!(matches!(
        read().await.unwrap_err(),
        DeliveryError::Transient { .. }
    ));
    erp.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    let e = read().await.unwrap_err();
    assert!(
        matches!(&e, DeliveryError::Unavailable { reason, .. } if reason.contains("maintenance")),
        "{e}"
    );

    // Faults over HTTP; /_control is never faulted.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/_control/faults", erp.base_url()))
        .json(&json!({"latency_ms": 0}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(read().await.is_ok());
    let c = erp.counters();
    assert_eq!((c.requests, c.responses_429, c.responses_5xx), (5, 2, 2));

    // A request slower than the endpoint's timeout is transient.
    erp.set_faults(Faults {
        latency_ms: 400,
        ..Faults::default()
    });
    let mut quick = spec("sandbox-erp", &erp.base_url(), None, Value::Null);
    quick.timeout = Duration::from_millis(50);
    let quick = concord_connectors::build(&quick).unwrap();
    let e = quick
        .read_changes(req(Kind::Product, None, 10))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DeliveryError::Transient { reason, .. } if reason.contains("timed out")),
        "{e}"
    );
    erp.set_faults(Faults::default());

    // A real outage: the port refuses connections, then comes back on the same port.
    let before = erp.base_url();
    erp.set_down(true).await.unwrap();
    let e = read().await.unwrap_err();
    assert!(matches!(e, DeliveryError::Unavailable { .. }), "{e}");
    erp.set_down(false).await.unwrap();
    assert_eq!(erp.base_url(), before);
    assert!(read().await.is_ok());
    erp.shutdown().await;
}

#[tokio::test]
async fn erp_order_create_is_idempotent_on_reference_and_commits_stock() {
    let erp = ErpSim::start(ErpOptions {
        credit_hold: vec!["bad@payer.io".into()],
        ..ErpOptions::default()
    })
    .await
    .unwrap();
    erp.seed(2, &["WH1"], 10).unwrap();
    let conn = connector("sandbox-erp", &erp.base_url());
    let cust = op(
        Kind::Customer,
        "ann@example.com",
        "upsert",
        json!({"email": "ann@example.com", "name": "Ann"}),
    );
    let c1 = ext_id(&conn.write(vec![cust.clone()]).await[0]);
    let c2 = ext_id(&conn.write(vec![cust]).await[0]);
    assert_eq!((c1.as_str(), c2.as_str()), ("C-1", "C-1"));

    let order = json!({"channel": "web", "number": "1001", "customer": {"email": "ann@example.com"},
                       "status": "placed", "currency": "USD",
                       "lines": [{"sku": "SKU-0001", "quantity": 3, "unit_price_minor": 100}]});
    let mut o = op(Kind::Order, "web/1001", "create", order.clone());
    o.refs.insert("customer:ann@example.com".into(), c1.clone());
    let first = ext_id(&conn.write(vec![o.clone()]).await[0]);
    let second = ext_id(&conn.write(vec![o.clone()]).await[0]);
    assert_eq!(first, second);
    assert_eq!(erp.sales_orders().len(), 1);
    assert_eq!(erp.stock("SKU-0001", "WH1").unwrap().committed, 3);
    let c = erp.counters();
    assert_eq!(
        (c.writes_of("order"), c.writes_of("product")),
        (1, 0),
        "seeding is not an API write"
    );
    let posts = erp
        .write_log()
        .iter()
        .filter(|w| w.path == "/api/sales-orders")
        .count();
    assert_eq!(
        posts, 1,
        "the retry found the order by reference and did not POST"
    );

    // Unknown sku, credit hold: permanent, naming the problem.
    let mut bad = order.clone();
    bad["number"] = json!("1002");
    bad["lines"][0]["sku"] = json!("NOPE");
    let out = conn
        .write(vec![op(Kind::Order, "web/1002", "create", bad)])
        .await;
    assert!(
        matches!(&out[0], WriteOutcome::Failed(e) if e.is_permanent() && e.to_string().contains("NOPE")),
        "{out:?}"
    );
    conn.write(vec![op(
        Kind::Customer,
        "bad@payer.io",
        "upsert",
        json!({"email": "bad@payer.io"}),
    )])
    .await;
    let mut held = order.clone();
    held["number"] = json!("1003");
    held["customer"]["email"] = json!("bad@payer.io");
    let out = conn
        .write(vec![op(Kind::Order, "web/1003", "create", held)])
        .await;
    assert!(
        matches!(&out[0], WriteOutcome::Failed(e) if e.to_string().contains("credit hold")),
        "{out:?}"
    );

    // Cancel releases committed; shipping lowers on-hand.
    let out = conn
        .write(vec![op(Kind::Order, "web/1001", "cancel", order.clone())])
        .await;
    assert_eq!(ext_id(&out[0]), first);
    assert_eq!(erp.stock("SKU-0001", "WH1").unwrap().committed, 0);
    let mut o4 = order.clone();
    o4["number"] = json!("1004");
    let id4 = ext_id(
        &conn
            .write(vec![op(Kind::Order, "web/1004", "upsert", o4)])
            .await[0],
    );
    erp.ship_partial(&id4, &[("SKU-0001", 1)]).unwrap();
    let sh = erp.ship(&id4).unwrap();
    assert_eq!(sh["carrier"], "UPS");
    let s = erp.stock("SKU-0001", "WH1").unwrap();
    assert_eq!((s.on_hand, s.committed), (7, 0));
    let page = conn
        .read_changes(req(Kind::Shipment, None, 10))
        .await
        .unwrap();
    assert_eq!(page.records.len(), 2);
    assert_eq!(page.records[0].record["order"], "web/1004");
    let orders = conn.read_changes(req(Kind::Order, None, 10)).await.unwrap();
    let last = orders.records.last().unwrap();
    assert_eq!(
        (last.external_id.as_str(), &last.record["status"]),
        (id4.as_str(), &json!("shipped"))
    );
    erp.shutdown().await;
}

#[tokio::test]
async fn shop_bulk_stock_reports_per_op_outcomes() {
    let shop = ShopSim::start(ShopOptions::default()).await.unwrap();
    let conn = connector("sandbox-shop", &shop.base_url());
    assert_eq!(conn.capabilities().kind(Kind::Stock).write.max_batch, 100);
    let ops = vec![
        op(
            Kind::Stock,
            "A@L1",
            "upsert",
            json!({"sku": "A", "location": "L1", "on_hand": 5}),
        ),
        op(
            Kind::Stock,
            "B@L1",
            "upsert",
            json!({"sku": "B", "location": "L1", "on_hand": -2}),
        ),
        op(
            Kind::Stock,
            "C@L1",
            "upsert",
            json!({"sku": "C", "location": "L1", "on_hand": 9, "committed": 2}),
        ),
    ];
    let out = conn.write(ops).await;
    assert_eq!(ext_id(&out[0]), "A@L1");
    assert!(
        matches!(&out[1], WriteOutcome::Failed(e) if e.is_permanent() && e.to_string().contains("items[1].available")),
        "{out:?}"
    );
    assert_eq!(ext_id(&out[2]), "C@L1");
    assert_eq!(shop.inventory("C")["L1"], 7);
    assert!(shop.inventory("B").is_empty());
    assert_eq!(shop.write_log().len(), 1, "one bulk call");
    assert_eq!(shop.counters().writes_of("stock"), 2);
    shop.shutdown().await;
}

#[tokio::test]
async fn checkout_refuses_oversell_and_fulfillment_is_idempotent() {
    let shop = ShopSim::start(ShopOptions {
        name: "web".into(),
        ..ShopOptions::default()
    })
    .await
    .unwrap();
    shop.upsert_product(json!({"sku": "A", "name": "A", "attributes": {"price_minor": 1250}}))
        .unwrap();
    shop.set_inventory("A", "L1", 1).unwrap();
    shop.set_inventory("A", "L2", 1).unwrap();
    let e = shop
        .place_order("ann@example.com", "Ann", &[("A", 3)])
        .unwrap_err();
    assert!(matches!(e, ShopError::OutOfStock { available: 2, .. }));
    assert_eq!(shop.counters().oversell_refused, 1);
    let placed = shop
        .place_order("ann@example.com", "Ann", &[("A", 2)])
        .unwrap();
    assert_eq!(
        (
            placed.number.as_str(),
            placed.key.as_str(),
            placed.total_minor
        ),
        ("1001", "web/1001", 2500)
    );
    assert_eq!(shop.inventory("A").values().sum::<i64>(), 0);
    assert!(shop
        .place_order("bob@example.com", "Bob", &[("A", 1)])
        .is_err());

    let conn = connector("sandbox-shop", &shop.base_url());
    let orders = conn.read_changes(req(Kind::Order, None, 10)).await.unwrap();
    assert_eq!(
        orders.records[0].record["customer"]["email"],
        "ann@example.com"
    );
    assert_eq!(
        conn.read_changes(req(Kind::Customer, None, 10))
            .await
            .unwrap()
            .records
            .len(),
        1
    );

    let ship = |id: &str, qty: i64| {
        let mut o = op(
            Kind::Shipment,
            id,
            "create",
            json!({"id": id, "order": "web/1001", "status": "shipped",
            "carrier": "UPS", "tracking_number": "1Z", "lines": [{"sku": "A", "quantity": qty}]}),
        );
        o.refs.insert("order:web/1001".into(), placed.id.clone());
        o
    };
    assert_eq!(ext_id(&conn.write(vec![ship("SH-1", 1)]).await[0]), "SH-1");
    assert_eq!(ext_id(&conn.write(vec![ship("SH-1", 1)]).await[0]), "SH-1");
    assert_eq!(shop.fulfillments(&placed.id).len(), 1);
    assert_eq!(
        shop.orders()[0].status,
        concord_connectors::sandbox::shop::ShopOrderStatus::PartiallyShipped
    );
    // Without the ref the order is found by number.
    let mut second = ship("SH-2", 1);
    second.refs.clear();
    assert_eq!(ext_id(&conn.write(vec![second]).await[0]), "SH-2");
    assert_eq!(
        shop.orders()[0].status,
        concord_connectors::sandbox::shop::ShopOrderStatus::Shipped
    );
    let over = conn.write(vec![ship("SH-3", 1)]).await;
    assert!(
        matches!(&over[0], WriteOutcome::Failed(e) if e.is_permanent()),
        "{over:?}"
    );
    shop.shutdown().await;
}

#[tokio::test]
async fn erp_auto_ships_accepted_orders() {
    let erp = ErpSim::start(ErpOptions {
        auto_ship_after: Some(Duration::from_millis(20)),
        ..ErpOptions::default()
    })
    .await
    .unwrap();
    erp.seed(1, &["WH1"], 4).unwrap();
    let conn = connector("sandbox-erp", &erp.base_url());
    conn.write(vec![op(
        Kind::Customer,
        "a@b.io",
        "upsert",
        json!({"email": "a@b.io"}),
    )])
    .await;
    let order = json!({"number": "7", "customer": {"email": "a@b.io"}, "currency": "USD",
                       "lines": [{"sku": "SKU-0001", "quantity": 1}]});
    let out = conn
        .write(vec![op(Kind::Order, "b2b/7", "create", order)])
        .await;
    let id = ext_id(&out[0]);
    wait_until("auto ship", || erp.shipments().len() == 1).await;
    assert_eq!(erp.sales_orders()[0].reference, "b2b/7");
    assert_eq!(erp.sales_orders()[0].id, id);
    assert_eq!(erp.stock("SKU-0001", "WH1").unwrap().on_hand, 3);
    erp.shutdown().await;
}

#[test]
fn build_rejects_bad_specs_with_paths() {
    let e = concord_connectors::build(&spec("netsuite", "http://x.io", None, Value::Null))
        .err()
        .unwrap();
    assert_eq!(e.path, "connector");
    assert!(
        e.message.contains("sandbox-erp, sandbox-shop"),
        "{}",
        e.message
    );
    let e = concord_connectors::build(&spec("sandbox-erp", "not a url", None, Value::Null))
        .err()
        .unwrap();
    assert_eq!(e.path, "url");
    let e = concord_connectors::build(&spec(
        "sandbox-shop",
        "http://x.io",
        None,
        json!({"warehouse": 1}),
    ))
    .err()
    .unwrap();
    assert_eq!(e.path, "options.warehouse");
    let ok = concord_connectors::build(&spec(
        "sandbox-shop",
        "http://x.io",
        None,
        json!({"location": "WH1"}),
    ))
    .unwrap();
    assert_eq!(ok.connector_type(), "sandbox-shop");
    assert_eq!(
        concord_connectors::connector_types(),
        ["sandbox-erp", "sandbox-shop", "tryton", "vendure"]
    );
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

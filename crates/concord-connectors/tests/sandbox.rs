//! End-to-end tests of the sandbox connectors (`sandbox-erp`, `sandbox-shop`, built through the
//! registry) against the emulators of `concord-sandbox` over real HTTP on 127.0.0.1. The
//! emulators' own behaviour (webhook batching and retries, control calls, outages) is tested
//! in `crates/concord-sandbox/tests/`. Waits poll a condition with a deadline; nothing sleeps
//! and hopes.

use concord_connectors::sandbox::protocol::{sign, SIGNATURE_HEADER};
use concord_core::Kind;
use concord_engine::connector::{
    Connector, DeliveryError, EndpointSpec, ReadRequest, WebhookError, WriteOp, WriteOutcome,
};
use concord_sandbox::shop::ShopOrderStatus;
use concord_sandbox::{ErpOptions, ErpSim, Faults, ShopError, ShopOptions, ShopSim};
use concord_testkit::wait_until;
use http::HeaderMap;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "s3cret";

fn spec(connector: &str, url: &str, secret: Option<&str>, options: Value) -> EndpointSpec {
    EndpointSpec {
        name: "x".into(),
        connector: connector.into(),
        url: url.into(),
        webhook_secret: secret.map(Into::into),
        timeout: Duration::from_secs(5),
        max_response_bytes: concord_engine::outbound::DEFAULT_MAX_RESPONSE_BYTES,
        allow_insecure_http: false,
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
async fn webhook_verification_rejects_tampering_missing_signature_and_bad_envelopes() {
    let conn = connector("sandbox-shop", "http://127.0.0.1:9");
    let body = br#"{"events":[{"kind":"stock","id":"A@L","version":"7","record":{"sku":"A"}}]}"#;
    let mut headers = HeaderMap::new();
    let sig = sign(SECRET.as_bytes(), body);
    headers.insert(SIGNATURE_HEADER, sig.parse().unwrap());
    let ok = conn.parse_webhook(&headers, body).await.unwrap();
    assert_eq!(ok[0].kind, Kind::Stock);
    assert_eq!(ok[0].version.as_deref(), Some("7"));

    let mut tampered = body.to_vec();
    tampered[30] ^= 1;
    assert!(matches!(
        conn.parse_webhook(&headers, &tampered).await,
        Err(WebhookError::Unauthorized(_))
    ));
    let e = conn
        .parse_webhook(&HeaderMap::new(), body)
        .await
        .unwrap_err();
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
    let e = no_secret.parse_webhook(&headers, body).await.unwrap_err();
    assert!(
        matches!(&e, WebhookError::Unauthorized(m) if m.contains("webhook_secret")),
        "{e}"
    );

    let signed = async |b: &[u8]| {
        let mut h = HeaderMap::new();
        h.insert(
            SIGNATURE_HEADER,
            sign(SECRET.as_bytes(), b).parse().unwrap(),
        );
        conn.parse_webhook(&h, b).await.unwrap_err().to_string()
    };
    assert!(signed(b"{\"events\": [").await.contains("line 1 column"));
    assert!(
        signed(br#"{"events":[{"kind":"widget","id":"1","version":"1","record":{}}]}"#)
            .await
            .contains("events[0].kind")
    );
    assert!(
        signed(br#"{"events":[{"kind":"invoice","id":"1","version":"1","record":{}}]}"#)
            .await
            .contains("events[0].kind")
    );
    assert!(
        signed(br#"{"events":[{"kind":"order","version":"1","record":{}}]}"#)
            .await
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
    // A kind the connector does not serve (the storefront has no invoices of its own) is
    // refused before any call.
    let shop_conn = connector("sandbox-shop", &erp.base_url());
    let before = erp.counters().requests;
    let e = shop_conn
        .read_changes(req(Kind::Invoice, None, 5))
        .await
        .unwrap_err();
    assert!(e.is_permanent() && e.to_string().contains("invoice"), "{e}");
    assert_eq!(erp.counters().requests, before);
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
    held["lines"][0]["sku"] = json!("SKU-0002"); // keeps SKU-0001's figures for below
    let out = conn
        .write(vec![op(Kind::Order, "web/1003", "create", held.clone())])
        .await;
    assert!(
        matches!(&out[0], WriteOutcome::Failed(e) if e.to_string().contains("credit hold")),
        "{out:?}"
    );
    // The credit controller lifts the hold (control API): the same order is accepted now.
    let lifted = reqwest::Client::new()
        .delete(format!(
            "{}/_control/credit-hold/bad@payer.io",
            erp.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status().as_u16(), 204);
    let out = conn
        .write(vec![op(Kind::Order, "web/1003", "create", held)])
        .await;
    assert!(matches!(&out[0], WriteOutcome::Done { .. }), "{out:?}");
    erp.set_credit_hold("bad@payer.io", true);

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
    assert_eq!(shop.orders()[0].status, ShopOrderStatus::PartiallyShipped);
    // Without the ref the order is found by number.
    let mut second = ship("SH-2", 1);
    second.refs.clear();
    assert_eq!(ext_id(&conn.write(vec![second]).await[0]), "SH-2");
    assert_eq!(shop.orders()[0].status, ShopOrderStatus::Shipped);
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
    wait_until("auto ship", Duration::from_secs(5), async || {
        erp.shipments().len() == 1
    })
    .await;
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
        ["http", "sandbox-erp", "sandbox-shop", "tryton", "vendure"]
    );
}

/// POST to an emulator's `/_control/...` (never faulted): `(status, body)`.
async fn control(base: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every record of `kind` in a connector's change feed (latest state per record), each checked
/// against the canonical model.
async fn feed(conn: &Arc<dyn Connector>, kind: Kind) -> Vec<(String, Value)> {
    let page = conn.read_changes(req(kind, None, 1000)).await.unwrap();
    page.records
        .into_iter()
        .map(|c| {
            concord_core::validate(kind, &c.record)
                .unwrap_or_else(|e| panic!("{kind} {} is not canonical: {e}", c.external_id));
            (c.external_id, c.record)
        })
        .collect()
}

fn permanent_with(o: &WriteOutcome, needle: &str) -> bool {
    matches!(o, WriteOutcome::Failed(e) if e.is_permanent() && e.to_string().contains(needle))
}

/// An ERP with two SKUs (10 each at WH1), customer ann, and order `web/1001` (3 × SKU-0001 at
/// 100, 2 × SKU-0002 at 250) created through the connector: `(erp, connector, order, so id)`.
async fn erp_with_order() -> (
    concord_sandbox::ErpHandle,
    Arc<dyn Connector>,
    Value,
    String,
) {
    let erp = ErpSim::start(ErpOptions::default()).await.unwrap();
    erp.seed(3, &["WH1"], 10).unwrap();
    let conn = connector("sandbox-erp", &erp.base_url());
    let cust = op(
        Kind::Customer,
        "ann@example.com",
        "upsert",
        json!({"email": "ann@example.com"}),
    );
    ext_id(&conn.write(vec![cust]).await[0]);
    let order = json!({"channel": "web", "number": "1001", "customer": {"email": "ann@example.com"},
                       "currency": "USD",
                       "lines": [{"sku": "SKU-0001", "quantity": 3, "unit_price_minor": 100},
                                 {"sku": "SKU-0002", "quantity": 2, "unit_price_minor": 250}]});
    let so = ext_id(
        &conn
            .write(vec![op(Kind::Order, "web/1001", "create", order.clone())])
            .await[0],
    );
    (erp, conn, order, so)
}

#[tokio::test]
async fn erp_amends_an_order_until_it_ships_and_refuses_after_with_the_reason() {
    let (erp, conn, order, so) = erp_with_order().await;
    let caps = conn.capabilities();
    assert!(caps.kind(Kind::Order).write.amend, "the sandbox ERP amends");
    assert!(caps.kind(Kind::Refund).write.upsert && caps.kind(Kind::Payment).write.upsert);
    assert!(!caps.kind(Kind::Shipment).write.upsert && !caps.kind(Kind::Invoice).write.upsert);
    let v0: u64 = erp.order(&so).unwrap().version.parse().unwrap();

    // Quantity change, a line removed, a line added, an address: one PATCH.
    let mut edited = order.clone();
    edited["lines"] = json!([{"sku": "SKU-0001", "quantity": 5, "unit_price_minor": 100},
                             {"sku": "SKU-0003", "quantity": 1, "unit_price_minor": 900}]);
    edited["shipping_address"] =
        json!({"line1": "1 Main St", "city": "Springfield", "country": "US"});
    let out = conn
        .write(vec![op(Kind::Order, "web/1001", "amend", edited.clone())])
        .await;
    let WriteOutcome::Done {
        external_id: Some(id),
        version: Some(v1),
    } = &out[0]
    else {
        panic!("amend: {out:?}");
    };
    assert_eq!(id, &so, "the same sales order, amended in place");
    assert!(v1.parse::<u64>().unwrap() > v0, "a new acceptance version");
    let amended = erp.order(&so).unwrap();
    assert_eq!(amended.lines.len(), 2);
    assert_eq!(
        (amended.lines[0].quantity, amended.lines[1].sku.as_str()),
        (5, "SKU-0003")
    );
    assert_eq!(
        amended.shipping_address.as_ref().map(|a| a.city.as_str()),
        Some("Springfield")
    );
    let committed = |sku: &str| erp.stock(sku, "WH1").unwrap().committed;
    assert_eq!(
        (
            committed("SKU-0001"),
            committed("SKU-0002"),
            committed("SKU-0003")
        ),
        (5, 0, 1),
        "the reservation follows the edit"
    );
    assert_eq!(erp.sales_orders().len(), 1);
    // The same amend again changes nothing.
    let patches = || {
        erp.write_log()
            .iter()
            .filter(|w| w.method == "PATCH")
            .count()
    };
    let before = erp.last_seq();
    conn.write(vec![op(Kind::Order, "web/1001", "amend", edited.clone())])
        .await;
    assert_eq!(
        (patches(), erp.last_seq()),
        (2, before),
        "a no-op amend is no change"
    );

    // Invalid edit: named field.
    let mut bad = edited.clone();
    bad["lines"][0]["quantity"] = json!(0);
    let out = conn
        .write(vec![op(Kind::Order, "web/1001", "amend", bad)])
        .await;
    assert!(permanent_with(&out[0], "lines[0].quantity"), "{out:?}");

    // Shipped in part: refused with the reason, nothing changed.
    erp.ship_partial(&so, &[("SKU-0001", 1)]).unwrap();
    let mut late = edited.clone();
    late["lines"][0]["quantity"] = json!(4);
    let out = conn
        .write(vec![op(Kind::Order, "web/1001", "amend", late)])
        .await;
    assert!(
        permanent_with(&out[0], "409") && permanent_with(&out[0], "after shipment"),
        "{out:?}"
    );
    assert_eq!(erp.order(&so).unwrap().lines[0].quantity, 5);
    erp.shutdown().await;
}

#[tokio::test]
async fn erp_keys_orders_by_reference_for_cancel_and_replace() {
    let (erp, conn, order, so) = erp_with_order().await;
    // Cancel the original by its reference, then create the replacement `web/1001~2`.
    let mut cancel = order.clone();
    cancel["reference"] = json!("web/1001");
    let out = conn
        .write(vec![op(Kind::Order, "web/1001", "cancel", cancel)])
        .await;
    assert_eq!(ext_id(&out[0]), so);
    let mut replacement = order.clone();
    replacement["reference"] = json!("web/1001~2");
    replacement["lines"][0]["quantity"] = json!(1);
    let created = ext_id(
        &conn
            .write(vec![op(
                Kind::Order,
                "web/1001",
                "create",
                replacement.clone(),
            )])
            .await[0],
    );
    assert_ne!(created, so);
    // Idempotent on the replacement's reference too.
    let again = ext_id(
        &conn
            .write(vec![op(Kind::Order, "web/1001", "create", replacement)])
            .await[0],
    );
    assert_eq!(again, created);
    let orders = erp.sales_orders();
    assert_eq!(orders.len(), 2);
    let live = erp.order_by_reference("web/1001").unwrap();
    assert_eq!(
        (live.id.as_str(), live.reference.as_str()),
        (created.as_str(), "web/1001~2")
    );
    assert_eq!(erp.stock("SKU-0001", "WH1").unwrap().committed, 1);
    // The feed names both by the canonical key; the replacement carries its reference.
    let recs = feed(&conn, Kind::Order).await;
    let rec = |id: &str| recs.iter().find(|(i, _)| i == id).unwrap().1.clone();
    assert_eq!(rec(&so)["status"], "cancelled");
    assert_eq!(rec(&created)["reference"], "web/1001~2");
    assert_eq!(rec(&created)["number"], "1001");
    erp.shutdown().await;
}

/// Creates never assume: a sales order found under an order's reference is that order's only
/// with its customer and lines. A store that restarted its numbering sends another `web/1001`
/// (another customer, other lines): before, the connector answered `Done` with the first order's
/// sales order — the hub took the order as accepted and released its stock, and the ERP never
/// got it. Now it is a permanent failure (a dead letter) naming both, the ERP answers 409 to the
/// create itself, the first order is untouched, and a genuine retry is still recognised.
#[tokio::test]
async fn erp_refuses_another_order_under_an_existing_reference() {
    let (erp, conn, order, so) = erp_with_order().await;
    let bob = ext_id(
        &conn
            .write(vec![op(
                Kind::Customer,
                "bob@example.com",
                "upsert",
                json!({"email": "bob@example.com"}),
            )])
            .await[0],
    );
    let mut restarted = order.clone();
    restarted["customer"]["email"] = json!("bob@example.com");
    restarted["lines"] = json!([{"sku": "SKU-0001", "quantity": 7, "unit_price_minor": 100}]);
    let out = conn
        .write(vec![op(
            Kind::Order,
            "web/1001",
            "create",
            restarted.clone(),
        )])
        .await;
    assert!(
        permanent_with(&out[0], "`web/1001`")
            && permanent_with(&out[0], &format!("sales order {so}"))
            && permanent_with(&out[0], "bob@example.com"),
        "a collision naming the hub's order, the ERP's and what differs: {out:?}"
    );
    // The same customer with other lines is another order too (for a create).
    let mut other_lines = order.clone();
    other_lines["lines"] = json!([{"sku": "SKU-0001", "quantity": 13, "unit_price_minor": 100}]);
    let out = conn
        .write(vec![op(Kind::Order, "web/1001", "create", other_lines)])
        .await;
    assert!(
        permanent_with(&out[0], "SKU-0001×3, SKU-0002×2") && permanent_with(&out[0], "SKU-0001×13"),
        "{out:?}"
    );
    // A cancel or an edit of the other order never reaches the first one's sales order.
    for o in ["cancel", "amend"] {
        let out = conn
            .write(vec![op(Kind::Order, "web/1001", o, restarted.clone())])
            .await;
        assert!(permanent_with(&out[0], "collides"), "{o}: {out:?}");
    }
    // The ERP itself refuses the create (the race between a lookup and a create): 409.
    let mut body = restarted.clone();
    body["customer_id"] = json!(bob);
    let resp = reqwest::Client::new()
        .post(format!("{}/api/sales-orders", erp.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 409, "{text}");
    assert!(text.contains(&so) && text.contains("web/1001"), "{text}");

    // Nothing changed at the ERP; the first order's own retry is still its own.
    let first = erp.order(&so).unwrap();
    assert_eq!(first.email, "ann@example.com");
    assert_eq!(first.lines[0].quantity, 3);
    assert_eq!(first.status, concord_sandbox::erp::ErpOrderStatus::Open);
    assert_eq!(erp.sales_orders().len(), 1);
    assert_eq!(erp.stock("SKU-0001", "WH1").unwrap().committed, 3);
    let again = conn
        .write(vec![op(Kind::Order, "web/1001", "create", order.clone())])
        .await;
    assert_eq!(
        ext_id(&again[0]),
        so,
        "a retry of the same order is recognised"
    );
    let mut reordered = order.clone();
    reordered["customer"]["email"] = json!("ANN@example.com");
    reordered["lines"] = json!([{"sku": "SKU-0002", "quantity": 1, "unit_price_minor": 1},
                                {"sku": "SKU-0001", "quantity": 3, "unit_price_minor": 1},
                                {"sku": "SKU-0002", "quantity": 1, "unit_price_minor": 1}]);
    let again = conn
        .write(vec![op(Kind::Order, "web/1001", "create", reordered)])
        .await;
    assert_eq!(
        ext_id(&again[0]),
        so,
        "prices, line order and the e-mail's case do not make another order"
    );
    erp.shutdown().await;
}

/// A channel makes its payment and refund ids unique only among its own records: two stores
/// both numbering `pay_1` and `re_1` are two payments and two credit notes of two orders at the
/// ERP, each in its own order's money — never the first one again (before, the ERP answered the
/// second store's refund with the first's credit note, and its payment replaced the first).
#[tokio::test]
async fn erp_keeps_the_same_payment_and_refund_id_of_two_orders_apart() {
    let (erp, conn, order, _so) = erp_with_order().await;
    let mut other = order.clone();
    other["channel"] = json!("web2");
    other["number"] = json!("2001");
    ext_id(
        &conn
            .write(vec![op(Kind::Order, "web2/2001", "create", other)])
            .await[0],
    );
    for (order_key, amount) in [("web/1001", 300), ("web2/2001", 200)] {
        let pay = json!({"id": "pay_1", "order": order_key, "amount_minor": amount,
                         "currency": "USD", "status": "captured"});
        let out = conn
            .write(vec![op(
                Kind::Payment,
                &format!("{order_key}:pay_1"),
                "upsert",
                pay,
            )])
            .await;
        assert_eq!(ext_id(&out[0]), format!("{order_key}:pay_1"));
        let refund = json!({"id": "re_1", "order": order_key, "amount_minor": amount / 2,
                            "currency": "USD"});
        let out = conn
            .write(vec![op(
                Kind::Refund,
                &format!("{order_key}:re_1"),
                "create",
                refund,
            )])
            .await;
        assert!(matches!(out[0], WriteOutcome::Done { .. }), "{:?}", out[0]);
    }
    assert_eq!(erp.counters().writes_of("payment"), 2);
    let payments = feed(&conn, Kind::Payment).await;
    let mut got: Vec<(String, Value, Value)> = payments
        .iter()
        .map(|(id, r)| (id.clone(), r["order"].clone(), r["amount_minor"].clone()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("web/1001:pay_1".into(), json!("web/1001"), json!(300)),
            ("web2/2001:pay_1".into(), json!("web2/2001"), json!(200))
        ]
    );
    for (order_key, amount) in [("web/1001", 150), ("web2/2001", 100)] {
        let notes = erp.credit_notes(Some(order_key));
        assert_eq!(notes.len(), 1, "{order_key}: {notes:?}");
        assert_eq!(
            (notes[0].refund.id.as_str(), notes[0].refund.amount_minor),
            ("re_1", amount),
            "{order_key}"
        );
    }
    assert_ne!(
        erp.credit_notes(Some("web/1001"))[0].id,
        erp.credit_notes(Some("web2/2001"))[0].id
    );
}

#[tokio::test]
async fn erp_split_shipments_invoice_payments_credit_notes_and_returns() {
    let (erp, conn, _order, so) = erp_with_order().await;
    let base = erp.base_url();
    // Two shipments with their own carrier and tracking number.
    let (st, sh1) = control(
        &base,
        &format!("/_control/sales-orders/{so}/ship"),
        json!({"lines": [{"sku": "SKU-0001", "quantity": 3}], "carrier": "DHL",
               "tracking_number": "TRACK-1"}),
    )
    .await;
    assert_eq!(st, 201, "{sh1}");
    assert_eq!(
        feed(&conn, Kind::Order).await.last().unwrap().1["status"],
        "partially_shipped"
    );
    let (st, sh2) = control(
        &base,
        &format!("/_control/sales-orders/{so}/ship"),
        json!({"lines": [{"sku": "SKU-0002", "quantity": 2}], "carrier": "UPS",
               "tracking_number": "TRACK-2"}),
    )
    .await;
    assert_eq!(st, 201, "{sh2}");
    let (st, over) = control(
        &base,
        &format!("/_control/sales-orders/{so}/ship"),
        json!({}),
    )
    .await;
    assert_eq!(st, 409, "nothing left: {over}");
    let ships = feed(&conn, Kind::Shipment).await;
    let tracking: Vec<_> = ships
        .iter()
        .map(|(_, r)| (r["order"].clone(), r["tracking_number"].clone()))
        .collect();
    assert_eq!(
        tracking,
        [
            (json!("web/1001"), json!("TRACK-1")),
            (json!("web/1001"), json!("TRACK-2"))
        ]
    );

    // Invoice: posted for 3×100 + 2×250; a channel payment marks it paid, idempotently.
    let (st, inv) = control(
        &base,
        &format!("/_control/sales-orders/{so}/invoice"),
        json!({}),
    )
    .await;
    assert_eq!(
        (st, &inv["total_minor"], &inv["status"]),
        (200, &json!(800), &json!("posted"))
    );
    let pay = json!({"id": "pay_1", "order": "web/1001", "amount_minor": 800,
                     "currency": "USD", "status": "captured"});
    for _ in 0..2 {
        let out = conn
            .write(vec![op(
                Kind::Payment,
                "web/1001:pay_1",
                "upsert",
                pay.clone(),
            )])
            .await;
        assert_eq!(ext_id(&out[0]), "web/1001:pay_1");
    }
    assert_eq!(
        erp.counters().writes_of("payment"),
        1,
        "idempotent by order and payment id"
    );
    let invoices = feed(&conn, Kind::Invoice).await;
    assert_eq!(invoices.len(), 1);
    assert_eq!(
        (&invoices[0].1["status"], &invoices[0].1["order"]),
        (&json!("paid"), &json!("web/1001"))
    );
    let payments = feed(&conn, Kind::Payment).await;
    assert_eq!(payments[0].1["invoice"], inv["number"]);
    assert_eq!(
        feed(&conn, Kind::Order).await.last().unwrap().1["status"],
        "paid"
    );

    // A partial refund by lines with restock: a credit note for exactly those lines and a
    // return that puts nothing back until it is received.
    let refund = json!({"id": "re_1", "order": "web/1001", "amount_minor": 0, "currency": "USD",
                        "lines": [{"sku": "SKU-0002", "quantity": 1}], "restock": true});
    for _ in 0..2 {
        let out = conn
            .write(vec![op(
                Kind::Refund,
                "web/1001:re_1",
                "create",
                refund.clone(),
            )])
            .await;
        assert_eq!(ext_id(&out[0]), "CN-1");
    }
    let notes = erp.credit_notes(Some("web/1001"));
    assert_eq!(notes.len(), 1, "idempotent by refund id");
    assert_eq!(notes[0].refund.amount_minor, 250, "the line's value");
    let rma = notes[0].return_id.clone().expect("a return");
    let on_hand = || erp.stock("SKU-0002", "WH1").unwrap().on_hand;
    assert_eq!(on_hand(), 8, "not back before it is received");
    let refunds = feed(&conn, Kind::Refund).await;
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].1["id"], "re_1");
    assert_eq!(
        feed(&conn, Kind::Order).await.last().unwrap().1["status"],
        "partially_refunded"
    );
    // By amount, more than is left: refused naming the field; a wrong line likewise.
    let too_much = json!({"id": "re_2", "order": "web/1001", "amount_minor": 600,
                          "currency": "USD"});
    let out = conn
        .write(vec![op(Kind::Refund, "re_2", "create", too_much)])
        .await;
    assert!(permanent_with(&out[0], "amount_minor"), "{out:?}");
    let wrong = json!({"id": "re_3", "order": "web/1001", "amount_minor": 0, "currency": "USD",
                       "lines": [{"sku": "SKU-0002", "quantity": 2}]});
    let out = conn
        .write(vec![op(Kind::Refund, "re_3", "create", wrong)])
        .await;
    assert!(permanent_with(&out[0], "lines[0].quantity"), "{out:?}");
    let unknown = json!({"id": "re_4", "order": "web/4040", "amount_minor": 5, "currency": "USD"});
    let out = conn
        .write(vec![op(Kind::Refund, "re_4", "create", unknown)])
        .await;
    assert!(permanent_with(&out[0], "web/4040"), "{out:?}");

    let (st, _) = control(
        &base,
        &format!("/_control/returns/{rma}/receive"),
        json!({}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(on_hand(), 9, "received: back on hand");
    let stock = feed(&conn, Kind::Stock).await;
    let figure = stock.iter().find(|(id, _)| id == "SKU-0002@WH1").unwrap();
    assert_eq!(figure.1["on_hand"], 9, "in the stock feed");
    control(
        &base,
        &format!("/_control/returns/{rma}/receive"),
        json!({}),
    )
    .await;
    assert_eq!(on_hand(), 9, "receiving twice puts nothing back twice");
    assert_eq!(
        feed(&conn, Kind::Order).await.last().unwrap().1["status"],
        "returned"
    );
    erp.shutdown().await;
}

#[tokio::test]
async fn erp_lifecycle_writes_are_faulted_like_any_api_call() {
    let (erp, conn, _order, so) = erp_with_order().await;
    erp.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let refund = json!({"id": "re_1", "order": "web/1001", "amount_minor": 100,
                        "currency": "USD"});
    let pay = json!({"id": "pay_1", "order": "web/1001", "amount_minor": 100,
                     "currency": "USD", "status": "captured"});
    let mut amend = json!({"channel": "web", "number": "1001",
                           "customer": {"email": "ann@example.com"}, "currency": "USD",
                           "lines": [{"sku": "SKU-0001", "quantity": 1, "unit_price_minor": 100}]});
    let out = conn
        .write(vec![
            op(Kind::Refund, "re_1", "create", refund.clone()),
            op(Kind::Payment, "pay_1", "upsert", pay.clone()),
            op(Kind::Order, "web/1001", "amend", amend.clone()),
        ])
        .await;
    for o in &out {
        assert!(
            matches!(o, WriteOutcome::Failed(DeliveryError::Transient { .. })),
            "{o:?}"
        );
    }
    assert!(erp.credit_notes(None).is_empty() && erp.payment("pay_1").is_none());
    erp.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    let out = conn
        .write(vec![op(Kind::Refund, "re_1", "create", refund.clone())])
        .await;
    assert!(
        matches!(
            &out[0],
            WriteOutcome::Failed(DeliveryError::Unavailable { .. })
        ),
        "{out:?}"
    );
    erp.set_faults(Faults::default());
    amend["lines"][0]["quantity"] = json!(2);
    let out = conn
        .write(vec![
            op(Kind::Refund, "re_1", "create", refund),
            op(Kind::Payment, "pay_1", "upsert", pay),
            op(Kind::Order, "web/1001", "amend", amend),
        ])
        .await;
    assert_eq!(ext_id(&out[0]), "CN-1");
    assert_eq!(ext_id(&out[1]), "web/1001:pay_1");
    assert_eq!(ext_id(&out[2]), so);
    erp.shutdown().await;
}

#[tokio::test]
async fn shop_takes_fulfilments_invoices_payments_refunds_and_emits_edits_cancellations_refunds() {
    let shop = ShopSim::start(ShopOptions::default()).await.unwrap();
    shop.set_inventory("A", "L1", 10).unwrap();
    shop.set_inventory("B", "L1", 10).unwrap();
    let conn = connector("sandbox-shop", &shop.base_url());
    let caps = conn.capabilities();
    for k in [Kind::Shipment, Kind::Invoice, Kind::Payment, Kind::Refund] {
        assert!(caps.kind(k).write.upsert, "the store takes {k}");
    }
    for k in [Kind::Order, Kind::Payment, Kind::Refund] {
        assert!(caps.kind(k).read.changes, "the store's feed has {k}");
    }
    let placed = shop
        .place_order("ann@example.com", "Ann", &[("A", 2), ("B", 1)])
        .unwrap();
    let key = placed.key.clone();
    let base = shop.base_url();

    // The merchant edits it before shipment: an order update in the feed.
    let (st, edited) = control(
        &base,
        &format!("/_control/orders/{}/edit", placed.id),
        json!({"lines": [{"sku": "A", "quantity": 3}, {"sku": "B", "quantity": 1}],
               "shipping_address": {"line1": "2 Elm St", "city": "Shelbyville", "country": "US"}}),
    )
    .await;
    assert_eq!(st, 200, "{edited}");
    let orders = feed(&conn, Kind::Order).await;
    let rec = &orders.last().unwrap().1;
    assert_eq!(
        (
            &rec["lines"][0]["quantity"],
            &rec["shipping_address"]["city"]
        ),
        (&json!(3), &json!("Shelbyville"))
    );
    let (st, bad) = control(
        &base,
        &format!("/_control/orders/{}/edit", placed.id),
        json!({"lines": [{"sku": "A", "quantity": 0}]}),
    )
    .await;
    assert_eq!(st, 422);
    assert!(
        bad["error"].as_str().unwrap().contains("lines[0].quantity"),
        "{bad}"
    );

    // Two shipments → two fulfilments with their tracking numbers.
    let ship = |id: &str, sku: &str, q: i64, track: &str| {
        op(
            Kind::Shipment,
            id,
            "upsert",
            json!({"id": id, "order": key, "status": "shipped", "carrier": "UPS",
                  "tracking_number": track, "lines": [{"sku": sku, "quantity": q}]}),
        )
    };
    let out = conn.write(vec![ship("SH-1", "A", 3, "T-1")]).await;
    assert_eq!(ext_id(&out[0]), "SH-1");
    assert_eq!(
        shop.order(&placed.id).unwrap().status,
        ShopOrderStatus::PartiallyShipped
    );
    conn.write(vec![
        ship("SH-2", "B", 1, "T-2"),
        ship("SH-2", "B", 1, "T-2"),
    ])
    .await;
    let f = shop.fulfillments(&placed.id);
    let tracks: Vec<_> = f
        .iter()
        .map(|f| f.tracking_number.clone().unwrap())
        .collect();
    assert_eq!(tracks, ["T-1", "T-2"]);
    assert_eq!(
        shop.order(&placed.id).unwrap().status,
        ShopOrderStatus::Shipped
    );
    let (st, _) = control(
        &base,
        &format!("/_control/orders/{}/edit", placed.id),
        json!({"lines": [{"sku": "A", "quantity": 1}]}),
    )
    .await;
    assert_eq!(st, 409, "no edit after shipment");

    // The ERP's invoice (then paid), a payment state, a refund recorded elsewhere: by number/id.
    let inv = |status: &str| {
        op(
            Kind::Invoice,
            "INV-1",
            "upsert",
            json!({"number": "INV-1", "order": key, "status": status, "currency": "USD",
                  "total_minor": 4000}),
        )
    };
    assert_eq!(ext_id(&conn.write(vec![inv("posted")]).await[0]), "INV-1");
    conn.write(vec![inv("paid"), inv("paid")]).await;
    let o = shop.order(&placed.id).unwrap();
    assert_eq!(o.invoices.len(), 1);
    assert_eq!(o.invoices[0]["status"], "paid");
    assert_eq!(
        shop.counters().writes_of("invoice"),
        2,
        "the repeat changed nothing"
    );
    let wrong = op(
        Kind::Invoice,
        "INV-9",
        "upsert",
        json!({"number": "INV-9", "order": "web/9999", "currency": "USD",
                          "total_minor": 1}),
    );
    let out = conn.write(vec![wrong]).await;
    assert!(permanent_with(&out[0], "web/9999"), "{out:?}");

    // The store's own payment and refunds: in its feed.
    let (st, pay) = control(
        &base,
        &format!("/_control/orders/{}/capture", placed.id),
        json!({}),
    )
    .await;
    assert_eq!((st, &pay["amount_minor"]), (201, &json!(4000)));
    let (st, re) = control(
        &base,
        &format!("/_control/orders/{}/refund", placed.id),
        json!({"lines": [{"sku": "A", "quantity": 1}], "restock": true,
                                  "reason": "damaged"}),
    )
    .await;
    assert_eq!((st, &re["amount_minor"]), (201, &json!(1000)), "{re}");
    let (st, re2) = control(
        &base,
        &format!("/_control/orders/{}/refund", placed.id),
        json!({"amount_minor": 500}),
    )
    .await;
    assert_eq!(st, 201, "{re2}");
    let (st, over) = control(
        &base,
        &format!("/_control/orders/{}/refund", placed.id),
        json!({"amount_minor": 2600}),
    )
    .await;
    assert_eq!(st, 422, "{over}");
    assert!(
        over["error"].as_str().unwrap().contains("2500 left"),
        "{over}"
    );
    let pays = feed(&conn, Kind::Payment).await;
    assert_eq!((pays.len(), &pays[0].1["order"]), (1, &json!(key)));
    let refunds = feed(&conn, Kind::Refund).await;
    let amounts: Vec<_> = refunds
        .iter()
        .map(|(_, r)| r["amount_minor"].clone())
        .collect();
    assert_eq!(amounts, [json!(1000), json!(500)]);
    assert_eq!(refunds[0].1["lines"], json!([{"sku": "A", "quantity": 1}]));

    // A customer cancels another order; the hub's cancel of a fulfilled one is refused.
    let second = shop
        .place_order("bob@example.com", "Bob", &[("A", 1)])
        .unwrap();
    let (st, _) = control(
        &base,
        &format!("/_control/orders/{}/cancel", second.id),
        json!({}),
    )
    .await;
    assert_eq!(st, 200);
    let orders = feed(&conn, Kind::Order).await;
    let rec = &orders.iter().find(|(id, _)| *id == second.id).unwrap().1;
    assert_eq!(rec["status"], "cancelled");
    let out = conn
        .write(vec![op(
            Kind::Order,
            &key,
            "cancel",
            json!({"customer": {"email": "ann@example.com"}}),
        )])
        .await;
    assert!(permanent_with(&out[0], "fulfillments"), "{out:?}");
    let out = conn
        .write(vec![op(Kind::Order, &key, "amend", json!({}))])
        .await;
    assert!(permanent_with(&out[0], "cannot `amend`"), "{out:?}");
    // Its own order coming back from the ERP: the ERP's number and status are noted on it; an
    // order the store never took is refused.
    let back = json!({"channel": "web", "number": placed.number, "currency": "USD",
                      "customer": {"email": "ann@example.com"}, "status": "invoiced",
                      "erp_number": "SO-7", "lines": [{"sku": "A", "quantity": 3}]});
    let out = conn
        .write(vec![op(Kind::Order, &key, "update", back.clone())])
        .await;
    assert_eq!(ext_id(&out[0]), placed.id);
    let o = shop.order(&placed.id).unwrap();
    assert_eq!(
        (o.erp_number.as_deref(), o.erp_status.as_deref()),
        (Some("SO-7"), Some("invoiced"))
    );
    assert_eq!(o.lines[0].quantity, 3, "the order itself is unchanged");
    let mut other = back.clone();
    other["number"] = json!("9999");
    let out = conn
        .write(vec![op(Kind::Order, "web/9999", "create", other)])
        .await;
    assert!(permanent_with(&out[0], "no order `web/9999`"), "{out:?}");
    // Another customer's order under the same number (the ERP's record of an order the store
    // took before it restarted its numbering) is never noted on this one, nor cancels it.
    let mut someone_else = back;
    someone_else["customer"]["email"] = json!("bob@example.com");
    someone_else["erp_number"] = json!("SO-1");
    for o in ["update", "cancel"] {
        let out = conn
            .write(vec![op(Kind::Order, &key, o, someone_else.clone())])
            .await;
        assert!(
            permanent_with(&out[0], "collides") && permanent_with(&out[0], "bob@example.com"),
            "{o}: {out:?}"
        );
    }
    let o = shop.order(&placed.id).unwrap();
    assert_eq!(o.erp_number.as_deref(), Some("SO-7"));
    assert_ne!(o.status, ShopOrderStatus::Cancelled);
    shop.shutdown().await;
}

#[tokio::test]
async fn a_multi_address_order_ships_per_address_and_each_parcel_keeps_it() {
    let erp = ErpSim::start(ErpOptions::default()).await.unwrap();
    erp.seed(2, &["WH1"], 10).unwrap();
    let conn = connector("sandbox-erp", &erp.base_url());
    conn.write(vec![op(
        Kind::Customer,
        "ann@example.com",
        "upsert",
        json!({"email": "ann@example.com"}),
    )])
    .await;
    let home = json!({"line1": "1 Main St", "city": "Springfield", "country": "US"});
    let office = json!({"line1": "9 Office Park", "city": "Shelbyville", "country": "US"});
    let order = json!({"channel": "web", "number": "1001", "customer": {"email": "ann@example.com"},
                       "currency": "USD", "shipping_address": home,
                       "lines": [{"sku": "SKU-0001", "quantity": 1, "ship_to": home},
                                 {"sku": "SKU-0002", "quantity": 2, "ship_to": office}]});
    let so = ext_id(
        &conn
            .write(vec![op(Kind::Order, "web/1001", "create", order)])
            .await[0],
    );
    let to_home = erp
        .ship_with(&so, &[("SKU-0001", 1)], "UPS", "T-H")
        .unwrap();
    let to_office = erp
        .ship_with(&so, &[("SKU-0002", 2)], "DHL", "T-O")
        .unwrap();
    assert_eq!(to_home["address"], home);
    assert_eq!(to_office["address"], office, "the line's own address");

    let shop = ShopSim::start(ShopOptions::default()).await.unwrap();
    shop.set_inventory("SKU-0001", "L1", 5).unwrap();
    shop.set_inventory("SKU-0002", "L1", 5).unwrap();
    let placed = shop
        .place_order(
            "ann@example.com",
            "Ann",
            &[("SKU-0001", 1), ("SKU-0002", 2)],
        )
        .unwrap();
    let shop_conn = connector("sandbox-shop", &shop.base_url());
    let mut ops = Vec::new();
    for sh in [&to_home, &to_office] {
        let mut p = sh.clone();
        p["order"] = json!(placed.key);
        concord_core::validate(Kind::Shipment, &p).expect("a canonical shipment");
        let id = p["id"].as_str().unwrap().to_string();
        ops.push(op(Kind::Shipment, &id, "upsert", p));
    }
    for o in shop_conn.write(ops).await {
        ext_id(&o);
    }
    let addresses: Vec<_> = shop
        .fulfillments(&placed.id)
        .iter()
        .map(|f| f.address.as_ref().map(|a| a.city.clone()))
        .collect();
    assert_eq!(
        addresses,
        [
            Some("Springfield".to_string()),
            Some("Shelbyville".to_string())
        ]
    );
    erp.shutdown().await;
    shop.shutdown().await;
}

#[tokio::test]
async fn the_erp_connector_can_be_told_not_to_amend() {
    let erp = ErpSim::start(ErpOptions::default()).await.unwrap();
    let no_amend = concord_connectors::build(&spec(
        "sandbox-erp",
        &erp.base_url(),
        Some(SECRET),
        json!({"amend": false}),
    ))
    .unwrap();
    assert!(!no_amend.capabilities().kind(Kind::Order).write.amend);
    let out = no_amend
        .write(vec![op(Kind::Order, "web/1", "amend", json!({}))])
        .await;
    assert!(permanent_with(&out[0], "cannot `amend`"), "{out:?}");
    assert!(erp.write_log().is_empty(), "refused without a call");
    let bad = concord_connectors::build(&spec(
        "sandbox-erp",
        &erp.base_url(),
        None,
        json!({"amend": "no"}),
    ))
    .err()
    .expect("a bad amend option is refused");
    assert_eq!(bad.path, "options.amend");
    let shop = concord_connectors::build(&spec(
        "sandbox-shop",
        &erp.base_url(),
        None,
        json!({"amend": true}),
    ))
    .err()
    .expect("the storefront has no amend option");
    assert!(
        shop.message.contains("expected: location"),
        "{}",
        shop.message
    );
    erp.shutdown().await;
}

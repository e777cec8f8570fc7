//! Every control call of the emulators (crate docs, `# Control calls`) over real HTTP, as a
//! script would make it: its answer, its effect read back through the API, and its refusals
//! (422 naming the field, 404 for an unknown id). A real outage is a closed port: connections
//! are refused until the listener is bound again on the same port. Waits poll a condition with
//! a deadline.

use concord_sandbox::{ErpOptions, ErpSim, ShopOptions, ShopSim};
use concord_testkit::wait_until;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// One request on a fresh connection (no pooled connection outlives an outage): `(status,
/// body as JSON or `Null`)`.
async fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// POST a raw body (not necessarily JSON).
async fn post_raw(url: &str, body: &'static str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_default()
}

fn addr_of(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().unwrap()
}

async fn accepts(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok()
}

#[tokio::test]
async fn faults_counters_write_log_and_seq_over_http() {
    let shop = ShopSim::start(ShopOptions::default()).await.unwrap();
    let base = shop.base_url();
    let product = json!({"sku": "A", "name": "A"});

    let (st, set) = call(
        "POST",
        &format!("{base}/_control/faults"),
        Some(json!({"down": true})),
    )
    .await;
    assert_eq!((st, &set["down"]), (200, &json!(true)));
    let (_, got) = call("GET", &format!("{base}/_control/faults"), None).await;
    assert_eq!(got["down"], true);
    let (st, _) = call("GET", &format!("{base}/api/products/A"), None).await;
    assert_eq!(st, 503, "down for maintenance");
    let (st, bad) = call(
        "POST",
        &format!("{base}/_control/faults"),
        Some(json!({"latency": 5})),
    )
    .await;
    assert!(
        st == 422 && error_of(&bad).contains("latency"),
        "{st} {bad}"
    );
    let (st, bad) = call(
        "POST",
        &format!("{base}/_control/faults"),
        Some(json!({"latency_ms": "slow"})),
    )
    .await;
    assert!(
        st == 422 && error_of(&bad).starts_with("latency_ms: "),
        "{st} {bad}"
    );
    let (st, _) = post_raw(&format!("{base}/_control/faults"), "{").await;
    assert_eq!(st, 400, "a malformed body");
    let (st, cleared) = call("POST", &format!("{base}/_control/faults"), Some(json!({}))).await;
    assert_eq!((st, &cleared["down"]), (200, &json!(false)));

    let (_, seq0) = call("GET", &format!("{base}/_control/seq"), None).await;
    assert_eq!(seq0, json!({"last_seq": 0}));
    let (st, _) = call(
        "PUT",
        &format!("{base}/api/products/A"),
        Some(product.clone()),
    )
    .await;
    assert_eq!(st, 200);
    let (_, seq1) = call("GET", &format!("{base}/_control/seq"), None).await;
    assert_eq!(seq1, json!({"last_seq": 1}));
    // The same save again is no change: the seq stays.
    call(
        "PUT",
        &format!("{base}/api/products/A"),
        Some(product.clone()),
    )
    .await;
    let (_, seq2) = call("GET", &format!("{base}/_control/seq"), None).await;
    assert_eq!(seq2, seq1);

    let (st, log) = call("GET", &format!("{base}/_control/write-log"), None).await;
    assert_eq!(st, 200);
    let writes = log["writes"].as_array().unwrap();
    assert_eq!(writes.len(), 2, "both PUTs got past fault injection: {log}");
    assert_eq!(
        (&writes[0]["method"], &writes[0]["path"], &writes[0]["body"]),
        (&json!("PUT"), &json!("/api/products/A"), &product)
    );

    // Only the three /api requests count; control calls never do.
    let (_, counters) = call("GET", &format!("{base}/_control/counters"), None).await;
    assert_eq!(
        (&counters["requests"], &counters["responses_5xx"]),
        (&json!(3), &json!(1)),
        "{counters}"
    );
    assert_eq!(counters, serde_json::to_value(shop.counters()).unwrap());
    shop.shutdown().await;
}

#[tokio::test]
async fn an_outage_over_http_closes_the_port_then_binds_it_again() {
    let erp = ErpSim::start(ErpOptions::default()).await.unwrap();
    let base = erp.base_url();
    let addr = addr_of(&base);
    erp.seed(1, &["WH1"], 5).unwrap();

    for (body, field) in [
        (json!({"duration_ms": 0}), "duration_ms"),
        (json!({"duration_ms": 600_001}), "duration_ms"),
        (json!({}), "duration_ms"),
        (json!({"duration_ms": 10, "port": 1}), "port"),
        (json!({"duration_ms": -1}), "duration_ms: "),
    ] {
        let (st, e) = call(
            "POST",
            &format!("{base}/_control/outage"),
            Some(body.clone()),
        )
        .await;
        assert!(
            st == 422 && error_of(&e).contains(field),
            "{body}: {st} {e}"
        );
    }
    let (st, _) = post_raw(&format!("{base}/_control/outage"), "{").await;
    assert_eq!(st, 400);
    assert!(accepts(addr).await, "a refused outage changes nothing");

    let (st, ack) = call(
        "POST",
        &format!("{base}/_control/outage"),
        Some(json!({"duration_ms": 1500})),
    )
    .await;
    assert_eq!((st, ack), (202, json!({"down_for_ms": 1500})));
    wait_until(
        "the port refuses connections",
        Duration::from_secs(5),
        || async { !accepts(addr).await },
    )
    .await;
    wait_until(
        "the port accepts again",
        Duration::from_secs(15),
        || async { accepts(addr).await },
    )
    .await;
    assert_eq!(erp.base_url(), base, "the same port");
    let (st, stock) = call("GET", &format!("{base}/api/stock/SKU-0001/WH1"), None).await;
    assert_eq!(
        (st, &stock["on_hand"]),
        (200, &json!(5)),
        "every record kept"
    );

    // A `set_down` made during a timed outage stands: its end does not bind the port again.
    let (st, _) = call(
        "POST",
        &format!("{base}/_control/outage"),
        Some(json!({"duration_ms": 100})),
    )
    .await;
    assert_eq!(st, 202);
    erp.set_down(true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!accepts(addr).await, "still down after the outage's end");
    erp.set_down(false).await.unwrap();
    assert!(accepts(addr).await);
    erp.shutdown().await;
}

/// The ERP's control calls, each checked through the API; none is a write or a request.
#[tokio::test]
async fn erp_control_calls_over_http() {
    let erp = ErpSim::start(ErpOptions::default()).await.unwrap();
    let base = erp.base_url();
    let ctl = |path: &str| format!("{base}/_control{path}");

    // Seed, with its refusals.
    for (body, field) in [
        (
            json!({"skus": 0, "locations": ["WH1"], "quantity": 1}),
            "skus",
        ),
        (
            json!({"skus": 10_001, "locations": ["WH1"], "quantity": 1}),
            "skus",
        ),
        (
            json!({"skus": 1, "locations": [], "quantity": 1}),
            "locations",
        ),
        (
            json!({"skus": 1, "locations": ["WH\u{7}"], "quantity": 1}),
            "locations[0]",
        ),
        (
            json!({"skus": 1, "locations": ["WH1"], "quantity": -1}),
            "quantity",
        ),
        (
            json!({"skus": 1, "locations": ["WH1"], "quantity": 1_000_000_001i64}),
            "quantity",
        ),
        (
            json!({"skus": 1, "locations": ["WH1"], "quantity": 1, "price": 3}),
            "price",
        ),
    ] {
        let (st, e) = call("POST", &ctl("/seed"), Some(body.clone())).await;
        assert!(
            st == 422 && error_of(&e).contains(field),
            "{body}: {st} {e}"
        );
    }
    assert_eq!(erp.last_seq(), 0, "a refused seed changes nothing");
    let (st, seeded) = call(
        "POST",
        &ctl("/seed"),
        Some(json!({"skus": 2, "locations": ["WH1", "WH2"], "quantity": 5})),
    )
    .await;
    assert_eq!((st, seeded), (200, json!({"skus": 2})));
    assert_eq!(erp.stock("SKU-0002", "WH2").unwrap().on_hand, 5);

    // Goods receipts and count corrections.
    let adjust = |sku: &str, loc: &str| ctl(&format!("/stock/{sku}/{loc}/adjust"));
    let (st, row) = call(
        "POST",
        &adjust("SKU-0001", "WH1"),
        Some(json!({"delta": 3})),
    )
    .await;
    assert_eq!((st, &row["on_hand"]), (200, &json!(8)));
    let (st, row) = call(
        "POST",
        &adjust("SKU-0001", "WH2"),
        Some(json!({"delta": -100})),
    )
    .await;
    assert_eq!((st, &row["on_hand"]), (200, &json!(0)), "never below 0");
    let (st, row) = call("POST", &adjust("NEW", "WH9"), Some(json!({"delta": 2}))).await;
    assert_eq!(
        (st, &row["sku"], &row["on_hand"]),
        (200, &json!("NEW"), &json!(2))
    );
    for delta in [1_000_000_000i64, i64::MAX] {
        let (st, e) = call(
            "POST",
            &adjust("SKU-0001", "WH1"),
            Some(json!({"delta": delta})),
        )
        .await;
        assert!(
            st == 422 && error_of(&e).contains("delta"),
            "{delta}: {st} {e}"
        );
    }
    let (st, row) = call(
        "POST",
        &adjust("SKU-0001", "WH1"),
        Some(json!({"delta": i64::MIN})),
    )
    .await;
    assert_eq!((st, &row["on_hand"]), (200, &json!(0)));
    call(
        "POST",
        &adjust("SKU-0001", "WH1"),
        Some(json!({"delta": 8})),
    )
    .await;
    let (st, e) = call(
        "POST",
        &adjust("SKU-0001", "WH1"),
        Some(json!({"quantity": 1})),
    )
    .await;
    assert!(st == 422 && error_of(&e).contains("quantity"), "{st} {e}");
    let (st, e) = call(
        "POST",
        &adjust("SKU-0001", "WH1"),
        Some(json!({"delta": "3"})),
    )
    .await;
    assert!(st == 422 && error_of(&e).starts_with("delta: "), "{st} {e}");
    assert_eq!(erp.stock("SKU-0001", "WH1").unwrap().on_hand, 8);

    // A rep keys in an order: it commits stock at the default location.
    let (st, e) = call(
        "POST",
        &ctl("/rep-orders"),
        Some(json!({"email": "rep@example.com", "lines": [{"sku": "NOPE", "quantity": 1}]})),
    )
    .await;
    assert!(st == 422 && error_of(&e).contains("NOPE"), "{st} {e}");
    let (st, e) = call(
        "POST",
        &ctl("/rep-orders"),
        Some(json!({"email": "rep@example.com", "lines": [{"sku": "SKU-0001", "quantity": 0}]})),
    )
    .await;
    assert!(
        st == 422 && error_of(&e).contains("lines[0].quantity"),
        "{st} {e}"
    );
    let (st, e) = call(
        "POST",
        &ctl("/rep-orders"),
        Some(json!({"email": "rep@example.com", "lines": [{"sku": "SKU-0001", "quantity": "2"}]})),
    )
    .await;
    assert!(
        st == 422 && error_of(&e).starts_with("lines[0].quantity: "),
        "{st} {e}"
    );
    assert!(
        erp.customers().is_empty(),
        "a refused order takes no number and makes no customer"
    );
    let rep = |qty: i64| json!({"email": "rep@example.com", "lines": [{"sku": "SKU-0001", "quantity": qty}]});
    let (st, so1) = call("POST", &ctl("/rep-orders"), Some(rep(3))).await;
    assert_eq!(
        (st, &so1["reference"], &so1["status"]),
        (201, &json!("rep/1"), &json!("open")),
        "{so1}"
    );
    let so1 = so1["id"].as_str().unwrap().to_string();
    assert_eq!(erp.stock("SKU-0001", "WH1").unwrap().committed, 3);

    // The warehouse ships part, then the rest; then there is nothing left.
    let (st, sh) = call(
        "POST",
        &ctl(&format!("/sales-orders/{so1}/ship")),
        Some(
            json!({"lines": [{"sku": "SKU-0001", "quantity": 1}], "carrier": "DHL",
                    "tracking_number": "JD1"}),
        ),
    )
    .await;
    assert_eq!(
        (st, &sh["tracking_number"], &sh["lines"][0]["quantity"]),
        (201, &json!("JD1"), &json!(1)),
        "{sh}"
    );
    let (st, _) = call("POST", &ctl(&format!("/sales-orders/{so1}/ship")), None).await;
    assert_eq!(st, 201, "the rest");
    assert_eq!(erp.shipments().len(), 2);
    let (st, _) = call("POST", &ctl(&format!("/sales-orders/{so1}/ship")), None).await;
    assert_eq!(st, 409);
    let (st, _) = call("POST", &ctl("/sales-orders/SO-99/ship"), None).await;
    assert_eq!(st, 404);
    let (st, e) = call(
        "POST",
        &ctl(&format!("/sales-orders/{so1}/ship")),
        Some(json!({"lines": [{"sku": 1, "quantity": 1}]})),
    )
    .await;
    assert!(
        st == 422 && error_of(&e).starts_with("lines[0].sku: "),
        "{st} {e}"
    );

    // A cancellation releases the commitment; a shipped order cannot be cancelled.
    let (_, so2) = call("POST", &ctl("/rep-orders"), Some(rep(2))).await;
    let so2 = so2["id"].as_str().unwrap().to_string();
    assert_eq!(erp.stock("SKU-0001", "WH1").unwrap().committed, 2);
    let (st, cancelled) = call("POST", &ctl(&format!("/sales-orders/{so2}/cancel")), None).await;
    assert_eq!((st, &cancelled["status"]), (200, &json!("cancelled")));
    assert_eq!(erp.stock("SKU-0001", "WH1").unwrap().committed, 0);
    let (st, _) = call("POST", &ctl(&format!("/sales-orders/{so1}/cancel")), None).await;
    assert_eq!(st, 409);

    // The credit controller holds a customer: their orders are refused until lifted.
    let (_, cust) = call(
        "POST",
        &format!("{base}/api/customers"),
        Some(json!({"email": "late@payer.io"})),
    )
    .await;
    let order = json!({"channel": "web", "number": "7", "customer": {"email": "late@payer.io"},
                       "customer_id": cust["id"], "currency": "USD",
                       "lines": [{"sku": "SKU-0002", "quantity": 2, "unit_price_minor": 250}]});
    let (st, _) = call("PUT", &ctl("/credit-hold/late@payer.io"), None).await;
    assert_eq!(st, 204);
    let (st, e) = call(
        "POST",
        &format!("{base}/api/sales-orders"),
        Some(order.clone()),
    )
    .await;
    assert!(
        st == 422 && error_of(&e).contains("credit hold"),
        "{st} {e}"
    );
    let (st, _) = call("DELETE", &ctl("/credit-hold/late@payer.io"), None).await;
    assert_eq!(st, 204);
    let (st, so3) = call("POST", &format!("{base}/api/sales-orders"), Some(order)).await;
    assert_eq!(st, 201, "{so3}");
    let so3 = so3["id"].as_str().unwrap().to_string();

    // Accounting invoices that order (idempotent) and books a bank transfer.
    let (st, inv) = call("POST", &ctl(&format!("/sales-orders/{so3}/invoice")), None).await;
    assert_eq!(st, 200, "{inv}");
    let (_, again) = call("POST", &ctl(&format!("/sales-orders/{so3}/invoice")), None).await;
    assert_eq!(again["number"], inv["number"]);
    let number = inv["number"].as_str().unwrap().to_string();
    let (st, pay) = call(
        "POST",
        &ctl(&format!("/invoices/{number}/pay")),
        Some(json!({"method": "bank_transfer"})),
    )
    .await;
    assert_eq!(
        (st, &pay["amount_minor"], &pay["invoice"]),
        (200, &json!(500), &json!(number)),
        "{pay}"
    );
    assert_eq!(erp.invoices(Some(&so3))[0].status, "paid");
    let (st, _) = call("POST", &ctl(&format!("/invoices/{number}/pay")), None).await;
    assert_eq!(st, 409, "nothing left to pay");
    let (st, e) = call(
        "POST",
        &ctl(&format!("/invoices/{number}/pay")),
        Some(json!({"amount": 1})),
    )
    .await;
    assert!(st == 422 && error_of(&e).contains("amount"), "{st} {e}");

    // A restocked refund opens a return; receiving it puts the units back on hand.
    let refund = json!({"id": "re_1", "order": "web/7", "currency": "USD", "restock": true, "amount_minor": 0,
                        "lines": [{"sku": "SKU-0002", "quantity": 1}]});
    let (st, note) = call("POST", &format!("{base}/api/credit-notes"), Some(refund)).await;
    assert_eq!(st, 201, "{note}");
    let rma = note["return"].as_str().unwrap().to_string();
    let before = erp.stock("SKU-0002", "WH1").unwrap().on_hand;
    let (st, received) = call("POST", &ctl(&format!("/returns/{rma}/receive")), None).await;
    assert_eq!(
        (st, &received["status"]),
        (200, &json!("received")),
        "{received}"
    );
    assert_eq!(erp.stock("SKU-0002", "WH1").unwrap().on_hand, before + 1);
    let (st, _) = call("POST", &ctl("/returns/RMA-99/receive"), None).await;
    assert_eq!(st, 404);

    // Control calls are neither requests nor writes: only the API calls above count.
    let c = erp.counters();
    assert_eq!(
        (c.requests, c.writes_of("stock"), c.writes_of("product")),
        (4, 0, 0),
        "{c:?}"
    );
    erp.shutdown().await;
}

/// The storefront's control calls: the merchant edits, the customer pays, is refunded and
/// cancels.
#[tokio::test]
async fn shop_control_calls_over_http() {
    let shop = ShopSim::start(ShopOptions {
        name: "web".into(),
        ..ShopOptions::default()
    })
    .await
    .unwrap();
    let base = shop.base_url();
    let ctl = |path: &str| format!("{base}/_control{path}");
    shop.upsert_product(json!({"sku": "A", "name": "A", "attributes": {"price_minor": 500}}))
        .unwrap();
    shop.set_inventory("A", "L1", 10).unwrap();
    let (st, order) = call(
        "POST",
        &format!("{base}/api/checkout"),
        Some(json!({"email": "ann@example.com", "lines": [{"sku": "A", "quantity": 2}]})),
    )
    .await;
    assert_eq!(st, 201, "{order}");
    let id = order["id"].as_str().unwrap().to_string();

    let (st, edited) = call(
        "POST",
        &ctl(&format!("/orders/{id}/edit")),
        Some(json!({"lines": [{"sku": "A", "quantity": 3}]})),
    )
    .await;
    assert_eq!(
        (st, &edited["lines"][0]["quantity"]),
        (200, &json!(3)),
        "{edited}"
    );
    let (st, e) = call(
        "POST",
        &ctl(&format!("/orders/{id}/edit")),
        Some(json!({"lines": [{"sku": "A", "quantity": 3}], "note": "x"})),
    )
    .await;
    assert!(st == 422 && error_of(&e).contains("note"), "{st} {e}");

    let (st, pay) = call("POST", &ctl(&format!("/orders/{id}/capture")), None).await;
    assert_eq!(
        (st, &pay["id"], &pay["amount_minor"], &pay["status"]),
        (201, &json!("pay_1"), &json!(1500), &json!("captured")),
        "{pay}"
    );
    let (st, re) = call(
        "POST",
        &ctl(&format!("/orders/{id}/refund")),
        Some(json!({"amount_minor": 400, "reason": "late"})),
    )
    .await;
    assert_eq!(
        (st, &re["id"], &re["amount_minor"]),
        (201, &json!("re_1"), &json!(400)),
        "{re}"
    );
    let (st, e) = call(
        "POST",
        &ctl(&format!("/orders/{id}/refund")),
        Some(json!({"amount_minor": 1_101})),
    )
    .await;
    assert!(
        st == 422 && error_of(&e).contains("amount_minor"),
        "{st} {e}"
    );

    let (st, cancelled) = call("POST", &ctl(&format!("/orders/{id}/cancel")), None).await;
    assert_eq!(
        (st, &cancelled["status"]),
        (200, &json!("cancelled")),
        "{cancelled}"
    );
    let (st, _) = call(
        "POST",
        &ctl(&format!("/orders/{id}/edit")),
        Some(json!({"lines": [{"sku": "A", "quantity": 1}]})),
    )
    .await;
    assert_eq!(st, 409, "a cancelled order is not edited");
    let (st, _) = call("POST", &ctl("/orders/ord_99/cancel"), None).await;
    assert_eq!(st, 404);
    assert_eq!(
        shop.counters().writes_of("order"),
        0,
        "control calls are not writes"
    );
    shop.shutdown().await;
}

/// The drift levers (issue 16): an ERP figure changed with no change event — in the snapshot and
/// the feed (its seq advances), 422 naming `on_hand` outside the domain — and a product deleted
/// in the store's admin (204, then gone: 404, and a second delete 404).
#[tokio::test]
async fn drift_control_calls_over_http() {
    let erp = ErpSim::start(ErpOptions::default()).await.unwrap();
    let base = erp.base_url();
    let url = format!("{base}/_control/stock/SKU-1/WH1/unannounced");
    let before = erp.last_seq();
    let (st, row) = call("POST", &url, Some(json!({"on_hand": 25}))).await;
    assert_eq!((st, &row["on_hand"]), (200, &json!(25)), "{row}");
    assert_eq!(erp.stock("SKU-1", "WH1").unwrap().on_hand, 25);
    assert!(erp.last_seq() > before, "in the changes feed");
    let (st, listed) = call("GET", &format!("{base}/api/records?kind=stock"), None).await;
    assert_eq!(st, 200);
    assert_eq!(listed["records"][0]["record"]["on_hand"], 25, "{listed}");
    for bad in [json!({"on_hand": -1}), json!({"on_hand": 1_000_000_001i64})] {
        let (st, e) = call("POST", &url, Some(bad.clone())).await;
        assert!(
            st == 422 && error_of(&e).contains("on_hand"),
            "{bad}: {st} {e}"
        );
    }
    assert_eq!(erp.stock("SKU-1", "WH1").unwrap().on_hand, 25);
    let (st, _) = call("POST", &url, Some(json!({"delta": 1}))).await;
    assert_eq!(st, 422);

    let shop = ShopSim::start(ShopOptions::default()).await.unwrap();
    let base = shop.base_url();
    shop.upsert_product(json!({"sku": "A", "name": "A"}))
        .unwrap();
    let (st, _) = call("DELETE", &format!("{base}/_control/products/A"), None).await;
    assert_eq!(st, 204);
    let (st, _) = call("GET", &format!("{base}/api/products/A"), None).await;
    assert_eq!(st, 404);
    let (st, e) = call("DELETE", &format!("{base}/_control/products/A"), None).await;
    assert_eq!(st, 404, "{e}");
    assert_eq!(
        shop.counters().writes.values().sum::<u64>(),
        0,
        "not a write"
    );
}

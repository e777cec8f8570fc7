//! The `bigcommerce` preset of the `http` connector against a contract server that follows
//! BigCommerce's published API reference (github.com/bigcommerce/docs, the source of
//! developer.bigcommerce.com; each handler cites the file it follows). It checks what Concord
//! sends (method, path, X-Auth-Token, query parameters, body shape) and answers as documented,
//! with the rate-limit headers on every answer and a 429 once the window's quota is spent. A
//! request sent after a 429 but before the window's reset is a violation of the published budget;
//! the tests assert there are none.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use concord_connectors::http::HttpConnector;
use concord_core::Kind;
use concord_engine::connector::{
    Connector, DeliveryError, EndpointSpec, ReadRequest, WriteOp, WriteOutcome,
};
use concord_testkit::wait_until;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "bc-contract-token";
const HOOK_SECRET: &str = "bc-hook-secret";

// ---- the contract server --------------------------------------------------------------------

struct Store {
    breaches: Vec<String>,
    requests: usize,
    // docs/api-docs/getting-started/api-rate-limits.mdx: a quota per window, refreshed after
    // the reset interval; X-Rate-Limit-Time-Window-Ms, -Time-Reset-Ms, -Requests-Quota,
    // -Requests-Left on every answer; 429 once the quota is spent.
    quota: u64,
    window: Duration,
    window_start: Instant,
    used: u64,
    limited: usize,
    /// Requests that arrived after a 429 and before the window's reset.
    violations: usize,
    told_to_wait_until: Option<Instant>,
    /// (location id, sku) → quantity.
    levels: BTreeMap<(i64, String), i64>,
    adjustments: usize,
    orders: Vec<Value>,
    /// order id → products (orderProducts).
    products: BTreeMap<i64, Vec<Value>>,
    shipments: BTreeMap<i64, Vec<Value>>,
    slow_next_shipment: Option<Duration>,
}

type Shared = Arc<Mutex<Store>>;

impl Store {
    fn roll(&mut self) {
        if self.window_start.elapsed() >= self.window {
            self.window_start = Instant::now();
            self.used = 0;
        }
    }

    fn reset_ms(&self) -> u64 {
        // Rounded up: a client that waits this long finds the window reset.
        let left = self.window.saturating_sub(self.window_start.elapsed());
        left.as_micros().div_ceil(1000) as u64
    }

    fn headers(&self) -> [(&'static str, String); 4] {
        [
            (
                "x-rate-limit-time-window-ms",
                self.window.as_millis().to_string(),
            ),
            ("x-rate-limit-time-reset-ms", self.reset_ms().to_string()),
            ("x-rate-limit-requests-quota", self.quota.to_string()),
            (
                "x-rate-limit-requests-left",
                self.quota.saturating_sub(self.used).to_string(),
            ),
        ]
    }
}

fn answer(f: &Store, status: u16, body: Option<Value>) -> Response {
    let mut r = match body {
        Some(b) => (StatusCode::from_u16(status).unwrap(), b.to_string()).into_response(),
        None => StatusCode::from_u16(status).unwrap().into_response(),
    };
    for (n, v) in f.headers() {
        r.headers_mut().insert(n, v.parse().unwrap());
    }
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// Authentication and the quota, before any route: `None` lets the request through.
fn gate(f: &mut Store, headers: &HeaderMap, what: &str) -> Option<Response> {
    f.requests += 1;
    // docs/start/authentication/api-accounts.mdx: the access token goes in X-Auth-Token.
    if headers.get("x-auth-token").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        f.breaches.push(format!("{what}: no or wrong X-Auth-Token"));
        return Some(answer(
            f,
            401,
            Some(json!({"status": 401, "title": "Unauthorized"})),
        ));
    }
    if headers.get("accept").and_then(|v| v.to_str().ok()) != Some("application/json") {
        f.breaches
            .push(format!("{what}: Accept is not application/json"));
    }
    f.roll();
    if let Some(t) = f.told_to_wait_until {
        if Instant::now() < t {
            f.violations += 1;
        } else {
            f.told_to_wait_until = None;
        }
    }
    if f.used >= f.quota {
        f.limited += 1;
        f.told_to_wait_until = Some(f.window_start + f.window);
        return Some(answer(
            f,
            429,
            Some(json!({"status": 429, "title": "Too many requests"})),
        ));
    }
    f.used += 1;
    None
}

fn rfc2822(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

fn parse_date(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .or_else(|_| chrono::DateTime::parse_from_rfc2822(s))
        .ok()
        .map(|d| d.timestamp())
}

/// The order as GET /v2/orders answers with include=consignments.line_items and
/// consignment_structure=object (reference/orders.v2.oas2.yml: order_Resp, consignments with
/// `shipping[].line_items` holding orderProducts).
fn order_with_consignments(f: &Store, o: &Value) -> Value {
    let id = o["id"].as_i64().unwrap_or(0);
    let mut o = o.clone();
    o["consignments"] = json!({"pickups": [], "downloads": [], "email": {"gift_certificates": []},
        "shipping": [{"id": 1, "first_name": "Ana", "last_name": "Lima", "street_1": "12 Elm St", "street_2": "",
            "city": "Austin", "state": "Texas", "zip": "78701", "country": "United States", "country_iso2": "US",
            "line_items": f.products.get(&id).cloned().unwrap_or_default()}]});
    o
}

fn check_includes(f: &mut Store, q: &BTreeMap<String, String>, what: &str) {
    if q.get("include").map(String::as_str) != Some("consignments.line_items")
        || q.get("consignment_structure").map(String::as_str) != Some("object")
    {
        f.breaches.push(format!(
            "{what}: not include=consignments.line_items&consignment_structure=object: {q:?}"
        ));
    }
}

// GET /v2/orders — reference/orders.v2.oas2.yml `/orders` get: min_date_modified (RFC-2822 or
// ISO-8601), sort=date_modified:asc, page (from 1), limit (default 50); 204 when none.
async fn list_orders(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = gate(&mut f, &headers, "GET /v2/orders") {
        return r;
    }
    check_includes(&mut f, &q, "GET /v2/orders");
    if q.get("sort").map(String::as_str) != Some("date_modified:asc") {
        f.breaches
            .push(format!("orders not sorted by date_modified:asc: {q:?}"));
    }
    let since = match q.get("min_date_modified") {
        None => None,
        Some(v) => match parse_date(v) {
            Some(t) => Some(t),
            None => {
                f.breaches.push(format!("min_date_modified `{v}`"));
                return answer(&f, 400, Some(json!({"status": 400, "title": "bad date"})));
            }
        },
    };
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let limit: usize = q.get("limit").and_then(|p| p.parse().ok()).unwrap_or(50);
    if page == 0 || limit == 0 || limit > 250 {
        f.breaches.push(format!("page {page} limit {limit}"));
    }
    let mut all: Vec<Value> = f
        .orders
        .iter()
        .filter(|o| {
            since.is_none_or(|t| {
                parse_date(o["date_modified"].as_str().unwrap_or("")).unwrap_or(0) >= t
            })
        })
        .cloned()
        .collect();
    all.sort_by_key(|o| {
        (
            parse_date(o["date_modified"].as_str().unwrap_or("")),
            o["id"].as_i64(),
        )
    });
    let start = (page.saturating_sub(1)) * limit;
    let slice: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|o| order_with_consignments(&f, o))
        .collect();
    if slice.is_empty() {
        return answer(&f, 204, None);
    }
    answer(&f, 200, Some(Value::Array(slice)))
}

// GET /v2/orders/{order_id} — reference/orders.v2.oas2.yml `/orders/{order_id}` get (404 when
// there is no such order).
async fn one_order(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = gate(&mut f, &headers, "GET /v2/orders/{id}") {
        return r;
    }
    check_includes(&mut f, &q, "GET /v2/orders/{id}");
    match f.orders.iter().find(|o| o["id"] == id).cloned() {
        Some(o) => {
            let body = order_with_consignments(&f, &o);
            answer(&f, 200, Some(body))
        }
        None => answer(
            &f,
            404,
            Some(json!([{"status": 404, "message": "The requested resource was not found."}])),
        ),
    }
}

// GET /v2/orders/{order_id}/products — orderProducts (id, order_address_id, sku, quantity,
// quantity_shipped, …).
async fn order_products(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = gate(&mut f, &headers, "GET /v2/orders/{id}/products") {
        return r;
    }
    let p = f.products.get(&id).cloned().unwrap_or_default();
    answer(&f, 200, Some(Value::Array(p)))
}

// GET / POST /v2/orders/{order_id}/shipments — `/orders/{order_id}/shipments`: get answers 204
// when there are none; post requires order_address_id and items [{order_product_id,
// quantity}], answers 201 with the shipment.
async fn shipments(
    State(s): State<Shared>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let slow;
    let r = {
        let mut f = s.lock().unwrap();
        if let Some(r) = gate(&mut f, &headers, "/v2/orders/{id}/shipments") {
            return r;
        }
        if method == Method::GET {
            let list = f.shipments.get(&id).cloned().unwrap_or_default();
            return if list.is_empty() {
                answer(&f, 204, None)
            } else {
                answer(&f, 200, Some(Value::Array(list)))
            };
        }
        let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
            f.breaches
                .push("shipment POST without content-type application/json".into());
        }
        let products = f.products.get(&id).cloned().unwrap_or_default();
        let address_ok = products
            .iter()
            .any(|p| p["order_address_id"] == b["order_address_id"]);
        let items = b["items"].as_array().cloned().unwrap_or_default();
        if !address_ok || items.is_empty() {
            f.breaches.push(format!("shipment body {b}"));
            return answer(
                &f,
                400,
                Some(
                    json!([{"status": 400, "message": "The field 'order_address_id' is invalid."}]),
                ),
            );
        }
        for it in &items {
            let pid = it["order_product_id"].clone();
            let q = it["quantity"].as_i64().unwrap_or(0);
            let list = f.products.get_mut(&id).unwrap();
            match list.iter_mut().find(|p| p["id"] == pid) {
                Some(p)
                    if q > 0
                        && q <= p["quantity"].as_i64().unwrap_or(0)
                            - p["quantity_shipped"].as_i64().unwrap_or(0) =>
                {
                    p["quantity_shipped"] = json!(p["quantity_shipped"].as_i64().unwrap_or(0) + q);
                }
                _ => f.breaches.push(format!("shipment item {it}")),
            }
        }
        let list = f.shipments.entry(id).or_default();
        let sid = list.len() as i64 + 1;
        let shipment = json!({"id": sid, "order_id": id, "order_address_id": b["order_address_id"],
            "tracking_number": b["tracking_number"], "tracking_carrier": b["tracking_carrier"], "items": items});
        list.push(shipment.clone());
        slow = f.slow_next_shipment.take();
        answer(&f, 201, Some(shipment))
    };
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    r
}

// PUT /v3/inventory/adjustments/absolute — reference/inventory.v3.yml: {reason, items:
// [{location_id, sku | variant_id | product_id, quantity}]}, at most 2000 items; 200 with a
// transaction id; 422 for an item it cannot set.
async fn absolute(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = gate(&mut f, &headers, "PUT /v3/inventory/adjustments/absolute") {
        return r;
    }
    let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let items = b["items"].as_array().cloned().unwrap_or_default();
    if b["reason"].as_str().is_none() || items.is_empty() || items.len() > 2000 {
        f.breaches.push(format!("adjustment body {b}"));
    }
    for it in &items {
        let (Some(loc), Some(sku), Some(q)) = (
            it["location_id"].as_i64(),
            it["sku"].as_str(),
            it["quantity"].as_i64(),
        ) else {
            f.breaches.push(format!("adjustment item {it}"));
            continue;
        };
        if !f.levels.contains_key(&(loc, sku.to_string())) {
            return answer(
                &f,
                422,
                Some(
                    json!({"status": 422, "title": format!("[Item with sku {sku} does not exist]"),
                "type": "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes", "errors": {}}),
                ),
            );
        }
        f.levels.insert((loc, sku.to_string()), q);
    }
    f.adjustments += 1;
    let tx = format!("tx-{}", f.adjustments);
    answer(&f, 200, Some(json!({"transaction_id": tx})))
}

struct Contract {
    url: String,
    store: Shared,
}

impl Contract {
    async fn start(quota: u64, window: Duration) -> Contract {
        let store: Shared = Arc::new(Mutex::new(Store {
            breaches: Vec::new(),
            requests: 0,
            quota,
            window,
            window_start: Instant::now(),
            used: 0,
            limited: 0,
            violations: 0,
            told_to_wait_until: None,
            levels: BTreeMap::new(),
            adjustments: 0,
            orders: Vec::new(),
            products: BTreeMap::new(),
            shipments: BTreeMap::new(),
            slow_next_shipment: None,
        }));
        let app = Router::new()
            .route("/v2/orders", get(list_orders))
            .route("/v2/orders/{id}", get(one_order))
            .route("/v2/orders/{id}/products", get(order_products))
            .route("/v2/orders/{id}/shipments", get(shipments).post(shipments))
            .route("/v3/inventory/adjustments/absolute", put(absolute))
            .with_state(store.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Contract { url, store }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.store.lock().unwrap())
    }

    fn connector(&self, timeout: Duration) -> HttpConnector {
        self.connector_with(timeout, json!({}))
    }

    /// With more options of the endpoint's own, merged over the preset's.
    fn connector_with(&self, timeout: Duration, extra: Value) -> HttpConnector {
        let mut options = json!({"preset": "bigcommerce", "auth": {"value": TOKEN}, "vars": {"locations": {"WH": 1, "WH2": 2}}});
        concord_connectors::http::preset::merge(&mut options, extra);
        let mut spec = EndpointSpec::new("bigcommerce", "http", &self.url, options);
        spec.webhook_secret = Some(HOOK_SECRET.into());
        spec.timeout = timeout;
        HttpConnector::new(&spec).unwrap_or_else(|e| panic!("{}: {}", e.path, e.message))
    }

    fn add_order(&self, id: i64, modified: i64) {
        self.with(|f| {
            f.orders.push(json!({"id": id, "status_id": 11, "status": "Awaiting Fulfillment", "currency_code": "USD",
                "date_created": rfc2822(1_780_000_000), "date_modified": rfc2822(modified),
                "total_inc_tax": "54.1300", "billing_address": {"first_name": "Ana", "last_name": "Lima",
                "street_1": "12 Elm St", "street_2": "", "city": "Austin", "state": "Texas", "zip": "78701",
                "country_iso2": "US", "email": "Ana@Example.com"}}));
            f.products.insert(id, vec![json!({"id": id * 10, "order_id": id, "order_address_id": id * 100,
                "sku": "SKU-1", "quantity": 2, "quantity_shipped": 0, "price_ex_tax": "24.5000"})]);
        });
    }
}

fn op(item_id: i64, kind: Kind, key: &str, payload: Value) -> WriteOp {
    WriteOp {
        item_id,
        kind,
        key: key.into(),
        op: "upsert".into(),
        payload,
        external_id: None,
        refs: BTreeMap::new(),
    }
}

/// Deliver like the engine's dispatcher: retry after the wait a rate-limited or transient
/// answer names, until done or the deadline.
async fn deliver(c: &HttpConnector, ops: Vec<WriteOp>) -> (Vec<WriteOutcome>, Vec<DeliveryError>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failures = Vec::new();
    loop {
        let out = c.write(ops.clone()).await;
        let retry = out.iter().find_map(|o| match o {
            WriteOutcome::Failed(e) if !matches!(e, DeliveryError::Permanent { .. }) => {
                Some(e.clone())
            }
            _ => None,
        });
        let Some(e) = retry else {
            return (out, failures);
        };
        assert!(Instant::now() < deadline, "not delivered: {e:?}");
        let wait = match &e {
            DeliveryError::RateLimited { retry_after, .. }
            | DeliveryError::Transient { retry_after, .. } => {
                retry_after.unwrap_or(Duration::from_millis(20))
            }
            _ => Duration::from_millis(20),
        };
        failures.push(e);
        tokio::time::sleep(wait).await;
    }
}

// ---- tests ----------------------------------------------------------------------------------

#[tokio::test]
async fn webhooks_need_the_subscription_header_and_fetch_the_order() {
    let store = Contract::start(100, Duration::from_secs(30)).await;
    let c = store.connector(Duration::from_secs(5));
    store.add_order(250, 1_780_000_100);
    // docs/integrations/webhooks/overview.mdx: the callback's body (scope, store_id, data {type,
    // id}, hash, created_at, producer); the `headers` given at subscription come with it.
    let body = json!({"scope": "store/order/created", "store_id": "1025646", "data": {"type": "order", "id": 250},
        "hash": "3f9ea420af83450d7ef9f78b08c8af25b2213637", "created_at": 1561479335, "producer": "stores/abc123"})
    .to_string();
    let mut h = http::HeaderMap::new();
    h.insert("x-concord-webhook-secret", HOOK_SECRET.parse().unwrap());
    let got = c.parse_webhook(&h, body.as_bytes()).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].external_id, "250");
    assert_eq!(got[0].version.as_deref(), Some("2026-05-28T20:28:20Z"));
    concord_core::model::validate(Kind::Order, &got[0].record)
        .unwrap_or_else(|e| panic!("{e:?}: {}", got[0].record));
    let order: concord_core::model::Order = serde_json::from_value(got[0].record.clone()).unwrap();
    assert_eq!(order.customer.email, "ana@example.com");
    assert_eq!(order.lines.len(), 1);
    assert_eq!(order.lines[0].unit_price_minor, 2450);
    assert_eq!(order.total_minor, Some(5413));
    assert_eq!(order.placed_at.as_deref(), Some("2026-05-28T20:26:40Z"));
    // Without the header, or with another value: refused before anything is fetched.
    let before = store.with(|f| f.requests);
    assert!(c
        .parse_webhook(&http::HeaderMap::new(), body.as_bytes())
        .await
        .is_err());
    let mut bad = http::HeaderMap::new();
    bad.insert("x-concord-webhook-secret", "bc-hook-secre".parse().unwrap());
    assert!(c.parse_webhook(&bad, body.as_bytes()).await.is_err());
    assert_eq!(store.with(|f| f.requests), before);
    // An order deleted since: nothing, and no error (the callback is answered 200).
    let gone = body.replace("\"id\":250", "\"id\":999");
    assert!(c
        .parse_webhook(&h, gone.as_bytes())
        .await
        .unwrap()
        .is_empty());
    // Another scope is not an order.
    let other = body.replace("store/order/created", "store/product/updated");
    assert!(c
        .parse_webhook(&h, other.as_bytes())
        .await
        .unwrap()
        .is_empty());
    store.with(|f| assert!(f.breaches.is_empty(), "{:?}", f.breaches));
}

#[tokio::test]
async fn a_day_stock_out_orders_in_shipments_back_within_the_quota() {
    // A small quota so that the day crosses windows: 12 requests per 600 ms window.
    let store = Contract::start(12, Duration::from_millis(600)).await;
    let c = store.connector(Duration::from_millis(700));
    store.with(|f| {
        for n in 1..=30 {
            f.levels.insert((1, format!("SKU-{n}")), 0);
            f.levels.insert((2, format!("SKU-{n}")), 0);
        }
    });

    // Morning: 30 SKUs × 2 warehouses in one batch: one request (absolute adjustments take up
    // to 2000 items); a location BigCommerce does not know is left out.
    let ops: Vec<WriteOp> = (1..=30)
        .flat_map(|n| {
            [("WH", 1), ("WH2", 2), ("DROP", 3)].map(|(loc, i)| {
                op(n * 10 + i, Kind::Stock, &format!("SKU-{n}@{loc}"),
                   json!({"sku": format!("SKU-{n}"), "location": loc, "on_hand": n + i, "committed": 1}))
            })
        })
        .collect();
    let before = store.with(|f| f.requests);
    let (out, _) = deliver(&c, ops).await;
    assert!(
        out.iter().all(|o| matches!(o, WriteOutcome::Done { .. })),
        "{out:?}"
    );
    assert_eq!(
        store.with(|f| f.requests) - before,
        1,
        "one request for the whole batch"
    );
    assert_eq!(store.with(|f| f.levels[&(1, "SKU-7".to_string())]), 7);
    assert_eq!(store.with(|f| f.levels[&(2, "SKU-7".to_string())]), 8);

    // Then one by one, 40 changes: more than three windows' quota. The preset spreads them
    // over the windows (Requests-Left / Time-Reset-Ms) and waits out any 429.
    for n in 1..=40i64 {
        let sku = format!("SKU-{}", n % 30 + 1);
        let (out, _) = deliver(
            &c,
            vec![op(
                1000 + n,
                Kind::Stock,
                &format!("{sku}@WH"),
                json!({"sku": sku, "location": "WH", "available": n}),
            )],
        )
        .await;
        assert!(matches!(out[0], WriteOutcome::Done { .. }), "{out:?}");
    }
    // An unknown SKU: BigCommerce's 422, a permanent failure (dead letter), not retried.
    let (out, _) = deliver(
        &c,
        vec![op(
            2000,
            Kind::Stock,
            "NOPE@WH",
            json!({"sku": "NOPE", "location": "WH", "available": 1}),
        )],
    )
    .await;
    assert!(
        matches!(&out[0], WriteOutcome::Failed(DeliveryError::Permanent { reason }) if reason.contains("422")),
        "{out:?}"
    );

    // Noon: 23 orders, polled by date_modified in pages of 10 (the last page short; a page
    // past the end is 204).
    for id in 100..123 {
        store.add_order(id, 1_780_000_000 + (id - 100) / 3);
    }
    let mut cursor: Option<String> = None;
    let mut seen = BTreeMap::new();
    for _ in 0..40 {
        let page = c
            .read_changes(ReadRequest {
                kind: Kind::Order,
                cursor: cursor.as_deref(),
                limit: 10,
                overlap: Duration::ZERO,
            })
            .await;
        let page = match page {
            Ok(p) => p,
            Err(DeliveryError::RateLimited { retry_after, .. }) => {
                tokio::time::sleep(retry_after.unwrap_or(Duration::from_millis(50))).await;
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        for r in page.records {
            concord_core::model::validate(Kind::Order, &r.record)
                .unwrap_or_else(|e| panic!("{e:?}: {}", r.record));
            seen.insert(r.external_id, r.record);
        }
        cursor = page.cursor.or(cursor);
        if !page.more {
            break;
        }
    }
    assert_eq!(seen.len(), 23, "{:?}", seen.keys());

    // Afternoon: shipments back. The second's answer is lost (the client times out after
    // BigCommerce made it): the retry finds it by its tracking number and makes no second one.
    let mut refs = BTreeMap::new();
    refs.insert("order:bigcommerce/101".to_string(), "101".to_string());
    refs.insert("order:bigcommerce/102".to_string(), "102".to_string());
    let ship = |item: i64, order: &str, tracking: &str| WriteOp {
        refs: refs.clone(),
        ..op(
            item,
            Kind::Shipment,
            &format!("bigcommerce/{order}:S1"),
            json!({"id": "S1", "order": format!("bigcommerce/{order}"),
            "status": "shipped", "carrier": "UPS", "tracking_number": tracking, "tracking_url": "https://ups.example/t",
            "lines": [{"sku": "SKU-1", "quantity": 2}]}),
        )
    };
    let (out, _) = deliver(&c, vec![ship(3000, "101", "1Z-101")]).await;
    assert!(
        matches!(&out[0], WriteOutcome::Done { external_id: Some(id), .. } if id == "1"),
        "{out:?}"
    );
    store.with(|f| f.slow_next_shipment = Some(Duration::from_millis(1200)));
    let (out, failures) = deliver(&c, vec![ship(3001, "102", "1Z-102")]).await;
    assert!(matches!(&out[0], WriteOutcome::Done { .. }), "{out:?}");
    assert!(
        failures.iter().any(|e| e.to_string().contains("timed out")),
        "{failures:?}"
    );
    store.with(|f| {
        assert_eq!(f.shipments[&101].len(), 1);
        assert_eq!(f.shipments[&102].len(), 1, "found again, not made twice");
        assert_eq!(f.shipments[&101][0]["tracking_number"], "1Z-101");
        assert_eq!(
            f.shipments[&101][0]["items"],
            json!([{"order_product_id": 1010, "quantity": 2}])
        );
    });

    // Evening: the store's other apps spend the shared quota; the next answer is a 429 and the
    // preset waits for the window's reset (X-Rate-Limit-Time-Reset-Ms) before sending again.
    store.with(|f| {
        f.roll();
        f.used = f.quota;
    });
    let (out, failures) = deliver(
        &c,
        vec![op(
            4000,
            Kind::Stock,
            "SKU-2@WH",
            json!({"sku": "SKU-2", "location": "WH", "available": 99}),
        )],
    )
    .await;
    assert!(matches!(out[0], WriteOutcome::Done { .. }));
    assert!(
        failures.iter().any(|e| matches!(
            e,
            DeliveryError::RateLimited {
                retry_after: Some(_),
                ..
            }
        )),
        "{failures:?}"
    );
    assert_eq!(store.with(|f| f.levels[&(1, "SKU-2".to_string())]), 99);

    store.with(|f| {
        assert_eq!(
            f.limited, 1,
            "only the provoked 429: the headers kept every other request within the quota"
        );
        assert_eq!(
            f.violations, 0,
            "requests sent after a 429 before the reset"
        );
        assert!(f.breaches.is_empty(), "contract breaches: {:?}", f.breaches);
    });
}

#[tokio::test]
async fn without_the_headers_the_same_changes_run_into_429s() {
    // The endpoint's own options replace the preset's: no Requests-Left gate, no pacing. The
    // same run then hits the quota (and only Time-Reset-Ms on the 429 gets it through).
    let store = Contract::start(12, Duration::from_millis(600)).await;
    let c = store.connector_with(
        Duration::from_secs(5),
        json!({"rate_limit": {"remaining_header": "x-not-sent", "pace": "null"}}),
    );
    store.with(|f| {
        for n in 1..=30 {
            f.levels.insert((1, format!("SKU-{n}")), 0);
        }
    });
    for n in 1..=40i64 {
        let sku = format!("SKU-{}", n % 30 + 1);
        let (out, _) = deliver(
            &c,
            vec![op(
                n,
                Kind::Stock,
                &format!("{sku}@WH"),
                json!({"sku": sku, "location": "WH", "available": n}),
            )],
        )
        .await;
        assert!(matches!(out[0], WriteOutcome::Done { .. }), "{out:?}");
    }
    assert!(
        store.with(|f| f.limited) > 0,
        "40 requests against 12 per window"
    );
}

/// The real engine over a real SQLite store: a warehouse system posts four rounds of stock
/// changes for 40 SKUs at two warehouses (signed webhooks); the engine batches them into
/// absolute adjustments through the preset, under a quota of 3 requests per 400 ms window that
/// the store's other apps also spend. Every SKU ends at its last figure, and no request is sent
/// after a 429 before its window resets. (Concurrency 1, an override of the endpoint's own: a
/// request already in flight when another is answered 429 cannot know of it.)
#[tokio::test]
async fn through_the_engine_every_level_ends_at_its_last_figure_within_the_quota() {
    use concord_connectors::http::config::{Algorithm, Encoding};
    use concord_connectors::http::webhook::sign;
    use concord_engine::config::Config;
    use concord_engine::runtime::Engine;
    use concord_store::{SqliteStore, Store};

    let store = Contract::start(3, Duration::from_millis(400)).await;
    store.with(|f| {
        for n in 1..=40 {
            f.levels.insert((1, format!("SKU-{n}")), 0);
            f.levels.insert((2, format!("SKU-{n}")), 0);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[store]
path = "{db}"
[endpoints.wms]
connector = "http"
url = "{url}"
webhook_secret = "wms-secret"
[endpoints.wms.options.webhook]
signature = {{ header = "x-sig" }}
records = ".events"
routes = [{{ kind = "stock", id = '"\(.sku)@\(.location)"', version = ".ts | tostring", map = "{{sku, location, on_hand, committed: 0}}" }}]
[endpoints.bigcommerce]
connector = "http"
url = "{url}"
webhook_secret = "{hook}"
[endpoints.bigcommerce.options]
preset = "bigcommerce"
auth = {{ value = "{token}" }}
vars = {{ locations = {{ WH = 1, WH2 = 2 }} }}
rate_limit = {{ concurrency = 1 }}
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["wms"]
to = ["bigcommerce"]
"#,
        db = dir.path().join("hub.sqlite").display(),
        url = store.url,
        hook = HOOK_SECRET,
        token = TOKEN,
    );
    let config = Arc::new(Config::from_toml_str(&text, &dir.path().join("c.toml")).unwrap());
    let mut cs: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
    for (n, s) in &config.endpoints {
        cs.insert(n.clone(), concord_connectors::build(s).unwrap());
    }
    concord_engine::runtime::check_capabilities(&config, &cs).unwrap();
    let db: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("hub.sqlite")).unwrap());
    let engine = Engine::new(config, db, cs).unwrap();
    let mut tasks = engine.start().await.unwrap();

    for round in 1..=4u64 {
        let events: Vec<Value> = (1..=40u64)
            .flat_map(|n| {
                ["WH", "WH2"].map(|loc| {
                    json!({"sku": format!("SKU-{n}"), "location": loc,
                    "on_hand": round * 100 + n, "ts": round * 1000 + n})
                })
            })
            .collect();
        let body = json!({"events": events}).to_string().into_bytes();
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-sig",
            sign(Algorithm::Sha256, Encoding::Hex, b"wms-secret", &body)
                .parse()
                .unwrap(),
        );
        engine.capture_webhook("wms", &h, &body).await.unwrap();
        if round == 2 {
            // The store's other apps spend this window's quota.
            store.with(|f| {
                f.roll();
                f.used = f.quota;
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_until(
        "every level at its last figure",
        Duration::from_secs(30),
        async || {
            store.with(|f| {
                (1..=40i64).all(|n| {
                    f.levels[&(1, format!("SKU-{n}"))] == 400 + n
                        && f.levels[&(2, format!("SKU-{n}"))] == 400 + n
                })
            })
        },
    )
    .await;
    engine.shutdown();
    while tasks.join_next().await.is_some() {}
    store.with(|f| {
        assert!(f.limited >= 1, "the spent window was answered 429");
        assert_eq!(
            f.violations, 0,
            "requests sent after a 429 before the reset"
        );
        assert!(f.breaches.is_empty(), "contract breaches: {:?}", f.breaches);
    });
}

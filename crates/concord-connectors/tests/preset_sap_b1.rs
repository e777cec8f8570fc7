//! The `sap-b1` preset of the `http` connector against a contract server that follows SAP's
//! user manual "Working with SAP Business One Service Layer" (version 1.22, 2021; cited below by
//! section). It checks what Concord sends — the login body, the B1SESSION and ROUTEID cookies on
//! every request, OData query options ($filter, $orderby, $select, $skip), the Prefer page size,
//! the entity bodies, the goods receipts and issues of a stock write — and answers as the manual
//! says: the session cookies, 401 "Invalid session" once a session has timed out, pages with
//! `odata.nextLink`, 201 with the created entity, 204 for an action,
//! `{"error": {"code", "message": {"lang", "value"}}}` for errors. In front of it sits the
//! load balancer ("Load Balancing": Apache httpd), which counts Concord's requests in flight
//! against the budget and answers its own 503 page while no node is free.

mod support;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use concord_connectors::http::HttpConnector;
use concord_core::Kind;
use concord_engine::connector::{
    Captured, Connector, DeliveryError, EndpointSpec, ReadRequest, WriteOp, WriteOutcome,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct B1 {
    breaches: Vec<String>,
    logins: usize,
    sessions: BTreeSet<String>,
    items: Vec<Value>,
    partners: Vec<Value>,
    orders: Vec<Value>,
    deliveries: Vec<Value>,
    /// Listings of DeliveryNotes answered (any page).
    delivery_reads: usize,
    slow_next_order: Option<Duration>,
    /// Goods receipts (InventoryGenEntries) and goods issues (InventoryGenExits) posted.
    stock_docs: Vec<(String, Value)>,
    slow_next_doc: Option<Duration>,
    /// The load balancer in front of the Service Layer's nodes (see `load_balancer`).
    lb: Balancer,
}

/// What the Service Layer's load balancer (Apache httpd with mod_proxy_balancer, the manual's
/// "Load Balancing") does to each request before a node sees it.
#[derive(Default)]
struct Balancer {
    /// No node can take a request: Apache answers 503 with its own HTML page
    /// (httpd.apache.org/docs/2.4/mod/mod_proxy_balancer.html: a balancer with no usable
    /// member answers 503 Service Unavailable).
    down: bool,
    /// Requests answered 503 while `down`.
    refused: usize,
    /// How long each request occupies a worker process of the node.
    hold: Duration,
    /// Requests being served now, and the most Concord may have at once (the preset's
    /// `rate_limit.concurrency`: SAP publishes no request budget, so the workers an installation
    /// grants the integration are the budget).
    inflight: usize,
    cap: Option<usize>,
    /// Requests that arrived while `cap` were already being served.
    violations: usize,
}

type Shared = Arc<Mutex<B1>>;

fn reply(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(
            "content-type",
            "application/json;odata=minimalmetadata;charset=utf-8",
        )],
        body.to_string(),
    )
        .into_response()
}

fn error(status: u16, code: i64, message: &str) -> Response {
    // "Error Codes": {"error": {"code": …, "message": {"lang": "en-us", "value": …}}}.
    reply(
        status,
        json!({"error": {"code": code, "message": {"lang": "en-us", "value": message}}}),
    )
}

/// "Login and Logout" / "Session": every request after the login carries the B1SESSION cookie
/// and, behind the load balancer, ROUTEID; an unknown or timed-out session is 401.
/// `Some` is the answer to give instead of going on.
fn session(f: &mut B1, headers: &HeaderMap, what: &str) -> Option<Response> {
    let cookie = headers
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let get = |name: &str| {
        cookie.split(';').find_map(|p| {
            p.trim()
                .strip_prefix(&format!("{name}="))
                .map(str::to_string)
        })
    };
    if get("ROUTEID").as_deref() != Some(".node1") {
        f.breaches
            .push(format!("{what}: no ROUTEID cookie ({cookie})"));
    }
    if headers.get("prefer").and_then(|v| v.to_str().ok()) != Some("odata.maxpagesize=5") {
        f.breaches
            .push(format!("{what}: Prefer is not odata.maxpagesize=5"));
    }
    match get("B1SESSION") {
        Some(s) if f.sessions.contains(&s) => None,
        _ => Some(error(
            401,
            301,
            "Invalid session or session already timeout.",
        )),
    }
}

// POST /b1s/v1/Login — "Login and Logout": {CompanyDB, UserName, Password} → the session
// (SessionId, Version, SessionTimeout) with Set-Cookie B1SESSION and ROUTEID.
async fn login(State(s): State<Shared>, body: Bytes) -> Response {
    let mut f = s.lock().unwrap();
    let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if b != json!({"CompanyDB": "SBODEMOUS", "UserName": "manager", "Password": "b1pass"}) {
        return error(401, -304, "Fail to get DB Credentials from SLD");
    }
    f.logins += 1;
    let id = format!("0dacaec2-f5fa-11e7-8000-{:012}", f.logins);
    f.sessions.insert(id.clone());
    let mut r = reply(
        200,
        json!({"odata.metadata": "https://b1:50000/b1s/v1/$metadata#B1Sessions/@Element",
        "SessionId": id, "Version": "1000190", "SessionTimeout": 30}),
    );
    r.headers_mut().append(
        "set-cookie",
        format!("B1SESSION={id}; path=/b1s; HttpOnly")
            .parse()
            .unwrap(),
    );
    r.headers_mut()
        .append("set-cookie", "ROUTEID=.node1; path=/b1s".parse().unwrap());
    r
}

/// `$filter` of the forms the preset sends: `Field ge 'v'`, `Field eq 'v'`, joined by `and`.
fn matches(filter: Option<&String>, rec: &Value, f: &mut B1) -> bool {
    let Some(filter) = filter else { return true };
    filter.split(" and ").all(|clause| {
        let parts: Vec<&str> = clause.splitn(3, ' ').collect();
        let [field, op, lit] = parts[..] else {
            f.breaches.push(format!("$filter `{filter}`"));
            return false;
        };
        let Some(v) = lit.strip_prefix('\'').and_then(|l| l.strip_suffix('\'')) else {
            f.breaches.push(format!("$filter literal `{lit}`"));
            return false;
        };
        let v = v.replace("''", "'");
        let have = rec[field].as_str().unwrap_or("");
        match op {
            "eq" => have == v,
            "ge" => have >= v.as_str(),
            _ => {
                f.breaches.push(format!("$filter operator `{op}`"));
                false
            }
        }
    })
}

/// "Query Options" and "Paging": $filter, $orderby, $select, $skip; the page size from Prefer;
/// `odata.nextLink` while more remain.
fn page(
    f: &mut B1,
    set: &str,
    all: Vec<Value>,
    q: &BTreeMap<String, String>,
    order: &[&str],
) -> Response {
    let want: Vec<&str> = q
        .get("$orderby")
        .map(|o| o.split(',').collect())
        .unwrap_or_default();
    if !order.is_empty() && want != order {
        f.breaches
            .push(format!("{set}: $orderby {want:?}, expected {order:?}"));
    }
    let mut rows: Vec<Value> = all
        .into_iter()
        .filter(|r| matches(q.get("$filter"), r, f))
        .collect();
    rows.sort_by_key(|r| order.iter().map(|k| r[*k].to_string()).collect::<Vec<_>>());
    let skip: usize = q.get("$skip").and_then(|s| s.parse().ok()).unwrap_or(0);
    let size = 5;
    let end = (skip + size).min(rows.len());
    let mut body = json!({"odata.metadata": format!("https://b1:50000/b1s/v1/$metadata#{set}"),
                          "value": rows[skip.min(end)..end]});
    if end < rows.len() {
        body["odata.nextLink"] = json!(format!("{set}?$skip={end}"));
    }
    reply(200, body)
}

async fn items(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = session(&mut f, &headers, "GET Items") {
        return r;
    }
    let order: &[&str] = if q
        .get("$select")
        .is_some_and(|s| s.contains("ItemWarehouseInfoCollection"))
    {
        &["ItemCode"]
    } else {
        &["UpdateDate", "UpdateTime", "ItemCode"]
    };
    let all = f.items.clone();
    page(&mut f, "Items", all, &q, order)
}

async fn deliveries(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = session(&mut f, &headers, "GET DeliveryNotes") {
        return r;
    }
    f.delivery_reads += 1;
    let all = f.deliveries.clone();
    page(
        &mut f,
        "DeliveryNotes",
        all,
        &q,
        &["UpdateDate", "UpdateTime", "DocEntry"],
    )
}

async fn partners(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = session(&mut f, &headers, "GET BusinessPartners") {
        return r;
    }
    let all = f.partners.clone();
    page(&mut f, "BusinessPartners", all, &q, &[])
}

// POST /b1s/v1/BusinessPartners — "Create": 201 with the entity; an existing CardCode is 400
// ("Error Codes").
async fn partners_post(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = session(&mut f, &headers, "POST BusinessPartners") {
        return r;
    }
    let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if b["CardType"] != "cCustomer" || b["CardCode"].as_str().is_none() {
        f.breaches.push(format!("business partner body {b}"));
    }
    if f.partners.iter().any(|p| p["CardCode"] == b["CardCode"]) {
        return error(
            400,
            -10,
            "1320000140 - Business partner code already exists",
        );
    }
    f.partners.push(b.clone());
    reply(201, b)
}

// PATCH /b1s/v1/BusinessPartners('CardCode') — "Update": 204 No Content.
async fn entity_patch(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(entity): Path<String>,
    body: Bytes,
) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = session(&mut f, &headers, "PATCH") {
        return r;
    }
    let code = entity
        .strip_prefix("BusinessPartners('")
        .and_then(|r| r.strip_suffix("')"))
        .map(str::to_string);
    let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match code.and_then(|c| f.partners.iter().position(|p| p["CardCode"] == c.as_str())) {
        Some(i) => {
            if let (Some(p), Some(patch)) = (f.partners[i].as_object_mut(), b.as_object()) {
                for (k, v) in patch {
                    p.insert(k.clone(), v.clone());
                }
            }
            StatusCode::NO_CONTENT.into_response()
        }
        None => {
            f.breaches.push(format!("PATCH {entity}"));
            error(404, -2028, "No matching records found (ODBC -2028)")
        }
    }
}

// POST /b1s/v1/InventoryGenEntries | InventoryGenExits — the Service Layer API reference's goods
// receipt and goods issue documents ("Create": 201 with the document): each line's Quantity
// (> 0) at its WarehouseCode added to (receipt) or taken from (issue) the item's InStock.
async fn stock_document(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(entity): Path<String>,
    body: Bytes,
) -> Response {
    let slow;
    let r = {
        let mut f = s.lock().unwrap();
        if let Some(r) = session(&mut f, &headers, "POST stock document") {
            return r;
        }
        let sign = match entity.as_str() {
            "InventoryGenEntries" => 1.0,
            "InventoryGenExits" => -1.0,
            other => {
                f.breaches.push(format!("POST {other}"));
                return error(404, -1, "Unknown entity");
            }
        };
        let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let lines = b["DocumentLines"].as_array().cloned().unwrap_or_default();
        if lines.is_empty() {
            f.breaches.push(format!("{entity} without lines: {b}"));
        }
        for l in &lines {
            let (Some(code), Some(wh), Some(q)) = (
                l["ItemCode"].as_str(),
                l["WarehouseCode"].as_str(),
                l["Quantity"].as_f64(),
            ) else {
                f.breaches.push(format!("{entity} line {l}"));
                continue;
            };
            if q <= 0.0 {
                f.breaches.push(format!("{entity} quantity {q}"));
            }
            let stocked = f
                .items
                .iter_mut()
                .find(|i| i["ItemCode"] == code)
                .and_then(|i| i["ItemWarehouseInfoCollection"].as_array_mut())
                .and_then(|ws| ws.iter_mut().find(|w| w["WarehouseCode"] == wh));
            match stocked {
                Some(w) => {
                    let now = w["InStock"].as_f64().unwrap_or(0.0) + sign * q;
                    w["InStock"] = json!(now);
                }
                None => f.breaches.push(format!("{entity}: {code} not in {wh}")),
            }
        }
        let entry = f.stock_docs.len() as i64 + 1;
        let mut d = b.clone();
        d["DocEntry"] = json!(entry);
        f.stock_docs.push((entity.clone(), d.clone()));
        slow = f.slow_next_doc.take();
        reply(201, d)
    };
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    r
}

// GET / POST /b1s/v1/Orders — "Create": 201 with the entity (DocEntry assigned); "Error Codes":
// a missing business partner is 400 with B1's message.
async fn orders_get(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = session(&mut f, &headers, "GET Orders") {
        return r;
    }
    let all = f.orders.clone();
    page(&mut f, "Orders", all, &q, &[])
}

async fn orders_post(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let slow;
    let r = {
        let mut f = s.lock().unwrap();
        if let Some(r) = session(&mut f, &headers, "POST Orders") {
            return r;
        }
        let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let card = b["CardCode"].as_str().unwrap_or("");
        if !f.partners.iter().any(|p| p["CardCode"] == card) {
            return error(
                400,
                -10,
                &format!("1320000126 - Business partner '{card}' does not exist"),
            );
        }
        let lines = b["DocumentLines"].as_array().cloned().unwrap_or_default();
        if lines.is_empty()
            || lines
                .iter()
                .any(|l| l["ItemCode"].as_str().is_none() || l["Quantity"].as_f64().is_none())
        {
            f.breaches.push(format!("order body {b}"));
        }
        let entry = f.orders.len() as i64 + 1;
        let mut o = b.clone();
        o["DocEntry"] = json!(entry);
        o["DocNum"] = json!(1000 + entry);
        o["DocumentStatus"] = json!("bost_Open");
        o["Cancelled"] = json!("tNO");
        f.orders.push(o.clone());
        slow = f.slow_next_order.take();
        reply(201, o)
    };
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    r
}

// POST /b1s/v1/Orders(DocEntry)/Cancel — "Actions": 204 No Content.
async fn action(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((entity, action)): Path<(String, String)>,
) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = session(&mut f, &headers, "action") {
        return r;
    }
    let entry: Option<i64> = entity
        .strip_prefix("Orders(")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|n| n.parse().ok());
    match (entry, action.as_str()) {
        (Some(n), "Cancel") => match f.orders.iter_mut().find(|o| o["DocEntry"] == n) {
            Some(o) => {
                o["Cancelled"] = json!("tYES");
                StatusCode::NO_CONTENT.into_response()
            }
            None => error(404, -2028, "No matching records found (ODBC -2028)"),
        },
        _ => {
            f.breaches.push(format!("action {entity}/{action}"));
            error(400, -1, "unknown action")
        }
    }
}

/// Every request passes the load balancer: counted against the budget, refused while no node
/// can take it, else held in a worker for `hold`.
async fn load_balancer(
    State(s): State<Shared>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    let hold = {
        let mut f = s.lock().unwrap();
        let lb = &mut f.lb;
        if lb.cap.is_some_and(|cap| lb.inflight >= cap) {
            lb.violations += 1;
        }
        if lb.down {
            lb.refused += 1;
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [("content-type", "text/html; charset=iso-8859-1")],
                "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n\
                 <title>503 Service Unavailable</title>\n</head><body>\n<h1>Service Unavailable</h1>\n\
                 <p>The server is temporarily unable to service your\nrequest due to maintenance \
                 downtime or capacity\nproblems. Please try again later.</p>\n</body></html>\n",
            )
                .into_response();
        }
        lb.inflight += 1;
        lb.hold
    };
    // Served until answered, or until the client goes away (a request Concord gave up on at its
    // timeout no longer counts against its budget: hyper then drops this future).
    let _served = Served(s.clone());
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    next.run(req).await
}

struct Served(Shared);

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(mut f) = self.0.lock() {
            f.lb.inflight -= 1;
        }
    }
}

struct Contract {
    url: String,
    b1: Shared,
}

impl Contract {
    async fn start() -> Contract {
        let b1: Shared = Arc::new(Mutex::new(B1::default()));
        let app = Router::new()
            .route("/b1s/v1/Login", post(login))
            .route("/b1s/v1/Items", get(items))
            .route("/b1s/v1/DeliveryNotes", get(deliveries))
            .route(
                "/b1s/v1/BusinessPartners",
                get(partners).post(partners_post),
            )
            .route(
                "/b1s/v1/{entity}",
                axum::routing::patch(entity_patch).post(stock_document),
            )
            .route("/b1s/v1/Orders", get(orders_get).post(orders_post))
            .route("/b1s/v1/{entity}/{action}", post(action))
            .layer(axum::middleware::from_fn_with_state(
                b1.clone(),
                load_balancer,
            ))
            .with_state(b1.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Contract { url, b1 }
    }

    fn with<R>(&self, f: impl FnOnce(&mut B1) -> R) -> R {
        f(&mut self.b1.lock().unwrap())
    }

    fn connector(&self, timeout: Duration) -> HttpConnector {
        let mut spec = EndpointSpec::new(
            "b1",
            "http",
            &self.url,
            json!({"preset": "sap-b1", "vars": {"company_db": "SBODEMOUS", "user": "manager", "password": "b1pass",
                   "default_customer": "C-WEB", "page_size": 5, "warehouses": ["01", "02"]}}),
        );
        spec.timeout = timeout;
        HttpConnector::new(&spec).unwrap_or_else(|e| panic!("{}: {}", e.path, e.message))
    }
}

async fn read_all(
    c: &HttpConnector,
    kind: Kind,
    cursor: Option<String>,
    snapshot: bool,
) -> (Vec<Captured>, Option<String>) {
    let mut cursor = cursor;
    let mut out = Vec::new();
    for _ in 0..50 {
        let req = ReadRequest {
            kind,
            cursor: cursor.as_deref(),
            limit: 5,
            overlap: Duration::ZERO,
        };
        let page = if snapshot {
            c.read_snapshot(req).await
        } else {
            c.read_changes(req).await
        };
        let page = page.unwrap_or_else(|e| panic!("{kind}: {e}"));
        out.extend(page.records);
        cursor = page.cursor.or(cursor);
        if !page.more {
            return (out, cursor);
        }
    }
    panic!("more than 50 pages");
}

async fn deliver(c: &HttpConnector, op: WriteOp) -> (WriteOutcome, Vec<DeliveryError>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failures = Vec::new();
    loop {
        let out = c.write(vec![op.clone()]).await.remove(0);
        match out {
            WriteOutcome::Failed(e) if !matches!(e, DeliveryError::Permanent { .. }) => {
                assert!(Instant::now() < deadline, "not delivered: {e:?}");
                failures.push(e);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return (other, failures),
        }
    }
}

fn order_op(item: i64, number: &str, email: &str) -> WriteOp {
    WriteOp {
        item_id: item,
        kind: Kind::Order,
        key: format!("shop/{number}"),
        op: "create".into(),
        payload: json!({"channel": "shop", "number": number, "customer": {"email": email}, "currency": "USD",
            "placed_at": "2026-12-04T09:15:00Z", "lines": [{"sku": "A-1", "quantity": 2, "unit_price_minor": 1250, "location": "01"}]}),
        external_id: None,
        refs: BTreeMap::new(),
    }
}

#[tokio::test]
async fn a_day_catalogue_and_stock_out_orders_in_deliveries_back_across_a_session_timeout() {
    let b1 = Contract::start().await;
    let c = b1.connector(Duration::from_millis(700));
    b1.with(|f| {
        for n in 1..=12 {
            let day = if n <= 6 { "2026-12-03" } else { "2026-12-04" };
            f.items.push(json!({"ItemCode": format!("A-{n}"), "ItemName": format!("Item {n}"), "BarCode": "", "Valid": "tYES",
                "UpdateDate": format!("{day}T00:00:00Z"), "UpdateTime": format!("10:{n:02}:00"),
                "ItemWarehouseInfoCollection": [
                    {"WarehouseCode": "01", "InStock": 10.0 + n as f64, "Committed": 2.0, "Ordered": 0.0},
                    {"WarehouseCode": "02", "InStock": 1.0, "Committed": 0.0, "Ordered": 5.0},
                    {"WarehouseCode": "99", "InStock": 100.0, "Committed": 0.0, "Ordered": 0.0}]}));
        }
        f.partners.push(json!({"CardCode": "C-WEB", "CardName": "Web shop", "CardType": "cCustomer", "EmailAddress": ""}));
        f.partners.push(json!({"CardCode": "C-0042", "CardName": "Acme", "CardType": "cCustomer", "EmailAddress": "buyer@acme.example"}));
    });

    // Morning: the catalogue changed since yesterday noon: 6 items on 2 pages (of 5), by
    // UpdateDate from the cursor's day; then stock, a full listing of the two warehouses.
    let (products, cursor) = read_all(
        &c,
        Kind::Product,
        Some("2026-12-04T00:00:00Z".into()),
        false,
    )
    .await;
    assert_eq!(
        products.len(),
        6,
        "{:?}",
        products.iter().map(|p| &p.external_id).collect::<Vec<_>>()
    );
    assert_eq!(
        cursor
            .as_deref()
            .map(|c| c.contains("2026-12-04T10:12:00Z")),
        Some(true),
        "{cursor:?}"
    );
    for p in &products {
        concord_core::model::validate(Kind::Product, &p.record)
            .unwrap_or_else(|e| panic!("{e:?}: {}", p.record));
    }
    let (stock, _) = read_all(&c, Kind::Stock, None, true).await;
    assert_eq!(stock.len(), 24, "12 items × warehouses 01 and 02");
    let a3 = stock
        .iter()
        .find(|s| s.external_id == "A-3@01")
        .expect("A-3@01");
    assert_eq!(
        a3.record,
        json!({"sku": "A-3", "location": "01", "on_hand": 13, "committed": 2, "incoming": []})
    );
    concord_core::model::validate(Kind::Stock, &a3.record).unwrap();
    assert_eq!(b1.with(|f| f.logins), 1, "one session for the morning");

    // The session times out (SessionTimeout): the next request is 401, the preset logs in again
    // once and goes on.
    b1.with(|f| f.sessions.clear());
    // An order from a customer B1 knows (by e-mail): its business partner.
    let (out, _) = deliver(&c, order_op(1, "1001", "buyer@acme.example")).await;
    assert!(
        matches!(&out, WriteOutcome::Done { external_id: Some(id), .. } if id == "1"),
        "{out:?}"
    );
    assert_eq!(b1.with(|f| f.logins), 2);
    b1.with(|f| {
        let o = &f.orders[0];
        assert_eq!(o["CardCode"], "C-0042");
        assert_eq!(o["NumAtCard"], "shop/1001");
        assert_eq!(o["DocDueDate"], "2026-12-04");
        assert_eq!(
            o["DocumentLines"],
            json!([{"ItemCode": "A-1", "Quantity": 2, "UnitPrice": 12.5, "WarehouseCode": "01"}])
        );
    });

    // An order from a new customer, whose answer is lost (the client times out after B1 made
    // it): the retry finds it by NumAtCard; one sales order, on the default business partner.
    b1.with(|f| f.slow_next_order = Some(Duration::from_millis(1200)));
    let (out, failures) = deliver(&c, order_op(2, "1002", "new@example.com")).await;
    assert!(
        matches!(&out, WriteOutcome::Done { external_id: Some(id), .. } if id == "2"),
        "{out:?}"
    );
    assert!(
        failures.iter().any(|e| e.to_string().contains("timed out")),
        "{failures:?}"
    );
    b1.with(|f| {
        assert_eq!(
            f.orders
                .iter()
                .filter(|o| o["NumAtCard"] == "shop/1002")
                .count(),
            1
        );
        assert_eq!(f.orders[1]["CardCode"], "C-WEB");
    });
    // A reference with a quote is escaped in the OData literal (found again, not created twice).
    let (out, _) = deliver(&c, order_op(3, "O'Neil-7", "buyer@acme.example")).await;
    assert!(matches!(out, WriteOutcome::Done { .. }));
    let (out, _) = deliver(&c, order_op(4, "O'Neil-7", "buyer@acme.example")).await;
    assert!(matches!(out, WriteOutcome::Done { .. }));
    assert_eq!(
        b1.with(|f| f
            .orders
            .iter()
            .filter(|o| o["NumAtCard"] == "shop/O'Neil-7")
            .count()),
        1
    );

    // The customer cancels 1001: the Cancel action on its DocEntry.
    let mut cancel = order_op(5, "1001", "buyer@acme.example");
    cancel.op = "cancel".into();
    cancel.external_id = Some("1".into());
    let (out, _) = deliver(&c, cancel).await;
    assert!(matches!(out, WriteOutcome::Done { .. }), "{out:?}");
    assert_eq!(b1.with(|f| f.orders[0]["Cancelled"].clone()), "tYES");

    assert_eq!(b1.with(|f| f.logins), 2, "no other login since the timeout");
    // Without a business partner and without a default: B1's 400, a permanent failure.
    let c2 = {
        let mut spec = EndpointSpec::new(
            "b1",
            "http",
            &b1.url,
            json!({"preset": "sap-b1", "vars": {"company_db": "SBODEMOUS", "user": "manager", "password": "b1pass", "page_size": 5}}),
        );
        spec.timeout = Duration::from_secs(5);
        HttpConnector::new(&spec).unwrap()
    };
    let (out, _) = deliver(&c2, order_op(6, "1003", "nobody@example.com")).await;
    assert!(
        matches!(&out, WriteOutcome::Failed(DeliveryError::Permanent { reason }) if reason.contains("400")),
        "{out:?}"
    );

    // A customer: a business partner made once (CardCode from the customer number), found by
    // e-mail the second time and updated.
    let customer = |item: i64, name: &str| WriteOp {
        item_id: item,
        kind: Kind::Customer,
        key: "jo@example.com".into(),
        op: "upsert".into(),
        payload: json!({"email": "jo@example.com", "name": name, "customer_number": "C-0100", "phone": "555-0100"}),
        external_id: None,
        refs: BTreeMap::new(),
    };
    let (out, _) = deliver(&c, customer(7, "Jo")).await;
    assert!(
        matches!(&out, WriteOutcome::Done { external_id: Some(id), .. } if id == "C-0100"),
        "{out:?}"
    );
    let (out, _) = deliver(&c, customer(8, "Jo Smith")).await;
    assert!(
        matches!(&out, WriteOutcome::Done { external_id: Some(id), .. } if id == "C-0100"),
        "{out:?}"
    );
    b1.with(|f| {
        let jo: Vec<&Value> = f
            .partners
            .iter()
            .filter(|p| p["CardCode"] == "C-0100")
            .collect();
        assert_eq!(jo.len(), 1);
        assert_eq!(jo[0]["CardName"], "Jo Smith");
    });

    // Afternoon: B1 delivers 1002 with a tracking number: read back as its shipment.
    b1.with(|f| {
        f.deliveries.push(json!({"DocEntry": 31, "DocNum": 5031, "NumAtCard": "shop/1002", "TrackingNumber": "1Z999",
            "DocDate": "2026-12-04T00:00:00Z", "UpdateDate": "2026-12-04T00:00:00Z", "UpdateTime": "15:02:11",
            "DocumentLines": [{"LineNum": 0, "ItemCode": "A-1", "Quantity": 2.0}]}));
    });
    let (ships, _) = read_all(
        &c,
        Kind::Shipment,
        Some("2026-12-04T12:00:00Z".into()),
        false,
    )
    .await;
    assert_eq!(ships.len(), 1);
    assert_eq!(ships[0].external_id, "31");
    assert_eq!(ships[0].record["order"], "shop/1002");
    assert_eq!(ships[0].record["tracking_number"], "1Z999");
    concord_core::model::validate(Kind::Shipment, &ships[0].record)
        .unwrap_or_else(|e| panic!("{e:?}: {}", ships[0].record));

    // A warehouse system is the stock master for A-2: its figures go into SAP Business One as
    // the difference to the figure read, a goods receipt up (11 → 15 at 01), a goods issue down
    // (1 → 0 at 02), nothing when the figure is already there; a receipt whose answer is lost
    // after B1 posted it is not posted again (the retry reads 20 and finds nothing to do).
    let level = |n: i64, wh: &str| {
        b1.with(|f| {
            f.items[(n - 1) as usize]["ItemWarehouseInfoCollection"]
                .as_array()
                .and_then(|ws| ws.iter().find(|w| w["WarehouseCode"] == wh))
                .and_then(|w| w["InStock"].as_f64())
        })
    };
    let stock = |item: i64, wh: &str, on_hand: i64| WriteOp {
        item_id: item,
        kind: Kind::Stock,
        key: format!("A-2@{wh}"),
        op: "upsert".into(),
        payload: json!({"sku": "A-2", "location": wh, "on_hand": on_hand, "committed": 0}),
        external_id: None,
        refs: BTreeMap::new(),
    };
    assert_eq!(level(2, "01"), Some(12.0));
    let (out, _) = deliver(&c, stock(20, "01", 15)).await;
    assert!(matches!(out, WriteOutcome::Done { .. }), "{out:?}");
    let (out, _) = deliver(&c, stock(21, "02", 0)).await;
    assert!(matches!(out, WriteOutcome::Done { .. }), "{out:?}");
    let (out, _) = deliver(&c, stock(22, "01", 15)).await;
    assert!(matches!(out, WriteOutcome::Done { .. }), "{out:?}");
    b1.with(|f| f.slow_next_doc = Some(Duration::from_millis(1200)));
    let (out, failures) = deliver(&c, stock(23, "01", 20)).await;
    assert!(matches!(out, WriteOutcome::Done { .. }), "{out:?}");
    assert!(
        failures.iter().any(|e| e.to_string().contains("timed out")),
        "{failures:?}"
    );
    assert_eq!(level(2, "01"), Some(20.0));
    assert_eq!(level(2, "02"), Some(0.0));
    b1.with(|f| {
        let docs: Vec<(&str, f64)> = f
            .stock_docs
            .iter()
            .map(|(e, d)| {
                (
                    e.as_str(),
                    d["DocumentLines"][0]["Quantity"].as_f64().unwrap_or(0.0),
                )
            })
            .collect();
        assert_eq!(
            docs,
            [
                ("InventoryGenEntries", 3.0),
                ("InventoryGenExits", 1.0),
                ("InventoryGenEntries", 5.0)
            ]
        );
    });

    b1.with(|f| {
        assert_eq!(
            f.logins, 3,
            "one per session: the morning's, after the timeout, the second connector's"
        );
        assert!(f.breaches.is_empty(), "contract breaches: {:?}", f.breaches);
    });
}

// ---- through the engine ---------------------------------------------------------------------

/// The real engine over a real SQLite store: SAP Business One's stock per warehouse broadcast to
/// a channel (a stand-in that stores what it is given) by a `batch` flow every second, the way
/// the preset says to run it (stock movements do not change an item's UpdateDate). The session
/// times out between two runs and a figure changes in SAP Business One: the next run logs in
/// again once and the channel ends at the new figure; warehouse 99 (not in `vars.warehouses`)
/// never reaches it.
#[tokio::test]
async fn through_the_engine_the_stock_listing_reaches_the_channel_across_a_session_timeout() {
    use concord_testkit::wait_until;

    let b1 = Contract::start().await;
    b1.with(|f| {
        for n in 1..=12 {
            f.items.push(json!({"ItemCode": format!("A-{n}"), "ItemName": format!("Item {n}"), "Valid": "tYES",
                "UpdateDate": "2026-12-03T00:00:00Z", "UpdateTime": "10:00:00",
                "ItemWarehouseInfoCollection": [
                    {"WarehouseCode": "01", "InStock": 10.0 + n as f64, "Committed": 2.0, "Ordered": 0.0},
                    {"WarehouseCode": "02", "InStock": 1.0, "Committed": 0.0, "Ordered": 5.0},
                    {"WarehouseCode": "99", "InStock": 100.0, "Committed": 0.0, "Ordered": 0.0}]}));
        }
    });
    // The channel: PUT /stock/{sku}/{location} stores the body.
    let (channel, channel_url) = support::stock_channel().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[store]
path = "{store}"
[endpoints.b1]
connector = "http"
url = "{b1}"
[endpoints.b1.options]
preset = "sap-b1"
vars = {{ company_db = "SBODEMOUS", user = "manager", password = "b1pass", page_size = 5, warehouses = ["01", "02"] }}
[endpoints.shop]
connector = "http"
url = "{shop}"
[endpoints.shop.options.write.stock]
upsert = {{ method = "PUT", path = "/stock/{{.sku}}/{{.location}}", success = [204], body = "{{available}}" }}
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "batch"
schedule = "* * * * * *"
from = ["b1"]
to = ["shop"]
[flows.map_out]
"*" = '{{sku, location, available: ([.on_hand - .committed, 0] | max)}}'
"#,
        store = dir.path().join("hub.sqlite").display(),
        b1 = b1.url,
        shop = channel_url,
    );
    let (engine, _store, mut tasks) = support::start_engine(&text, dir.path()).await;

    let available = |key: &str| {
        channel
            .lock()
            .unwrap()
            .get(key)
            .and_then(|v| v["available"].as_i64())
    };
    wait_until(
        "every item's warehouses 01 and 02 at the channel",
        Duration::from_secs(30),
        async || {
            (1..=12).all(|n| {
                available(&format!("A-{n}@01")) == Some(8 + n)
                    && available(&format!("A-{n}@02")) == Some(1)
            })
        },
    )
    .await;
    assert_eq!(b1.with(|f| f.logins), 1, "one session for the runs so far");
    // The session times out; goods are received into warehouse 02 for A-7.
    b1.with(|f| {
        f.sessions.clear();
        let a7 = f
            .items
            .iter_mut()
            .find(|i| i["ItemCode"] == "A-7")
            .expect("A-7");
        a7["ItemWarehouseInfoCollection"][1]["InStock"] = json!(41.0);
    });
    wait_until(
        "A-7@02 at its new figure",
        Duration::from_secs(30),
        async || available("A-7@02") == Some(41),
    )
    .await;
    engine.shutdown();
    while tasks.join_next().await.is_some() {}
    assert_eq!(b1.with(|f| f.logins), 2, "one new login after the timeout");
    let channel = channel.lock().unwrap();
    assert_eq!(channel.len(), 24, "{:?}", channel.keys());
    assert!(channel.keys().all(|k| !k.ends_with("@99")));
    b1.with(|f| assert!(f.breaches.is_empty(), "contract breaches: {:?}", f.breaches));
}

/// The real engine over a real SQLite store, both ways between a storefront and SAP Business One:
/// the store's orders (signed webhooks, one redelivered) become one sales order each, one of them
/// through a lost answer (B1 makes the order, then answers after the client's timeout: the
/// engine retries and the preset's lookup by NumAtCard finds the order instead of making a
/// second); B1's deliveries of those orders, with their tracking numbers, are polled and reach
/// the store once each, on later polls too (the same deliveries are read again and dropped).
#[tokio::test]
async fn through_the_engine_orders_arrive_once_and_deliveries_come_back_with_tracking() {
    use concord_connectors::http::config::{Algorithm, Encoding};
    use concord_connectors::http::webhook::sign;
    use concord_testkit::wait_until;

    let b1 = Contract::start().await;
    b1.with(|f| {
        f.partners.push(json!({"CardCode": "C-WEB", "CardName": "Web shop", "CardType": "cCustomer", "EmailAddress": ""}));
        f.partners.push(json!({"CardCode": "C-0042", "CardName": "Acme", "CardType": "cCustomer", "EmailAddress": "buyer@acme.example"}));
    });
    // The storefront's side: its orders come as signed webhooks; its shipments endpoint logs
    // every PUT /shipments/{id}.
    let (shipments, shop_url) = support::shipment_channel().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let text = format!(
        r#"
[store]
path = "{store}"
[endpoints.shop]
connector = "http"
url = "{shop}"
webhook_secret = "shop-secret"
[endpoints.shop.options.webhook]
signature = {{ header = "x-sig" }}
records = ".orders"
routes = [{{ kind = "order", id = '"shop/\(.number)"', version = ".updated_at", map = "del(.updated_at)" }}]
[endpoints.shop.options.write.shipment]
upsert = {{ method = "PUT", path = "/shipments/{{.id}}", success = [204], body = "{{order, tracking_number, lines}}" }}
[endpoints.b1]
connector = "http"
url = "{b1}"
timeout = "1s"
[endpoints.b1.options]
preset = "sap-b1"
vars = {{ company_db = "SBODEMOUS", user = "manager", password = "b1pass", page_size = 5, default_customer = "C-WEB" }}
[[flows]]
name = "orders"
kind = "order"
pattern = "aggregation"
mode = "realtime"
from = ["shop"]
to = ["b1"]
[[flows]]
name = "shipments"
kind = "shipment"
pattern = "broadcast"
mode = "delta"
interval = "500ms"
from = ["b1"]
to = ["shop"]
"#,
        store = dir.path().join("hub.sqlite").display(),
        shop = shop_url,
        b1 = b1.url,
    );
    let (engine, store, mut tasks) = support::start_engine(&text, dir.path()).await;

    let webhook = |numbers: &[u32]| {
        let orders: Vec<Value> = numbers
            .iter()
            .map(|n| {
                let email = if *n == 3002 { "buyer@acme.example".to_string() } else { format!("c{n}@example.com") };
                json!({"channel": "shop", "number": format!("{n}"), "customer": {"email": email},
                       "currency": "USD", "placed_at": "2026-12-04T09:15:00Z", "updated_at": format!("2026-12-04T09:{:02}:00Z", n - 3000),
                       "lines": [{"sku": format!("A-{}", n - 3000), "quantity": 1 + n % 2, "unit_price_minor": 1250, "location": "01"}]})
            })
            .collect();
        let body = json!({"orders": orders}).to_string().into_bytes();
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-sig",
            sign(Algorithm::Sha256, Encoding::Hex, b"shop-secret", &body)
                .parse()
                .expect("signature header"),
        );
        (h, body)
    };
    let in_b1 = |reference: &str| {
        b1.with(|f| {
            f.orders
                .iter()
                .filter(|o| o["NumAtCard"] == reference)
                .count()
        })
    };
    let known_at_b1 = async |key: &str| {
        store
            .xref_external("b1", Kind::Order, key)
            .await
            .expect("xref")
            .is_some()
    };

    // Order 3001: B1 makes the sales order, but its answer comes after the client's timeout.
    b1.with(|f| f.slow_next_order = Some(Duration::from_secs(3)));
    let (h, body) = webhook(&[3001]);
    engine
        .capture_webhook("shop", &h, &body)
        .await
        .expect("webhook 3001");
    wait_until(
        "3001 delivered to B1 after its lost answer",
        Duration::from_secs(30),
        async || known_at_b1("shop/3001").await,
    )
    .await;
    // The other orders; the store redelivers its webhook.
    let (h, body) = webhook(&[3002, 3003, 3004]);
    for _ in 0..2 {
        engine
            .capture_webhook("shop", &h, &body)
            .await
            .expect("webhook 3002-3004");
    }
    wait_until(
        "every order delivered to B1",
        Duration::from_secs(30),
        async || {
            for n in 3001..=3004 {
                if !known_at_b1(&format!("shop/{n}")).await {
                    return false;
                }
            }
            true
        },
    )
    .await;

    // B1 delivers each order with a tracking number.
    b1.with(|f| {
        for n in 3001..=3004u32 {
            let entry = n - 3001 + 41;
            f.deliveries.push(json!({"DocEntry": entry, "DocNum": 5000 + entry, "NumAtCard": format!("shop/{n}"),
                "TrackingNumber": format!("1Z-{n}"), "DocDate": "2026-12-04T00:00:00Z",
                "UpdateDate": "2026-12-04T00:00:00Z", "UpdateTime": format!("15:{:02}:00", n - 3000),
                "DocumentLines": [{"LineNum": 0, "ItemCode": format!("A-{}", n - 3000), "Quantity": (1 + n % 2) as f64}]}));
        }
    });
    wait_until(
        "every delivery at the store as a shipment",
        Duration::from_secs(30),
        async || {
            let log = shipments.lock().expect("shipment log");
            (41..=44).all(|id| log.iter().any(|(s, _)| *s == id.to_string()))
        },
    )
    .await;
    // Two more polls read the same deliveries again (the cursor's day is inclusive).
    let reads = b1.with(|f| f.delivery_reads);
    wait_until(
        "two more polls of the deliveries",
        Duration::from_secs(30),
        async || b1.with(|f| f.delivery_reads) >= reads + 2,
    )
    .await;
    let history = store
        .order_history("shop/3001")
        .await
        .expect("order history")
        .expect("3001's history");
    engine.shutdown();
    while tasks.join_next().await.is_some() {}

    // Each order once in B1, on its business partner (by e-mail, else the default).
    for n in 3001..=3004 {
        assert_eq!(in_b1(&format!("shop/{n}")), 1, "sales orders for shop/{n}");
    }
    b1.with(|f| {
        assert_eq!(f.orders.len(), 4, "one sales order per order");
        for o in &f.orders {
            let card = if o["NumAtCard"] == "shop/3002" {
                "C-0042"
            } else {
                "C-WEB"
            };
            assert_eq!(o["CardCode"], card, "{o}");
        }
    });
    // 3001's answer was lost: a timed-out attempt, then a delivered one (found by NumAtCard).
    let to_b1: Vec<_> = history
        .attempts
        .iter()
        .filter(|a| a.dest == "b1" && a.kind == Kind::Order)
        .collect();
    assert!(
        to_b1
            .iter()
            .any(|a| a.outcome == "retry"
                && a.error.as_deref().is_some_and(|e| e.contains("timed out"))),
        "{to_b1:?}"
    );
    assert_eq!(
        to_b1.last().map(|a| a.outcome.as_str()),
        Some("delivered"),
        "{to_b1:?}"
    );
    // Each delivery reached the store once, with its order and tracking number.
    let log = shipments.lock().expect("shipment log");
    assert_eq!(log.len(), 4, "{log:?}");
    for n in 3001..=3004u32 {
        let id = (n - 3001 + 41).to_string();
        let got: Vec<&Value> = log
            .iter()
            .filter(|(s, _)| *s == id)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(got.len(), 1, "shipment {id}: {log:?}");
        assert_eq!(got[0]["order"], format!("shop/{n}"));
        assert_eq!(got[0]["tracking_number"], format!("1Z-{n}"));
        assert_eq!(
            got[0]["lines"],
            json!([{"sku": format!("A-{}", n - 3000), "quantity": 1 + n % 2}])
        );
    }
    b1.with(|f| assert!(f.breaches.is_empty(), "contract breaches: {:?}", f.breaches));
}

/// The real engine over a real SQLite store through a storm at the Service Layer: 20 webhook
/// orders go to SAP Business One while its load balancer has no node to give them, four times for
/// 300 ms (Apache's 503 page, not a Service Layer error), one node restart drops every
/// session mid-way (401 "Invalid session" to every request in flight), and one order's answer is
/// lost (B1 makes it, then answers after the client's timeout). Each request holds a worker for
/// a while, so Concord's own requests in flight are what the installation sees. Every order ends
/// in B1 once; the lost answer is found again by NumAtCard; the restart costs exactly one new
/// login however many requests saw the 401; and no request arrived while the preset's
/// concurrency budget was already in use (0 violations).
#[tokio::test]
async fn through_the_engine_orders_arrive_once_through_a_load_balancer_storm_and_a_node_restart() {
    use concord_connectors::http::config::{Algorithm, Encoding};
    use concord_connectors::http::webhook::sign;
    use concord_testkit::wait_until;

    let b1 = Contract::start().await;
    b1.with(|f| {
        f.partners.push(json!({"CardCode": "C-WEB", "CardName": "Web shop", "CardType": "cCustomer", "EmailAddress": ""}));
        f.lb.hold = Duration::from_millis(40);
        // The preset's default budget (sap-b1.toml `rate_limit.concurrency`).
        f.lb.cap = Some(4);
    });
    let dir = tempfile::tempdir().expect("temporary directory");
    let text = format!(
        r#"
[store]
path = "{store}"
[endpoints.shop]
connector = "http"
url = "{b1}"
webhook_secret = "shop-secret"
[endpoints.shop.options.webhook]
signature = {{ header = "x-sig" }}
records = ".orders"
routes = [{{ kind = "order", id = '"shop/\(.number)"', version = ".updated_at", map = "del(.updated_at)" }}]
[endpoints.b1]
connector = "http"
url = "{b1}"
timeout = "1s"
[endpoints.b1.options]
preset = "sap-b1"
vars = {{ company_db = "SBODEMOUS", user = "manager", password = "b1pass", page_size = 5, default_customer = "C-WEB" }}
[[flows]]
name = "orders"
kind = "order"
pattern = "aggregation"
mode = "realtime"
from = ["shop"]
to = ["b1"]
"#,
        store = dir.path().join("hub.sqlite").display(),
        b1 = b1.url,
    );
    let (engine, store, mut tasks) = support::start_engine(&text, dir.path()).await;

    // The storm, as B1 fills up: no node for 300 ms once 2, 6, 12 and 16 sales orders exist; a
    // node restart (every session dropped) once 8 do; one order's answer is lost.
    let storm = async || {
        for (made, restart) in [(2, false), (6, false), (8, true), (12, false), (16, false)] {
            wait_until(
                &format!("{made} sales orders in B1"),
                Duration::from_secs(60),
                async || b1.with(|f| f.orders.len()) >= made,
            )
            .await;
            if restart {
                b1.with(|f| f.sessions.clear());
                continue;
            }
            b1.with(|f| f.lb.down = true);
            tokio::time::sleep(Duration::from_millis(300)).await;
            b1.with(|f| f.lb.down = false);
        }
    };
    b1.with(|f| f.slow_next_order = Some(Duration::from_secs(3)));
    for batch in 0..4u32 {
        let orders: Vec<Value> = (1..=5u32)
            .map(|i| {
                let n = batch * 5 + i;
                json!({"channel": "shop", "number": format!("{}", 4000 + n), "customer": {"email": format!("s{n}@example.com")},
                       "currency": "USD", "placed_at": "2026-12-04T09:15:00Z", "updated_at": format!("2026-12-04T09:{n:02}:00Z"),
                       "lines": [{"sku": format!("A-{}", 1 + n % 3), "quantity": 1 + n % 2, "unit_price_minor": 1250, "location": "01"}]})
            })
            .collect();
        let body = json!({"orders": orders}).to_string().into_bytes();
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-sig",
            sign(Algorithm::Sha256, Encoding::Hex, b"shop-secret", &body)
                .parse()
                .expect("signature header"),
        );
        engine
            .capture_webhook("shop", &h, &body)
            .await
            .expect("webhook");
    }
    let known_at_b1 = async |n: u32| {
        store
            .xref_external("b1", Kind::Order, &format!("shop/{}", 4000 + n))
            .await
            .expect("xref")
            .is_some()
    };
    let delivered = wait_until(
        "every order delivered to B1",
        Duration::from_secs(90),
        async || {
            for n in 1..=20 {
                if !known_at_b1(n).await {
                    return false;
                }
            }
            true
        },
    );
    tokio::join!(storm(), delivered);
    engine.shutdown();
    while tasks.join_next().await.is_some() {}

    b1.with(|f| {
        for n in 1..=20u32 {
            let reference = format!("shop/{}", 4000 + n);
            let made: Vec<&Value> = f
                .orders
                .iter()
                .filter(|o| o["NumAtCard"] == reference.as_str())
                .collect();
            assert_eq!(made.len(), 1, "sales orders for {reference}");
            assert_eq!(made[0]["CardCode"], "C-WEB");
            assert_eq!(
                made[0]["DocumentLines"],
                json!([{"ItemCode": format!("A-{}", 1 + n % 3), "Quantity": 1 + n % 2, "UnitPrice": 12.5, "WarehouseCode": "01"}])
            );
        }
        assert_eq!(f.orders.len(), 20, "one sales order per order");
        assert!(f.lb.refused >= 1, "the storm was felt: {} refused", f.lb.refused);
        assert_eq!(
            f.logins, 2,
            "one login, then exactly one more after the node restart"
        );
        assert_eq!(
            f.lb.violations, 0,
            "Concord exceeded the installation's concurrency budget"
        );
        assert!(f.breaches.is_empty(), "contract breaches: {:?}", f.breaches);
    });
}

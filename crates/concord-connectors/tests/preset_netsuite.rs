//! The `netsuite` preset of the `http` connector against a contract server that follows
//! NetSuite's help center for SuiteTalk REST web services (cited by topic below). It verifies
//! every request's OAuth 1.0a signature the way NetSuite does — its own RFC 5849 base string and
//! HMAC-SHA256 under the consumer and token secrets, the realm, a fresh timestamp, a nonce never
//! seen before — and checks the SuiteQL requests (`Prefer: transient`, `limit` ≤ 1000, a stable
//! ORDER BY, offset + limit within the 100,000-row cap) and the record upserts, answering as
//! documented: `{links, count, hasMore, items, offset, totalResults}` pages, 204 for an upsert,
//! 429 with CONCURRENCY_LIMIT_EXCEEDED beyond the account's concurrency limit. Item fulfilments
//! are served as SuiteQL rows of the tables NetSuite's Records Catalog names (`transaction` of
//! type `ItemShip`, `transactionline` with `createdfrom`), keyset-paged. The server counts a
//! request that arrives while Concord's own requests already fill the account's limit as a
//! violation of the published budget; the engine test asserts there are none.

mod support;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::Router;
use base64::Engine as _;
use concord_connectors::http::HttpConnector;
use concord_core::Kind;
use concord_engine::connector::{
    Captured, Connector, DeliveryError, EndpointSpec, ReadRequest, WriteOp, WriteOutcome,
};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const REALM: &str = "1234567_SB1";
const CONSUMER_KEY: &str = "ck-contract";
const CONSUMER_SECRET: &str = "cs-contract";
const TOKEN: &str = "tk-contract";
const TOKEN_SECRET: &str = "ts-contract";

#[derive(Default)]
struct Account {
    breaches: Vec<String>,
    nonces: BTreeSet<String>,
    /// Concurrency governance: the account's limit and the requests in flight.
    limit: usize,
    in_flight: usize,
    /// Requests refused for concurrency (429 CONCURRENCY_LIMIT_EXCEEDED).
    refused: usize,
    /// Requests that arrived while Concord's own requests already filled the account's limit:
    /// Concord exceeded the published concurrency budget (must stay 0).
    violations: usize,
    /// How long an upsert keeps its slot (NetSuite's processing time); zero: none.
    hold: Duration,
    /// Slots held by the account's other integrations.
    held_elsewhere: usize,
    items: Vec<Value>,
    locations: Vec<Value>,
    customers: Vec<Value>,
    orders: BTreeMap<String, Value>,
    /// Item fulfilment lines as SuiteQL returns them (`id` = the fulfilment's internal id,
    /// `line` = the line's, `reference` = the sales order's external id).
    fulfilment_lines: Vec<Value>,
    /// Inventory adjustments posted (their bodies).
    adjustments: Vec<Value>,
    slow_next_adjustment: Option<Duration>,
    upserts: usize,
    slow_next_upsert: Option<Duration>,
}

type Shared = Arc<Mutex<Account>>;

fn reply(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(
            "content-type",
            "application/vnd.oracle.resource+json; type=collection",
        )],
        body.to_string(),
    )
        .into_response()
}

fn error(status: u16, code: &str, detail: &str) -> Response {
    // "Error Handling and Error Codes": {type, title, status, o:errorDetails[{detail, o:errorCode}]}.
    reply(
        status,
        json!({"type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1", "title": "Error", "status": status,
        "o:errorDetails": [{"detail": detail, "o:errorCode": code}]}),
    )
}

fn enc(s: &str) -> String {
    // RFC 3986 unreserved characters stay, everything else %XX (RFC 5849 §3.6).
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn dec(s: &str) -> String {
    percent_decode(s.trim_matches('"'))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// "Token-based Authentication" (and RFC 5849): verify the Authorization header of a request.
fn verify(f: &mut Account, method: &Method, uri: &Uri, headers: &HeaderMap, host: &str) -> bool {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        f.breaches.push(format!("{method} {uri}: no Authorization"));
        return false;
    };
    let Some(rest) = auth.strip_prefix("OAuth ") else {
        f.breaches.push("Authorization is not OAuth".into());
        return false;
    };
    let fields: BTreeMap<String, String> = rest
        .split(", ")
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), dec(v)))
        .collect();
    let want = |k: &str| fields.get(k).cloned().unwrap_or_default();
    if want("realm") != REALM
        || want("oauth_consumer_key") != CONSUMER_KEY
        || want("oauth_token") != TOKEN
        || want("oauth_signature_method") != "HMAC-SHA256"
        || want("oauth_version") != "1.0"
    {
        f.breaches.push(format!("oauth fields {fields:?}"));
        return false;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts: i64 = want("oauth_timestamp").parse().unwrap_or(0);
    if (now - ts).abs() > 300 {
        f.breaches.push(format!("stale timestamp {ts}"));
        return false;
    }
    // A nonce is used once (a replay is refused).
    if !f.nonces.insert(want("oauth_nonce")) {
        f.breaches.push("nonce used twice".into());
        return false;
    }
    let mut params: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (enc(&percent_decode(k)), enc(&percent_decode(v)))
        })
        .collect();
    for (k, v) in &fields {
        if k.starts_with("oauth_") && k != "oauth_signature" {
            params.push((enc(k), enc(v)));
        }
    }
    params.sort();
    let normalized = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let base = format!(
        "{}&{}&{}",
        method.as_str(),
        enc(&format!("http://{host}{}", uri.path())),
        enc(&normalized)
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(
        format!("{}&{}", enc(CONSUMER_SECRET), enc(TOKEN_SECRET)).as_bytes(),
    )
    .unwrap();
    mac.update(base.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if want("oauth_signature") != expected {
        f.breaches.push(format!("signature mismatch for {base}"));
        return false;
    }
    true
}

/// Admission under the account's concurrency limit ("Concurrency Governance"): `None` admits
/// (and counts the request in flight), `Some` is the answer.
fn admit(
    f: &mut Account,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    host: &str,
) -> Option<Response> {
    if !verify(f, method, uri, headers, host) {
        return Some(error(401, "INVALID_LOGIN", "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI."));
    }
    if f.in_flight >= f.limit {
        f.violations += 1;
    }
    if f.in_flight + f.held_elsewhere >= f.limit {
        f.refused += 1;
        return Some(error(
            429,
            "CONCURRENCY_LIMIT_EXCEEDED",
            "Concurrent request limit exceeded. Request blocked.",
        ));
    }
    f.in_flight += 1;
    None
}

fn host(headers: &HeaderMap) -> String {
    headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

// POST /services/rest/query/v1/suiteql?limit=&offset= — "Executing SuiteQL Queries Through
// REST": Prefer: transient, body {q}, limit at most 1000, at most 100,000 rows per query,
// answer {links, count, hasMore, items, offset, totalResults}.
async fn suiteql(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let answer = {
        let mut f = s.lock().unwrap();
        if let Some(r) = admit(&mut f, &method, &uri, &headers, &host(&headers)) {
            return r;
        }
        if headers.get("prefer").and_then(|v| v.to_str().ok()) != Some("transient") {
            f.breaches.push("SuiteQL without Prefer: transient".into());
        }
        let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let sql = b["q"].as_str().unwrap_or("").to_string();
        let limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(1000);
        let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        if limit == 0 || limit > 1000 || offset + limit > 100_000 {
            f.breaches.push(format!("limit {limit} offset {offset}"));
        }
        if !sql.contains(" ORDER BY ") {
            f.breaches.push(format!("no ORDER BY: {sql}"));
        }
        let rows: Vec<Value> = if sql.contains("FROM inventoryitemlocations")
            && sql.contains(" WHERE i.itemid = '")
        {
            // One item's level at one location (by the item's itemid and the location's name).
            let lit = |after: &str| {
                sql.split(after)
                    .nth(1)
                    .and_then(|r| r.split("' ").next())
                    .map(|v| v.replace("''", "'"))
                    .unwrap_or_default()
            };
            let (sku, loc) = (lit(" WHERE i.itemid = '"), lit(" AND l.name = '"));
            f.locations
                .iter()
                .filter(|r| r["sku"] == sku.as_str() && r["location"] == loc.as_str())
                .map(|r| json!({"item_id": r["item_id"], "location_id": r["location_id"], "quantityonhand": r["quantityonhand"]}))
                .collect()
        } else if sql.contains("FROM inventoryitemlocations") {
            if !sql.ends_with("ORDER BY iil.item, iil.location") {
                f.breaches.push(format!("unstable order: {sql}"));
            }
            if offset != 0 {
                f.breaches
                    .push(format!("stock paged by offset {offset}, not by key"));
            }
            // Keyset: `WHERE iil.item > A OR (iil.item = A AND iil.location > B)`.
            let after = sql.split(" WHERE iil.item > ").nth(1).map(|r| {
                let a: i64 = r.split(' ').next().unwrap_or("").parse().unwrap_or(-1);
                let b: i64 = r
                    .split("iil.location > ")
                    .nth(1)
                    .and_then(|x| x.split(')').next())
                    .unwrap_or("")
                    .parse()
                    .unwrap_or(-1);
                (a, b)
            });
            let key = |r: &Value| {
                (
                    r["item_id"]
                        .as_str()
                        .unwrap_or("")
                        .parse::<i64>()
                        .unwrap_or(0),
                    r["location_id"]
                        .as_str()
                        .unwrap_or("")
                        .parse::<i64>()
                        .unwrap_or(0),
                )
            };
            let mut rows: Vec<Value> = f
                .locations
                .iter()
                .filter(|r| after.is_none_or(|k| key(r) > k))
                .cloned()
                .collect();
            rows.sort_by_key(key);
            rows
        } else if sql
            .contains(" FROM transaction f JOIN transactionline tl ON tl.transaction = f.id ")
        {
            // Item fulfilments ("Records Catalog": transaction type 'ItemShip', its lines'
            // createdfrom = the sales order), keyset-paged by (fulfilment id, line id).
            if !sql.ends_with(" ORDER BY f.id, tl.id") {
                f.breaches.push(format!("unstable order: {sql}"));
            }
            if !sql.contains("WHERE f.type = 'ItemShip' AND tl.mainline = 'F'") {
                f.breaches.push(format!("not item fulfilment lines: {sql}"));
            }
            if offset != 0 {
                f.breaches
                    .push(format!("fulfilments paged by offset {offset}, not by key"));
            }
            let num = |v: &Value| v.as_str().unwrap_or("").parse::<i64>().unwrap_or(-1);
            let after: Option<i64> = sql
                .split(" AND f.id > ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|k| k.parse().ok());
            let since = sql
                .split("TO_TIMESTAMP('")
                .nth(1)
                .and_then(|r| r.split('\'').next())
                .map(str::to_string);
            let mut rows: Vec<Value> = f
                .fulfilment_lines
                .iter()
                .filter(|r| after.is_none_or(|k| num(&r["id"]) > k))
                .filter(|r| {
                    since
                        .as_ref()
                        .is_none_or(|s| r["modified"].as_str().unwrap_or("") >= s.as_str())
                })
                .cloned()
                .collect();
            rows.sort_by_key(|r| (num(&r["id"]), num(&r["line"])));
            // A fulfilment line's quantity is stored negative (stock going out); the query
            // asks for its absolute value.
            if sql.contains(" ABS(tl.quantity) AS quantity ") {
                for r in &mut rows {
                    let q = num(&r["quantity"]).abs();
                    r["quantity"] = json!(format!("{q}"));
                }
            }
            rows
        } else if sql.starts_with("SELECT id FROM customer WHERE email = '") {
            let email = sql.split('\'').nth(1).unwrap_or("").to_string();
            f.customers
                .iter()
                .filter(|c| c["email"] == email.as_str())
                .map(|c| json!({"id": c["id"]}))
                .collect()
        } else if sql.starts_with("SELECT id, itemid FROM item WHERE itemid IN (") {
            let wanted: Vec<String> = sql
                .split('\'')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            f.items
                .iter()
                .filter(|i| wanted.iter().any(|w| i["itemid"] == w.as_str()))
                .map(|i| json!({"id": i["id"], "itemid": i["itemid"]}))
                .collect()
        } else if sql.contains(" FROM item") {
            if !sql.ends_with("ORDER BY lastmodifieddate, id") {
                f.breaches.push(format!("unstable order: {sql}"));
            }
            let since = sql
                .split("TO_TIMESTAMP('")
                .nth(1)
                .and_then(|r| r.split('\'').next())
                .map(str::to_string);
            let mut rows: Vec<Value> = f
                .items
                .iter()
                .filter(|i| {
                    since
                        .as_ref()
                        .is_none_or(|s| i["modified"].as_str().unwrap_or("") >= s.as_str())
                })
                .cloned()
                .collect();
            rows.sort_by_key(|i| {
                (
                    i["modified"].as_str().unwrap_or("").to_string(),
                    i["id"].as_str().unwrap_or("").parse::<i64>().unwrap_or(0),
                )
            });
            rows
        } else {
            f.breaches.push(format!("unexpected query: {sql}"));
            Vec::new()
        };
        let end = (offset + limit).min(rows.len());
        let page: Vec<Value> = rows[offset.min(end)..end].to_vec();
        let has_more = end < rows.len();
        let mut links = vec![json!({"rel": "self", "href": format!("{uri}")})];
        if has_more {
            links.push(json!({"rel": "next", "href": format!("/services/rest/query/v1/suiteql?limit={limit}&offset={end}")}));
        }
        f.in_flight -= 1;
        json!({"links": links, "count": page.len(), "hasMore": has_more, "items": page, "offset": offset, "totalResults": rows.len()})
    };
    reply(200, answer)
}

// PUT /services/rest/record/v1/{type}/eid:{externalId} — "Upsert Operation": creates the record
// or updates the one with that external id; 204 No Content.
async fn upsert(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((ty, eid)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let slow;
    let hold;
    {
        let mut f = s.lock().unwrap();
        if let Some(r) = admit(&mut f, &method, &uri, &headers, &host(&headers)) {
            return r;
        }
        let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let Some(ext) = eid.strip_prefix("eid:") else {
            f.in_flight -= 1;
            f.breaches.push(format!("upsert without eid: {eid}"));
            return error(400, "INVALID_ID", "bad id");
        };
        if b["externalId"] != ext {
            f.breaches
                .push(format!("externalId {} ≠ path {ext}", b["externalId"]));
        }
        match ty.as_str() {
            "salesOrder" => {
                if b["entity"]["id"].as_str().is_none() {
                    f.in_flight -= 1;
                    return error(
                        400,
                        "USER_ERROR",
                        "Error while accessing a resource. Please enter value(s) for: Customer.",
                    );
                }
                let lines = b["item"]["items"].as_array().cloned().unwrap_or_default();
                if lines.is_empty() || lines.iter().any(|l| l["item"]["id"].as_str().is_none()) {
                    f.breaches.push(format!("order lines {b}"));
                }
                f.orders.insert(ext.to_string(), b);
            }
            "customer" => {
                if b["subsidiary"]["id"].as_str().is_none() {
                    f.breaches.push(format!("customer without subsidiary {b}"));
                }
                let id = format!("{}", 500 + f.customers.len());
                f.customers.retain(|c| c["externalId"] != ext);
                let mut c = b.clone();
                c["id"] = json!(id);
                f.customers.push(c);
            }
            other => f.breaches.push(format!("upsert of {other}")),
        }
        f.upserts += 1;
        slow = f.slow_next_upsert.take();
        hold = f.hold;
    }
    // The slot is held while NetSuite processes the request, then freed (also when the client
    // hangs up and the handler is dropped); a slow answer is only late on the wire.
    {
        let _slot = Slot(s.clone());
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
        }
    }
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// A request's concurrency slot: freed when dropped.
struct Slot(Shared);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut f) = self.0.lock() {
            f.in_flight -= 1;
        }
    }
}

// POST /services/rest/record/v1/inventoryAdjustment — REST API Browser, inventoryAdjustment:
// `account` and `adjLocation` required, the `inventory` sublist's items each with item,
// location and adjustQtyBy (added to the quantity on hand); 204 No Content (a created record).
async fn adjustment(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let slow;
    {
        let mut f = s.lock().unwrap();
        if let Some(r) = admit(&mut f, &method, &uri, &headers, &host(&headers)) {
            return r;
        }
        let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if b["account"]["id"].as_str().is_none() || b["adjLocation"]["id"].as_str().is_none() {
            f.in_flight -= 1;
            return error(
                400,
                "USER_ERROR",
                "Please enter value(s) for: Adjustment Account, Adjustment Location.",
            );
        }
        let items = b["inventory"]["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if items.is_empty() {
            f.breaches.push(format!("adjustment without items {b}"));
        }
        for it in &items {
            let (Some(item), Some(loc), Some(by)) = (
                it["item"]["id"].as_str(),
                it["location"]["id"].as_str(),
                it["adjustQtyBy"].as_i64(),
            ) else {
                f.breaches.push(format!("adjustment item {it}"));
                continue;
            };
            if by == 0 {
                f.breaches.push(format!("adjustment by 0: {it}"));
            }
            match f
                .locations
                .iter_mut()
                .find(|r| r["item_id"] == item && r["location_id"] == loc)
            {
                Some(r) => {
                    let now = r["quantityonhand"]
                        .as_str()
                        .and_then(|q| q.parse::<i64>().ok())
                        .unwrap_or(0)
                        + by;
                    r["quantityonhand"] = json!(format!("{now}"));
                }
                None => f
                    .breaches
                    .push(format!("adjustment of unknown {item}@{loc}")),
            }
        }
        f.adjustments.push(b);
        f.in_flight -= 1;
        slow = f.slow_next_adjustment.take();
    }
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    StatusCode::NO_CONTENT.into_response()
}

struct Contract {
    url: String,
    account: Shared,
}

impl Contract {
    async fn start(limit: usize) -> Contract {
        let account: Shared = Arc::new(Mutex::new(Account {
            limit,
            ..Account::default()
        }));
        let app = Router::new()
            .route("/services/rest/query/v1/suiteql", post(suiteql))
            .route("/services/rest/record/v1/{ty}/{eid}", put(upsert))
            .route(
                "/services/rest/record/v1/inventoryAdjustment",
                post(adjustment),
            )
            .with_state(account.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Contract { url, account }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Account) -> R) -> R {
        f(&mut self.account.lock().unwrap())
    }

    fn connector(&self, timeout: Duration) -> HttpConnector {
        let mut spec = EndpointSpec::new(
            "netsuite",
            "http",
            &self.url,
            json!({"preset": "netsuite",
                   "auth": {"consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET, "token": TOKEN,
                            "token_secret": TOKEN_SECRET, "realm": REALM},
                   "rate_limit": {"concurrency": 2},
                   "vars": {"default_customer": "77", "adjustment_account": "310"}}),
        );
        spec.timeout = timeout;
        spec.allow_insecure_http = true;
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
    for _ in 0..60 {
        let req = ReadRequest {
            kind,
            cursor: cursor.as_deref(),
            limit: 4,
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
    panic!("more than 60 pages");
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
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            other => return (other, failures),
        }
    }
}

fn order(item: i64, number: &str, email: &str) -> WriteOp {
    WriteOp {
        item_id: item,
        kind: Kind::Order,
        key: format!("shop/{number}"),
        op: "create".into(),
        payload: json!({"channel": "shop", "number": number, "customer": {"email": email}, "currency": "USD",
            "placed_at": "2026-12-04T09:15:00Z", "lines": [{"sku": "A-1", "quantity": 2, "unit_price_minor": 1250},
                                                          {"sku": "A-2", "quantity": 1, "unit_price_minor": 990}]}),
        external_id: None,
        refs: BTreeMap::new(),
    }
}

#[tokio::test]
async fn a_day_signed_requests_suiteql_pages_upserts_and_concurrency_governance() {
    let ns = Contract::start(2).await;
    let c = ns.connector(Duration::from_millis(700));
    // The account's concurrency limit is the endpoint's cap (the engine never runs more).
    assert_eq!(c.capabilities().rate_limit.max_concurrency, Some(2));
    ns.with(|f| {
        for n in 1..=10 {
            f.items.push(json!({"id": format!("{}", 100 + n), "itemid": format!("A-{n}"), "displayname": format!("Item {n}"),
                "upccode": null, "isinactive": if n == 10 { "T" } else { "F" },
                "modified": format!("2026-12-0{}T10:00:{n:02}", if n <= 4 { 3 } else { 4 })}));
            for (lid, loc) in [(2, "WH2"), (1, "WH")] {
                f.locations.push(json!({"item_id": format!("{}", 100 + n), "location_id": format!("{lid}"),
                    "sku": format!("A-{n}"), "location": loc, "quantityonhand": format!("{}", n * 3),
                    "quantitycommitted": "1", "quantityonorder": if loc == "WH2" { "4" } else { "0" }}));
            }
        }
        f.customers.push(json!({"id": "501", "email": "buyer@acme.example", "externalId": "buyer@acme.example"}));
    });

    // Morning: products changed since yesterday (6 on 2 pages of 4), stock (20 rows on 5 pages).
    let (products, _) = read_all(
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
    for p in &products {
        concord_core::model::validate(Kind::Product, &p.record)
            .unwrap_or_else(|e| panic!("{e:?}: {}", p.record));
    }
    assert_eq!(
        products
            .iter()
            .find(|p| p.external_id == "110")
            .unwrap()
            .record["active"],
        false
    );
    let (stock, _) = read_all(&c, Kind::Stock, None, true).await;
    assert_eq!(stock.len(), 20);
    let ids: BTreeSet<&String> = stock.iter().map(|s| &s.external_id).collect();
    assert_eq!(ids.len(), 20, "every row once across the keyset pages");
    let s = stock.iter().find(|s| s.external_id == "A-3@WH2").unwrap();
    assert_eq!(
        s.record,
        json!({"sku": "A-3", "location": "WH2", "on_hand": 9, "committed": 1, "incoming": [{"quantity": 4}]})
    );
    concord_core::model::validate(Kind::Stock, &s.record).unwrap();

    // An order from a known customer: upserted under its reference, lines by item id.
    let (out, _) = deliver(&c, order(1, "1001", "buyer@acme.example")).await;
    assert!(
        matches!(&out, WriteOutcome::Done { external_id: Some(id), .. } if id == "eid:shop/1001"),
        "{out:?}"
    );
    ns.with(|f| {
        let o = &f.orders["shop/1001"];
        assert_eq!(o["entity"]["id"], "501");
        assert_eq!(o["item"]["items"], json!([{"item": {"id": "101"}, "quantity": 2, "rate": 12.5}, {"item": {"id": "102"}, "quantity": 1, "rate": 9.9}]));
    });

    // The account's other integrations hold every slot: NetSuite answers 429
    // CONCURRENCY_LIMIT_EXCEEDED, the write is rate limited and goes through once a slot frees.
    ns.with(|f| f.held_elsewhere = 2);
    let release = {
        let account = ns.account.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            account.lock().unwrap().held_elsewhere = 1;
        })
    };
    // A new customer's order whose answer is lost (the client times out after NetSuite applied
    // it): the retry upserts the same external id; one order.
    ns.with(|f| f.slow_next_upsert = Some(Duration::from_millis(1200)));
    let (out, failures) = deliver(&c, order(2, "1002", "new@example.com")).await;
    release.await.unwrap();
    assert!(matches!(out, WriteOutcome::Done { .. }), "{out:?}");
    assert!(
        failures
            .iter()
            .any(|e| matches!(e, DeliveryError::RateLimited { .. })),
        "{failures:?}"
    );
    assert!(
        failures.iter().any(|e| e.to_string().contains("timed out")),
        "{failures:?}"
    );
    ns.with(|f| {
        assert_eq!(f.orders.len(), 2);
        assert_eq!(
            f.orders["shop/1002"]["entity"]["id"], "77",
            "the default customer"
        );
        assert!(f.refused >= 1);
    });

    // A customer upserted by e-mail, twice: one record.
    let cust = |item: i64, name: &str| WriteOp {
        item_id: item,
        kind: Kind::Customer,
        key: "jo@example.com".into(),
        op: "upsert".into(),
        payload: json!({"email": "jo@example.com", "name": name}),
        external_id: None,
        refs: BTreeMap::new(),
    };
    deliver(&c, cust(3, "Jo")).await;
    let (out, _) = deliver(&c, cust(4, "Jo Smith")).await;
    assert!(
        matches!(&out, WriteOutcome::Done { external_id: Some(id), .. } if id == "eid:jo@example.com"),
        "{out:?}"
    );
    ns.with(|f| {
        let jo: Vec<&Value> = f
            .customers
            .iter()
            .filter(|c| c["externalId"] == "jo@example.com")
            .collect();
        assert_eq!(jo.len(), 1);
        assert_eq!(jo[0]["lastName"], "Smith");
    });

    // Afternoon: the warehouse fulfils the orders in NetSuite. Item fulfilments come back as
    // shipments of the order named by the sales order's external id, with the first tracking
    // number of the fulfilment's list. Pages of 4 lines: 902's lines straddle the first page's
    // end and still come as one shipment of two lines; 903 has more lines than a page.
    ns.with(|f| {
        let mut line = |id: &str,
                        line: i64,
                        modified: &str,
                        tracking: Option<&str>,
                        reference: &str,
                        sku: &str,
                        q: i64| {
            f.fulfilment_lines.push(
                json!({"id": id, "tranid": format!("IF{id}"), "shipped": &modified[0..10],
                "modified": modified, "tracking": tracking, "reference": reference, "sku": sku,
                "line": format!("{line}"), "quantity": format!("{}", -q)}),
            );
        };
        line(
            "850",
            1,
            "2026-12-03T17:00:00",
            Some("OLD"),
            "shop/0999",
            "A-1",
            1,
        );
        line(
            "901",
            1,
            "2026-12-04T15:00:00",
            Some("1Z111, 1Z112"),
            "shop/1001",
            "A-1",
            2,
        );
        line(
            "901",
            2,
            "2026-12-04T15:00:00",
            Some("1Z111, 1Z112"),
            "shop/1001",
            "A-2",
            1,
        );
        line("902", 1, "2026-12-04T16:30:00", None, "shop/1002", "A-1", 2);
        line("902", 2, "2026-12-04T16:30:00", None, "shop/1002", "A-2", 1);
        for l in 1..=5 {
            line(
                "903",
                l,
                "2026-12-04T16:00:00",
                Some("1Z999"),
                "shop/1003",
                &format!("A-{l}"),
                1,
            );
        }
    });
    let (ships, cursor) = read_all(
        &c,
        Kind::Shipment,
        Some("2026-12-04T12:00:00Z".into()),
        false,
    )
    .await;
    let ids: Vec<&String> = ships.iter().map(|s| &s.external_id).collect();
    assert_eq!(
        ids,
        ["901", "902", "903"],
        "each fulfilment once, none before the cursor"
    );
    assert_eq!(
        cursor
            .as_deref()
            .map(|c| c.contains("2026-12-04T16:30:00Z")),
        Some(true),
        "{cursor:?}"
    );
    let ship = |id: &str| {
        ships
            .iter()
            .find(|s| s.external_id == id)
            .map(|s| s.record.clone())
            .unwrap_or_else(|| panic!("shipment {id}"))
    };
    assert_eq!(
        ship("901"),
        json!({"id": "901", "order": "shop/1001", "status": "shipped", "tracking_number": "1Z111",
               "lines": [{"sku": "A-1", "quantity": 2}, {"sku": "A-2", "quantity": 1}],
               "shipped_at": "2026-12-04T00:00:00Z"})
    );
    assert_eq!(ship("902")["tracking_number"], Value::Null);
    assert_eq!(
        ship("902")["lines"],
        json!([{"sku": "A-1", "quantity": 2}, {"sku": "A-2", "quantity": 1}]),
        "a fulfilment straddling a page boundary is read whole"
    );
    for id in ["901", "902"] {
        concord_core::model::validate(Kind::Shipment, &ship(id))
            .unwrap_or_else(|e| panic!("{e:?}: {}", ship(id)));
    }
    // More lines than a page: not cut short silently, an invalid record (dead-lettered).
    assert_eq!(ship("903")["lines"], Value::Null);
    assert!(concord_core::model::validate(Kind::Shipment, &ship("903")).is_err());

    // A warehouse system is the stock master for A-3: its figures go into NetSuite as inventory
    // adjustments of the difference to the quantity on hand read (9 at WH2 → 12: +3; 9 at WH →
    // 5: −4), none when the figure is already there; an adjustment whose answer is lost after
    // NetSuite applied it is not posted again (the retry reads 20 and finds nothing to do).
    let stock = |item: i64, loc: &str, on_hand: i64| WriteOp {
        item_id: item,
        kind: Kind::Stock,
        key: format!("A-3@{loc}"),
        op: "upsert".into(),
        payload: json!({"sku": "A-3", "location": loc, "on_hand": on_hand, "committed": 0}),
        external_id: None,
        refs: BTreeMap::new(),
    };
    for (item, loc, on_hand) in [(30, "WH2", 12), (31, "WH", 5), (32, "WH2", 12)] {
        let (out, _) = deliver(&c, stock(item, loc, on_hand)).await;
        assert!(matches!(out, WriteOutcome::Done { .. }), "{out:?}");
    }
    ns.with(|f| f.slow_next_adjustment = Some(Duration::from_millis(1200)));
    let (out, failures) = deliver(&c, stock(33, "WH2", 20)).await;
    assert!(matches!(out, WriteOutcome::Done { .. }), "{out:?}");
    assert!(
        failures.iter().any(|e| e.to_string().contains("timed out")),
        "{failures:?}"
    );
    ns.with(|f| {
        let on_hand = |loc: &str| {
            f.locations
                .iter()
                .find(|r| r["sku"] == "A-3" && r["location"] == loc)
                .map(|r| r["quantityonhand"].clone())
        };
        assert_eq!(on_hand("WH2"), Some(json!("20")));
        assert_eq!(on_hand("WH"), Some(json!("5")));
        let by: Vec<(Value, Value, Value)> = f
            .adjustments
            .iter()
            .map(|a| {
                let it = &a["inventory"]["items"][0];
                (
                    a["account"]["id"].clone(),
                    it["location"]["id"].clone(),
                    it["adjustQtyBy"].clone(),
                )
            })
            .collect();
        assert_eq!(
            by,
            [
                (json!("310"), json!("2"), json!(3)),
                (json!("310"), json!("1"), json!(-4)),
                (json!("310"), json!("2"), json!(8)),
            ]
        );
    });

    ns.with(|f| {
        assert_eq!(f.in_flight, 0);
        assert!(f.breaches.is_empty(), "contract breaches: {:?}", f.breaches);
    });
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_signature_check() {
    let ns = Contract::start(5).await;
    let mut spec = EndpointSpec::new(
        "netsuite",
        "http",
        &ns.url,
        json!({"preset": "netsuite",
               "auth": {"consumer_key": CONSUMER_KEY, "consumer_secret": "not-the-secret", "token": TOKEN,
                        "token_secret": TOKEN_SECRET, "realm": REALM}}),
    );
    spec.allow_insecure_http = true;
    let c = HttpConnector::new(&spec).unwrap();
    let e = c
        .read_snapshot(ReadRequest {
            kind: Kind::Stock,
            cursor: None,
            limit: 10,
            overlap: Duration::ZERO,
        })
        .await
        .unwrap_err();
    assert!(matches!(e, DeliveryError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains("401"), "{e}");
    assert!(ns.with(|f| f
        .breaches
        .iter()
        .any(|b| b.starts_with("signature mismatch"))));
}

// ---- through the engine ---------------------------------------------------------------------

/// The real engine over a real SQLite store: a shop posts 20 orders (signed webhooks), the
/// engine aggregates them into NetSuite through the preset while the account's other
/// integrations take every slot in bursts (a storm of 429 CONCURRENCY_LIMIT_EXCEEDED). Each
/// upsert holds its slot for a while, so Concord's own requests in flight are what the
/// account sees. Every order ends in NetSuite once, and no request of Concord's arrived while its
/// own requests already filled the account's limit (0 violations of the published budget).
#[tokio::test]
async fn through_the_engine_orders_arrive_once_through_a_concurrency_storm() {
    use concord_connectors::http::config::{Algorithm, Encoding};
    use concord_connectors::http::webhook::sign;
    use concord_testkit::wait_until;

    let ns = Contract::start(2).await;
    ns.with(|f| {
        f.hold = Duration::from_millis(40);
        for n in 1..=3 {
            f.items
                .push(json!({"id": format!("{}", 100 + n), "itemid": format!("A-{n}")}));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[store]
path = "{store}"
[endpoints.shop]
connector = "http"
url = "{url}"
webhook_secret = "shop-secret"
[endpoints.shop.options.webhook]
signature = {{ header = "x-sig" }}
records = ".orders"
routes = [{{ kind = "order", id = '"shop/\(.number)"', version = ".updated_at", map = "del(.updated_at)" }}]
[endpoints.netsuite]
connector = "http"
url = "{url}"
allow_insecure_http = true
[endpoints.netsuite.options]
preset = "netsuite"
auth = {{ consumer_key = "{ck}", consumer_secret = "{cs}", token = "{tk}", token_secret = "{ts}", realm = "{realm}" }}
rate_limit = {{ concurrency = 2 }}
vars = {{ default_customer = "77" }}
[[flows]]
name = "orders"
kind = "order"
pattern = "aggregation"
mode = "realtime"
from = ["shop"]
to = ["netsuite"]
"#,
        store = dir.path().join("hub.sqlite").display(),
        url = ns.url,
        ck = CONSUMER_KEY,
        cs = CONSUMER_SECRET,
        tk = TOKEN,
        ts = TOKEN_SECRET,
        realm = REALM,
    );
    let (engine, _store, mut tasks) = support::start_engine(&text, dir.path()).await;

    // The storm: the account's other integrations hold every slot for 300 ms of every 500 ms.
    let storm = {
        let account = ns.account.clone();
        tokio::spawn(async move {
            for _ in 0..6 {
                account.lock().unwrap().held_elsewhere = 2;
                tokio::time::sleep(Duration::from_millis(300)).await;
                account.lock().unwrap().held_elsewhere = 0;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    for batch in 0..4 {
        let orders: Vec<Value> = (1..=5)
            .map(|i| {
                let n = batch * 5 + i;
                json!({"channel": "shop", "number": format!("{}", 2000 + n), "customer": {"email": format!("b{n}@example.com")},
                       "currency": "USD", "placed_at": "2026-12-04T09:15:00Z", "updated_at": format!("2026-12-04T09:{n:02}:00Z"),
                       "lines": [{"sku": format!("A-{}", 1 + n % 3), "quantity": 1 + n % 2, "unit_price_minor": 1250}]})
            })
            .collect();
        let body = json!({"orders": orders}).to_string().into_bytes();
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-sig",
            sign(Algorithm::Sha256, Encoding::Hex, b"shop-secret", &body)
                .parse()
                .unwrap(),
        );
        engine.capture_webhook("shop", &h, &body).await.unwrap();
    }
    wait_until(
        "every order in NetSuite",
        Duration::from_secs(60),
        async || ns.with(|f| f.orders.len()) == 20,
    )
    .await;
    storm.await.unwrap();
    engine.shutdown();
    while tasks.join_next().await.is_some() {}
    ns.with(|f| {
        for n in 1..=20 {
            let o = &f.orders[&format!("shop/{}", 2000 + n)];
            assert_eq!(o["entity"]["id"], "77");
            assert_eq!(
                o["item"]["items"],
                json!([{"item": {"id": format!("{}", 101 + n % 3)}, "quantity": 1 + n % 2, "rate": 12.5}])
            );
        }
        assert_eq!(f.orders.len(), 20, "one sales order per order");
        assert!(f.refused >= 1, "the storm was felt: {} refused", f.refused);
        assert_eq!(f.violations, 0, "Concord exceeded the account's concurrency limit");
        assert!(f.breaches.is_empty(), "contract breaches: {:?}", f.breaches);
    });
}

/// The real engine: NetSuite's item locations broadcast to a channel (a stand-in that stores
/// what it is given) by a `batch` flow every second, as the preset says to run stock. The signed
/// SuiteQL listing reaches the channel whole, a figure changed in NetSuite reaches it on a later
/// run, and no request breaches the contract.
#[tokio::test]
async fn through_the_engine_the_stock_listing_reaches_the_channel() {
    use concord_testkit::wait_until;

    let ns = Contract::start(2).await;
    ns.with(|f| {
        for n in 1..=10 {
            for (lid, loc) in [(1, "WH"), (2, "WH2")] {
                f.locations.push(json!({"item_id": format!("{}", 100 + n), "location_id": format!("{lid}"),
                    "sku": format!("A-{n}"), "location": loc, "quantityonhand": format!("{}", n * 3),
                    "quantitycommitted": "1", "quantityonorder": "0"}));
            }
        }
    });
    // The channel: PUT /stock/{sku}/{location} stores the body.
    let (channel, channel_url) = support::stock_channel().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[store]
path = "{store}"
[endpoints.netsuite]
connector = "http"
url = "{url}"
[endpoints.netsuite.options]
preset = "netsuite"
auth = {{ consumer_key = "{ck}", consumer_secret = "{cs}", token = "{tk}", token_secret = "{ts}", realm = "{realm}" }}
rate_limit = {{ concurrency = 2 }}
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
from = ["netsuite"]
to = ["shop"]
[flows.map_out]
"*" = '{{sku, location, available: ([.on_hand - .committed, 0] | max)}}'
"#,
        store = dir.path().join("hub.sqlite").display(),
        url = ns.url,
        ck = CONSUMER_KEY,
        cs = CONSUMER_SECRET,
        tk = TOKEN,
        ts = TOKEN_SECRET,
        realm = REALM,
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
        "every item location at the channel",
        Duration::from_secs(30),
        async || {
            (1..=10).all(|n| {
                ["WH", "WH2"]
                    .iter()
                    .all(|l| available(&format!("A-{n}@{l}")) == Some(n * 3 - 1))
            })
        },
    )
    .await;
    // A receipt in NetSuite: A-4 at WH2 now 50 on hand.
    ns.with(|f| {
        let row = f
            .locations
            .iter_mut()
            .find(|r| r["sku"] == "A-4" && r["location"] == "WH2")
            .expect("A-4@WH2");
        row["quantityonhand"] = json!("50");
    });
    wait_until(
        "A-4@WH2 at its new figure",
        Duration::from_secs(30),
        async || available("A-4@WH2") == Some(49),
    )
    .await;
    engine.shutdown();
    while tasks.join_next().await.is_some() {}
    assert_eq!(channel.lock().unwrap().len(), 20);
    ns.with(|f| {
        assert_eq!(f.violations, 0);
        assert!(f.breaches.is_empty(), "contract breaches: {:?}", f.breaches);
    });
}

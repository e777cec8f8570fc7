//! The `shopify` preset of the `http` connector against a contract server that follows the
//! Shopify Admin GraphQL API 2026-01 as documented on shopify.dev (each request below cites the
//! page it follows). We cannot reach Shopify from here; this server checks what Concord sends
//! (method, path, access token, GraphQL operation and variables, the @idempotent directive,
//! compare-and-set figures) and answers as the documentation says, including its errors
//! (`userErrors` codes, `THROTTLED`) and its calculated-query-cost bucket. Every answer carries
//! `extensions.cost` as documented, and the server counts requests that arrive while the bucket
//! cannot cover them (violations of the published budget) — the tests assert there are none
//! beyond the one throttle they provoke.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use concord_connectors::http::config::{Algorithm, Encoding};
use concord_connectors::http::webhook::sign;
use concord_connectors::http::HttpConnector;
use concord_core::Kind;
use concord_engine::connector::{
    Captured, Connector, DeliveryError, EndpointSpec, ReadRequest, WriteOp, WriteOutcome,
};
use concord_testkit::wait_until;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "shpat_contract";
const PATH: &str = "/admin/api/2026-01/graphql.json";
const WH: &str = "gid://shopify/Location/1";
const WH2: &str = "gid://shopify/Location/2";

// ---- the contract server --------------------------------------------------------------------

/// A fulfilment order: its id and its lines (line id, sku, remaining quantity).
type FulfilmentOrder = (String, Vec<(String, String, i64)>);

#[derive(Default)]
struct Shop {
    /// Contract breaches seen (wrong method, token, missing directive, …): must stay empty.
    breaches: Vec<String>,
    requests: usize,
    // The calculated-query-cost bucket (https://shopify.dev/docs/api/usage/limits, "leaky
    // bucket"; https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits).
    bucket: f64,
    bucket_at: Option<Instant>,
    throttled: usize,
    /// Throttles the test provoked itself (by draining the bucket).
    provoked: usize,
    // Catalogue: sku → (variant id, inventory item id, product id).
    variants: BTreeMap<String, (String, String, String)>,
    products: BTreeMap<String, String>,
    /// (inventory item id, location id) → available.
    levels: BTreeMap<(String, String), i64>,
    /// Applied inventorySetQuantities, per inventory item.
    sets: BTreeMap<String, usize>,
    /// @idempotent keys: key → (variables, answer).
    idempotent: BTreeMap<String, (Value, Value)>,
    /// Before the next inventorySetQuantities, someone sells this many of every item (the
    /// compare-and-set must then fail as stale).
    sell_before_next_set: Option<i64>,
    /// Answer the next inventorySetQuantities this late (after applying it): a lost answer.
    slow_next_set: Option<Duration>,
    orders: Vec<Value>,
    /// order id → fulfilment orders (id, [(line id, sku, remaining)]).
    fulfillment_orders: BTreeMap<String, Vec<FulfilmentOrder>>,
    /// order id → fulfilments (id, tracking number).
    fulfillments: BTreeMap<String, Vec<(String, Option<String>)>>,
    slow_next_fulfil: Option<Duration>,
    // Bulk query operations (shopify.dev/docs/api/usage/bulk-operations/queries).
    /// Jobs: (id, polls so far, errorCode it fails with, its JSONL result, object count).
    jobs: Vec<(String, usize, Option<String>, String, usize)>,
    /// Jobs running at once per shop: five from 2026-01 (the guide), one before.
    max_running: usize,
    /// Polls a job answers CREATED, then RUNNING, before it ends.
    polls_to_end: usize,
    /// The next job ends FAILED with this errorCode.
    next_job_fails: Option<String>,
    starts: usize,
    /// The download origin: files served, and requests that carried the shop's token.
    files_url: String,
    downloads: usize,
    token_sent_to_files: usize,
}

const BUCKET_MAX: f64 = 100.0;
const RESTORE: f64 = 200.0;

type Shared = Arc<Mutex<Shop>>;

impl Shop {
    fn refill(&mut self) {
        let now = Instant::now();
        let at = self.bucket_at.unwrap_or(now);
        self.bucket =
            (self.bucket + now.duration_since(at).as_secs_f64() * RESTORE).min(BUCKET_MAX);
        self.bucket_at = Some(now);
    }

    fn cost(&self, requested: f64) -> Value {
        json!({"requestedQueryCost": requested, "actualQueryCost": requested,
               "throttleStatus": {"maximumAvailable": BUCKET_MAX, "currentlyAvailable": self.bucket,
                                  "restoreRate": RESTORE}})
    }
}

fn reply(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn op_name(query: &str) -> String {
    // "query Orders(…" / "mutation Set(…": the operation's keyword and name.
    query
        .split(['(', '{'])
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

fn user_error(field: &str, code: &str, message: &str) -> Value {
    json!([{"field": [field], "code": code, "message": message}])
}

async fn graphql(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let query = doc["query"].as_str().unwrap_or("").to_string();
    let vars = doc["variables"].clone();
    let name = op_name(&query);
    let mut slow = None;
    let answer = {
        let mut f = s.lock().unwrap();
        f.requests += 1;
        // Authentication: "All GraphQL Admin API requests require a valid Shopify access
        // token … X-Shopify-Access-Token header" (shopify.dev/docs/api/admin-graphql#authentication).
        if headers
            .get("x-shopify-access-token")
            .and_then(|v| v.to_str().ok())
            != Some(TOKEN)
        {
            f.breaches.push(format!("{name}: no or wrong access token"));
            return (
                StatusCode::UNAUTHORIZED,
                "[API] Invalid API key or access token",
            )
                .into_response();
        }
        if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
            f.breaches
                .push(format!("{name}: content-type is not application/json"));
        }
        if !vars.is_object() {
            f.breaches
                .push(format!("{name}: variables is not an object"));
        }
        // Cost: each request costs its requested points; without them the answer is THROTTLED
        // (rate-limits page: `{"errors":[{"message":"Throttled","extensions":{"code":
        // "THROTTLED"}}],"extensions":{"cost":{…}}}`, HTTP 200).
        let requested = if name == "query Orders" || name == "query OrderRefunds" {
            30.0
        } else {
            10.0
        };
        f.refill();
        if f.bucket < requested {
            f.throttled += 1;
            let cost = f.cost(requested);
            return reply(json!({"errors": [{"message": "Throttled",
                "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/limits"}}],
                "extensions": {"cost": cost}}));
        }
        f.bucket -= requested;
        let data = match name.as_str() {
            // orders(first, after, query, sortKey) — shopify.dev/docs/api/admin-graphql/2026-01/
            // queries/orders: search syntax `updated_at:>='…'`, cursor pagination (pageInfo),
            // `first` at most 250.
            // The same orders query selecting Order.refunds (objects/Refund: id, createdAt,
            // note, totalRefundedSet, refundLineItems { quantity restockType lineItem { sku } });
            // `refunds(first:)` is a list, refundLineItems a connection.
            "query Orders" | "query OrderRefunds" => {
                if name == "query OrderRefunds"
                    && !(query.contains("refunds(first: ")
                        && query.contains("totalRefundedSet { shopMoney { amount currencyCode } }")
                        && query.contains("refundLineItems(first: ")
                        && query.contains("nodes { quantity restockType lineItem { sku } }"))
                {
                    f.breaches.push(format!("refund selection `{query}`"));
                }
                if !query.contains("sortKey: UPDATED_AT") {
                    f.breaches.push("orders not sorted by UPDATED_AT".into());
                }
                let first = vars["first"].as_u64().unwrap_or(0) as usize;
                if first == 0 || first > 250 {
                    f.breaches.push(format!("orders first = {first}"));
                }
                let since = vars["query"].as_str().map(|q| {
                    q.strip_prefix("updated_at:>='")
                        .and_then(|r| r.strip_suffix('\''))
                        .map(str::to_string)
                        .unwrap_or_else(|| {
                            f.breaches.push(format!("search query `{q}`"));
                            String::new()
                        })
                });
                let mut all: Vec<Value> = f
                    .orders
                    .iter()
                    .filter(|o| {
                        since
                            .as_ref()
                            .is_none_or(|s| o["updatedAt"].as_str().unwrap_or("") >= s.as_str())
                    })
                    .cloned()
                    .collect();
                all.sort_by(|a, b| a["updatedAt"].as_str().cmp(&b["updatedAt"].as_str()));
                let start = vars["after"]
                    .as_str()
                    .and_then(|c| c.strip_prefix('c'))
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                let end = (start + first).min(all.len());
                json!({"orders": {"nodes": all[start.min(end)..end],
                    "pageInfo": {"hasNextPage": end < all.len(), "endCursor": format!("c{end}")}}})
            }
            // productVariants(first, query: "sku:…") with inventoryItem.inventoryLevel(locationId)
            // .quantities(names: ["available"]) — shopify.dev/docs/api/admin-graphql/2026-01/
            // queries/productVariants, objects/InventoryLevel.
            "query Level" | "query Variant" => {
                let q = vars["query"].as_str().unwrap_or("");
                let sku: String = q
                    .strip_prefix("sku:")
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or_else(|| {
                        f.breaches.push(format!("variant search `{q}`"));
                        String::new()
                    });
                let loc = vars["location"].as_str().unwrap_or("").to_string();
                let nodes: Vec<Value> = f
                    .variants
                    .get(&sku)
                    .map(|(v, item, product)| {
                        let level = f.levels.get(&(item.clone(), loc.clone())).map(|q| {
                            json!({"id": format!("{item}@{loc}"), "quantities": [{"name": "available", "quantity": q}]})
                        });
                        json!({"id": v, "sku": sku, "product": {"id": product},
                               "inventoryItem": {"id": item, "inventoryLevel": level}})
                    })
                    .into_iter()
                    .collect();
                json!({"productVariants": {"nodes": nodes}})
            }
            // inventorySetQuantities(input) @idempotent(key:) — shopify.dev/docs/api/admin-graphql/
            // 2026-01/mutations/inventorySetQuantities: compare-and-set on changeFromQuantity
            // (CHANGE_FROM_QUANTITY_STALE), an idempotency key replays the first answer and refuses
            // other parameters (IDEMPOTENCY_KEY_PARAMETER_MISMATCH; enums/
            // InventorySetQuantitiesUserErrorCode). Required from 2026-04, checked here already.
            "mutation Set" => {
                let key = query
                    .split("@idempotent(key: \"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .map(str::to_string);
                let Some(key) = key else {
                    f.breaches
                        .push("inventorySetQuantities without @idempotent".into());
                    return reply(json!({"errors": [{"message": "missing @idempotent"}]}));
                };
                if let Some((seen, answer)) = f.idempotent.get(&key).cloned() {
                    if seen != vars {
                        f.breaches
                            .push(format!("key {key} reused with other parameters"));
                        json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": null,
                            "userErrors": user_error("input", "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                                "The same idempotency key cannot be used with different operation parameters.")}})
                    } else {
                        answer
                    }
                } else {
                    let input = &vars["input"];
                    if input["name"] != "available" || input["reason"].as_str().is_none() {
                        f.breaches.push(format!("set input {input}"));
                    }
                    if let Some(n) = f.sell_before_next_set.take() {
                        for v in f.levels.values_mut() {
                            *v -= n;
                        }
                    }
                    let mut errors = Vec::new();
                    let qs = input["quantities"].as_array().cloned().unwrap_or_default();
                    for q in &qs {
                        let item = q["inventoryItemId"].as_str().unwrap_or("").to_string();
                        let loc = q["locationId"].as_str().unwrap_or("").to_string();
                        if q.get("changeFromQuantity").is_none() {
                            f.breaches
                                .push("quantity without changeFromQuantity".into());
                        }
                        match f.levels.get(&(item.clone(), loc.clone())) {
                            None => errors.push(json!({"field": ["input", "quantities"], "code": "ITEM_NOT_STOCKED_AT_LOCATION",
                                "message": "The specified inventory item is not stocked at the location."})),
                            Some(now) if q["changeFromQuantity"].as_i64() != Some(*now) => errors.push(json!({
                                "field": ["input", "quantities", "0", "changeFromQuantity"], "code": "CHANGE_FROM_QUANTITY_STALE",
                                "message": "The changeFromQuantity value does not match persisted value."})),
                            Some(_) => {}
                        }
                    }
                    let answer = if errors.is_empty() {
                        for q in &qs {
                            let item = q["inventoryItemId"].as_str().unwrap_or("").to_string();
                            let loc = q["locationId"].as_str().unwrap_or("").to_string();
                            f.levels
                                .insert((item.clone(), loc), q["quantity"].as_i64().unwrap_or(0));
                            *f.sets.entry(item).or_default() += 1;
                        }
                        json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": {"id": format!("gid://shopify/InventoryAdjustmentGroup/{}", f.requests)}, "userErrors": []}})
                    } else {
                        json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": null, "userErrors": errors}})
                    };
                    f.idempotent.insert(key, (vars.clone(), answer.clone()));
                    slow = f.slow_next_set.take();
                    answer
                }
            }
            // productSet(input, synchronous: true) — mutations/productSet; ProductVariantSetInput
            // carries `sku` and `optionValues` (input-objects/ProductVariantSetInput, 2026-01).
            "mutation Create" => {
                let input = &vars["input"];
                let sku = input["variants"][0]["sku"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if sku.is_empty() || input["variants"][0]["optionValues"].as_array().is_none() {
                    f.breaches.push(format!("productSet input {input}"));
                }
                let n = f.products.len() + 1;
                let product = format!("gid://shopify/Product/{n}");
                f.products.insert(
                    product.clone(),
                    input["title"].as_str().unwrap_or("").into(),
                );
                f.variants.insert(
                    sku,
                    (
                        format!("gid://shopify/ProductVariant/{n}"),
                        format!("gid://shopify/InventoryItem/{n}"),
                        product.clone(),
                    ),
                );
                json!({"productSet": {"product": {"id": product}, "userErrors": []}})
            }
            // productUpdate(product: ProductUpdateInput) — mutations/productUpdate (2026-01).
            "mutation Update" => {
                let p = &vars["product"];
                let id = p["id"].as_str().unwrap_or("").to_string();
                if f.products.contains_key(&id) {
                    f.products
                        .insert(id.clone(), p["title"].as_str().unwrap_or("").into());
                    json!({"productUpdate": {"product": {"id": id}, "userErrors": []}})
                } else {
                    json!({"productUpdate": {"product": null, "userErrors": [{"field": ["id"], "message": "Product does not exist"}]}})
                }
            }
            // order(id).fulfillments.trackingInfo / .fulfillmentOrders.lineItems.remainingQuantity
            // — objects/Order, objects/FulfillmentOrder, objects/FulfillmentTrackingInfo.
            "query Fulfilments" => {
                let id = vars["id"].as_str().unwrap_or("").to_string();
                let list: Vec<Value> = f.fulfillments.get(&id).cloned().unwrap_or_default().into_iter()
                    .map(|(fid, t)| json!({"id": fid, "trackingInfo": t.map(|n| vec![json!({"number": n})]).unwrap_or_default()}))
                    .collect();
                json!({"order": {"id": id, "fulfillments": list}})
            }
            "query Open" => {
                let id = vars["id"].as_str().unwrap_or("").to_string();
                let nodes: Vec<Value> = f.fulfillment_orders.get(&id).cloned().unwrap_or_default().into_iter()
                    .map(|(foid, lines)| {
                        let open = lines.iter().any(|l| l.2 > 0);
                        json!({"id": foid, "status": if open { "OPEN" } else { "CLOSED" },
                               "lineItems": {"nodes": lines.iter().map(|(lid, sku, rem)| json!({"id": lid, "sku": sku, "remainingQuantity": rem})).collect::<Vec<_>>()}})
                    })
                    .collect();
                json!({"order": {"fulfillmentOrders": {"nodes": nodes}}})
            }
            // fulfillmentCreate(fulfillment: FulfillmentInput) — mutations/fulfillmentCreate,
            // input-objects/FulfillmentInput (lineItemsByFulfillmentOrder, trackingInfo,
            // notifyCustomer).
            "mutation Fulfil" => {
                let input = &vars["fulfillment"];
                let tracking = input["trackingInfo"]["number"].as_str().map(str::to_string);
                let mut made = None;
                for by_fo in input["lineItemsByFulfillmentOrder"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    let foid = by_fo["fulfillmentOrderId"].as_str().unwrap_or("");
                    let order = f
                        .fulfillment_orders
                        .iter()
                        .find(|(_, fos)| fos.iter().any(|fo| fo.0 == foid))
                        .map(|(o, _)| o.clone());
                    let Some(order) = order else {
                        f.breaches.push(format!("unknown fulfilment order {foid}"));
                        continue;
                    };
                    for li in by_fo["fulfillmentOrderLineItems"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                    {
                        let lid = li["id"].as_str().unwrap_or("");
                        let qty = li["quantity"].as_i64().unwrap_or(0);
                        let fos = f.fulfillment_orders.get_mut(&order).unwrap();
                        match fos
                            .iter_mut()
                            .flat_map(|fo| fo.1.iter_mut())
                            .find(|l| l.0 == lid)
                        {
                            Some(l) if qty > 0 && qty <= l.2 => l.2 -= qty,
                            _ => f.breaches.push(format!("fulfil line {lid} × {qty}")),
                        }
                    }
                    made = Some(order);
                }
                match made {
                    Some(order) => {
                        let list = f.fulfillments.entry(order).or_default();
                        let id = format!("gid://shopify/Fulfillment/{}", list.len() + 1);
                        list.push((id.clone(), tracking));
                        slow = f.slow_next_fulfil.take();
                        json!({"fulfillmentCreate": {"fulfillment": {"id": id}, "userErrors": []}})
                    }
                    None => json!({"fulfillmentCreate": {"fulfillment": null,
                        "userErrors": [{"field": ["fulfillment"], "message": "no line items"}]}}),
                }
            }
            // bulkOperationRunQuery(query:) — mutations/bulkOperationRunQuery; userErrors
            // { field message code } (BulkOperationUserErrorCode OPERATION_IN_PROGRESS,
            // LIMIT_REACHED). The result: one JSON line per node; productVariants is flat.
            "mutation Export" => {
                let q = vars["query"].as_str().unwrap_or("");
                if !q.contains("productVariants { edges { node {") || q.contains("pageInfo") {
                    f.breaches.push(format!("bulk query `{q}`"));
                }
                let polls_to_end = f.polls_to_end;
                let running = f.jobs.iter().filter(|j| j.1 < polls_to_end).count();
                if running >= f.max_running {
                    let (code, msg) = if f.max_running == 1 {
                        (
                            "OPERATION_IN_PROGRESS",
                            "A bulk query operation for this app and shop is already in progress",
                        )
                    } else {
                        (
                            "LIMIT_REACHED",
                            "Bulk operations limit reached. Please try again later.",
                        )
                    };
                    json!({"bulkOperationRunQuery": {"bulkOperation": null,
                        "userErrors": [{"field": null, "code": code, "message": msg}]}})
                } else {
                    f.starts += 1;
                    let id = format!("gid://shopify/BulkOperation/{}", f.starts);
                    let mut file = String::new();
                    for (sku, (v, _, product)) in &f.variants {
                        let title = f.products.get(product).cloned().unwrap_or_default();
                        file.push_str(&json!({"id": v, "sku": sku, "barcode": null,
                            "product": {"id": product, "title": title, "descriptionHtml": "", "status": "ACTIVE"}}).to_string());
                        file.push('\n');
                    }
                    let n = f.variants.len();
                    let fails = f.next_job_fails.take();
                    f.jobs.push((id.clone(), 0, fails, file, n));
                    json!({"bulkOperationRunQuery": {"bulkOperation": {"id": id, "status": "CREATED"}, "userErrors": []}})
                }
            }
            // node(id:) { ... on BulkOperation { id status errorCode objectCount url } } —
            // objects/BulkOperation: url null when there is no data; signed, on another host.
            "query Job" => {
                let id = vars["id"].as_str().unwrap_or("").to_string();
                let files = f.files_url.clone();
                let polls_to_end = f.polls_to_end;
                match f.jobs.iter_mut().find(|j| j.0 == id) {
                    None => json!({"node": null}),
                    Some(j) => {
                        j.1 += 1;
                        let status = if j.1 < 2 {
                            "CREATED"
                        } else if j.1 <= polls_to_end {
                            "RUNNING"
                        } else if j.2.is_some() {
                            "FAILED"
                        } else {
                            "COMPLETED"
                        };
                        let done = status == "COMPLETED";
                        if done || status == "FAILED" {
                            // Ended: no longer counts as running, whatever polls_to_end becomes.
                            j.1 = 1_000_000;
                        }
                        let n = j.0.rsplit('/').next().unwrap_or("0").to_string();
                        json!({"node": {"id": id, "status": status, "errorCode": if status == "FAILED" { j.2.clone() } else { None },
                            "objectCount": if done { j.4 } else { 0 },
                            "url": if done && j.4 > 0 { Some(format!("{files}/bulk/{n}.jsonl?X-Goog-Signature=s{n}")) } else { None }}})
                    }
                }
            }
            // productVariants(first, after) — queries/productVariants, cursor pagination.
            "query Variants" => {
                let first = vars["first"].as_u64().unwrap_or(0) as usize;
                if first == 0 || first > 250 {
                    f.breaches.push(format!("productVariants first = {first}"));
                }
                let start = vars["after"]
                    .as_str()
                    .and_then(|c| c.strip_prefix('v'))
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                let all: Vec<Value> = f.variants.iter().map(|(sku, (v, _, product))| json!({"id": v, "sku": sku, "barcode": null,
                    "product": {"id": product, "title": f.products.get(product).cloned().unwrap_or_default(), "descriptionHtml": "", "status": "ACTIVE"}})).collect();
                let end = (start + first).min(all.len());
                json!({"productVariants": {"nodes": all[start.min(end)..end],
                    "pageInfo": {"hasNextPage": end < all.len(), "endCursor": format!("v{end}")}}})
            }
            other => {
                f.breaches.push(format!("unexpected operation `{other}`"));
                return reply(
                    json!({"errors": [{"message": format!("unknown operation {other}")}]}),
                );
            }
        };
        let cost = f.cost(requested);
        json!({"data": data, "extensions": {"cost": cost}})
    };
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    reply(answer)
}

/// GET of a bulk result: refuses (and counts) a request carrying the shop's token, and one
/// without the URL's signature.
async fn bulk_file(
    State(s): State<Shared>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut f = s.lock().unwrap();
    if headers.contains_key("x-shopify-access-token") || headers.contains_key("authorization") {
        f.token_sent_to_files += 1;
        return (
            StatusCode::FORBIDDEN,
            "credentials sent to the storage host",
        )
            .into_response();
    }
    let n = name.strip_suffix(".jsonl").unwrap_or("");
    if q.as_deref() != Some(&format!("X-Goog-Signature=s{n}")) {
        return (StatusCode::FORBIDDEN, "bad signature").into_response();
    }
    f.downloads += 1;
    let id = format!("gid://shopify/BulkOperation/{n}");
    match f.jobs.iter().find(|j| j.0 == id) {
        Some(j) => (
            StatusCode::OK,
            [("content-type", "application/jsonl")],
            j.3.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

struct Contract {
    url: String,
    shop: Shared,
}

impl Contract {
    async fn start() -> Contract {
        let shop: Shared = Arc::new(Mutex::new(Shop {
            bucket: BUCKET_MAX,
            max_running: 5,
            polls_to_end: 3,
            ..Shop::default()
        }));
        let app = Router::new()
            .route(PATH, post(graphql))
            .with_state(shop.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        // The bulk results' host (a signed Google Cloud Storage URL in Shopify): another origin.
        let files = Router::new()
            .route("/bulk/{name}", get(bulk_file))
            .with_state(shop.clone());
        let fl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let files_url = format!("http://{}", fl.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(fl, files).await.unwrap() });
        shop.lock().unwrap().files_url = files_url;
        Contract { url, shop }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Shop) -> R) -> R {
        f(&mut self.shop.lock().unwrap())
    }

    /// The endpoint as a user writes it: the preset, the token, the location map.
    fn connector(&self, timeout: Duration) -> HttpConnector {
        self.connector_with(timeout, json!({}))
    }

    /// The same with more options of the endpoint's own, merged over the preset's.
    fn connector_with(&self, timeout: Duration, extra: Value) -> HttpConnector {
        let mut options = json!({"preset": "shopify", "auth": {"value": TOKEN},
                                 "vars": {"locations": {"WH": WH, "WH2": WH2}}});
        concord_connectors::http::preset::merge(&mut options, extra);
        let mut spec = EndpointSpec::new("shopify", "http", &self.url, options);
        spec.webhook_secret = Some("shopify-app-secret".into());
        spec.timeout = timeout;
        HttpConnector::new(&spec).unwrap_or_else(|e| panic!("{}: {}", e.path, e.message))
    }

    fn stock_item(&self, n: usize, sku: &str, wh: i64) {
        self.with(|f| {
            let item = format!("gid://shopify/InventoryItem/{n}");
            f.variants.insert(
                sku.into(),
                (
                    format!("gid://shopify/ProductVariant/{n}"),
                    item.clone(),
                    format!("gid://shopify/Product/{n}"),
                ),
            );
            f.products
                .insert(format!("gid://shopify/Product/{n}"), sku.into());
            f.levels.insert((item.clone(), WH.into()), wh);
            f.levels.insert((item, WH2.into()), 0);
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

/// Deliver one item the way the engine's dispatcher does: a rate-limited or transient answer is
/// retried after the wait it names (or a short backoff), until done or the deadline.
async fn deliver(c: &HttpConnector, op: WriteOp) -> (WriteOutcome, Vec<DeliveryError>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failures = Vec::new();
    loop {
        let out = c.write(vec![op.clone()]).await.remove(0);
        match out {
            WriteOutcome::Failed(e) if !matches!(e, DeliveryError::Permanent { .. }) => {
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
            other => return (other, failures),
        }
    }
}

fn level(c: &Contract, n: usize, loc: &str) -> i64 {
    c.with(|f| f.levels[&(format!("gid://shopify/InventoryItem/{n}"), loc.to_string())])
}

// ---- webhooks -------------------------------------------------------------------------------

/// An orders/create payload as Shopify sends it (REST resource shape; shopify.dev/docs/api/
/// webhooks?reference=toml#list-of-topics-orders/create), HMAC-SHA256 of the raw body, base64,
/// in X-Shopify-Hmac-SHA256; X-Shopify-Webhook-Id identifies the delivery
/// (shopify.dev/docs/apps/build/webhooks/subscribe/https#step-2-validate-the-origin-of-your-webhook).
fn order_webhook(n: u32, updated_at: &str) -> Vec<u8> {
    json!({"id": 820982911946154508u64 + n as u64, "admin_graphql_api_id": format!("gid://shopify/Order/{n}"),
           "name": format!("#{}", 1000 + n), "email": "Jon@Example.com", "currency": "USD",
           "created_at": "2026-12-04T08:00:00-05:00", "updated_at": updated_at, "cancelled_at": null,
           "fulfillment_status": null, "total_price": "29.90",
           "line_items": [{"id": 466157049, "admin_graphql_api_id": "gid://shopify/LineItem/466157049",
                           "sku": "SKU-1", "quantity": 2, "price": "14.95"}],
           "shipping_address": {"first_name": "Jon", "last_name": "Snow", "address1": "1 Wall St",
                                "address2": "", "city": "Ottawa", "zip": "K2P 1L4", "province_code": "ON",
                                "country_code": "CA"},
           "billing_address": null})
    .to_string()
    .into_bytes()
}

fn hook_headers(body: &[u8], secret: &str, id: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("x-shopify-topic", "orders/create".parse().unwrap());
    h.insert(
        "x-shopify-shop-domain",
        "concord-test.myshopify.com".parse().unwrap(),
    );
    h.insert("x-shopify-webhook-id", id.parse().unwrap());
    h.insert(
        "x-shopify-hmac-sha256",
        sign(Algorithm::Sha256, Encoding::Base64, secret.as_bytes(), body)
            .parse()
            .unwrap(),
    );
    h
}

#[tokio::test]
async fn webhooks_are_verified_on_the_raw_body_and_become_canonical_orders() {
    let shop = Contract::start().await;
    let c = shop.connector(Duration::from_secs(5));
    let body = order_webhook(7, "2026-12-04T08:00:05-05:00");
    let got: Vec<Captured> = c
        .parse_webhook(
            &hook_headers(
                &body,
                "shopify-app-secret",
                "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            ),
            &body,
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].kind, Kind::Order);
    assert_eq!(got[0].external_id, "gid://shopify/Order/7");
    // The version is the order's updated_at: a redelivery (same X-Shopify-Webhook-Id, same
    // body) and a poll of the same state are the same version, dropped by the journal.
    assert_eq!(got[0].version.as_deref(), Some("2026-12-04T08:00:05-05:00"));
    let order: concord_core::model::Order = serde_json::from_value(got[0].record.clone())
        .unwrap_or_else(|e| panic!("not a canonical order: {e}: {}", got[0].record));
    assert_eq!(order.number, "1007");
    assert_eq!(order.customer.email, "jon@example.com");
    assert_eq!(order.lines[0].unit_price_minor, 1495);
    assert_eq!(order.total_minor, Some(2990));
    assert_eq!(order.shipping_address.as_ref().unwrap().line2, None);
    concord_core::model::validate(Kind::Order, &got[0].record).unwrap();

    // Another secret, a changed body, a missing header: 401 before anything is parsed.
    let forged = hook_headers(&body, "other-secret", "x");
    assert!(c.parse_webhook(&forged, &body).await.is_err());
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let h = hook_headers(&body, "shopify-app-secret", "x");
    assert!(c.parse_webhook(&h, &tampered).await.is_err());
    let mut h = hook_headers(&body, "shopify-app-secret", "x");
    h.remove("x-shopify-hmac-sha256");
    assert!(c.parse_webhook(&h, &body).await.is_err());
    // Another topic is not an order.
    let mut h = hook_headers(&body, "shopify-app-secret", "y");
    h.insert("x-shopify-topic", "products/update".parse().unwrap());
    assert!(c.parse_webhook(&h, &body).await.unwrap().is_empty());
}

// ---- a day ----------------------------------------------------------------------------------

#[tokio::test]
async fn a_day_stock_out_orders_in_shipments_back_and_the_bucket_respected() {
    let shop = Contract::start().await;
    let c = shop.connector(Duration::from_millis(700));
    for n in 1..=12 {
        shop.stock_item(n, &format!("SKU-{n}"), 5);
    }

    // Morning: the ERP's figures for 12 SKUs, broadcast in a burst (24 requests of 10 points
    // against a 100-point bucket): the preset paces on extensions.cost instead of being
    // throttled.
    for n in 1..=12i64 {
        let (out, _) = deliver(
            &c,
            op(n, Kind::Stock, &format!("SKU-{n}@WH"), json!({"sku": format!("SKU-{n}"), "location": "WH", "on_hand": 20 + n, "committed": 2})),
        )
        .await;
        assert!(matches!(out, WriteOutcome::Done { .. }), "SKU-{n}: {out:?}");
        assert_eq!(level(&shop, n as usize, WH), 18 + n);
    }
    assert_eq!(shop.with(|f| f.throttled), 0, "paced, never throttled");
    // The same figure again: read, already there, nothing written.
    let sets = shop.with(|f| f.sets.values().sum::<usize>());
    deliver(
        &c,
        op(
            99,
            Kind::Stock,
            "SKU-1@WH",
            json!({"sku": "SKU-1", "location": "WH", "on_hand": 21, "committed": 2}),
        ),
    )
    .await;
    assert_eq!(shop.with(|f| f.sets.values().sum::<usize>()), sets);
    // A location Shopify does not know: nothing sent.
    let before = shop.with(|f| f.requests);
    let (out, _) = deliver(
        &c,
        op(
            98,
            Kind::Stock,
            "SKU-1@DROP",
            json!({"sku": "SKU-1", "location": "DROP", "on_hand": 3}),
        ),
    )
    .await;
    assert!(matches!(out, WriteOutcome::Done { .. }));
    assert_eq!(shop.with(|f| f.requests), before);

    // A sale in Shopify between our read and our write: the compare-and-set fails as stale,
    // the retry reads again and sets from the new figure (never over the sale blindly).
    shop.with(|f| f.sell_before_next_set = Some(1));
    let (out, failures) = deliver(
        &c,
        op(
            20,
            Kind::Stock,
            "SKU-2@WH",
            json!({"sku": "SKU-2", "location": "WH", "available": 7}),
        ),
    )
    .await;
    assert!(matches!(out, WriteOutcome::Done { .. }));
    assert!(
        failures
            .iter()
            .any(|e| e.to_string().contains("CHANGE_FROM_QUANTITY_STALE")),
        "{failures:?}"
    );
    assert_eq!(level(&shop, 2, WH), 7);

    // A write whose answer is lost after Shopify applied it (the client times out): the retry
    // finds the figure already there and writes nothing more.
    shop.with(|f| f.slow_next_set = Some(Duration::from_millis(1200)));
    let sets3 = shop.with(|f| {
        f.sets
            .get("gid://shopify/InventoryItem/3")
            .copied()
            .unwrap_or(0)
    });
    let (out, failures) = deliver(
        &c,
        op(
            21,
            Kind::Stock,
            "SKU-3@WH",
            json!({"sku": "SKU-3", "location": "WH", "available": 4}),
        ),
    )
    .await;
    assert!(matches!(out, WriteOutcome::Done { .. }));
    assert!(
        failures.iter().any(|e| e.to_string().contains("timed out")),
        "{failures:?}"
    );
    assert_eq!(level(&shop, 3, WH), 4);
    assert_eq!(
        shop.with(|f| f.sets["gid://shopify/InventoryItem/3"]),
        sets3 + 1,
        "applied once"
    );

    // A new product: created once, found by SKU the second time and updated.
    let p = json!({"sku": "NEW-1", "name": "New one", "active": true});
    let (out, _) = deliver(&c, op(30, Kind::Product, "NEW-1", p.clone())).await;
    let WriteOutcome::Done {
        external_id: Some(pid),
        ..
    } = out
    else {
        panic!("{out:?}")
    };
    let (out, _) = deliver(
        &c,
        op(
            31,
            Kind::Product,
            "NEW-1",
            json!({"sku": "NEW-1", "name": "New one, renamed"}),
        ),
    )
    .await;
    assert!(
        matches!(out, WriteOutcome::Done { external_id: Some(ref id), .. } if *id == pid),
        "{out:?}"
    );
    assert_eq!(shop.with(|f| f.products.len()), 13);
    assert_eq!(shop.with(|f| f.products[&pid].clone()), "New one, renamed");

    // Noon: 14 orders placed and updated in Shopify; polled by updated_at in pages of 10.
    shop.with(|f| {
        for n in 1..=14u32 {
            f.orders.push(json!({"id": format!("gid://shopify/Order/{n}"), "name": format!("#{}", 1000 + n),
                "email": "buyer@example.com", "currencyCode": "EUR", "cancelledAt": null,
                "displayFulfillmentStatus": "UNFULFILLED", "createdAt": "2026-12-04T11:00:00Z",
                "updatedAt": format!("2026-12-04T12:00:{:02}Z", n / 2),
                "totalPriceSet": {"shopMoney": {"amount": "24.5"}},
                "shippingAddress": {"firstName": "Ana", "lastName": "Lima", "address1": "Rua 1", "address2": null,
                                    "city": "Lisboa", "zip": "1000-001", "provinceCode": null, "countryCodeV2": "PT"},
                "billingAddress": null,
                "lineItems": {"nodes": [{"id": format!("gid://shopify/LineItem/{n}"), "sku": "SKU-1", "quantity": 1,
                                          "originalUnitPriceSet": {"shopMoney": {"amount": "24.50"}}}]}}));
            f.fulfillment_orders.insert(
                format!("gid://shopify/Order/{n}"),
                vec![(format!("gid://shopify/FulfillmentOrder/{n}"), vec![(format!("gid://shopify/FulfillmentOrderLineItem/{n}"), "SKU-1".into(), 1)])],
            );
        }
    });
    let mut cursor: Option<String> = Some("2026-12-04T11:59:00Z".into());
    let mut seen = BTreeMap::new();
    for _ in 0..10 {
        let page = c
            .read_changes(ReadRequest {
                kind: Kind::Order,
                cursor: cursor.as_deref(),
                limit: 100,
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
    assert_eq!(seen.len(), 14, "every order once: {:?}", seen.keys());
    assert_eq!(
        seen["gid://shopify/Order/3"]["lines"][0]["unit_price_minor"],
        2450
    );

    // Refunds made in Shopify on #1003 (restocked) and #1005 (an amount only, no line): read
    // from the orders that changed since the cursor, each once.
    shop.with(|f| {
        for o in f.orders.iter_mut() {
            if o["id"] == "gid://shopify/Order/3" {
                o["refunds"] = json!([{"id": "gid://shopify/Refund/31", "createdAt": "2026-12-04T13:00:00Z", "note": "damaged",
                    "totalRefundedSet": {"shopMoney": {"amount": "24.50", "currencyCode": "USD"}},
                    "refundLineItems": {"nodes": [{"quantity": 1, "restockType": "RETURN", "lineItem": {"sku": "SKU-1"}}]}}]);
                o["updatedAt"] = json!("2026-12-04T13:00:01Z");
            } else if o["id"] == "gid://shopify/Order/5" {
                o["refunds"] = json!([{"id": "gid://shopify/Refund/51", "createdAt": "2026-12-04T13:05:00Z", "note": "",
                    "totalRefundedSet": {"shopMoney": {"amount": "5.00", "currencyCode": "USD"}},
                    "refundLineItems": {"nodes": []}}]);
                o["updatedAt"] = json!("2026-12-04T13:05:01Z");
            }
        }
    });
    let mut refund_cursor: Option<String> = Some("2026-12-04T12:30:00Z".into());
    let mut refunds = BTreeMap::new();
    for _ in 0..10 {
        let page = match c
            .read_changes(ReadRequest {
                kind: Kind::Refund,
                cursor: refund_cursor.as_deref(),
                limit: 100,
                overlap: Duration::ZERO,
            })
            .await
        {
            Ok(p) => p,
            Err(DeliveryError::RateLimited { retry_after, .. }) => {
                tokio::time::sleep(retry_after.unwrap_or(Duration::from_millis(50))).await;
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        for r in page.records {
            concord_core::model::validate(Kind::Refund, &r.record)
                .unwrap_or_else(|e| panic!("{e:?}: {}", r.record));
            assert!(r.version.is_some(), "{r:?}");
            assert!(
                refunds
                    .insert(r.external_id.clone(), (r.version, r.record))
                    .is_none(),
                "{} read twice",
                r.external_id
            );
        }
        refund_cursor = page.cursor.or(refund_cursor);
        if !page.more {
            break;
        }
    }
    assert_eq!(refunds.len(), 2, "{:?}", refunds.keys());
    let (v, r31) = &refunds["gid://shopify/Refund/31"];
    assert_eq!(v.as_deref(), Some("2026-12-04T13:00:00Z"));
    assert_eq!(
        r31,
        &json!({"id": "gid://shopify/Refund/31", "order": "shopify/1003", "amount_minor": 2450, "currency": "USD",
                "reason": "damaged", "lines": [{"sku": "SKU-1", "quantity": 1}], "restock": true})
    );
    let (_, r51) = &refunds["gid://shopify/Refund/51"];
    assert_eq!(r51["amount_minor"], 500);
    assert_eq!(r51["restock"], false);
    assert_eq!(r51["reason"], Value::Null);

    // Afternoon: a burst of other calls by the same app empties the bucket (someone ran
    // `concord try`); the next answer is THROTTLED and the preset waits as long as the
    // documented throttleStatus says, without sending anything in between.
    shop.with(|f| {
        f.refill();
        f.bucket = 0.0;
        f.provoked += 1;
    });
    let mut refs = BTreeMap::new();
    refs.insert(
        "order:shopify/1003".to_string(),
        "gid://shopify/Order/3".to_string(),
    );
    let ship = |item: i64, tracking: &str| WriteOp {
        refs: refs.clone(),
        ..op(
            item,
            Kind::Shipment,
            "shopify/1003:SH-1",
            json!({"id": "SH-1", "order": "shopify/1003", "status": "shipped",
            "carrier": "DHL", "tracking_number": tracking, "tracking_url": "https://dhl.example/t", "lines": [{"sku": "SKU-1", "quantity": 1}]}),
        )
    };
    let started = Instant::now();
    let (out, failures) = deliver(&c, ship(40, "TRACK-1")).await;
    let WriteOutcome::Done {
        external_id: Some(fid),
        ..
    } = out
    else {
        panic!("{out:?}")
    };
    let waited = failures.iter().find_map(|e| match e {
        DeliveryError::RateLimited { retry_after, .. } => *retry_after,
        _ => None,
    });
    let waited = waited.expect("the THROTTLED answer was honoured with a wait");
    // (min(max(cost, cost_reserve = 100), maximumAvailable = 100) − ~0 available) / 200 per s.
    assert!(
        waited >= Duration::from_millis(400) && waited <= Duration::from_millis(510),
        "{waited:?}"
    );
    assert!(started.elapsed() >= waited);
    assert_eq!(
        shop.with(|f| f.fulfillments["gid://shopify/Order/3"].clone()),
        vec![(fid.clone(), Some("TRACK-1".to_string()))]
    );

    // The same shipment again with its answer lost: found by its tracking number, not made twice.
    shop.with(|f| f.slow_next_fulfil = Some(Duration::from_millis(1200)));
    refs.insert(
        "order:shopify/1004".to_string(),
        "gid://shopify/Order/4".to_string(),
    );
    let ship4 = WriteOp {
        refs: refs.clone(),
        ..op(
            41,
            Kind::Shipment,
            "shopify/1004:SH-2",
            json!({"id": "SH-2", "order": "shopify/1004", "status": "shipped",
            "carrier": "UPS", "tracking_number": "TRACK-2", "lines": [{"sku": "SKU-1", "quantity": 1}]}),
        )
    };
    let (out, failures) = deliver(&c, ship4).await;
    assert!(
        matches!(
            out,
            WriteOutcome::Done {
                external_id: Some(_),
                ..
            }
        ),
        "{out:?}"
    );
    assert!(
        failures.iter().any(|e| e.to_string().contains("timed out")),
        "{failures:?}"
    );
    assert_eq!(
        shop.with(|f| f.fulfillments["gid://shopify/Order/4"].len()),
        1,
        "one fulfilment"
    );

    // The whole day: within the published budget (only the provoked throttle), and nothing
    // sent that the documentation does not allow.
    shop.with(|f| {
        assert_eq!(f.throttled, f.provoked, "requests beyond the bucket");
        assert!(f.breaches.is_empty(), "contract breaches: {:?}", f.breaches);
    });
}

#[tokio::test]
async fn without_the_cost_pacing_the_same_burst_is_throttled() {
    // The endpoint's own option replaces the preset's: no pacing. The burst then runs into
    // THROTTLED answers — which is what the preset's pacing avoids (the day test asserts 0).
    let shop = Contract::start().await;
    let c = shop.connector_with(
        Duration::from_secs(5),
        json!({"rate_limit": {"pace": "null"}}),
    );
    for n in 1..=12 {
        shop.stock_item(n, &format!("SKU-{n}"), 5);
    }
    for n in 1..=12i64 {
        c.write(vec![op(
            n,
            Kind::Stock,
            &format!("SKU-{n}@WH"),
            json!({"sku": format!("SKU-{n}"), "location": "WH", "available": n}),
        )])
        .await;
    }
    assert!(
        shop.with(|f| f.throttled) > 0,
        "a 100-point bucket cannot take 240 points at once"
    );
}

// ---- through the engine ---------------------------------------------------------------------

/// The real engine over a real SQLite store: a warehouse system posts stock changes (signed
/// webhooks); the engine delivers them through the preset. Three rounds of changes for 12 SKUs,
/// a bucket drained by someone else in the middle: every SKU ends at its last figure, and the
/// only THROTTLED answer is the provoked one. (Concurrency 1: the bucket is read from answers,
/// so requests in flight at once cannot see each other's cost; the endpoint's own option
/// overrides the preset's, as a user would.)
#[tokio::test]
async fn through_the_engine_every_sku_ends_at_its_last_figure_within_the_bucket() {
    use concord_engine::config::Config;
    use concord_engine::runtime::Engine;
    use concord_store::{SqliteStore, Store};

    let shop = Contract::start().await;
    for n in 1..=12 {
        shop.stock_item(n, &format!("SKU-{n}"), 0);
    }
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[store]
path = "{store}"
[endpoints.wms]
connector = "http"
url = "{url}"
webhook_secret = "wms-secret"
[endpoints.wms.options.webhook]
signature = {{ header = "x-sig" }}
records = ".events"
routes = [{{ kind = "stock", id = '"\(.sku)@\(.location)"', version = ".ts | tostring", map = "{{sku, location, on_hand, committed: 0}}" }}]
[endpoints.shopify]
connector = "http"
url = "{url}"
webhook_secret = "shopify-app-secret"
[endpoints.shopify.options]
preset = "shopify"
auth = {{ value = "{token}" }}
vars = {{ locations = {{ WH = "{wh}" }} }}
rate_limit = {{ concurrency = 1 }}
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["wms"]
to = ["shopify"]
"#,
        store = dir.path().join("hub.sqlite").display(),
        url = shop.url,
        token = TOKEN,
        wh = WH,
    );
    let config = Arc::new(Config::from_toml_str(&text, &dir.path().join("c.toml")).unwrap());
    let mut cs: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
    for (n, s) in &config.endpoints {
        cs.insert(n.clone(), concord_connectors::build(s).unwrap());
    }
    concord_engine::runtime::check_capabilities(&config, &cs).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("hub.sqlite")).unwrap());
    let engine = Engine::new(config, store, cs).unwrap();
    let mut tasks = engine.start().await.unwrap();

    let mut ts = 1_000u64;
    let mut post = |round: i64| {
        ts += 1;
        let events: Vec<Value> = (1..=12)
            .map(|n| json!({"sku": format!("SKU-{n}"), "location": "WH", "on_hand": round * 100 + n, "ts": ts * 100 + n as u64}))
            .collect();
        json!({"events": events}).to_string().into_bytes()
    };
    for round in 1..=3 {
        let body = post(round);
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-sig",
            sign(Algorithm::Sha256, Encoding::Hex, b"wms-secret", &body)
                .parse()
                .unwrap(),
        );
        engine.capture_webhook("wms", &h, &body).await.unwrap();
        if round == 2 {
            // Someone else drains the bucket.
            shop.with(|f| {
                f.refill();
                f.bucket = 0.0;
                f.provoked += 1;
            });
        }
    }
    wait_until(
        "every SKU at its last figure",
        Duration::from_secs(30),
        async || (1..=12).all(|n| level(&shop, n, WH) == 300 + n as i64),
    )
    .await;
    engine.shutdown();
    while tasks.join_next().await.is_some() {}
    shop.with(|f| {
        assert!(
            f.throttled <= f.provoked,
            "throttled {} beyond the provoked {}",
            f.throttled,
            f.provoked
        );
        assert!(f.breaches.is_empty(), "contract breaches: {:?}", f.breaches);
    });
}

// ---- bulk query operations: full listings -----------------------------------------------------

/// Read a whole listing the way the engine's backfill does (`capture::snapshot`): page after
/// page until `more` is false or a page is empty; `from` continues a stored token.
async fn list(
    c: &HttpConnector,
    from: Option<String>,
    pages: Option<usize>,
) -> Result<(Vec<Captured>, Option<String>), DeliveryError> {
    let mut token = from;
    let mut out = Vec::new();
    let mut n = 0;
    loop {
        let page = read_paced(c, token.as_deref(), true).await?;
        let empty = page.records.is_empty();
        out.extend(page.records);
        n += 1;
        if !page.more || empty {
            return Ok((out, None));
        }
        token = page.cursor;
        if pages == Some(n) {
            return Ok((out, token));
        }
    }
}

/// One page, waiting out the cost bucket the way the engine does (a rate-limited read is
/// retried after the wait it names).
async fn read_paced(
    c: &HttpConnector,
    cursor: Option<&str>,
    snapshot: bool,
) -> Result<concord_engine::connector::Page, DeliveryError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let req = ReadRequest {
            kind: Kind::Product,
            cursor,
            limit: 100,
            overlap: Duration::ZERO,
        };
        let out = if snapshot {
            c.read_snapshot(req).await
        } else {
            c.read_changes(req).await
        };
        match out {
            Err(DeliveryError::RateLimited { retry_after, .. }) if Instant::now() < deadline => {
                tokio::time::sleep(retry_after.unwrap_or(Duration::from_millis(50))).await
            }
            other => return other,
        }
    }
}

fn fast_bulk() -> Value {
    json!({"read": {"product": {"bulk": {"interval": "10ms", "timeout": "10s"}}}})
}

fn catalogue(shop: &Contract, n: usize) {
    shop.with(|f| {
        for i in 1..=n {
            let p = format!("gid://shopify/Product/{i}");
            f.variants.insert(
                format!("SKU-{i:05}"),
                (
                    format!("gid://shopify/ProductVariant/{i}"),
                    format!("gid://shopify/InventoryItem/{i}"),
                    p.clone(),
                ),
            );
            f.products.insert(p, format!("Product {i}"));
        }
    });
}

#[tokio::test]
async fn a_backfill_of_2500_variants_reads_every_sku_once_through_one_bulk_operation() {
    let shop = Contract::start().await;
    catalogue(&shop, 2500);
    let c = shop.connector_with(Duration::from_secs(5), fast_bulk());

    // Paged (read_changes pages productVariants, 100 a page): the baseline.
    let mut token: Option<String> = None;
    let mut paged = 0;
    loop {
        let page = read_paced(&c, token.as_deref(), false).await.unwrap();
        paged += page.records.len();
        token = page.cursor;
        if !page.more {
            break;
        }
    }
    let paged_requests = shop.with(|f| std::mem::take(&mut f.requests));
    assert_eq!(paged, 2500);

    let (got, _) = list(&c, None, None).await.unwrap();
    let bulk_requests = shop.with(|f| f.requests);
    let skus: std::collections::BTreeSet<String> = got
        .iter()
        .map(|r| r.record["sku"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got.len(), 2500, "every variant once");
    assert_eq!(skus.len(), 2500, "no SKU twice");
    let p: concord_core::model::Product = serde_json::from_value(got[0].record.clone()).unwrap();
    assert_eq!(
        (p.sku.as_str(), p.name.as_str(), p.active),
        ("SKU-00001", "Product 1", true)
    );
    assert_eq!(got[0].external_id, "gid://shopify/Product/1");
    // One start and a few polls (CREATED, RUNNING ×2, COMPLETED), against 25 pages.
    eprintln!("2500 variants: {paged_requests} GraphQL requests paged (100 a page), {bulk_requests} through the bulk operation");
    assert!(paged_requests >= 25, "{paged_requests}");
    assert!(bulk_requests <= 5, "{bulk_requests} requests");
    shop.with(|f| {
        assert_eq!(f.starts, 1);
        assert_eq!(f.downloads, 1, "the pages continue one download");
        assert_eq!(
            f.token_sent_to_files, 0,
            "the shop's token went to the storage host"
        );
        assert!(f.breaches.is_empty(), "{:?}", f.breaches);
    });

    // A backfill stopped after 7 pages and continued by a restarted hub (nothing in memory):
    // the job is polled once by its id, the file downloaded again, the 700 lines skipped.
    let (first, token) = list(&c, None, Some(7)).await.unwrap();
    assert_eq!(first.len(), 700);
    let restarted = shop.connector_with(Duration::from_secs(5), fast_bulk());
    let (rest, _) = list(&restarted, token, None).await.unwrap();
    let mut all: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|r| r.record["sku"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 2500, "nothing doubled");
    all.dedup();
    assert_eq!(all.len(), 2500, "nothing lost");
    shop.with(|f| {
        assert_eq!(f.starts, 2);
        assert_eq!(f.downloads, 3);
        assert_eq!(f.token_sent_to_files, 0);
    });
}

#[tokio::test]
async fn bulk_operations_failed_busy_empty_and_oversized_lines() {
    let shop = Contract::start().await;
    let c = shop.connector_with(Duration::from_secs(5), fast_bulk());
    // Empty shop: COMPLETED with url null is an empty listing, no download.
    let (got, _) = list(&c, None, None).await.unwrap();
    assert!(got.is_empty());
    assert_eq!(shop.with(|f| f.downloads), 0);

    catalogue(&shop, 30);
    // FAILED names its errorCode, permanently.
    shop.with(|f| f.next_job_fails = Some("ACCESS_DENIED".into()));
    match list(&c, None, None).await {
        Err(DeliveryError::Permanent { reason }) => {
            assert!(
                reason.contains("FAILED") && reason.contains("ACCESS_DENIED"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }

    // One job at a time (before 2026-01; max_running = 1 here): a job outlasting the read's
    // timeout is transient and polled again; another hub's start meanwhile is refused with the
    // documented userError, transient too; the first then finishes its own job.
    shop.with(|f| {
        f.max_running = 1;
        f.polls_to_end = 40;
    });
    let slow = shop.connector_with(
        Duration::from_secs(5),
        json!({"read": {"product": {"bulk": {"interval": "10ms", "timeout": "50ms"}}}}),
    );
    let e = list(&slow, None, None).await.unwrap_err();
    // Transient (still RUNNING), or rate-limited by the cost bucket the polls drain.
    assert!(!e.is_permanent(), "{e:?}");
    let other = shop.connector_with(Duration::from_secs(5), fast_bulk());
    let e = list(&other, None, None).await.unwrap_err();
    assert!(!e.is_permanent(), "{e:?}");
    assert!(e.to_string().contains("already in progress"), "{e}");
    let starts = shop.with(|f| f.starts);
    let mut done = None;
    wait_until(
        "the running job completes",
        Duration::from_secs(10),
        async || match list(&slow, None, None).await {
            Ok((r, _)) => {
                done = Some(r.len());
                true
            }
            Err(e) => {
                assert!(!e.is_permanent(), "{e:?}");
                false
            }
        },
    )
    .await;
    assert_eq!(done, Some(30));
    assert_eq!(
        shop.with(|f| f.starts),
        starts,
        "the same job was polled, none started"
    );

    // A line longer than max_line_bytes is refused, never held whole.
    shop.with(|f| {
        f.polls_to_end = 3;
        f.products
            .insert("gid://shopify/Product/1".into(), "x".repeat(5000));
    });
    let capped = shop.connector_with(
        Duration::from_secs(5),
        json!({"read": {"product": {"bulk": {"interval": "10ms", "max_line_bytes": 1024}}}}),
    );
    let e = list(&capped, None, None).await.unwrap_err();
    assert!(e.to_string().contains("max_line_bytes"), "{e}");
    shop.with(|f| {
        assert_eq!(f.token_sent_to_files, 0);
        assert!(f.breaches.is_empty(), "{:?}", f.breaches);
    });
}

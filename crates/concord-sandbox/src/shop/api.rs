//! The storefront emulator's HTTP routes (documented in the parent module). Thin: parse, call
//! the rules in `state`, map [`ShopError`] to a status.
//!
//! Must never: hold the state lock across an `.await`.

use super::{RefundRequest, ShopError, ShopInner};
use crate::core::{control_body_or_default, error, lock, parse_json};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use concord_core::Kind;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

type S = State<Arc<ShopInner>>;

pub(crate) fn router(inner: Arc<ShopInner>) -> Router {
    Router::new()
        .route("/api/inventory/set", post(inventory_set))
        .route("/api/inventory/{sku}", get(get_inventory))
        .route("/api/products/{sku}", get(get_product).put(put_product))
        .route("/api/prices/{list}/{sku}", get(get_price).put(put_price))
        .route("/api/customers", get(find_customers).post(create_customer))
        .route("/api/customers/{id}", get(get_customer).put(put_customer))
        .route("/api/orders", get(find_orders))
        .route("/api/orders/{id}", get(get_order))
        .route("/api/orders/{id}/fulfillments", post(fulfill))
        .route("/api/orders/{id}/cancel", post(cancel))
        .route("/api/orders/{id}/erp", put(note_erp))
        .route("/api/orders/{id}/invoices", post(hub_invoice))
        .route("/api/orders/{id}/payments", post(hub_payment))
        .route("/api/orders/{id}/refunds", post(hub_refund))
        // The merchant or the customer acting in the store: never faulted, not counted.
        .route("/_control/orders/{id}/edit", post(control_edit))
        .route("/_control/orders/{id}/cancel", post(control_cancel))
        .route("/_control/orders/{id}/capture", post(control_capture))
        .route("/_control/orders/{id}/refund", post(control_refund))
        .route(
            "/_control/products/{sku}",
            axum::routing::delete(control_delete_product),
        )
        .route("/api/checkout", post(checkout))
        .with_state(inner)
}

fn fail(e: ShopError) -> Response {
    let status = match &e {
        ShopError::NotFound { .. } => StatusCode::NOT_FOUND,
        ShopError::Conflict(_) | ShopError::OutOfStock { .. } => StatusCode::CONFLICT,
        ShopError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ShopError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

macro_rules! body {
    ($bytes:expr) => {
        match parse_json(&$bytes) {
            Ok(v) => v,
            Err(r) => return r.into_response(),
        }
    };
}

fn not_found(what: &str, id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no {what} `{id}`"))
}

async fn inventory_set(State(s): S, b: Bytes) -> Response {
    let body = body!(b);
    let Some(items) = body.get("items").and_then(Value::as_array) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "items: is required and must be an array",
        );
    };
    let results: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| s.set_item(i, item))
        .collect();
    Json(json!({ "results": results })).into_response()
}

async fn get_inventory(State(s): S, Path(sku): Path<String>) -> Response {
    let levels = lock(&s.state).levels(&sku);
    if levels.is_empty() && s.core.record(Kind::Product, &sku).is_none() {
        return not_found("inventory for", &sku);
    }
    let total: i64 = levels.values().sum();
    let levels: Vec<Value> = levels
        .into_iter()
        .map(|(location, available)| json!({"location": location, "available": available}))
        .collect();
    Json(json!({"sku": sku, "available": total, "levels": levels})).into_response()
}

async fn get_product(State(s): S, Path(sku): Path<String>) -> Response {
    match s.core.record(Kind::Product, &sku) {
        Some(p) => Json(p).into_response(),
        None => not_found("product", &sku),
    }
}

async fn put_product(State(s): S, Path(sku): Path<String>, b: Bytes) -> Response {
    match s.put_product(Some(&sku), body!(b)) {
        Ok(p) => Json(p).into_response(),
        Err(e) => fail(e),
    }
}

async fn get_price(State(s): S, Path((list, sku)): Path<(String, String)>) -> Response {
    let id = format!("{list}:{sku}");
    match s.core.record(Kind::Price, &id) {
        Some(p) => Json(p).into_response(),
        None => not_found("price", &id),
    }
}

async fn put_price(State(s): S, Path((list, sku)): Path<(String, String)>, b: Bytes) -> Response {
    match s.put_price(&list, &sku, body!(b)) {
        Ok(p) => Json(p).into_response(),
        Err(e) => fail(e),
    }
}

#[derive(Deserialize)]
struct EmailQuery {
    email: Option<String>,
}

async fn find_customers(State(s): S, Query(q): Query<EmailQuery>) -> Response {
    Json(json!({"customers": s.find_customers(q.email.as_deref())})).into_response()
}

async fn create_customer(State(s): S, b: Bytes) -> Response {
    match s.create_customer(body!(b)) {
        Ok((c, true)) => (StatusCode::CREATED, Json(c)).into_response(),
        Ok((c, false)) => Json(c).into_response(),
        Err(e) => fail(e),
    }
}

async fn get_customer(State(s): S, Path(id): Path<String>) -> Response {
    match s.customer(&id) {
        Some(c) => Json(c).into_response(),
        None => not_found("customer", &id),
    }
}

async fn put_customer(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    match s.update_customer(&id, body!(b)) {
        Ok(c) => Json(c).into_response(),
        Err(e) => fail(e),
    }
}

#[derive(Deserialize)]
struct NumberQuery {
    number: Option<String>,
}

async fn find_orders(State(s): S, Query(q): Query<NumberQuery>) -> Response {
    let name = &s.opts.name;
    let orders: Vec<Value> = s
        .find_orders(q.number.as_deref())
        .iter()
        .map(|o| o.to_api(name))
        .collect();
    Json(json!({ "orders": orders })).into_response()
}

async fn get_order(State(s): S, Path(id): Path<String>) -> Response {
    match s.order(&id) {
        Some(o) => Json(o.to_api(&s.opts.name)).into_response(),
        None => not_found("order", &id),
    }
}

async fn fulfill(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    let body = body!(b);
    match s.fulfill(&id, &body) {
        Ok((f, o, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let out = json!({"fulfillment": f, "order": o.to_api(&s.opts.name)});
            (status, Json(out)).into_response()
        }
        Err(e) => fail(e),
    }
}

async fn cancel(State(s): S, Path(id): Path<String>) -> Response {
    match s.cancel(&id) {
        Ok(o) => Json(o.to_api(&s.opts.name)).into_response(),
        Err(e) => fail(e),
    }
}

#[derive(Deserialize)]
struct Checkout {
    email: String,
    #[serde(default)]
    name: Option<String>,
    lines: Vec<CheckoutLine>,
}

#[derive(Deserialize)]
struct CheckoutLine {
    sku: String,
    quantity: i64,
}

async fn checkout(State(s): S, b: Bytes) -> Response {
    let c: Checkout = match serde_json::from_value(body!(b)) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let lines: Vec<(String, i64)> = c.lines.into_iter().map(|l| (l.sku, l.quantity)).collect();
    match s.checkout(&c.email, c.name.as_deref(), &lines).await {
        Ok(p) => match s.order(&p.id) {
            Some(o) => (StatusCode::CREATED, Json(o.to_api(&s.opts.name))).into_response(),
            None => not_found("order", &p.id),
        },
        Err(e) => fail(e),
    }
}

fn from_hub(s: &ShopInner, id: &str, kind: Kind, body: Value) -> Response {
    let field = match kind {
        Kind::Invoice => "invoice",
        Kind::Payment => "payment",
        _ => "refund",
    };
    match s.record_from_hub(id, kind, body) {
        Ok((rec, o, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let out = json!({ field: rec, "order": o.to_api(&s.opts.name) });
            (status, Json(out)).into_response()
        }
        Err(e) => fail(e),
    }
}

async fn note_erp(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    match s.note_erp(&id, &body!(b)) {
        Ok((o, _)) => Json(o.to_api(&s.opts.name)).into_response(),
        Err(e) => fail(e),
    }
}

async fn hub_invoice(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    from_hub(&s, &id, Kind::Invoice, body!(b))
}

async fn hub_payment(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    from_hub(&s, &id, Kind::Payment, body!(b))
}

async fn hub_refund(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    from_hub(&s, &id, Kind::Refund, body!(b))
}

async fn control_edit(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    let edit = match control_body_or_default(&b) {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    match s.edit_order(&id, edit) {
        Ok(o) => Json(o.to_api(&s.opts.name)).into_response(),
        Err(e) => fail(e),
    }
}

/// `DELETE /_control/products/{sku}`: the merchant deletes a product in the store's admin (no
/// event): 204, or 404 when the store has no such product.
async fn control_delete_product(State(s): S, Path(sku): Path<String>) -> Response {
    if s.core.forget(Kind::Product, &sku) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        fail(ShopError::NotFound {
            what: "product",
            id: sku,
        })
    }
}

async fn control_cancel(State(s): S, Path(id): Path<String>) -> Response {
    match s.cancel_order(&id) {
        Ok(o) => Json(o.to_api(&s.opts.name)).into_response(),
        Err(e) => fail(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CaptureBody {
    amount_minor: Option<i64>,
    method: Option<String>,
}

async fn control_capture(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    let c: CaptureBody = match control_body_or_default(&b) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match s.capture(&id, c.amount_minor, c.method.as_deref()) {
        Ok(p) => (StatusCode::CREATED, Json(p)).into_response(),
        Err(e) => fail(e),
    }
}

async fn control_refund(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    let req: RefundRequest = match control_body_or_default(&b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match s.refund(&id, req) {
        Ok(r) => (StatusCode::CREATED, Json(r)).into_response(),
        Err(e) => fail(e),
    }
}

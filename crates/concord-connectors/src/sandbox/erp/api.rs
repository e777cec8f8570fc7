//! The ERP emulator's HTTP routes (documented in the parent module). Thin: parse, call the
//! business rules in `state`, map [`ErpError`] to a status.
//!
//! Must never: hold the state lock across an `.await`.

use super::{ErpError, ErpInner};
use crate::sandbox::core::{error, lock, parse_json};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use concord_core::Kind;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

type S = State<Arc<ErpInner>>;

pub(crate) fn router(inner: Arc<ErpInner>) -> Router {
    Router::new()
        .route("/api/products/{sku}", get(get_product).put(put_product))
        .route("/api/stock/{sku}/{location}", get(get_stock).put(put_stock))
        .route("/api/prices/{list}/{sku}", get(get_price).put(put_price))
        .route("/api/customers", get(find_customers).post(create_customer))
        .route("/api/customers/{id}", get(get_customer).put(put_customer))
        .route("/api/sales-orders", get(find_orders).post(create_order))
        .route("/api/sales-orders/{id}", get(get_order))
        .route("/api/sales-orders/{id}/cancel", post(cancel_order))
        .route("/api/sales-orders/{id}/ship", post(ship_order))
        .route("/api/shipments", get(find_shipments))
        .with_state(inner)
}

fn fail(e: ErpError) -> Response {
    let status = match &e {
        ErpError::NotFound { .. } => StatusCode::NOT_FOUND,
        ErpError::Conflict(_) => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    error(status, e.to_string())
}

fn reply(r: Result<Value, ErpError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => fail(e),
    }
}

fn found(v: Option<Value>, what: &str, id: &str) -> Response {
    match v {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no {what} `{id}`")),
    }
}

macro_rules! body {
    ($bytes:expr) => {
        match parse_json(&$bytes) {
            Ok(v) => v,
            Err(r) => return r.into_response(),
        }
    };
}

async fn get_product(State(s): S, Path(sku): Path<String>) -> Response {
    found(s.core.record(Kind::Product, &sku), "product", &sku)
}

async fn put_product(State(s): S, Path(sku): Path<String>, b: Bytes) -> Response {
    reply(s.put_product(Some(&sku), body!(b)))
}

async fn get_stock(State(s): S, Path((sku, loc)): Path<(String, String)>) -> Response {
    let st = lock(&s.state).stock_of(&sku, &loc);
    found(
        st.and_then(|s| serde_json::to_value(s).ok()),
        "stock",
        &format!("{sku}@{loc}"),
    )
}

async fn put_stock(State(s): S, Path((sku, loc)): Path<(String, String)>, b: Bytes) -> Response {
    reply(
        s.put_stock(&sku, &loc, body!(b))
            .map(|st| serde_json::to_value(st).unwrap_or(Value::Null)),
    )
}

async fn get_price(State(s): S, Path((list, sku)): Path<(String, String)>) -> Response {
    let id = format!("{list}:{sku}");
    found(s.core.record(Kind::Price, &id), "price", &id)
}

async fn put_price(State(s): S, Path((list, sku)): Path<(String, String)>, b: Bytes) -> Response {
    reply(s.put_price(Some((&list, &sku)), body!(b)))
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
    found(s.customer(&id), "customer", &id)
}

async fn put_customer(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    reply(s.update_customer(&id, body!(b)))
}

#[derive(Deserialize)]
struct RefQuery {
    reference: Option<String>,
}

async fn find_orders(State(s): S, Query(q): Query<RefQuery>) -> Response {
    Json(json!({"orders": s.find_orders(q.reference.as_deref())})).into_response()
}

async fn create_order(State(s): S, b: Bytes) -> Response {
    match s.create_order(body!(b)) {
        Ok((o, true)) => (StatusCode::CREATED, Json(o.to_api())).into_response(),
        Ok((o, false)) => Json(o.to_api()).into_response(),
        Err(e) => fail(e),
    }
}

async fn get_order(State(s): S, Path(id): Path<String>) -> Response {
    found(s.order(&id).map(|o| o.to_api()), "sales order", &id)
}

async fn cancel_order(State(s): S, Path(id): Path<String>) -> Response {
    let r = s.cancel(&id);
    if r.is_ok() {
        s.core.count_writes(Kind::Order, 1);
    }
    reply(r.map(|o| o.to_api()))
}

async fn ship_order(State(s): S, Path(id): Path<String>) -> Response {
    reply(s.ship(&id))
}

#[derive(Deserialize)]
struct OrderQuery {
    order: Option<String>,
}

async fn find_shipments(State(s): S, Query(q): Query<OrderQuery>) -> Response {
    Json(json!({"shipments": s.shipments_of(q.order.as_deref())})).into_response()
}

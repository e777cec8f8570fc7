//! The ERP emulator's HTTP routes (documented in the parent module). Thin: parse, call the
//! business rules in `state`, map [`ErpError`] to a status.
//!
//! Must never: hold the state lock across an `.await`.

use super::{ErpError, ErpInner};
use crate::core::{control_body, control_body_or_default, error, lock, parse_json};
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
        .route("/api/sales-orders/{id}", get(get_order).patch(amend_order))
        .route("/api/sales-orders/{id}/cancel", post(cancel_order))
        .route("/api/sales-orders/{id}/ship", post(ship_order))
        .route("/api/shipments", get(find_shipments))
        .route("/api/invoices", get(find_invoices))
        .route("/api/payments", post(record_payment))
        .route("/api/payments/{id}", get(get_payment))
        .route(
            "/api/credit-notes",
            get(find_credit_notes).post(create_credit_note),
        )
        .route("/api/returns", get(find_returns))
        // What happens inside the ERP (a warehouse, accounting, sales reps): never faulted, not
        // counted. Documented in the crate docs (`# Control calls`).
        .route("/_control/seed", post(control_seed))
        .route(
            "/_control/stock/{sku}/{location}/adjust",
            post(control_adjust),
        )
        .route(
            "/_control/stock/{sku}/{location}/unannounced",
            post(control_unannounced),
        )
        .route("/_control/rep-orders", post(control_rep_order))
        .route("/_control/sales-orders/{id}/ship", post(control_ship))
        .route("/_control/sales-orders/{id}/invoice", post(control_invoice))
        .route("/_control/sales-orders/{id}/cancel", post(control_cancel))
        .route("/_control/invoices/{number}/pay", post(control_pay))
        .route("/_control/returns/{id}/receive", post(control_receive))
        .route(
            "/_control/credit-hold/{email}",
            axum::routing::put(control_hold).delete(control_unhold),
        )
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

async fn amend_order(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    reply(s.amend(&id, body!(b)).map(|o| o.to_api()))
}

fn created(r: Result<(Value, bool), ErpError>) -> Response {
    match r {
        Ok((v, true)) => (StatusCode::CREATED, Json(v)).into_response(),
        Ok((v, false)) => Json(v).into_response(),
        Err(e) => fail(e),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

async fn find_invoices(State(s): S, Query(q): Query<OrderQuery>) -> Response {
    let inv: Vec<Value> = s
        .invoices_of(q.order.as_deref())
        .iter()
        .map(to_value)
        .collect();
    Json(json!({ "invoices": inv })).into_response()
}

async fn record_payment(State(s): S, b: Bytes) -> Response {
    created(s.record_payment(body!(b)))
}

async fn get_payment(State(s): S, Path(id): Path<String>) -> Response {
    found(s.payment(&id), "payment", &id)
}

async fn find_credit_notes(State(s): S, Query(q): Query<OrderQuery>) -> Response {
    let notes: Vec<Value> = s
        .credit_notes_of(q.order.as_deref())
        .iter()
        .map(to_value)
        .collect();
    Json(json!({ "credit_notes": notes })).into_response()
}

async fn create_credit_note(State(s): S, b: Bytes) -> Response {
    created(s.credit(body!(b)).map(|(cn, new)| (to_value(&cn), new)))
}

async fn find_returns(State(s): S, Query(q): Query<OrderQuery>) -> Response {
    let r: Vec<Value> = s
        .returns_of(q.order.as_deref())
        .iter()
        .map(to_value)
        .collect();
    Json(json!({ "returns": r })).into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ShipBody {
    /// Absent or empty: everything still open.
    #[serde(default)]
    lines: Vec<concord_core::model::ItemQty>,
    carrier: Option<String>,
    tracking_number: Option<String>,
}

/// `POST /_control/sales-orders/{id}/ship` `{"lines":[{"sku","quantity"}],"carrier",
/// "tracking_number"}`: the warehouse ships part of (or, without lines, the rest of) an order.
async fn control_ship(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    let req: ShipBody = match control_body_or_default(&b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let lines: Vec<(String, i64)> = if req.lines.is_empty() {
        match s.order(&id) {
            Some(o) => o.remaining().into_iter().collect(),
            None => return error(StatusCode::NOT_FOUND, format!("no sales order `{id}`")),
        }
    } else {
        req.lines.into_iter().map(|l| (l.sku, l.quantity)).collect()
    };
    let r = s.ship_lines(
        &id,
        &lines,
        req.carrier.as_deref(),
        req.tracking_number.as_deref(),
    );
    match r {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => fail(e),
    }
}

async fn control_invoice(State(s): S, Path(id): Path<String>) -> Response {
    reply(s.invoice(&id).map(|i| to_value(&i)))
}

/// `PUT /_control/credit-hold/{email}`: the customer's new orders are refused from now on.
async fn control_hold(State(s): S, Path(email): Path<String>) -> Response {
    s.set_credit_hold(&email, true);
    StatusCode::NO_CONTENT.into_response()
}

/// `DELETE /_control/credit-hold/{email}`: lift the hold (a refused order may be sent again).
async fn control_unhold(State(s): S, Path(email): Path<String>) -> Response {
    s.set_credit_hold(&email, false);
    StatusCode::NO_CONTENT.into_response()
}

async fn control_cancel(State(s): S, Path(id): Path<String>) -> Response {
    reply(s.cancel(&id).map(|o| o.to_api()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PayBody {
    amount_minor: Option<i64>,
    method: Option<String>,
}

/// `POST /_control/invoices/{number}/pay` `{"amount_minor","method"}` (both optional): a payment
/// received at the ERP (a bank transfer).
async fn control_pay(State(s): S, Path(number): Path<String>, b: Bytes) -> Response {
    let req: PayBody = match control_body_or_default(&b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    reply(s.pay_invoice(&number, req.amount_minor, req.method.as_deref()))
}

async fn control_receive(State(s): S, Path(id): Path<String>) -> Response {
    reply(s.receive_return(&id).map(|r| to_value(&r)))
}

/// Most SKUs one `POST /_control/seed` creates, and most locations.
const MAX_SEED_SKUS: usize = 10_000;
const MAX_SEED_LOCATIONS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedBody {
    skus: usize,
    locations: Vec<String>,
    quantity: i64,
}

/// `POST /_control/seed` `{"skus","locations","quantity"}`: the catalogue `SKU-0001…`.
async fn control_seed(State(s): S, b: Bytes) -> Response {
    let req: SeedBody = match control_body(&b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let invalid = |m: String| error(StatusCode::UNPROCESSABLE_ENTITY, m);
    if !(1..=MAX_SEED_SKUS).contains(&req.skus) {
        return invalid(format!(
            "skus: must be 1..={MAX_SEED_SKUS}, got {}",
            req.skus
        ));
    }
    if let Err(e) = concord_core::limits::count(
        "locations",
        req.locations.len(),
        MAX_SEED_LOCATIONS,
        "locations",
    ) {
        return invalid(e.to_string());
    }
    if req.locations.is_empty() {
        return invalid("locations: name at least one location".into());
    }
    for (i, l) in req.locations.iter().enumerate() {
        if let Err(e) = concord_core::limits::key(&format!("locations[{i}]"), l) {
            return invalid(e.to_string());
        }
    }
    if let Err(e) = concord_core::limits::quantity("quantity", req.quantity) {
        return invalid(e.to_string());
    }
    match s.seed(req.skus, &req.locations, req.quantity) {
        Ok(()) => Json(json!({ "skus": req.skus })).into_response(),
        Err(e) => fail(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdjustBody {
    delta: i64,
}

/// `POST /_control/stock/{sku}/{location}/adjust` `{"delta"}`: a goods receipt or a count
/// correction.
async fn control_adjust(
    State(s): S,
    Path((sku, loc)): Path<(String, String)>,
    b: Bytes,
) -> Response {
    let req: AdjustBody = match control_body(&b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    reply(
        s.adjust_stock(&sku, &loc, req.delta)
            .map(|st| to_value(&st)),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnannouncedBody {
    on_hand: i64,
}

/// `POST /_control/stock/{sku}/{location}/unannounced` `{"on_hand"}`: a figure changed with no
/// change event (a lost webhook): in the snapshot and the feed, never sent as a webhook.
async fn control_unannounced(
    State(s): S,
    Path((sku, loc)): Path<(String, String)>,
    b: Bytes,
) -> Response {
    let req: UnannouncedBody = match control_body(&b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    reply(
        s.set_stock_unannounced(&sku, &loc, req.on_hand)
            .map(|st| to_value(&st)),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepOrderBody {
    email: String,
    lines: Vec<concord_core::model::ItemQty>,
}

/// `POST /_control/rep-orders` `{"email","lines"}`: an order keyed in by a sales rep.
async fn control_rep_order(State(s): S, b: Bytes) -> Response {
    let req: RepOrderBody = match control_body(&b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let lines: Vec<(String, i64)> = req.lines.into_iter().map(|l| (l.sku, l.quantity)).collect();
    match s.rep_order(&req.email, &lines) {
        Ok(so) => (StatusCode::CREATED, Json(so.to_api())).into_response(),
        Err(e) => fail(e),
    }
}

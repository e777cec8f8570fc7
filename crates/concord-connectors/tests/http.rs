//! The `http` connector against a local fake API (axum on 127.0.0.1, port 0): every option of
//! issue 15 — auth kinds, token refresh and rotation (kept by a real engine over a real store
//! across a restart), 401 re-login, writes with lookup-before-create and steps, bulk, every
//! pagination kind (with a page boundary inside a run of equal cursor values), the guards
//! against repeated tokens and other origins, 429 with both header styles, error rules,
//! redirects and oversized bodies, webhook signature variants and replays, and bad
//! configurations refused with their field path.
//!
//! Waits poll a condition under a deadline; nothing sleeps and hopes.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use concord_connectors::http::config::{Algorithm, Encoding};
use concord_connectors::http::webhook::sign;
use concord_connectors::http::HttpConnector;
use concord_core::Kind;
use concord_engine::config::Config;
use concord_engine::connector::{
    Captured, Connector, DeliveryError, EndpointSpec, ReadRequest, WebhookError, WriteOp,
    WriteOutcome,
};
use concord_engine::runtime::Engine;
use concord_store::{SqliteStore, Store};
use concord_testkit::wait_until;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---- the fake API ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Default)]
struct Fake {
    seen: Vec<Seen>,
    /// Products by id: (sku, name).
    products: BTreeMap<String, (String, String)>,
    /// Answer 500 after committing this many creates (a lost answer).
    lose_create_answers: usize,
    fulfillments: Vec<(String, String)>,
    shipments: Vec<(String, Value)>,
    /// Valid session tokens (login).
    sessions: BTreeSet<String>,
    logins: usize,
    /// OAuth2: the refresh token currently valid, and the access tokens issued.
    refresh: String,
    access: BTreeSet<String>,
    token_requests: usize,
    expires_in: u64,
    /// What `/limited` answers next (popped), else 200.
    limited: Vec<(u16, Vec<(&'static str, String)>)>,
    /// Listed records: (id, updated_at).
    items: Vec<(String, String)>,
    sink: BTreeMap<String, usize>,
}

type State = Arc<Mutex<Fake>>;

fn reply(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn q(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                let s = s.replace('+', " ");
                let mut out = Vec::new();
                let b = s.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    if b[i] == b'%' && i + 2 < b.len() {
                        if let Ok(x) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                            out.push(x);
                            i += 3;
                            continue;
                        }
                    }
                    out.push(b[i]);
                    i += 1;
                }
                String::from_utf8(out).unwrap()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// Items with `updated_at >= since`, in (updated_at, id) order.
fn listed(f: &Fake, since: Option<&String>) -> Vec<Value> {
    let mut v: Vec<&(String, String)> = f
        .items
        .iter()
        .filter(|(_, t)| since.is_none_or(|s| t >= s))
        .collect();
    v.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    v.into_iter()
        .map(|(id, t)| json!({"id": id, "sku": id, "name": format!("Item {id}"), "updated_at": t}))
        .collect()
}

fn authorized(f: &Fake, h: &HeaderMap) -> bool {
    let auth = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let cookie = h.get("cookie").and_then(|v| v.to_str().ok()).unwrap_or("");
    auth.strip_prefix("Bearer ")
        .is_some_and(|t| f.sessions.contains(t) || f.access.contains(t))
        || cookie
            .strip_prefix("sid=")
            .is_some_and(|t| f.sessions.contains(t))
}

async fn handle(
    axum::extract::State(state): axum::extract::State<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let json_body: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let mut f = state.lock().unwrap();
    f.seen.push(Seen {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers: headers.clone(),
        body: json_body.clone(),
    });
    let qs = q(&query);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["echo"]) => reply(200, json!({"ok": true})),
        ("GET", ["products"]) => {
            let found: Vec<Value> = f
                .products
                .iter()
                .filter(|(_, (sku, _))| qs.get("sku").is_none_or(|s| s == sku))
                .map(|(id, (sku, name))| json!({"id": id, "sku": sku, "name": name}))
                .collect();
            reply(200, json!({"products": found}))
        }
        ("POST", ["products"]) => {
            let id = format!("p{}", f.products.len() + 1);
            let sku = json_body["sku"].as_str().unwrap_or("").to_string();
            let name = json_body["title"].as_str().unwrap_or("").to_string();
            f.products.insert(id.clone(), (sku, name));
            if f.lose_create_answers > 0 {
                f.lose_create_answers -= 1;
                return reply(500, json!({"message": "gateway lost the answer"}));
            }
            reply(201, json!({"product": {"id": id}}))
        }
        ("PUT", ["products", id]) => {
            let name = json_body["title"].as_str().unwrap_or("").to_string();
            match f.products.get_mut(*id) {
                Some(p) => {
                    p.1 = name;
                    reply(200, json!({"product": {"id": id}}))
                }
                None => reply(404, json!({"message": "no such product"})),
            }
        }
        ("DELETE", ["products", id]) => match f.products.remove(*id) {
            Some(_) => reply(204, Value::Null),
            None => reply(404, json!({"message": "no such product"})),
        },
        ("POST", ["orders", order, "fulfillments"]) => {
            let id = format!("f{}", f.fulfillments.len() + 1);
            f.fulfillments.push((id.clone(), order.to_string()));
            reply(200, json!({"fulfillment": {"id": id, "order": order}}))
        }
        ("POST", ["fulfillments", fid, "shipments"]) => {
            f.shipments.push((fid.to_string(), json_body));
            reply(200, json!({"ok": true}))
        }
        ("POST", ["login"]) => {
            if json_body["password"] != "pw" {
                return reply(401, json!({"message": "bad password"}));
            }
            f.logins += 1;
            let t = format!("s{}", f.logins);
            f.sessions.insert(t.clone());
            (
                StatusCode::OK,
                [
                    ("content-type", "application/json".to_string()),
                    ("set-cookie", format!("sid={t}; Path=/; HttpOnly")),
                ],
                json!({"token": t}).to_string(),
            )
                .into_response()
        }
        ("POST", ["control", "expire-sessions"]) => {
            f.sessions.clear();
            f.access.clear();
            reply(200, json!({}))
        }
        ("GET", ["secure"]) | ("GET", ["secure", _]) => {
            if authorized(&f, &headers) {
                reply(200, json!({"ok": true}))
            } else {
                reply(401, json!({"message": "unauthorized"}))
            }
        }
        ("POST", ["oauth", "token"]) => {
            f.token_requests += 1;
            let form = q(&String::from_utf8_lossy(&body));
            let basic = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            use base64::Engine;
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("client:csecret")
            );
            let in_body = form.get("client_id").map(String::as_str) == Some("client")
                && form.get("client_secret").map(String::as_str) == Some("csecret");
            if basic != expected && !in_body {
                return reply(401, json!({"error": "invalid_client"}));
            }
            let n = f.token_requests;
            let access = format!("a{n}");
            match form.get("grant_type").map(String::as_str) {
                Some("client_credentials") => {
                    f.access.insert(access.clone());
                    reply(
                        200,
                        json!({"access_token": access, "token_type": "bearer", "expires_in": f.expires_in}),
                    )
                }
                Some("refresh_token") => {
                    if form.get("refresh_token") != Some(&f.refresh) {
                        return reply(400, json!({"error": "invalid_grant"}));
                    }
                    let next = format!("r{n}");
                    f.refresh = next.clone();
                    f.access.insert(access.clone());
                    reply(
                        200,
                        json!({"access_token": access, "token_type": "Bearer",
                               "expires_in": f.expires_in, "refresh_token": next}),
                    )
                }
                _ => reply(400, json!({"error": "unsupported_grant_type"})),
            }
        }
        ("GET", ["limited"]) => {
            if f.limited.is_empty() {
                return reply(200, json!({"ok": true}));
            }
            let (status, hs) = f.limited.remove(0);
            let mut r = reply(status, json!({"message": "slow down"}));
            for (k, v) in hs {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            r
        }
        ("GET", ["redirect"]) => {
            let to = qs.get("to").cloned().unwrap_or_default();
            (StatusCode::FOUND, [("location", to)], "").into_response()
        }
        ("GET", ["steal"]) => reply(200, json!({"stolen": true})),
        ("GET", ["huge"]) => reply(200, json!({"blob": "x".repeat(64 * 1024)})),
        ("GET", ["soft-error"]) => reply(
            200,
            json!({"error": {"code": "INVALID", "message": "sku unknown"}}),
        ),
        ("GET", ["conflict"]) => reply(409, json!({"type": "conflict"})),
        // Pagination kinds over `items`.
        ("GET", ["cursor"]) => {
            let all = listed(&f, qs.get("since"));
            let start = qs
                .get("after")
                .map_or(0, |a| a.parse::<usize>().unwrap_or(0));
            let limit = qs.get("limit").map_or(2, |l| l.parse().unwrap_or(2));
            let page: Vec<Value> = all.iter().skip(start).take(limit).cloned().collect();
            let next = (start + limit < all.len()).then(|| (start + limit).to_string());
            reply(200, json!({"data": page, "next_cursor": next}))
        }
        ("GET", ["stuck"]) => reply(200, json!({"data": [{"id": "x"}], "next_cursor": "same"})),
        ("GET", ["endless"]) => {
            let after = qs.get("after").map_or(0, |a| a.parse::<u64>().unwrap_or(0));
            reply(
                200,
                json!({"data": [{"id": format!("e{after}")}], "next_cursor": (after + 1).to_string()}),
            )
        }
        ("GET", ["link"]) => {
            let all = listed(&f, None);
            let page = qs
                .get("page")
                .map_or(1, |p| p.parse::<usize>().unwrap_or(1));
            let per = 2;
            let items: Vec<Value> = all
                .iter()
                .skip((page - 1) * per)
                .take(per)
                .cloned()
                .collect();
            let mut r = reply(200, Value::Array(items));
            if page * per < all.len() {
                let host = headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("");
                let target = qs
                    .get("elsewhere")
                    .cloned()
                    .unwrap_or_else(|| format!("http://{host}"));
                r.headers_mut().insert(
                    "link",
                    format!("<{target}/link?page={}>; rel=\"next\", <http://{host}/link?page=1>; rel=\"first\"", page + 1)
                        .parse()
                        .unwrap(),
                );
            }
            r
        }
        ("GET", ["paged"]) => {
            let all = listed(&f, qs.get("since"));
            let page = qs
                .get("page")
                .map_or(1, |p| p.parse::<usize>().unwrap_or(1));
            let per = qs.get("per_page").map_or(2, |p| p.parse().unwrap_or(2));
            let items: Vec<Value> = all
                .iter()
                .skip((page - 1) * per)
                .take(per)
                .cloned()
                .collect();
            reply(
                200,
                json!({"items": items, "total_pages": all.len().div_ceil(per)}),
            )
        }
        ("GET", ["offset"]) => {
            let all = listed(&f, qs.get("updated_at[$gte]"));
            let offset = qs
                .get("offset")
                .map_or(0, |p| p.parse::<usize>().unwrap_or(0));
            let limit = qs.get("limit").map_or(2, |p| p.parse().unwrap_or(2));
            let items: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
            reply(
                200,
                json!({"items": items, "count": all.len(), "offset": offset}),
            )
        }
        ("POST", ["graphql"]) => {
            let all = listed(&f, None);
            let after = json_body["variables"]["after"].as_str().map_or(0, |a| {
                a.trim_start_matches("c").parse::<usize>().unwrap_or(0)
            });
            let nodes: Vec<Value> = all.iter().skip(after).take(2).cloned().collect();
            let end = after + nodes.len();
            reply(
                200,
                json!({"data": {"items": {"nodes": nodes,
                    "pageInfo": {"hasNextPage": end < all.len(), "endCursor": format!("c{end}")}}}}),
            )
        }
        ("PUT", ["sink", sku]) => {
            *f.sink.entry(sku.to_string()).or_default() += 1;
            reply(200, json!({}))
        }
        ("POST", ["bulk"]) => {
            let results: Vec<Value> = json_body
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|r| {
                    if r["on_hand"].as_i64().unwrap_or(0) < 0 {
                        json!({"error": "negative stock"})
                    } else {
                        json!({"id": format!("inv-{}", r["sku"].as_str().unwrap_or(""))})
                    }
                })
                .collect();
            reply(200, json!({"results": results}))
        }
        _ => reply(404, json!({"message": format!("no route {method} {path}")})),
    }
}

struct Api {
    url: String,
    state: State,
}

impl Api {
    async fn start() -> Api {
        let state: State = Arc::new(Mutex::new(Fake {
            expires_in: 3600,
            refresh: "r0".into(),
            ..Fake::default()
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Api { url, state }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Fake) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.with(|f| f.seen.iter().filter(|s| s.path == path).cloned().collect())
    }

    fn connector(&self, options: Value) -> HttpConnector {
        HttpConnector::new(&spec(&self.url, options)).unwrap_or_else(|e| panic!("{e}"))
    }
}

fn spec(url: &str, options: Value) -> EndpointSpec {
    let mut spec = EndpointSpec::new("api", "http", url, options);
    spec.webhook_secret = Some("whsec".into());
    spec.timeout = Duration::from_secs(5);
    spec
}

fn op(kind: Kind, key: &str, o: &str, payload: Value) -> WriteOp {
    WriteOp {
        item_id: 7,
        kind,
        key: key.into(),
        op: o.into(),
        payload,
        external_id: None,
        refs: BTreeMap::new(),
    }
}

async fn write1(c: &HttpConnector, op: WriteOp) -> WriteOutcome {
    c.write(vec![op]).await.remove(0)
}

fn done_id(o: &WriteOutcome) -> Option<String> {
    match o {
        WriteOutcome::Done { external_id, .. } => external_id.clone(),
        other => panic!("not done: {other:?}"),
    }
}

fn failed(o: WriteOutcome) -> DeliveryError {
    match o {
        WriteOutcome::Failed(e) => e,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// A connector whose `product` writes hit `path` (a simple GET through a write).
fn probe(path: &str, extra: Value) -> Value {
    let mut o = json!({"write": {"product": {"upsert": {"method": "GET", "path": path}}}});
    if let (Some(obj), Some(e)) = (o.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            obj.insert(k.clone(), v.clone());
        }
    }
    o
}

fn product_op() -> WriteOp {
    op(
        Kind::Product,
        "SKU-1",
        "upsert",
        json!({"sku": "SKU-1", "name": "One"}),
    )
}

// ---- auth -----------------------------------------------------------------------------------

#[tokio::test]
async fn fixed_credentials_go_where_configured_and_never_into_a_trace() {
    let api = Api::start().await;
    let cases = [
        (
            json!({"type": "bearer", "token": "tok-1"}),
            "authorization",
            "Bearer tok-1",
        ),
        (
            json!({"type": "basic", "user": "sk_1", "password": ""}),
            "authorization",
            "Basic c2tfMTo=",
        ),
        (
            json!({"type": "api_key", "name": "x-api-key", "value": "k-1"}),
            "x-api-key",
            "k-1",
        ),
    ];
    for (auth, header, want) in cases {
        let mut c = api.connector(probe("/echo", json!({"auth": auth})));
        c.enable_trace();
        assert!(matches!(
            write1(&c, product_op()).await,
            WriteOutcome::Done { .. }
        ));
        let last = api.seen("/echo").pop().unwrap();
        assert_eq!(last.headers[header], want);
        let trace = serde_json::to_string(&c.take_trace()).unwrap();
        assert!(!trace.contains(want), "trace shows the credential: {trace}");
        assert!(trace.contains("***"));
    }
    let mut c = api.connector(probe(
        "/echo",
        json!({"auth": {"type": "api_key", "name": "api_key", "value": "q-secret", "in": "query"}}),
    ));
    c.enable_trace();
    write1(&c, product_op()).await;
    assert_eq!(api.seen("/echo").pop().unwrap().query, "api_key=q-secret");
    assert!(!serde_json::to_string(&c.take_trace())
        .unwrap()
        .contains("q-secret"));
}

fn login_options(extra: Value) -> Value {
    let mut o = probe(
        "/secure",
        json!({"auth": {"type": "login",
            "request": {"method": "POST", "path": "/login", "body": "{email: \"a@b.c\", password: $vars.password}"},
            "token": ".token"},
            "vars": {"password": "pw"}}),
    );
    if let Some(e) = extra.as_object() {
        for (k, v) in e {
            o["auth"][k] = v.clone();
        }
    }
    o
}

#[tokio::test]
async fn a_login_session_is_renewed_once_on_401_and_never_in_a_loop() {
    let api = Api::start().await;
    let mut c = api.connector(login_options(json!({})));
    c.enable_trace();
    assert!(matches!(
        write1(&c, product_op()).await,
        WriteOutcome::Done { .. }
    ));
    let trace = c.take_trace();
    assert_eq!(trace.len(), 2, "{trace:?}");
    for x in &trace {
        let bodies = [&x.request_body, &x.response_body].map(|b| b.clone().unwrap_or_default());
        let headers: Vec<&String> = x.request_headers.iter().map(|(_, v)| v).collect();
        assert!(
            bodies
                .iter()
                .chain(headers)
                .all(|t| !t.contains("s1") && !t.contains("pw")),
            "the session token or the password is in the trace: {x:?}"
        );
    }
    assert!(matches!(
        write1(&c, product_op()).await,
        WriteOutcome::Done { .. }
    ));
    assert_eq!(c.logins(), 1, "the session is kept");
    // The server forgets its sessions: the next request is answered 401, the connector logs in
    // again and resends it once.
    api.with(|f| f.sessions.clear());
    assert!(matches!(
        write1(&c, product_op()).await,
        WriteOutcome::Done { .. }
    ));
    assert_eq!(c.logins(), 2);
    assert_eq!(api.with(|f| f.logins), 2);
    // A server that refuses every session: one re-login per request, then a permanent failure.
    let c = api.connector(probe(
        "/secure/never",
        json!({"auth": {"type": "login", "request": {"method": "POST", "path": "/login",
               "body": "{password: \"pw\"}"}, "token": "\"not-a-session\""}}),
    ));
    let e = failed(write1(&c, product_op()).await);
    assert!(e.is_permanent(), "{e}");
    assert!(
        e.to_string().contains("401 right after new credentials"),
        "{e}"
    );
    assert_eq!(c.logins(), 2, "one login, one re-login, no loop");
    // Wrong password: the login itself fails, permanently.
    let c = api.connector(login_options(
        json!({"request": {"method": "POST", "path": "/login",
        "body": "{password: \"nope\"}"}}),
    ));
    let e = failed(write1(&c, product_op()).await);
    assert!(
        e.is_permanent() && e.to_string().contains("login answered HTTP 401"),
        "{e}"
    );
    // A session cookie instead of a token.
    let mut o = login_options(json!({"cookie": "sid"}));
    o["auth"].as_object_mut().unwrap().remove("token");
    let c = api.connector(o);
    assert!(matches!(
        write1(&c, product_op()).await,
        WriteOutcome::Done { .. }
    ));
    assert!(api.seen("/secure").last().unwrap().headers["cookie"]
        .to_str()
        .unwrap()
        .starts_with("sid=s"));
}

fn oauth(grant: &str, extra: Value) -> Value {
    let mut auth = json!({"type": "oauth2", "token_url": "/oauth/token", "client_id": "client",
                          "client_secret": "csecret", "grant": grant});
    if grant == "refresh_token" {
        auth["refresh_token"] = json!("r0");
    }
    for (k, v) in extra.as_object().unwrap() {
        auth[k] = v.clone();
    }
    probe("/secure", json!({"auth": auth}))
}

#[tokio::test]
async fn an_oauth2_token_is_cached_and_refreshed_before_it_expires() {
    let api = Api::start().await;
    let c = api.connector(oauth("client_credentials", json!({})));
    for _ in 0..3 {
        assert!(matches!(
            write1(&c, product_op()).await,
            WriteOutcome::Done { .. }
        ));
    }
    assert_eq!(api.with(|f| f.token_requests), 1, "cached while valid");
    // Expiring within `refresh_before`: every request takes a fresh token first.
    api.with(|f| f.expires_in = 30);
    let c = api.connector(oauth(
        "client_credentials",
        json!({"refresh_before": "60s"}),
    ));
    let before = api.with(|f| f.token_requests);
    for _ in 0..3 {
        assert!(matches!(
            write1(&c, product_op()).await,
            WriteOutcome::Done { .. }
        ));
    }
    assert_eq!(api.with(|f| f.token_requests) - before, 3);
    // A 401 (token revoked early) drops the token and fetches one more, once.
    api.with(|f| f.expires_in = 3600);
    let c = api.connector(oauth("client_credentials", json!({})));
    write1(&c, product_op()).await;
    api.with(|f| f.access.clear());
    let before = api.with(|f| f.token_requests);
    assert!(matches!(
        write1(&c, product_op()).await,
        WriteOutcome::Done { .. }
    ));
    assert_eq!(api.with(|f| f.token_requests) - before, 1);
}

#[tokio::test]
async fn a_rotated_refresh_token_is_used_next_and_survives_a_restart_through_the_store() {
    let api = Api::start().await;
    let c = api.connector(oauth("refresh_token", json!({})));
    let mut rx = c
        .state_updates()
        .expect("a refresh-token connector publishes state");
    assert!(matches!(
        write1(&c, product_op()).await,
        WriteOutcome::Done { .. }
    ));
    // The provider rotated r0 → r1; r0 no longer works.
    assert_eq!(api.with(|f| f.refresh.clone()), "r1");
    rx.changed().await.unwrap();
    let saved = rx.borrow().clone().unwrap();
    assert!(saved.contains("\"r1\"") && !saved.contains("csecret"));
    // Expire the access token: the refresh uses r1, not the configured r0.
    api.with(|f| f.access.clear());
    assert!(matches!(
        write1(&c, product_op()).await,
        WriteOutcome::Done { .. }
    ));
    assert_eq!(api.with(|f| f.refresh.clone()), "r2");

    // A real engine over a real store keeps the rotated token across a restart.
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("hub.sqlite");
    let text = format!(
        r#"
[store]
path = "{0}"
[endpoints.api]
connector = "http"
url = "{1}"
[endpoints.api.options.auth]
type = "oauth2"
token_url = "/oauth/token"
client_id = "client"
client_secret = "csecret"
grant = "refresh_token"
refresh_token = "${{REFRESH}}"
[endpoints.api.options.write.product.upsert]
method = "GET"
path = "/secure"
[endpoints.src]
connector = "http"
url = "{1}"
webhook_secret = "whsec"
[endpoints.src.options.webhook]
signature = {{ header = "x-sig" }}
routes = [{{ kind = "product", id = ".sku" }}]
[[flows]]
name = "products"
kind = "product"
pattern = "broadcast"
mode = "realtime"
from = ["src"]
to = ["api"]
"#,
        store_path.display(),
        api.url
    );
    let config = |refresh: &'static str| {
        Arc::new(
            Config::from_toml_str_with_env(&text, &dir.path().join("c.toml"), move |n| {
                (n == "REFRESH").then(|| refresh.to_string())
            })
            .unwrap(),
        )
    };
    // The operator configured r2 (the token that works now).
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&store_path).unwrap());
    let start = |cfg: Arc<Config>, store: Arc<dyn Store>| async move {
        let mut cs: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
        let hc: Arc<HttpConnector> = Arc::new(HttpConnector::new(&cfg.endpoints["api"]).unwrap());
        cs.insert("api".into(), hc.clone());
        cs.insert(
            "src".into(),
            concord_connectors::build(&cfg.endpoints["src"]).unwrap(),
        );
        let engine = Engine::new(cfg, store, cs).unwrap();
        let tasks = engine.start().await.unwrap();
        (engine, tasks, hc)
    };
    let (engine, mut tasks, hc) = start(config("r2"), store.clone()).await;
    api.with(|f| f.access.clear());
    assert!(matches!(
        write1(&hc, product_op()).await,
        WriteOutcome::Done { .. }
    ));
    assert_eq!(api.with(|f| f.refresh.clone()), "r3");
    wait_until("the engine keeps r3", Duration::from_secs(5), async || {
        store
            .connector_state("api")
            .await
            .unwrap()
            .unwrap_or_default()
            .contains("\"r3\"")
    })
    .await;
    engine.shutdown();
    while tasks.join_next().await.is_some() {}
    drop(engine);
    drop(store);

    // Restart with the same config (still saying r2, which the provider no longer takes).
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&store_path).unwrap());
    let (engine, mut tasks, hc) = start(config("r2"), store.clone()).await;
    api.with(|f| f.access.clear());
    let out = write1(&hc, product_op()).await;
    assert!(
        matches!(out, WriteOutcome::Done { .. }),
        "restored r3 works: {out:?}"
    );
    assert_eq!(api.with(|f| f.refresh.clone()), "r4");
    engine.shutdown();
    while tasks.join_next().await.is_some() {}
}

// ---- writes ---------------------------------------------------------------------------------

fn products_options() -> Value {
    json!({"write": {"product": {
        "find": {"path": "/products", "query": {"sku": "{.sku}"}, "select": ".products"},
        "create": {"method": "POST", "path": "/products", "body": "{sku, title: .name}", "success": [201]},
        "update": {"method": "PUT", "path": "/products/{$id}", "body": "{title: .name}"},
        "id": ".product.id",
        "idempotency_header": "Idempotency-Key"
    }}})
}

#[tokio::test]
async fn a_retried_create_never_makes_a_second_record() {
    let api = Api::start().await;
    let c = api.connector(products_options());
    // The API creates the product but the answer is lost (500).
    api.with(|f| f.lose_create_answers = 1);
    let create = op(
        Kind::Product,
        "SKU-1",
        "create",
        json!({"sku": "SKU-1", "name": "One"}),
    );
    let e = failed(write1(&c, create.clone()).await);
    assert!(matches!(e, DeliveryError::Transient { .. }), "{e}");
    // The engine retries the same item: the lookup finds the product, nothing is created.
    let out = write1(&c, create.clone()).await;
    assert_eq!(done_id(&out).as_deref(), Some("p1"));
    assert_eq!(api.with(|f| f.products.len()), 1, "exactly one product");
    let posts: Vec<Seen> = api
        .seen("/products")
        .into_iter()
        .filter(|s| s.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1);
    // An upsert of the same SKU updates it by the id the lookup found.
    let up = op(
        Kind::Product,
        "SKU-1",
        "upsert",
        json!({"sku": "SKU-1", "name": "Renamed"}),
    );
    assert_eq!(done_id(&write1(&c, up).await).as_deref(), Some("p1"));
    assert_eq!(api.with(|f| f.products["p1"].1.clone()), "Renamed");
    // A known id (xref) skips the lookup.
    let mut known = op(
        Kind::Product,
        "SKU-1",
        "upsert",
        json!({"sku": "SKU-1", "name": "Known"}),
    );
    known.external_id = Some("p1".into());
    let gets = api.seen("/products").len();
    write1(&c, known).await;
    assert_eq!(
        api.seen("/products").len(),
        gets,
        "no lookup with a known id"
    );
    // The idempotency key is the same for a retry of the same item and content.
    let key = |s: &Seen| s.headers["idempotency-key"].to_str().unwrap().to_string();
    let puts = api.seen("/products/p1");
    assert!(key(&puts[0]).starts_with("concord-7-"));
    assert_ne!(key(&puts[0]), key(&puts[1]), "another content, another key");
    api.with(|f| f.lose_create_answers = 1);
    let fresh = op(
        Kind::Product,
        "SKU-2",
        "create",
        json!({"sku": "SKU-2", "name": "Two"}),
    );
    let _ = write1(&c, fresh.clone()).await;
    let post = api
        .seen("/products")
        .into_iter()
        .filter(|s| s.method == "POST")
        .last()
        .unwrap();
    assert_eq!(
        key(&post),
        concord_connectors::http::write::idempotency_key(&fresh),
        "deterministic per item and content"
    );
}

#[tokio::test]
async fn steps_bind_their_answers_and_when_skips_a_step() {
    let api = Api::start().await;
    let c = api.connector(json!({"write": {"shipment": {"create": [
        {"name": "ful", "method": "POST", "path": "/orders/{$refs[\"order:\" + .order]}/fulfillments",
         "body": "{lines}", "select": ".fulfillment"},
        {"method": "POST", "path": "/fulfillments/{$ful.id}/shipments",
         "when": ".tracking_number != null", "body": "{labels: [{tracking_number}]}"}
    ], "id": "$ful.id"}}}));
    let mut s = op(
        Kind::Shipment,
        "web/1:S1",
        "create",
        json!({"id": "S1", "order": "web/1", "tracking_number": "TRACK-9", "lines": []}),
    );
    s.refs.insert("order:web/1".into(), "ord_42".into());
    assert_eq!(done_id(&write1(&c, s.clone()).await).as_deref(), Some("f1"));
    assert_eq!(
        api.with(|f| f.fulfillments.clone()),
        [("f1".to_string(), "ord_42".to_string())]
    );
    assert_eq!(
        api.with(|f| f.shipments.clone()),
        [(
            "f1".to_string(),
            json!({"labels": [{"tracking_number": "TRACK-9"}]})
        )]
    );
    // Without a tracking number the second step is skipped.
    s.payload["tracking_number"] = Value::Null;
    assert_eq!(done_id(&write1(&c, s).await).as_deref(), Some("f2"));
    assert_eq!(api.with(|f| f.shipments.len()), 1);
    // A path value is one segment: it cannot climb out of its place in the URL.
    let mut evil = op(
        Kind::Shipment,
        "k",
        "create",
        json!({"order": "web/1", "lines": []}),
    );
    evil.refs
        .insert("order:web/1".into(), "../control/expire-sessions?".into());
    let _ = write1(&c, evil).await;
    assert!(api.seen("/control/expire-sessions").is_empty());
}

#[tokio::test]
async fn bulk_writes_send_one_request_and_map_results_back() {
    let api = Api::start().await;
    let c = api.connector(json!({"write": {"stock": {
        "upsert": {"method": "PUT", "path": "/sink/{.sku}", "body": "."},
        "bulk": {"max": 10, "request": {"method": "POST", "path": "/bulk", "body": "map(.record)"},
                 "results": ".results"}
    }}}));
    assert_eq!(c.capabilities().kind(Kind::Stock).write.max_batch, 10);
    let ops: Vec<WriteOp> = [("A", 1), ("B", -1), ("C", 3)]
        .iter()
        .map(|(s, n)| op(Kind::Stock, s, "upsert", json!({"sku": s, "on_hand": n})))
        .collect();
    let out = c.write(ops).await;
    assert_eq!(api.seen("/bulk").len(), 1);
    assert_eq!(done_id(&out[0]).as_deref(), Some("inv-A"));
    assert!(
        matches!(&out[1], WriteOutcome::Failed(DeliveryError::Permanent { reason }) if reason.contains("negative stock"))
    );
    assert_eq!(done_id(&out[2]).as_deref(), Some("inv-C"));
}

// ---- rate limits, classification, hostile answers --------------------------------------------

#[tokio::test]
async fn http_429_is_rate_limited_with_retry_after_or_reset_headers() {
    let api = Api::start().await;
    let c = api.connector(probe(
        "/limited",
        json!({"rate_limit": {"remaining_header": "x-ratelimit-remaining",
                              "reset_header": "x-ratelimit-reset", "max_wait": "10m"}}),
    ));
    let in_90s = httpdate(SystemTime::now() + Duration::from_secs(90));
    api.with(|f| {
        f.limited = vec![
            (429, vec![("retry-after", "7".to_string())]),
            (429, vec![("retry-after", in_90s)]),
            (
                429,
                vec![
                    ("x-ratelimit-remaining", "0".into()),
                    ("x-ratelimit-reset", "12".into()),
                ],
            ),
            (429, vec![("retry-after", "99999999999".into())]),
            (503, vec![("retry-after", "3".into())]),
        ]
    });
    let wait = |e: DeliveryError| -> Duration {
        match e {
            DeliveryError::RateLimited {
                retry_after: Some(d),
                ..
            } => d,
            other => panic!("not rate limited with a wait: {other:?}"),
        }
    };
    assert_eq!(
        wait(failed(write1(&c, product_op()).await)),
        Duration::from_secs(7)
    );
    let d = wait(failed(write1(&c, product_op()).await));
    assert!(
        d > Duration::from_secs(80) && d <= Duration::from_secs(90),
        "{d:?}"
    );
    // The reset-header style; the gate then stays closed until the reset.
    let d = wait(failed(write1(&c, product_op()).await));
    assert!(
        d > Duration::from_secs(10) && d <= Duration::from_secs(12),
        "{d:?}"
    );
    let calls = api.seen("/limited").len();
    let d = wait(failed(write1(&c, product_op()).await));
    assert!(d <= Duration::from_secs(12));
    assert_eq!(
        api.seen("/limited").len(),
        calls,
        "not sent while the window is exhausted"
    );
    // A fresh connector (no closed gate): an absurd Retry-After is capped by max_wait.
    let c = api.connector(probe(
        "/limited",
        json!({"rate_limit": {"max_wait": "10m"}}),
    ));
    assert_eq!(
        wait(failed(write1(&c, product_op()).await)),
        Duration::from_secs(600)
    );
    assert!(matches!(
        failed(write1(&c, product_op()).await),
        DeliveryError::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(3)
    ));
    // A 200 that says "0 left, reset in 30 s" closes the gate before any 429.
    let c = api.connector(probe(
        "/limited",
        json!({"rate_limit": {"remaining_header": "x-ratelimit-remaining", "reset_header": "x-ratelimit-reset"}}),
    ));
    api.with(|f| {
        f.limited = vec![(
            200,
            vec![
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", "30".into()),
            ],
        )]
    });
    assert!(matches!(
        write1(&c, product_op()).await,
        WriteOutcome::Done { .. }
    ));
    let calls = api.seen("/limited").len();
    assert!(matches!(
        failed(write1(&c, product_op()).await),
        DeliveryError::RateLimited { .. }
    ));
    assert_eq!(api.seen("/limited").len(), calls);
}

fn httpdate(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

#[tokio::test]
async fn error_rules_classify_by_status_and_body() {
    let api = Api::start().await;
    let rules = json!({"errors": [
        {"status": [200], "when": ".error != null", "class": "permanent"},
        {"status": [409], "when": ".type == \"conflict\"", "class": "transient"}
    ]});
    let c = api.connector(probe("/soft-error", rules.clone()));
    let e = failed(write1(&c, product_op()).await);
    assert!(
        e.is_permanent() && e.to_string().contains("sku unknown"),
        "{e}"
    );
    let c = api.connector(probe("/conflict", rules));
    assert!(matches!(
        failed(write1(&c, product_op()).await),
        DeliveryError::Transient { .. }
    ));
    // Without rules a 409 is permanent (a 4xx) and a 2xx error body is a success.
    let c = api.connector(probe("/conflict", json!({})));
    assert!(failed(write1(&c, product_op()).await).is_permanent());
    let c = api.connector(probe("/soft-error", json!({})));
    assert!(matches!(
        write1(&c, product_op()).await,
        WriteOutcome::Done { .. }
    ));
}

#[tokio::test]
async fn redirects_are_not_followed_and_large_bodies_are_refused() {
    let api = Api::start().await;
    let other = Api::start().await;
    let target = format!("{}/steal", other.url);
    let c = api.connector(json!({"auth": {"type": "bearer", "token": "tok"},
        "write": {"product": {"upsert": {"method": "GET", "path": "/redirect", "query": {"to": target}}}}}));
    let e = failed(write1(&c, product_op()).await);
    assert!(e.is_permanent() && e.to_string().contains("302"), "{e}");
    assert!(other.seen("/steal").is_empty(), "the redirect was followed");
    let c = api.connector(probe("/huge", json!({"max_response_bytes": 4096})));
    let e = failed(write1(&c, product_op()).await);
    assert!(
        e.is_permanent() && e.to_string().contains("max_response_bytes"),
        "{e}"
    );
}

// ---- reads ----------------------------------------------------------------------------------

/// Read pages the way the engine does (the cursor handed back each time) until the run ends.
async fn read_run(
    c: &HttpConnector,
    kind: Kind,
    cursor: Option<String>,
) -> (Vec<Captured>, String) {
    let mut cursor = cursor;
    let mut out = Vec::new();
    for _ in 0..100 {
        let page = c
            .read_changes(ReadRequest {
                kind,
                cursor: cursor.as_deref(),
                limit: 2,
                overlap: Duration::ZERO,
            })
            .await
            .unwrap_or_else(|e| panic!("read: {e}"));
        out.extend(page.records);
        cursor = page.cursor.or(cursor);
        if !page.more {
            return (out, cursor.unwrap_or_default());
        }
    }
    panic!("more than 100 pages");
}

fn ids(cs: &[Captured]) -> Vec<String> {
    cs.iter().map(|c| c.external_id.clone()).collect()
}

fn items(n: usize) -> Vec<(String, String)> {
    (1..=n)
        .map(|i| (format!("I{i:02}"), format!("2026-01-01T00:00:{i:02}Z")))
        .collect()
}

#[tokio::test]
async fn every_pagination_kind_reads_every_record_once() {
    let api = Api::start().await;
    api.with(|f| f.items = items(7));
    let want: Vec<String> = (1..=7).map(|i| format!("I{i:02}")).collect();
    let read = |request: Value, records: &str, pagination: Value| json!({"read": {"product": {"request": request, "records": records, "pagination": pagination}}});
    let configs = [
        read(
            json!({"path": "/cursor", "query": {"after": "{$page}", "limit": "{$limit}"}}),
            ".data",
            json!({"kind": "cursor", "next": ".next_cursor"}),
        ),
        read(json!({"path": "/link"}), ".", json!({"kind": "link"})),
        read(
            json!({"path": "/paged", "query": {"page": "{$page}", "per_page": "{$limit}"}}),
            ".items",
            json!({"kind": "page", "has_more": "$page < .total_pages"}),
        ),
        // `page` without has_more: until an empty page.
        read(
            json!({"path": "/paged", "query": {"page": "{$page}", "per_page": "{$limit}"}}),
            ".items",
            json!({"kind": "page"}),
        ),
        read(
            json!({"path": "/offset", "query": {"offset": "{$page}", "limit": "{$limit}"}}),
            ".items",
            json!({"kind": "offset", "has_more": ".offset + (.items | length) < .count"}),
        ),
        read(
            json!({"path": "/offset", "query": {"offset": "{$page}", "limit": "{$limit}"}}),
            ".items",
            json!({"kind": "offset"}),
        ),
        read(
            json!({"method": "POST", "path": "/graphql",
                    "body": "{query: \"…\", variables: {after: $page, first: $limit}}"}),
            ".data.items.nodes",
            json!({"kind": "graphql", "page_info": ".data.items.pageInfo"}),
        ),
    ];
    for (i, cfg) in configs.into_iter().enumerate() {
        let c = api.connector(cfg.clone());
        let (got, _) = read_run(&c, Kind::Product, None).await;
        assert_eq!(ids(&got), want, "config {i}: {cfg}");
        // The same listing as a snapshot.
        let page = c
            .read_snapshot(ReadRequest {
                kind: Kind::Product,
                cursor: None,
                limit: 2,
                overlap: Duration::ZERO,
            })
            .await
            .unwrap();
        assert_eq!(page.records.len(), 2, "config {i}");
    }
}

#[tokio::test]
async fn a_page_boundary_inside_a_run_of_equal_cursor_values_loses_and_doubles_nothing() {
    let api = Api::start().await;
    // Five records share one timestamp; pages of two split the run twice.
    let t = "2026-01-01T00:00:05Z";
    api.with(|f| {
        f.items = vec![
            ("A".into(), "2026-01-01T00:00:01Z".into()),
            ("B".into(), t.into()),
            ("C".into(), t.into()),
            ("D".into(), t.into()),
            ("E".into(), t.into()),
            ("F".into(), t.into()),
        ]
    });
    let c = api.connector(json!({"read": {"product": {
        "request": {"path": "/offset", "query": {"updated_at[$gte]": "{$cursor}", "offset": "{$page}", "limit": "{$limit}"}},
        "records": ".items",
        "pagination": {"kind": "offset", "has_more": ".offset + (.items | length) < .count"},
        "incremental": {"field": ".updated_at"}
    }}}));
    // The journal's dedupe: the same (id, version) is dropped.
    let mut journal: BTreeSet<(String, String)> = BTreeSet::new();
    let mut journaled = |cs: &[Captured]| -> Vec<String> {
        cs.iter()
            .filter(|c| journal.insert((c.external_id.clone(), c.version.clone().unwrap())))
            .map(|c| c.external_id.clone())
            .collect()
    };
    let (first, cursor) = read_run(&c, Kind::Product, None).await;
    assert_eq!(journaled(&first), ["A", "B", "C", "D", "E", "F"]);
    assert!(
        cursor.contains(t),
        "the next run starts at the boundary: {cursor}"
    );
    // Two more records arrive with the boundary's own timestamp, one after it.
    api.with(|f| {
        f.items.push(("G".into(), t.into()));
        f.items.push(("H".into(), t.into()));
        f.items.push(("I".into(), "2026-01-01T00:00:06Z".into()));
    });
    let (second, cursor) = read_run(&c, Kind::Product, Some(cursor)).await;
    // Inclusive bound: the boundary's records are read again, and dropped as duplicates.
    assert_eq!(ids(&second), ["B", "C", "D", "E", "F", "G", "H", "I"]);
    assert_eq!(journaled(&second), ["G", "H", "I"]);
    let sent: Vec<String> = api
        .seen("/offset")
        .iter()
        .map(|s| {
            q(&s.query)
                .get("updated_at[$gte]")
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        sent.first().map(String::as_str),
        Some(""),
        "the first run has no bound"
    );
    assert!(sent.iter().skip(3).all(|b| b == t), "{sent:?}");
    // A third run with nothing new reads only the boundary again.
    let (third, _) = read_run(&c, Kind::Product, Some(cursor)).await;
    assert!(journaled(&third).is_empty());
}

#[tokio::test]
async fn a_repeated_token_a_runaway_listing_and_a_foreign_link_are_refused() {
    let api = Api::start().await;
    let c = api.connector(json!({"read": {"product": {
        "request": {"path": "/stuck", "query": {"after": "{$page}"}}, "records": ".data",
        "pagination": {"kind": "cursor", "next": ".next_cursor"}}}}));
    let p1 = c.read_changes(req(None)).await.unwrap();
    assert!(p1.more);
    let e = c.read_changes(req(p1.cursor.as_deref())).await.unwrap_err();
    assert!(
        e.is_permanent() && e.to_string().contains("same next page"),
        "{e}"
    );

    let c = api.connector(json!({"read": {"product": {
        "request": {"path": "/endless", "query": {"after": "{$page}"}}, "records": ".data",
        "pagination": {"kind": "cursor", "next": ".next_cursor"}, "max_pages": 5}}}));
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    let err = loop {
        match c.read_changes(req(cursor.as_deref())).await {
            Ok(p) => {
                pages += 1;
                assert!(pages < 10, "the guard did not stop the run");
                cursor = p.cursor;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(pages, 4);
    assert!(err.to_string().contains("max_pages = 5"), "{err}");

    api.with(|f| f.items = items(4));
    let other = Api::start().await;
    let c = api.connector(json!({"read": {"product": {
        "request": {"path": "/link", "query": {"elsewhere": other.url.clone()}},
        "pagination": {"kind": "link"}}}}));
    let p1 = c.read_changes(req(None)).await.unwrap();
    let e = c.read_changes(req(p1.cursor.as_deref())).await.unwrap_err();
    assert!(e.to_string().contains("another origin"), "{e}");
    assert!(other.with(|f| f.seen.is_empty()));
}

fn req(cursor: Option<&str>) -> ReadRequest<'_> {
    ReadRequest {
        kind: Kind::Product,
        cursor,
        limit: 2,
        overlap: Duration::ZERO,
    }
}

// ---- webhooks -------------------------------------------------------------------------------

fn hook_options(signature: Value) -> Value {
    json!({"webhook": {
        "signature": signature,
        "dedupe": {"header": "x-event-id"},
        "records": ".events",
        "routes": [
            {"kind": "stock", "when": "$headers[\"x-topic\"] == \"inventory\"", "id": "\"\\(.sku)@\\(.location)\"",
             "map": "{sku, location, on_hand, committed: 0}"},
            {"kind": "product", "when": ".type == \"product\"", "id": ".sku"}
        ]
    }})
}

fn body() -> Vec<u8> {
    br#"{"events":[{"sku":"A","location":"WH","on_hand":5},{"sku":"B","location":"WH","on_hand":1}]}"#.to_vec()
}

fn headers(pairs: &[(&str, String)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("x-topic", "inventory".parse().unwrap());
    h.insert("x-event-id", "evt-1".parse().unwrap());
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn webhook_signatures_in_every_configured_shape_and_replays() {
    let api = Api::start().await;
    let b = body();
    let unauthorized = |r: Result<Vec<Captured>, WebhookError>| {
        assert!(matches!(r, Err(WebhookError::Unauthorized(_))), "{r:?}")
    };
    // SHA-256, hex, GitHub-style prefix, the endpoint's webhook_secret.
    let c = api.connector(hook_options(
        json!({"header": "x-hub-signature-256", "prefix": "sha256="}),
    ));
    let sig = format!(
        "sha256={}",
        sign(Algorithm::Sha256, Encoding::Hex, b"whsec", &b)
    );
    let got = c
        .parse_webhook(&headers(&[("x-hub-signature-256", sig.clone())]), &b)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].kind, Kind::Stock);
    assert_eq!(got[0].external_id, "A@WH");
    assert_eq!(
        got[0].version.as_deref(),
        Some("evt-1"),
        "the dedupe key versions the records"
    );
    assert_eq!(
        got[0].record,
        json!({"sku": "A", "location": "WH", "on_hand": 5, "committed": 0})
    );
    // Tampered body, wrong secret, missing prefix, missing header.
    let mut tampered = b.clone();
    tampered[30] = b'9';
    unauthorized(
        c.parse_webhook(&headers(&[("x-hub-signature-256", sig.clone())]), &tampered)
            .await,
    );
    let wrong = format!(
        "sha256={}",
        sign(Algorithm::Sha256, Encoding::Hex, b"other", &b)
    );
    unauthorized(
        c.parse_webhook(&headers(&[("x-hub-signature-256", wrong)]), &b)
            .await,
    );
    let bare = sign(Algorithm::Sha256, Encoding::Hex, b"whsec", &b);
    unauthorized(
        c.parse_webhook(&headers(&[("x-hub-signature-256", bare)]), &b)
            .await,
    );
    unauthorized(c.parse_webhook(&headers(&[]), &b).await);

    // SHA-1 and SHA-512, base64, two secrets during a rotation (either signs).
    for (alg, name) in [(Algorithm::Sha1, "sha1"), (Algorithm::Sha512, "sha512")] {
        let c = api.connector(hook_options(json!({"header": "x-sig", "algorithm": name,
            "encoding": "base64", "secrets": ["new-secret", "old-secret"]})));
        for secret in ["new-secret", "old-secret"] {
            let s = sign(alg, Encoding::Base64, secret.as_bytes(), &b);
            assert_eq!(
                c.parse_webhook(&headers(&[("x-sig", s)]), &b)
                    .await
                    .unwrap()
                    .len(),
                2,
                "{name} {secret}"
            );
        }
        let s = sign(alg, Encoding::Base64, b"retired", &b);
        unauthorized(c.parse_webhook(&headers(&[("x-sig", s)]), &b).await);
    }

    // Standard Webhooks: `{id}.{timestamp}.{body}`, base64, `v1,` prefix, several signatures.
    let c = api.connector(hook_options(json!({"header": "webhook-signature", "encoding": "base64",
        "prefix": "v1,", "signed": "{id}.{timestamp}.{body}", "timestamp_header": "webhook-timestamp",
        "tolerance": "5m"})));
    let signed_at = |ts: i64| {
        let mut m = format!("evt-1.{ts}.").into_bytes();
        m.extend_from_slice(&b);
        format!(
            "v1,bogus= v1,{}",
            sign(Algorithm::Sha256, Encoding::Base64, b"whsec", &m)
        )
    };
    let now = now_s();
    let h = headers(&[
        ("webhook-signature", signed_at(now)),
        ("webhook-timestamp", now.to_string()),
    ]);
    assert_eq!(c.parse_webhook(&h, &b).await.unwrap().len(), 2);
    // A replay signed 10 minutes ago, or 10 minutes ahead, is refused before parsing.
    for ts in [now - 600, now + 600] {
        let h = headers(&[
            ("webhook-signature", signed_at(ts)),
            ("webhook-timestamp", ts.to_string()),
        ]);
        let r = c.parse_webhook(&h, &b).await;
        assert!(
            matches!(&r, Err(WebhookError::Unauthorized(m)) if m.contains("replayed")),
            "{r:?}"
        );
    }
    // The timestamp is signed: moving it breaks the signature.
    let h = headers(&[
        ("webhook-signature", signed_at(now)),
        ("webhook-timestamp", (now - 1).to_string()),
    ]);
    unauthorized(c.parse_webhook(&h, &b).await);

    // Duplicate keys in a correctly signed body are refused.
    let dup = br#"{"events":[{"sku":"A","sku":"Z","location":"WH","on_hand":5}]}"#.to_vec();
    let c = api.connector(hook_options(json!({"header": "x-sig"})));
    let s = sign(Algorithm::Sha256, Encoding::Hex, b"whsec", &dup);
    let r = c.parse_webhook(&headers(&[("x-sig", s)]), &dup).await;
    assert!(
        matches!(&r, Err(WebhookError::BadRequest(m)) if m.contains("duplicate key")),
        "{r:?}"
    );
    // Records no route takes are ignored; a record without an id is refused by name.
    let mixed =
        br#"{"events":[{"type":"product","sku":"P1","name":"n"},{"type":"other"}]}"#.to_vec();
    let s = sign(Algorithm::Sha256, Encoding::Hex, b"whsec", &mixed);
    let mut h = headers(&[("x-sig", s)]);
    h.insert("x-topic", "catalog".parse().unwrap());
    let got = c.parse_webhook(&h, &mixed).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].kind, got[0].external_id.as_str()),
        (Kind::Product, "P1")
    );
    let noid = br#"{"events":[{"type":"product","name":"n"}]}"#.to_vec();
    let s = sign(Algorithm::Sha256, Encoding::Hex, b"whsec", &noid);
    let mut h = headers(&[("x-sig", s)]);
    h.insert("x-topic", "catalog".parse().unwrap());
    let r = c.parse_webhook(&h, &noid).await;
    assert!(
        matches!(&r, Err(WebhookError::BadRequest(m)) if m.contains("records[0] (product): id")),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_replayed_delivery_is_journaled_once_and_flows_check_capabilities() {
    let api = Api::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[store]
path = "{store}"
[endpoints.hooks]
connector = "http"
url = "{url}"
webhook_secret = "whsec"
[endpoints.hooks.options.webhook]
signature = {{ header = "x-sig" }}
dedupe = {{ header = "x-event-id" }}
records = ".events"
routes = [{{ kind = "stock", id = '"\(.sku)@\(.location)"', map = "{{sku, location, on_hand, committed: 0}}" }}]
[endpoints.api]
connector = "http"
url = "{url}"
[endpoints.api.options.write.stock.upsert]
method = "PUT"
path = "/sink/{{.sku}}"
body = "."
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["hooks"]
to = ["api"]
"#,
        store = dir.path().join("hub.sqlite").display(),
        url = api.url
    );
    let path = dir.path().join("c.toml");
    let config = Arc::new(Config::from_toml_str(&text, &path).unwrap());
    let mut cs: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
    for (n, s) in &config.endpoints {
        cs.insert(n.clone(), concord_connectors::build(s).unwrap());
    }
    concord_engine::runtime::check_capabilities(&config, &cs).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("hub.sqlite")).unwrap());
    let engine = Engine::new(config.clone(), store.clone(), cs).unwrap();
    let mut tasks = engine.start().await.unwrap();
    let b = body();
    let h = headers(&[(
        "x-sig",
        sign(Algorithm::Sha256, Encoding::Hex, b"whsec", &b),
    )]);
    let first = engine.capture_webhook("hooks", &h, &b).await.unwrap();
    let again = engine.capture_webhook("hooks", &h, &b).await.unwrap();
    assert_eq!((first.stored, first.duplicates), (2, 0));
    assert_eq!(
        (again.stored, again.duplicates),
        (0, 2),
        "the replay is dropped by the journal"
    );
    wait_until(
        "the stock is delivered",
        Duration::from_secs(10),
        async || api.with(|f| f.sink.values().sum::<usize>()) >= 2,
    )
    .await;
    assert_eq!(
        api.with(|f| f.sink.clone()),
        BTreeMap::from([("A".into(), 1), ("B".into(), 1)])
    );
    engine.shutdown();
    while tasks.join_next().await.is_some() {}

    // A flow the endpoint cannot serve is refused at load, naming the flow's field.
    let bad = text.replace(
        "from = [\"hooks\"]\nto = [\"api\"]",
        "from = [\"api\"]\nto = [\"hooks\"]",
    );
    let config = Config::from_toml_str(&bad, &path).unwrap();
    let mut cs: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
    for (n, s) in &config.endpoints {
        cs.insert(n.clone(), concord_connectors::build(s).unwrap());
    }
    let e = concord_engine::runtime::check_capabilities(&config, &cs).unwrap_err();
    assert!(e.to_string().starts_with("flows[0].mode"), "{e}");
    // A bad option is refused at build with its path.
    let broken = text.replace("path = \"/sink/{.sku}\"", "path = \"/sink/{.sku\"");
    let config = Config::from_toml_str(&broken, &path).unwrap();
    let e = concord_connectors::build(&config.endpoints["api"])
        .err()
        .expect("refused");
    assert_eq!(e.path, "options.write.stock.upsert.path");
}

#[tokio::test]
async fn a_step_that_finds_nothing_retries_skips_or_fails_as_configured() {
    let api = Api::start().await;
    let opts = |if_missing: &str| {
        json!({"write": {"stock": {"upsert": [
            {"name": "item", "path": "/products", "query": {"sku": "{.sku}"},
             "select": ".products[0]", "if_missing": if_missing},
            {"method": "PUT", "path": "/sink/{$item.id}", "body": "."}
        ]}}})
    };
    let stock = || {
        op(
            Kind::Stock,
            "A@WH",
            "upsert",
            json!({"sku": "A", "on_hand": 3}),
        )
    };
    let e = failed(write1(&api.connector(opts("retry")), stock()).await);
    assert!(
        matches!(&e, DeliveryError::NotYet { reason, .. } if reason.contains("found nothing yet")),
        "{e}"
    );
    assert!(failed(write1(&api.connector(opts("fail")), stock()).await).is_permanent());
    assert!(matches!(
        write1(&api.connector(opts("skip")), stock()).await,
        WriteOutcome::Done { .. }
    ));
    assert!(
        api.with(|f| f.sink.is_empty()),
        "nothing written while the product is missing"
    );
    // Once the product exists, the same write goes through.
    api.with(|f| f.products.insert("p9".into(), ("A".into(), "A".into())));
    assert!(matches!(
        write1(&api.connector(opts("retry")), stock()).await,
        WriteOutcome::Done { .. }
    ));
    assert_eq!(api.with(|f| f.sink.get("p9").copied()), Some(1));
}

#[tokio::test]
async fn oauth2_client_credentials_may_go_in_the_body_with_a_scope() {
    let api = Api::start().await;
    let c = api.connector(oauth(
        "client_credentials",
        json!({"client_auth": "body", "scope": "inventory:write"}),
    ));
    assert!(matches!(
        write1(&c, product_op()).await,
        WriteOutcome::Done { .. }
    ));
    let token = api.seen("/oauth/token").pop().expect("a token request");
    assert!(token.headers.get("authorization").is_none());
    let form = q(token.body.as_str().expect("a form body"));
    assert_eq!(form.get("client_id").map(String::as_str), Some("client"));
    assert_eq!(
        form.get("client_secret").map(String::as_str),
        Some("csecret")
    );
    assert_eq!(
        form.get("scope").map(String::as_str),
        Some("inventory:write")
    );
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("client_credentials")
    );
}

#[tokio::test]
async fn delete_and_cancel_find_the_record_first_and_versions_are_read_back() {
    let api = Api::start().await;
    let mut o = products_options();
    o["write"]["product"]["delete"] =
        json!({"method": "DELETE", "path": "/products/{$id}", "success": [204]});
    o["write"]["product"]["version"] = json!("$status | tostring");
    let c = api.connector(o);
    let create = op(
        Kind::Product,
        "SKU-7",
        "create",
        json!({"sku": "SKU-7", "name": "Seven"}),
    );
    match write1(&c, create).await {
        WriteOutcome::Done {
            external_id,
            version,
        } => {
            assert_eq!(external_id.as_deref(), Some("p1"));
            assert_eq!(version.as_deref(), Some("201"), "read from the answer");
        }
        other => panic!("{other:?}"),
    }
    let delete = || {
        op(
            Kind::Product,
            "SKU-7",
            "delete",
            json!({"sku": "SKU-7", "name": "Seven"}),
        )
    };
    assert!(matches!(
        write1(&c, delete()).await,
        WriteOutcome::Done { .. }
    ));
    assert!(api.with(|f| f.products.is_empty()));
    // Deleting again: the lookup finds nothing, nothing is sent.
    let deletes = api.seen("/products/p1").len();
    assert!(matches!(
        write1(&c, delete()).await,
        WriteOutcome::Done {
            external_id: None,
            ..
        }
    ));
    assert_eq!(api.seen("/products/p1").len(), deletes);
    // An op with no steps configured is refused, naming what is configured.
    let cancel = op(Kind::Product, "SKU-7", "cancel", json!({"sku": "SKU-7"}));
    let mut known = cancel.clone();
    known.external_id = Some("p9".into());
    let e = failed(write1(&c, known).await);
    assert!(
        e.is_permanent() && e.to_string().contains("no steps for op `cancel`"),
        "{e}"
    );
}

#[tokio::test]
async fn webhook_timestamps_in_rfc3339_or_milliseconds_and_a_dedupe_key_from_the_body() {
    let api = Api::start().await;
    let body =
        br#"{"delivery":"d-77","events":[{"sku":"A","location":"WH","on_hand":2}]}"#.to_vec();
    for (format, stamp) in [
        ("rfc3339", chrono::Utc::now().to_rfc3339()),
        ("unix_ms", (now_s() * 1000).to_string()),
    ] {
        let mut o = hook_options(json!({"header": "x-sig", "signed": "{timestamp}:{body}",
            "timestamp_header": "x-ts", "timestamp_format": format}));
        o["webhook"]["dedupe"] = json!({"body": ".delivery"});
        let c = api.connector(o);
        let mut m = format!("{stamp}:").into_bytes();
        m.extend_from_slice(&body);
        let sig = sign(Algorithm::Sha256, Encoding::Hex, b"whsec", &m);
        let got = c
            .parse_webhook(
                &headers(&[("x-sig", sig.clone()), ("x-ts", stamp.clone())]),
                &body,
            )
            .await
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(got[0].version.as_deref(), Some("d-77"), "{format}");
        // An hour old: a replay.
        let old = match format {
            "rfc3339" => (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339(),
            _ => ((now_s() - 3600) * 1000).to_string(),
        };
        let mut m = format!("{old}:").into_bytes();
        m.extend_from_slice(&body);
        let sig = sign(Algorithm::Sha256, Encoding::Hex, b"whsec", &m);
        let r = c
            .parse_webhook(&headers(&[("x-sig", sig), ("x-ts", old)]), &body)
            .await;
        assert!(
            matches!(r, Err(WebhookError::Unauthorized(_))),
            "{format}: {r:?}"
        );
    }
}

/// `read.KIND.bulk` is generic: a REST export (start → 202 with an id, poll by id until
/// `ready`, a file on another origin whose lines each carry several records, blank lines
/// among them) is listed exactly once, in pages, without the endpoint's credential or headers
/// on the file's host.
#[tokio::test]
async fn a_rest_export_job_lists_every_record_once_without_credentials_on_the_file_host() {
    #[derive(Default)]
    struct Api {
        polls: usize,
        starts: usize,
        creds_on_files: usize,
        file_url: String,
    }
    let api = Arc::new(Mutex::new(Api::default()));
    let a = api.clone();
    let files = Router::new().fallback(move |headers: HeaderMap| {
        let a = a.clone();
        async move {
            if headers.contains_key("authorization") || headers.contains_key("x-client") {
                a.lock().unwrap().creds_on_files += 1;
                return (StatusCode::FORBIDDEN, "no").into_response();
            }
            let mut body = String::new();
            for i in 0..50 {
                body.push_str(
                    &json!({"items": [{"sku": format!("A{i}")}, {"sku": format!("B{i}")}]})
                        .to_string(),
                );
                body.push_str(if i % 7 == 0 { "\n\n" } else { "\n" });
            }
            body.into_response()
        }
    });
    let fl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    api.lock().unwrap().file_url = format!("http://{}/f/e1?sig=x", fl.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(fl, files).await.unwrap() });
    let a = api.clone();
    let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let a = a.clone();
        async move {
            let mut s = a.lock().unwrap();
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer t0k") {
                return (StatusCode::UNAUTHORIZED, "token").into_response();
            }
            match (method.as_str(), uri.path()) {
                ("POST", "/exports") => {
                    s.starts += 1;
                    (
                        StatusCode::ACCEPTED,
                        axum::Json(json!({"export": {"id": "e1"}})),
                    )
                        .into_response()
                }
                ("GET", "/exports/e1") => {
                    s.polls += 1;
                    let body = if s.polls < 3 {
                        json!({"state": "pending"})
                    } else {
                        json!({"state": "ready", "file": s.file_url})
                    };
                    axum::Json(body).into_response()
                }
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let c = HttpConnector::new(&spec(
        &url,
        json!({
            "auth": {"type": "bearer", "token": "t0k"},
            "headers": {"x-client": "concord"},
            "read": {"product": {
                "request": {"path": "/products"},
                "id": ".sku",
                "map": "{sku, name: .sku}",
                "bulk": {
                    "start": {"method": "POST", "path": "/exports", "body": "{}", "success": [202]},
                    "job": ".export.id",
                    "poll": {"path": "/exports/{$job}"},
                    "status": ".state", "running": ["pending"], "done": ["ready"],
                    "url": ".file", "interval": "10ms", "timeout": "5s",
                    "records": ".items"
                }
            }}
        }),
    ))
    .unwrap();
    let mut token: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = c
            .read_snapshot(ReadRequest {
                kind: Kind::Product,
                cursor: token.as_deref(),
                limit: 15,
                overlap: Duration::ZERO,
            })
            .await
            .unwrap();
        pages += 1;
        assert!(!page.records.is_empty() || !page.more);
        seen.extend(page.records.iter().map(|r| r.external_id.clone()));
        token = page.cursor;
        if !page.more {
            break;
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 100, "every record once");
    assert_eq!(unique.len(), 100);
    assert!(pages >= 7, "{pages} pages");
    let s = api.lock().unwrap();
    assert_eq!((s.starts, s.polls, s.creds_on_files), (1, 3, 0));
}

//! The admin API (`/api/v1`) and the access control of the whole HTTP surface, over real HTTP
//! on a real hub: an engine over a `SqliteStore` in a temporary directory, the sandbox ERP and
//! two sandbox storefronts (web1 checks out through the hub with its storefront key).
//!
//! - `every_route_needs_a_token_and_every_read_answers_a_viewer`: every path of the OpenAPI
//!   document: 401 (with `WWW-Authenticate`) without or with a wrong token, reads 200 for a
//!   viewer, actions 403 for a viewer.
//! - `cookie_login_reads_and_logout_ends_the_session`: `POST /api/v1/session` sets an HttpOnly,
//!   SameSite=Strict cookie that authenticates; `DELETE` ends it server-side.
//! - `no_tokens_configured_refuses_the_admin_api`: never open by default.
//! - `pause_holds_deliveries_across_a_restart_and_resume_releases_them`: a paused flow's
//!   change is captured and planned but not delivered (while another flow to the same store
//!   is), stays paused after a restart, and goes out on resume; both actions audited.
//! - `run_now_starts_a_batch_flow`: a yearly batch flow runs on request (202), shows
//!   `last_run.trigger = manual`; 409 for a realtime flow, 404 for an unknown one.
//! - `dead_letters_list_show_replay_drop`: an order the ERP refuses (credit hold) is
//!   dead-lettered; viewer lists and shows it (payload and reason), operator replays (it comes
//!   back: still on hold) and drops it; every action in the audit trail with who and result.
//! - `orders_and_parked_items`: an order parks while its customer's flow is paused (shown with
//!   what it waits on), goes out on resume; orders by state/channel, counts, one order's history.
//! - `journal_search_filters_and_pages`, `stock_pool_and_reservations`,
//!   `endpoints_and_flows_show_health_and_sparklines`, `bad_parameters_name_the_field`.
//! - `storefront_keys_act_only_for_their_channel`: `/v1` with keys configured: 401 without or
//!   with an unknown key, 403 for another channel's data, 404 for another channel's
//!   reservation (as for an unknown id), 200 for its own; the sandbox storefront's checkout
//!   sends its key.
//!
//! Every wait is a condition polled under a deadline; nothing sleeps and hopes.

mod support;

use concord_core::Kind;
use concord_engine::config::access::token_hash;
use concord_sandbox::erp::{ErpHandle, ErpOptions};
use concord_sandbox::shop::ShopHandle;
use concord_store::{ItemState, SqliteStore, Store};
use serde_json::{json, Value};
use std::time::Duration;
use support::{
    config_head, hub_listener, shop_endpoint, start_erp, start_shop, wait_until, Hub, DEADLINE,
};

const SECRET: &str = "admin-test-secret";
const VIEWER: &str = "viewer-token-7c1f0e9a2b3d4c5e6f708192a3b4c5d6";
const OPERATOR: &str = "operator-token-0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const KEY_WEB1: &str = "web1-key-55aa2c7e9d10f3b4a6c8e0d2f4b6a8c0";
const KEY_WEB2: &str = "web2-key-0f1e2d3c4b5a69788796a5b4c3d2e1f0";
const HELD: &str = "held@example.com";

fn sha(t: &str) -> String {
    token_hash(t).iter().map(|b| format!("{b:02x}")).collect()
}

impl Hub {
    /// A request with an optional bearer token; returns status, headers and JSON body.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(20));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request to the hub");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, v)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let (s, _, v) = self.call(reqwest::Method::GET, path, token, None).await;
        (s, v)
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let (s, _, v) = self
            .call(reqwest::Method::POST, path, token, Some(body))
            .await;
        (s, v)
    }

    async fn flow(&self, name: &str) -> Value {
        let (s, v) = self
            .get(&format!("/api/v1/flows/{name}"), Some(VIEWER))
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn audit(&self) -> Vec<Value> {
        let (s, v) = self.get("/api/v1/audit?limit=1000", Some(VIEWER)).await;
        assert_eq!(s, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    }
}

struct Setup {
    erp: ErpHandle,
    web1: ShopHandle,
    web2: ShopHandle,
    hub: Hub,
    dir: tempfile::TempDir,
    config: String,
    addr: std::net::SocketAddr,
}

/// The topology. `access` is appended to the config (tokens and keys), `None`: the defaults.
async fn setup(access: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let (listener, addr, base) = hub_listener().await;
    let erp = start_erp(
        &base,
        SECRET,
        ErpOptions {
            credit_hold: vec![HELD.to_string()],
            // Products are only read by the flows (migration, batch), never pushed: a product
            // added later reaches the hub only through a batch run.
            webhook_kinds: Some(vec![Kind::Stock]),
            ..ErpOptions::default()
        },
    )
    .await;
    for sku in ["SKU-1", "SKU-2"] {
        erp.upsert_product(json!({"sku": sku, "name": format!("Product {sku}")}))
            .expect("product");
        erp.set_price(sku, 1500).expect("price");
        erp.set_stock(sku, "WH1", 10).expect("stock");
    }
    let mut shops = Vec::new();
    for (name, key) in [("web1", KEY_WEB1), ("web2", KEY_WEB2)] {
        shops.push(start_shop(&base, SECRET, name, Some(Some(key))).await);
    }
    let access = access.map(str::to_string).unwrap_or_else(|| {
        format!(
            r#"
# Every route is tried with a wrong token: more failures than the default throttle allows
# from one address (the throttle itself: tests/exposure.rs).
[admin]
failed_attempts = 10000

[[admin.tokens]]
name = "watcher"
role = "viewer"
sha256 = "{v}"

[[admin.tokens]]
name = "ops"
role = "operator"
sha256 = "{o}"

[[commerce.keys]]
name = "web1-checkout"
channel = "web1"
sha256 = "{k1}"

[[commerce.keys]]
name = "web2-checkout"
channel = "web2"
sha256 = "{k2}"
"#,
            v = sha(VIEWER),
            o = sha(OPERATOR),
            k1 = sha(KEY_WEB1),
            k2 = sha(KEY_WEB2)
        )
    });
    let config = format!(
        r#"{head}
{web1}
{web2}
[[flows]]
name = "catalog"
kind = "product"
pattern = "migration"
from = ["erp"]
to = ["web1"]

# Runs only when asked (the schedule's next run is in 2099).
[[flows]]
name = "catalog-nightly"
kind = "product"
pattern = "broadcast"
mode = "batch"
schedule = "0 0 0 1 1 * 2099"
from = ["erp"]
to = ["web2"]

[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
poll = "1s"
from = ["erp"]
to = ["web1", "web2"]
[flows.map_out]
"*" = '{{sku, location, available: ([.on_hand - .committed, 0] | max)}}'

[[flows]]
name = "customers"
kind = "customer"
pattern = "aggregation"
mode = "realtime"
from = ["web1"]
to = ["erp"]

[[flows]]
name = "orders"
kind = "order"
pattern = "aggregation"
mode = "realtime"
poll = "1s"
from = ["web1"]
to = ["erp"]

[inventory]
source = "erp"
reservation_ttl = "10m"
[inventory.channels.web1]
locations = ["WH1"]
[inventory.channels.web2]
locations = ["WH1"]
{access}
"#,
        head = config_head(dir.path(), addr, &erp.base_url(), SECRET),
        web1 = shop_endpoint("web1", &shops[0].base_url(), SECRET),
        web2 = shop_endpoint("web2", &shops[1].base_url(), SECRET),
    );
    let hub = Hub::start(listener, &config, dir.path()).await;
    let web2 = shops.pop().expect("web2");
    let web1 = shops.pop().expect("web1");
    Setup {
        erp,
        web1,
        web2,
        hub,
        dir,
        config,
        addr,
    }
}

impl Setup {
    async fn shutdown(self) {
        self.hub.stop().await;
        self.erp.shutdown().await;
        self.web1.shutdown().await;
        self.web2.shutdown().await;
        drop(self.dir);
    }

    /// Wait until both SKUs' stock reached web1 (the hub is up and has the ledger).
    async fn settled(&self) {
        wait_until(
            "web1 has the pool's figure of SKU-1 and SKU-2",
            DEADLINE,
            async || {
                ["SKU-1", "SKU-2"]
                    .iter()
                    .all(|s| self.web1.inventory(s).values().sum::<i64>() == 10)
            },
        )
        .await;
    }
}

/// Fill `{param}` placeholders of an OpenAPI path with plausible values.
fn concrete(path: &str) -> String {
    path.replace("{name}", "stock")
        .replace("{sku}", "SKU-1")
        .replace("{id}", "1")
        .replace("{key}", "web1%2F1001")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_a_token_and_every_read_answers_a_viewer() {
    let s = setup(None).await;
    s.settled().await;
    let hub = &s.hub;
    let (status, doc) = hub.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, 200, "the OpenAPI document is public: {doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    // Every route this issue names is documented.
    for p in [
        "/api/v1/endpoints",
        "/api/v1/flows",
        "/api/v1/flows/{name}",
        "/api/v1/flows/{name}/pause",
        "/api/v1/flows/{name}/resume",
        "/api/v1/flows/{name}/run",
        "/api/v1/journal",
        "/api/v1/journal/{id}",
        "/api/v1/dead-letters",
        "/api/v1/dead-letters/{id}",
        "/api/v1/dead-letters/replay",
        "/api/v1/dead-letters/drop",
        "/api/v1/stock/{sku}",
        "/api/v1/reservations",
        "/api/v1/audit",
        "/api/v1/orders",
        "/api/v1/orders/counts",
        "/api/v1/orders/{key}",
        "/api/v1/parked",
        "/api/v1/overview",
        "/api/v1/alerts",
        "/api/v1/reconcile",
        "/api/v1/reconcile/{id}",
        "/api/v1/dry-run",
        "/api/v1/session",
        "/api/v1/me",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    // The access layer's throttle answers 429 in front of every operation: each one says so.
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            assert!(
                op["responses"].get("429").is_some(),
                "{method} {path} does not document the throttle's 429"
            );
        }
    }
    // The error schema carries the stable code, and the document lists every code's meaning.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["ErrorBody"]["properties"]["code"]["$ref"], "#/components/schemas/ErrorCode",
        "{}",
        schemas["ErrorBody"]
    );
    let codes = schemas["ErrorCode"]["enum"].as_array().expect("the codes");
    let described = schemas["ErrorCode"]["description"].as_str().unwrap_or("");
    for (code, name, _) in concord_server::error::ALL {
        assert!(
            codes.contains(&json!(name)),
            "{name} missing from the schema"
        );
        assert!(
            described.contains(&format!("`{name}`")),
            "{name} undescribed"
        );
        assert_eq!(code.as_str(), *name);
    }
    let mut checked = 0;
    for (path, item) in paths {
        let url = concrete(path);
        for method in ["get", "post", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let public = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
            });
            if public {
                continue;
            }
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("m");
            let body = (method == "post").then(|| json!({"ids": [1]}));
            for token in [None, Some("not-a-token")] {
                let (st, headers, v) = hub.call(m.clone(), &url, token, body.clone()).await;
                assert_eq!(st, 401, "{method} {url} with {token:?}: {v}");
                assert!(
                    headers.contains_key("www-authenticate"),
                    "{method} {url}: 401 without WWW-Authenticate"
                );
                assert!(v["error"].is_string(), "{method} {url}: error body {v}");
                assert_eq!(v["code"], "unauthorized", "{method} {url}: {v}");
            }
            let (st, _, v) = hub.call(m.clone(), &url, Some(VIEWER), body.clone()).await;
            if method == "get" {
                // Reads: 200, or 404 for an id that does not exist.
                let by_id = path.ends_with("{id}") || path.ends_with("{key}");
                assert!(
                    st == 200 || (st == 404 && by_id),
                    "GET {url} as viewer: {st} {v}"
                );
            } else {
                assert_eq!(st, 403, "{method} {url} as viewer must need operator: {v}");
                assert_eq!(v["code"], "forbidden", "{v}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} operations checked");
    // Unknown admin paths answer JSON; a wrong method on a known path 405.
    let (st, v) = hub.get("/api/v1/nope", Some(VIEWER)).await;
    assert_eq!(st, 404, "{v}");
    assert_eq!(v["code"], "not_found", "{v}");
    // axum's own 405 answers the same JSON shape, its `Allow` kept.
    let (st, headers, v) = hub
        .call(reqwest::Method::DELETE, "/api/v1/flows", Some(VIEWER), None)
        .await;
    assert_eq!(st, 405);
    assert_eq!(v["code"], "method_not_allowed", "{v}");
    assert!(headers.contains_key("allow"), "{headers:?}");
    s.shutdown().await;
}

/// `GET /api/v1/me` with a session cookie: the status and the caller's name.
async fn me_by_cookie(hub: &Hub, cookie: &str) -> (u16, Value) {
    let r = hub
        .http
        .get(format!("{}/api/v1/me", hub.base))
        .header("cookie", cookie)
        .send()
        .await
        .expect("me");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Restart the hub on the same store with `config` (the old one stopped first).
async fn restarted(s: Setup, config: String) -> Setup {
    let Setup {
        erp,
        web1,
        web2,
        hub,
        dir,
        addr,
        ..
    } = s;
    hub.stop().await;
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let hub = Hub::start(listener, &config, dir.path()).await;
    Setup {
        erp,
        web1,
        web2,
        hub,
        dir,
        config,
        addr,
    }
}

/// Dashboard sessions live in the store: a session survives a restart of the hub (and so a
/// standby's takeover, which opens the same database), and ends when its token is removed
/// from the config — also a session kept across that restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_a_restart_and_ends_with_its_token() {
    let s = setup(None).await;
    let (st, headers, me) = s
        .hub
        .call(
            reqwest::Method::POST,
            "/api/v1/session",
            None,
            Some(json!({"token": OPERATOR})),
        )
        .await;
    assert_eq!(st, 200, "{me}");
    let cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_string();
    assert_eq!(me_by_cookie(&s.hub, &cookie).await.0, 200);

    let config = s.config.clone();
    let s = restarted(s, config.clone()).await;
    let (st, me) = me_by_cookie(&s.hub, &cookie).await;
    assert_eq!(st, 200, "the session survives a restart: {me}");
    assert_eq!(me, json!({"name": "ops", "role": "operator"}));

    // The operator's token removed from the config: its session ends with it.
    let ops = format!(
        "[[admin.tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"{}\"\n",
        sha(OPERATOR)
    );
    assert!(config.contains(&ops), "the config has the ops token");
    let s = restarted(s, config.replace(&ops, "")).await;
    let (st, me) = me_by_cookie(&s.hub, &cookie).await;
    assert_eq!(st, 401, "a removed token's session must not work: {me}");
    let (st, v) = s.hub.get("/api/v1/me", Some(VIEWER)).await;
    assert_eq!(st, 200, "the other token still works: {v}");
    s.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_login_reads_and_logout_ends_the_session() {
    let s = setup(None).await;
    let hub = &s.hub;
    let (st, v) = hub
        .post("/api/v1/session", None, json!({"token": "wrong"}))
        .await;
    assert_eq!(st, 401, "{v}");
    let (st, v) = hub.post("/api/v1/session", None, json!({"tok": "x"})).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(
        (&v["code"], &v["field"]),
        (&json!("unknown_field"), &json!("tok")),
        "{v}"
    );

    let (st, headers, me) = hub
        .call(
            reqwest::Method::POST,
            "/api/v1/session",
            None,
            Some(json!({"token": OPERATOR})),
        )
        .await;
    assert_eq!(st, 200, "{me}");
    assert_eq!(me, json!({"name": "ops", "role": "operator"}));
    let set_cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("Set-Cookie")
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/api/v1"] {
        assert!(set_cookie.contains(attr), "{attr} missing: {set_cookie}");
    }
    let cookie = set_cookie.split(';').next().expect("pair").to_string();
    assert!(
        !cookie.contains(OPERATOR),
        "the cookie must not carry the token"
    );
    let with_cookie = |m: reqwest::Method, p: &str| {
        hub.http
            .request(m, format!("{}{p}", hub.base))
            .header("cookie", &cookie)
    };
    let r = with_cookie(reqwest::Method::GET, "/api/v1/me")
        .send()
        .await
        .expect("me");
    assert_eq!(r.status().as_u16(), 200);
    // Private answers: no cache keeps them, no browser sniffs them.
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    // The session carries the role: an operator action works with the cookie alone.
    let r = with_cookie(reqwest::Method::POST, "/api/v1/flows/stock/pause")
        .send()
        .await
        .expect("pause");
    assert_eq!(r.status().as_u16(), 200);
    // CSRF: a browser marking the cookie-authenticated action as coming from another site
    // (e.g. a sibling subdomain, which SameSite=Strict lets through) is refused, and nothing
    // is done; the dashboard's own same-origin call passes.
    for site in ["same-site", "cross-site"] {
        let r = with_cookie(reqwest::Method::POST, "/api/v1/flows/stock/resume")
            .header("sec-fetch-site", site)
            .send()
            .await
            .expect("cross-site resume");
        assert_eq!(r.status().as_u16(), 403, "{site}");
    }
    let (st, v) = hub.get("/api/v1/flows/stock", Some(OPERATOR)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["paused"],
        json!(true),
        "a refused resume changed nothing: {v}"
    );
    let r = hub
        .http
        .post(format!("{}/api/v1/session", hub.base))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"token": OPERATOR}))
        .send()
        .await
        .expect("cross-site login");
    assert_eq!(r.status().as_u16(), 403, "login CSRF refused");
    let r = with_cookie(reqwest::Method::POST, "/api/v1/flows/stock/resume")
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("resume");
    assert_eq!(r.status().as_u16(), 200);
    // Log out: the cookie is cleared and the session is gone server-side.
    let r = with_cookie(reqwest::Method::DELETE, "/api/v1/session")
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status().as_u16(), 204);
    let cleared = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let r = with_cookie(reqwest::Method::GET, "/api/v1/me")
        .send()
        .await
        .expect("me");
    assert_eq!(
        r.status().as_u16(),
        401,
        "a logged-out session must not work"
    );
    // A viewer's session cannot act.
    let (_, headers, _) = hub
        .call(
            reqwest::Method::POST,
            "/api/v1/session",
            None,
            Some(json!({"token": VIEWER})),
        )
        .await;
    let viewer_cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_string();
    let r = hub
        .http
        .post(format!("{}/api/v1/flows/stock/pause", hub.base))
        .header("cookie", viewer_cookie)
        .send()
        .await
        .expect("pause");
    assert_eq!(r.status().as_u16(), 403);
    // The refused attempt is in the audit trail, with who tried what.
    let audit = hub.audit().await;
    let denied = audit
        .iter()
        .find(|e| e["event"] == "admin.denied")
        .unwrap_or_else(|| panic!("refused attempt not audited: {audit:?}"));
    assert_eq!(denied["detail"]["who"], "watcher", "{denied}");
    assert_eq!(
        denied["detail"]["target"],
        json!({"method": "POST", "path": "/api/v1/flows/stock/pause"})
    );
    assert_eq!(denied["detail"]["result"]["ok"], false);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tokens_configured_refuses_the_admin_api() {
    let s = setup(Some("")).await;
    for token in [None, Some(VIEWER)] {
        let (st, v) = s.hub.get("/api/v1/flows", token).await;
        assert_eq!(st, 403, "{v}");
        assert_eq!(v["code"], "access_not_configured", "{v}");
        // The behaviour: the refusal tells the operator how to open the API.
        let msg = v["error"].as_str().unwrap_or("");
        assert!(msg.contains("concord token new"), "{msg}");
    }
    let (st, v) = s
        .hub
        .post("/api/v1/session", None, json!({"token": VIEWER}))
        .await;
    assert_eq!(st, 403, "{v}");
    // Without keys the storefront API stays open (a WARN at start says so).
    let (st, v) = s
        .hub
        .get("/v1/availability?channel=web1&sku=SKU-1", None)
        .await;
    assert_eq!(st, 200, "{v}");
    let warnings = concord_server::access_warnings(s.hub.engine.config());
    assert!(warnings
        .iter()
        .any(|w| w.contains("/v1") && w.contains("open")));
    s.shutdown().await;
}

/// Items of `flow` for `dest` waiting in the outbox.
async fn held_items(store: &SqliteStore, dest: &str, flow: &str) -> usize {
    store
        .items(Some(dest), ItemState::Pending, 1000)
        .await
        .expect("items")
        .iter()
        .filter(|i| i.flow == flow)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_deliveries_across_a_restart_and_resume_releases_them() {
    let s = setup(None).await;
    s.settled().await;
    let (st, v) = s
        .hub
        .post("/api/v1/flows/stock/pause", Some(OPERATOR), json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v, json!({"flow": "stock", "paused": true, "changed": true}));
    assert_eq!(s.hub.flow("stock").await["paused"], true);

    // A stock change at the ERP: captured and planned for both stores, but held.
    s.erp.set_stock("SKU-1", "WH1", 4).expect("stock");
    wait_until(
        "the change is planned and held for web2",
        DEADLINE,
        async || held_items(&s.hub.store, "web2", "stock").await > 0,
    )
    .await;
    // Meanwhile another flow to the same store is delivered: web2's dispatcher is running.
    let (st, v) = s
        .hub
        .post(
            "/api/v1/flows/catalog-nightly/run",
            Some(OPERATOR),
            json!({}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    wait_until("the nightly catalogue reached web2", DEADLINE, async || {
        s.hub
            .store
            .xref_external("web2", Kind::Product, "SKU-2")
            .await
            .expect("xref")
            .is_some()
    })
    .await;
    assert_eq!(held_items(&s.hub.store, "web2", "stock").await, 1);
    assert_eq!(s.web2.inventory("SKU-1").values().sum::<i64>(), 10);

    // A restart keeps the pause (the store holds it).
    let Setup {
        erp,
        web1,
        web2,
        hub,
        dir,
        config,
        addr,
    } = s;
    hub.stop().await;
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let hub = Hub::start(listener, &config, dir.path()).await;
    let s = Setup {
        erp,
        web1,
        web2,
        hub,
        dir,
        config,
        addr,
    };
    assert_eq!(s.hub.flow("stock").await["paused"], true);
    // The other flows deliver after the restart; the paused one still waits.
    let (st, _) = s
        .hub
        .post(
            "/api/v1/flows/catalog-nightly/run",
            Some(OPERATOR),
            json!({}),
        )
        .await;
    assert_eq!(st, 202);
    wait_until(
        "the manual run after the restart finished",
        DEADLINE,
        async || s.hub.flow("catalog-nightly").await["last_run"]["trigger"] == "manual",
    )
    .await;
    assert_eq!(held_items(&s.hub.store, "web2", "stock").await, 1);

    let (st, v) = s
        .hub
        .post("/api/v1/flows/stock/resume", Some(OPERATOR), json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["changed"], true);
    wait_until(
        "the held stock figure reached both stores",
        DEADLINE,
        async || {
            s.web2.inventory("SKU-1").values().sum::<i64>() == 4
                && s.web1.inventory("SKU-1").values().sum::<i64>() == 4
        },
    )
    .await;
    let flow = s.hub.flow("stock").await;
    assert_eq!(flow["paused"], false);
    assert!(flow["delivered"].as_u64().unwrap_or(0) >= 2, "{flow}");

    let audit = s.hub.audit().await;
    for action in ["admin.flow.pause", "admin.flow.resume", "admin.flow.run"] {
        let e = audit
            .iter()
            .find(|e| e["event"] == action)
            .unwrap_or_else(|| panic!("{action} not audited: {audit:?}"));
        assert_eq!(e["detail"]["who"], "ops", "{e}");
        assert_eq!(e["detail"]["role"], "operator", "{e}");
        assert_eq!(e["detail"]["result"]["ok"], true, "{e}");
        assert!(e["detail"]["target"]["flow"].is_string(), "{e}");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_starts_a_batch_flow() {
    let s = setup(None).await;
    let hub = &s.hub;
    let before = hub.flow("catalog-nightly").await;
    assert_eq!(before["mode"], "batch");
    assert!(before["last_run"].is_null(), "{before}");
    let next = before["next_run"].as_i64().expect("next_run");
    assert!(
        next > 4_000_000_000_000,
        "next scheduled run is in 2099: {next}"
    );

    // A product the ERP does not push: only a batch run brings it. The start-up catalogue
    // migration must have read the ERP to the end first, or it could capture SKU-3 itself
    // (then the batch run finds nothing new — seen once under load).
    wait_until(
        "the catalogue migration read the ERP to the end",
        DEADLINE,
        async || {
            hub.engine
                .backfill_state("catalog")
                .await
                .is_ok_and(|b| b.read_to_end())
        },
    )
    .await;
    s.erp
        .upsert_product(json!({"sku": "SKU-3", "name": "Product SKU-3"}))
        .expect("product");
    let (st, v) = hub
        .post("/api/v1/flows/catalog-nightly/run", Some(VIEWER), json!({}))
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = hub
        .post(
            "/api/v1/flows/catalog-nightly/run",
            Some(OPERATOR),
            json!({}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v, json!({"flow": "catalog-nightly", "started": true}));
    wait_until("the run finished", DEADLINE, async || {
        hub.flow("catalog-nightly").await["last_run"]["trigger"] == "manual"
    })
    .await;
    let after = hub.flow("catalog-nightly").await;
    assert_eq!(after["last_run"]["error"], Value::Null, "{after}");
    assert_eq!(after["last_run"]["stored"], 1, "only SKU-3 is new: {after}");
    wait_until("every product reached web2", DEADLINE, async || {
        let mut all = true;
        for sku in ["SKU-1", "SKU-2", "SKU-3"] {
            all &= hub
                .store
                .xref_external("web2", Kind::Product, sku)
                .await
                .expect("xref")
                .is_some();
        }
        all
    })
    .await;

    let (st, v) = hub
        .post("/api/v1/flows/stock/run", Some(OPERATOR), json!({}))
        .await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["code"], "conflict", "{v}");
    let (st, v) = hub
        .post("/api/v1/flows/nope/run", Some(OPERATOR), json!({}))
        .await;
    assert_eq!(st, 404, "{v}");
    // A refused action is audited too, with its result.
    let audit = hub.audit().await;
    assert!(
        audit.iter().any(|e| e["event"] == "admin.flow.run"
            && e["detail"]["target"]["flow"] == "stock"
            && e["detail"]["result"]["ok"] == false),
        "{audit:?}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_list_show_replay_drop() {
    let s = setup(None).await;
    s.settled().await;
    let hub = &s.hub;
    let order = s
        .web1
        .checkout(HELD, "Held Buyer", &[("SKU-1", 1)])
        .await
        .expect("checkout through the hub with web1's key");
    let dl = async || -> Vec<Value> {
        let (st, v) = hub
            .get("/api/v1/dead-letters?endpoint=erp&kind=order", Some(VIEWER))
            .await;
        assert_eq!(st, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    };
    wait_until(
        "the held customer's order is dead-lettered",
        DEADLINE,
        async || !dl().await.is_empty(),
    )
    .await;
    let list = dl().await;
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_i64().expect("id");
    assert_eq!(list[0]["key"], order.key);
    let (st, one) = hub
        .get(&format!("/api/v1/dead-letters/{id}"), Some(VIEWER))
        .await;
    assert_eq!(st, 200, "{one}");
    assert!(one["reason"].as_str().unwrap_or("").len() > 3, "{one}");
    assert_eq!(one["payload"]["customer"]["email"], HELD, "{one}");
    let (st, v) = hub
        .get(
            &format!("/api/v1/dead-letters?key={}", order.key),
            Some(VIEWER),
        )
        .await;
    assert_eq!((st, v.as_array().map(Vec::len)), (200, Some(1)), "{v}");

    // Replay: viewer refused; operator replays; still on hold, so it comes back.
    let (st, v) = hub
        .post(
            "/api/v1/dead-letters/replay",
            Some(VIEWER),
            json!({"ids": [id]}),
        )
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = hub
        .post(
            "/api/v1/dead-letters/replay",
            Some(OPERATOR),
            json!({"ids": [id, 999_999]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["done"], json!([id]), "{v}");
    assert_eq!(v["skipped"], json!([999_999]), "{v}");
    let (_, replayed) = hub
        .get(&format!("/api/v1/dead-letters/{id}"), Some(VIEWER))
        .await;
    assert_eq!(replayed["state"], "replayed");
    wait_until(
        "the replayed order is refused again",
        DEADLINE,
        async || dl().await.iter().any(|d| d["id"].as_i64() != Some(id)),
    )
    .await;
    let again = dl().await[0]["id"].as_i64().expect("id");
    let (st, v) = hub
        .post(
            "/api/v1/dead-letters/drop",
            Some(OPERATOR),
            json!({"ids": [again]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["done"], json!([again]));
    let (_, dropped) = hub
        .get("/api/v1/dead-letters?state=dropped", Some(VIEWER))
        .await;
    assert!(
        dropped
            .as_array()
            .is_some_and(|l| l.iter().any(|d| d["id"].as_i64() == Some(again))),
        "{dropped}"
    );
    let (st, v) = hub
        .post(
            "/api/v1/dead-letters/drop",
            Some(OPERATOR),
            json!({"ids": []}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(
        (&v["code"], &v["field"]),
        (&json!("invalid_field"), &json!("ids")),
        "{v}"
    );

    let audit = hub.audit().await;
    let replay = audit
        .iter()
        .find(|e| e["event"] == "admin.dlq.replay" && e["detail"]["result"]["ok"] == true)
        .expect("replay audited");
    assert_eq!(replay["detail"]["who"], "ops");
    assert_eq!(
        replay["detail"]["target"]["dead_letters"],
        json!([id, 999_999])
    );
    assert_eq!(replay["detail"]["result"]["replayed"], json!([id]));
    let drop = audit
        .iter()
        .find(|e| e["event"] == "admin.dlq.drop")
        .expect("drop audited");
    assert_eq!(drop["detail"]["result"]["dropped"], json!([again]));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_search_filters_and_pages() {
    let s = setup(None).await;
    s.settled().await;
    let hub = &s.hub;
    let (st, v) = hub
        .get(
            "/api/v1/journal?kind=stock&key=SKU-1@WH1&limit=100",
            Some(VIEWER),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let entries = v["entries"].as_array().expect("entries").clone();
    let all_stock = hub
        .get("/api/v1/journal?kind=stock&limit=1000", Some(VIEWER))
        .await
        .1["entries"]
        .as_array()
        .expect("entries")
        .clone();
    assert!(!all_stock.is_empty());
    assert!(all_stock.iter().all(|e| e["kind"] == "stock"));
    assert!(all_stock.iter().all(|e| e["endpoint"] == "erp"));
    for e in &entries {
        assert_eq!(e["key"], "SKU-1@WH1", "{e}");
    }
    // Paging: pages of 1 walk the same entries, newest first, without overlap.
    let mut seen = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let mut path = "/api/v1/journal?kind=stock&limit=1".to_string();
        if let Some(b) = before {
            path.push_str(&format!("&before_id={b}"));
        }
        let (_, page) = hub.get(&path, Some(VIEWER)).await;
        for e in page["entries"].as_array().expect("entries") {
            seen.push(e["id"].as_i64().expect("id"));
        }
        match page["next_before_id"].as_i64() {
            Some(b) => before = Some(b),
            None => break,
        }
        assert!(seen.len() <= all_stock.len(), "paging does not end");
    }
    let ids: Vec<i64> = all_stock.iter().filter_map(|e| e["id"].as_i64()).collect();
    assert_eq!(seen, ids);
    // Time range and status.
    let t = all_stock[0]["received_at"].as_i64().expect("received_at");
    let (_, v) = hub
        .get(
            &format!("/api/v1/journal?kind=stock&from={t}&to={}", t + 1),
            Some(VIEWER),
        )
        .await;
    let in_range = v["entries"].as_array().expect("entries");
    assert!(!in_range.is_empty());
    assert!(in_range
        .iter()
        .all(|e| e["received_at"].as_i64() == Some(t)));
    let (_, v) = hub
        .get("/api/v1/journal?status=rejected", Some(VIEWER))
        .await;
    assert_eq!(v["entries"], json!([]));
    let id = all_stock[0]["id"].as_i64().expect("id");
    let (st, one) = hub
        .get(&format!("/api/v1/journal/{id}"), Some(VIEWER))
        .await;
    assert_eq!(st, 200);
    assert_eq!(one["id"].as_i64(), Some(id));
    assert!(one["payload"].is_object());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_name_the_field() {
    let s = setup(None).await;
    let hub = &s.hub;
    for (path, code, field) in [
        ("/api/v1/journal?limit=abc", "invalid_field", "limit"),
        ("/api/v1/journal?limit=0", "invalid_field", "limit"),
        ("/api/v1/journal?limit=5000", "invalid_field", "limit"),
        ("/api/v1/journal?kind=widget", "invalid_field", "kind"),
        ("/api/v1/journal?status=done", "invalid_field", "status"),
        ("/api/v1/journal?from=10&to=5", "invalid_field", "from"),
        ("/api/v1/journal?colour=red", "unknown_field", "colour"),
        (
            "/api/v1/dead-letters?state=closed",
            "invalid_field",
            "state",
        ),
        ("/api/v1/reservations?state=nope", "invalid_field", "state"),
        ("/api/v1/audit?limit=-1", "invalid_field", "limit"),
        ("/api/v1/alerts?limit=0", "invalid_field", "limit"),
        ("/api/v1/alerts?firing=maybe", "invalid_field", "firing"),
    ] {
        let (st, v) = hub.get(path, Some(VIEWER)).await;
        assert_eq!(st, 400, "{path}: {v}");
        assert_eq!(
            (&v["code"], &v["field"]),
            (&json!(code), &json!(field)),
            "{path}: {v}"
        );
        // The message names the field too (people read it).
        let msg = v["error"].as_str().unwrap_or("");
        assert!(
            msg.contains(field),
            "{path}: {msg:?} does not name `{field}`"
        );
    }
    let (st, v) = hub
        .post(
            "/api/v1/dead-letters/replay",
            Some(OPERATOR),
            json!({"ids": ["x"]}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(
        (&v["code"], &v["field"]),
        (&json!("invalid_field"), &json!("ids[0]")),
        "{v}"
    );
    let (st, v) = hub.get("/api/v1/journal/notanumber", Some(VIEWER)).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(
        (&v["code"], &v["field"]),
        (&json!("invalid_path"), &json!("id")),
        "{v}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_pool_and_reservations() {
    let s = setup(None).await;
    s.settled().await;
    let hub = &s.hub;
    s.erp.set_stock("SKU-2", "WH1", 7).expect("stock");
    let _ = s
        .web1
        .checkout("ann@example.com", "Ann", &[("SKU-2", 2)])
        .await
        .expect("checkout");
    wait_until(
        "the pool shows the ERP's 7 and web1's hold",
        DEADLINE,
        async || {
            let (_, v) = hub.get("/api/v1/stock/SKU-2", Some(VIEWER)).await;
            v["positions"][0]["on_hand"] == 7
        },
    )
    .await;
    let (st, v) = hub.get("/api/v1/stock/SKU-2", Some(VIEWER)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["sku"], "SKU-2");
    assert_eq!(v["source"], "erp");
    let channels: Vec<&str> = v["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter_map(|c| c["channel"].as_str())
        .collect();
    assert_eq!(channels, ["web1", "web2"]);
    let loc = &v["channels"][0]["availability"]["locations"][0];
    for f in ["on_hand", "committed", "held", "buffer", "available"] {
        assert!(loc[f].is_i64(), "{f} missing: {loc}");
    }
    let (st, v) = hub
        .get("/api/v1/reservations?channel=web1", Some(VIEWER))
        .await;
    assert_eq!(st, 200, "{v}");
    let list = v.as_array().expect("list");
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["lines"][0]["sku"], "SKU-2");
    let (_, v) = hub
        .get("/api/v1/reservations?channel=web2", Some(VIEWER))
        .await;
    assert_eq!(v, json!([]));
    let (_, v) = hub
        .get(
            "/api/v1/reservations?sku=SKU-1&state=committed",
            Some(VIEWER),
        )
        .await;
    assert_eq!(v, json!([]));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_flows_show_health_and_sparklines() {
    let s = setup(None).await;
    s.settled().await;
    let hub = &s.hub;
    let (st, v) = hub.get("/api/v1/endpoints", Some(VIEWER)).await;
    assert_eq!(st, 200, "{v}");
    let eps = v.as_array().expect("endpoints");
    let names: Vec<&str> = eps.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, ["erp", "web1", "web2"]);
    let web1 = &eps[1];
    assert_eq!(web1["connector"], "sandbox-shop");
    assert_eq!(web1["health"]["breaker"], "closed");
    assert!(web1["health"]["last_success"].is_i64(), "{web1}");
    assert!(web1["health"]["rate_limited"].is_u64(), "{web1}");
    assert!(web1["queue"]["done"].as_u64().unwrap_or(0) > 0, "{web1}");

    let (st, o) = hub.get("/api/v1/overview", Some(VIEWER)).await;
    assert_eq!(st, 200, "{o}");
    assert!(o["now"].as_i64().unwrap_or(0) > 1_700_000_000_000, "{o}");
    assert!(o["stats"]["delivered"].as_u64().unwrap_or(0) >= 4, "{o}");
    assert_eq!(o["store"]["dead_letters_open"], 0, "{o}");
    assert_eq!(o["paused_flows"], json!([]), "{o}");

    let (st, v) = hub.get("/api/v1/flows", Some(VIEWER)).await;
    assert_eq!(st, 200, "{v}");
    let flows = v.as_array().expect("flows");
    assert_eq!(flows.len(), 5);
    let stock = flows.iter().find(|f| f["name"] == "stock").expect("stock");
    assert_eq!(stock["mode"], "realtime");
    assert_eq!(stock["poll_interval_ms"], 1000);
    let spark = stock["events_per_minute"].as_array().expect("sparkline");
    assert_eq!(spark.len(), 30);
    // Both stores got both SKUs: 4 deliveries in this (or the previous) minute.
    let recent: u64 = spark.iter().filter_map(Value::as_u64).sum();
    assert!(recent >= 4, "{stock}");
    wait_until("the stock poller has run", DEADLINE, async || {
        hub.flow("stock").await["last_run"]["trigger"] == "poll"
    })
    .await;
    let stock = hub.flow("stock").await;
    assert!(
        stock["next_run"].as_i64() > stock["last_run"]["finished_at"].as_i64(),
        "{stock}"
    );
    wait_until("the catalogue migration has run", DEADLINE, async || {
        hub.flow("catalog").await["last_run"]["trigger"] == "migration"
    })
    .await;
    let catalog = hub.flow("catalog").await;
    assert_eq!(catalog["last_run"]["stored"], 2, "{catalog}");
    assert_eq!(
        catalog["next_run"],
        Value::Null,
        "a migration runs once: {catalog}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storefront_keys_act_only_for_their_channel() {
    let s = setup(None).await;
    s.settled().await;
    let hub = &s.hub;
    let path = "/v1/availability?channel=web1&sku=SKU-1";
    let (st, v) = hub.get(path, None).await;
    assert_eq!(st, 401, "{v}");
    let (st, v) = hub.get(path, Some("nope")).await;
    assert_eq!(st, 401, "{v}");
    let (st, v) = hub.get(path, Some(KEY_WEB2)).await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(
        (&v["code"], &v["field"]),
        (&json!("forbidden"), &json!("channel")),
        "{v}"
    );
    // An admin token is not a storefront key.
    let (st, _) = hub.get(path, Some(OPERATOR)).await;
    assert_eq!(st, 401);
    let (st, v) = hub.get(path, Some(KEY_WEB1)).await;
    assert_eq!(st, 200, "{v}");
    let r = hub
        .http
        .get(format!("{}{path}", hub.base))
        .header("x-concord-key", KEY_WEB1)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    // A storefront key is not an admin token.
    let (st, _) = hub.get("/api/v1/flows", Some(KEY_WEB1)).await;
    assert_eq!(st, 401);

    let body =
        json!({"channel": "web1", "key": "cart-1", "lines": [{"sku": "SKU-1", "quantity": 1}]});
    let (st, v) = hub
        .post("/v1/reservations", Some(KEY_WEB2), body.clone())
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, r) = hub.post("/v1/reservations", Some(KEY_WEB1), body).await;
    assert_eq!(st, 201, "{r}");
    let id = r["id"].as_str().expect("id");
    // Another channel's reservation is answered like one that does not exist (404, not 403:
    // a key learns nothing about other channels' ids).
    let (st, v) = hub
        .get(&format!("/v1/reservations/{id}"), Some(KEY_WEB2))
        .await;
    assert_eq!(st, 404);
    assert_eq!(v["code"], "unknown_reservation", "{v}");
    let (st, _, _) = hub
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/reservations/{id}"),
            Some(KEY_WEB2),
            None,
        )
        .await;
    assert_eq!(st, 404);
    let (st, _) = hub
        .post(
            &format!("/v1/reservations/{id}/commit"),
            Some(KEY_WEB2),
            json!({"order": "1"}),
        )
        .await;
    assert_eq!(st, 404);
    let (st, v) = hub
        .get(&format!("/v1/reservations/{id}"), Some(KEY_WEB1))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "held");
    let (st, _) = hub
        .get("/v1/prices?channel=web1&sku=SKU-1", Some(KEY_WEB2))
        .await;
    assert_eq!(st, 403);
    // The sandbox storefront's checkout sends its key (and is accepted).
    s.web1
        .checkout("bob@example.com", "Bob", &[("SKU-1", 1)])
        .await
        .expect("checkout with web1's key");
    // Webhooks stay HMAC-only: no key needed, a bad signature still refused.
    let r = hub
        .http
        .post(format!("{}/hooks/web1", hub.base))
        .header("x-concord-signature", "sha256=00")
        .body("{}")
        .send()
        .await
        .expect("hook");
    assert_eq!(r.status().as_u16(), 401);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_and_parked_items() {
    let s = setup(None).await;
    s.settled().await;
    let hub = &s.hub;
    // The customer cannot reach the ERP while its flow is paused: the order parks on it.
    let (st, _) = hub
        .post("/api/v1/flows/customers/pause", Some(OPERATOR), json!({}))
        .await;
    assert_eq!(st, 200);
    let order = s
        .web1
        .checkout("carol@example.com", "Carol", &[("SKU-1", 1)])
        .await
        .expect("checkout");
    wait_until(
        "the order is parked on its customer",
        DEADLINE,
        async || {
            let (_, v) = hub.get("/api/v1/parked", Some(VIEWER)).await;
            v.as_array().is_some_and(|l| {
                l.iter().any(|p| {
                    p["key"] == order.key.as_str()
                        && p["dest"] == "erp"
                        && p["waiting_on"] == json!([["customer", "carol@example.com"]])
                })
            })
        },
    )
    .await;
    let (st, _) = hub
        .post("/api/v1/flows/customers/resume", Some(OPERATOR), json!({}))
        .await;
    assert_eq!(st, 200);
    wait_until(
        "the order reached the ERP and is accepted",
        DEADLINE,
        async || {
            let (_, v) = hub.get("/api/v1/orders?state=accepted", Some(VIEWER)).await;
            v["orders"]
                .as_array()
                .is_some_and(|l| l.iter().any(|o| o["key"] == order.key.as_str()))
        },
    )
    .await;
    let (_, v) = hub.get("/api/v1/parked", Some(VIEWER)).await;
    assert_eq!(v, json!([]));
    let (st, v) = hub
        .get("/api/v1/orders?channel=web1&limit=1", Some(VIEWER))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["orders"][0]["key"], order.key.as_str());
    assert_eq!(v["orders"][0]["channel"], "web1");
    let (_, v) = hub.get("/api/v1/orders?channel=web2", Some(VIEWER)).await;
    assert_eq!(v["orders"], json!([]));
    assert_eq!(v["next_after"], Value::Null);
    // A state that does not exist is a named 400, not an empty list.
    let (st, v) = hub.get("/api/v1/orders?state=shiped", Some(VIEWER)).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(
        (&v["code"], &v["field"]),
        (&json!("invalid_field"), &json!("state")),
        "{v}"
    );
    // The behaviour: the refusal lists the states that exist.
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("partially_shipped"),
        "{v}"
    );
    let (st, counts) = hub.get("/api/v1/orders/counts", Some(VIEWER)).await;
    assert_eq!(st, 200, "{counts}");
    assert_eq!(counts["accepted"], 1, "{counts}");
    let path = format!("/api/v1/orders/{}", order.key.replace('/', "%2F"));
    let (st, h) = hub.get(&path, Some(VIEWER)).await;
    assert_eq!(st, 200, "{h}");
    assert_eq!(h["order"]["key"], order.key.as_str());
    assert!(!h["events"].as_array().expect("events").is_empty(), "{h}");
    assert!(!h["journal"].as_array().expect("journal").is_empty(), "{h}");
    assert!(
        h["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .any(|a| a["dest"] == "erp" && a["outcome"] == "delivered"),
        "{h}"
    );
    let (st, v) = hub.get("/api/v1/orders/web1%2F999999", Some(VIEWER)).await;
    assert_eq!(st, 404, "{v}");
    s.shutdown().await;
}

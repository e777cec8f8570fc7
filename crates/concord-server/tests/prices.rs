//! End-to-end tests of prices on a real hub — an engine over a `SqliteStore` in a temporary
//! directory with the sandbox connectors, the router served on 127.0.0.1 — with a sandbox ERP
//! (the system of record for price lists) and two sandbox storefronts, all over real HTTP.
//!
//! - `price_change_reaches_both_channels_once`: a list price, a customer-group list and a
//!   customer-specific list flow ERP → both storefronts; a price change in the ERP is written to
//!   each storefront exactly once; the same content captured again under a new version (a
//!   re-read) is hash-skipped and not re-sent, however many polls pass; a dated list, which the
//!   storefronts cannot represent, is dead-lettered with a "cannot represent" reason.
//! - `v1_prices_serves_the_hubs_lists`: `/v1/prices` answers by precedence (customer-specific >
//!   group, resolved from the customer entity > default) with tiers, extended price and rule; 400
//!   names the field; 404 says why; an order whose line price differs is flagged
//!   (`price_mismatch` audit event naming order, line, expected and actual, and the journal
//!   note), and still flows.
//!
//! Every wait is a condition polled under a deadline; nothing sleeps and hopes.

use concord_core::Kind;
use concord_engine::config::Config;
use concord_engine::Engine;
use concord_sandbox::erp::{ErpHandle, ErpOptions};
use concord_sandbox::shop::ShopHandle;
use concord_server::AppState;
use concord_store::{Capture, DeadLetterFilter, SqliteStore, Store};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "prices-test-secret";
use concord_testkit::sandbox::{hub_listener, shop_endpoint, start_erp, start_shop};
use concord_testkit::{wait_until, DEADLINE};

struct Setup {
    erp: ErpHandle,
    shops: Vec<ShopHandle>,
    engine: Engine,
    store: Arc<SqliteStore>,
    base: String,
    http: reqwest::Client,
    tasks: tokio::task::JoinSet<()>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start(seed: impl FnOnce(&ErpHandle)) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let (listener, _, base) = hub_listener().await;
        let erp = start_erp(&base, SECRET, ErpOptions::default()).await;
        seed(&erp);
        let mut shops = Vec::new();
        let mut endpoints = String::new();
        for name in ["web1", "web2"] {
            let shop = start_shop(&base, SECRET, name, None).await;
            endpoints.push_str(&shop_endpoint(name, &shop.base_url(), SECRET));
            endpoints.push('\n');
            shops.push(shop);
        }
        let text = format!(
            r#"
[store]
path = "{store}"

[engine]
backoff_base = "50ms"
backoff_cap = "500ms"
max_attempts = 3

[endpoints.erp]
connector = "sandbox-erp"
url = "{erp}"
webhook_secret = "{SECRET}"
timeout = "5s"

{endpoints}

# Webhooks plus a poll every 200 ms: every change is captured twice or more.
[[flows]]
name = "prices"
kind = "price"
pattern = "broadcast"
mode = "realtime"
poll = "200ms"
from = ["erp"]
to = ["web1", "web2"]

[[flows]]
name = "customers-to-erp"
kind = "customer"
pattern = "aggregation"
mode = "realtime"
from = ["web1", "web2"]
to = ["erp"]

[[flows]]
name = "orders-to-erp"
kind = "order"
pattern = "aggregation"
mode = "realtime"
from = ["web1", "web2"]
to = ["erp"]

[pricing]
currency = "USD"
tolerance_minor = 0
"#,
            store = dir.path().join("concord.sqlite").display(),
            erp = erp.base_url(),
        );
        let config = Config::from_toml_str(&text, &dir.path().join("concord.toml"))
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        let mut connectors = BTreeMap::new();
        for (name, spec) in &config.endpoints {
            connectors.insert(
                name.clone(),
                concord_connectors::build(spec).expect("build connector"),
            );
        }
        let store = Arc::new(SqliteStore::open(&config.store.path).expect("open the store"));
        let dyn_store: Arc<dyn Store> = store.clone();
        let max_body = config.server.max_body_bytes;
        let engine = Engine::new(Arc::new(config), dyn_store, connectors).expect("engine");
        let tasks = engine.start().await.expect("start the engine");
        let app = concord_server::app(
            AppState {
                engine: engine.clone(),
                metrics: None,
                ready: Arc::new(AtomicBool::new(true)),
            },
            max_body,
        );
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(concord_server::serve(listener, app, async move {
            let _ = rx.await;
        }));
        Setup {
            erp,
            shops,
            engine,
            store,
            base,
            http: reqwest::Client::new(),
            tasks,
            stop,
            server,
            _dir: dir,
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.send(());
        let _ = (&mut self.server).await;
        self.engine.shutdown();
        while self.tasks.join_next().await.is_some() {}
        self.store.close().await;
        self.erp.shutdown().await;
        for s in &self.shops {
            s.shutdown().await;
        }
    }

    /// `GET /v1/prices?<query>` → (status, body).
    async fn lookup(&self, query: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/v1/prices?{query}", self.base))
            .send()
            .await
            .expect("GET /v1/prices");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    fn price_writes(&self, i: usize) -> u64 {
        self.shops[i]
            .counters()
            .writes
            .get("price")
            .copied()
            .unwrap_or(0)
    }
}

fn seed(erp: &ErpHandle) {
    erp.upsert_price(json!({"sku": "A", "list": "default", "currency": "USD",
        "amount_minor": 1000, "tiers": [{"min_quantity": 10, "amount_minor": 900},
                                        {"min_quantity": 48, "amount_minor": 800}]}))
        .expect("default list");
    erp.upsert_price(json!({"sku": "A", "list": "wholesale", "currency": "USD",
        "amount_minor": 850, "customer_group": "wholesale",
        "tiers": [{"min_quantity": 48, "amount_minor": 700}]}))
        .expect("group list");
    erp.upsert_price(json!({"sku": "A", "list": "acme", "currency": "USD",
        "amount_minor": 650, "customer": "buyer@acme.example"}))
        .expect("customer list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_change_reaches_both_channels_once() {
    let s = Setup::start(seed).await;
    wait_until(
        "both storefronts have the three lists",
        DEADLINE,
        async || {
            s.shops.iter().all(|shop| {
                ["default", "wholesale", "acme"]
                    .iter()
                    .all(|l| shop.price(l, "A").is_some())
            })
        },
    )
    .await;
    assert_eq!(
        s.shops[0].price("acme", "A").expect("acme list")["customer"],
        "buyer@acme.example",
        "the customer-specific list arrives with its scope"
    );
    assert_eq!((s.price_writes(0), s.price_writes(1)), (3, 3));

    // A price change in the ERP: one write per storefront.
    s.erp
        .upsert_price(json!({"sku": "A", "list": "default", "currency": "USD",
            "amount_minor": 990, "tiers": [{"min_quantity": 10, "amount_minor": 900},
                                            {"min_quantity": 48, "amount_minor": 800}]}))
        .expect("change");
    wait_until(
        "both storefronts have the new price",
        DEADLINE,
        async || {
            s.shops.iter().all(|shop| {
                shop.price("default", "A")
                    .is_some_and(|p| p["amount_minor"] == 990)
            })
        },
    )
    .await;
    wait_until("the hub is drained", DEADLINE, async || {
        s.engine.is_drained().await.expect("drained")
    })
    .await;
    assert_eq!((s.price_writes(0), s.price_writes(1)), (4, 4), "once each");

    // The same content re-read under a new version (as a snapshot or another poll would): the
    // hub merges it as unchanged and sends nothing.
    let current = s
        .store
        .entity(Kind::Price, "default:A")
        .await
        .expect("read")
        .expect("entity");
    s.store
        .ingest(
            vec![Capture {
                endpoint: "erp".into(),
                kind: Kind::Price,
                external_id: "default:A".into(),
                // Not comparable with the ERP's sequence numbers (as a content hash would be).
                version: "re-read".into(),
                payload: current.state.clone(),
                received_at: s.engine.now(),
                rejected: None,
            }],
            None,
        )
        .await
        .expect("ingest the re-read");

    let reread = async || {
        s.store
            .journal(Some("erp"), Some(Kind::Price), None, 20)
            .await
            .expect("journal")
            .into_iter()
            .find(|j| j.version == "re-read")
            .and_then(|j| j.note)
    };
    wait_until("the re-read is processed", DEADLINE, async || {
        reread().await.is_some()
    })
    .await;
    let note = reread().await.unwrap_or_default();
    assert!(note.contains("unchanged"), "{note}");
    // Several polls later, still one write per change.
    tokio::time::sleep(Duration::from_millis(700)).await;
    wait_until("the hub is drained", DEADLINE, async || {
        s.engine.is_drained().await.expect("drained")
    })
    .await;
    assert_eq!(
        (s.price_writes(0), s.price_writes(1)),
        (4, 4),
        "not re-sent"
    );

    // A dated list cannot be represented by the storefronts: dead-lettered with the reason.
    s.erp
        .upsert_price(json!({"sku": "A", "list": "summer", "currency": "USD",
            "amount_minor": 700, "valid_from": "2026-06-01", "valid_to": "2026-09-01"}))
        .expect("dated list");
    wait_until(
        "the dated list is dead-lettered at both storefronts",
        DEADLINE,
        async || {
            let dl = s
                .store
                .dead_letters(DeadLetterFilter {
                    kind: Some(Kind::Price),
                    ..DeadLetterFilter::default()
                })
                .await
                .expect("dead letters");
            dl.len() == 2
                && dl
                    .iter()
                    .all(|d| d.key == "summer:A" && d.reason.contains("cannot represent"))
        },
    )
    .await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_prices_serves_the_hubs_lists() {
    let s = Setup::start(seed).await;
    // A wholesale customer registers at web1 (customer → group comes from this entity).
    let r = s
        .http
        .post(format!("{}/api/customers", s.shops[0].base_url()))
        .json(&json!({"email": "bo@shop.example", "name": "Bo", "group": "wholesale"}))
        .send()
        .await
        .expect("create customer");
    assert!(r.status().is_success(), "{}", r.status());
    wait_until(
        "the hub knows the three lists and bo's group",
        DEADLINE,
        async || {
            let (status, body) = s
                .lookup("channel=web1&customer=bo@shop.example&sku=A&qty=1")
                .await;
            status == 200 && body["list"] == "wholesale"
        },
    )
    .await;

    // (query, list, scope, tier, unit, extended)
    let table: Vec<(&str, &str, &str, Value, i64, i64)> = vec![
        (
            "channel=web1&sku=A&qty=1",
            "default",
            "default",
            Value::Null,
            1000,
            1000,
        ),
        (
            "channel=web1&sku=A&qty=10",
            "default",
            "default",
            json!(10),
            900,
            9000,
        ),
        (
            "channel=web2&sku=A&qty=48",
            "default",
            "default",
            json!(48),
            800,
            38400,
        ),
        (
            "channel=web1&customer=bo@shop.example&sku=A&qty=48",
            "wholesale",
            "customer_group",
            json!(48),
            700,
            33600,
        ),
        (
            "channel=web1&customer=Buyer@Acme.example&sku=A&qty=48",
            "acme",
            "customer",
            Value::Null,
            650,
            31200,
        ),
    ];
    for (query, list, scope, tier, unit, extended) in table {
        let (status, body) = s.lookup(query).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(body["list"], list, "{query}: {body}");
        assert_eq!(body["scope"], scope, "{query}: {body}");
        assert_eq!(body["tier_min_quantity"], tier, "{query}: {body}");
        assert_eq!(body["unit_minor"], unit, "{query}: {body}");
        assert_eq!(body["extended_minor"], extended, "{query}: {body}");
        assert_eq!(body["currency"], "USD");
        assert!(
            body["rule"].as_str().is_some_and(|r| r.contains(list)),
            "{body}"
        );
    }

    // Bad input: 400 naming the field. No price: 404 saying why.
    for (query, code, field) in [
        ("sku=A&qty=1", "missing_field", "channel"),
        ("channel=web1&qty=1", "missing_field", "sku"),
        ("channel=web1&sku=A&qty=many", "invalid_field", "qty"),
        ("channel=web1&sku=A&qty=0", "invalid_field", "qty"),
        ("channel=nowhere&sku=A", "invalid_field", "channel"),
        (
            "channel=web1&sku=A&currency=usd",
            "invalid_field",
            "currency",
        ),
        ("channel=web1&sku=A&colour=red", "unknown_field", "colour"),
    ] {
        let (status, body) = s.lookup(query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(
            (body["code"].as_str(), body["field"].as_str()),
            (Some(code), Some(field)),
            "{query}: {body}"
        );
    }
    // No price: 404 `no_price`, the message saying which filter excluded the candidates.
    let (status, body) = s.lookup("channel=web1&sku=NOPE").await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "no_price", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no price list has SKU `NOPE`"),
        "{body}"
    );
    let (status, body) = s.lookup("channel=web1&sku=A&currency=EUR").await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "no_price", "{body}");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("EUR"),
        "{body}"
    );

    // The acme buyer orders at web1, whose checkout charges the list price (1000), not their
    // 650: the hub flags the line and the order still flows.
    s.shops[0]
        .set_inventory("A", "default", 100)
        .expect("inventory");
    let placed = s.shops[0]
        .place_order("buyer@acme.example", "Acme", &[("A", 2)])
        .expect("order");
    let key = placed.key.clone();
    wait_until("the price mismatch is flagged", DEADLINE, async || {
        s.store
            .audit_log(100)
            .await
            .expect("audit")
            .iter()
            .any(|a| a.event.event == "price_mismatch" && a.event.key.as_deref() == Some(&key))
    })
    .await;
    let audit = s.store.audit_log(100).await.expect("audit");
    let ev = audit
        .iter()
        .find(|a| a.event.event == "price_mismatch")
        .expect("event");
    assert_eq!(ev.event.detail["order"], key.as_str());
    assert_eq!(ev.event.detail["line"], 0);
    assert_eq!(ev.event.detail["expected_minor"], 650);
    assert_eq!(ev.event.detail["actual_minor"], 1000);
    let note = s
        .store
        .journal(Some("web1"), Some(Kind::Order), None, 5)
        .await
        .expect("journal")
        .into_iter()
        .find_map(|j| j.note.filter(|n| n.contains("price_mismatch")))
        .expect("the journal note names the mismatch");
    assert!(note.contains("line 0 (A) expected 650 got 1000"), "{note}");
    s.shutdown().await;
}

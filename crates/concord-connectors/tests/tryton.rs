//! Integration tests against a **real Tryton 8.2** (installed from PyPI by
//! `scripts/tryton/setup.sh`, started by `start.sh`, seeded by `seed.py`): a real engine over a
//! real SQLite store, the `tryton` connector as the ERP and two sandbox storefronts.
//!
//! `scripts/test.sh` sets Tryton up and exports `CONCORD_TRYTON_URL` (and `TRYTON_DIR`,
//! `TRYTON_PORT`, `TRYTON_DB`); without `CONCORD_TRYTON_URL` every test here prints a loud SKIPPED
//! line and passes, so `cargo test` alone works on a machine without Tryton. The outage test also
//! needs `TRYTON_DIR` (to stop and restart the server through the project's scripts).
//!
//! Tryton's database outlives a run, so every test uses names of its own (storefront channels
//! `t<run>a`, SKUs `<run>-…`): orders and products never collide with an earlier run's. The tests
//! share one server and one of them stops it, so they run one at a time (a process-wide lock).
//! Every wait is a condition polled under a deadline; nothing sleeps and hopes.

use concord_connectors::tryton::refund::refund_reference;
use concord_connectors::tryton::TrytonConnector;
use concord_core::Kind;
use concord_engine::config::Config;
use concord_engine::connector::{Connector, EndpointSpec, ReadRequest, WriteOp, WriteOutcome};
use concord_engine::runtime::Engine;
use concord_sandbox::{ShopHandle, ShopOptions, ShopSim};
use concord_store::{DeadLetterFilter, SqliteStore, Store};
use concord_testkit::real::{missing, ran};
use concord_testkit::wait_until;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const DEADLINE: Duration = Duration::from_secs(60);
/// The stock poll interval the tests run with (the example config uses the default 2 s).
const POLL: &str = "500ms";

/// Runtime-agnostic (each test has its own runtime), and never poisoned by a failed test.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

struct Env {
    url: String,
    db: String,
    password: String,
}

fn env() -> Option<Env> {
    let Ok(url) = std::env::var("CONCORD_TRYTON_URL") else {
        missing(
            "\n!!!!! SKIPPED: CONCORD_TRYTON_URL is not set, so the real-Tryton tests did not run.\n\
             !!!!! Run ./scripts/test.sh (it installs, starts and seeds Tryton), or start one with\n\
             !!!!! scripts/tryton/{setup.sh,start.sh,seed.py} and export CONCORD_TRYTON_URL.\n"
        );
        return None;
    };
    ran("tryton");
    Some(Env {
        url,
        db: std::env::var("TRYTON_DB").unwrap_or_else(|_| "concord".into()),
        password: std::env::var("TRYTON_ADMIN_PASSWORD").unwrap_or_else(|_| "admin".into()),
    })
}

/// A short name unique to this test run.
fn run_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut n = ms % 36u128.pow(6);
    let mut s = String::new();
    for _ in 0..6 {
        let d = (n % 36) as u32;
        s.insert(0, char::from_digit(d, 36).unwrap_or('0'));
        n /= 36;
    }
    s
}

fn tryton_spec(e: &Env) -> EndpointSpec {
    EndpointSpec {
        name: "erp".into(),
        connector: "tryton".into(),
        url: e.url.clone(),
        webhook_secret: None,
        timeout: Duration::from_secs(10),
        max_response_bytes: concord_engine::outbound::DEFAULT_MAX_RESPONSE_BYTES,
        allow_insecure_http: false,
        options: json!({"database": e.db, "password": e.password,
                        "warehouses": ["WH", "WH2"], "sale_flow": "confirm"}),
    }
}

/// Direct access to Tryton (the test plays the ERP's users).
struct Erp {
    c: TrytonConnector,
}

impl Erp {
    fn new(e: &Env) -> Erp {
        Erp {
            c: TrytonConnector::new(&tryton_spec(e)).expect("tryton connector builds"),
        }
    }

    async fn call(&self, model: &str, method: &str, params: Vec<Value>) -> Value {
        self.c
            .rpc()
            .model(model, method, params)
            .await
            .unwrap_or_else(|e| panic!("{model}.{method}: {e}"))
    }

    async fn find(&self, model: &str, domain: Value, fields: &[&str]) -> Vec<Value> {
        self.c
            .rpc()
            .search_read(model, domain, None, json!([["id", "ASC"]]), fields)
            .await
            .unwrap_or_else(|e| panic!("{model}.search_read: {e}"))
    }

    async fn id(&self, model: &str, domain: Value) -> i64 {
        self.find(model, domain.clone(), &["id"])
            .await
            .first()
            .and_then(|r| r["id"].as_i64())
            .unwrap_or_else(|| panic!("no {model} matching {domain}"))
    }

    async fn company(&self) -> i64 {
        self.c.rpc().context().await.expect("context")["company"]
            .as_i64()
            .expect("company in context")
    }

    async fn storage(&self, wh: &str) -> i64 {
        let r = self
            .find(
                "stock.location",
                json!([["code", "=", wh]]),
                &["storage_location"],
            )
            .await;
        r[0]["storage_location"].as_i64().expect("storage location")
    }

    /// Set a product's quantity at a warehouse with a confirmed inventory.
    async fn inventory(&self, product: i64, wh: &str, quantity: i64) {
        let (loc, company) = (self.storage(wh).await, self.company().await);
        let inv = self
            .call(
                "stock.inventory",
                "create",
                vec![json!([{"location": loc, "company": company,
                   "lines": [["create", [{"product": product, "quantity": quantity}]]]}])],
            )
            .await;
        self.call("stock.inventory", "confirm", vec![inv]).await;
    }

    /// A done move of `quantity` between two locations.
    async fn move_done(&self, product: i64, from: i64, to: i64, quantity: i64) {
        let company = self.company().await;
        let m = self
            .call(
                "stock.move",
                "create",
                vec![json!([{"product": product, "quantity": quantity, "unit": 1,
                   "from_location": from, "to_location": to, "company": company,
                   "unit_price": {"__class__": "Decimal", "decimal": "5"}, "currency": 1}])],
            )
            .await;
        self.call("stock.move", "do", vec![m]).await;
    }

    async fn product(&self, sku: &str) -> i64 {
        self.id("product.product", json!([["code", "=", sku]]))
            .await
    }

    /// A goods product; `code: None` makes one without a code.
    async fn new_product(&self, code: Option<&str>, name: &str) -> i64 {
        let unit = self.id("product.uom", json!([["name", "=", "Unit"]])).await;
        let tpl = self
            .call(
                "product.template",
                "create",
                vec![
                    json!([{"name": name, "code": code, "type": "goods", "default_uom": unit,
                   "list_price": {"__class__": "Decimal", "decimal": "1"},
                   "products": [["create", [{}]]]}]),
                ],
            )
            .await;
        self.id("product.product", json!([["template", "in", tpl]]))
            .await
    }

    async fn sales(&self, reference: &str) -> Vec<Value> {
        self.find(
            "sale.sale",
            json!([["reference", "=", reference]]),
            &["state", "party", "lines", "shipments", "reference"],
        )
        .await
    }
}

/// A running engine over a fresh store with Tryton and two storefronts.
struct Hub {
    engine: Engine,
    store: Arc<dyn Store>,
    tasks: JoinSet<()>,
}

fn config_text(e: &Env, shops: &[(&str, &ShopHandle)], store: &Path) -> String {
    let names: Vec<String> = shops.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let names = names.join(", ");
    let mut t = format!(
        r#"
[store]
path = "{store}"

[engine]
backoff_base = "50ms"
backoff_cap = "500ms"
breaker_open = "200ms"
breaker_max_open = "1s"
max_attempts = 1000

[endpoints.erp]
connector = "tryton"
url = "{url}"
timeout = "10s"
[endpoints.erp.options]
database = "{db}"
password = "${{CONCORD_TEST_TRYTON_PASSWORD}}"
warehouses = ["WH", "WH2"]
sale_flow = "confirm"
# Only shipped goods become fulfillments (a storefront fulfillment is final).
shipment_states = ["done"]
"#,
        store = store.display(),
        url = e.url,
        db = e.db,
    );
    for (n, s) in shops {
        t.push_str(&format!(
            "\n[endpoints.{n}]\nconnector = \"sandbox-shop\"\nurl = \"{}\"\n",
            s.base_url()
        ));
    }
    t.push_str(&format!(
        r#"
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "delta"
interval = "{POLL}"
from = ["erp"]
to = [{names}]
[flows.map_out]
"*" = '{{sku, location, available: ([.on_hand - .committed, 0] | max)}}'

[[flows]]
name = "orders"
kind = "order"
pattern = "aggregation"
mode = "delta"
interval = "200ms"
from = [{names}]
to = ["erp"]

[[flows]]
name = "shipments"
kind = "shipment"
pattern = "broadcast"
mode = "delta"
interval = "{POLL}"
from = ["erp"]
to = [{names}]
"#
    ));
    t
}

impl Hub {
    async fn start(e: &Env, shops: &[(&str, &ShopHandle)], dir: &Path) -> Hub {
        Hub::start_with(e, shops, dir, "").await
    }

    /// `extra`: more config (flows) appended to the common one.
    async fn start_with(e: &Env, shops: &[(&str, &ShopHandle)], dir: &Path, extra: &str) -> Hub {
        let store_path = dir.join("concord.sqlite");
        let text = config_text(e, shops, &store_path) + extra;
        let pw = e.password.clone();
        let config = Config::from_toml_str_with_env(&text, &dir.join("test.toml"), move |n| {
            (n == "CONCORD_TEST_TRYTON_PASSWORD").then(|| pw.clone())
        })
        .unwrap_or_else(|err| panic!("test config: {err}\n{text}"));
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&store_path).expect("store"));
        let mut connectors: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
        for (name, spec) in &config.endpoints {
            connectors.insert(
                name.clone(),
                concord_connectors::build(spec).expect("connector builds"),
            );
        }
        let engine = Engine::new(Arc::new(config), store.clone(), connectors).expect("engine");
        let tasks = engine.start().await.expect("engine starts");
        Hub {
            engine,
            store,
            tasks,
        }
    }

    async fn stop(mut self) {
        self.engine.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
    }

    async fn dead_letters(&self) -> Vec<concord_store::DeadLetter> {
        self.store
            .dead_letters(DeadLetterFilter::default())
            .await
            .expect("dead letters")
    }

    /// Dead letters other than the bad products the bad-data test leaves in the shared Tryton
    /// database on purpose (`product#<id>`, `NEG-…`).
    async fn unexpected_dead_letters(&self) -> Vec<concord_store::DeadLetter> {
        self.dead_letters()
            .await
            .into_iter()
            .filter(|d| !d.key.starts_with("product#") && !d.key.starts_with("NEG-"))
            .collect()
    }
}

async fn shop(name: &str) -> ShopHandle {
    ShopSim::start(ShopOptions {
        name: name.to_string(),
        ..ShopOptions::default()
    })
    .await
    .expect("shop starts")
}

fn available(s: &ShopHandle, sku: &str, loc: &str) -> Option<i64> {
    s.inventory(sku).get(loc).copied()
}

/// Our own figure from Tryton: what the storefront should show (on hand − committed).
async fn tryton_available(erp: &Erp, sku: &str, wh: &str) -> i64 {
    let page = erp
        .c
        .read_snapshot(ReadRequest {
            kind: Kind::Stock,
            cursor: None,
            limit: 1000,
            overlap: Duration::ZERO,
        })
        .await
        .expect("stock snapshot");
    let r = page
        .records
        .iter()
        .find(|c| c.external_id == format!("{sku}@{wh}"))
        .unwrap_or_else(|| panic!("no stock record {sku}@{wh}"));
    (r.record["on_hand"].as_i64().unwrap_or(0) - r.record["committed"].as_i64().unwrap_or(0)).max(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_changed_in_tryton_reaches_the_storefronts_with_measured_latency() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let (na, nb) = (format!("t{run}a"), format!("t{run}b"));
    let (a, b) = (shop(&na).await, shop(&nb).await);
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&e, &[(&na, &a), (&nb, &b)], dir.path()).await;

    // The initial figures arrive (first poll reads every move since the beginning).
    let start = tryton_available(&erp, "SKU-0001", "WH").await;
    wait_until("the storefronts have SKU-0001@WH", DEADLINE, || async {
        available(&a, "SKU-0001", "WH") == Some(start)
            && available(&b, "SKU-0001", "WH") == Some(start)
    })
    .await;

    let p1 = erp.product("SKU-0001").await;
    let p2 = erp.product("SKU-0002").await;
    let mut watch = a.watch_inventory();
    let mut latencies = Vec::new();
    for round in 0..4i64 {
        // Alternate an inventory (absolute) and a move (relative, into WH2 from the supplier).
        let (sku, wh, expect, t0) = if round % 2 == 0 {
            let target = 200 + round * 7 + (run.len() as i64);
            let t0 = Instant::now();
            erp.inventory(p1, "WH", target).await;
            let expect = tryton_available(&erp, "SKU-0001", "WH").await;
            ("SKU-0001", "WH", expect, t0)
        } else {
            let supplier = erp
                .id("stock.location", json!([["type", "=", "supplier"]]))
                .await;
            let to = erp.storage("WH2").await;
            let t0 = Instant::now();
            erp.move_done(p2, supplier, to, 3).await;
            let expect = tryton_available(&erp, "SKU-0002", "WH2").await;
            ("SKU-0002", "WH2", expect, t0)
        };
        let arrived = tokio::time::timeout(DEADLINE, async {
            loop {
                let set = watch.recv().await.expect("watching inventory");
                if set.sku == sku && set.location == wh && set.available == expect {
                    return set.at;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{sku}@{wh} = {expect} never reached the storefront"));
        latencies.push(arrived.saturating_duration_since(t0));
        wait_until("the second storefront has it too", DEADLINE, || async {
            available(&b, sku, wh) == Some(expect)
        })
        .await;
    }
    latencies.sort();
    let ms: Vec<u128> = latencies.iter().map(|d| d.as_millis()).collect();
    println!(
        "TRYTON->STOREFRONT LATENCY (poll interval {POLL}): min {} ms, median {} ms, max {} ms over {} changes {ms:?}",
        ms[0],
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        ms.len()
    );
    assert!(
        hub.unexpected_dead_letters().await.is_empty(),
        "no dead letters"
    );
    hub.stop().await;
}

fn order_op(key: &str, sku: &str, qty: i64) -> WriteOp {
    WriteOp {
        item_id: 1,
        kind: Kind::Order,
        key: key.into(),
        op: "create".into(),
        payload: json!({"number": key.rsplit('/').next().unwrap_or(key), "currency": "USD",
                        "customer": {"email": "customer1@example.com", "name": "Customer 1"},
                        "lines": [{"sku": sku, "quantity": qty, "unit_price_minor": 1100}]}),
        external_id: None,
        refs: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storefront_order_becomes_exactly_one_tryton_sale_even_when_replayed() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let (na, nb) = (format!("t{run}a"), format!("t{run}b"));
    let (a, b) = (shop(&na).await, shop(&nb).await);
    a.set_inventory("SKU-0003", "WH", 50).expect("stock");
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&e, &[(&na, &a), (&nb, &b)], dir.path()).await;

    let placed = a
        .place_order("Customer1@example.com", "Customer 1", &[("SKU-0003", 2)])
        .expect("checkout");
    let reference = format!("{na}/{}", placed.number);
    wait_until("the order is a sale in Tryton", DEADLINE, || async {
        erp.sales(&reference)
            .await
            .iter()
            .any(|s| s["state"] == "processing")
    })
    .await;
    let sales = erp.sales(&reference).await;
    assert_eq!(sales.len(), 1, "one sale for {reference}");
    let customer = erp
        .id(
            "party.contact_mechanism",
            json!([["value", "=", "customer1@example.com"]]),
        )
        .await;
    let party = erp
        .find(
            "party.contact_mechanism",
            json!([["id", "=", customer]]),
            &["party"],
        )
        .await;
    assert_eq!(
        sales[0]["party"], party[0]["party"],
        "the sale is the customer's"
    );
    let lines = erp
        .find(
            "sale.line",
            json!([["sale", "=", sales[0]["id"]]]),
            &["product.code", "quantity"],
        )
        .await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["product."]["code"], "SKU-0003");
    assert_eq!(lines[0]["quantity"], 2.0);
    hub.stop().await;

    // Concord killed after Tryton's create but before its own bookkeeping, at worst: a hub with
    // none of it (a fresh store) reads the same order again and delivers it again.
    let dir2 = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&e, &[(&na, &a), (&nb, &b)], dir2.path()).await;
    wait_until("the replayed order is delivered", DEADLINE, || async {
        hub.engine.is_drained().await.unwrap_or(false) && hub.engine.stats(None).delivered >= 1
    })
    .await;
    assert_eq!(
        erp.sales(&reference).await.len(),
        1,
        "replay made no second sale"
    );
    assert!(hub.unexpected_dead_letters().await.is_empty());
    hub.stop().await;

    // The op itself, replayed, and a crash that left a draft sale behind (created, never
    // quoted): both finish the one sale.
    let tryton = concord_connectors::build(&tryton_spec(&e)).expect("build");
    let key = format!("{na}/direct-{run}");
    let first = tryton.write(vec![order_op(&key, "SKU-0004", 1)]).await;
    let again = tryton.write(vec![order_op(&key, "SKU-0004", 1)]).await;
    let (
        WriteOutcome::Done {
            external_id: id1,
            version: Some(v1),
        },
        WriteOutcome::Done {
            external_id: id2, ..
        },
    ) = (&first[0], &again[0])
    else {
        panic!("writes failed: {first:?} {again:?}");
    };
    assert_eq!(id1, id2);
    assert_eq!(erp.sales(&key).await.len(), 1);
    // The watermark: the stock figure including this order is newer.
    let stock = tryton
        .read_snapshot(ReadRequest {
            kind: Kind::Stock,
            cursor: None,
            limit: 1000,
            overlap: Duration::ZERO,
        })
        .await
        .expect("snapshot");
    let fig = stock
        .records
        .iter()
        .find(|c| c.external_id == "SKU-0004@WH")
        .expect("figure");
    assert_eq!(
        concord_store::compare_versions(fig.version.as_deref().unwrap_or(""), v1),
        Some(std::cmp::Ordering::Greater),
        "figure {:?} must pass the order's watermark {v1}",
        fig.version
    );
    assert!(
        fig.record["committed"].as_i64().unwrap_or(0) >= 1,
        "{}",
        fig.record
    );

    let key2 = format!("{na}/draft-{run}");
    let party_id = party[0]["party"].as_i64().expect("party");
    let addr = erp
        .id("party.address", json!([["party", "=", party_id]]))
        .await;
    let wh = erp.id("stock.location", json!([["code", "=", "WH"]])).await;
    let company = erp.company().await;
    let p = erp.product("SKU-0004").await;
    erp.call("sale.sale", "create", vec![json!([{"party": party_id, "invoice_address": addr,
        "shipment_address": addr, "warehouse": wh, "company": company, "reference": key2,
        "payment_term": erp.id("account.invoice.payment_term", json!([["name", "=", "Direct"]])).await,
        "lines": [["create", [{"type": "line", "product": p, "quantity": 1, "unit": 1,
                               "unit_price": {"__class__": "Decimal", "decimal": "11"}}]]]}])]).await;
    let out = tryton.write(vec![order_op(&key2, "SKU-0004", 1)]).await;
    assert!(matches!(out[0], WriteOutcome::Done { .. }), "{out:?}");
    let s = erp.sales(&key2).await;
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0]["state"], "processing",
        "the half-done sale was moved on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tryton_shipment_done_with_a_tracking_reference_reaches_the_storefront() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let (na, nb) = (format!("t{run}a"), format!("t{run}b"));
    let (a, b) = (shop(&na).await, shop(&nb).await);
    b.set_inventory("SKU-0005", "WH", 50).expect("stock");
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&e, &[(&na, &a), (&nb, &b)], dir.path()).await;
    let placed = b
        .place_order("customer1@example.com", "Customer 1", &[("SKU-0005", 3)])
        .expect("checkout");
    let reference = format!("{nb}/{}", placed.number);
    wait_until("the sale has a shipment", DEADLINE, || async {
        erp.sales(&reference)
            .await
            .first()
            .is_some_and(|s| s["shipments"].as_array().is_some_and(|x| !x.is_empty()))
    })
    .await;
    let ship = erp.sales(&reference).await[0]["shipments"][0]
        .as_i64()
        .expect("shipment");
    let tracking = format!("1Z-{run}");
    erp.call(
        "stock.shipment.out",
        "write",
        vec![json!([ship]), json!({"reference": tracking})],
    )
    .await;
    erp.call("stock.shipment.out", "assign_try", vec![json!([ship])])
        .await;
    for step in ["pick", "pack", "do"] {
        erp.call("stock.shipment.out", step, vec![json!([ship])])
            .await;
    }
    wait_until("the storefront has the fulfillment", DEADLINE, || async {
        b.fulfillments(&placed.id)
            .iter()
            .any(|f| f.tracking_number.as_deref() == Some(tracking.as_str()))
    })
    .await;
    let f = b.fulfillments(&placed.id);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].lines.len(), 1);
    assert_eq!(
        (f[0].lines[0].sku.as_str(), f[0].lines[0].quantity),
        ("SKU-0005", 3)
    );
    assert!(a.orders().is_empty(), "the other storefront got nothing");
    assert!(
        hub.unexpected_dead_letters().await.is_empty(),
        "{:?}",
        hub.unexpected_dead_letters().await
    );
    hub.stop().await;
}

fn scripts() -> Option<PathBuf> {
    std::env::var("TRYTON_DIR").ok()?;
    Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/tryton"))
}

fn script(name: &str) {
    let dir = scripts().expect("scripts");
    let st = std::process::Command::new(dir.join(name))
        .status()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    assert!(st.success(), "{name} failed: {st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tryton_unreachable_for_a_while_changes_queue_and_drain_nothing_lost() {
    let Some(e) = env() else { return };
    if scripts().is_none() {
        missing("\n!!!!! SKIPPED the Tryton outage test: TRYTON_DIR is not set (scripts/test.sh sets it)\n");
        return;
    }
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let (na, nb) = (format!("t{run}a"), format!("t{run}b"));
    let (a, b) = (shop(&na).await, shop(&nb).await);
    a.set_inventory("SKU-0001", "WH2", 100).expect("stock");
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&e, &[(&na, &a), (&nb, &b)], dir.path()).await;
    let p1 = erp.product("SKU-0001").await;
    wait_until("the first stock poll is done", DEADLINE, || async {
        available(&a, "SKU-0001", "WH").is_some()
    })
    .await;

    // A stock change just before the outage, then Tryton goes away.
    let target = 300 + (run.len() as i64);
    erp.inventory(p1, "WH", target).await;
    script("stop.sh");
    let down_at = Instant::now();
    // Orders placed while the ERP is down queue up.
    let mut refs = Vec::new();
    for _ in 0..3 {
        let o = a
            .place_order("customer1@example.com", "Customer 1", &[("SKU-0001", 1)])
            .expect("checkout");
        refs.push(format!("{na}/{}", o.number));
    }
    wait_until(
        "deliveries to the ERP fail while it is down",
        DEADLINE,
        || async {
            hub.engine
                .endpoint_health()
                .iter()
                .any(|h| h.endpoint == "erp" && h.last_error.is_some())
        },
    )
    .await;
    wait_until(
        "a stock poll fails while it is down (cursor kept)",
        DEADLINE,
        || async { hub.engine.stats(None).poll_errors > 0 },
    )
    .await;
    assert!(
        !hub.engine.is_drained().await.unwrap_or(true),
        "orders wait in the queue"
    );
    script("start.sh");
    println!("Tryton was down for {:?}", down_at.elapsed());

    for r in &refs {
        wait_until("every queued order is a sale", DEADLINE, || async {
            erp.sales(r).await.len() == 1
        })
        .await;
    }
    // Tryton's figure is re-read on every check: the queued sales' moves (and anything Tryton
    // does with them after the restart) may still change it while the hub catches up. What must
    // hold is that both storefronts converge on what Tryton says.
    wait_until(
        "the stock change made before the outage arrived",
        DEADLINE,
        || async {
            let expect = tryton_available(&erp, "SKU-0001", "WH").await;
            let seen = (
                available(&a, "SKU-0001", "WH"),
                available(&b, "SKU-0001", "WH"),
            );
            if seen != (Some(expect), Some(expect)) {
                eprintln!("outage: Tryton says {expect}, storefronts show {seen:?}");
            }
            seen == (Some(expect), Some(expect))
        },
    )
    .await;
    // A change after the restart flows too.
    erp.inventory(p1, "WH", target + 5).await;
    wait_until("a change after the restart arrives", DEADLINE, || async {
        let expect = tryton_available(&erp, "SKU-0001", "WH").await;
        available(&b, "SKU-0001", "WH") == Some(expect)
    })
    .await;
    wait_until("everything drained", DEADLINE, || async {
        hub.engine.is_drained().await.unwrap_or(false)
    })
    .await;
    for r in &refs {
        assert_eq!(erp.sales(r).await.len(), 1, "{r}: exactly one sale");
    }
    assert!(
        hub.unexpected_dead_letters().await.is_empty(),
        "{:?}",
        hub.unexpected_dead_letters().await
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tryton_data_is_dead_lettered_with_a_reason_and_blocks_nothing() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let (na, nb) = (format!("t{run}a"), format!("t{run}b"));
    let (a, b) = (shop(&na).await, shop(&nb).await);
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&e, &[(&na, &a), (&nb, &b)], dir.path()).await;
    wait_until("the first stock poll is done", DEADLINE, || async {
        available(&a, "SKU-0002", "WH").is_some()
    })
    .await;

    // A product without a code, with stock; a product whose quantity goes negative (more
    // shipped from WH than it ever had); and in between, a good change.
    let nocode = erp.new_product(None, &format!("No code {run}")).await;
    erp.inventory(nocode, "WH", 4).await;
    let neg_sku = format!("NEG-{run}");
    let neg = erp.new_product(Some(&neg_sku), "Negative").await;
    // Tryton refuses a negative inventory line, but a forced internal shipment (a warehouse
    // worker overriding the availability check) takes WH below zero.
    let company = erp.company().await;
    let (from, to) = (erp.storage("WH").await, erp.storage("WH2").await);
    let ship = erp
        .call(
            "stock.shipment.internal",
            "create",
            vec![
                json!([{"from_location": from, "to_location": to, "company": company,
               "moves": [["create", [{"product": neg, "quantity": 2, "unit": 1,
                  "from_location": from, "to_location": to, "company": company}]]]}]),
            ],
        )
        .await;
    for step in ["wait", "assign_force", "pack", "ship", "do"] {
        erp.call("stock.shipment.internal", step, vec![ship.clone()])
            .await;
    }
    let p2 = erp.product("SKU-0002").await;
    erp.inventory(p2, "WH", 150 + (run.len() as i64)).await;
    let expect = tryton_available(&erp, "SKU-0002", "WH").await;

    wait_until(
        "the good change reached both storefronts",
        DEADLINE,
        || async {
            available(&a, "SKU-0002", "WH") == Some(expect)
                && available(&b, "SKU-0002", "WH") == Some(expect)
        },
    )
    .await;
    let nocode_key = format!("product#{nocode}@WH");
    let neg_key = format!("{neg_sku}@WH");
    wait_until("both bad records are dead letters", DEADLINE, || async {
        let dl = hub.dead_letters().await;
        dl.iter().any(|d| d.key == nocode_key) && dl.iter().any(|d| d.key == neg_key)
    })
    .await;
    for d in hub.dead_letters().await {
        println!("dead letter {} {}: {}", d.kind, d.key, d.reason);
        if d.key == nocode_key {
            assert!(d.reason.contains("sku"), "{}", d.reason);
        }
        if d.key == neg_key {
            assert!(d.reason.contains("on_hand"), "{}", d.reason);
        }
    }
    // A poll may have caught the product between the shipment's steps (a valid 0); the negative
    // figure itself stopped at the dead-letter queue with its payload.
    assert!(matches!(available(&a, &neg_sku, "WH"), None | Some(0)));
    let dl = hub.dead_letters().await;
    let bad = dl.iter().find(|d| d.key == neg_key).expect("dead letter");
    assert_eq!(bad.payload["on_hand"], -2, "{}", bad.payload);
    // The cursor moved past them: a later change still flows.
    erp.inventory(p2, "WH", 160 + (run.len() as i64)).await;
    let expect = tryton_available(&erp, "SKU-0002", "WH").await;
    wait_until("a later change flows", DEADLINE, || async {
        available(&b, "SKU-0002", "WH") == Some(expect)
    })
    .await;
    hub.stop().await;
}

/// A price list made in Tryton over JSON-RPC — a fixed price and a quantity break for one
/// product, assigned to the seeded customer — becomes the customer's canonical price with its
/// tier; a list whose formula Concord does not evaluate is dead-lettered with the formula named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tryton_price_list_becomes_the_customers_price_with_tiers_and_bad_formulas_dead_letter() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let na = format!("t{run}a");
    let a = shop(&na).await;
    let dir = tempfile::tempdir().expect("tmp");
    let flow = format!(
        "\n[[flows]]\nname = \"prices\"\nkind = \"price\"\npattern = \"broadcast\"\n\
         mode = \"delta\"\ninterval = \"{POLL}\"\nfrom = [\"erp\"]\nto = [\"{na}\"]\n"
    );
    let hub = Hub::start_with(&e, &[(&na, &a)], dir.path(), &flow).await;

    // A seeded product (its list price is set for the company); its list price in cents.
    let sku = "SKU-0001".to_string();
    let product = erp.product(&sku).await;
    let row = erp
        .find(
            "product.product",
            json!([["id", "=", product]]),
            &["list_price_used"],
        )
        .await;
    let list_minor = concord_connectors::tryton::mapping::money_minor(&row[0]["list_price_used"])
        .expect("seeded list price");
    // Lines apply first-match in sequence order: from 10 units 20 % off, else a fixed 0.95.
    let gold = format!("Gold {run}");
    let list = erp
        .call(
            "product.price_list",
            "create",
            vec![json!([{"name": gold, "price": "list_price",
               "lines": [["create", [
                   {"sequence": 1, "product": product, "quantity": 10.0, "formula": "unit_price * 0.8"},
                   {"sequence": 2, "product": product, "quantity": 0.0, "formula": "Decimal('0.95')"}
               ]]]}])],
        )
        .await;
    let list_id = list[0].as_i64().expect("price list id");
    let customer = erp
        .id("party.party", json!([["name", "=", "Customer 1"]]))
        .await;
    erp.call(
        "party.party",
        "write",
        vec![json!([customer]), json!({"sale_price_list": list_id})],
    )
    .await;
    let key = format!("{gold}:{sku}");
    wait_until(
        "the customer's price list is an entity",
        DEADLINE,
        || async {
            hub.store
                .entity(Kind::Price, &key)
                .await
                .expect("entity")
                .is_some_and(|en| en.state["customer"] == "customer1@example.com")
        },
    )
    .await;
    let price = hub
        .store
        .entity(Kind::Price, &key)
        .await
        .expect("entity")
        .expect("price");
    println!("price {key}: {}", price.state);
    assert_eq!(price.state["amount_minor"], 95, "{}", price.state);
    assert_eq!(
        price.state["tiers"],
        json!([{"min_quantity": 10, "amount_minor": list_minor * 8 / 10}]),
        "{}",
        price.state
    );
    assert_eq!(price.state["list"], gold.as_str());

    // An unsupported formula: dead-lettered, its reason naming the formula.
    let bad = format!("Bad {run}");
    erp.call(
        "product.price_list",
        "create",
        vec![json!([{"name": bad, "price": "list_price",
           "lines": [["create", [{"product": product, "formula": "cost_price * 1.2"}]]]}])],
    )
    .await;
    let named = |d: &concord_store::DeadLetter| d.reason.contains(&format!("`{bad}`"));
    wait_until("the bad list is a dead letter", DEADLINE, || async {
        hub.dead_letters().await.iter().any(named)
    })
    .await;
    let dl = hub.dead_letters().await;
    let d = dl.iter().find(|d| named(d)).expect("dead letter");
    println!("dead letter {}: {}", d.key, d.reason);
    assert!(d.reason.contains("cost_price * 1.2"), "{}", d.reason);
    assert!(d.reason.contains("amount_minor"), "{}", d.reason);

    // A later change of the good list's line re-emits its prices (changed-since by write_date).
    let line = erp
        .id(
            "product.price_list.line",
            json!([["price_list", "=", list_id], ["sequence", "=", 2]]),
        )
        .await;
    erp.call(
        "product.price_list.line",
        "write",
        vec![json!([line]), json!({"formula": "unit_price - 0.1"})],
    )
    .await;
    wait_until("the changed line is re-read", DEADLINE, || async {
        hub.store
            .entity(Kind::Price, &key)
            .await
            .expect("entity")
            .is_some_and(|en| en.state["amount_minor"] == list_minor - 10)
    })
    .await;
    // Leave the seeded customer without a list for the next run.
    erp.call(
        "party.party",
        "write",
        vec![json!([customer]), json!({"sale_price_list": null})],
    )
    .await;
    hub.stop().await;
}

// ---- Issue 6: the order lifecycle on a real Tryton sale, through the connector directly ----

/// An order op of `op` for `key` with `(sku, quantity)` lines at 11.00 and a shipping address.
fn lifecycle_op(op: &str, key: &str, lines: &[(&str, i64)], street: &str) -> WriteOp {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(s, q)| json!({"sku": s, "quantity": q, "unit_price_minor": 1100}))
        .collect();
    WriteOp {
        item_id: 1,
        kind: Kind::Order,
        key: key.into(),
        op: op.into(),
        payload: json!({"number": key.rsplit('/').next().unwrap_or(key), "currency": "USD",
                        "customer": {"email": "customer1@example.com", "name": "Customer 1"},
                        "shipping_address": {"line1": street, "city": "Springfield",
                                             "postal_code": "12345", "country": "US"},
                        "lines": lines}),
        external_id: None,
        refs: BTreeMap::new(),
    }
}

fn done_id(out: &[WriteOutcome]) -> i64 {
    match &out[0] {
        WriteOutcome::Done {
            external_id: Some(id),
            ..
        } => id.parse().expect("numeric id"),
        other => panic!("expected Done, got {other:?}"),
    }
}

fn permanent_reason(out: &[WriteOutcome]) -> String {
    match &out[0] {
        WriteOutcome::Failed(e) if e.is_permanent() => e.to_string(),
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

impl Erp {
    /// (SKU, quantity) of a sale's lines, sorted.
    async fn sale_lines(&self, sale: i64) -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = self
            .find(
                "sale.line",
                json!([["sale", "=", sale], ["type", "=", "line"]]),
                &["product.code", "quantity"],
            )
            .await
            .iter()
            .map(|l| {
                (
                    l["product."]["code"].as_str().unwrap_or("").to_string(),
                    l["quantity"].as_f64().unwrap_or(0.0) as i64,
                )
            })
            .collect();
        v.sort();
        v
    }

    async fn sale(&self, sale: i64, fields: &[&str]) -> Value {
        self.call("sale.sale", "read", vec![json!([sale]), json!(fields)])
            .await[0]
            .clone()
    }

    /// (SKU, quantity) of the open (not cancelled) outgoing moves of a sale's shipments.
    async fn shipment_moves(&self, sale: i64) -> Vec<(String, i64)> {
        let s = self.sale(sale, &["shipments"]).await;
        let mut v: Vec<(String, i64)> = self
            .find(
                "stock.move",
                json!([
                    [
                        "shipment",
                        "in",
                        s["shipments"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .iter()
                            .map(|i| format!("stock.shipment.out,{i}"))
                            .collect::<Vec<_>>()
                    ],
                    ["to_location.type", "=", "customer"],
                    ["state", "!=", "cancelled"]
                ]),
                &["product.code", "quantity"],
            )
            .await
            .iter()
            .map(|l| {
                (
                    l["product."]["code"].as_str().unwrap_or("").to_string(),
                    l["quantity"].as_f64().unwrap_or(0.0) as i64,
                )
            })
            .filter(|(_, q)| *q > 0)
            .collect();
        v.sort();
        v
    }

    async fn street_of_address(&self, id: &Value) -> String {
        self.find("party.address", json!([["id", "=", id]]), &["street"])
            .await[0]["street"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

fn quote_spec(e: &Env) -> EndpointSpec {
    let mut s = tryton_spec(e);
    s.options["sale_flow"] = json!("quote");
    s
}

/// Edits: a quotation is taken back to draft, rewritten (lines added/removed/changed, the
/// address) and quoted again; a processing sale is amended through `sale_amendment` (its
/// waiting shipment follows), a replayed edit makes no second amendment, an edit adding a SKU
/// with no line to reuse answers `CannotAmend` with the reason (the engine's `[orders] edits`
/// takes over), and nothing is amended once goods are picked (permanent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tryton_sales_are_amended_before_shipment_and_refused_after() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();

    // A quotation (sale_flow = quote): rewritten in place.
    let quoting = concord_connectors::build(&quote_spec(&e)).expect("build");
    let key = format!("t{run}a/amend-q");
    let sale = done_id(
        &quoting
            .write(vec![lifecycle_op(
                "create",
                &key,
                &[("SKU-0001", 2), ("SKU-0002", 1)],
                "1 Main Street",
            )])
            .await,
    );
    let edit = lifecycle_op(
        "amend",
        &key,
        &[("SKU-0001", 5), ("SKU-0003", 1)],
        &format!("{run} Elm Road"),
    );
    assert_eq!(done_id(&quoting.write(vec![edit.clone()]).await), sale);
    assert_eq!(
        erp.sale_lines(sale).await,
        vec![("SKU-0001".into(), 5), ("SKU-0003".into(), 1)]
    );
    let s = erp.sale(sale, &["state", "shipment_address"]).await;
    assert_eq!(s["state"], "quotation");
    assert_eq!(
        erp.street_of_address(&s["shipment_address"]).await,
        format!("{run} Elm Road")
    );
    assert_eq!(erp.sales(&key).await.len(), 1, "still one sale");

    // A processing sale (sale_flow = confirm): amended.
    let tryton = concord_connectors::build(&tryton_spec(&e)).expect("build");
    let key = format!("t{run}a/amend-p");
    let sale = done_id(
        &tryton
            .write(vec![lifecycle_op(
                "create",
                &key,
                &[("SKU-0001", 2), ("SKU-0002", 3)],
                "1 Main Street",
            )])
            .await,
    );
    assert_eq!(erp.sale(sale, &["state"]).await["state"], "processing");
    let edit = lifecycle_op(
        "amend",
        &key,
        &[("SKU-0001", 4)],
        &format!("{run} Oak Avenue"),
    );
    assert_eq!(done_id(&tryton.write(vec![edit.clone()]).await), sale);
    let s = erp
        .sale(
            sale,
            &["state", "revision", "shipment_address", "total_amount"],
        )
        .await;
    assert_eq!(s["state"], "processing");
    assert_eq!(s["revision"], 1, "one amendment: {s}");
    assert_eq!(
        erp.sale_lines(sale).await,
        vec![("SKU-0001".into(), 4), ("SKU-0002".into(), 0)]
    );
    assert_eq!(
        erp.shipment_moves(sale).await,
        vec![("SKU-0001".into(), 4)],
        "the waiting shipment follows the amendment"
    );
    assert_eq!(
        erp.street_of_address(&s["shipment_address"]).await,
        format!("{run} Oak Avenue")
    );
    assert_eq!(s["total_amount"]["decimal"], "44.00");
    // Replayed: no second amendment.
    assert_eq!(done_id(&tryton.write(vec![edit]).await), sale);
    assert_eq!(erp.sale(sale, &["revision"]).await["revision"], 1);
    // Adding a SKU to a processing sale: it takes over the line the first edit zeroed (an
    // amendment can change a line's product)...
    let add = lifecycle_op(
        "amend",
        &key,
        &[("SKU-0001", 4), ("SKU-0005", 1)],
        &format!("{run} Oak Avenue"),
    );
    assert_eq!(done_id(&tryton.write(vec![add]).await), sale);
    assert_eq!(erp.sale(sale, &["revision"]).await["revision"], 2);
    assert_eq!(
        erp.sale_lines(sale).await,
        vec![("SKU-0001".into(), 4), ("SKU-0005".into(), 1)]
    );
    assert_eq!(
        erp.shipment_moves(sale).await,
        vec![("SKU-0001".into(), 4), ("SKU-0005".into(), 1)]
    );
    // ... but with no line left to take over: "cannot amend", naming the SKU (the sale could
    // still be cancelled, so the engine's `[orders] edits` takes over).
    let add = lifecycle_op(
        "amend",
        &key,
        &[("SKU-0001", 4), ("SKU-0005", 1), ("SKU-0003", 1)],
        &format!("{run} Oak Avenue"),
    );
    let reason = match &tryton.write(vec![add]).await[0] {
        WriteOutcome::CannotAmend { reason } => reason.clone(),
        other => panic!("expected CannotAmend, got {other:?}"),
    };
    assert!(reason.contains("SKU-0003"), "{reason}");
    assert_eq!(erp.sale(sale, &["revision"]).await["revision"], 2);
    // Once goods are picked: refused.
    let ship = erp.sale(sale, &["shipments"]).await["shipments"][0]
        .as_i64()
        .expect("shipment");
    erp.call("stock.shipment.out", "assign_try", vec![json!([ship])])
        .await;
    erp.call("stock.shipment.out", "pick", vec![json!([ship])])
        .await;
    let late = lifecycle_op("amend", &key, &[("SKU-0001", 1)], "1 Main Street");
    let reason = permanent_reason(&tryton.write(vec![late]).await);
    assert!(reason.contains("after shipment"), "{reason}");
    assert_eq!(erp.sale(sale, &["revision"]).await["revision"], 2);
    // Ship it: picked goods left in the output location would skew other tests' figures.
    for step in ["pack", "do"] {
        erp.call("stock.shipment.out", step, vec![json!([ship])])
            .await;
    }
}

/// After cancel-and-replace the replacement sale's reference is `{key}~2`: read back it is the
/// same canonical order `key` (its reference kept in the record) — not a new order `{key}~2` —
/// and its shipment and invoice name order `key`, so the hub keys them `key:…`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_sale_reads_back_as_its_canonical_order() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let run = run_id();
    let tryton = concord_connectors::build(&tryton_spec(&e)).expect("build");
    let channel = format!("t{run}a");
    let key = format!("{channel}/replaced");
    let replacement = format!("{key}~2");
    let mut create = lifecycle_op("create", &key, &[("SKU-0002", 1)], "1 Main Street");
    create.payload["reference"] = json!(replacement);
    let sale = done_id(&tryton.write(vec![create]).await);
    // The accountant posts its invoice (draft invoices are not read).
    let erp = Erp::new(&e);
    let invoices = erp.sale(sale, &["invoices"]).await["invoices"].clone();
    erp.call("account.invoice", "post", vec![invoices]).await;
    let read = |kind| {
        let tryton = tryton.clone();
        async move {
            tryton
                .read_changes(ReadRequest {
                    kind,
                    cursor: None,
                    limit: 10_000,
                    overlap: Duration::ZERO,
                })
                .await
                .expect("read")
                .records
        }
    };
    let orders = read(Kind::Order).await;
    let order = orders
        .iter()
        .find(|c| c.external_id == sale.to_string())
        .expect("the sale is read");
    let record = concord_core::validate(Kind::Order, &order.record).expect("canonical");
    assert_eq!(
        concord_core::natural_key(Kind::Order, &record, "erp").expect("key"),
        key,
        "{record}"
    );
    assert_eq!(record["reference"], json!(replacement));
    // Its waiting shipment and its posted invoice name order `key`.
    for kind in [Kind::Shipment, Kind::Invoice] {
        let mine: Vec<String> = read(kind)
            .await
            .iter()
            .filter_map(|c| c.record["order"].as_str())
            .filter(|o| o.starts_with(&channel))
            .map(str::to_string)
            .collect();
        assert_eq!(mine, [key.as_str()], "{kind}");
    }
}

/// Cancellation after acceptance: a processing sale (shipment waiting, draft invoice) is
/// cancelled — shipment and invoice cancelled, Tryton ends the sale with nothing shipped or
/// invoiced, and the connector reads it back as `cancelled`; a replay is a no-op; a sale whose
/// goods are picked is refused with the reason. A replacement reference (`payload.reference`)
/// is honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processing_tryton_sale_is_cancelled_and_reads_back_cancelled() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let tryton = concord_connectors::build(&tryton_spec(&e)).expect("build");
    let key = format!("t{run}a/cancel");
    // Created under a replacement reference (cancel-and-replace's `{key}~2`).
    let mut create = lifecycle_op("create", &key, &[("SKU-0002", 2)], "1 Main Street");
    create.payload["reference"] = json!(format!("{key}~2"));
    let sale = done_id(&tryton.write(vec![create.clone()]).await);
    assert!(erp.sales(&key).await.is_empty(), "keyed by the reference");
    let s = erp.sale(sale, &["state", "shipments", "invoices"]).await;
    assert_eq!(s["state"], "processing");
    let mut cancel = create.clone();
    cancel.op = "cancel".into();
    assert_eq!(done_id(&tryton.write(vec![cancel.clone()]).await), sale);
    let s = erp
        .sale(
            sale,
            &[
                "state",
                "shipment_state",
                "invoice_state",
                "shipments",
                "invoices",
            ],
        )
        .await;
    assert_eq!(
        (&s["state"], &s["shipment_state"], &s["invoice_state"]),
        (&json!("done"), &json!("none"), &json!("none")),
        "{s}"
    );
    for sh in erp
        .find(
            "stock.shipment.out",
            json!([["id", "in", s["shipments"]]]),
            &["state"],
        )
        .await
    {
        assert_eq!(sh["state"], "cancelled");
    }
    for inv in erp
        .find(
            "account.invoice",
            json!([["id", "in", s["invoices"]]]),
            &["state"],
        )
        .await
    {
        assert_eq!(inv["state"], "cancelled");
    }
    // Read back as cancelled.
    let page = tryton
        .read_changes(ReadRequest {
            kind: Kind::Order,
            cursor: None,
            limit: 10_000,
            overlap: Duration::ZERO,
        })
        .await
        .expect("orders");
    let order = page
        .records
        .iter()
        .find(|c| c.external_id == sale.to_string())
        .expect("the sale is read");
    assert_eq!(order.record["status"], "cancelled", "{}", order.record);
    // Replayed: still done.
    assert_eq!(done_id(&tryton.write(vec![cancel]).await), sale);

    // Goods picked: refused.
    let key = format!("t{run}a/cancel-late");
    let create = lifecycle_op("create", &key, &[("SKU-0002", 1)], "1 Main Street");
    let sale = done_id(&tryton.write(vec![create.clone()]).await);
    let ship = erp.sale(sale, &["shipments"]).await["shipments"][0]
        .as_i64()
        .expect("shipment");
    erp.call("stock.shipment.out", "assign_try", vec![json!([ship])])
        .await;
    erp.call("stock.shipment.out", "pick", vec![json!([ship])])
        .await;
    let mut cancel = create;
    cancel.op = "cancel".into();
    let reason = permanent_reason(&tryton.write(vec![cancel]).await);
    assert!(reason.contains("picked or shipped"), "{reason}");
    assert_eq!(erp.sale(sale, &["state"]).await["state"], "processing");
    // Ship it: picked goods left in the output location would skew other tests' figures.
    for step in ["pack", "do"] {
        erp.call("stock.shipment.out", step, vec![json!([ship])])
            .await;
    }
}

fn refund_op(id: &str, order: &str, amount: i64, lines: &[(&str, i64)], restock: bool) -> WriteOp {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(s, q)| json!({"sku": s, "quantity": q}))
        .collect();
    WriteOp {
        item_id: 1,
        kind: Kind::Refund,
        key: id.into(),
        op: "create".into(),
        payload: json!({"id": id, "order": order, "amount_minor": amount, "currency": "USD",
                        "lines": lines, "restock": restock}),
        external_id: None,
        refs: BTreeMap::new(),
    }
}

/// Refunds: a partial refund by lines becomes one posted credit note for exactly those lines
/// at the order's prices (delivered twice: still one); a refund by amount, a credit note of
/// that amount; a restocking refund, a return sale whose credit note is posted and whose return
/// shipment puts the stock back only when Tryton receives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tryton_refunds_become_one_credit_note_each_and_restock_only_when_received() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let tryton = concord_connectors::build(&tryton_spec(&e)).expect("build");
    let key = format!("t{run}a/refund");
    let sale = done_id(
        &tryton
            .write(vec![lifecycle_op(
                "create",
                &key,
                &[("SKU-0001", 2), ("SKU-0002", 3)],
                "1 Main Street",
            )])
            .await,
    );
    // The accountant posts the sale's invoice.
    let invoices = erp.sale(sale, &["invoices"]).await["invoices"].clone();
    erp.call("account.invoice", "post", vec![invoices]).await;

    let notes = |id: String| {
        let (erp, marker) = (&erp, refund_reference(&key, &id));
        async move {
            erp.find(
                "account.invoice",
                json!([["reference", "=", marker], ["type", "=", "out"]]),
                &["state", "total_amount", "lines"],
            )
            .await
        }
    };
    // By lines, delivered twice.
    let r1 = format!("{key}/r1");
    let op = refund_op(&r1, &key, 1100, &[("SKU-0001", 1)], false);
    let a = done_id(&tryton.write(vec![op.clone()]).await);
    let b = done_id(&tryton.write(vec![op]).await);
    assert_eq!(a, b, "the same credit note");
    let n = notes(r1.clone()).await;
    assert_eq!(n.len(), 1, "one credit note: {n:?}");
    assert_eq!(n[0]["state"], "posted");
    assert_eq!(n[0]["total_amount"]["decimal"], "-11.00");
    let lines = erp
        .find(
            "account.invoice.line",
            json!([["invoice", "=", a]]),
            &["product.code", "quantity", "unit_price"],
        )
        .await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["product."]["code"], "SKU-0001");
    assert_eq!(lines[0]["quantity"], -1.0);

    // By amount.
    let r2 = format!("{key}/r2");
    done_id(
        &tryton
            .write(vec![refund_op(&r2, &key, 250, &[], false)])
            .await,
    );
    let n = notes(r2).await;
    assert_eq!(n.len(), 1);
    assert_eq!(n[0]["total_amount"]["decimal"], "-2.50");
    assert_eq!(n[0]["state"], "posted");

    // More than sold: refused, naming the line.
    let reason = permanent_reason(
        &tryton
            .write(vec![refund_op(
                &format!("{key}/r9"),
                &key,
                0,
                &[("SKU-0002", 9)],
                false,
            )])
            .await,
    );
    assert!(reason.contains("SKU-0002"), "{reason}");

    // Restock: a return sale, its credit note, and a return shipment.
    let before = tryton_available(&erp, "SKU-0002", "WH").await;
    let r3 = format!("{key}/r3");
    let op = refund_op(&r3, &key, 2200, &[("SKU-0002", 2)], true);
    let ret = done_id(&tryton.write(vec![op.clone()]).await);
    assert_eq!(
        done_id(&tryton.write(vec![op]).await),
        ret,
        "replayed: same return"
    );
    assert_eq!(erp.sales(&refund_reference(&key, &r3)).await.len(), 1);
    let n = notes(r3).await;
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(n[0]["total_amount"]["decimal"], "-22.00", "2 × 11.00");
    assert_eq!(n[0]["state"], "posted");
    let returns = erp.sale(ret, &["shipment_returns"]).await["shipment_returns"].clone();
    let rs = erp
        .find(
            "stock.shipment.out.return",
            json!([["id", "in", returns]]),
            &["state", "incoming_moves"],
        )
        .await;
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0]["state"], "draft");
    assert_eq!(
        tryton_available(&erp, "SKU-0002", "WH").await,
        before,
        "nothing back before Tryton receives it"
    );
    let rid = rs[0]["id"].as_i64().expect("id");
    erp.call("stock.shipment.out.return", "receive", vec![json!([rid])])
        .await;
    assert_eq!(tryton_available(&erp, "SKU-0002", "WH").await, before + 2);
    // Put away (input → storage), so nothing lingers in the input location for other tests.
    erp.call("stock.shipment.out.return", "do", vec![json!([rid])])
        .await;
    assert_eq!(tryton_available(&erp, "SKU-0002", "WH").await, before + 2);
    // The return sale is not read as an order.
    let page = tryton
        .read_changes(ReadRequest {
            kind: Kind::Order,
            cursor: None,
            limit: 10_000,
            overlap: Duration::ZERO,
        })
        .await
        .expect("orders");
    assert!(page
        .records
        .iter()
        .all(|c| c.external_id != ret.to_string()));

    // An order cancelled and replaced (`{key}~2`): its refund credits the replacement's invoice.
    let key2 = format!("{key}-replaced");
    let first = lifecycle_op("create", &key2, &[("SKU-0003", 1)], "1 Main Street");
    tryton.write(vec![first.clone()]).await;
    let mut cancel = first;
    cancel.op = "cancel".into();
    done_id(&tryton.write(vec![cancel]).await);
    let mut replacement = lifecycle_op("create", &key2, &[("SKU-0003", 2)], "1 Main Street");
    replacement.payload["reference"] = json!(format!("{key2}~2"));
    let sale2 = done_id(&tryton.write(vec![replacement]).await);
    let invoices = erp.sale(sale2, &["invoices"]).await["invoices"].clone();
    erp.call("account.invoice", "post", vec![invoices.clone()])
        .await;
    let note = done_id(
        &tryton
            .write(vec![refund_op(
                &format!("{key2}/r1"),
                &key2,
                1100,
                &[("SKU-0003", 2)],
                false,
            )])
            .await,
    );
    let credited = erp
        .find(
            "account.invoice.line",
            json!([["invoice", "=", note]]),
            &["origin"],
        )
        .await;
    let lines2 = erp
        .find(
            "account.invoice.line",
            json!([["invoice", "in", invoices]]),
            &["id"],
        )
        .await;
    assert_eq!(
        credited[0]["origin"],
        json!(format!("account.invoice.line,{}", lines2[0]["id"])),
        "the replacement's invoice line is credited"
    );
}

/// Split shipments: a storefront order of two lines whose first Tryton shipment leaves with
/// only one of them (the warehouse picks nothing of the other; Tryton puts the rest on a new
/// shipment) — two Tryton shipments, two tracking references, two fulfillments at the
/// storefront, each with its own line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_shipped_in_two_tryton_shipments_is_two_fulfillments_at_the_storefront() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let na = format!("t{run}a");
    let a = shop(&na).await;
    a.set_inventory("SKU-0003", "WH", 50).expect("stock");
    a.set_inventory("SKU-0004", "WH", 50).expect("stock");
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&e, &[(&na, &a)], dir.path()).await;
    let placed = a
        .place_order(
            "customer1@example.com",
            "Customer 1",
            &[("SKU-0003", 1), ("SKU-0004", 2)],
        )
        .expect("checkout");
    let reference = format!("{na}/{}", placed.number);
    wait_until("the sale has a shipment", DEADLINE, || async {
        erp.sales(&reference)
            .await
            .first()
            .is_some_and(|s| s["shipments"].as_array().is_some_and(|x| !x.is_empty()))
    })
    .await;
    let sale = erp.sales(&reference).await[0]["id"].as_i64().expect("sale");
    let first = erp.sale(sale, &["shipments"]).await["shipments"][0]
        .as_i64()
        .expect("shipment");
    // The warehouse picks only SKU-0003: the SKU-0004 inventory move is zeroed.
    let inv = erp
        .find(
            "stock.move",
            json!([
                ["shipment", "=", format!("stock.shipment.out,{first}")],
                ["product.code", "=", "SKU-0004"],
                ["to_location.type", "!=", "customer"]
            ]),
            &["id"],
        )
        .await;
    assert_eq!(inv.len(), 1, "{inv:?}");
    erp.call(
        "stock.move",
        "write",
        vec![json!([inv[0]["id"]]), json!({"quantity": 0})],
    )
    .await;
    let (t1, t2) = (format!("1Z-{run}-1"), format!("1Z-{run}-2"));
    let ship = |id: i64, tracking: String| {
        let erp = &erp;
        async move {
            erp.call(
                "stock.shipment.out",
                "write",
                vec![json!([id]), json!({"reference": tracking})],
            )
            .await;
            erp.call("stock.shipment.out", "assign_try", vec![json!([id])])
                .await;
            for step in ["pick", "pack", "do"] {
                erp.call("stock.shipment.out", step, vec![json!([id])])
                    .await;
            }
        }
    };
    ship(first, t1.clone()).await;
    // Tryton made a second shipment for what the first did not carry.
    let shipments = erp.sale(sale, &["shipments", "shipment_state"]).await;
    assert_eq!(
        shipments["shipment_state"], "partially shipped",
        "{shipments}"
    );
    let second = shipments["shipments"]
        .as_array()
        .expect("shipments")
        .iter()
        .filter_map(Value::as_i64)
        .find(|s| *s != first)
        .expect("a second shipment");
    wait_until(
        "the first fulfillment is at the storefront",
        DEADLINE,
        || async {
            a.fulfillments(&placed.id)
                .iter()
                .any(|f| f.tracking_number.as_deref() == Some(t1.as_str()))
        },
    )
    .await;
    ship(second, t2.clone()).await;
    wait_until(
        "the second fulfillment is at the storefront",
        DEADLINE,
        || async {
            a.fulfillments(&placed.id)
                .iter()
                .any(|f| f.tracking_number.as_deref() == Some(t2.as_str()))
        },
    )
    .await;
    let f = a.fulfillments(&placed.id);
    assert_eq!(f.len(), 2, "{f:?}");
    let lines_of = |t: &str| -> Vec<(String, i64)> {
        f.iter()
            .find(|x| x.tracking_number.as_deref() == Some(t))
            .map(|x| {
                x.lines
                    .iter()
                    .map(|l| (l.sku.clone(), l.quantity))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(lines_of(&t1), vec![("SKU-0003".to_string(), 1)]);
    assert_eq!(lines_of(&t2), vec![("SKU-0004".to_string(), 2)]);
    assert_eq!(
        erp.sale(sale, &["shipment_state"]).await["shipment_state"],
        "sent"
    );
    assert!(
        hub.unexpected_dead_letters().await.is_empty(),
        "{:?}",
        hub.unexpected_dead_letters().await
    );
    hub.stop().await;
}

// ---- Issue 6 through the engine: a sandbox storefront as the channel, Tryton as the ERP ----

/// The lifecycle flows on top of the common config: refunds from the storefront to Tryton and
/// the edit policy for destinations that cannot amend (Tryton can).
fn lifecycle_flows(shop: &str) -> String {
    format!(
        "\n[[flows]]\nname = \"refunds\"\nkind = \"refund\"\npattern = \"aggregation\"\n\
         mode = \"delta\"\ninterval = \"200ms\"\nfrom = [\"{shop}\"]\nto = [\"erp\"]\n\
         \n[orders]\nedits = \"cancel_and_replace\"\n"
    )
}

/// A placed storefront order as a processing Tryton sale: (order, reference, sale id).
async fn placed_sale(
    erp: &Erp,
    a: &ShopHandle,
    shop: &str,
    lines: &[(&str, i64)],
) -> (Placed, String, i64) {
    let placed = a
        .place_order("customer1@example.com", "Customer 1", lines)
        .expect("checkout");
    let reference = format!("{shop}/{}", placed.number);
    wait_until(
        "the order is a processing sale in Tryton",
        DEADLINE,
        || async {
            erp.sales(&reference)
                .await
                .iter()
                .any(|s| s["state"] == "processing")
        },
    )
    .await;
    let sale = erp.sales(&reference).await[0]["id"].as_i64().expect("id");
    let prices = a
        .order(&placed.id)
        .expect("the storefront's order")
        .lines
        .iter()
        .map(|l| (l.sku.clone(), l.unit_price_minor))
        .collect();
    let placed = Placed {
        id: placed.id,
        prices,
    };
    (placed, reference, sale)
}

/// What the tests keep of a storefront order: its id and unit price per SKU.
struct Placed {
    id: String,
    prices: BTreeMap<String, i64>,
}

/// An edit before shipment at the storefront (a quantity changed, a line removed, a new
/// address) reaches Tryton as an amendment of the processing sale: same sale, new revision,
/// its waiting shipment following the new quantities; a second edit adding a SKU amends it
/// again (the added SKU takes over the emptied line); a third adding a SKU with no line left to
/// take over cannot be an amendment (Tryton answers "cannot amend"), so under
/// `[orders] edits = "cancel_and_replace"` the sale is cancelled and replaced by `{key}~2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storefront_edit_before_shipment_amends_the_tryton_sale() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let na = format!("t{run}a");
    let a = shop(&na).await;
    for sku in ["SKU-0001", "SKU-0002", "SKU-0005"] {
        a.set_inventory(sku, "WH", 50).expect("stock");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start_with(&e, &[(&na, &a)], dir.path(), &lifecycle_flows(&na)).await;
    let (placed, reference, sale) =
        placed_sale(&erp, &a, &na, &[("SKU-0001", 2), ("SKU-0002", 1)]).await;
    let street = format!("{run} Harbour Lane");
    a.edit_order(
        &placed.id,
        serde_json::from_value(json!({
            "lines": [{"sku": "SKU-0001", "quantity": 3}],
            "shipping_address": {"line1": street, "city": "Springfield",
                                 "postal_code": "12345", "country": "US"}
        }))
        .expect("edit"),
    )
    .expect("edit accepted by the storefront");
    // The amendment's shipment is rebuilt right after the sale's revision is committed.
    wait_until(
        "the sale is amended and its shipment follows",
        DEADLINE,
        || async {
            erp.sale(sale, &["revision"]).await["revision"] == 1
                && erp.shipment_moves(sale).await == vec![("SKU-0001".to_string(), 3)]
        },
    )
    .await;
    assert_eq!(
        erp.sale_lines(sale).await,
        vec![("SKU-0001".into(), 3), ("SKU-0002".into(), 0)]
    );
    assert_eq!(erp.shipment_moves(sale).await, vec![("SKU-0001".into(), 3)]);
    let s = erp.sale(sale, &["state", "shipment_address"]).await;
    assert_eq!(s["state"], "processing");
    assert_eq!(erp.street_of_address(&s["shipment_address"]).await, street);
    assert_eq!(erp.sales(&reference).await.len(), 1, "the same sale");
    assert!(
        erp.sales(&format!("{reference}~2")).await.is_empty(),
        "amended, not replaced"
    );
    // A second edit adds a SKU: it takes over the line the first edit emptied.
    a.edit_order(
        &placed.id,
        serde_json::from_value(json!({
            "lines": [{"sku": "SKU-0001", "quantity": 3}, {"sku": "SKU-0005", "quantity": 2}]
        }))
        .expect("edit"),
    )
    .expect("second edit accepted by the storefront");
    wait_until("the sale is amended again", DEADLINE, || async {
        erp.sale(sale, &["revision"]).await["revision"] == 2
            && erp.shipment_moves(sale).await
                == vec![("SKU-0001".to_string(), 3), ("SKU-0005".to_string(), 2)]
    })
    .await;
    assert_eq!(
        erp.sale_lines(sale).await,
        vec![("SKU-0001".into(), 3), ("SKU-0005".into(), 2)]
    );
    assert_eq!(erp.sales(&reference).await.len(), 1, "still the same sale");
    // A third edit adds a SKU with no emptied line left: cancel and replace.
    a.edit_order(
        &placed.id,
        serde_json::from_value(json!({
            "lines": [{"sku": "SKU-0001", "quantity": 3}, {"sku": "SKU-0005", "quantity": 2},
                      {"sku": "SKU-0002", "quantity": 1}]
        }))
        .expect("edit"),
    )
    .expect("third edit accepted by the storefront");
    let replacement = format!("{reference}~2");
    wait_until(
        "the replacement sale is processing in Tryton",
        DEADLINE,
        || async {
            erp.sales(&replacement)
                .await
                .iter()
                .any(|s| s["state"] == "processing")
        },
    )
    .await;
    let replaced = erp.sales(&replacement).await;
    assert_eq!(replaced.len(), 1, "one replacement: {replaced:?}");
    let new_sale = replaced[0]["id"].as_i64().expect("id");
    assert_eq!(
        erp.sale_lines(new_sale).await,
        vec![
            ("SKU-0001".into(), 3),
            ("SKU-0002".into(), 1),
            ("SKU-0005".into(), 2)
        ]
    );
    wait_until("the old sale is cancelled", DEADLINE, || async {
        let s = erp
            .sale(sale, &["state", "shipment_state", "invoice_state"])
            .await;
        s["state"] == "done" && s["shipment_state"] == "none" && s["invoice_state"] == "none"
    })
    .await;
    assert_eq!(
        erp.sale(sale, &["revision"]).await["revision"],
        2,
        "not amended"
    );
    wait_until("everything drained", DEADLINE, || async {
        hub.engine.is_drained().await.unwrap_or(false)
    })
    .await;
    let hist = hub
        .engine
        .order_history(&reference)
        .await
        .expect("history")
        .expect("the order");
    assert_eq!(hist.order.facts["reference"], replacement.as_str());
    assert!(
        hist.events.iter().any(|e| e.event.event == "edit"
            && e.event
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("cannot add a line")
                    && r.contains(&format!("replaced by `{replacement}`")))),
        "{:?}",
        hist.events
    );
    assert!(hist
        .attempts
        .iter()
        .any(|t| t.op == "amend" && t.outcome == "refused"));
    assert!(
        hub.unexpected_dead_letters().await.is_empty(),
        "{:?}",
        hub.unexpected_dead_letters().await
    );
    hub.stop().await;
}

/// A cancellation at the storefront after Tryton accepted the order: the processing sale's
/// shipment and draft invoice are cancelled and Tryton ends the sale with nothing shipped or
/// invoiced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storefront_cancellation_after_acceptance_cancels_the_tryton_sale() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let na = format!("t{run}a");
    let a = shop(&na).await;
    a.set_inventory("SKU-0005", "WH", 50).expect("stock");
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start_with(&e, &[(&na, &a)], dir.path(), &lifecycle_flows(&na)).await;
    let (placed, _reference, sale) = placed_sale(&erp, &a, &na, &[("SKU-0005", 2)]).await;
    a.customer_cancel(&placed.id).expect("cancel");
    wait_until("the sale is cancelled in Tryton", DEADLINE, || async {
        let s = erp
            .sale(sale, &["state", "shipment_state", "invoice_state"])
            .await;
        s["state"] == "done" && s["shipment_state"] == "none" && s["invoice_state"] == "none"
    })
    .await;
    let s = erp.sale(sale, &["shipments", "invoices"]).await;
    for sh in erp
        .find(
            "stock.shipment.out",
            json!([["id", "in", s["shipments"]]]),
            &["state"],
        )
        .await
    {
        assert_eq!(sh["state"], "cancelled");
    }
    for inv in erp
        .find(
            "account.invoice",
            json!([["id", "in", s["invoices"]]]),
            &["state"],
        )
        .await
    {
        assert_eq!(inv["state"], "cancelled");
    }
    wait_until("everything drained", DEADLINE, || async {
        hub.engine.is_drained().await.unwrap_or(false)
    })
    .await;
    assert!(
        hub.unexpected_dead_letters().await.is_empty(),
        "{:?}",
        hub.unexpected_dead_letters().await
    );
    hub.stop().await;
}

/// A partial refund by line at the storefront becomes one posted credit note in Tryton for
/// exactly that line at the order's price; the refund delivered again (a hub that lost its
/// bookkeeping re-reads the storefront) makes no second credit note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_storefront_refund_becomes_one_tryton_credit_note_even_when_delivered_twice() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let na = format!("t{run}a");
    let a = shop(&na).await;
    for sku in ["SKU-0003", "SKU-0004"] {
        a.set_inventory(sku, "WH", 50).expect("stock");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start_with(&e, &[(&na, &a)], dir.path(), &lifecycle_flows(&na)).await;
    let (placed, reference, sale) =
        placed_sale(&erp, &a, &na, &[("SKU-0003", 2), ("SKU-0004", 1)]).await;
    // The accountant posts the sale's invoice.
    let invoices = erp.sale(sale, &["invoices"]).await["invoices"].clone();
    erp.call("account.invoice", "post", vec![invoices]).await;
    let price = placed.prices["SKU-0003"];
    let refund = a
        .refund(
            &placed.id,
            serde_json::from_value(json!({"lines": [{"sku": "SKU-0003", "quantity": 1}]}))
                .expect("refund"),
        )
        .expect("refund at the storefront");
    let marker = refund_reference(&reference, refund["id"].as_str().expect("refund id"));
    let notes = || async {
        erp.find(
            "account.invoice",
            json!([["reference", "=", marker], ["type", "=", "out"]]),
            &["state", "total_amount", "lines"],
        )
        .await
    };
    wait_until("the credit note is posted in Tryton", DEADLINE, || async {
        notes().await.iter().any(|n| n["state"] == "posted")
    })
    .await;
    let n = notes().await;
    assert_eq!(n.len(), 1, "{n:?}");
    let total = concord_connectors::tryton::mapping::money_minor(&n[0]["total_amount"]);
    assert_eq!(total, Some(-price), "{n:?}");
    let lines = erp
        .find(
            "account.invoice.line",
            json!([["invoice", "=", n[0]["id"]]]),
            &["product.code", "quantity"],
        )
        .await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["product."]["code"], "SKU-0003");
    assert_eq!(lines[0]["quantity"], -1.0);
    wait_until("everything drained", DEADLINE, || async {
        hub.engine.is_drained().await.unwrap_or(false)
    })
    .await;
    assert!(
        hub.unexpected_dead_letters().await.is_empty(),
        "{:?}",
        hub.unexpected_dead_letters().await
    );
    hub.stop().await;

    // Delivered again: a hub with none of the bookkeeping (a fresh store) reads the storefront
    // from the start and delivers the order and the refund once more.
    let dir2 = tempfile::tempdir().expect("tmp");
    let hub = Hub::start_with(&e, &[(&na, &a)], dir2.path(), &lifecycle_flows(&na)).await;
    wait_until("the refund is delivered again", DEADLINE, || async {
        hub.engine.is_drained().await.unwrap_or(false) && hub.engine.stats(None).delivered >= 2
    })
    .await;
    assert_eq!(notes().await.len(), 1, "no second credit note");
    assert_eq!(erp.sales(&reference).await.len(), 1, "no second sale");
    assert!(
        hub.unexpected_dead_letters().await.is_empty(),
        "{:?}",
        hub.unexpected_dead_letters().await
    );
    hub.stop().await;
}

impl Erp {
    /// An invoice's amount left to pay (minor units) and state.
    async fn to_pay(&self, invoice: i64) -> (Option<i64>, String) {
        let r = self
            .call(
                "account.invoice",
                "read",
                vec![json!([invoice]), json!(["amount_to_pay", "state"])],
            )
            .await;
        (
            concord_connectors::tryton::mapping::money_minor(&r[0]["amount_to_pay"]),
            r[0]["state"].as_str().unwrap_or("").to_string(),
        )
    }
}

fn payment_op(id: &str, order: &str, amount: i64, status: &str) -> WriteOp {
    WriteOp {
        item_id: 1,
        kind: Kind::Payment,
        key: id.into(),
        op: "upsert".into(),
        payload: json!({"id": id, "order": order, "amount_minor": amount, "currency": "USD",
                        "status": status}),
        external_id: None,
        refs: BTreeMap::new(),
    }
}

/// A payment captured on a channel is recorded against the sale's posted invoice with Tryton's
/// Pay wizard: it waits (transient) while the invoice is a draft, a partial payment leaves the
/// rest to pay, a replay records nothing more, the remainder makes the invoice paid; an
/// authorized (not captured) payment moves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_channel_payment_is_recorded_once_against_the_posted_tryton_invoice() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let tryton = concord_connectors::build(&tryton_spec(&e)).expect("build");
    let key = format!("t{run}a/pay");
    let sale = done_id(
        &tryton
            .write(vec![lifecycle_op(
                "create",
                &key,
                &[("SKU-0001", 2)],
                "1 Main Street",
            )])
            .await,
    );
    let invoice = erp.sale(sale, &["invoices"]).await["invoices"][0]
        .as_i64()
        .expect("invoice");
    let p1 = payment_op(&format!("{key}/p1"), &key, 1000, "captured");
    // The invoice is still a draft: retried later, nothing recorded.
    let out = tryton.write(vec![p1.clone()]).await;
    assert!(
        matches!(&out[0], WriteOutcome::Failed(e) if !e.is_permanent()),
        "{out:?}"
    );
    erp.call("account.invoice", "post", vec![json!([invoice])])
        .await;
    let m1 = done_id(&tryton.write(vec![p1.clone()]).await);
    assert_eq!(erp.to_pay(invoice).await, (Some(1200), "posted".into()));
    // Replayed: the same move, nothing more paid.
    assert_eq!(done_id(&tryton.write(vec![p1]).await), m1);
    assert_eq!(erp.to_pay(invoice).await, (Some(1200), "posted".into()));
    // Authorized only: nothing moves.
    let out = tryton
        .write(vec![payment_op(
            &format!("{key}/p0"),
            &key,
            500,
            "authorized",
        )])
        .await;
    assert!(matches!(out[0], WriteOutcome::Done { .. }), "{out:?}");
    assert_eq!(erp.to_pay(invoice).await, (Some(1200), "posted".into()));
    // More than is left: refused with the figures.
    let reason = permanent_reason(
        &tryton
            .write(vec![payment_op(
                &format!("{key}/p9"),
                &key,
                5000,
                "captured",
            )])
            .await,
    );
    assert!(reason.contains("1200"), "{reason}");
    // The rest: paid.
    done_id(
        &tryton
            .write(vec![payment_op(
                &format!("{key}/p2"),
                &key,
                1200,
                "captured",
            )])
            .await,
    );
    assert_eq!(erp.to_pay(invoice).await, (Some(0), "paid".into()));
    let moves = erp
        .find(
            "account.move",
            json!([
                ["origin", "=", format!("account.invoice,{invoice}")],
                ["description", "like", format!("payment:{key}:%")]
            ]),
            &["description"],
        )
        .await;
    assert_eq!(moves.len(), 2, "{moves:?}");

    // Read back: an invoice paid by channel payments is not a new payment for the channels;
    // one the accountant marks paid in Tryton (Pay wizard, a bank transfer) is.
    let key2 = format!("t{run}a/pay-bank");
    let sale2 = done_id(
        &tryton
            .write(vec![lifecycle_op(
                "create",
                &key2,
                &[("SKU-0001", 1)],
                "1 Main Street",
            )])
            .await,
    );
    let invoice2 = erp.sale(sale2, &["invoices"]).await["invoices"][0]
        .as_i64()
        .expect("invoice");
    erp.call("account.invoice", "post", vec![json!([invoice2])])
        .await;
    let ctx = json!({"active_model": "account.invoice", "active_id": invoice2,
                     "active_ids": [invoice2]});
    let rpc = erp.c.rpc();
    let w = rpc
        .call("wizard.account.invoice.pay.create", vec![], Some(&ctx))
        .await
        .expect("wizard");
    let session = w[0].clone();
    let view = rpc
        .call(
            "wizard.account.invoice.pay.execute",
            vec![session.clone(), json!({}), json!("start")],
            Some(&ctx),
        )
        .await
        .expect("start");
    let mut start: serde_json::Map<String, Value> = view["view"]["defaults"]
        .as_object()
        .expect("defaults")
        .iter()
        .filter(|(k, _)| !k.contains('.') && k.as_str() != "payees")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let method = erp.id("account.invoice.payment.method", json!([])).await;
    start.insert("payment_method".into(), json!(method));
    start.insert("description".into(), json!("bank transfer"));
    rpc.call(
        "wizard.account.invoice.pay.execute",
        vec![session.clone(), json!({"start": start}), json!("choice")],
        Some(&ctx),
    )
    .await
    .expect("pay");
    rpc.call(
        "wizard.account.invoice.pay.delete",
        vec![session],
        Some(&ctx),
    )
    .await
    .expect("delete");
    assert_eq!(erp.to_pay(invoice2).await, (Some(0), "paid".into()));
    let page = tryton
        .read_changes(ReadRequest {
            kind: Kind::Payment,
            cursor: None,
            limit: 10_000,
            overlap: Duration::ZERO,
        })
        .await
        .expect("payments");
    let orders: Vec<&str> = page
        .records
        .iter()
        .filter_map(|c| c.record["order"].as_str())
        .collect();
    assert!(orders.contains(&key2.as_str()), "{orders:?}");
    assert!(!orders.contains(&key.as_str()), "{orders:?}");
}

/// A payment captured at the storefront reaches Tryton through the engine as a payment of the
/// sale's posted invoice, which becomes paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storefront_capture_pays_the_tryton_invoice_through_the_engine() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let na = format!("t{run}a");
    let a = shop(&na).await;
    a.set_inventory("SKU-0002", "WH", 50).expect("stock");
    let dir = tempfile::tempdir().expect("tmp");
    let flows = format!(
        "\n[[flows]]\nname = \"payments\"\nkind = \"payment\"\npattern = \"aggregation\"\n\
         mode = \"delta\"\ninterval = \"200ms\"\nfrom = [\"{na}\"]\nto = [\"erp\"]\n"
    );
    let hub = Hub::start_with(&e, &[(&na, &a)], dir.path(), &flows).await;
    let (placed, _reference, sale) = placed_sale(&erp, &a, &na, &[("SKU-0002", 2)]).await;
    let invoice = erp.sale(sale, &["invoices"]).await["invoices"][0]
        .as_i64()
        .expect("invoice");
    erp.call("account.invoice", "post", vec![json!([invoice])])
        .await;
    a.capture(&placed.id, None).expect("capture");
    wait_until("the invoice is paid in Tryton", DEADLINE, || async {
        erp.to_pay(invoice).await == (Some(0), "paid".to_string())
    })
    .await;
    wait_until("everything drained", DEADLINE, || async {
        hub.engine.is_drained().await.unwrap_or(false)
    })
    .await;
    assert!(
        hub.unexpected_dead_letters().await.is_empty(),
        "{:?}",
        hub.unexpected_dead_letters().await
    );
    hub.stop().await;
}

// ---- Issue 12: creates never assume ----

impl Erp {
    /// A salable goods product `code` (unit "Unit", the first accounting category).
    async fn salable_product(&self, code: &str) -> i64 {
        let unit = self.id("product.uom", json!([["name", "=", "Unit"]])).await;
        let category = self
            .find(
                "product.category",
                json!([["accounting", "=", true]]),
                &["id"],
            )
            .await
            .first()
            .and_then(|c| c["id"].as_i64());
        let tpl = self
            .call(
                "product.template",
                "create",
                vec![
                    json!([{"name": code, "code": code, "type": "goods", "default_uom": unit,
                   "salable": true, "sale_uom": unit, "account_category": category,
                   "list_price": {"__class__": "Decimal", "decimal": "11"},
                   "products": [["create", [{}]]]}]),
                ],
            )
            .await;
        self.id("product.product", json!([["template", "in", tpl]]))
            .await
    }

    /// The e-mail addresses of a sale's party.
    async fn sale_emails(&self, sale: i64) -> Vec<String> {
        let party = self.sale(sale, &["party"]).await["party"].clone();
        self.find(
            "party.contact_mechanism",
            json!([["party", "=", party], ["type", "=", "email"]]),
            &["value"],
        )
        .await
        .iter()
        .filter_map(|m| m["value"].as_str().map(str::to_lowercase))
        .collect()
    }
}

/// The stock pool for channel `channel` at WH (the order's reservation at the hub).
fn pool_config(channel: &str) -> String {
    format!(
        "\n[inventory]\nsource = \"erp\"\nreservation_ttl = \"10m\"\n\
         [inventory.channels.{channel}]\nlocations = [\"WH\"]\n"
    )
}

/// The bug this guards: an order whose reference Tryton already has with other content was
/// taken as delivered — the old sale recorded as its acceptance, its reservation released, the
/// order never reaching Tryton (on real Tryton: 13 units promised of 8). A storefront that
/// restarted its numbering reuses `1001`; a hub that does not know the first `1001` (a fresh
/// store) plans a create. It must be a collision: a dead letter naming the hub's order and the
/// sale, the first sale untouched, the second order's units still held. And the hub's own
/// earlier write, replayed by a hub that lost its bookkeeping, is still recognised (one sale).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_number_reused_by_a_restarted_store_is_a_collision_never_a_delivery() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    let na = format!("t{run}r");
    let sku = format!("{run}-REUSE");
    let product = erp.salable_product(&sku).await;
    erp.inventory(product, "WH", 8).await;
    let reference = format!("{na}/1001");

    // The store's first life: order 1001, Customer 1, 5 of the 8 units.
    let a = shop(&na).await;
    a.set_inventory(&sku, "WH", 8).expect("stock");
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&e, &[(&na, &a)], dir.path()).await;
    let first = a
        .place_order("customer1@example.com", "Customer 1", &[(&sku, 5)])
        .expect("checkout");
    assert_eq!(first.number, "1001");
    wait_until("order 1001 is a processing sale", DEADLINE, || async {
        erp.sales(&reference)
            .await
            .iter()
            .any(|s| s["state"] == "processing")
    })
    .await;
    let sale = erp.sales(&reference).await[0]["id"]
        .as_i64()
        .expect("sale id");
    hub.stop().await;

    // A genuine retry: a hub that lost its bookkeeping (fresh store, e.g. killed before it
    // settled) reads the same order again — the sale is recognised as its own, none is added.
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&e, &[(&na, &a)], dir.path()).await;
    wait_until("the replayed order is settled", DEADLINE, || async {
        hub.engine.is_drained().await.unwrap_or(false) && hub.engine.stats(None).delivered >= 1
    })
    .await;
    assert_eq!(
        erp.sales(&reference).await.len(),
        1,
        "the retry made no sale"
    );
    assert!(
        hub.unexpected_dead_letters().await.is_empty(),
        "a retry is no collision: {:?}",
        hub.unexpected_dead_letters().await
    );
    hub.stop().await;
    drop(a);

    // The store restarts its numbering at 1001; a re-installed hub with the stock pool.
    let a = shop(&na).await;
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start_with(&e, &[(&na, &a)], dir.path(), &pool_config(&na)).await;
    let ats = |hub: &Hub| {
        let (engine, sku) = (hub.engine.clone(), sku.clone());
        let channel = na.clone();
        async move {
            engine
                .availability(&channel, std::slice::from_ref(&sku))
                .await
                .ok()
                .and_then(|a| a.first().map(|x| x.ats))
        }
    };
    wait_until(
        "the pool has Tryton's figure (8 on hand, 5 committed)",
        DEADLINE,
        || async { ats(&hub).await == Some(3) },
    )
    .await;
    let out = hub
        .engine
        .reserve(
            &na,
            &format!("cart-{run}"),
            vec![concord_core::inventory::Line {
                sku: sku.clone(),
                quantity: 3,
            }],
        )
        .await
        .expect("reserve");
    let concord_store::ReserveOutcome::Reserved(reservation) = out else {
        panic!("3 units are free: {out:?}");
    };
    hub.engine
        .commit_reservation(&reservation.id, "1001")
        .await
        .expect("commit");
    // The store sells what the hub held for it (its own copy of the figure is the store's
    // business; a checkout through the hub sells against the reservation).
    a.set_inventory(&sku, "WH", 3).expect("stock");
    let second = a
        .place_order(
            &format!("second-{run}@example.com"),
            "Second Customer",
            &[(&sku, 3)],
        )
        .expect("checkout");
    assert_eq!(
        second.number, "1001",
        "the restarted store reuses the number"
    );

    wait_until(
        "the second order 1001 is dead-lettered",
        DEADLINE,
        || async { hub.dead_letters().await.iter().any(|d| d.key == reference) },
    )
    .await;
    let dl = hub
        .dead_letters()
        .await
        .into_iter()
        .find(|d| d.key == reference)
        .expect("dead letter");
    println!("COLLISION: {}", dl.reason);
    assert!(
        dl.reason.contains(&format!("`{reference}`"))
            && dl.reason.contains(&format!("sale {sale}")),
        "the dead letter names the hub's order and Tryton's sale: {}",
        dl.reason
    );
    assert!(
        dl.reason.contains(&format!("second-{run}@example.com")),
        "and says what differs: {}",
        dl.reason
    );

    // The first sale is untouched and still the only one under the reference.
    let sales = erp.sales(&reference).await;
    assert_eq!(sales.len(), 1, "{sales:?}");
    assert_eq!(sales[0]["id"].as_i64(), Some(sale));
    assert_eq!(sales[0]["state"], "processing");
    assert_eq!(erp.sale_lines(sale).await, vec![(sku.clone(), 5)]);
    assert_eq!(
        erp.sale_emails(sale).await,
        vec!["customer1@example.com".to_string()]
    );

    // The second order never reached Tryton, so its units stay held: not accepted, not released,
    // and the channel cannot sell them again.
    let r = hub
        .engine
        .reservation(&reservation.id)
        .await
        .expect("reservation");
    assert_eq!(r.state, concord_store::ReservationState::Committed, "{r:?}");
    assert!(r.accepted_at.is_none(), "not accepted: {r:?}");
    assert!(r.lines.iter().all(|l| l.released_at.is_none()), "{r:?}");
    // A newer Tryton figure (1 unit more on hand) is read, and still nothing is released.
    erp.inventory(product, "WH", 9).await;
    wait_until("the pool has the new figure", DEADLINE, || async {
        ats(&hub).await == Some(1)
    })
    .await;
    let r = hub
        .engine
        .reservation(&reservation.id)
        .await
        .expect("reservation");
    assert_eq!(r.state, concord_store::ReservationState::Committed, "{r:?}");
    hub.stop().await;
}

// ---- Issue 12: pollers never skip ----

/// Tryton stamps every row of one transaction with one `write_date`. The reader before this
/// fetched every row of the page's last timestamp in one unlimited query (never a gap, but a
/// page of any size: 10,000 parties written at once were one response, and one that times out
/// every time stalls the poller). Now rows sharing a timestamp are paged by id: every party is
/// read exactly once, and no page is larger than asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_written_in_one_transaction_are_each_read_once_across_small_pages() {
    let Some(e) = env() else { return };
    let _serial = serial().await;
    let erp = Erp::new(&e);
    let run = run_id();
    const N: usize = 11;
    const PAGE: usize = 3;
    let parties: Vec<Value> = (0..N)
        .map(|i| {
            json!({"name": format!("Tie {run} {i}"), "contact_mechanisms": [["create",
                [{"type": "email", "value": format!("tie-{run}-{i}@example.com")}]]]})
        })
        .collect();
    let ids = erp
        .call("party.party", "create", vec![Value::Array(parties)])
        .await;
    let ids: Vec<i64> = ids
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert_eq!(ids.len(), N);
    // One write of all of them: one transaction, one write_date.
    erp.call(
        "party.party",
        "write",
        vec![json!(ids), json!({"name": format!("Tie {run} (renamed)")})],
    )
    .await;
    let rows = erp
        .find("party.party", json!([["id", "in", ids]]), &["write_date"])
        .await;
    let stamps: std::collections::BTreeSet<String> =
        rows.iter().map(|r| r["write_date"].to_string()).collect();
    assert_eq!(
        stamps.len(),
        1,
        "one transaction, one write_date: {stamps:?}"
    );
    let wd = &rows[0]["write_date"];
    let micro = |k: &str| wd[k].as_u64().unwrap_or(0) as u32;
    let at = chrono::NaiveDate::from_ymd_opt(
        wd["year"].as_i64().unwrap_or(0) as i32,
        micro("month"),
        micro("day"),
    )
    .and_then(|d| {
        d.and_hms_micro_opt(
            micro("hour"),
            micro("minute"),
            micro("second"),
            micro("microsecond"),
        )
    })
    .expect("a write_date");
    // From one microsecond before: the first rows are ours.
    let start = (at - chrono::Duration::microseconds(1))
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();

    let tryton = TrytonConnector::new(&tryton_spec(&e)).expect("connector");
    let mut cursor = Some(start);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut pages = 0;
    loop {
        let page = tryton
            .read_changes(ReadRequest {
                kind: Kind::Customer,
                cursor: cursor.as_deref(),
                limit: PAGE,
                overlap: Duration::ZERO,
            })
            .await
            .unwrap_or_else(|err| panic!("page {pages}: {err}"));
        pages += 1;
        assert!(pages < 1000, "the cycle never ends");
        assert!(
            page.records.len() <= PAGE,
            "page {pages}: {} customers from a page of at most {PAGE} parties",
            page.records.len()
        );
        for r in &page.records {
            *seen.entry(r.external_id.clone()).or_default() += 1;
        }
        if page.cursor.is_some() {
            cursor = page.cursor;
        }
        if !page.more {
            break;
        }
    }
    for id in &ids {
        assert_eq!(
            seen.get(&id.to_string()).copied(),
            Some(1),
            "party {id} read {:?} times in {pages} pages",
            seen.get(&id.to_string())
        );
    }
    println!("TIES: {N} parties sharing one write_date read once each in {pages} pages of {PAGE}");
}

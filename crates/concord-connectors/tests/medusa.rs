//! The generic `http` connector proven on two real systems: a **real Tryton 8.2** (the ERP,
//! `scripts/tryton/`) and a **real Medusa 2.21** (the storefront, `scripts/medusa/`), with a real
//! engine over a real SQLite store, configured by `examples/tryton-medusa.toml` itself (its URLs
//! pointed at the test servers, and its ERP flows narrowed by a `filter` to this suite's SKUs,
//! since the shared Tryton holds every other suite's products): no Medusa-specific Rust exists.
//!
//! Needs `CONCORD_TRYTON_URL` and `CONCORD_MEDUSA_URL` (`scripts/test.sh` sets both systems up
//! and exports them); without them every test prints a loud SKIPPED line and passes (in CI it
//! fails instead). The outage test also needs `MEDUSA_DIR` (to stop and restart Medusa through
//! the project's scripts).
//!
//! Both databases outlive a run, so every test uses SKUs and e-mails of its own (the run id).
//! One test stops Medusa, so they run one at a time (a process-wide lock). Every wait is a
//! condition polled under a deadline; nothing sleeps and hopes.

use concord_connectors::tryton::TrytonConnector;
use concord_engine::config::Config;
use concord_engine::connector::{Connector, EndpointSpec};
use concord_engine::runtime::Engine;
use concord_store::{DeadLetterFilter, SqliteStore, Store};
use concord_testkit::real::{missing, ran};
use concord_testkit::{try_wait_until, wait_until};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(90);
/// This suite's SKUs: `MD-…`, `MO-…`, `MX1-…` (see `Hub::start`).
const SCOPE: &str = r#"(.sku | test("^M[A-Z0-9]*-"))"#;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Env {
    tryton_url: String,
    db: String,
    tryton_password: String,
    medusa_url: String,
    medusa_email: String,
    medusa_password: String,
}

fn env() -> Option<Env> {
    let (Ok(tryton_url), Ok(medusa_url)) = (
        std::env::var("CONCORD_TRYTON_URL"),
        std::env::var("CONCORD_MEDUSA_URL"),
    ) else {
        missing(
            "\n!!!!! SKIPPED: CONCORD_TRYTON_URL and CONCORD_MEDUSA_URL are not both set, so the\n\
             !!!!! real Tryton + Medusa tests did not run. Run ./scripts/test.sh (it installs,\n\
             !!!!! starts and seeds both), or start them with scripts/tryton/* and scripts/medusa/*.\n",
        );
        return None;
    };
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    ran("medusa");
    Some(Env {
        tryton_url,
        db: var("TRYTON_DB", "concord"),
        tryton_password: var("TRYTON_ADMIN_PASSWORD", "admin"),
        medusa_url,
        medusa_email: var("MEDUSA_ADMIN_EMAIL", "admin@example.com"),
        medusa_password: var("MEDUSA_ADMIN_PASSWORD", "supersecret"),
    })
}

fn run_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut n = ms % 36u128.pow(6);
    let mut s = String::new();
    for _ in 0..6 {
        s.insert(0, char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
    }
    s.to_uppercase()
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// ---- Tryton, driven directly (the test plays the ERP's users) ------------------------------

struct Erp {
    c: TrytonConnector,
}

impl Erp {
    fn new(e: &Env) -> Erp {
        let mut spec = EndpointSpec::new(
            "erp",
            "tryton",
            &e.tryton_url,
            json!({"database": e.db, "password": e.tryton_password,
                   "warehouses": ["WH", "WH2"]}),
        );
        spec.timeout = Duration::from_secs(20);
        Erp {
            c: TrytonConnector::new(&spec).expect("tryton connector"),
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

    /// A salable goods product with this code and list price; returns (template, product).
    async fn new_product(&self, code: &str, name: &str, price: &str) -> (i64, i64) {
        let unit = self.id("product.uom", json!([["name", "=", "Unit"]])).await;
        let category = self
            .find(
                "product.category",
                json!([["accounting", "=", true]]),
                &["id"],
            )
            .await;
        let mut tpl = json!({"name": name, "code": code, "type": "goods",
            "default_uom": unit, "salable": true, "sale_uom": unit,
            "list_price": {"__class__": "Decimal", "decimal": price},
            "products": [["create", [{}]]]});
        if let Some(c) = category.first().and_then(|c| c["id"].as_i64()) {
            tpl["account_category"] = json!(c);
        }
        let t = self
            .call("product.template", "create", vec![json!([tpl])])
            .await;
        let t = t[0].as_i64().expect("template id");
        (
            t,
            self.id("product.product", json!([["template", "=", t]]))
                .await,
        )
    }

    async fn write_template(&self, template: i64, values: Value) {
        self.call("product.template", "write", vec![json!([template]), values])
            .await;
    }

    /// Set the quantity on hand in a warehouse (a confirmed inventory).
    async fn inventory(&self, product: i64, wh: &str, quantity: i64) {
        let loc = self
            .find(
                "stock.location",
                json!([["code", "=", wh]]),
                &["storage_location"],
            )
            .await[0]["storage_location"]
            .as_i64()
            .expect("storage location");
        let company = self.c.rpc().context().await.expect("context")["company"]
            .as_i64()
            .expect("company");
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

    async fn sales(&self, reference: &str) -> Vec<Value> {
        self.find(
            "sale.sale",
            json!([["reference", "=", reference]]),
            &["state", "shipments", "reference"],
        )
        .await
    }

    /// Ship a sale's first shipment with a tracking number (Tryton: assign, pick, pack, done).
    async fn ship(&self, sale: &Value, tracking: &str) {
        let ship = sale["shipments"][0].as_i64().expect("shipment");
        self.call(
            "stock.shipment.out",
            "write",
            vec![json!([ship]), json!({"reference": tracking})],
        )
        .await;
        self.call("stock.shipment.out", "assign_try", vec![json!([ship])])
            .await;
        for step in ["pick", "pack", "do"] {
            self.call("stock.shipment.out", step, vec![json!([ship])])
                .await;
        }
    }
}

// ---- Medusa, driven directly: the Admin API as the merchant, the Store API as a buyer ------

struct Medusa {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Medusa {
    async fn login(e: &Env) -> Medusa {
        let http = reqwest::Client::new();
        let r: Value = http
            .post(format!("{}/auth/user/emailpass", e.medusa_url))
            .json(&json!({"email": e.medusa_email, "password": e.medusa_password}))
            .send()
            .await
            .expect("medusa login")
            .json()
            .await
            .expect("login body");
        Medusa {
            http,
            url: e.medusa_url.clone(),
            token: r["token"].as_str().expect("token").to_string(),
        }
    }

    async fn admin(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Variants with this SKU: `(product id, title, price in usd)`.
    async fn variants(&self, sku: &str) -> Vec<(String, String, Option<f64>)> {
        let v = self
            .admin(&format!(
                "/admin/product-variants?sku={sku}&fields=id,sku,product_id,*product,*prices"
            ))
            .await;
        v["variants"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|v| {
                (
                    v["product_id"].as_str().unwrap_or("").to_string(),
                    v["product"]["title"].as_str().unwrap_or("").to_string(),
                    v["prices"]
                        .as_array()
                        .and_then(|p| p.iter().find(|p| p["currency_code"] == "usd"))
                        .and_then(|p| p["amount"].as_f64()),
                )
            })
            .collect()
    }

    /// `(stocked, reserved)` of a SKU at a stock location (by name).
    async fn level(&self, sku: &str, location: &str) -> Option<(i64, i64)> {
        let loc = self
            .admin(&format!("/admin/stock-locations?name={location}"))
            .await["stock_locations"][0]["id"]
            .as_str()?
            .to_string();
        let items = self
            .admin(&format!(
                "/admin/inventory-items?sku={sku}&fields=id,sku,*location_levels"
            ))
            .await;
        let l = items["inventory_items"][0]["location_levels"]
            .as_array()?
            .iter()
            .find(|l| l["location_id"] == loc.as_str())?
            .clone();
        Some((
            l["stocked_quantity"].as_f64()? as i64,
            l["reserved_quantity"].as_f64().unwrap_or(0.0) as i64,
        ))
    }

    async fn order(&self, id: &str) -> Value {
        self.admin(&format!(
            "/admin/orders/{id}?fields=id,display_id,status,fulfillment_status,*fulfillments,*fulfillments.labels"
        ))
        .await["order"]
            .clone()
    }

    /// A guest checkout through the Store API: `(order id, display id)`.
    async fn checkout(&self, sku: &str, qty: i64, email: &str) -> Result<(String, i64), String> {
        let keys = self
            .admin("/admin/api-keys?type=publishable&limit=100")
            .await;
        let key = keys["api_keys"]
            .as_array()
            .and_then(|k| k.iter().find(|k| k["title"] == "Concord Webshop"))
            .and_then(|k| k["token"].as_str())
            .ok_or("no publishable key (run scripts/medusa/seed.js)")?
            .to_string();
        let s = |method: reqwest::Method, path: &str, body: Option<Value>| {
            let mut rb = self
                .http
                .request(method, format!("{}{path}", self.url))
                .header("x-publishable-api-key", &key);
            if let Some(b) = body {
                rb = rb.json(&b);
            }
            let path = path.to_string();
            async move {
                let r = rb.send().await.map_err(|e| e.to_string())?;
                let status = r.status();
                let v: Value = r.json().await.map_err(|e| e.to_string())?;
                if status.is_success() {
                    Ok(v)
                } else {
                    Err(format!("{path}: HTTP {status}: {v}"))
                }
            }
        };
        use reqwest::Method as M;
        let regions = s(M::GET, "/store/regions", None).await?;
        let region = regions["regions"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == "US"))
            .ok_or("no region US")?["id"]
            .clone();
        // The product by its variant's SKU (Admin API), then read through the Store API, which
        // shows it only once it is published in the key's sales channel. (Not a catalogue
        // listing: after a few runs Medusa holds more products than one page.)
        let found = self
            .admin(&format!(
                "/admin/product-variants?sku={sku}&fields=id,sku,product_id"
            ))
            .await;
        let product = found["variants"][0]["product_id"]
            .as_str()
            .ok_or(format!("no variant {sku} in the Admin API"))?
            .to_string();
        let product = s(
            M::GET,
            &format!(
                "/store/products/{product}?region_id={}&fields=id,*variants",
                region.as_str().unwrap_or("")
            ),
            None,
        )
        .await
        .map_err(|e| format!("variant {sku} not visible in the Store API: {e}"))?;
        let variant = product["product"]["variants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["sku"] == sku)
            .cloned()
            .ok_or(format!("variant {sku} not visible in the Store API"))?;
        let cart = s(
            M::POST,
            "/store/carts",
            Some(json!({"region_id": region, "email": email})),
        )
        .await?;
        let cart = cart["cart"]["id"].as_str().ok_or("no cart id")?.to_string();
        s(
            M::POST,
            &format!("/store/carts/{cart}/line-items"),
            Some(json!({"variant_id": variant["id"], "quantity": qty})),
        )
        .await?;
        s(
            M::POST,
            &format!("/store/carts/{cart}"),
            Some(
                json!({"shipping_address": {"first_name": "Guest", "last_name": "Buyer",
                "address_1": "1 Main Street", "city": "Springfield", "postal_code": "12345",
                "country_code": "us"}}),
            ),
        )
        .await?;
        let options = s(
            M::GET,
            &format!("/store/shipping-options?cart_id={cart}"),
            None,
        )
        .await?;
        let option = options["shipping_options"][0]["id"].clone();
        s(
            M::POST,
            &format!("/store/carts/{cart}/shipping-methods"),
            Some(json!({"option_id": option})),
        )
        .await?;
        let pc = s(
            M::POST,
            "/store/payment-collections",
            Some(json!({"cart_id": cart})),
        )
        .await?;
        let pc = pc["payment_collection"]["id"]
            .as_str()
            .ok_or("no payment collection")?
            .to_string();
        s(
            M::POST,
            &format!("/store/payment-collections/{pc}/payment-sessions"),
            Some(json!({"provider_id": "pp_system_default"})),
        )
        .await?;
        let done = s(M::POST, &format!("/store/carts/{cart}/complete"), None).await?;
        if done["type"] != "order" {
            return Err(format!("cart not completed: {done}"));
        }
        Ok((
            done["order"]["id"].as_str().unwrap_or("").to_string(),
            done["order"]["display_id"].as_i64().unwrap_or(0),
        ))
    }
}

// ---- the hub, configured by examples/tryton-medusa.toml ------------------------------------

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tryton-medusa.toml")
}

struct Hub {
    engine: Engine,
    store: Arc<dyn Store>,
    tasks: tokio::task::JoinSet<()>,
}

impl Hub {
    async fn start(e: &Env, dir: &Path) -> Hub {
        let text = std::fs::read_to_string(example()).expect("examples/tryton-medusa.toml");
        let store_path = dir.join("concord.sqlite");
        let text = text
            .replace("http://127.0.0.1:8011", &e.tryton_url)
            .replace("http://127.0.0.1:9011", &e.medusa_url)
            .replace(
                "database = \"concord\"",
                &format!("database = \"{}\"", e.db),
            )
            .replace(
                "path = \"tryton-medusa.sqlite\"",
                &format!("path = \"{}\"", store_path.display()),
            )
            .replace(
                "email = \"admin@example.com\"",
                &format!("email = \"{}\"", e.medusa_email),
            )
            // The shared Tryton holds every suite's products (5,000 after the migration test):
            // the ERP flows are narrowed to this suite's SKUs (`M…-<run>`).
            .replace(
                "name = \"products-to-medusa\"",
                &format!("name = \"products-to-medusa\"\nfilter = '{SCOPE}'"),
            )
            .replace(
                "name = \"stock-to-medusa\"",
                &format!("name = \"stock-to-medusa\"\nfilter = '{SCOPE}'"),
            )
            .replace(
                "filter = '.list == \"default\" and .customer == null and .customer_group == null'",
                &format!(
                    "filter = '.list == \"default\" and .customer == null and .customer_group == null and {SCOPE}'"
                ),
            );
        assert_eq!(
            text.matches(SCOPE).count(),
            3,
            "the example's flows changed: {text}"
        );
        let (tp, mp) = (e.tryton_password.clone(), e.medusa_password.clone());
        let config = Config::from_toml_str_with_env(
            &text,
            &dir.join("tryton-medusa.toml"),
            move |n| match n {
                "TRYTON_PASSWORD" => Some(tp.clone()),
                "MEDUSA_PASSWORD" => Some(mp.clone()),
                _ => None,
            },
        )
        .unwrap_or_else(|err| panic!("examples/tryton-medusa.toml: {err}"));
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&store_path).expect("store"));
        let mut connectors: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
        for (name, spec) in &config.endpoints {
            connectors.insert(
                name.clone(),
                concord_connectors::build(spec).unwrap_or_else(|err| panic!("{name}: {err}")),
            );
        }
        assert_eq!(
            connectors["medusa"].connector_type(),
            "http",
            "configuration only"
        );
        let config = Arc::new(config);
        concord_engine::runtime::check_capabilities(&config, &connectors).expect("capabilities");
        let engine = Engine::new(config, store.clone(), connectors).expect("engine");
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

    /// Dead letters about this run's records (the shared databases hold other tests' data,
    /// e.g. Tryton products with invalid figures on purpose).
    async fn dead_letters_of(&self, run: &str) -> Vec<concord_store::DeadLetter> {
        self.store
            .dead_letters(DeadLetterFilter::default())
            .await
            .expect("dead letters")
            .into_iter()
            .filter(|d| d.key.contains(run) || d.payload.to_string().contains(run))
            .collect()
    }
}

// ---- the tests --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tryton_products_prices_and_stock_reach_medusa_by_configuration_only() {
    let Some(e) = env() else { return };
    let _serial = SERIAL.lock().await;
    let run = run_id();
    let erp = Erp::new(&e);
    let shop = Medusa::login(&e).await;
    let sku = format!("MD-{run}");
    let (tpl, product) = erp
        .new_product(&sku, &format!("Medusa {run}"), "12.50")
        .await;
    erp.inventory(product, "WH", 40).await;
    let dir = tempfile::tempdir().expect("tmp");
    let t0 = Instant::now();
    let hub = Hub::start(&e, dir.path()).await;
    wait_until(
        "Medusa has the product with its price and both levels",
        DEADLINE,
        || async {
            let v = shop.variants(&sku).await;
            v.len() == 1
                && v[0].2 == Some(12.5)
                && shop.level(&sku, "WH").await.map(|l| l.0) == Some(40)
                && shop.level(&sku, "WH2").await.map(|l| l.0) == Some(0)
        },
    )
    .await;
    println!(
        "MEDUSA FIRST SYNC: product, price and 2 levels in {} ms",
        t0.elapsed().as_millis()
    );
    // Renamed and repriced in Tryton: updated in place, never a second product.
    erp.write_template(
        tpl,
        json!({"name": format!("Medusa {run} v2"),
               "list_price": {"__class__": "Decimal", "decimal": "14.00"}}),
    )
    .await;
    wait_until("Medusa shows the new title and price", DEADLINE, || async {
        let v = shop.variants(&sku).await;
        v.len() == 1 && v[0].1.ends_with(" v2") && v[0].2 == Some(14.0)
    })
    .await;
    // Stock latency, Tryton → Medusa, over 20 changes (up and down so each is visible).
    let mut latencies = Vec::new();
    let mut last = 0;
    for i in 0..20i64 {
        let target = 50 + if i % 2 == 0 { i } else { -i };
        last = target;
        erp.inventory(product, "WH", target).await;
        let t = Instant::now();
        wait_until(
            &format!("Medusa shows {sku} = {target} at WH"),
            DEADLINE,
            || async { shop.level(&sku, "WH").await.map(|l| l.0) == Some(target) },
        )
        .await;
        latencies.push(t.elapsed().as_millis());
    }
    latencies.sort_unstable();
    println!(
        "TRYTON->MEDUSA STOCK LATENCY (ERP poll 1s, {} changes): p50 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    assert!(
        hub.dead_letters_of(&run).await.is_empty(),
        "{:?}",
        hub.dead_letters_of(&run).await
    );
    hub.stop().await;

    // A hub with a fresh store (no xref, no written hashes) finds the product by SKU: still one.
    let dir2 = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&e, dir2.path()).await;
    wait_until("the fresh hub has synced", DEADLINE, || async {
        hub.engine.is_drained().await.unwrap_or(false) && hub.engine.stats(None).delivered > 0
    })
    .await;
    assert_eq!(shop.variants(&sku).await.len(), 1, "replay: one product");
    assert_eq!(shop.level(&sku, "WH").await.map(|l| l.0), Some(last));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_medusa_order_becomes_one_tryton_sale_and_its_shipment_a_fulfilment_with_tracking() {
    let Some(e) = env() else { return };
    let _serial = SERIAL.lock().await;
    let run = run_id();
    let erp = Erp::new(&e);
    let shop = Medusa::login(&e).await;
    let sku = format!("MO-{run}");
    let (_, product) = erp.new_product(&sku, &format!("Order {run}"), "9.00").await;
    erp.inventory(product, "WH", 30).await;
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&e, dir.path()).await;
    // Sellable: stock at the location and a price (the price goes out after the product).
    wait_until("Medusa sells the product", DEADLINE, || async {
        shop.level(&sku, "WH").await.map(|l| l.0) == Some(30)
            && shop.variants(&sku).await.iter().any(|v| v.2 == Some(9.0))
    })
    .await;
    let email = format!("buyer-{}@example.com", run.to_lowercase());
    let t0 = Instant::now();
    let (order_id, display) = shop
        .checkout(&sku, 2, &email)
        .await
        .unwrap_or_else(|err| panic!("checkout: {err}"));
    let reference = format!("medusa/{display}");
    wait_until("the Medusa order is a Tryton sale", DEADLINE, || async {
        erp.sales(&reference)
            .await
            .iter()
            .any(|s| s["state"] == "processing")
    })
    .await;
    println!(
        "MEDUSA ORDER -> TRYTON SALE: {} ms",
        t0.elapsed().as_millis()
    );
    let sales = erp.sales(&reference).await;
    assert_eq!(sales.len(), 1, "exactly one sale for {reference}");
    let lines = erp
        .find(
            "sale.line",
            json!([["sale", "=", sales[0]["id"]]]),
            &["product.code", "quantity"],
        )
        .await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["product."]["code"], sku.as_str());
    assert_eq!(lines[0]["quantity"], 2.0);
    // Medusa's own reservation is added back, so its "available" is Tryton's free stock.
    wait_until(
        "Medusa's level follows the sale (30 − 2 committed + 2 reserved)",
        DEADLINE,
        || async { shop.level(&sku, "WH").await == Some((30, 2)) },
    )
    .await;

    // The warehouse ships it with a tracking number.
    let tracking = format!("1Z-M{run}");
    erp.ship(&sales[0], &tracking).await;
    let t1 = Instant::now();
    wait_until(
        "Medusa has the fulfilment with the tracking number",
        DEADLINE,
        || async {
            shop.order(&order_id).await["fulfillments"]
                .as_array()
                .is_some_and(|f| {
                    f.iter().any(|f| {
                        f["labels"].as_array().is_some_and(|l| {
                            l.iter().any(|l| l["tracking_number"] == tracking.as_str())
                        })
                    })
                })
        },
    )
    .await;
    println!(
        "TRYTON SHIPMENT -> MEDUSA FULFILMENT: {} ms",
        t1.elapsed().as_millis()
    );
    wait_until("everything drained", DEADLINE, || async {
        hub.engine.is_drained().await.unwrap_or(false)
    })
    .await;
    let order = shop.order(&order_id).await;
    assert_eq!(
        order["fulfillments"].as_array().map(Vec::len),
        Some(1),
        "{order}"
    );
    assert_eq!(order["fulfillment_status"], "shipped", "{order}");
    assert_eq!(erp.sales(&reference).await.len(), 1, "still one sale");
    assert!(
        hub.dead_letters_of(&run).await.is_empty(),
        "{:?}",
        hub.dead_letters_of(&run).await
    );
    hub.stop().await;

    // A hub with a fresh store reads the order and the shipment again: still one sale, still
    // one fulfilment (the sale found by its reference, the fulfilment by its metadata).
    let dir2 = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&e, dir2.path()).await;
    let fulfilment = shop.order(&order_id).await["fulfillments"][0]["id"]
        .as_str()
        .expect("fulfilment id")
        .to_string();
    wait_until(
        "the replayed order and shipment are settled",
        DEADLINE,
        || async {
            hub.engine.is_drained().await.unwrap_or(false)
                && hub
                    .store
                    .xref_key("medusa", concord_core::Kind::Shipment, &fulfilment)
                    .await
                    .ok()
                    .flatten()
                    .is_some()
        },
    )
    .await;
    assert_eq!(erp.sales(&reference).await.len(), 1, "replay: one sale");
    assert_eq!(
        shop.order(&order_id).await["fulfillments"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "replay: one fulfilment"
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_medusa_outage_is_queued_and_drained_exactly_once() {
    let Some(e) = env() else { return };
    let Ok(medusa_dir) = std::env::var("MEDUSA_DIR") else {
        missing("!!!!! SKIPPED the Medusa outage test: MEDUSA_DIR is not set");
        return;
    };
    let _serial = SERIAL.lock().await;
    let run = run_id();
    let erp = Erp::new(&e);
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&e, dir.path()).await;
    wait_until("the hub caught up with Tryton", DEADLINE, || async {
        hub.engine.is_drained().await.unwrap_or(false) && hub.engine.stats(None).delivered > 0
    })
    .await;
    let script = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../scripts/medusa/{name}.sh"))
    };
    let status = std::process::Command::new(script("stop"))
        .env("MEDUSA_DIR", &medusa_dir)
        .env("MEDUSA_KEEP_PG", "1")
        .status()
        .expect("stop medusa");
    assert!(status.success());
    let down_at = Instant::now();
    // While Medusa is down: three new products with stock, and a stock change of the first.
    let skus: Vec<String> = (1..=3).map(|i| format!("MX{i}-{run}")).collect();
    let mut products = Vec::new();
    for (i, sku) in skus.iter().enumerate() {
        let (_, p) = erp
            .new_product(sku, &format!("Outage {i} {run}"), "5.00")
            .await;
        erp.inventory(p, "WH", 10 + i as i64).await;
        products.push(p);
    }
    erp.inventory(products[0], "WH", 99).await;
    wait_until(
        "the hub has queued deliveries it cannot make",
        DEADLINE,
        || async {
            let s = hub.store.stats().await.expect("stats");
            s.queues.iter().any(|q| q.dest == "medusa" && q.pending > 0)
                && hub
                    .engine
                    .endpoint_health()
                    .iter()
                    .any(|h| h.endpoint == "medusa" && h.last_error.is_some())
        },
    )
    .await;
    let queued = hub
        .store
        .stats()
        .await
        .expect("stats")
        .queues
        .iter()
        .find(|q| q.dest == "medusa")
        .map(|q| q.pending)
        .unwrap_or(0);
    let status = std::process::Command::new(script("start"))
        .env("MEDUSA_DIR", &medusa_dir)
        .status()
        .expect("start medusa");
    assert!(status.success());
    let up_at = Instant::now();
    let shop = Medusa::login(&e).await;
    let drained = try_wait_until(DEADLINE, async || {
        let mut ok = hub.engine.is_drained().await.unwrap_or(false);
        for (i, sku) in skus.iter().enumerate() {
            let want = if i == 0 { 99 } else { 10 + i as i64 };
            ok = ok
                && shop.variants(sku).await.len() == 1
                && shop.level(sku, "WH").await.map(|l| l.0) == Some(want);
        }
        ok
    })
    .await;
    if !drained {
        let stats = hub.store.stats().await.expect("stats");
        panic!(
            "the queue did not drain into Medusa within {DEADLINE:?}: queues {:?}, health {:?}, dead letters {:?}, levels {:?}",
            stats.queues,
            hub.engine.endpoint_health(),
            hub.dead_letters_of(&run).await,
            futures_levels(&shop, &skus).await
        );
    }
    println!(
        "MEDUSA OUTAGE: down {} ms, {queued} deliveries queued, drained {} ms after Medusa was back",
        (up_at - down_at).as_millis(),
        up_at.elapsed().as_millis()
    );
    for sku in &skus {
        assert_eq!(
            shop.variants(sku).await.len(),
            1,
            "{sku}: exactly one product"
        );
    }
    assert!(
        hub.dead_letters_of(&run).await.is_empty(),
        "{:?}",
        hub.dead_letters_of(&run).await
    );
    hub.stop().await;
}

async fn futures_levels(
    shop: &Medusa,
    skus: &[String],
) -> Vec<(String, usize, Option<(i64, i64)>)> {
    let mut out = Vec::new();
    for sku in skus {
        out.push((
            sku.clone(),
            shop.variants(sku).await.len(),
            shop.level(sku, "WH").await,
        ));
    }
    out
}

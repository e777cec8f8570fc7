//! A 5,000-product migration from a real Tryton to a real Vendure with `concord backfill`,
//! killed part-way (SIGKILL) and resumed: every SKU must end up in Vendure exactly once.
//!
//! Runs when `CONCORD_TRYTON_URL` and `CONCORD_VENDURE_URL` are set (servers started and seeded
//! with `scripts/tryton/*` and `scripts/vendure/*`); skipped loudly otherwise. Prints the
//! duration and the write calls per product (`MIGRATION:` line).

use concord_connectors::tryton::TrytonConnector;
use concord_connectors::vendure::VendureConnector;
use concord_engine::connector::EndpointSpec;
use concord_testkit::real::{missing, ran};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PRODUCTS: usize = 5_000;
/// Products created per Tryton `create` call (one JSON-RPC request each). Tryton on SQLite
/// fails larger ones: at 100 its SQL overflows SQLite's parser stack ("parser stack overflow"),
/// at 250 Python's recursion limit.
const SEED_BATCH: usize = 50;
const FLOW: &str = "products-to-vendure";

struct Env {
    tryton_url: String,
    db: String,
    tryton_password: String,
    vendure_url: String,
    vendure_password: String,
}

fn env() -> Option<Env> {
    let (Ok(tryton_url), Ok(vendure_url)) = (
        std::env::var("CONCORD_TRYTON_URL"),
        std::env::var("CONCORD_VENDURE_URL"),
    ) else {
        missing(
            "\n!!!!! SKIPPED: CONCORD_TRYTON_URL and CONCORD_VENDURE_URL are not both set, so the\n\
             !!!!! 5,000-product Tryton -> Vendure migration did not run. Start both with\n\
             !!!!! scripts/tryton/* and scripts/vendure/* (see README) and set those variables.\n"
        );
        return None;
    };
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    ran("migration");
    Some(Env {
        tryton_url,
        db: var("TRYTON_DB", "concord"),
        tryton_password: var("TRYTON_ADMIN_PASSWORD", "admin"),
        vendure_url,
        vendure_password: var("VENDURE_SUPERADMIN_PASSWORD", "superadmin"),
    })
}

fn spec(name: &str, connector: &str, url: &str, options: Value) -> EndpointSpec {
    EndpointSpec {
        name: name.into(),
        connector: connector.into(),
        url: url.into(),
        webhook_secret: None,
        timeout: Duration::from_secs(30),
        max_response_bytes: concord_engine::outbound::DEFAULT_MAX_RESPONSE_BYTES,
        allow_insecure_http: false,
        options,
    }
}

/// Create `PRODUCTS` goods products `<prefix>NNNN` in Tryton, `SEED_BATCH` per JSON-RPC call.
async fn seed(e: &Env, prefix: &str) -> Duration {
    let erp = TrytonConnector::new(&spec(
        "erp",
        "tryton",
        &e.tryton_url,
        json!({"database": e.db, "password": e.tryton_password}),
    ))
    .expect("tryton connector");
    let t0 = Instant::now();
    let unit = erp
        .rpc()
        .search_read(
            "product.uom",
            json!([["name", "=", "Unit"]]),
            None,
            json!([["id", "ASC"]]),
            &["id"],
        )
        .await
        .expect("uom");
    let unit = unit[0]["id"].as_i64().expect("unit id");
    for start in (0..PRODUCTS).step_by(SEED_BATCH) {
        let vals: Vec<Value> = (start..(start + SEED_BATCH).min(PRODUCTS))
            .map(|i| {
                json!({"name": format!("Migrated {prefix}{i:04}"), "code": format!("{prefix}{i:04}"),
                       "type": "goods", "default_uom": unit, "salable": true, "sale_uom": unit,
                       "list_price": {"__class__": "Decimal", "decimal": format!("{}.{:02}", 10 + i % 90, i % 100)},
                       "products": [["create", [{}]]]})
            })
            .collect();
        erp.rpc()
            .model("product.template", "create", vec![Value::Array(vals)])
            .await
            .unwrap_or_else(|err| panic!("product.template.create: {err}"));
    }
    t0.elapsed()
}

fn config(e: &Env, dir: &Path, prefix: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[store]
path = "hub.sqlite"

[server]
listen = "127.0.0.1:0"

[endpoints.erp]
connector = "tryton"
url = "{tryton}"
timeout = "30s"
[endpoints.erp.options]
database = "{db}"
user = "admin"
password = "{tpw}"

[endpoints.vendure]
connector = "vendure"
url = "{vendure}"
timeout = "30s"
[endpoints.vendure.options]
user = "superadmin"
password = "{vpw}"
stock_locations = {{ default = "Default Stock Location" }}

[[flows]]
name = "{FLOW}"
kind = "product"
pattern = "migration"
mode = "migration"
from = ["erp"]
to = ["vendure"]
page_size = 20
filter = '.sku | startswith("{prefix}")'
"#,
        tryton = e.tryton_url,
        db = e.db,
        tpw = e.tryton_password,
        vendure = e.vendure_url,
        vpw = e.vendure_password,
    );
    let path = dir.join("migration.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn backfill(cfg: &Path, dir: &Path, run: &str) -> Child {
    let err = std::fs::File::create(dir.join(format!("{run}.stderr"))).expect("stderr file");
    let out = std::fs::File::create(dir.join(format!("{run}.stdout"))).expect("stdout file");
    Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(["backfill", "-c"])
        .arg(cfg)
        .arg(FLOW)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn concord backfill")
}

/// Every variant in Vendure whose SKU contains `prefix`: SKU → how many variants carry it.
async fn vendure_skus(shop: &VendureConnector, prefix: &str) -> (u64, BTreeMap<String, usize>) {
    const PAGE: usize = 500;
    let mut seen = BTreeMap::new();
    let mut skip = 0;
    loop {
        let d = shop
            .gql()
            .query(
                "query($s:String!,$skip:Int!,$take:Int!){ productVariants(options:{filter:{sku:{contains:$s}}, skip:$skip, take:$take, sort:{id:ASC}}){ totalItems items { sku } } }",
                json!({"s": prefix, "skip": skip, "take": PAGE}),
            )
            .await
            .unwrap_or_else(|err| panic!("productVariants: {err}"));
        let total = d["productVariants"]["totalItems"].as_u64().unwrap_or(0);
        let items = d["productVariants"]["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for it in &items {
            if let Some(s) = it["sku"].as_str() {
                *seen.entry(s.to_string()).or_insert(0) += 1;
            }
        }
        skip += items.len();
        if items.len() < PAGE {
            return (total, seen);
        }
    }
}

async fn vendure_count(shop: &VendureConnector, prefix: &str) -> u64 {
    shop.gql()
        .query(
            "query($s:String!){ productVariants(options:{filter:{sku:{contains:$s}}, take:1}){ totalItems } }",
            json!({"s": prefix}),
        )
        .await
        .map(|d| d["productVariants"]["totalItems"].as_u64().unwrap_or(0))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_products_migrate_from_tryton_to_vendure_once_despite_a_kill() {
    let Some(e) = env() else { return };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let prefix = format!("MIG5K-{stamp}-");
    let dir = tempfile::tempdir().expect("tmp");
    let shop = VendureConnector::new(&spec(
        "vendure",
        "vendure",
        &e.vendure_url,
        json!({"password": e.vendure_password,
               "stock_locations": {"default": "Default Stock Location"}}),
    ))
    .expect("vendure connector");

    let seeded = seed(&e, &prefix).await;
    eprintln!(
        "seeded {PRODUCTS} products in Tryton in {:.1} s ({SEED_BATCH} per create call)",
        seeded.as_secs_f64()
    );
    let cfg = config(&e, dir.path(), &prefix);

    // First run: killed (SIGKILL) once some products reached Vendure.
    let t0 = Instant::now();
    let mut first = backfill(&cfg, dir.path(), "first");
    let deadline = Instant::now() + Duration::from_secs(600);
    let killed_at = loop {
        let n = vendure_count(&shop, &prefix).await;
        if n >= 100 {
            break n;
        }
        if let Ok(Some(status)) = first.try_wait() {
            let log = std::fs::read_to_string(dir.path().join("first.stderr")).unwrap_or_default();
            panic!("backfill exited before the kill ({status}); {n} products in Vendure\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "no product reached Vendure in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    first.kill().expect("SIGKILL the backfill");
    let _ = first.wait();
    let first_secs = t0.elapsed().as_secs_f64();
    eprintln!("killed the backfill after {first_secs:.1} s with {killed_at}+ products in Vendure");
    // Small pages (20) make the listing slower than the first deliveries: the kill lands
    // part-way through it, so the second run resumes from a stored page token.

    // Second run: resumes from the stored cursor and finishes.
    let t1 = Instant::now();
    let mut second = backfill(&cfg, dir.path(), "second");
    let deadline = Instant::now() + Duration::from_secs(1200);
    let status = loop {
        if let Some(s) = second.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("the resumed backfill did not finish in 20 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let second_secs = t1.elapsed().as_secs_f64();
    let out = std::fs::read_to_string(dir.path().join("second.stdout")).unwrap_or_default();
    let err = std::fs::read_to_string(dir.path().join("second.stderr")).unwrap_or_default();
    assert!(status.success(), "resumed backfill: {status}\n{out}\n{err}");
    let resumed = err.lines().find(|l| l.contains("resuming")).unwrap_or("");
    assert!(
        resumed.contains("erp at ") && !resumed.contains("erp at done"),
        "the second run resumes from a page token part-way through the listing\n{err}"
    );

    let (total, seen) = vendure_skus(&shop, &prefix).await;
    let missing: Vec<String> = (0..PRODUCTS)
        .map(|i| format!("{prefix}{i:04}"))
        .filter(|s| !seen.contains_key(s))
        .take(10)
        .collect();
    let twice: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| s)
        .collect();
    assert!(
        missing.is_empty(),
        "missing in Vendure (first 10): {missing:?}"
    );
    assert!(twice.is_empty(), "more than one variant: {twice:?}");
    assert_eq!(total as usize, PRODUCTS, "variants with the prefix");
    assert_eq!(seen.len(), PRODUCTS);

    // A finished backfill says so and does nothing.
    let mut third = backfill(&cfg, dir.path(), "third");
    let st = third.wait().expect("third run");
    let err3 = std::fs::read_to_string(dir.path().join("third.stderr")).unwrap_or_default();
    assert!(st.success() && err3.contains("already finished"), "{err3}");

    let calls = out
        .lines()
        .find(|l| l.contains("write calls"))
        .unwrap_or("")
        .trim()
        .to_string();
    println!(
        "MIGRATION: {PRODUCTS} products Tryton -> Vendure in {:.1} s (first run {first_secs:.1} s, killed with {killed_at}+ in Vendure; {}; resumed run {second_secs:.1} s = {:.1} products/s); resumed run: {calls}",
        first_secs + second_secs,
        resumed.trim(),
        (PRODUCTS as f64 - killed_at as f64) / second_secs
    );
}

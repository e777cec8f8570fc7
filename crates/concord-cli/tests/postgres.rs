//! `concord run` on PostgreSQL (`[store] url`), end to end, as a separate process: the test
//! creates a database of its own on the server named by `CONCORD_TEST_POSTGRES_URL` (dropped
//! at the end), writes a config whose `[store] url` reads that database's URL from the
//! environment (`${…}`), and runs the real binary against a sandbox ERP and two sandbox
//! storefronts that check out through the hub's stock pool. It proves, on PostgreSQL:
//!
//! - a second `concord run` on the same database refuses to start (exit status ≠ 0, naming the
//!   other instance), while read-only commands (`concord status`) work beside the running one;
//! - stock from the ERP reaches the storefronts;
//! - concurrent checkouts on a hot SKU reserve exactly its stock, never more;
//! - every order reaches the ERP exactly once;
//! - a standby (`concord run --standby`, same config) waits while the active instance runs;
//! - `kill -9` of the active instance while delivering: the standby takes over (the dead
//!   instance's lock went with its connection) and loses nothing and duplicates nothing: every
//!   order in the ERP exactly once, checked on its sales orders and on its write log (the ERP
//!   is idempotent on the reference).
//!
//! Without `CONCORD_TEST_POSTGRES_URL` it skips loudly on a workstation and fails under CI
//! (`concord_testkit::real::missing`). Every wait is a condition polled under a deadline.

mod support;

use concord_sandbox::erp::{ErpHandle, ErpOptions};
use concord_sandbox::shop::ShopHandle;
use concord_sandbox::Faults;
use concord_testkit::sandbox::{start_erp, start_shop};
use concord_testkit::{free_port, wait_until};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Hub;

const URL_VAR: &str = "CONCORD_TEST_POSTGRES_URL";
/// The variable the config's `[store] url = "${…}"` reads.
const STORE_URL_VAR: &str = "CONCORD_PG_E2E_STORE_URL";
const DEADLINE: Duration = Duration::from_secs(60);
const SECRET: &str = "pg-e2e-secret";
const SKUS: usize = 6;
const HOT: &str = "SKU-0001";
const HOT_STOCK: i64 = 7;
const HOT_CLIENTS: usize = 20;
const ORDERS: usize = 40;

fn url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            concord_testkit::real::missing(&format!(
                "\n!!!!! SKIPPED the PostgreSQL end-to-end test: {URL_VAR} is not set \
                 (scripts/test.sh sets it; or start scripts/postgres/start.sh)\n"
            ));
            None
        }
    }
}

/// `url` with its database replaced by `db` (URL form: `postgres://…/DB[?…]`).
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A database of the test's own, dropped (with its sessions) however the test ends.
struct Database {
    server_url: String,
    name: String,
}

impl Database {
    async fn create(server_url: &str) -> Database {
        let name = format!("concord_e2e_{}_{}", std::process::id(), fastrand::u32(..));
        let client = connect(server_url).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        Database {
            server_url: server_url.to_string(),
            name,
        }
    }

    fn url(&self) -> String {
        with_database(&self.server_url, &self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (url, name) = (self.server_url.clone(), self.name.clone());
        // `Drop` cannot await: a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                connect(&url)
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop the test database {}: {e}", self.name),
            Err(_) => eprintln!("dropping the test database {} panicked", self.name),
        }
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    client
}

fn concord(store_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_concord"));
    c.env_remove("CONCORD_CONFIG")
        .env("CONCORD_LOG", "warn")
        .env(STORE_URL_VAR, store_url)
        .stdin(Stdio::null());
    c
}

fn config_text(port: u16, erp: &ErpHandle, web1: &ShopHandle, web2: &ShopHandle) -> String {
    format!(
        r#"
[store]
url = "${{{STORE_URL_VAR}}}"

[server]
listen = "127.0.0.1:{port}"

[engine]
backoff_base = "100ms"
backoff_cap = "1s"
breaker_threshold = 3
breaker_open = "500ms"
breaker_max_open = "2s"
max_attempts = 50

[endpoints.erp]
connector = "sandbox-erp"
url = "{erp}"
webhook_secret = "{SECRET}"
timeout = "5s"

[endpoints.web1]
connector = "sandbox-shop"
url = "{web1}"
webhook_secret = "{SECRET}"
timeout = "5s"

[endpoints.web2]
connector = "sandbox-shop"
url = "{web2}"
webhook_secret = "{SECRET}"
timeout = "5s"

[[flows]]
name = "stock-to-stores"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
poll = "1s"
from = ["erp"]
to = ["web1", "web2"]
[flows.map_out]
"*" = '{{sku, location, available: ([.on_hand - .committed, 0] | max)}}'

[[flows]]
name = "customers-to-erp"
kind = "customer"
pattern = "aggregation"
mode = "realtime"
poll = "1s"
from = ["web1", "web2"]
to = ["erp"]

[[flows]]
name = "orders-to-erp"
kind = "order"
pattern = "aggregation"
mode = "realtime"
poll = "1s"
from = ["web1", "web2"]
to = ["erp"]

[inventory]
source = "erp"
reservation_ttl = "60s"

[inventory.channels.web1]
locations = ["WH1"]

[inventory.channels.web2]
locations = ["WH1"]
"#,
        erp = erp.base_url(),
        web1 = web1.base_url(),
        web2 = web2.base_url(),
    )
}

async fn healthy(client: &reqwest::Client, port: u16) -> bool {
    match client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

async fn wait_healthy(client: &reqwest::Client, port: u16, hub: &mut Hub) {
    wait_until("`concord run` answers /healthz", DEADLINE, async || {
        hub.assert_alive();
        healthy(client, port).await
    })
    .await;
}

/// What the pool lets `channel` sell of `sku`, per the hub's storefront API.
async fn ats(client: &reqwest::Client, port: u16, channel: &str, sku: &str) -> Option<i64> {
    let resp = client
        .get(format!(
            "http://127.0.0.1:{port}/v1/availability?channel={channel}&sku={sku}"
        ))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: serde_json::Value = resp.json().await.ok()?;
    v["skus"][0]["ats"].as_i64()
}

fn sku(i: usize) -> String {
    format!("SKU-{:04}", i % SKUS + 1)
}

/// Sales orders per reference, and `POST /api/sales-orders` per `channel/number`.
fn erp_counts(erp: &ErpHandle) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut orders: BTreeMap<String, usize> = BTreeMap::new();
    for so in erp.sales_orders() {
        *orders.entry(so.reference.clone()).or_default() += 1;
    }
    let mut posts: BTreeMap<String, usize> = BTreeMap::new();
    for w in erp.write_log() {
        if w.method == "POST" && w.path == "/api/sales-orders" {
            let channel = w.body["channel"].as_str().unwrap_or("?");
            let number = w.body["number"].as_str().unwrap_or("?");
            *posts.entry(format!("{channel}/{number}")).or_default() += 1;
        }
    }
    (orders, posts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concord_run_on_postgres_reserves_exactly_and_survives_kill_9() {
    let Some(server_url) = url() else { return };
    concord_testkit::real::ran("postgres_e2e");
    let db = Database::create(&server_url).await;
    let store_url = db.url();

    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let erp = start_erp(&base, SECRET, ErpOptions::default()).await;
    erp.seed(SKUS, &["WH1"], 100).expect("seed the ERP");
    erp.adjust_stock(HOT, "WH1", HOT_STOCK - 100)
        .expect("make the hot SKU scarce");
    let web1 = start_shop(&base, SECRET, "web1", Some(None)).await;
    let web2 = start_shop(&base, SECRET, "web2", Some(None)).await;
    let shops: [(&str, &ShopHandle); 2] = [("web1", &web1), ("web2", &web2)];

    let config = dir.path().join("concord.toml");
    std::fs::write(&config, config_text(port, &erp, &web1, &web2)).expect("write the config");
    let log = dir.path().join("concord.log");
    let client = reqwest::Client::new();
    let mut hub = Hub::spawn_with(concord(&store_url), &config, log.clone());
    wait_healthy(&client, port, &mut hub).await;

    // A second instance on the same database is refused (another port, so only the database
    // is shared), and says why.
    let second_config = dir.path().join("second.toml");
    std::fs::write(&second_config, config_text(free_port(), &erp, &web1, &web2))
        .expect("write the second config");
    let second = tokio::process::Command::from(concord(&store_url))
        .arg("run")
        .arg("-c")
        .arg(&second_config)
        .output()
        .await
        .expect("run a second `concord run`");
    let second_err = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "a second instance started on the same database: {second_err}"
    );
    assert!(
        second_err.contains("another Concord instance is running on this database")
            && second_err.contains("not supported yet"),
        "the refusal says why: {second_err}"
    );
    assert!(
        !second_err.contains(&store_url),
        "the refusal must not print the store URL: {second_err}"
    );
    hub.assert_alive();

    // Stock from the ERP reaches the pool and the storefronts.
    wait_until(
        "the pool has the ERP's stock of every SKU for both channels",
        DEADLINE,
        async || {
            hub.assert_alive();
            for i in 0..SKUS {
                let expected = if sku(i) == HOT { HOT_STOCK } else { 100 };
                for channel in ["web1", "web2"] {
                    if ats(&client, port, channel, &sku(i)).await != Some(expected) {
                        return false;
                    }
                }
            }
            true
        },
    )
    .await;
    wait_until(
        "both storefronts show stock of every SKU",
        DEADLINE,
        async || {
            (0..SKUS).all(|i| {
                let expected = if sku(i) == HOT { HOT_STOCK } else { 100 };
                shops
                    .iter()
                    .all(|(_, s)| s.inventory(&sku(i)).values().any(|n| *n == expected))
            })
        },
    )
    .await;

    // Concurrent checkouts on the hot SKU from both stores: exactly its stock is sold.
    let attempts = (0..HOT_CLIENTS).map(|n| {
        let shop = shops[n % 2].1;
        async move {
            shop.checkout(
                &format!("hot{n:02}@example.com"),
                &format!("Hot {n}"),
                &[(HOT, 1)],
            )
            .await
        }
    });
    let outcomes = futures::future::join_all(attempts).await;
    let sold: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|p| p.key.clone()))
        .collect();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(concord_sandbox::shop::ShopError::OutOfStock { .. })))
        .count();
    assert_eq!(
        sold.len() as i64,
        HOT_STOCK,
        "successful reservations of {HOT} must equal its stock exactly: {outcomes:?}"
    );
    assert_eq!(
        sold.len() + refused,
        HOT_CLIENTS,
        "every other checkout is refused as out of stock: {outcomes:?}"
    );
    assert_eq!(ats(&client, port, "web1", HOT).await, Some(0), "sold out");

    // Those orders reach the ERP, once each, and the ERP commits exactly the stock.
    let hot_in = concord_testkit::try_wait_until(DEADLINE, async || {
        hub.assert_alive();
        let (orders, _) = erp_counts(&erp);
        sold.iter().all(|k| orders.contains_key(k))
    })
    .await;
    if !hot_in {
        let (orders, _) = erp_counts(&erp);
        let status = tokio::process::Command::from(concord(&store_url))
            .args(["status", "-c"])
            .arg(&config)
            .output()
            .await
            .expect("run `concord status`");
        panic!(
            "the hot orders are not all in the ERP: sold {sold:?}, ERP has {:?}\nstatus:\n{}{}\nhub output:\n{}",
            orders.keys().collect::<Vec<_>>(),
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&status.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    wait_until(
        "the ERP has committed the hot SKU's stock",
        DEADLINE,
        async || {
            erp.stock(HOT, "WH1")
                .is_some_and(|s| s.committed == HOT_STOCK)
        },
    )
    .await;

    // A read-only command works beside the running instance (it takes no lock).
    let status = tokio::process::Command::from(concord(&store_url))
        .args(["status", "-c"])
        .arg(&config)
        .output()
        .await
        .expect("run `concord status`");
    assert!(
        status.status.success(),
        "`concord status` beside the running hub: {}",
        String::from_utf8_lossy(&status.stderr)
    );

    // A standby on the same config (same port, same database) waits while this one runs.
    let standby_log = dir.path().join("standby.log");
    let mut standby = Hub::spawn_with_args(
        concord(&store_url),
        &config,
        standby_log.clone(),
        &["--standby"],
    );
    wait_until("the second instance stands by", DEADLINE, async || {
        standby.assert_alive_after("starting as a standby");
        standby.log().contains("standing by")
    })
    .await;
    hub.assert_alive();

    // kill -9 while delivering: every ERP call slowed so deliveries take a while; a burst of
    // checkouts (each reserved through the hub); the hub killed once some but not all are in.
    erp.set_faults(Faults {
        latency_ms: 100,
        ..Faults::default()
    });
    let before = erp.sales_orders().len();
    let burst = (0..ORDERS).map(|n| {
        let (name, shop) = shops[n % 2];
        // Never the hot SKU (sold out): SKU-0002 onwards.
        let line = sku(1 + n % (SKUS - 1));
        async move {
            shop.checkout(
                &format!("buyer{:02}@example.com", n % 10),
                &format!("Buyer {}", n % 10),
                &[(line.as_str(), 1)],
            )
            .await
            .unwrap_or_else(|e| panic!("checkout {n} at {name} refused: {e}"))
        }
    });
    let mut placed = sold.clone();
    placed.extend(
        futures::future::join_all(burst)
            .await
            .into_iter()
            .map(|o| o.key),
    );
    let until = Instant::now() + DEADLINE;
    loop {
        let n = erp.sales_orders().len();
        if n >= before + ORDERS / 4 {
            break;
        }
        hub.assert_alive();
        assert!(
            Instant::now() < until,
            "the ERP got only {} of {ORDERS} orders in {DEADLINE:?}",
            n - before
        );
        // Polling for the kill window (a moment to aim at, not a condition to wait for).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hub.kill();
    let killed_at = Instant::now();
    let at_kill = erp.sales_orders().len();
    assert!(
        at_kill < placed.len(),
        "killed too late: the ERP already had all {} orders",
        placed.len()
    );
    eprintln!(
        "killed `concord run` with {} of {ORDERS} orders of the burst in the ERP",
        at_kill - before
    );
    erp.set_faults(Faults::default());

    // The dead instance's lock went with its connection: the standby takes over.
    hub = standby;
    wait_healthy(&client, port, &mut hub).await;
    assert!(
        hub.log().contains("took over the instance lock"),
        "the standby says it took over: {}",
        hub.log()
    );
    eprintln!(
        "STANDBY TAKEOVER: serving {} ms after the active instance was killed",
        killed_at.elapsed().as_millis()
    );
    let delivered = concord_testkit::try_wait_until(DEADLINE, async || {
        hub.assert_alive();
        let (orders, _) = erp_counts(&erp);
        placed.iter().all(|k| orders.contains_key(k))
    })
    .await;
    if !delivered {
        let (orders, _) = erp_counts(&erp);
        let missing: Vec<&String> = placed.iter().filter(|k| !orders.contains_key(*k)).collect();
        let status = tokio::process::Command::from(concord(&store_url))
            .args(["status", "-c"])
            .arg(&config)
            .output()
            .await
            .expect("run `concord status`");
        panic!(
            "the standby did not deliver {} of {} orders: {missing:?}\nstatus:\n{}\nhub output:\n{}",
            missing.len(),
            placed.len(),
            String::from_utf8_lossy(&status.stdout),
            hub.log()
        );
    }

    // Exactly once each: in the ERP's orders and in what the ERP was asked to create.
    let (orders, posts) = erp_counts(&erp);
    for k in &placed {
        assert_eq!(orders.get(k), Some(&1), "order {k} in the ERP exactly once");
        assert_eq!(posts.get(k), Some(&1), "order {k} created exactly once");
    }
    assert_eq!(
        orders.len(),
        placed.len(),
        "the ERP has orders no store placed"
    );
    assert_eq!(posts.len(), placed.len(), "creates in the ERP: {posts:?}");
    let hot = erp.stock(HOT, "WH1").expect("the hot SKU's stock");
    assert!(
        hot.committed <= hot.on_hand,
        "the ERP oversold {HOT}: {hot:?}"
    );

    for text in [std::fs::read_to_string(&log).unwrap_or_default(), hub.log()] {
        assert!(
            !text.contains(&store_url),
            "the hubs' output must not print the store URL"
        );
    }
    hub.kill();
    erp.shutdown().await;
    web1.shutdown().await;
    web2.shutdown().await;
}

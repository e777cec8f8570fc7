//! Fault test: `kill -9` while delivering (design.md §3: "a crash at any point loses nothing and
//! duplicates no order").
//!
//! The test process runs a sandbox ERP (every API call slowed down so deliveries take time) and
//! two sandbox storefronts, writes a configuration for them and runs the real `concord` binary
//! on it as a child process. Twice, it places a burst of orders in the stores and SIGKILLs the
//! binary as soon as the ERP has received some but not all of them, changes stock in the ERP
//! while the hub is dead (the emulators' webhooks to it fail and are dropped), and starts the
//! binary again on the same configuration and store. At the end every store order must be in
//! the ERP exactly once — checked on the ERP's sales orders *and* on its write log, because the
//! ERP itself is idempotent on the reference and would hide a second create — every stock
//! position at WH1 must agree between the ERP and both stores, `concord status` must succeed and
//! `concord dlq list` must show no dead letter.
//!
//! It never sleeps and hopes: every wait is a condition polled under a generous deadline.

mod support;

use concord_sandbox::erp::{ErpHandle, ErpOptions};
use concord_sandbox::shop::ShopHandle;
use concord_sandbox::Faults;
use concord_testkit::sandbox::{start_erp, start_shop};
use concord_testkit::{free_port, try_wait_until, wait_until};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::Hub;

const DEADLINE: Duration = Duration::from_secs(30);
const SECRET: &str = "crash-test-secret";
const SKUS: usize = 10;
const ORDERS_PER_ROUND: usize = 60;
/// Checkouts made while the hub is dead (their webhooks are lost for good).
const ORDERS_WHILE_DEAD: usize = 10;
const ROUNDS: usize = 2;

fn config_text(
    store: &Path,
    port: u16,
    erp: &ErpHandle,
    web1: &ShopHandle,
    web2: &ShopHandle,
) -> String {
    format!(
        r#"
[store]
path = "{store}"

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
name = "catalog-migration"
kind = "product"
pattern = "migration"
mode = "migration"
from = ["erp"]
to = ["web1", "web2"]

# Webhooks lost while the hub is dead are recovered by the 1 s polls.
[[flows]]
name = "stock-broadcast"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
poll = "1s"
from = ["erp"]
to = ["web1", "web2"]
filter = '.location == "WH1"'
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

[ownership.product]
default = "erp"
"#,
        store = store.display(),
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

fn sku(i: usize) -> String {
    format!("SKU-{:04}", i % SKUS + 1)
}

/// Every WH1 position where a store disagrees with the ERP's `on_hand − committed`.
fn stock_mismatches(erp: &ErpHandle, shops: &[(&str, &ShopHandle)]) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..SKUS {
        let sku = sku(i);
        let Some(st) = erp.stock(&sku, "WH1") else {
            out.push(format!("{sku}@WH1 missing in the ERP"));
            continue;
        };
        let expected = (st.on_hand - st.committed).max(0);
        for (name, shop) in shops {
            let got = shop.inventory(&sku).get("WH1").copied();
            if got != Some(expected) {
                out.push(format!("{sku}@WH1 at {name}: {got:?}, ERP says {expected}"));
            }
        }
    }
    out
}

/// `count` checkouts, alternating between the stores; `first` numbers them across calls.
fn place_orders(shops: &[(&str, &ShopHandle)], first: usize, count: usize) {
    for n in first..first + count {
        let (name, shop) = shops[n % 2];
        let sku = sku(n);
        let lines = [(sku.as_str(), 1 + (n % 2) as i64)];
        shop.place_order(
            &format!("buyer{:02}@example.com", n % 25),
            &format!("Buyer {}", n % 25),
            &lines,
        )
        .unwrap_or_else(|e| panic!("checkout {n} at {name} refused: {e}"));
    }
}

/// References of every order placed in the stores (`channel/number`).
fn shop_references(shops: &[(&str, &ShopHandle)]) -> Vec<String> {
    shops
        .iter()
        .flat_map(|(name, s)| {
            s.orders()
                .into_iter()
                .map(move |o| format!("{name}/{}", o.number))
        })
        .collect()
}

async fn run_cli(args: &[&str], config: &Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(args)
        .arg("-c")
        .arg(config)
        .output()
        .await
        .expect("run the concord binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_delivering_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let erp = start_erp(&base, SECRET, ErpOptions::default()).await;
    erp.seed(SKUS, &["WH1", "WH2"], 100).expect("seed the ERP");
    let mut shop_handles = Vec::new();
    for name in ["web1", "web2"] {
        shop_handles.push(start_shop(&base, SECRET, name, None).await);
    }
    let shops: Vec<(&str, &ShopHandle)> =
        vec![("web1", &shop_handles[0]), ("web2", &shop_handles[1])];

    let config = dir.path().join("concord.toml");
    std::fs::write(
        &config,
        config_text(
            &dir.path().join("concord.sqlite"),
            port,
            &erp,
            &shop_handles[0],
            &shop_handles[1],
        ),
    )
    .expect("write the config");
    let log = dir.path().join("concord.log");
    let client = reqwest::Client::new();

    let mut hub = Hub::spawn(&config, log.clone());
    wait_healthy(&client, port, &mut hub).await;
    // The stores can sell once the ERP's stock has reached them.
    wait_until(
        "both stores have the ERP's stock at WH1",
        DEADLINE,
        async || stock_mismatches(&erp, &shops).is_empty(),
    )
    .await;
    // From now on every ERP API call takes 30 ms, so an order delivery is several round trips.
    erp.set_faults(Faults {
        latency_ms: 30,
        ..Faults::default()
    });

    let mut placed = 0usize;
    let mut kills = Vec::new();
    for round in 0..ROUNDS {
        let before = erp.sales_orders().len();
        place_orders(&shops, placed, ORDERS_PER_ROUND);
        placed += ORDERS_PER_ROUND;

        // Kill once the ERP has a third, but not all, of this round's orders. (5 ms polling
        // here: the window is what we are aiming at, not a condition we wait for.)
        let until = Instant::now() + DEADLINE;
        loop {
            let n = erp.sales_orders().len();
            if n >= before + ORDERS_PER_ROUND / 3 {
                break;
            }
            hub.assert_alive();
            assert!(
                Instant::now() < until,
                "round {round}: the ERP got only {} of {ORDERS_PER_ROUND} orders in {DEADLINE:?}",
                n - before
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        hub.kill();
        let at_kill = erp.sales_orders().len();
        kills.push((round, at_kill - before));
        assert!(
            at_kill < placed,
            "round {round}: the hub was killed too late — the ERP already had all {placed} orders"
        );
        eprintln!(
            "round {round}: killed `concord run` with {} of {ORDERS_PER_ROUND} of this round's orders in the ERP",
            at_kill - before
        );

        // While the hub is dead: stock moves in the ERP and more checkouts happen in the stores.
        // Their webhooks fail; wait until every emulator has given up on some of them (dropped
        // after the last retry), so only the polls can bring those changes in: a real gap.
        let dropped = |erp: &ErpHandle| {
            (
                erp.counters().webhooks_dropped,
                shops
                    .iter()
                    .map(|(_, s)| s.counters().webhooks_dropped)
                    .collect::<Vec<_>>(),
            )
        };
        let (erp_dropped, shops_dropped) = dropped(&erp);
        for i in 0..SKUS {
            let delta = if i % 3 == 0 { -2 } else { 5 };
            erp.adjust_stock(&sku(i), "WH1", delta)
                .expect("adjust stock");
        }
        place_orders(&shops, placed, ORDERS_WHILE_DEAD);
        placed += ORDERS_WHILE_DEAD;
        wait_until(
            "the ERP and both stores have dropped webhooks the dead hub could not take",
            DEADLINE,
            async || {
                let (e, s) = dropped(&erp);
                e > erp_dropped && s.iter().zip(&shops_dropped).all(|(now, was)| now > was)
            },
        )
        .await;
        // Nothing was delivered after the kill.
        assert_eq!(
            erp.sales_orders().len(),
            at_kill,
            "a dead hub delivered an order"
        );

        hub = Hub::spawn(&config, log.clone());
        wait_healthy(&client, port, &mut hub).await;
        // The restarted hub finishes the round (the shops' webhooks that failed meanwhile are
        // recovered by the polls), so the next round's kill lands on its own orders.
        wait_until(
            "the restarted hub has delivered every order so far",
            DEADLINE,
            async || erp.sales_orders().len() >= placed,
        )
        .await;
    }

    // Convergence: every store order in the ERP, every WH1 position agreeing.
    let all = shop_references(&shops);
    assert_eq!(all.len(), placed);
    let converged = try_wait_until(DEADLINE, async || {
        hub.assert_alive();
        erp.sales_orders().len() >= placed && stock_mismatches(&erp, &shops).is_empty()
    })
    .await;
    if !converged {
        let in_erp = erp.sales_orders().len();
        let mismatches = stock_mismatches(&erp, &shops);
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        panic!(
            "no convergence after {DEADLINE:?}: {in_erp} of {placed} orders in the ERP; \
             stock mismatches: {mismatches:?}\nhub output:\n{log}"
        );
    }

    // Exactly once per reference, in the ERP's orders…
    let mut per_ref: BTreeMap<String, usize> = BTreeMap::new();
    for so in erp.sales_orders() {
        *per_ref.entry(so.reference.clone()).or_default() += 1;
    }
    for r in &all {
        assert_eq!(
            per_ref.get(r),
            Some(&1),
            "order {r} is not in the ERP exactly once"
        );
    }
    assert_eq!(per_ref.len(), placed, "the ERP has orders no store placed");
    // …and in what the ERP was asked to do: one create per reference. The ERP is idempotent on
    // the reference, so only the write log shows a hub that created without looking up first.
    let mut posts: BTreeMap<String, usize> = BTreeMap::new();
    for w in erp.write_log() {
        if w.method == "POST" && w.path == "/api/sales-orders" {
            let channel = w.body["channel"].as_str().unwrap_or("?");
            let number = w.body["number"].as_str().unwrap_or("?");
            *posts.entry(format!("{channel}/{number}")).or_default() += 1;
        }
    }
    let repeated: Vec<_> = posts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "orders created more than once: {repeated:?}"
    );
    assert_eq!(posts.len(), placed, "creates in the ERP: {posts:?}");
    // Customers too: one per e-mail.
    let mut emails: BTreeMap<String, usize> = BTreeMap::new();
    for c in erp.customers() {
        *emails
            .entry(c["email"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    assert!(
        emails.values().all(|n| *n == 1),
        "duplicate customers: {emails:?}"
    );

    // The operator's view: status works, no dead letter.
    let status = run_cli(&["status"], &config).await;
    assert!(
        status.status.success(),
        "`concord status` failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let dlq = run_cli(&["dlq", "list"], &config).await;
    assert!(
        dlq.status.success(),
        "`concord dlq list` failed: {}",
        String::from_utf8_lossy(&dlq.stderr)
    );
    let dlq_out = String::from_utf8_lossy(&dlq.stdout);
    assert!(
        dlq_out.contains("no dead letters"),
        "dead letters after the crashes:\n{dlq_out}"
    );

    eprintln!("kills (round, orders in the ERP at the kill): {kills:?}; {placed} orders converged");
    hub.kill();
    erp.shutdown().await;
    for s in &shop_handles {
        s.shutdown().await;
    }
}

/// `concord order KEY --json` (read from the store while the hub runs): the order's history.
async fn order_history(config: &Path, key: &str) -> Option<serde_json::Value> {
    let out = run_cli(&["order", key, "--json"], config).await;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The exact window of design §3's "a crash at any point duplicates no order": the ERP has
/// created the order, but its answer is held back (`Faults::reply_delay_ms`), so the hub never
/// recorded it, and the hub is SIGKILLed right then. Started again, the hub delivers the order
/// again: the connector finds it by its reference and does not create it a second time, and the
/// hub's books (xref, acceptance) catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_the_erp_created_an_order_but_before_the_hub_recorded_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let erp = start_erp(&base, SECRET, ErpOptions::default()).await;
    erp.seed(SKUS, &["WH1"], 100).expect("seed the ERP");
    let mut shop_handles = Vec::new();
    for name in ["web1", "web2"] {
        shop_handles.push(start_shop(&base, SECRET, name, None).await);
    }
    let shops: Vec<(&str, &ShopHandle)> =
        vec![("web1", &shop_handles[0]), ("web2", &shop_handles[1])];
    let config = dir.path().join("concord.toml");
    std::fs::write(
        &config,
        config_text(
            &dir.path().join("concord.sqlite"),
            port,
            &erp,
            &shop_handles[0],
            &shop_handles[1],
        ),
    )
    .expect("write the config");
    let log = dir.path().join("concord.log");
    let client = reqwest::Client::new();
    let mut hub = Hub::spawn(&config, log.clone());
    wait_healthy(&client, port, &mut hub).await;
    wait_until(
        "both stores have the ERP's stock at WH1",
        DEADLINE,
        async || stock_mismatches(&erp, &shops).is_empty(),
    )
    .await;
    let web1 = &shop_handles[0];
    // A first order makes the customer known at the ERP.
    let first = web1
        .place_order("held@example.com", "Held", &[(sku(0).as_str(), 1)])
        .expect("checkout");
    wait_until("the first order is in the ERP", DEADLINE, async || {
        erp.order_by_reference(&first.key).is_some()
    })
    .await;

    // From now on the ERP applies every write but holds its answer for 20 s (the hub's
    // timeout is 5 s): the hub cannot know the order was created.
    erp.set_faults(Faults {
        reply_delay_ms: 20_000,
        ..Faults::default()
    });
    let second = web1
        .place_order("held@example.com", "Held", &[(sku(1).as_str(), 2)])
        .expect("checkout");
    wait_until("the ERP created the second order", DEADLINE, async || {
        erp.order_by_reference(&second.key).is_some()
    })
    .await;
    hub.kill();
    let history = order_history(&config, &second.key)
        .await
        .expect("the hub journaled the order before it died");
    assert_eq!(
        history["order"]["state"], "placed",
        "the hub died before it recorded the ERP's acceptance"
    );

    erp.set_faults(Faults::default());
    let mut hub = Hub::spawn(&config, log.clone());
    wait_healthy(&client, port, &mut hub).await;
    let accepted = try_wait_until(DEADLINE, async || {
        hub.assert_alive();
        order_history(&config, &second.key)
            .await
            .is_some_and(|h| h["order"]["state"] == "accepted")
    })
    .await;
    if !accepted {
        let h = order_history(&config, &second.key).await;
        panic!("the hub did not record the ERP's acceptance after the restart: {h:#?}");
    }
    let posts = erp
        .write_log()
        .iter()
        .filter(|w| {
            w.method == "POST"
                && w.path == "/api/sales-orders"
                && w.body["number"] == second.number.as_str()
        })
        .count();
    assert_eq!(
        posts, 1,
        "created once: the retry found it by its reference"
    );
    let copies = erp
        .sales_orders()
        .iter()
        .filter(|o| o.reference == second.key)
        .count();
    assert_eq!(copies, 1);
    let dlq = run_cli(&["dlq", "list"], &config).await;
    let dlq_out = String::from_utf8_lossy(&dlq.stdout);
    assert!(
        dlq_out.contains("no dead letters"),
        "dead letters after the crash:\n{dlq_out}"
    );
    hub.kill();
    erp.shutdown().await;
    for s in &shop_handles {
        s.shutdown().await;
    }
}

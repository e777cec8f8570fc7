//! End-to-end tests of the stock pool (design §5) on a real hub — an engine over a `SqliteStore`
//! in a temporary directory with the sandbox connectors, the router served on 127.0.0.1 — a
//! sandbox ERP and sandbox storefronts that check out through the hub's `/v1` API.
//!
//! - `seed_scenario_*`: 8 units of X, a 12-unit checkout on storefront A, a 4-unit order a rep
//!   keys into the ERP, and a third channel buying the last units. A is refused with a 409 naming
//!   X and what is available; nothing is oversold when the ERP's rep order is seen first; when it
//!   lands after the hub promised the units, the hub raises the `oversold_risk` alert (audit
//!   event naming the SKU, the location and the reservation) and shows 0, never less.
//! - `multi_warehouse_*`: ats sums the feeding locations (minus buffers); routing takes one
//!   location that fills the whole order, else splits by priority.
//! - `concurrent_*`: 64 HTTP clients on 10 hot SKUs: exactly the stock is reserved, the rest 409.
//! - `reservations_survive_a_restart`: held reservations expire after a restart (their stock
//!   comes back), a committed one does not.
//! - `checkout_lifecycle_*`: checkout via the hub → committed → order accepted by the ERP with its
//!   version → the ERP's figure → released once, held back to 0, ats right.
//!
//! Every wait is a condition polled under a deadline; nothing sleeps and hopes.

mod support;

use concord_sandbox::erp::{ErpHandle, ErpOptions};
use concord_sandbox::shop::{ShopError, ShopHandle};
use concord_store::ReservationState;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{
    config_head, hub_listener, shop_endpoint, start_erp, start_shop, wait_until, Hub, DEADLINE,
};

const SECRET: &str = "pool-test-secret";

impl Hub {
    async fn ats(&self, channel: &str, sku: &str) -> i64 {
        let a = self
            .engine
            .availability(channel, &[sku.to_string()])
            .await
            .expect("availability");
        a[0].ats
    }

    /// `(held, on_hand, committed)` of one ledger position.
    async fn level(&self, sku: &str, location: &str) -> Option<(i64, i64, i64)> {
        self.engine
            .store()
            .levels(&[sku.to_string()])
            .await
            .expect("levels")
            .into_iter()
            .find(|l| l.location == location)
            .map(|l| (l.held, l.on_hand, l.committed))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("POST to the hub");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("GET from the hub");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn reserve(&self, channel: &str, key: &str, lines: &[(&str, i64)]) -> (u16, Value) {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(s, q)| json!({"sku": s, "quantity": q}))
            .collect();
        self.post(
            "/v1/reservations",
            json!({"channel": channel, "key": key, "lines": lines}),
        )
        .await
    }
}

/// The topology: an ERP, `shops` storefronts checking out through the hub (each its own pool
/// channel), and optional extra pool channels served by endpoints that are only stock
/// destinations (their clients speak `/v1` directly).
struct Setup {
    erp: ErpHandle,
    shops: Vec<ShopHandle>,
    hub: Hub,
    dir: tempfile::TempDir,
    hub_addr: std::net::SocketAddr,
    config: String,
}

struct Spec<'a> {
    shops: &'a [&'a str],
    /// Extra channels (sandbox storefronts the test only reads; reservations come over `/v1`).
    direct: &'a [&'a str],
    /// `[inventory]` body after `source` (channels, buffers, ttl).
    inventory: String,
    erp: ErpOptions,
}

fn channel_table(name: &str, locations: &[&str]) -> String {
    let locs: Vec<String> = locations.iter().map(|l| format!("\"{l}\"")).collect();
    format!(
        "[inventory.channels.{name}]\nlocations = [{}]\n",
        locs.join(", ")
    )
}

impl Setup {
    async fn start(spec: Spec<'_>, seed: impl FnOnce(&ErpHandle)) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let (listener, hub_addr, base) = hub_listener().await;
        let erp = start_erp(&base, SECRET, spec.erp).await;
        seed(&erp);
        let mut shops = Vec::new();
        let mut endpoints = String::new();
        for name in spec.shops.iter().chain(spec.direct) {
            let checkout = spec.shops.contains(name).then_some(None);
            let shop = start_shop(&base, SECRET, name, checkout).await;
            endpoints.push_str(&shop_endpoint(name, &shop.base_url(), SECRET));
            endpoints.push('\n');
            shops.push(shop);
        }
        let all: Vec<String> = spec
            .shops
            .iter()
            .chain(spec.direct)
            .map(|n| format!("\"{n}\""))
            .collect();
        let sellers: Vec<String> = spec.shops.iter().map(|n| format!("\"{n}\"")).collect();
        let mut flows = format!(
            r#"
[[flows]]
name = "stock-to-channels"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
poll = "1s"
from = ["erp"]
to = [{all}]
[flows.map_out]
"*" = '{{sku, location, available: ([.on_hand - .committed, 0] | max)}}'
"#,
            all = all.join(", ")
        );
        if !spec.shops.is_empty() {
            flows.push_str(&format!(
                r#"
[[flows]]
name = "customers-to-erp"
kind = "customer"
pattern = "aggregation"
mode = "realtime"
from = [{s}]
to = ["erp"]

[[flows]]
name = "orders-to-erp"
kind = "order"
pattern = "aggregation"
mode = "realtime"
poll = "1s"
from = [{s}]
to = ["erp"]
"#,
                s = sellers.join(", ")
            ));
        }
        let config = format!(
            r#"{head}
{endpoints}
{flows}

[inventory]
source = "erp"
{inventory}
"#,
            head = config_head(dir.path(), hub_addr, &erp.base_url(), SECRET),
            inventory = spec.inventory,
        );
        let hub = Hub::start(listener, &config, dir.path()).await;
        Setup {
            erp,
            shops,
            hub,
            dir,
            hub_addr,
            config,
        }
    }

    async fn shutdown(self) {
        self.hub.stop().await;
        self.erp.shutdown().await;
        for s in &self.shops {
            s.shutdown().await;
        }
        drop(self.dir);
    }
}

fn seed_product(erp: &ErpHandle, sku: &str) {
    erp.upsert_product(json!({"sku": sku, "name": format!("Product {sku}")}))
        .expect("product");
    erp.set_price(sku, 1500).expect("price");
}

/// Wait until the hub's ledger has the ERP's current figure of (sku, location).
async fn ledger_caught_up(hub: &Hub, erp: &ErpHandle, sku: &str, location: &str) {
    wait_until(
        &format!("the hub has the ERP's figure of {sku}@{location}"),
        DEADLINE,
        async || {
            let Some(s) = erp.stock(sku, location) else {
                return false;
            };
            hub.level(sku, location)
                .await
                .is_some_and(|(_, on_hand, committed)| {
                    on_hand == s.on_hand && committed == s.committed
                })
        },
    )
    .await;
}

async fn seed_scenario_setup() -> Setup {
    let mut inventory = String::from("reservation_ttl = \"10m\"\n");
    for c in ["web1", "web2", "web3"] {
        inventory.push_str(&channel_table(c, &["WH1"]));
    }
    let s = Setup::start(
        Spec {
            shops: &["web1", "web2"],
            direct: &["web3"],
            inventory,
            erp: ErpOptions::default(),
        },
        |erp| {
            seed_product(erp, "X");
            erp.set_stock("X", "WH1", 8).expect("stock");
        },
    )
    .await;
    ledger_caught_up(&s.hub, &s.erp, "X", "WH1").await;
    s
}

fn assert_short_names_x(e: ShopError, available: &[i64]) {
    match e {
        ShopError::OutOfStock {
            sku,
            requested,
            available: a,
        } => {
            assert_eq!(sku, "X");
            assert_eq!(requested, 12);
            assert!(
                available.contains(&a),
                "available {a}, expected one of {available:?}"
            );
        }
        other => panic!("expected a 409 out of stock from the hub, got {other:?}"),
    }
}

/// The rep's order is in the ERP (and in the hub's ledger) before the channels reserve: no one
/// oversells, A is refused, the third channel gets the last 4 units.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_rep_order_seen_first_nothing_oversold() {
    let s = seed_scenario_setup().await;
    let (a, b) = (&s.shops[0], &s.shops[1]);
    // A's 12-unit checkout and the rep's 4-unit ERP order at the same time.
    let erp = s.erp.clone();
    let rep =
        tokio::task::spawn_blocking(move || erp.rep_order("rep-buyer@example.com", &[("X", 4)]));
    let refused = a
        .checkout("alice@example.com", "Alice", &[("X", 12)])
        .await
        .expect_err("12 of 8 must be refused");
    assert_short_names_x(refused, &[8, 4]);
    rep.await.expect("join").expect("rep order");
    ledger_caught_up(&s.hub, &s.erp, "X", "WH1").await;
    assert_eq!(s.hub.ats("web2", "X").await, 4);
    // The 409 body over HTTP names the SKU and what is available now.
    let (status, body) = s.hub.reserve("web1", "cart-a-2", &[("X", 12)]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "insufficient_stock", "{body}");
    assert_eq!(
        body["short"],
        json!([{"sku": "X", "requested": 12, "available": 4}])
    );
    // The third channel buys the last units; after that nobody can.
    let placed = b
        .checkout("bob@example.com", "Bob", &[("X", 4)])
        .await
        .expect("the last 4 units");
    let again = a.checkout("alice@example.com", "Alice", &[("X", 1)]).await;
    assert!(
        matches!(again, Err(ShopError::OutOfStock { available: 0, .. })),
        "{again:?}"
    );
    assert_eq!(a.counters().hub_refused, 2);
    assert_eq!(
        a.counters().oversell_refused,
        0,
        "A never consulted its own copy"
    );
    wait_until("B's order is in the ERP", DEADLINE, async || {
        s.erp
            .sales_orders()
            .iter()
            .any(|o| o.reference == placed.key)
    })
    .await;
    ledger_caught_up(&s.hub, &s.erp, "X", "WH1").await;
    assert_eq!(
        s.erp.counters().oversold_units,
        0,
        "the ERP never accepted stock it lacked"
    );
    let st = s.erp.stock("X", "WH1").expect("stock row");
    assert_eq!((st.on_hand, st.committed), (8, 8));
    for c in ["web1", "web2", "web3"] {
        assert_eq!(s.hub.ats(c, "X").await, 0, "{c}");
    }
    let audit = s.hub.engine.store().audit_log(200).await.expect("audit");
    assert!(
        !audit.iter().any(|e| e.event.event == "oversold_risk"),
        "no oversold risk when the rep order was seen first"
    );
    s.shutdown().await;
}

/// The hub promised all 8 units (a held reservation of channel C) before the rep's order lands
/// in the ERP: the ERP is short by 4; the hub alerts and shows 0, never negative.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_rep_order_after_promise_raises_oversold_risk() {
    let s = seed_scenario_setup().await;
    let a = &s.shops[0];
    let refused = a
        .checkout("alice@example.com", "Alice", &[("X", 12)])
        .await
        .expect_err("12 of 8 must be refused");
    assert_short_names_x(refused, &[8]);
    let (status, res) = s.hub.reserve("web3", "cart-c-1", &[("X", 8)]).await;
    assert_eq!(status, 201, "{res}");
    let res_id = res["id"].as_str().expect("reservation id").to_string();
    for c in ["web1", "web2", "web3"] {
        assert_eq!(
            s.hub.ats(c, "X").await,
            0,
            "{c} after the hub promised everything"
        );
    }
    s.erp
        .rep_order("rep-buyer@example.com", &[("X", 4)])
        .expect("the rep's order (the ERP does not know the hub's promise)");
    assert_eq!(
        s.erp.counters().oversold_units,
        0,
        "the ERP itself had 8 free"
    );
    ledger_caught_up(&s.hub, &s.erp, "X", "WH1").await;
    let engine = &s.hub.engine;
    wait_until("the oversold-risk alert is raised", DEADLINE, async || {
        engine
            .store()
            .audit_log(200)
            .await
            .expect("audit")
            .iter()
            .any(|e| e.event.event == "oversold_risk")
    })
    .await;
    let audit = engine.store().audit_log(200).await.expect("audit");
    let alert = audit
        .iter()
        .find(|e| e.event.event == "oversold_risk")
        .expect("alert");
    let d = &alert.event.detail;
    assert_eq!(d["sku"], "X");
    assert_eq!(d["location"], "WH1");
    assert_eq!(d["short_by"], 4, "{d}");
    let named: Vec<&str> = d["reservations"]
        .as_array()
        .expect("reservations")
        .iter()
        .filter_map(|r| r["reservation"].as_str())
        .collect();
    assert_eq!(named, vec![res_id.as_str()], "{d}");
    let (status, body) = s.hub.get("/v1/availability?channel=web1&sku=X").await;
    assert_eq!(status, 200);
    assert_eq!(body["skus"][0]["ats"], 0, "{body}");
    for loc in body["skus"][0]["locations"].as_array().expect("locations") {
        assert!(loc["available"].as_i64().expect("available") >= 0, "{loc}");
    }
    for c in ["web1", "web2", "web3"] {
        assert_eq!(s.hub.ats(c, "X").await, 0, "{c}");
    }
    // The channels' copies show 0 too (pushed by the hub), never a negative figure.
    wait_until("web1's copy of X is 0", DEADLINE, async || {
        s.shops[0].inventory("X").get("default").copied() == Some(0)
    })
    .await;
    s.shutdown().await;
}

/// Two warehouses feed web1 (WH1 first) and web2 (WH2 first, 2 units kept back at WH2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_warehouse_ats_sums_locations_and_routing_prefers_one_location() {
    let mut inventory = String::from("reservation_ttl = \"10m\"\n");
    inventory.push_str(&channel_table("web1", &["WH1", "WH2"]));
    inventory.push_str(&channel_table("web2", &["WH2", "WH1"]));
    inventory
        .push_str("[[inventory.buffers]]\nchannel = \"web2\"\nlocation = \"WH2\"\nunits = 2\n");
    let s = Setup::start(
        Spec {
            shops: &[],
            direct: &["web1", "web2"],
            inventory,
            erp: ErpOptions::default(),
        },
        |erp| {
            for (sku, wh1, wh2) in [("X", 3, 10), ("Y", 5, 5)] {
                seed_product(erp, sku);
                erp.set_stock(sku, "WH1", wh1).expect("stock");
                erp.set_stock(sku, "WH2", wh2).expect("stock");
            }
        },
    )
    .await;
    for sku in ["X", "Y"] {
        for loc in ["WH1", "WH2"] {
            ledger_caught_up(&s.hub, &s.erp, sku, loc).await;
        }
    }
    let (status, body) = s.hub.get("/v1/availability?channel=web1&sku=X&sku=Y").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["skus"][0]["ats"], 13);
    assert_eq!(body["skus"][1]["ats"], 10);
    assert_eq!(s.hub.ats("web2", "X").await, 11, "3 + (10 − 2 buffer)");
    // WH1 (first for web1) cannot fill 4 X: WH2 fills the whole order, one location.
    let (status, r) = s.hub.reserve("web1", "k1", &[("X", 4), ("Y", 2)]).await;
    assert_eq!(status, 201, "{r}");
    let lines: Vec<(String, String, i64)> = r["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (
                l["sku"].as_str().unwrap_or_default().to_string(),
                l["location"].as_str().unwrap_or_default().to_string(),
                l["quantity"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![("X".into(), "WH2".into(), 4), ("Y".into(), "WH2".into(), 2)]
    );
    // Now X: WH1 3, WH2 6. 8 fits nowhere alone: split by priority (WH1 first).
    let (status, r) = s.hub.reserve("web1", "k2", &[("X", 8)]).await;
    assert_eq!(status, 201, "{r}");
    let split: Vec<(String, i64)> = r["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (
                l["location"].as_str().unwrap_or_default().to_string(),
                l["quantity"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(split, vec![("WH1".into(), 3), ("WH2".into(), 5)]);
    assert_eq!(s.hub.ats("web1", "X").await, 1);
    assert_eq!(
        s.hub.ats("web2", "X").await,
        0,
        "the one unit left is web2's buffer"
    );
    let (status, body) = s.hub.reserve("web2", "k3", &[("X", 1)]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "insufficient_stock", "{body}");
    assert_eq!(body["short"][0]["available"], 0);
    s.shutdown().await;
}

/// 64 concurrent HTTP clients reserve single units of 10 hot SKUs: exactly the stock is sold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_reserve_exactly_the_stock() {
    let skus: Vec<String> = (1..=10).map(|i| format!("HOT-{i:02}")).collect();
    let stock: BTreeMap<String, i64> = skus
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), 3 + i as i64))
        .collect();
    let mut inventory = String::from("reservation_ttl = \"10m\"\n");
    inventory.push_str(&channel_table("web1", &["WH1"]));
    let seed_stock = stock.clone();
    let s = Setup::start(
        Spec {
            shops: &[],
            direct: &["web1"],
            inventory,
            erp: ErpOptions::default(),
        },
        move |erp| {
            for (sku, q) in &seed_stock {
                seed_product(erp, sku);
                erp.set_stock(sku, "WH1", *q).expect("stock");
            }
        },
    )
    .await;
    for sku in &skus {
        ledger_caught_up(&s.hub, &s.erp, sku, "WH1").await;
    }
    let base = s.hub.base.clone();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..64 {
        let base = base.clone();
        let skus = skus.clone();
        clients.spawn(async move {
            let http = reqwest::Client::new();
            let mut got: Vec<(String, u16)> = Vec::new();
            for i in 0..20 {
                let sku = skus[(c * 7 + i * 3) % skus.len()].clone();
                let r = http
                    .post(format!("{base}/v1/reservations"))
                    .json(&json!({"channel": "web1", "key": format!("c{c}-{i}"),
                                  "lines": [{"sku": sku, "quantity": 1}]}))
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .expect("POST /v1/reservations");
                got.push((sku, r.status().as_u16()));
            }
            got
        });
    }
    let mut reserved: BTreeMap<String, i64> = BTreeMap::new();
    let mut refused = 0;
    while let Some(r) = clients.join_next().await {
        for (sku, status) in r.expect("client") {
            match status {
                201 => *reserved.entry(sku).or_default() += 1,
                409 => refused += 1,
                other => panic!("unexpected status {other} for {sku}"),
            }
        }
    }
    assert_eq!(reserved, stock, "every SKU sold exactly its stock");
    assert_eq!(refused, 64 * 20 - stock.values().sum::<i64>());
    for sku in &skus {
        assert_eq!(s.hub.ats("web1", sku).await, 0);
        let (held, on_hand, _) = s.hub.level(sku, "WH1").await.expect("level");
        assert_eq!(held, on_hand, "{sku}");
    }
    s.shutdown().await;
}

/// Held reservations and their expiry are stored: after a restart on the same store they expire
/// (their stock comes back), the committed one does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_survive_a_restart() {
    let mut inventory = String::from("reservation_ttl = \"2s\"\n");
    inventory.push_str(&channel_table("web1", &["WH1"]));
    let s = Setup::start(
        Spec {
            shops: &[],
            direct: &["web1"],
            inventory,
            erp: ErpOptions::default(),
        },
        |erp| {
            seed_product(erp, "X");
            erp.set_stock("X", "WH1", 10).expect("stock");
        },
    )
    .await;
    ledger_caught_up(&s.hub, &s.erp, "X", "WH1").await;
    let mut held = Vec::new();
    for k in ["h1", "h2"] {
        let (status, r) = s.hub.reserve("web1", k, &[("X", 2)]).await;
        assert_eq!(status, 201, "{r}");
        held.push(r["id"].as_str().expect("id").to_string());
    }
    let (status, r) = s.hub.reserve("web1", "c1", &[("X", 3)]).await;
    assert_eq!(status, 201, "{r}");
    let committed = r["id"].as_str().expect("id").to_string();
    let (status, r) = s
        .hub
        .post(
            &format!("/v1/reservations/{committed}/commit"),
            json!({"order": "5001"}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(s.hub.ats("web1", "X").await, 3);
    let expires_at = s
        .hub
        .engine
        .reservation(&held[0])
        .await
        .expect("reservation")
        .expires_at
        .expect("a held reservation expires");
    // Stop before anything expired.
    for id in &held {
        let r = s.hub.engine.reservation(id).await.expect("reservation");
        assert_eq!(r.state, ReservationState::Held);
    }
    let Setup {
        erp,
        shops,
        hub,
        dir,
        hub_addr,
        config,
    } = s;
    let now_ms = hub.engine.now();
    hub.stop().await;
    // Stay down until the TTL has passed.
    let down_for = Duration::from_millis((expires_at - now_ms).max(0) as u64 + 300);
    let until = Instant::now() + down_for;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listener = tokio::net::TcpListener::bind(hub_addr)
        .await
        .expect("re-bind the hub's port");
    let hub = Hub::start(listener, &config, dir.path()).await;
    wait_until(
        "the held reservations expire after the restart",
        DEADLINE,
        async || {
            let mut all = true;
            for id in &held {
                all &= hub.engine.reservation(id).await.expect("reservation").state
                    == ReservationState::Expired;
            }
            all
        },
    )
    .await;
    wait_until(
        "ats is back up by the 4 expired units",
        DEADLINE,
        async || hub.ats("web1", "X").await == 7,
    )
    .await;
    let r = hub.engine.reservation(&committed).await.expect("committed");
    assert_eq!(
        r.state,
        ReservationState::Committed,
        "a committed one never expires"
    );
    assert_eq!(r.expires_at, None);
    // Committing an expired hold is refused with its own code.
    let (status, v) = hub
        .post(
            &format!("/v1/reservations/{}/commit", held[0]),
            json!({"order": "5002"}),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("reservation_expired")),
        "{v}"
    );
    let (held_units, _, _) = hub.level("X", "WH1").await.expect("level");
    assert_eq!(held_units, 3);
    // The channel's copy follows.
    wait_until("web1's copy of X is 7", DEADLINE, async || {
        shops[0].inventory("X").get("default").copied() == Some(7)
    })
    .await;
    let s = Setup {
        erp,
        shops,
        hub,
        dir,
        hub_addr,
        config,
    };
    s.shutdown().await;
}

/// A checkout through the hub, all the way: the reservation is committed, the order accepted by
/// the ERP (its version is the watermark), the ERP's figure including it releases the
/// reservation once, and ats is right before, during and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_lifecycle_through_the_erp_releases_exactly_once() {
    let mut inventory = String::from("reservation_ttl = \"10m\"\n");
    inventory.push_str(&channel_table("web1", &["WH1", "WH2"]));
    let s = Setup::start(
        Spec {
            shops: &["web1"],
            direct: &[],
            inventory,
            erp: ErpOptions::default(),
        },
        |erp| {
            seed_product(erp, "X");
            erp.set_stock("X", "WH1", 2).expect("stock");
            erp.set_stock("X", "WH2", 10).expect("stock");
        },
    )
    .await;
    let (hub, erp, shop) = (&s.hub, &s.erp, &s.shops[0]);
    for loc in ["WH1", "WH2"] {
        ledger_caught_up(hub, erp, "X", loc).await;
    }
    assert_eq!(hub.ats("web1", "X").await, 12);
    // 3 units: WH1 cannot fill them, WH2 can; the ERP must commit them at WH2 too.
    let placed = shop
        .checkout("carol@example.com", "Carol", &[("X", 3)])
        .await
        .expect("checkout");
    let res_id = placed
        .reservation
        .clone()
        .expect("the order records its reservation");
    let r = hub.engine.reservation(&res_id).await.expect("reservation");
    assert_eq!(r.order.as_deref(), Some(placed.key.as_str()));
    assert!(matches!(
        r.state,
        ReservationState::Committed | ReservationState::Released
    ));
    assert_eq!(hub.ats("web1", "X").await, 9, "held at once");
    let order = shop
        .orders()
        .into_iter()
        .find(|o| o.id == placed.id)
        .expect("order");
    assert_eq!(order.reservation.as_deref(), Some(res_id.as_str()));
    assert_eq!(order.lines[0].location.as_deref(), Some("WH2"));
    wait_until("the order is in the ERP", DEADLINE, async || {
        erp.sales_orders().iter().any(|o| o.reference == placed.key)
    })
    .await;
    let so = erp
        .sales_orders()
        .into_iter()
        .find(|o| o.reference == placed.key)
        .expect("sales order");
    assert_eq!(
        so.lines[0].location.as_deref(),
        Some("WH2"),
        "committed where the hub held it"
    );
    assert_eq!(erp.stock("X", "WH2").expect("WH2").committed, 3);
    assert_eq!(erp.stock("X", "WH1").expect("WH1").committed, 0);
    wait_until("the reservation is released", DEADLINE, async || {
        hub.engine
            .reservation(&res_id)
            .await
            .expect("reservation")
            .state
            == ReservationState::Released
    })
    .await;
    let r = hub.engine.reservation(&res_id).await.expect("reservation");
    assert_eq!(
        r.accepted_version.as_deref(),
        Some(so.version.as_str()),
        "the ERP's watermark"
    );
    assert!(r.lines.iter().all(|l| l.released_at.is_some()));
    let (held, on_hand, committed) = hub.level("X", "WH2").await.expect("level");
    assert_eq!(
        (held, on_hand, committed),
        (0, 10, 3),
        "the ERP's committed counts it now"
    );
    assert_eq!(
        hub.ats("web1", "X").await,
        9,
        "still 9: counted once, not twice"
    );
    // Later figures (a receipt, the shipment) release nothing twice.
    erp.adjust_stock("X", "WH2", 5).expect("receipt");
    ledger_caught_up(hub, erp, "X", "WH2").await;
    erp.ship(&so.id).expect("ship");
    ledger_caught_up(hub, erp, "X", "WH2").await;
    let (held, on_hand, committed) = hub.level("X", "WH2").await.expect("level");
    assert_eq!((held, on_hand, committed), (0, 12, 0));
    assert_eq!(hub.ats("web1", "X").await, 14);
    wait_until("web1's copy of X is 14", DEADLINE, async || {
        shop.inventory("X").get("default").copied() == Some(14)
    })
    .await;
    assert_eq!(erp.counters().oversold_units, 0);
    s.shutdown().await;
}

//! `concord demo`: the product doing its main job in one command, on the embedded default.
//!
//! It starts a sandbox ERP and two sandbox storefronts (real HTTP servers on 127.0.0.1), writes
//! a normal configuration file for them into the demo's data directory, and runs the real engine
//! on it with an embedded SQLite store. Both stores sell from one stock pool (design §5): they
//! check out through the hub's `/v1/reservations`, concurrently, on the same SKUs, and a few hot
//! SKUs have less stock than demand, so the hub refuses some checkouts (409). Traffic: goods
//! receipts in the ERP, checkouts in both stores (new and returning customers, one customer on
//! credit hold), abandoned carts (reservations cancelled or left to expire), automatic shipping
//! in the ERP, one store going down for a while, a burst of 429s from the ERP. Every second it
//! prints one line; at the end it checks every system against the others and exits 0 only if
//! nothing was lost and nothing oversold: every order in the ERP exactly once (or dead-lettered
//! with a reason), every shipment at its store, the hub's ledger equal to the ERP's figures,
//! each store's inventory equal to the hub's available-to-sell for it, every reservation of an
//! order the ERP has released (none stuck), and no unit accepted by the ERP beyond its own
//! stock (`oversold_units`). Price lists flow from the ERP to both stores (with a contract list
//! for one B2B customer); the summary shows that customer's price from `/v1/prices`. One order
//! at web1 is driven through its whole lifecycle next to the traffic (`showcase.rs`: an edit
//! before shipment, two shipments with two tracking numbers, invoice, payment, a partial refund
//! with a return); the summary shows each step and the hub's states, and a step that does not
//! happen fails the run.
//!
//! Must never reach into the engine's internals: it drives the sandboxes from outside and reads
//! the results from the systems themselves, as a user would.

use crate::wiring;
use anyhow::Context;
use clap::Args;
use concord_connectors::sandbox::erp::{ErpHandle, ErpOptions, ErpSim};
use concord_connectors::sandbox::shop::{HubCheckout, ShopError, ShopHandle, ShopOptions, ShopSim};
use concord_connectors::sandbox::Faults;
use concord_engine::runtime::pricing::PriceRequest;
use concord_engine::Engine;
use concord_store::{DeadLetterFilter, ItemState, ReservationState};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Stop after this many seconds of traffic, check every system and exit (0 = nothing lost).
    /// Without it the demo runs until Ctrl-C.
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Keep the demo's files (config, SQLite store) here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Address of Concord's HTTP server (webhooks, /metrics).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// After the final check, keep the hub (dashboard, admin API) and the sandboxes running until
    /// Ctrl-C or SIGTERM, for exploring the result (the browser test uses it).
    #[arg(long)]
    pub keep_serving: bool,
    /// Number of SKUs in the sandbox catalogue.
    #[arg(long, default_value_t = 20)]
    pub skus: usize,
    /// Checkouts per second across both stores.
    #[arg(long, default_value_t = 8.0)]
    pub orders_per_sec: f64,
    /// ERP stock changes per second.
    #[arg(long, default_value_t = 20.0)]
    pub stock_changes_per_sec: f64,
}

const LOCATIONS: [&str; 2] = ["WH1", "WH2"];
const HELD_CUSTOMER: &str = "held@example.com";
/// The B2B customer with a contract price list in the ERP, and the SKU it covers.
const CONTRACT_CUSTOMER: &str = "buyer@acme.example";
const CONTRACT_SKU: &str = "SKU-0001";
/// The first SKUs are hot: little stock (per location), in every other checkout, rarely
/// restocked — demand exceeds supply, so the hub refuses some checkouts.
const HOT_SKUS: usize = 3;
const HOT_STOCK: i64 = 4;
/// The demo's admin tokens (their hashes are in `demo.toml`). DEMO ONLY: fixed and printed so
/// anyone can log in to the demo's dashboard; never use fixed tokens in a real config.
pub const DEMO_VIEWER_TOKEN: &str = "concord-demo-viewer";
pub const DEMO_OPERATOR_TOKEN: &str = "concord-demo-operator";

/// The demo's storefront key of `channel` (hashes in `demo.toml`; DEMO ONLY, fixed).
fn demo_key(channel: &str) -> String {
    format!("concord-demo-key-{channel}")
}

struct Systems {
    erp: ErpHandle,
    shops: Vec<(String, ShopHandle)>,
}

#[derive(Default)]
struct Traffic {
    orders_placed: AtomicU64,
    /// Refused by the hub's stock pool (409).
    orders_refused: AtomicU64,
    /// Checkouts that failed for another reason (hub unreachable).
    orders_failed: AtomicU64,
    carts_abandoned: AtomicU64,
    stock_changes: AtomicU64,
    web2_down: AtomicBool,
    erp_throttled: AtomicBool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::Builder::new().prefix("concord-demo-").tempdir()?;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let secret = format!("demo-{:016x}", fastrand::u64(..));
    let hook = |ep: &str| format!("http://{addr}/hooks/{ep}");

    let erp = ErpSim::start(ErpOptions {
        webhook_url: Some(hook("erp")),
        webhook_secret: Some(secret.clone()),
        auto_ship_after: Some(Duration::from_millis(1500)),
        credit_hold: vec![HELD_CUSTOMER.to_string()],
        // The lifecycle showcase's order is shipped by hand, in two parcels.
        hold_for: vec![crate::showcase::SHOWCASE_CUSTOMER.to_string()],
        ..ErpOptions::default()
    })
    .await?;
    let mut shops = Vec::new();
    for name in ["web1", "web2"] {
        let shop = ShopSim::start(ShopOptions {
            name: name.to_string(),
            webhook_url: Some(hook(name)),
            webhook_secret: Some(secret.clone()),
            hub: Some(HubCheckout {
                base_url: format!("http://{addr}"),
                channel: name.to_string(),
                key: Some(demo_key(name)),
            }),
            ..ShopOptions::default()
        })
        .await?;
        shops.push((name.to_string(), shop));
    }
    erp.seed(args.skus, &LOCATIONS, 30)?;
    // A contract price list for one B2B customer (shown in the final summary).
    erp.upsert_price(
        serde_json::json!({"sku": CONTRACT_SKU, "list": "acme-contract",
        "currency": "USD", "amount_minor": 900, "customer": CONTRACT_CUSTOMER,
        "tiers": [{"min_quantity": 48, "amount_minor": 750}]}),
    )?;
    for i in 1..=HOT_SKUS.min(args.skus) {
        for loc in LOCATIONS {
            erp.set_stock(&format!("SKU-{i:04}"), loc, HOT_STOCK)?;
        }
    }

    let store_path = dir.join("concord.sqlite");
    let config_path = dir.join("concord.toml");
    let text = include_str!("../demo.toml")
        .replace("{{STORE}}", &store_path.display().to_string())
        .replace("{{LISTEN}}", &addr.to_string())
        .replace("{{ERP_URL}}", &erp.base_url())
        .replace("{{WEB1_URL}}", &shops[0].1.base_url())
        .replace("{{WEB2_URL}}", &shops[1].1.base_url())
        .replace("{{SECRET}}", &secret);
    // The config holds the webhook secret: private, like the store next to it.
    wiring::write_private(&config_path, &text)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let engine = wiring::engine(&config_path)?;
    let running = wiring::start_on(engine.clone(), listener).await?;

    println!("concord demo: data in {}", dir.display());
    println!(
        "  ERP   {}  (sandbox, auto-ships orders after 1.5 s)",
        erp.base_url()
    );
    for (name, s) in &shops {
        println!("  {name:<5} {}  (sandbox storefront)", s.base_url());
    }
    println!(
        "  hub   http://{addr}  (/v1 storefront API, /metrics with an admin token, /healthz, webhooks at /hooks/<endpoint>)"
    );
    println!(
        "  both stores check out through the hub's stock pool; SKU-0001..SKU-{HOT_SKUS:04} are hot (demand > supply)"
    );
    println!("  config {}", config_path.display());
    println!(
        "  dashboard http://{addr}/  admin API http://{addr}/api/v1 (OpenAPI: /api/v1/openapi.json)"
    );
    println!(
        "    tokens (demo only, fixed): viewer {DEMO_VIEWER_TOKEN}  operator {DEMO_OPERATOR_TOKEN}"
    );

    let systems = Arc::new(Systems { erp, shops });
    let traffic = Arc::new(Traffic::default());
    let stop = Arc::new(AtomicBool::new(false));
    let skus: Vec<String> = (1..=args.skus).map(|i| format!("SKU-{i:04}")).collect();
    let total = args.seconds.map(Duration::from_secs);
    let driver = tokio::spawn(drive(
        systems.clone(),
        traffic.clone(),
        stop.clone(),
        skus.clone(),
        args.clone(),
        total,
        format!("http://{addr}"),
    ));

    // One order driven through its whole lifecycle next to the traffic (edit, split shipment,
    // invoice, payment, partial refund, return); its steps end up in the summary.
    let showcase = (args.skus >= HOT_SKUS + 3).then(|| {
        let (engine, sys) = (engine.clone(), systems.clone());
        let skus = [
            format!("SKU-{:04}", HOT_SKUS + 1),
            format!("SKU-{:04}", HOT_SKUS + 2),
            format!("SKU-{:04}", HOT_SKUS + 3),
        ];
        tokio::spawn(async move {
            let [a, b, c] = &skus;
            crate::showcase::run(&engine, &sys.erp, &sys.shops[0].1, [a, b, c]).await
        })
    });

    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => { println!("\ninterrupted"); break; }
        }
        print_line(&engine, &systems, &traffic, started.elapsed()).await;
        if total.is_some_and(|t| started.elapsed() >= t) {
            break;
        }
    }
    stop.store(true, Ordering::Release);
    let _ = driver.await;
    let showcase = match showcase {
        Some(task) => Some(task.await.unwrap_or_else(|e| crate::showcase::Showcase {
            failed: Some(format!("the showcase task panicked: {e}")),
            ..Default::default()
        })),
        None => None,
    };
    // Whatever the traffic left behind: the store must be up and the throttle off to converge.
    let _ = systems.shops[1].1.set_down(false).await;
    systems.erp.set_faults(Faults::default());

    println!(
        "traffic stopped after {:.1} s; waiting for every system to agree (up to 60 s)…",
        started.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut report = verify(&engine, &systems, &skus).await?;
    while !report.ok() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        report = verify(&engine, &systems, &skus).await?;
    }
    let ok = report.ok() && showcase.as_ref().is_none_or(|s| s.failed.is_none());
    print_final(
        &engine,
        &systems,
        &traffic,
        &report,
        showcase.as_ref(),
        started.elapsed(),
    )
    .await?;
    if args.keep_serving {
        println!(
            "keep-serving: the hub (dashboard http://{addr}/) and the sandboxes stay up until Ctrl-C or SIGTERM"
        );
        wait_for_stop_signal().await;
    }
    running.stop().await;
    systems.erp.shutdown().await;
    for (_, s) in &systems.shops {
        s.shutdown().await;
    }
    if args.dir.is_none() {
        drop(tmp);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Ctrl-C, or SIGTERM where there is one.
async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The traffic generator: goods receipts, checkouts through the hub (concurrent, both stores),
/// abandoned carts, an outage of web2 and a 429 burst at the ERP.
async fn drive(
    sys: Arc<Systems>,
    t: Arc<Traffic>,
    stop: Arc<AtomicBool>,
    skus: Vec<String>,
    args: DemoArgs,
    total: Option<Duration>,
    hub: String,
) {
    let started = Instant::now();
    // Outage of web2 from 30 % to 55 % of the run; 429s from the ERP from 60 % to 75 %.
    let span = total.unwrap_or(Duration::from_secs(40));
    let (down_at, up_at) = (span.mul_f64(0.30), span.mul_f64(0.55));
    let (throttle_at, unthrottle_at) = (span.mul_f64(0.60), span.mul_f64(0.75));
    let tick = Duration::from_millis(50);
    let orders_per_tick = args.orders_per_sec * tick.as_secs_f64();
    let stock_per_tick = args.stock_changes_per_sec * tick.as_secs_f64();
    let (mut order_acc, mut stock_acc) = (0.0, 0.0);
    let mut held_sent = false;
    let hot = HOT_SKUS.min(skus.len());
    let customers: Vec<String> = (1..=25)
        .map(|i| format!("buyer{i:02}@example.com"))
        .collect();
    let http = reqwest::Client::new();
    let mut checkouts = tokio::task::JoinSet::new();
    let mut cart = 0u64;
    while !stop.load(Ordering::Acquire) {
        let el = started.elapsed();
        let cycle = Duration::from_nanos((el.as_nanos() % span.as_nanos().max(1)) as u64);
        let want_down = cycle >= down_at && cycle < up_at;
        if want_down != t.web2_down.load(Ordering::Relaxed)
            && sys.shops[1].1.set_down(want_down).await.is_ok()
        {
            t.web2_down.store(want_down, Ordering::Relaxed);
        }
        let want_throttle = cycle >= throttle_at && cycle < unthrottle_at;
        if want_throttle != t.erp_throttled.load(Ordering::Relaxed) {
            sys.erp.set_faults(if want_throttle {
                Faults {
                    rate_limit_every: 4,
                    rate_limit_retry_after_secs: 0.5,
                    ..Faults::default()
                }
            } else {
                Faults::default()
            });
            t.erp_throttled.store(want_throttle, Ordering::Relaxed);
        }
        stock_acc += stock_per_tick;
        while stock_acc >= 1.0 {
            stock_acc -= 1.0;
            // Goods receipts only (shrinkage would make the ERP itself short, which is not what
            // `oversold` measures); the hot SKUs get one in ten.
            let sku = if fastrand::u8(..10) == 0 || hot == skus.len() {
                &skus[fastrand::usize(..skus.len())]
            } else {
                &skus[fastrand::usize(hot..skus.len())]
            };
            let loc = LOCATIONS[fastrand::usize(..LOCATIONS.len())];
            if sys.erp.adjust_stock(sku, loc, fastrand::i64(1..=6)).is_ok() {
                t.stock_changes.fetch_add(1, Ordering::Relaxed);
            }
        }
        order_acc += orders_per_tick;
        while order_acc >= 1.0 {
            order_acc -= 1.0;
            let shop_idx = if t.web2_down.load(Ordering::Relaxed) {
                0
            } else {
                fastrand::usize(..2)
            };
            let (channel, shop) = &sys.shops[shop_idx];
            let email = if !held_sent && el >= span.mul_f64(0.2) {
                held_sent = true;
                HELD_CUSTOMER.to_string()
            } else {
                customers[fastrand::usize(..customers.len())].clone()
            };
            let n_lines = fastrand::usize(1..=3);
            let mut lines: Vec<(String, i64)> = Vec::new();
            // A hot SKU in one checkout in four (never in the credit-hold customer's, whose
            // order must reach the ERP to be refused there).
            if hot > 0 && email != HELD_CUSTOMER && fastrand::u8(..4) == 0 {
                lines.push((skus[fastrand::usize(..hot)].clone(), fastrand::i64(1..=3)));
            }
            while lines.len() < n_lines {
                let sku = if email == HELD_CUSTOMER && hot < skus.len() {
                    skus[fastrand::usize(hot..skus.len())].clone()
                } else {
                    skus[fastrand::usize(..skus.len())].clone()
                };
                if !lines.iter().any(|(s, _)| *s == sku) {
                    lines.push((sku, fastrand::i64(1..=3)));
                } else if lines.len() >= skus.len() {
                    break;
                }
            }
            // One cart in eight is abandoned: reserved at the hub, then cancelled or left to
            // expire (the stock comes back either way).
            if fastrand::u8(..8) == 0 && email != HELD_CUSTOMER {
                cart += 1;
                let (http, hub, t) = (http.clone(), hub.clone(), t.clone());
                let key = demo_key(channel);
                let body = serde_json::json!({
                    "channel": channel, "key": format!("demo-abandoned-{cart}"),
                    "lines": lines.iter().map(|(s, q)| serde_json::json!({"sku": s, "quantity": q})).collect::<Vec<_>>(),
                });
                checkouts.spawn(async move {
                    let r = http
                        .post(format!("{hub}/v1/reservations"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await;
                    let Ok(r) = r else { return };
                    if r.status().as_u16() != 201 {
                        return;
                    }
                    t.carts_abandoned.fetch_add(1, Ordering::Relaxed);
                    let id = r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string));
                    if let Some(id) = id.filter(|_| fastrand::bool()) {
                        tokio::time::sleep(Duration::from_millis(fastrand::u64(200..2_000))).await;
                        let _ = http
                            .delete(format!("{hub}/v1/reservations/{id}"))
                            .bearer_auth(&key)
                            .send()
                            .await;
                    }
                });
                continue;
            }
            let (shop, t) = (shop.clone(), t.clone());
            let name = email.split('@').next().unwrap_or("buyer").to_string();
            checkouts.spawn(async move {
                let line_refs: Vec<(&str, i64)> =
                    lines.iter().map(|(s, q)| (s.as_str(), *q)).collect();
                match shop.checkout(&email, &name, &line_refs).await {
                    Ok(_) => t.orders_placed.fetch_add(1, Ordering::Relaxed),
                    Err(ShopError::OutOfStock { .. }) => {
                        t.orders_refused.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => t.orders_failed.fetch_add(1, Ordering::Relaxed),
                };
            });
        }
        while checkouts.try_join_next().is_some() {}
        tokio::time::sleep(tick).await;
    }
    while checkouts.join_next().await.is_some() {}
}

async fn print_line(engine: &Engine, sys: &Systems, t: &Traffic, elapsed: Duration) {
    let s = engine.stats(Some(engine.now() - 5_000));
    let (mut queue, mut parked) = (0, 0);
    if let Ok(st) = engine.store().stats().await {
        for q in &st.queues {
            queue += q.pending + q.inflight;
            parked += q.parked;
        }
    }
    let mut notes = Vec::new();
    if t.web2_down.load(Ordering::Relaxed) {
        notes.push("web2 DOWN".to_string());
    }
    if t.erp_throttled.load(Ordering::Relaxed) {
        notes.push("erp answering 429s".to_string());
    }
    for h in engine.endpoint_health() {
        if h.breaker != "closed" {
            notes.push(format!("{} breaker {}", h.endpoint, h.breaker));
        }
    }
    println!(
        "[{:>3}s] captured {:>6}  delivered {:>6}  retried {:>4}  dead {:>2}  queue {:>4}  parked {:>2}  p99 lag {:>5} ms  orders {:>4}  ats-refused {:>3}{}",
        elapsed.as_secs(),
        s.captured,
        s.delivered,
        s.retried,
        s.dead_lettered,
        queue,
        parked,
        s.lag_p99_ms,
        t.orders_placed.load(Ordering::Relaxed),
        hub_refused(sys),
        if notes.is_empty() { String::new() } else { format!("  | {}", notes.join(", ")) }
    );
}

/// Checkouts the hub refused, over both stores.
fn hub_refused(sys: &Systems) -> u64 {
    sys.shops
        .iter()
        .map(|(_, s)| s.counters().hub_refused)
        .sum()
}

/// Cross-system agreement at one moment.
#[derive(Default, Debug)]
struct Report {
    drained: bool,
    orders_total: usize,
    orders_in_erp_once: usize,
    orders_duplicated: Vec<String>,
    orders_missing: Vec<String>,
    orders_dead_lettered: Vec<(String, String)>,
    stock_positions: usize,
    stock_mismatches: Vec<String>,
    ledger_positions: usize,
    ledger_mismatches: Vec<String>,
    /// Reservations by state: held, committed, released, expired, cancelled.
    reservations: [usize; 5],
    /// Committed reservations of orders the ERP has, not released.
    reservations_stuck: Vec<String>,
    /// Committed reservations of dead-lettered orders (awaiting an operator).
    reservations_excused: Vec<String>,
    oversold_units: u64,
    shipments_total: usize,
    shipments_missing: Vec<String>,
    parked: usize,
    other_dead_letters: Vec<String>,
}

impl Report {
    fn lost(&self) -> usize {
        self.orders_missing.len()
            + self.orders_duplicated.len()
            + self.stock_mismatches.len()
            + self.ledger_mismatches.len()
            + self.shipments_missing.len()
            + self.reservations_stuck.len()
    }
    fn ok(&self) -> bool {
        self.drained
            && self.lost() == 0
            && self.oversold_units == 0
            && self.parked == 0
            && self.other_dead_letters.is_empty()
    }
}

async fn verify(engine: &Engine, sys: &Systems, skus: &[String]) -> anyhow::Result<Report> {
    let mut r = Report {
        drained: engine.is_drained().await?,
        ..Report::default()
    };
    let store = engine.store();
    r.parked = store.items(None, ItemState::Parked, 10_000).await?.len();
    let dead = store
        .dead_letters(DeadLetterFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .await?;
    let mut dead_orders: BTreeMap<String, String> = BTreeMap::new();
    for d in &dead {
        if d.kind == concord_core::Kind::Order {
            dead_orders.insert(d.key.clone(), format!("#{} {}", d.id, d.reason));
        } else {
            r.other_dead_letters.push(format!(
                "#{} {} {} → {}: {}",
                d.id, d.kind, d.key, d.endpoint, d.reason
            ));
        }
    }
    let mut in_erp: BTreeMap<String, usize> = BTreeMap::new();
    for so in sys.erp.sales_orders() {
        *in_erp.entry(so.reference.clone()).or_default() += 1;
    }
    for (name, shop) in &sys.shops {
        for o in shop.orders() {
            r.orders_total += 1;
            let reference = format!("{name}/{}", o.number);
            match in_erp.get(&reference).copied().unwrap_or(0) {
                1 => r.orders_in_erp_once += 1,
                0 => match dead_orders.get(&reference) {
                    Some(reason) => r
                        .orders_dead_lettered
                        .push((reference.clone(), reason.clone())),
                    None => r.orders_missing.push(reference),
                },
                n => r.orders_duplicated.push(format!("{reference} ×{n}")),
            }
        }
    }
    // The hub's ledger holds the ERP's figures…
    let levels = store.levels(skus).await?;
    for sku in skus {
        for loc in LOCATIONS {
            let Some(st) = sys.erp.stock(sku, loc) else {
                continue;
            };
            r.ledger_positions += 1;
            let got = levels
                .iter()
                .find(|l| &l.sku == sku && l.location == loc)
                .map(|l| (l.on_hand, l.committed));
            if got != Some((st.on_hand, st.committed)) {
                r.ledger_mismatches.push(format!(
                    "{sku}@{loc} in the hub's ledger: {got:?}, ERP says ({}, {})",
                    st.on_hand, st.committed
                ));
            }
        }
    }
    // …and each store shows the hub's available-to-sell for it.
    for (name, shop) in &sys.shops {
        let ats = engine.availability(name, skus).await?;
        for a in ats {
            r.stock_positions += 1;
            let got = shop.inventory(&a.sku).get("default").copied();
            if got != Some(a.ats) {
                r.stock_mismatches.push(format!(
                    "{} at {name}: {got:?}, the hub's ats is {}",
                    a.sku, a.ats
                ));
            }
        }
    }
    // Every reservation of an order the ERP has is released; only a dead-lettered order's
    // reservation may stay committed.
    for res in store.reservations(None, None, 1_000_000).await? {
        let slot = match res.state {
            ReservationState::Held => 0,
            ReservationState::Committed => 1,
            ReservationState::Released => 2,
            ReservationState::Expired => 3,
            ReservationState::Cancelled => 4,
        };
        r.reservations[slot] += 1;
        if res.state == ReservationState::Committed {
            let order = res.order.clone().unwrap_or_default();
            if dead_orders.contains_key(&order) {
                r.reservations_excused
                    .push(format!("{} of {order}", res.id));
            } else if in_erp.contains_key(&order) {
                r.reservations_stuck
                    .push(format!("reservation {} of {order} still committed", res.id));
            }
        }
    }
    r.oversold_units = sys.erp.counters().oversold_units;
    let shop_orders: BTreeMap<String, (&ShopHandle, String)> = sys
        .shops
        .iter()
        .flat_map(|(name, shop)| {
            shop.orders()
                .into_iter()
                .map(move |o| (format!("{name}/{}", o.number), (shop, o.id.clone())))
        })
        .collect();
    for sh in sys.erp.shipments() {
        r.shipments_total += 1;
        let id = sh["id"].as_str().unwrap_or_default().to_string();
        let order = sh["order"].as_str().unwrap_or_default();
        let found = shop_orders
            .get(order)
            .is_some_and(|(shop, oid)| shop.fulfillments(oid).iter().any(|f| f.shipment_id == id));
        if !found {
            r.shipments_missing.push(format!("{id} of {order}"));
        }
    }
    Ok(r)
}

async fn print_final(
    engine: &Engine,
    sys: &Systems,
    t: &Traffic,
    r: &Report,
    showcase: Option<&crate::showcase::Showcase>,
    elapsed: Duration,
) -> anyhow::Result<()> {
    let s = engine.stats(None);
    println!(
        "\n== concord demo: final summary after {:.1} s ==",
        elapsed.as_secs_f64()
    );
    println!(
        "captured       {:>7}  (changes journaled; {} duplicates dropped)",
        s.captured, s.duplicates
    );
    println!("delivered      {:>7}", s.delivered);
    println!(
        "retried        {:>7}  (web2 outage, ERP 429s; {} rate-limited)",
        s.retried, s.rate_limited
    );
    println!("dead-lettered  {:>7}", s.dead_lettered);
    println!(
        "lag p50/p99    {:>4} / {} ms (capture → delivery)",
        s.lag_p50_ms, s.lag_p99_ms
    );
    println!("traffic        {} checkouts ({} refused by the hub, {} failed), {} carts abandoned, {} ERP goods receipts",
        t.orders_placed.load(Ordering::Relaxed), t.orders_refused.load(Ordering::Relaxed),
        t.orders_failed.load(Ordering::Relaxed), t.carts_abandoned.load(Ordering::Relaxed),
        t.stock_changes.load(Ordering::Relaxed));
    println!("orders         {} placed: {} in the ERP exactly once, {} dead-lettered with a reason, {} missing, {} duplicated",
        r.orders_total, r.orders_in_erp_once, r.orders_dead_lettered.len(), r.orders_missing.len(), r.orders_duplicated.len());
    for (reference, reason) in &r.orders_dead_lettered {
        println!("               dead letter: order {reference}: {reason}");
    }
    println!(
        "stock          {} ERP positions in the hub's ledger, {} disagree; {} store figures = the hub's ats, {} disagree",
        r.ledger_positions,
        r.ledger_mismatches.len(),
        r.stock_positions,
        r.stock_mismatches.len(),
    );
    let [held, committed, released, expired, cancelled] = r.reservations;
    println!(
        "reservations   {held} held / {committed} committed / {released} released / {expired} expired / {cancelled} cancelled; {} stuck{}",
        r.reservations_stuck.len(),
        if r.reservations_excused.is_empty() {
            String::new()
        } else {
            format!(
                " ({} committed for dead-lettered orders, awaiting an operator)",
                r.reservations_excused.len()
            )
        }
    );
    println!(
        "hub refused    {:>7}  (insufficient stock)",
        hub_refused(sys)
    );
    println!(
        "oversold       {:>7}  (units the ERP accepted beyond its own on-hand − committed)",
        r.oversold_units
    );
    println!(
        "shipments      {} shipped by the ERP, {} missing at their store",
        r.shipments_total,
        r.shipments_missing.len()
    );
    for line in r
        .orders_missing
        .iter()
        .chain(&r.orders_duplicated)
        .chain(&r.stock_mismatches)
        .chain(&r.ledger_mismatches)
        .chain(&r.shipments_missing)
        .chain(&r.reservations_stuck)
        .take(10)
    {
        println!("  ! {line}");
    }
    for line in &r.other_dead_letters {
        println!("  ! unexpected dead letter {line}");
    }
    if r.parked > 0 {
        println!("  ! {} deliveries still parked", r.parked);
    }
    if !r.drained {
        println!("  ! the queues did not drain in time");
    }
    let lookup = |customer: Option<&str>| {
        engine.price(&PriceRequest {
            channel: "web1".into(),
            customer: customer.map(str::to_string),
            sku: CONTRACT_SKU.into(),
            quantity: 48,
            currency: None,
        })
    };
    match (lookup(Some(CONTRACT_CUSTOMER)), lookup(None)) {
        (Ok(c), Ok(l)) => println!(
            "prices         GET /v1/prices?channel=web1&customer={CONTRACT_CUSTOMER}&sku={CONTRACT_SKU}&qty=48 → {} {}/unit, {} total ({}); list price {}/unit",
            c.quote.currency, c.quote.unit_minor, c.quote.extended_minor, c.quote.rule, l.quote.unit_minor
        ),
        (c, l) => println!("  ! price lookup failed: {:?} / {:?}", c.err(), l.err()),
    }
    if let Some(sc) = showcase {
        println!(
            "lifecycle      one order driven end to end at web1 ({}):",
            sc.key
        );
        for line in &sc.lines {
            println!("               {line}");
        }
        if let Some(e) = &sc.failed {
            println!("  ! the lifecycle showcase stopped: {e}");
        }
    }
    println!("lost: {}", r.lost());
    let showcase_ok = showcase.is_none_or(|s| s.failed.is_none());
    println!(
        "{}",
        if r.ok() && showcase_ok {
            "result: OK — every change delivered or dead-lettered with a reason, nothing oversold"
        } else {
            "result: FAILED"
        }
    );
    Ok(())
}

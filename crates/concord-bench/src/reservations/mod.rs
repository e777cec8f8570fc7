//! Case `reservations`: the stock pool's checkout path under contention (design §5), in one
//! process and over real HTTP on 127.0.0.1 — many keep-alive HTTP clients →
//! `POST /v1/reservations` (axum) → `Engine::reserve` → the SQLite store's single writer
//! (all lines or nothing, group commit, WAL, `synchronous=FULL` by default) → 201/409 — while the
//! broadcaster recomputes every channel's available-to-sell for the SKUs just touched and the
//! dispatcher pushes it to a sandbox storefront, as in production.
//!
//! **Seeding goes through the real path**: the sandbox ERP gets each hot SKU's on-hand at two
//! locations (`WH1`, `WH2`) and one phone order from a sales rep that commits part of `WH1`'s
//! stock; the ERP's signed webhooks carry those figures to `/hooks/erp`, the processor writes
//! them to the ledger. The run starts once the ledger holds exactly the ERP's figures and the
//! engine is idle. A units buffer keeps some of `WH2` back from the channel.
//!
//! The load: `--clients` tasks, each with its own keep-alive `reqwest` client and one request
//! in flight, share `--requests` reservations; request `n` (deterministic from its number)
//! has 1 or 2 lines over `--skus` hot SKUs with quantities 1–3 and a unique client key. Supply
//! is sized so that total demand is `--oversubscribe` × supply: every SKU sells out and the
//! rest of its demand is refused (409).
//!
//! Checks, from the 201 bodies (the lines each reservation got, by location) against the
//! ledger after the run:
//! - `oversold` = Σ over positions of max(0, reserved − (on_hand − committed − buffer)): must
//!   be 0;
//! - `held_mismatch`: positions whose ledger `held` differs from the sum reserved there: must
//!   be 0;
//! - `bad_refusals`: 409 answers whose `short` list names no line with `requested > available`;
//! - exactness: after the timed load, an untimed sweep reserves, for every SKU still showing
//!   stock, exactly its available-to-sell (must be 201) and then one more unit (must be 409);
//!   `inexact` counts SKUs where either answer was wrong or where the units reserved in the end
//!   differ from `on_hand − committed − buffer` (must be 0). `unsold` is what the sweep found
//!   left (1–2-line requests with quantities up to 3 can leave a few units behind);
//! - `ats_mismatch`: SKUs whose `GET /v1/availability` differs from supply − reserved;
//! - `shop_stale`: SKUs whose storefront level (pushed by the broadcaster) is not the final
//!   available-to-sell once the engine is idle.
//!
//! `ops_per_s` is answered requests (201 + 409) per second, first send to last answer; latency
//! is per request, client side. Since the machine may be shared, the run also reports the CPU
//! time per answered request of the whole process (`cpu_us_per_op`, load generator included)
//! and of the store's writer thread (`writer_us_per_op`), and the load average.

use crate::harness::{cpu_seconds, loadavg, percentile, round1, round3, Rig};
use anyhow::{bail, Context};
use concord_core::inventory::buffer;
use concord_store::Store;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
const CHANNEL: &str = "shop";
/// Locations feeding the channel, in routing priority order.
const LOCATIONS: [&str; 2] = ["WH1", "WH2"];
/// Units of `WH2` kept back from the channel (`[[inventory.buffers]]`).
const WH2_BUFFER: i64 = 3;
/// Goal, printed beside the figures.
const GOAL_OPS_PER_S: f64 = 20_000.0;

#[derive(clap::Args, Clone)]
pub struct ReservationsArgs {
    /// Reservation requests in the run.
    #[arg(long, default_value_t = 100_000)]
    pub requests: u64,
    /// Hot SKUs the lines are spread over (uniformly).
    #[arg(long, default_value_t = 100)]
    pub skus: usize,
    /// Concurrent HTTP clients (one request in flight each).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Expected demand / supply (> 1: every SKU sells out).
    #[arg(long, default_value_t = 1.25)]
    pub oversubscribe: f64,
    /// Run the case this many times (each on a fresh store and emulators).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Give up waiting (seeding, draining) after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

impl Default for ReservationsArgs {
    fn default() -> Self {
        ReservationsArgs {
            requests: 100_000,
            skus: 100,
            clients: 64,
            oversubscribe: 1.25,
            repeat: 1,
            timeout: 120,
        }
    }
}

/// The figures of one run.
struct Outcome {
    requests: u64,
    seconds: f64,
    ops_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    reserved: u64,
    refused: u64,
    errors: u64,
    units_reserved: i64,
    supply: i64,
    oversold: i64,
    held_mismatch: usize,
    unsold: i64,
    inexact: usize,
    bad_refusals: u64,
    ats_mismatch: usize,
    shop_stale: usize,
    write_groups: u64,
    /// Process CPU (all threads, load generator included) per answered request, µs.
    cpu_us_per_op: f64,
    /// The store writer thread's CPU per answered request, µs.
    writer_us_per_op: f64,
    load_start: f64,
    load_end: f64,
}

pub async fn run(args: &ReservationsArgs) -> anyhow::Result<()> {
    if args.skus < 2 || args.clients == 0 || args.requests == 0 {
        bail!("reservations: give at least 2 SKUs, 1 client and 1 request");
    }
    if args.oversubscribe.is_nan() || args.oversubscribe <= 0.0 {
        bail!("--oversubscribe must be greater than 0");
    }
    let mut outcomes = Vec::new();
    for _ in 0..args.repeat.max(1) {
        let rig = Rig::start(None, &config_rest()).await?;
        let result = measure(&rig, args).await;
        rig.stop().await;
        outcomes.push(result?);
    }
    print_table(&outcomes);
    for o in &outcomes {
        println!("{}", json_line(o));
    }
    Ok(())
}

fn print_table(outcomes: &[Outcome]) {
    println!(
        "{:<13} {:>8} {:>7} {:>8} {:>7} {:>7} {:>7} {:>8} {:>8} {:>6} {:>8} {:>5} {:>7} {:>7} {:>9} {:>12}",
        "case",
        "requests",
        "seconds",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "reserved",
        "refused",
        "errors",
        "oversold",
        "held≠",
        "inexact",
        "groups",
        "cpu µs/op",
        "writer µs/op"
    );
    for o in outcomes {
        println!(
            "{:<13} {:>8} {:>7.3} {:>8.0} {:>7.2} {:>7.2} {:>7.2} {:>8} {:>8} {:>6} {:>8} {:>5} {:>7} {:>7} {:>9.1} {:>12.1}",
            "reservations",
            o.requests,
            o.seconds,
            o.ops_per_s,
            o.p50_ms,
            o.p99_ms,
            o.max_ms,
            o.reserved,
            o.refused,
            o.errors,
            o.oversold,
            o.held_mismatch,
            o.inexact,
            o.write_groups,
            o.cpu_us_per_op,
            o.writer_us_per_op
        );
    }
    println!(
        "goal (not asserted): reservations >= {GOAL_OPS_PER_S:.0} requests/s with oversold = 0"
    );
    for o in outcomes {
        println!(
            "  reservations  {:.0} requests/s {} {GOAL_OPS_PER_S:.0}; oversold {}; held mismatches {}; \
             unsold after the load {} of {} units; inexact {}; bad refusals {}; ats mismatches {}; storefront stale {}; load average {:.2} -> {:.2}",
            o.ops_per_s,
            if o.ops_per_s >= GOAL_OPS_PER_S { ">=" } else { "<" },
            o.oversold,
            o.held_mismatch,
            o.unsold,
            o.supply,
            o.inexact,
            o.bad_refusals,
            o.ats_mismatch,
            o.shop_stale,
            o.load_start,
            o.load_end,
        );
    }
}

fn json_line(o: &Outcome) -> Value {
    let mut v = json!({
        "bench": "reservations",
        "ops_per_s": round1(o.ops_per_s),
        "p99_ms": round3(o.p99_ms),
        "oversold": o.oversold,
    });
    if let Some(m) = v.as_object_mut() {
        m.insert("requests".into(), json!(o.requests));
        m.insert("seconds".into(), json!(round3(o.seconds)));
        m.insert("p50_ms".into(), json!(round3(o.p50_ms)));
        m.insert("max_ms".into(), json!(round3(o.max_ms)));
        m.insert("reserved".into(), json!(o.reserved));
        m.insert("refused".into(), json!(o.refused));
        m.insert("errors".into(), json!(o.errors));
        m.insert("units_reserved".into(), json!(o.units_reserved));
        m.insert("supply".into(), json!(o.supply));
        m.insert("held_mismatch".into(), json!(o.held_mismatch));
        m.insert("unsold".into(), json!(o.unsold));
        m.insert("inexact".into(), json!(o.inexact));
        m.insert("bad_refusals".into(), json!(o.bad_refusals));
        m.insert("ats_mismatch".into(), json!(o.ats_mismatch));
        m.insert("shop_stale".into(), json!(o.shop_stale));
        m.insert("write_groups".into(), json!(o.write_groups));
        m.insert("cpu_us_per_op".into(), json!(round1(o.cpu_us_per_op)));
        m.insert("writer_us_per_op".into(), json!(round1(o.writer_us_per_op)));
        m.insert(
            "loadavg".into(),
            json!(round1(o.load_start.max(o.load_end))),
        );
    }
    v
}

/// The case's flows and pool, after the endpoints.
fn config_rest() -> String {
    format!(
        r#"
# Feeds the ledger from the ERP; the pool turns it into the channel's available-to-sell.
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["shop"]
[flows.map_out]
"*" = '{{sku, location, available: ([.on_hand - .committed, 0] | max)}}'

[inventory]
source = "erp"
reservation_ttl = "1h"

[inventory.channels.shop]
locations = ["WH1", "WH2"]
stock_location = "default"

[[inventory.buffers]]
location = "WH2"
channel = "shop"
units = {buffer}
"#,
        buffer = WH2_BUFFER,
    )
}

impl Rig {
    /// Wait until the engine has nothing pending or in flight and no SKU awaits recomputation.
    async fn idle(&self, deadline: Instant) -> anyhow::Result<bool> {
        loop {
            if self.engine.is_drained().await? && self.store.dirty_skus(1).await?.is_empty() {
                // Settle: the broadcaster may be between reading the marks and planning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if self.engine.is_drained().await? && self.store.dirty_skus(1).await?.is_empty() {
                    return Ok(true);
                }
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn sku_name(i: usize) -> String {
    format!("HOT-{:04}", i + 1)
}

/// The ERP's figures of one hot SKU: (WH1 on-hand, WH1 committed by the rep's order, WH2
/// on-hand), so that the channel can sell exactly `supply` units.
fn seed_figures(i: usize, supply: i64) -> (i64, i64, i64) {
    let committed = 1 + (i as i64 % 5);
    let wh1_free = supply * 3 / 5;
    let wh2_free = supply - wh1_free;
    (wh1_free + committed, committed, wh2_free + WH2_BUFFER)
}

/// Request `n`: 1 or 2 lines over distinct SKUs, quantities 1–3.
fn request_lines(n: u64, skus: usize) -> Vec<(usize, i64)> {
    let mut rng = fastrand::Rng::with_seed(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5eed);
    let first = rng.usize(..skus);
    let mut lines = vec![(first, rng.i64(1..=3))];
    if rng.bool() {
        let mut second = rng.usize(..skus - 1);
        if second >= first {
            second += 1;
        }
        lines.push((second, rng.i64(1..=3)));
    }
    lines
}

/// Seed the ERP and wait until the ledger holds its figures and the engine is idle.
async fn seed(
    rig: &Rig,
    skus: &[String],
    supply: i64,
    deadline: Instant,
) -> anyhow::Result<BTreeMap<(String, String), (i64, i64)>> {
    let http = reqwest::Client::new();
    let mut expect = BTreeMap::new();
    let mut order_lines = Vec::new();
    for (i, s) in skus.iter().enumerate() {
        let (wh1, committed, wh2) = seed_figures(i, supply);
        rig.erp
            .upsert_product(json!({"sku": s, "name": format!("Hot product {}", i + 1)}))
            .map_err(|e| anyhow::anyhow!("ERP product {s}: {e}"))?;
        rig.erp
            .set_stock(s, LOCATIONS[0], wh1)
            .map_err(|e| anyhow::anyhow!("ERP stock {s}: {e}"))?;
        rig.erp
            .set_stock(s, LOCATIONS[1], wh2)
            .map_err(|e| anyhow::anyhow!("ERP stock {s}: {e}"))?;
        order_lines.push(json!({"sku": s, "quantity": committed}));
        expect.insert((s.clone(), LOCATIONS[0].to_string()), (wh1, committed));
        expect.insert((s.clone(), LOCATIONS[1].to_string()), (wh2, 0));
    }
    // A phone order keyed in by a sales rep commits part of WH1 (the ERP's default location).
    let erp = rig.erp.base_url();
    let customer: Value = http
        .post(format!("{erp}/api/customers"))
        .json(&json!({"email": "rep@bench.example", "name": "Bench rep"}))
        .send()
        .await?
        .error_for_status()
        .context("creating the ERP customer")?
        .json()
        .await?;
    let customer_id = customer["id"]
        .as_str()
        .context("the ERP's customer has no id")?;
    http.post(format!("{erp}/api/sales-orders"))
        .json(&json!({
            "channel": "phone", "number": "1", "customer_id": customer_id,
            "customer": {"email": "rep@bench.example"}, "currency": "USD",
            "lines": order_lines,
        }))
        .send()
        .await?
        .error_for_status()
        .context("creating the ERP's phone order")?;

    loop {
        let levels = rig.store.levels(skus).await?;
        let seen = levels
            .iter()
            .filter(|l| {
                expect.get(&(l.sku.clone(), l.location.clone())) == Some(&(l.on_hand, l.committed))
            })
            .count();
        if seen == expect.len() && rig.idle(Instant::now() + Duration::from_secs(5)).await? {
            return Ok(expect);
        }
        if Instant::now() > deadline {
            bail!(
                "seeding: the ledger holds {seen} of {} ERP figures after the timeout",
                expect.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What one client saw.
#[derive(Default)]
struct ClientLog {
    lat_ms: Vec<f64>,
    reserved: u64,
    refused: u64,
    /// 409s whose `short` list does not justify the refusal.
    bad_refusals: u64,
    errors: u64,
    first_error: Option<String>,
    /// Units reserved per (sku index, location).
    got: HashMap<(usize, String), i64>,
}

async fn client(
    base: String,
    skus: Arc<Vec<String>>,
    index: Arc<HashMap<String, usize>>,
    next: Arc<AtomicU64>,
    total: u64,
    run: u64,
) -> ClientLog {
    let mut log = ClientLog::default();
    let http = match reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            log.errors += 1;
            log.first_error = Some(e.to_string());
            return log;
        }
    };
    let url = format!("{base}/v1/reservations");
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            return log;
        }
        let lines = request_lines(n, skus.len());
        let body = json!({
            "channel": CHANNEL,
            "key": format!("bench-{run}-{n}"),
            "lines": lines.iter().map(|(s, q)| json!({"sku": skus[*s], "quantity": q})).collect::<Vec<_>>(),
        });
        let t = Instant::now();
        let answer = async {
            let r = http.post(&url).json(&body).send().await?;
            let status = r.status();
            let body: Value = r.json().await?;
            Ok::<_, reqwest::Error>((status, body))
        }
        .await;
        log.lat_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        match answer {
            Ok((status, body)) if status.as_u16() == 201 => {
                log.reserved += 1;
                for l in body["lines"].as_array().into_iter().flatten() {
                    let sku = l["sku"].as_str().and_then(|s| index.get(s));
                    let loc = l["location"].as_str();
                    match (sku, loc, l["quantity"].as_i64()) {
                        (Some(s), Some(loc), Some(q)) => {
                            *log.got.entry((*s, loc.to_string())).or_default() += q
                        }
                        _ => {
                            log.errors += 1;
                            log.first_error
                                .get_or_insert_with(|| format!("odd reservation line {l}"));
                        }
                    }
                }
            }
            Ok((status, body)) if status.as_u16() == 409 => {
                log.refused += 1;
                if !justified(&body) {
                    log.bad_refusals += 1;
                }
            }
            Ok((status, body)) => {
                log.errors += 1;
                log.first_error
                    .get_or_insert_with(|| format!("HTTP {status}: {body}"));
            }
            Err(e) => {
                log.errors += 1;
                log.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// A 409 names at least one line that could not be filled.
fn justified(body: &Value) -> bool {
    body["short"].as_array().into_iter().flatten().any(|x| {
        match (x["requested"].as_i64(), x["available"].as_i64()) {
            (Some(r), Some(a)) => r > a,
            _ => false,
        }
    })
}

/// One reservation outside the timed load: (status, lines as (sku, location, quantity)).
async fn reserve_once(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    sku: &str,
    quantity: i64,
) -> anyhow::Result<(u16, Vec<(String, String, i64)>)> {
    let r = http
        .post(format!("{base}/v1/reservations"))
        .json(
            &json!({"channel": CHANNEL, "key": key, "lines": [{"sku": sku, "quantity": quantity}]}),
        )
        .send()
        .await?;
    let status = r.status().as_u16();
    let body: Value = r.json().await?;
    let lines = body["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            Some((
                l["sku"].as_str()?.to_string(),
                l["location"].as_str()?.to_string(),
                l["quantity"].as_i64()?,
            ))
        })
        .collect();
    Ok((status, lines))
}

/// `ats` of every SKU for the channel, from `GET /v1/availability`.
async fn availability(
    http: &reqwest::Client,
    base: &str,
    skus: &[String],
) -> anyhow::Result<Vec<Option<i64>>> {
    let mut query: Vec<(&str, &str)> = vec![("channel", CHANNEL)];
    query.extend(skus.iter().map(|s| ("sku", s.as_str())));
    let avail: Value = http
        .get(format!("{base}/v1/availability"))
        .query(&query)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(skus
        .iter()
        .map(|s| {
            avail["skus"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["sku"].as_str() == Some(s.as_str())))
                .and_then(|x| x["ats"].as_i64())
        })
        .collect())
}

async fn measure(rig: &Rig, args: &ReservationsArgs) -> anyhow::Result<Outcome> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let skus: Vec<String> = (0..args.skus).map(sku_name).collect();
    // Expected units requested per SKU: requests × 1.5 lines × 2 units / SKUs.
    let demand_per_sku = args.requests as f64 * 3.0 / args.skus as f64;
    let supply = ((demand_per_sku / args.oversubscribe).round() as i64).max(2);
    let expect = seed(rig, &skus, supply, Instant::now() + timeout).await?;

    let load_start = loadavg();
    let groups_before = rig.store.write_groups();
    let cpu_before = cpu_seconds();
    let stats_before = rig.engine.stats(Some(i64::MAX));
    let shop_before = rig.shop.counters();
    let index: HashMap<String, usize> = skus
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i))
        .collect();
    let (skus_arc, index) = (Arc::new(skus.clone()), Arc::new(index));
    let next = Arc::new(AtomicU64::new(0));
    let run = fastrand::u64(..);
    let started = Instant::now();
    let mut clients = JoinSet::new();
    for _ in 0..args.clients {
        clients.spawn(client(
            rig.base.clone(),
            Arc::clone(&skus_arc),
            Arc::clone(&index),
            Arc::clone(&next),
            args.requests,
            run,
        ));
    }
    let mut logs = Vec::with_capacity(args.clients);
    while let Some(log) = clients.join_next().await {
        logs.push(log.context("a client task failed")?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = cpu_seconds();
    let stats_after = rig.engine.stats(Some(i64::MAX));
    let shop_after = rig.shop.counters();
    let write_groups = rig.store.write_groups() - groups_before;
    let load_end = loadavg();

    let mut lat_ms = Vec::with_capacity(args.requests as usize);
    let (mut reserved, mut refused, mut errors, mut bad_refusals) = (0, 0, 0, 0);
    let mut first_error = None;
    let mut got: HashMap<(usize, String), i64> = HashMap::new();
    for log in logs {
        lat_ms.extend(log.lat_ms);
        reserved += log.reserved;
        refused += log.refused;
        errors += log.errors;
        bad_refusals += log.bad_refusals;
        if first_error.is_none() {
            first_error = log.first_error;
        }
        for (k, v) in log.got {
            *got.entry(k).or_default() += v;
        }
    }
    if let Some(e) = &first_error {
        eprintln!("[reservations] {errors} failed requests; first: {e}");
    }

    // The sweep (untimed): sell what is left of every SKU exactly, then ask for one unit more.
    let http = reqwest::Client::new();
    let mut unsold = 0i64;
    let mut inexact = 0usize;
    let left = availability(&http, &rig.base, &skus).await?;
    for (i, s) in skus.iter().enumerate() {
        let left = left[i].unwrap_or(0);
        if left > 0 {
            unsold += left;
            let (status, lines) =
                reserve_once(&http, &rig.base, &format!("sweep-{run}-{i}"), s, left).await?;
            if status != 201 {
                inexact += 1;
            }
            for (_, loc, q) in lines {
                *got.entry((i, loc)).or_default() += q;
            }
        }
        let (status, _) =
            reserve_once(&http, &rig.base, &format!("sweep-{run}-{i}-more"), s, 1).await?;
        if status != 409 {
            inexact += 1;
        }
    }

    // Checks against the ledger once the engine is idle (the storefront has the final ats).
    let idle = rig.idle(Instant::now() + timeout).await?;
    if !idle {
        eprintln!("[reservations] the engine did not become idle within {timeout:?}");
    }
    let levels = rig.store.levels(&skus).await?;
    let rules = rig
        .engine
        .config()
        .inventory
        .as_ref()
        .map(|i| i.buffers.clone())
        .unwrap_or_default();
    let mut oversold = 0i64;
    let mut held_mismatch = 0usize;
    let mut supply_total = 0i64;
    let mut sellable_of: Vec<i64> = vec![0; skus.len()];
    let mut reserved_of: Vec<i64> = vec![0; skus.len()];
    for (i, s) in skus.iter().enumerate() {
        for loc in LOCATIONS {
            let level = levels.iter().find(|l| &l.sku == s && l.location == loc);
            let (on_hand, committed, held) =
                level.map_or((0, 0, 0), |l| (l.on_hand, l.committed, l.held));
            if expect.get(&(s.clone(), loc.to_string())) != Some(&(on_hand, committed)) {
                bail!("the ERP's figures for {s}@{loc} changed during the run");
            }
            let buf = buffer(&rules, s, CHANNEL, loc, on_hand);
            let can_sell = (on_hand - committed - buf).max(0);
            let sold = got.get(&(i, loc.to_string())).copied().unwrap_or(0);
            oversold += (sold - can_sell).max(0);
            if held != sold {
                held_mismatch += 1;
            }
            supply_total += can_sell;
            sellable_of[i] += can_sell;
            reserved_of[i] += sold;
        }
    }
    inexact += (0..skus.len())
        .filter(|&i| reserved_of[i] != sellable_of[i])
        .count();
    // Served availability and what the storefront was told: all sold out now.
    let ats = availability(&http, &rig.base, &skus).await?;
    let mut ats_mismatch = 0;
    let mut shop_stale = 0;
    for (i, s) in skus.iter().enumerate() {
        let want = (sellable_of[i] - reserved_of[i]).max(0);
        if ats[i] != Some(want) {
            ats_mismatch += 1;
        }
        if rig.shop.inventory(s).get("default") != Some(&want) {
            shop_stale += 1;
        }
    }
    let units_reserved: i64 = reserved_of.iter().sum();
    lat_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| percentile(&lat_ms, p);
    eprintln!(
        "[reservations] {} requests by {} clients over {} SKUs in {seconds:.3}s: {reserved} reserved \
         ({units_reserved} units of {supply_total} sellable), {refused} refused, {errors} errors; \
         {write_groups} write groups ({:.1} requests/group); during the load the broadcaster \
         planned {} stock items, {} were delivered, the storefront took {} stock writes in {} calls",
        args.requests,
        args.clients,
        skus.len(),
        (reserved + refused) as f64 / write_groups.max(1) as f64,
        stats_after.planned - stats_before.planned,
        stats_after.delivered - stats_before.delivered,
        shop_after.writes_of("stock") - shop_before.writes_of("stock"),
        shop_after.requests - shop_before.requests,
    );
    let answered = (reserved + refused).max(1) as f64;
    Ok(Outcome {
        cpu_us_per_op: (cpu_after.0 - cpu_before.0) * 1e6 / answered,
        writer_us_per_op: (cpu_after.1 - cpu_before.1) * 1e6 / answered,
        requests: args.requests,
        seconds,
        ops_per_s: (reserved + refused) as f64 / seconds.max(f64::MIN_POSITIVE),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: lat_ms.last().copied().unwrap_or(f64::NAN),
        reserved,
        refused,
        errors,
        units_reserved,
        supply: supply_total,
        oversold,
        held_mismatch,
        unsold,
        inexact,
        bad_refusals,
        ats_mismatch,
        shop_stale,
        write_groups,
        load_start,
        load_end,
    })
}

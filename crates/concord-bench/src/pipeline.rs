//! Case `pipeline`: the durable push path from a sandbox ERP to a sandbox storefront, in one
//! process and over real HTTP on 127.0.0.1 — `ErpSim` → signed, batched webhooks →
//! Concord's `/hooks/erp` (axum + engine, SQLite store in WAL mode in a temporary directory) →
//! journal → processor → outbox → dispatcher → bulk `POST /api/inventory/set` → `ShopSim`.
//! The stock flow is realtime without a poll, so only the push path is measured.
//!
//! Every change is a `set_stock` to a strictly increasing `on_hand` of one SKU (round robin over
//! `--skus` SKUs), so each value the storefront receives names the change it came from. Arrival
//! times come from `ShopHandle::watch_inventory`, stamped by the storefront when it stores the
//! level. A change superseded before delivery (coalesced in the outbox) counts as delivered when
//! a later value of its SKU arrives; latency percentiles are over the values that arrived.
//!
//! - throughput (`--events`, default 50,000, as fast as possible): events/s from the first change
//!   to the moment the storefront holds the final ERP value of every SKU;
//! - latency (`--rate` changes/s for `--seconds`, default 1,000/s for 10 s): p50/p99/max of
//!   change → storefront write.
//!
//! `lost` is the number of SKUs whose final level at the storefront differs from the ERP once
//! the engine has drained; it must be 0. Build with `--release` for real figures.
//!
//! Must never assert a goal: goals are printed beside the figures (design section 8).

use crate::harness::{percentile, round1, round3, Rig};
use anyhow::bail;
use clap::ValueEnum;
use concord_sandbox::InventorySet;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const LOCATION: &str = "WH1";
/// The value every SKU starts from (set during the warm-up).
const BASE: i64 = 1_000;
/// Goals, printed beside the figures.
const GOAL_EVENTS_PER_S: f64 = 10_000.0;
const GOAL_P99_MS: f64 = 100.0;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Throughput,
    Latency,
    Both,
}

#[derive(clap::Args, Clone)]
pub struct PipelineArgs {
    /// Changes in the throughput run (selects the throughput mode unless --mode says otherwise).
    #[arg(long)]
    events: Option<u64>,
    /// Changes per second in the latency run (selects the latency mode).
    #[arg(long)]
    rate: Option<u64>,
    /// Length of the latency run in seconds (selects the latency mode).
    #[arg(long)]
    seconds: Option<u64>,
    /// SKUs the changes are spread over (round robin).
    #[arg(long, default_value_t = 2_000)]
    skus: usize,
    /// Which runs; by default both, or the one(s) the other flags name.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Most events per ERP webhook POST (the emulator's default is 100).
    #[arg(long, default_value_t = 100)]
    webhook_batch: usize,
    /// Run each selected case this many times (each on a fresh store and emulators).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Give up waiting for the storefront after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Run the hub on this PostgreSQL server (a schema of its own, dropped after) instead of
    /// an SQLite file.
    #[arg(long, env = "CONCORD_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
}

impl Default for PipelineArgs {
    fn default() -> Self {
        PipelineArgs {
            events: None,
            rate: None,
            seconds: None,
            skus: 2_000,
            mode: None,
            webhook_batch: 100,
            repeat: 1,
            timeout: 300,
            postgres: None,
        }
    }
}

/// How the changes are driven.
#[derive(Clone, Copy)]
enum Drive {
    /// All at once, as fast as the ERP takes them.
    Burst { events: u64 },
    /// At a fixed rate.
    Paced { rate: u64, seconds: u64 },
}

/// The figures of one run.
struct Outcome {
    case: &'static str,
    /// `sqlite` or `postgres`.
    store: &'static str,
    events: u64,
    seconds: f64,
    events_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    lost: usize,
    /// Values that reached the storefront during the run (one per SKU and write).
    shop_writes: u64,
    /// `POST /api/inventory/set` calls.
    shop_calls: u64,
    /// Changes whose exact value arrived (the others were coalesced into a later one).
    arrived: u64,
    /// Changes whose SKU never showed this value or a later one (should be 0).
    undelivered: u64,
    detail: String,
}

pub async fn run(args: PipelineArgs) -> anyhow::Result<()> {
    if args.skus == 0 {
        bail!("--skus must be at least 1");
    }
    let mode = args.mode.unwrap_or(
        match (
            args.events.is_some(),
            args.rate.is_some() || args.seconds.is_some(),
        ) {
            (true, false) => Mode::Throughput,
            (false, true) => Mode::Latency,
            _ => Mode::Both,
        },
    );
    let mut drives = Vec::new();
    if matches!(mode, Mode::Throughput | Mode::Both) {
        drives.push(Drive::Burst {
            events: args.events.unwrap_or(50_000),
        });
    }
    if matches!(mode, Mode::Latency | Mode::Both) {
        drives.push(Drive::Paced {
            rate: args.rate.unwrap_or(1_000).max(1),
            seconds: args.seconds.unwrap_or(10).max(1),
        });
    }
    let mut outcomes = Vec::new();
    for _ in 0..args.repeat.max(1) {
        for drive in &drives {
            let o = run_case(&args, *drive).await?;
            eprintln!("{}", o.detail);
            outcomes.push(o);
        }
    }
    print_table(&outcomes);
    for o in &outcomes {
        println!("{}", json_line(o));
    }
    Ok(())
}

fn json_line(o: &Outcome) -> serde_json::Value {
    let mut v = json!({
        "bench": o.case,
        "store": o.store,
        "events": o.events,
        "events_per_s": round1(o.events_per_s),
        "p50_ms": round3(o.p50_ms),
        "p99_ms": round3(o.p99_ms),
        "lost": o.lost,
    });
    if let Some(m) = v.as_object_mut() {
        m.insert("max_ms".into(), json!(round3(o.max_ms)));
        m.insert("seconds".into(), json!(round3(o.seconds)));
        m.insert("shop_writes".into(), json!(o.shop_writes));
        m.insert("shop_calls".into(), json!(o.shop_calls));
    }
    v
}

fn print_table(outcomes: &[Outcome]) {
    if let Some(o) = outcomes.first() {
        println!("store: {}", o.store);
    }
    println!(
        "{:<17} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>5} {:>11} {:>9}",
        "case",
        "events",
        "seconds",
        "events/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "lost",
        "shop writes",
        "arrived"
    );
    for o in outcomes {
        println!(
            "{:<17} {:>8} {:>8.3} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>5} {:>11} {:>9}",
            o.case,
            o.events,
            o.seconds,
            o.events_per_s,
            o.p50_ms,
            o.p99_ms,
            o.max_ms,
            o.lost,
            o.shop_writes,
            o.arrived
        );
    }
    println!(
        "goals (not asserted): pipeline >= {GOAL_EVENTS_PER_S:.0} events/s sustained; \
         pipeline_latency p99 < {GOAL_P99_MS:.0} ms at 1000 events/s; lost = 0"
    );
    for o in outcomes {
        let verdict = match o.case {
            "pipeline" => format!(
                "{:.0} events/s {} {GOAL_EVENTS_PER_S:.0}",
                o.events_per_s,
                if o.events_per_s >= GOAL_EVENTS_PER_S {
                    ">="
                } else {
                    "<"
                }
            ),
            _ => format!(
                "p99 {:.2} ms {} {GOAL_P99_MS:.0} ms",
                o.p99_ms,
                if o.p99_ms < GOAL_P99_MS { "<" } else { ">=" }
            ),
        };
        println!(
            "  {:<17} {verdict}; lost {}; undelivered {}",
            o.case, o.lost, o.undelivered
        );
    }
}

/// The pipeline's flow: the demo's stock flow, push only (no poll), so the webhook path is
/// what is measured.
const FLOWS: &str = r#"
[[flows]]
name = "stock-push"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["shop"]
filter = '.location == "WH1"'
[flows.map_out]
"*" = '{sku, location, available: ([.on_hand - .committed, 0] | max)}'
"#;

impl Rig {
    /// Wait until the engine has nothing pending or in flight.
    async fn drained(&self, deadline: Instant) -> anyhow::Result<bool> {
        loop {
            if self.engine.is_drained().await? {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// What the storefront has been told, per SKU index.
struct Arrivals {
    index: HashMap<String, usize>,
    latest: Vec<i64>,
    /// (sku index, value, when stored), in store order.
    log: Vec<(usize, i64, Instant)>,
}

impl Arrivals {
    fn new(skus: &[String]) -> Self {
        Arrivals {
            index: skus
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i))
                .collect(),
            latest: vec![i64::MIN; skus.len()],
            log: Vec::new(),
        }
    }

    fn drain(&mut self, rx: &mut mpsc::UnboundedReceiver<InventorySet>) {
        while let Ok(set) = rx.try_recv() {
            if set.location != LOCATION {
                continue;
            }
            if let Some(&i) = self.index.get(&set.sku) {
                self.latest[i] = set.available;
                self.log.push((i, set.available, set.at));
            }
        }
    }

    fn all_at(&self, target: &[i64]) -> bool {
        self.latest.iter().zip(target).all(|(a, t)| a == t)
    }
}

fn sku_name(i: usize) -> String {
    format!("SKU-{:05}", i + 1)
}

async fn run_case(args: &PipelineArgs, drive: Drive) -> anyhow::Result<Outcome> {
    let k = args.skus;
    let skus: Vec<String> = (0..k).map(sku_name).collect();
    let rig = Rig::start(Some(args.webhook_batch), FLOWS, args.postgres.as_deref()).await?;
    let mut watch = rig.shop.watch_inventory();
    let result = measure(&rig, &mut watch, args, drive, &skus).await;
    rig.stop().await;
    result
}

async fn measure(
    rig: &Rig,
    watch: &mut mpsc::UnboundedReceiver<InventorySet>,
    args: &PipelineArgs,
    drive: Drive,
    skus: &[String],
) -> anyhow::Result<Outcome> {
    let k = skus.len();
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut arrivals = Arrivals::new(skus);

    // Warm-up: every SKU exists at the storefront at BASE, its xref and entity are stored.
    for s in skus {
        rig.erp.set_stock(s, LOCATION, BASE)?;
    }
    let base = vec![BASE; k];
    let deadline = Instant::now() + timeout;
    loop {
        arrivals.drain(watch);
        if arrivals.all_at(&base) {
            break;
        }
        if Instant::now() > deadline {
            bail!("warm-up: the storefront did not get every SKU within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if !rig.drained(deadline).await? {
        bail!("warm-up: the engine did not drain within {timeout:?}");
    }
    arrivals.drain(watch);
    arrivals.log.clear();
    let shop_before = rig.shop.counters();
    let groups_before = rig.store.write_groups();
    let stats_before = rig.engine.stats(Some(i64::MAX));
    let erp_before = rig.erp.counters();

    // The changes: change n sets SKU n % k to BASE + n / k + 1.
    let total = match drive {
        Drive::Burst { events } => events,
        Drive::Paced { rate, seconds } => rate * seconds,
    };
    let mut changes: Vec<(usize, i64, Instant)> = Vec::with_capacity(total as usize);
    let mut target = base.clone();
    let started = Instant::now();
    let mut n: u64 = 0;
    while n < total {
        let due = match drive {
            Drive::Burst { .. } => total,
            Drive::Paced { rate, .. } => {
                let elapsed = started.elapsed().as_secs_f64();
                ((elapsed * rate as f64) as u64 + 1).min(total)
            }
        };
        let mut burst = 0;
        while n < due {
            let i = (n % k as u64) as usize;
            let value = BASE + (n / k as u64) as i64 + 1;
            let at = Instant::now();
            rig.erp.set_stock(&skus[i], LOCATION, value)?;
            changes.push((i, value, at));
            target[i] = value;
            n += 1;
            burst += 1;
            if burst % 256 == 0 {
                // Let the webhook sender and the server run on this worker too.
                tokio::task::yield_now().await;
            }
        }
        arrivals.drain(watch);
        if let Drive::Paced { rate, .. } = drive {
            if n < total {
                let next = started + Duration::from_secs_f64(n as f64 / rate as f64);
                tokio::time::sleep_until(next.into()).await;
            }
        }
    }
    let driven = started.elapsed();

    // Wait for the storefront to hold every final value; note when the ERP's webhooks were all
    // acknowledged (captured) and when the processor had planned everything.
    let deadline = Instant::now() + timeout;
    let expect_events = erp_before.webhook_events_sent + total;
    let mut captured_at: Option<Instant> = None;
    let mut processed_at: Option<Instant> = None;
    let mut complete = true;
    loop {
        arrivals.drain(watch);
        if captured_at.is_none() && rig.erp.counters().webhook_events_sent >= expect_events {
            captured_at = Some(Instant::now());
        }
        if captured_at.is_some() && processed_at.is_none() {
            let processed = rig.engine.stats(Some(i64::MAX)).processed;
            if processed >= stats_before.processed + total {
                processed_at = Some(Instant::now());
            }
        }
        if arrivals.all_at(&target) {
            break;
        }
        if Instant::now() > deadline {
            complete = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let waited = Instant::now();
    let drained = rig.drained(Instant::now() + timeout).await?;
    arrivals.drain(watch);

    // Lost: final level at the storefront against the ERP's, SKU by SKU.
    let mut lost = 0;
    for s in skus {
        let erp = rig.erp.stock(s, LOCATION).map(|st| st.on_hand);
        let shop = rig.shop.inventory(s).get(LOCATION).copied();
        if erp.is_none() || erp != shop {
            lost += 1;
        }
    }

    // Latency per arrived value; coalesced changes are delivered by a later value.
    let mut by_sku: Vec<HashMap<i64, Instant>> = vec![HashMap::new(); k];
    for (i, v, at) in &changes {
        by_sku[*i].insert(*v, *at);
    }
    let mut lat_ms = Vec::with_capacity(changes.len());
    let mut done_at = started;
    for (i, v, at) in &arrivals.log {
        if let Some(t) = by_sku[*i].remove(v) {
            lat_ms.push(at.saturating_duration_since(t).as_secs_f64() * 1000.0);
        }
        if *v == target[*i] && *at > done_at {
            done_at = *at;
        }
    }
    let arrived = lat_ms.len() as u64;
    let max_arrived: Vec<i64> = {
        let mut m = vec![i64::MIN; k];
        for (i, v, _) in &arrivals.log {
            m[*i] = m[*i].max(*v);
        }
        m
    };
    let undelivered = changes
        .iter()
        .filter(|(i, v, _)| *v > max_arrived[*i])
        .count() as u64;
    lat_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| percentile(&lat_ms, p);
    let first = changes.first().map(|c| c.2).unwrap_or(started);
    let seconds = done_at.saturating_duration_since(first).as_secs_f64();
    let shop_after = rig.shop.counters();
    let stats = rig.engine.stats(Some(i64::MAX));
    let erp_after = rig.erp.counters();
    let shop_writes = shop_after.writes_of("stock") - shop_before.writes_of("stock");
    let shop_calls = shop_after.requests - shop_before.requests;
    let hooks = erp_after.webhooks_sent - erp_before.webhooks_sent;
    let case = match drive {
        Drive::Burst { .. } => "pipeline",
        Drive::Paced { .. } => "pipeline_latency",
    };
    let since = |t: Option<Instant>| {
        t.map(|t| format!("{:.3}s", t.saturating_duration_since(first).as_secs_f64()))
            .unwrap_or_else(|| "-".into())
    };
    let detail = format!(
        "[{case}] {total} changes over {k} SKUs: driven in {:.3}s, webhooks acked by {} \
         ({hooks} POSTs, {:.1} events/POST, {} failed), all processed by {}, storefront complete at {:.3}s{}, \
         drained {}; captured {} processed {} planned {} delivered {} retried {}; \
         shop: {shop_writes} writes in {shop_calls} calls ({:.1}/call); store: {} write groups; \
         arrived exactly {arrived}, coalesced {}, undelivered {undelivered}",
        driven.as_secs_f64(),
        since(captured_at),
        (erp_after.webhook_events_sent - erp_before.webhook_events_sent) as f64
            / hooks.max(1) as f64,
        erp_after.webhooks_failed - erp_before.webhooks_failed,
        since(processed_at),
        seconds,
        if complete { "" } else { " (TIMED OUT)" },
        if drained {
            format!(
                "{:.3}s later",
                Instant::now()
                    .saturating_duration_since(waited)
                    .as_secs_f64()
            )
        } else {
            "NOT".into()
        },
        stats.captured - stats_before.captured,
        stats.processed - stats_before.processed,
        stats.planned - stats_before.planned,
        stats.delivered - stats_before.delivered,
        stats.retried - stats_before.retried,
        shop_writes as f64 / shop_calls.max(1) as f64,
        rig.store.write_groups() - groups_before,
        total - arrived - undelivered,
    );
    Ok(Outcome {
        case,
        store: rig.store.backend(),
        events: total,
        seconds,
        events_per_s: if seconds > 0.0 {
            total as f64 / seconds
        } else {
            f64::NAN
        },
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: lat_ms.last().copied().unwrap_or(f64::NAN),
        lost,
        shop_writes,
        shop_calls,
        arrived,
        undelivered,
        detail,
    })
}

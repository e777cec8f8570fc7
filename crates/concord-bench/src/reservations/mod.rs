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
//!
//! This module runs the case (`measure`: seed, load, sweep, checks); `seed.rs` is the rig and
//! its seeding, `load.rs` the clients, `report.rs` the table and JSON lines.
//!
//! Must never touch the ledger except through the hub's API and the ERP's webhooks, nor
//! assert the speed goal (it is printed beside the figures; the checks are reported).

mod load;
mod report;
mod seed;

use crate::harness::{cpu_seconds, loadavg, percentile, Rig};
use anyhow::{bail, Context};
use concord_core::inventory::buffer;
use load::{availability, client, reserve_once};
use report::{json_line, print_table, Outcome};
use seed::{config_rest, seed, sku_name};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
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
    /// Run the hub on this PostgreSQL server (a schema of its own, dropped after) instead of
    /// an SQLite file.
    #[arg(long, env = "CONCORD_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
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
            postgres: None,
        }
    }
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
        let rig = Rig::start(None, &config_rest(), args.postgres.as_deref()).await?;
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
        store: rig.store.backend(),
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

//! Case `prices`: storefront price lookups over HTTP — many keep-alive HTTP clients →
//! `GET /v1/prices?channel&customer&sku&qty` (axum) → `Engine::price` → the engine's in-memory
//! price index (`runtime/pricing.rs`) → `concord_core::pricing::quote` — with a large catalogue
//! of price lists loaded.
//!
//! **The state** (defaults): `--skus` 100,000 SKUs on the `default` list (each with tiers at 10
//! and 48 units); `--groups` 10 customer-group lists of `--group-skus` 10,000 SKUs each;
//! `--customers` 1,000 customers (each in a group), each with a customer-specific list of
//! `--customer-skus` 100 SKUs (100,000 customer prices). That is 300,000 price entities plus
//! 1,000 customer entities. Every SKU × customer pair has a price (by precedence), but only
//! the lists that exist are stored — a cross product of 100k × 1,000 customer prices (10⁸)
//! is not what a B2B catalogue holds and is not loaded (raise `--customer-skus` to load more).
//!
//! **Loading** goes directly into the store, not through the ERP: canonical price and customer
//! records are validated with `concord_core::validate` and written with `Store::apply` in
//! batches of 10,000 entity writes (one transaction each, through the single writer) — the
//! same rows the processor writes, without a journal. The engine then starts and rebuilds its
//! price index from the store (`Store::entities_of_kind`, paged), which the case times.
//!
//! **The load**: `--clients` tasks with one keep-alive `reqwest` client each and one request in
//! flight share `--requests` lookups. Lookup `n` (deterministic): customer `n % customers`
//! (every 10th lookup has no customer), SKU from that customer's list half the time (so the
//! customer-specific level answers) else any SKU (group or default level), quantity 1–100.
//! Every answer must be 200 with a body: `errors` counts anything else (must be 0).
//! `lookups_per_s` is answered lookups per second, first send to last answer; latency is per
//! request, client side (load generator on the same machine). On a shared machine throughput
//! swings with the load, so the case also reports the process's CPU time per lookup (server
//! and load generator together, `cpu_us_per_lookup`) and the 1-minute load average.

use crate::harness::{loadavg, process_cpu_seconds, round3, Server};
use anyhow::Context;
use concord_core::{content_hash, validate, Kind};
use concord_engine::config::Config;
use concord_engine::connector::Connector;
use concord_engine::Engine;
use concord_store::{EntityWrite, ProcessBatch, SqliteStore, Store};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GOAL_LOOKUPS_PER_S: f64 = 50_000.0;
const GOAL_P99_MS: f64 = 5.0;

#[derive(clap::Args, Clone)]
pub struct PricesArgs {
    /// SKUs on the default list.
    #[arg(long, default_value_t = 100_000)]
    pub skus: usize,
    /// Customers, each with a customer-specific list.
    #[arg(long, default_value_t = 1_000)]
    pub customers: usize,
    /// SKUs on each customer's list.
    #[arg(long, default_value_t = 100)]
    pub customer_skus: usize,
    /// Customer groups, each with a list.
    #[arg(long, default_value_t = 10)]
    pub groups: usize,
    /// SKUs on each group's list.
    #[arg(long, default_value_t = 10_000)]
    pub group_skus: usize,
    /// Lookups in the run.
    #[arg(long, default_value_t = 300_000)]
    pub requests: u64,
    /// Concurrent HTTP clients (one request in flight each).
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
}

impl Default for PricesArgs {
    fn default() -> Self {
        PricesArgs {
            skus: 100_000,
            customers: 1_000,
            customer_skus: 100,
            groups: 10,
            group_skus: 10_000,
            requests: 300_000,
            clients: 32,
        }
    }
}

fn sku(i: usize) -> String {
    format!("SKU-{i:06}")
}

fn customer(i: usize) -> String {
    format!("c{i:05}@bench.example")
}

/// The `j`-th SKU of customer `i`'s list (spread over the catalogue).
fn customer_sku(args: &PricesArgs, i: usize, j: usize) -> usize {
    (i.wrapping_mul(7_919) + j.wrapping_mul(104_729)) % args.skus
}

fn entity(kind: Kind, record: Value) -> anyhow::Result<EntityWrite> {
    let state = validate(kind, &record).map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = concord_core::natural_key(kind, &state, "erp").map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(EntityWrite {
        kind,
        key,
        hash: content_hash(&state),
        state,
        endpoint: "erp".into(),
        version: "1".into(),
        at: 0,
    })
}

/// Write every list and customer straight into the store. Returns how many entities.
async fn load(store: &dyn Store, args: &PricesArgs) -> anyhow::Result<usize> {
    let mut batch = Vec::with_capacity(10_000);
    let mut total = 0usize;
    async fn flush(store: &dyn Store, batch: &mut Vec<EntityWrite>) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        store
            .apply(
                ProcessBatch {
                    entities: std::mem::take(batch),
                    ..ProcessBatch::default()
                },
                0,
            )
            .await
            .context("write a batch of entities")
    }
    let mut push = async |w: EntityWrite, batch: &mut Vec<EntityWrite>| -> anyhow::Result<()> {
        batch.push(w);
        total += 1;
        if batch.len() >= 10_000 {
            flush(store, batch).await?;
        }
        Ok(())
    };
    for i in 0..args.skus {
        let base = 1_000 + (i % 9_000) as i64;
        let rec = json!({"sku": sku(i), "list": "default", "currency": "USD",
            "amount_minor": base, "tiers": [{"min_quantity": 10, "amount_minor": base * 9 / 10},
                                            {"min_quantity": 48, "amount_minor": base * 8 / 10}]});
        push(entity(Kind::Price, rec)?, &mut batch).await?;
    }
    for g in 0..args.groups {
        for j in 0..args.group_skus.min(args.skus) {
            let s = (g * 31 + j * 7) % args.skus;
            let rec = json!({"sku": sku(s), "list": format!("group-{g}"), "currency": "USD",
                "amount_minor": 900 + (s % 8_000) as i64, "customer_group": format!("g{g}"),
                "tiers": [{"min_quantity": 48, "amount_minor": 700 + (s % 8_000) as i64}]});
            push(entity(Kind::Price, rec)?, &mut batch).await?;
        }
    }
    for c in 0..args.customers {
        let group = (args.groups > 0).then(|| format!("g{}", c % args.groups));
        let rec = json!({"email": customer(c), "group": group});
        push(entity(Kind::Customer, rec)?, &mut batch).await?;
        for j in 0..args.customer_skus.min(args.skus) {
            let s = customer_sku(args, c, j);
            let rec = json!({"sku": sku(s), "list": format!("cust-{c}"), "currency": "USD",
                "amount_minor": 800 + (s % 7_000) as i64, "customer": customer(c)});
            push(entity(Kind::Price, rec)?, &mut batch).await?;
        }
    }
    flush(store, &mut batch).await?;
    Ok(total)
}

/// The query string of lookup `n`.
fn lookup_query(args: &PricesArgs, n: u64) -> String {
    let c = (n as usize) % args.customers.max(1);
    let mix = (n / 7) as usize;
    let qty = 1 + (n.wrapping_mul(2_654_435_761) % 100);
    let s = if mix.is_multiple_of(2) && args.customer_skus > 0 {
        customer_sku(args, c, mix % args.customer_skus.min(args.skus))
    } else {
        (n as usize).wrapping_mul(40_503) % args.skus
    };
    if n.is_multiple_of(10) || args.customers == 0 {
        format!("channel=shop&sku={}&qty={qty}", sku(s))
    } else {
        format!(
            "channel=shop&customer={}&sku={}&qty={qty}",
            customer(c),
            sku(s)
        )
    }
}

pub async fn run(args: &PricesArgs) -> anyhow::Result<()> {
    if args.skus == 0 || args.clients == 0 || args.requests == 0 {
        anyhow::bail!("prices: give at least 1 SKU, 1 client and 1 request");
    }
    let dir = tempfile::tempdir().context("temp dir")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind the hub")?;
    let base = format!("http://{}", listener.local_addr()?);
    let text = format!(
        r#"
[store]
path = "{store}"

[endpoints.erp]
connector = "sandbox-erp"
url = "http://127.0.0.1:9"

[endpoints.shop]
connector = "sandbox-shop"
url = "http://127.0.0.1:9"

[[flows]]
name = "prices"
kind = "price"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["shop"]

[pricing]
currency = "USD"
"#,
        store = dir.path().join("concord.sqlite").display()
    );
    let config = Config::from_toml_str(&text, &dir.path().join("concord.toml"))
        .map_err(|e| anyhow::anyhow!("bench config: {e}"))?;
    let mut connectors: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
    for (name, spec) in &config.endpoints {
        connectors.insert(
            name.clone(),
            concord_connectors::build(spec).map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    let store = Arc::new(SqliteStore::open(&config.store.path).context("open the store")?);
    let t = Instant::now();
    let entities = load(store.as_ref(), args).await?;
    let load_s = t.elapsed().as_secs_f64();
    eprintln!("[prices] loaded {entities} entities into the store in {load_s:.1} s");
    let dyn_store: Arc<dyn Store> = store.clone();
    let engine = Engine::new(Arc::new(config), dyn_store, connectors)?;
    let t = Instant::now();
    let mut tasks = engine.start().await?;
    let index_s = t.elapsed().as_secs_f64();
    let (prices, customers) = engine.price_index().map(|i| i.len()).unwrap_or((0, 0));
    eprintln!("[prices] engine started, index of {prices} prices and {customers} customers rebuilt in {index_s:.2} s");
    let server = Server::start(&engine, listener);

    // A short warm-up (connections, caches), then the timed run.
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = args.requests;
    let (cpu0, load_start) = (process_cpu_seconds(), loadavg());
    let t0 = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..args.clients {
        let (next, base, args) = (next.clone(), base.clone(), args.clone());
        clients.spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("HTTP client");
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let url = format!("{base}/v1/prices?{}", lookup_query(&args, n));
                let t = Instant::now();
                let ok = match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.is_ok_and(|b| !b.is_empty())
                    }
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        first_error.get_or_insert(format!("{url}: {status} {body}"));
                        false
                    }
                    Err(e) => {
                        first_error.get_or_insert(format!("{url}: {e}"));
                        false
                    }
                };
                lat.push(t.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (lat, errors, first_error)
        });
    }
    let mut lat: Vec<Duration> = Vec::with_capacity(total as usize);
    let mut errors = 0;
    while let Some(r) = clients.join_next().await {
        let (l, e, first) = r.context("client task")?;
        lat.extend(l);
        errors += e;
        if let Some(f) = first {
            eprintln!("[prices] failed lookup: {f}");
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu_us = (process_cpu_seconds() - cpu0) * 1e6 / (lat.len().max(1) as f64);
    let load = load_start.max(loadavg());
    lat.sort();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i].as_secs_f64() * 1000.0
    };
    let (p50, p99, max) = (pct(0.50), pct(0.99), pct(1.0));
    let per_s = lat.len() as f64 / seconds;

    println!("case    lookups  seconds  lookups/s (goal)     p50 ms  p99 ms (goal)  max ms  errors  prices  customers  load s  index s  cpu µs/lookup  loadavg");
    println!(
        "prices  {:>7}  {:>7.2}  {:>9.0} (≥{:.0})  {:>6.3}  {:>6.3} (<{:.0})  {:>6.2}  {:>6}  {:>6}  {:>9}  {:>6.1}  {:>7.2}  {:>13.1}  {:>7.1}",
        lat.len(),
        seconds,
        per_s,
        GOAL_LOOKUPS_PER_S,
        p50,
        p99,
        GOAL_P99_MS,
        max,
        errors,
        prices,
        customers,
        load_s,
        index_s,
        cpu_us,
        load
    );
    println!(
        "{}",
        json!({"bench": "prices", "lookups": lat.len(), "seconds": round3(seconds),
               "lookups_per_s": per_s.round(), "goal_lookups_per_s": GOAL_LOOKUPS_PER_S,
               "p50_ms": round3(p50), "p99_ms": round3(p99), "goal_p99_ms": GOAL_P99_MS,
               "max_ms": round3(max), "errors": errors, "clients": args.clients,
               "skus": args.skus, "customers": customers, "prices": prices,
               "load_s": round3(load_s), "index_rebuild_s": round3(index_s),
               "cpu_us_per_lookup": (cpu_us * 10.0).round() / 10.0,
               "loadavg": (load * 10.0).round() / 10.0,
               "met": per_s >= GOAL_LOOKUPS_PER_S && p99 < GOAL_P99_MS && errors == 0})
    );
    server.stop().await;
    engine.shutdown();
    while tasks.join_next().await.is_some() {}
    store.close().await;
    if errors > 0 {
        anyhow::bail!("prices: {errors} lookups failed");
    }
    Ok(())
}

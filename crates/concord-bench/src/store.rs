//! Case `store`: the store alone, SQLite against PostgreSQL (issue 14's comparison), without
//! HTTP or the engine in between: concurrent single-unit reservations on hot SKUs (each checked
//! for oversell afterwards: units reserved per SKU must equal its stock exactly, since demand
//! exceeds it) and concurrent single-capture ingests (the durable first step of every change).
//! PostgreSQL runs with 1 and with N handles (a pool each, as N instances have) on one schema.
//!
//! Prints a table and one JSON line per (backend, handles, operation). Goals are printed, never
//! asserted. Must never touch a PostgreSQL schema it did not create (it creates
//! `concord_bench_<pid>_<n>` and drops it afterwards).

use anyhow::{bail, Context};
use concord_core::inventory::Line;
use concord_core::Kind;
use concord_store::{
    Capture, Feed, LevelUpdate, PgOptions, PgStore, ReserveOutcome, ReserveRequest, SqliteStore,
    Store,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::harness::drop_schema;

#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// PostgreSQL server to compare against (a schema is created and dropped there). Without it
    /// only SQLite runs.
    #[arg(long, env = "CONCORD_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub tasks: usize,
    /// Operations of each kind in all.
    #[arg(long, default_value_t = 2000)]
    pub ops: usize,
    /// Hot SKUs the reservations share.
    #[arg(long, default_value_t = 10)]
    pub skus: usize,
    /// PostgreSQL handles (instances) for the second PostgreSQL run.
    #[arg(long, default_value_t = 3)]
    pub instances: usize,
}

impl Default for StoreArgs {
    fn default() -> Self {
        StoreArgs {
            postgres: std::env::var("CONCORD_BENCH_POSTGRES_URL").ok(),
            tasks: 16,
            ops: 2000,
            skus: 10,
            instances: 3,
        }
    }
}

struct Row {
    backend: String,
    handles: usize,
    op: &'static str,
    ops: usize,
    secs: f64,
    p50_us: u128,
    p99_us: u128,
    oversold: i64,
    unsold: i64,
}

pub async fn run(args: &StoreArgs) -> anyhow::Result<()> {
    if args.tasks == 0 || args.ops == 0 || args.skus == 0 || args.instances == 0 {
        bail!("--tasks, --ops, --skus and --instances must be at least 1");
    }
    let mut rows = Vec::new();
    let dir = tempfile::tempdir()?;
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("bench.sqlite"))?);
    rows.extend(measure("sqlite", vec![sqlite], args).await?);
    if let Some(url) = &args.postgres {
        for handles in [1, args.instances] {
            let schema = format!("concord_bench_{}_{handles}", std::process::id());
            let mut stores: Vec<Arc<dyn Store>> = Vec::new();
            for _ in 0..handles {
                let opts = PgOptions {
                    schema: Some(schema.clone()),
                    ..PgOptions::default()
                };
                stores.push(Arc::new(
                    PgStore::connect(url, opts)
                        .await
                        .context("connect to PostgreSQL")?,
                ));
            }
            let result = measure("postgres", stores, args).await;
            drop_schema(url, &schema).await?;
            rows.extend(result?);
        }
    } else {
        println!("(no --postgres / CONCORD_BENCH_POSTGRES_URL: SQLite only)");
    }
    println!(
        "{:<9} {:>7} {:<8} {:>6} {:>9} {:>9} {:>9} {:>8} {:>6}",
        "backend", "handles", "op", "ops", "ops/s", "p50 µs", "p99 µs", "oversold", "unsold"
    );
    for r in &rows {
        println!(
            "{:<9} {:>7} {:<8} {:>6} {:>9.0} {:>9} {:>9} {:>8} {:>6}",
            r.backend,
            r.handles,
            r.op,
            r.ops,
            r.ops as f64 / r.secs,
            r.p50_us,
            r.p99_us,
            r.oversold,
            r.unsold
        );
    }
    for r in &rows {
        println!(
            "{}",
            serde_json::json!({"case": "store", "backend": r.backend, "handles": r.handles,
                "op": r.op, "ops": r.ops, "ops_per_sec": (r.ops as f64 / r.secs).round(),
                "p50_us": r.p50_us, "p99_us": r.p99_us, "oversold": r.oversold,
                "unsold": r.unsold, "tasks": args.tasks,
                "goal": "oversold 0; PostgreSQL within 3x of SQLite per operation"})
        );
    }
    Ok(())
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `ops` operations over `tasks` clients spread round-robin over `stores`.
async fn spread<F, Fut>(
    stores: &[Arc<dyn Store>],
    args: &StoreArgs,
    op: F,
) -> anyhow::Result<(f64, Vec<u128>)>
where
    F: Fn(Arc<dyn Store>, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..args.tasks {
        let store = stores[t % stores.len()].clone();
        let op = op.clone();
        let (tasks, ops) = (args.tasks, args.ops);
        set.spawn(async move {
            let mut lat = Vec::new();
            let mut i = t;
            while i < ops {
                let t0 = Instant::now();
                op(store.clone(), i).await?;
                lat.push(t0.elapsed().as_micros());
                i += tasks;
            }
            anyhow::Ok(lat)
        });
    }
    let mut all = Vec::with_capacity(args.ops);
    while let Some(done) = set.join_next().await {
        all.extend(done??);
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    all.sort_unstable();
    Ok((secs, all))
}

async fn measure(
    backend: &str,
    stores: Vec<Arc<dyn Store>>,
    args: &StoreArgs,
) -> anyhow::Result<Vec<Row>> {
    let handles = stores.len();
    let skus: Vec<String> = (0..args.skus).map(|i| format!("HOT-{i}")).collect();
    // Stock for three quarters of the demand: the last quarter must be refused.
    let per_sku = i64::try_from(args.ops * 3 / 4 / args.skus)
        .unwrap_or(i64::MAX)
        .max(1);
    let updates = skus
        .iter()
        .map(|sku| LevelUpdate {
            sku: sku.clone(),
            location: "WH".into(),
            on_hand: per_sku,
            committed: 0,
            incoming: serde_json::json!([]),
            version: "1".into(),
            captured_at: 1,
        })
        .collect();
    stores[0].update_levels(updates, 60_000, 1).await?;

    let hot = Arc::new(skus.clone());
    let (secs, lat) = spread(&stores, args, move |store, i| {
        let hot = hot.clone();
        async move {
            let sku = hot[fastrand::usize(..hot.len())].clone();
            let req = ReserveRequest {
                id: format!("bench-{i}"),
                channel: "web".into(),
                client_key: format!("k-{i}"),
                lines: vec![Line {
                    sku: sku.clone(),
                    quantity: 1,
                }],
                feeds: vec![(
                    sku,
                    vec![Feed {
                        location: "WH".into(),
                        buffer: 0,
                    }],
                )],
                backorder_limit: None,
                source: "bench".into(),
                now: 2,
                expires_at: i64::MAX / 2,
            };
            match store.reserve(req).await? {
                ReserveOutcome::Reserved(_) | ReserveOutcome::Short(_) => Ok(()),
                ReserveOutcome::Existing(r) => bail!("client key reused: {}", r.id),
            }
        }
    })
    .await?;
    // Oversell check: units held per SKU against its stock.
    let mut held: BTreeMap<String, i64> = BTreeMap::new();
    for level in stores[0].levels(&skus).await? {
        *held.entry(level.sku.clone()).or_default() += level.held;
    }
    let mut oversold = 0;
    let mut unsold = 0;
    for sku in &skus {
        let h = held.get(sku).copied().unwrap_or(0);
        oversold += (h - per_sku).max(0);
        unsold += (per_sku - h).max(0);
    }
    let mut rows = vec![Row {
        backend: backend.into(),
        handles,
        op: "reserve",
        ops: args.ops,
        secs,
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
        oversold,
        unsold,
    }];

    let (secs, lat) = spread(&stores, args, |store, i| async move {
        store
            .ingest(
                vec![Capture {
                    endpoint: "erp".into(),
                    kind: Kind::Stock,
                    external_id: format!("SKU-{i}"),
                    version: "1".into(),
                    payload: serde_json::json!({"sku": format!("SKU-{i}"), "location": "WH", "on_hand": 5}),
                    received_at: 3,
                    rejected: None,
                }],
                None,
            )
            .await?;
        Ok(())
    })
    .await?;
    rows.push(Row {
        backend: backend.into(),
        handles,
        op: "ingest",
        ops: args.ops,
        secs,
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
        oversold: 0,
        unsold: 0,
    });
    Ok(rows)
}

//! What the cases share: Concord (engine + HTTP server on 127.0.0.1 + SQLite store in a
//! temporary directory) wired to the two sandbox emulators, percentiles, JSON rounding, and the
//! process's CPU time and load average.

use anyhow::Context;
use concord_engine::config::Config;
use concord_engine::connector::Connector;
use concord_engine::Engine;
use concord_sandbox::{ErpHandle, ErpOptions, ErpSim, ShopHandle, ShopOptions, ShopSim};
use concord_server::AppState;
use concord_store::{PgOptions, PgStore, SqliteStore, Store};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

pub const SECRET: &str = "bench-secret";

/// Concord's HTTP server, running, and what stops it.
pub struct Server {
    task: JoinHandle<std::io::Result<()>>,
    stop: oneshot::Sender<()>,
}

impl Server {
    /// Serve `engine`'s API on `listener` until [`Server::stop`].
    pub fn start(engine: &Engine, listener: tokio::net::TcpListener) -> Server {
        let state = AppState {
            engine: engine.clone(),
            metrics: None,
            ready: Arc::new(AtomicBool::new(true)),
        };
        let limits = engine.config().server.clone();
        let app = concord_server::app(state, limits.max_body_bytes);
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            concord_server::serve_with(listener, app, &limits, async move {
                let _ = rx.await;
            })
            .await
        });
        Server { task, stop }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The hub's store in a benchmark: the default SQLite file, or a schema of its own on a
/// PostgreSQL server (`--postgres URL`), dropped when the rig stops.
pub enum BenchStore {
    Sqlite(Arc<SqliteStore>),
    Postgres {
        store: Arc<PgStore>,
        url: String,
        schema: String,
    },
}

impl BenchStore {
    /// SQLite's write groups so far (group commit); PostgreSQL has none (0).
    pub fn write_groups(&self) -> u64 {
        match self {
            BenchStore::Sqlite(s) => s.write_groups(),
            BenchStore::Postgres { .. } => 0,
        }
    }

    /// `sqlite` or `postgres`, for the tables and JSON lines.
    pub fn backend(&self) -> &'static str {
        match self {
            BenchStore::Sqlite(_) => "sqlite",
            BenchStore::Postgres { .. } => "postgres",
        }
    }

    fn as_dyn(&self) -> Arc<dyn Store> {
        match self {
            BenchStore::Sqlite(s) => s.clone(),
            BenchStore::Postgres { store, .. } => store.clone(),
        }
    }
}

impl std::ops::Deref for BenchStore {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            BenchStore::Sqlite(s) => s.as_ref(),
            BenchStore::Postgres { store, .. } => store.as_ref(),
        }
    }
}

/// Drop the benchmark's schema on the PostgreSQL server of `url`.
pub async fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    let (client, connection) = url
        .parse::<tokio_postgres::Config>()?
        .connect(tokio_postgres::NoTls)
        .await
        .context("connect to drop the bench schema")?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .context("drop the bench schema")?;
    Ok(())
}

/// Concord (engine + HTTP server), the two emulators, and what is needed to stop them.
pub struct Rig {
    pub erp: ErpHandle,
    pub shop: ShopHandle,
    pub engine: Engine,
    pub store: BenchStore,
    tasks: JoinSet<()>,
    server: Server,
    /// Concord's `http://127.0.0.1:<port>`.
    pub base: String,
    _dir: tempfile::TempDir,
}

/// The configuration: the store, the server, the sandbox ERP (`erp`, signed webhooks) and
/// storefront (`shop`), then `rest` (flows and the like, TOML).
fn config_text(store: &str, erp_url: &str, shop_url: &str, rest: &str) -> String {
    // JSON string escapes are valid TOML basic-string escapes.
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    format!(
        r#"
[store]
path = {store}

[server]
listen = "127.0.0.1:0"

[endpoints.erp]
connector = "sandbox-erp"
url = {erp}
webhook_secret = {secret}
timeout = "5s"

[endpoints.shop]
connector = "sandbox-shop"
url = {shop}
timeout = "5s"
{rest}"#,
        store = q(store),
        erp = q(erp_url),
        shop = q(shop_url),
        secret = q(SECRET),
    )
}

impl Rig {
    /// Start the emulators and Concord with `rest` (flows, inventory…) after the endpoints; the
    /// ERP posts its webhooks to Concord in batches of at most `webhook_batch` events (`None`:
    /// the emulator's default). `postgres`: the store is a fresh schema on that server instead
    /// of an SQLite file.
    pub async fn start(
        webhook_batch: Option<usize>,
        rest: &str,
        postgres: Option<&str>,
    ) -> anyhow::Result<Rig> {
        let dir = tempfile::tempdir().context("creating the temporary store directory")?;
        let store_path = dir.path().join("concord.db");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding Concord's HTTP server")?;
        let addr = listener.local_addr()?;
        let shop = ShopSim::start(ShopOptions::default()).await?;
        let defaults = ErpOptions::default();
        let erp = ErpSim::start(ErpOptions {
            webhook_url: Some(format!("http://{addr}/hooks/erp")),
            webhook_secret: Some(SECRET.to_string()),
            webhook_batch: webhook_batch.map_or(defaults.webhook_batch, |b| b.max(1)),
            ..defaults
        })
        .await?;
        let text = config_text(
            &store_path.display().to_string(),
            &erp.base_url(),
            &shop.base_url(),
            rest,
        );
        let config =
            Config::from_toml_str_with_env(&text, &dir.path().join("bench.toml"), |_| None)
                .context("the benchmark's configuration")?;
        let mut connectors: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
        for (name, spec) in &config.endpoints {
            let c = concord_connectors::build(spec)
                .map_err(|e| anyhow::anyhow!("endpoints.{name}.{}: {}", e.path, e.message))?;
            connectors.insert(name.clone(), c);
        }
        let store = match postgres {
            None => BenchStore::Sqlite(Arc::new(SqliteStore::open_with(
                &store_path,
                config.store.sqlite_options(),
            )?)),
            Some(url) => {
                let schema = format!(
                    "concord_bench_rig_{}_{}",
                    std::process::id(),
                    fastrand::u32(..)
                );
                let opts = PgOptions {
                    schema: Some(schema.clone()),
                    ..PgOptions::default()
                };
                let store = PgStore::connect(url, opts)
                    .await
                    .context("connect to PostgreSQL (--postgres)")?;
                BenchStore::Postgres {
                    store: Arc::new(store),
                    url: url.to_string(),
                    schema,
                }
            }
        };
        let dyn_store = store.as_dyn();
        let engine = Engine::new(Arc::new(config), dyn_store, connectors)?;
        let tasks = engine.start().await?;
        let server = Server::start(&engine, listener);
        Ok(Rig {
            erp,
            shop,
            engine,
            store,
            tasks,
            server,
            base: format!("http://{addr}"),
            _dir: dir,
        })
    }

    pub async fn stop(mut self) {
        self.server.stop().await;
        self.engine.shutdown();
        while self.tasks.join_next().await.is_some() {}
        self.erp.shutdown().await;
        self.shop.shutdown().await;
        match &self.store {
            BenchStore::Sqlite(s) => s.close().await,
            BenchStore::Postgres { store, url, schema } => {
                store.close();
                if let Err(e) = drop_schema(url, schema).await {
                    eprintln!("could not drop the bench schema {schema}: {e:#}");
                }
            }
        }
    }
}

/// The value at quantile `p` (0–1) of `sorted` (nearest rank, rounded); NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// `x` rounded to 1 decimal, for the JSON lines.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `x` rounded to 3 decimals, for the JSON lines.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// utime + stime of a `/proc/…/stat` line, in clock ticks (fields 14 and 15, after `(comm)`).
fn ticks(stat: &str) -> Option<f64> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
}

/// Linux reports these in USER_HZ, which is 100 on every mainstream configuration.
const HZ: f64 = 100.0;

/// CPU seconds (user + system) used so far by this process, from `/proc/self/stat` (Linux; 0
/// elsewhere).
pub fn process_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| ticks(&s))
        .unwrap_or(0.0)
        / HZ
}

/// CPU seconds (user + system) used so far by the whole process and by the store's writer
/// thread, from `/proc` (Linux; 0 elsewhere). Throughput on a shared machine swings with the
/// load; CPU per request does much less.
pub fn cpu_seconds() -> (f64, f64) {
    let process = process_cpu_seconds();
    let mut writer = 0.0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == "concord-store-w" {
                writer += std::fs::read_to_string(t.path().join("stat"))
                    .ok()
                    .and_then(|s| ticks(&s))
                    .unwrap_or(0.0);
            }
        }
    }
    (process, writer / HZ)
}

/// The 1-minute load average (0 when unknown).
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}

//! Wiring: from a configuration file to a running engine and HTTP server. Shared by `run`,
//! `validate`, `dlq`, `status` and the demo. The one place the store is opened
//! ([`open_store`], [`open_instance_store`]: SQLite file or PostgreSQL url). Must never contain
//! sync logic of its own.

use anyhow::Context;
use concord_engine::config::Config;
use concord_engine::connector::Connector;
use concord_engine::{Engine, EngineError};
use concord_server::AppState;
use concord_store::{InstanceLock, InstanceLockError, PgOptions, PgStore, SqliteStore, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

/// A configuration problem: reported as is, exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigProblem(pub String);

/// One connector instance per endpoint name.
pub type Connectors = BTreeMap<String, Arc<dyn Connector>>;

/// Load the config and build one connector per endpoint; check capabilities.
pub fn load(path: &Path) -> anyhow::Result<(Arc<Config>, Connectors)> {
    let config = Config::load(path).map_err(|e| ConfigProblem(e.to_string()))?;
    let mut connectors = BTreeMap::new();
    for (name, spec) in &config.endpoints {
        let c = concord_connectors::build(spec).map_err(|e| {
            ConfigProblem(format!(
                "{}: endpoints.{name}.{}: {}",
                path.display(),
                e.path,
                e.message
            ))
        })?;
        connectors.insert(name.clone(), c);
    }
    concord_engine::runtime::check_capabilities(&config, &connectors).map_err(|e| match e {
        EngineError::Capability { .. } | EngineError::MissingConnector(_) => {
            anyhow::Error::new(ConfigProblem(format!("{}: {e}", path.display())))
        }
        other => anyhow::Error::new(other),
    })?;
    Ok((Arc::new(config), connectors))
}

/// `concord validate`: load and check the config, build its connectors; print what access
/// control leaves open and every secret written as a literal (warnings, exit 0).
pub fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    let (config, _) = load(path)?;
    println!(
        "{}: OK ({} endpoints, {} flows)",
        path.display(),
        config.endpoints.len(),
        config.flows.len()
    );
    for w in concord_server::access_warnings(&config) {
        println!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Write `text` to `path` readable and writable by its owner only (`0600`; an existing file
/// is made so too): generated configs hold secrets (webhook secrets, demo tokens' hashes).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        // `mode` applies only when the file is created: tighten an existing one first.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    options.open(path)?.write_all(text.as_bytes())
}

/// Create `dir` (and its parents) for the hub's own files: `0700` where it creates them.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// The one place a command opens the store the config names: the PostgreSQL database of
/// `[store] url` when set, else the SQLite file `[store] path` (its directory created private
/// to the owner, the file too: `SqliteStore::open`). For commands that only read, or write
/// through the store's own transactions beside a running hub (status, dlq, order, reconcile,
/// try); commands that run the engine's tasks use [`open_instance_store`].
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(open(config).await?.0)
}

/// How often a standby (`concord run --standby`) tries the instance lock.
pub const STANDBY_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Like [`open_store`], for a command that runs the engine's tasks (`concord run`, `backfill`,
/// `reconcile --heal`): on PostgreSQL it also takes the database's instance lock (one active
/// instance per database until leases exist; `concord_store::postgres::instance`) and returns
/// it, to be kept for the life of the process. Another instance holding it is an error naming
/// it — or, with `standby`, a wait: the lock is tried every [`STANDBY_POLL`] until the active
/// instance stops or dies. SQLite needs no lock here (`None`) and cannot stand by.
pub async fn open_instance_store(
    config: &Config,
    standby: bool,
) -> anyhow::Result<(Arc<dyn Store>, Option<InstanceLock>)> {
    let (store, pg) = open(config).await?;
    let Some(pg) = pg else {
        if standby {
            return Err(ConfigProblem(format!(
                "--standby needs a PostgreSQL store ([store] url): the SQLite store {} belongs to one process",
                config.store.path.display()
            ))
            .into());
        }
        return Ok((store, None));
    };
    match pg.lock_instance().await {
        Ok(lock) => Ok((store, Some(lock))),
        Err(InstanceLockError::Taken { holder }) if standby => {
            eprintln!(
                "concord: standing by: another Concord instance is active on this database \
                 ({holder}); taking over when it stops (the lock is tried every {} s)",
                STANDBY_POLL.as_secs()
            );
            let mut last = String::new();
            let lock = pg
                .wait_for_instance_lock(STANDBY_POLL, |e| {
                    if let InstanceLockError::Store(e) = e {
                        let now = e.to_string();
                        if now != last {
                            tracing::warn!("standing by: trying the instance lock: {now}");
                            last = now;
                        }
                    }
                })
                .await;
            eprintln!("concord: took over the instance lock; starting");
            Ok((store, Some(lock)))
        }
        Err(InstanceLockError::Taken { holder }) => {
            Err(anyhow::Error::new(InstanceTaken(format!(
                "another Concord instance is running on this database ({holder}); running \
                 several active instances on one PostgreSQL is not supported yet (a second one \
                 may wait as a standby: `concord run --standby`)"
            ))))
        }
        Err(InstanceLockError::Store(e)) => {
            Err(anyhow::Error::new(e).context("taking the PostgreSQL instance lock"))
        }
    }
}

/// Another Concord instance holds the database's instance lock (exit status 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InstanceTaken(pub String);

/// The store, and the PostgreSQL handle when it is one (for the instance lock).
async fn open(config: &Config) -> anyhow::Result<(Arc<dyn Store>, Option<Arc<PgStore>>)> {
    if let Some(url) = &config.store.url {
        let pg = PgStore::connect(url.expose(), PgOptions::default())
            .await
            .context("opening the PostgreSQL store ([store] url)")?;
        let pg = Arc::new(pg);
        let store: Arc<dyn Store> = pg.clone();
        return Ok((store, Some(pg)));
    }
    if let Some(dir) = config.store.path.parent() {
        if !dir.as_os_str().is_empty() {
            create_private_dir(dir)
                .with_context(|| format!("creating the store directory {}", dir.display()))?;
        }
    }
    let store = SqliteStore::open_with(&config.store.path, config.store.sqlite_options())?;
    Ok((Arc::new(store), None))
}

/// How messages name the configured store (never the URL: it may hold a password).
pub fn store_name(config: &Config) -> String {
    match &config.store.url {
        Some(_) => "the PostgreSQL database of [store] url".into(),
        None => config.store.path.display().to_string(),
    }
}

/// Build an engine without starting it, over [`open_store`].
pub async fn engine(path: &Path) -> anyhow::Result<Engine> {
    let (config, connectors) = load(path)?;
    let store = open_store(&config).await?;
    Ok(Engine::new(config, store, connectors)?)
}

/// Build an engine without starting it, over [`open_instance_store`] (with `standby`, once
/// this instance has the lock): keep the lock as long as the engine runs.
pub async fn instance_engine(
    path: &Path,
    standby: bool,
) -> anyhow::Result<(Engine, Option<InstanceLock>)> {
    let (config, connectors) = load(path)?;
    let (store, lock) = open_instance_store(&config, standby).await?;
    Ok((Engine::new(config, store, connectors)?, lock))
}

/// The process-wide Prometheus recorder (installed once).
pub fn prometheus() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .ok()
        })
        .clone()
}

/// A started engine with its HTTP server (and the separate metrics server, when configured).
pub struct Running {
    pub engine: Engine,
    pub addr: std::net::SocketAddr,
    /// Where `[metrics] listen` serves `/metrics`, when configured.
    pub metrics_addr: Option<std::net::SocketAddr>,
    tasks: tokio::task::JoinSet<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_server: tokio::sync::oneshot::Sender<()>,
    metrics_server: Option<(
        tokio::task::JoinHandle<std::io::Result<()>>,
        tokio::sync::oneshot::Sender<()>,
    )>,
}

impl Running {
    /// Stop the server, then the engine (in-flight deliveries settle first).
    pub async fn stop(mut self) {
        let _ = self.stop_server.send(());
        let _ = self.server.await;
        if let Some((server, stop)) = self.metrics_server.take() {
            let _ = stop.send(());
            let _ = server.await;
        }
        self.engine.shutdown();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Start the engine's tasks and its HTTP server on `listen`.
pub async fn start(engine: Engine, listen: std::net::SocketAddr) -> anyhow::Result<Running> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the HTTP server to {listen}"))?;
    start_on(engine, listener).await
}

/// Resolves at Ctrl-C or SIGTERM.
pub async fn interrupted() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `concord run [--standby]`, or with `dry: Some(store)` `concord run --dry-run [--store PATH]`.
pub async fn run(
    path: &Path,
    dry: Option<Option<PathBuf>>,
    standby: bool,
) -> anyhow::Result<ExitCode> {
    let (engine, mut lock) = match dry {
        None => {
            // A standby may wait for hours: Ctrl-C / SIGTERM ends the wait (status 0).
            let (engine, lock) = tokio::select! {
                r = instance_engine(path, standby) => r?,
                () = interrupted() => {
                    eprintln!("concord: stopped before this instance became active");
                    return Ok(ExitCode::SUCCESS);
                }
            };
            if engine.store_is_dry_run().await? {
                return Err(ConfigProblem(format!(
                    "{}: the store {} belongs to a dry run (`concord run --dry-run`): its planned writes must never be delivered; give the hub its own store",
                    path.display(),
                    store_name(engine.config())
                ))
                .into());
            }
            (engine, lock)
        }
        Some(store) => (crate::dry_run::engine(path, store).await?, None),
    };
    let dry_run = engine.is_dry_run();
    let listen = engine.config().server.listen;
    let running = start(engine, listen).await?;
    eprintln!(
        "concord: serving on http://{} (Ctrl-C to stop)",
        running.addr
    );
    if let Some(m) = running.metrics_addr {
        eprintln!("concord: /metrics also on http://{m}/metrics");
    }
    // An engine task that keeps failing stops the hub with status 1: a process supervisor
    // (systemd, Kubernetes) restarting it does better than a hub running without that task.
    // Losing the PostgreSQL instance lock (its connection ended) means another instance could
    // start beside this one: stop with status 1 rather than run unguarded.
    let failure = {
        let lock_lost = async {
            match lock.as_mut() {
                Some(l) => l.lost().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
        () = interrupted() => None,
        f = running.engine.failed() => Some(format!(
            "engine task `{}` keeps failing ({} times; last: {})",
            f.task, f.failures, f.reason
        )),
        reason = lock_lost => Some(format!("lost the PostgreSQL instance lock: {reason}")),
        }
    };
    match &failure {
        None => eprintln!("concord: stopping; in-flight deliveries settle first"),
        Some(f) => eprintln!("concord: {f}; stopping with status 1"),
    }
    let engine = running.engine.clone();
    running.stop().await;
    // Released only once the engine has stopped (dropping it closes its connection).
    drop(lock);
    if dry_run {
        crate::dry_run::report(&engine).await?;
    }
    Ok(if failure.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Like [`start`], on a listener the caller already bound (the demo needs the port first).
pub async fn start_on(
    engine: Engine,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    for w in concord_server::access_warnings(engine.config()) {
        tracing::warn!("{w}");
    }
    // Bound before the engine starts, so a taken port fails the start with nothing running.
    let metrics_listener =
        match engine.config().metrics.listen {
            Some(at) => Some(tokio::net::TcpListener::bind(at).await.with_context(|| {
                format!("binding the metrics server ([metrics] listen) to {at}")
            })?),
            None => None,
        };
    let tasks = engine.start().await?;
    let state = AppState {
        engine: engine.clone(),
        metrics: prometheus(),
        ready: Arc::new(AtomicBool::new(true)),
    };
    let limits = engine.config().server.clone();
    let mut metrics_addr = None;
    let metrics_server = match metrics_listener {
        Some(l) => {
            metrics_addr = Some(l.local_addr()?);
            let (stop, rx) = tokio::sync::oneshot::channel::<()>();
            let app = concord_server::metrics_app(state.clone());
            let metrics_limits = limits.clone();
            let server = tokio::spawn(async move {
                concord_server::serve_with(l, app, &metrics_limits, async move {
                    let _ = rx.await;
                })
                .await
            });
            Some((server, stop))
        }
        None => None,
    };
    let app = concord_server::app(state, limits.max_body_bytes);
    let (stop_server, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        concord_server::serve_with(listener, app, &limits, async move {
            let _ = rx.await;
        })
        .await
    });
    Ok(Running {
        engine,
        addr,
        metrics_addr,
        tasks,
        server,
        stop_server,
        metrics_server,
    })
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_files_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("concord.toml");
        super::write_private(&file, "a = 1\n").expect("write");
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        // Rewriting a file someone left world-readable makes it private.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        super::write_private(&file, "a = 2\n").expect("rewrite");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "a = 2\n");
        let nested = dir.path().join("state/deeper");
        super::create_private_dir(&nested).expect("mkdir");
        assert_eq!(mode(&nested), 0o700);
    }
}

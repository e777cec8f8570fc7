//! Wiring: from a configuration file to a running engine and HTTP server. Shared by `run`,
//! `validate`, `dlq`, `status` and the demo. Must never contain sync logic of its own.

use anyhow::Context;
use concord_engine::config::Config;
use concord_engine::connector::Connector;
use concord_engine::{Engine, EngineError};
use concord_server::AppState;
use concord_store::{SqliteStore, Store};
use std::collections::BTreeMap;
use std::path::Path;
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

/// Open the store named by the config.
pub fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(dir) = config.store.path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the store directory {}", dir.display()))?;
        }
    }
    let store = SqliteStore::open_with(&config.store.path, config.store.sqlite_options())?;
    Ok(Arc::new(store))
}

/// Build an engine without starting it.
pub fn engine(path: &Path) -> anyhow::Result<Engine> {
    let (config, connectors) = load(path)?;
    let store = open_store(&config)?;
    Ok(Engine::new(config, store, connectors)?)
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

/// A started engine with its HTTP server.
pub struct Running {
    pub engine: Engine,
    pub addr: std::net::SocketAddr,
    tasks: tokio::task::JoinSet<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_server: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    /// Stop the server, then the engine (in-flight deliveries settle first).
    pub async fn stop(mut self) {
        let _ = self.stop_server.send(());
        let _ = self.server.await;
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

pub async fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let engine = engine(path)?;
    let listen = engine.config().server.listen;
    let running = start(engine, listen).await?;
    eprintln!(
        "concord: serving on http://{} (Ctrl-C to stop)",
        running.addr
    );
    // An engine task that keeps failing stops the hub with status 1: a process supervisor
    // (systemd, Kubernetes) restarting it does better than a hub running without that task.
    let failure = tokio::select! {
        () = interrupted() => None,
        f = running.engine.failed() => Some(f),
    };
    match &failure {
        None => eprintln!("concord: stopping; in-flight deliveries settle first"),
        Some(f) => eprintln!(
            "concord: engine task `{}` keeps failing ({} times; last: {}); stopping with status 1",
            f.task, f.failures, f.reason
        ),
    }
    running.stop().await;
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
    let tasks = engine.start().await?;
    let state = AppState {
        engine: engine.clone(),
        metrics: prometheus(),
        ready: Arc::new(AtomicBool::new(true)),
    };
    let limits = engine.config().server.clone();
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
        tasks,
        server,
        stop_server,
    })
}

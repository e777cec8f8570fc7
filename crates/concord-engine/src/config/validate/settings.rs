//! `[store]`, `[server]` and `[engine]`: the hub's own settings — the store's file and
//! durability or its PostgreSQL URL, the server's address and limits, the engine's batch sizes, timers and jq budget.
//! Part of [`validate`](super::validate): no I/O (a relative store path is only joined to the
//! config file's folder, never opened), and it must never look at endpoints or flows.

use super::{duration, positive, positive_u32, Result};
use crate::config::raw::{RawEngine, RawServer, RawStore};
use crate::config::{EngineSettings, Issue, ServerConfig, StoreConfig};
use crate::mapping::Budget;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEFAULT_STORE: &str = "concord.sqlite";
const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// `[store]`; a relative path is relative to the config file's folder.
pub(super) fn store(raw: &RawStore, file: &Path) -> Result<StoreConfig> {
    let url = store_url(raw)?;
    Ok(StoreConfig {
        path: store_path(raw.path.as_deref(), file)?,
        url,
        retention: duration(
            "store.retention",
            raw.retention.as_deref(),
            DEFAULT_RETENTION,
            false,
        )?,
        synchronous: synchronous(raw.synchronous.as_deref())?,
        write_queue: positive(
            "store.write_queue",
            raw.write_queue,
            concord_store::SqliteOptions::DEFAULT_WRITE_QUEUE,
        )?,
    })
}

/// `[store] url`: a PostgreSQL URL, alone (SQLite's `path`, `synchronous` and `write_queue`
/// exclude it). Messages never repeat the value: it may hold a password.
fn store_url(raw: &RawStore) -> Result<Option<crate::secret::Secret>> {
    let Some(url) = raw.url.as_deref() else {
        return Ok(None);
    };
    for (set, field) in [
        (raw.path.is_some(), "path"),
        (raw.synchronous.is_some(), "synchronous"),
        (raw.write_queue.is_some(), "write_queue"),
    ] {
        if set {
            return Err(Issue::new(
                "store.url",
                format!(
                    "`url` (a PostgreSQL store) and `{field}` (a setting of the SQLite store) \
                     exclude each other: keep one"
                ),
            ));
        }
    }
    let url = url.trim();
    if url.is_empty() {
        return Err(Issue::new("store.url", "must not be empty"));
    }
    if let Err(reason) = concord_store::PgStore::check_url(url) {
        return Err(Issue::new(
            "store.url",
            format!(
                "expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE: {reason} \
                 (the value is not repeated here: it may hold a password)"
            ),
        ));
    }
    Ok(Some(crate::secret::Secret::new(url)))
}

fn store_path(raw: Option<&str>, file: &Path) -> Result<PathBuf> {
    let p = raw.unwrap_or(DEFAULT_STORE);
    if p.trim().is_empty() {
        return Err(Issue::new("store.path", "must not be empty"));
    }
    let p = Path::new(p);
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new("")).join(p)
    })
}

pub(super) fn server(raw: &RawServer) -> Result<ServerConfig> {
    let mut s = ServerConfig::default();
    if let Some(listen) = &raw.listen {
        s.listen = listen.trim().parse().map_err(|_| {
            Issue::new(
                "server.listen",
                format!("expected an address and port like \"127.0.0.1:8080\" or \"[::]:8080\", got {listen:?}"),
            )
        })?;
    }
    if let Some(size) = raw.max_body_bytes {
        s.max_body_bytes = positive("server.max_body_bytes", Some(size.0), 0)?;
    }
    if let Some(size) = raw.api_max_body_bytes {
        s.api_max_body_bytes = positive("server.api_max_body_bytes", Some(size.0), 0)?;
    }
    s.header_read_timeout = duration(
        "server.header_read_timeout",
        raw.header_read_timeout.as_deref(),
        s.header_read_timeout,
        false,
    )?;
    s.body_read_timeout = duration(
        "server.body_read_timeout",
        raw.body_read_timeout.as_deref(),
        s.body_read_timeout,
        false,
    )?;
    s.request_timeout = duration(
        "server.request_timeout",
        raw.request_timeout.as_deref(),
        s.request_timeout,
        false,
    )?;
    s.max_connections = positive(
        "server.max_connections",
        raw.max_connections,
        s.max_connections,
    )?;
    Ok(s)
}

fn synchronous(raw: Option<&str>) -> Result<concord_store::Synchronous> {
    use concord_store::Synchronous;
    match raw.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("full") => Ok(Synchronous::Full),
        Some("normal") => Ok(Synchronous::Normal),
        Some(_) => Err(Issue::new(
            "store.synchronous",
            format!(
                "expected \"full\" or \"normal\", got {:?}",
                raw.unwrap_or_default()
            ),
        )),
    }
}

pub(super) fn engine(raw: &RawEngine) -> Result<EngineSettings> {
    let d = EngineSettings::default();
    let s = EngineSettings {
        batch_size: positive("engine.batch_size", raw.batch_size, d.batch_size)?,
        lease: duration("engine.lease", raw.lease.as_deref(), d.lease, false)?,
        backoff_base: duration(
            "engine.backoff_base",
            raw.backoff_base.as_deref(),
            d.backoff_base,
            false,
        )?,
        backoff_cap: duration(
            "engine.backoff_cap",
            raw.backoff_cap.as_deref(),
            d.backoff_cap,
            false,
        )?,
        max_attempts: positive_u32("engine.max_attempts", raw.max_attempts, d.max_attempts)?,
        breaker_threshold: positive_u32(
            "engine.breaker_threshold",
            raw.breaker_threshold,
            d.breaker_threshold,
        )?,
        breaker_open: duration(
            "engine.breaker_open",
            raw.breaker_open.as_deref(),
            d.breaker_open,
            false,
        )?,
        breaker_max_open: duration(
            "engine.breaker_max_open",
            raw.breaker_max_open.as_deref(),
            d.breaker_max_open,
            false,
        )?,
        endpoint_concurrency: positive(
            "engine.endpoint_concurrency",
            raw.endpoint_concurrency,
            d.endpoint_concurrency,
        )?,
        retry_after_max: duration(
            "engine.retry_after_max",
            raw.retry_after_max.as_deref(),
            d.retry_after_max,
            true,
        )?,
        task_restart_limit: positive_u32(
            "engine.task_restart_limit",
            raw.task_restart_limit,
            d.task_restart_limit,
        )?,
        task_restart_window: duration(
            "engine.task_restart_window",
            raw.task_restart_window.as_deref(),
            d.task_restart_window,
            false,
        )?,
        jq: jq_budget(raw)?,
    };
    if s.backoff_cap < s.backoff_base {
        return Err(Issue::new(
            "engine.backoff_cap",
            format!(
                "must be at least `backoff_base` ({})",
                humantime::format_duration(s.backoff_base)
            ),
        ));
    }
    if s.breaker_max_open < s.breaker_open {
        return Err(Issue::new(
            "engine.breaker_max_open",
            format!(
                "must be at least `breaker_open` ({})",
                humantime::format_duration(s.breaker_open)
            ),
        ));
    }
    Ok(s)
}

/// Longest `jq_timeout`: a jq thread is held that long by a runaway program.
const MAX_JQ_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest `jq_max_bytes`: every mapping's input is copied once to its jq thread.
const MAX_JQ_BYTES: u64 = 64 << 20;

fn jq_budget(raw: &RawEngine) -> Result<Budget> {
    let d = Budget::default();
    let timeout = duration(
        "engine.jq_timeout",
        raw.jq_timeout.as_deref(),
        d.timeout,
        false,
    )?;
    if timeout > MAX_JQ_TIMEOUT {
        return Err(Issue::new(
            "engine.jq_timeout",
            format!(
                "must be at most {}: a runaway program holds a jq thread that long",
                humantime::format_duration(MAX_JQ_TIMEOUT)
            ),
        ));
    }
    let steps = match raw.jq_steps {
        None => d.steps,
        Some(0) => {
            return Err(Issue::new(
                "engine.jq_steps",
                "must be a positive integer, got 0",
            ))
        }
        Some(n) => n,
    };
    let max_bytes = match raw.jq_max_bytes {
        None => d.max_bytes,
        Some(size) if size.0 > MAX_JQ_BYTES => {
            return Err(Issue::new(
                "engine.jq_max_bytes",
                format!("must be at most 64MiB, got {} bytes", size.0),
            ))
        }
        Some(size) => positive("engine.jq_max_bytes", Some(size.0), 0)?,
    };
    Ok(Budget {
        steps,
        timeout,
        max_bytes,
    })
}

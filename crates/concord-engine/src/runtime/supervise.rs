//! Supervision of the engine's long-running tasks (processor, dispatchers, stock pool, alerts,
//! metrics, retention, pollers, batch schedules, migrations).
//!
//! Every task is started through [`spawn`] under a stable name (`process`, `deliver:erp`,
//! `poll:erp:stock`, `batch:nightly:erp`, `migration:seed:erp`, …). A task that returns has
//! finished (at shutdown, or a migration read to its end). A task that panics has *failed*: the
//! reason is logged with the task's name and the task is started again after a full-jitter
//! backoff (`[engine] backoff_base` doubling up to `backoff_cap`) — its state lives in the
//! store, so a fresh start resumes where it was. A task that fails more than `[engine]
//! task_restart_limit` times within `task_restart_window` is not started again: the engine
//! records the failure, [`Engine::readiness`] reports it (`/readyz` answers `503` with the code
//! `engine_task_failed:<task>`), and [`Engine::failed`] resolves so that `concord run` stops and
//! exits non-zero — a process supervisor restarting the whole hub does better than a hub that
//! limps on without, say, its processor.
//!
//! This module must never swallow a failure silently (every one is logged with its reason and
//! counted in `concord_task_restarts_total`), and never put a failure's text anywhere but the
//! logs: readiness carries only the task's name.

use super::{Engine, Inner};
use concord_core::retry::Backoff;
use futures::future::BoxFuture;
use futures::FutureExt;
use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A task the engine gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// The task's name, e.g. `deliver:erp`.
    pub task: String,
    /// Why its last run failed (a panic message). For logs only: never sent to a client.
    pub reason: String,
    /// How many times it failed within the window.
    pub failures: usize,
}

impl TaskFailure {
    /// The stable reason code that `/readyz` answers: `engine_task_failed:<task>`.
    pub fn code(&self) -> String {
        format!("engine_task_failed:{}", self.task)
    }
}

/// Whether the engine's tasks are all running (or finished their work).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// A task failed beyond its restart limit; the engine will not recover by itself.
    Failed(TaskFailure),
}

/// The supervisor's shared state: the first task given up on, if any.
pub(crate) struct Supervisor {
    failed: watch::Sender<Option<TaskFailure>>,
    /// Restarts so far per task name, for tests and diagnostics.
    restarts: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Supervisor {
    pub(crate) fn new() -> Supervisor {
        Supervisor {
            failed: watch::channel(None).0,
            restarts: Mutex::new(Default::default()),
        }
    }

    fn give_up(&self, failure: TaskFailure) {
        // The first failure is the one reported; later ones are in the logs.
        self.failed.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(failure);
                true
            } else {
                false
            }
        });
    }

    fn count_restart(&self, task: &str) {
        if let Ok(mut r) = self.restarts.lock() {
            *r.entry(task.to_string()).or_default() += 1;
        }
    }
}

impl Engine {
    /// Whether every engine task is running; see [`Readiness`].
    pub fn readiness(&self) -> Readiness {
        match self.inner.supervisor.failed.borrow().clone() {
            Some(f) => Readiness::Failed(f),
            None => Readiness::Ready,
        }
    }

    /// Resolves when the engine gave up on a task (see the module docs); never resolves while
    /// every task is healthy. `concord run` exits non-zero when it does.
    pub async fn failed(&self) -> TaskFailure {
        let mut rx = self.inner.supervisor.failed.subscribe();
        loop {
            if let Some(f) = rx.borrow_and_update().clone() {
                return f;
            }
            if rx.changed().await.is_err() {
                // The engine is gone (cannot happen while `self` holds it): never resolve.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Times each task was restarted after a failure, by task name.
    pub fn task_restarts(&self) -> std::collections::BTreeMap<String, u64> {
        self.inner
            .supervisor
            .restarts
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

/// Spawn task `name` onto `tasks`, supervised: `make` builds a fresh run of it each time it
/// has to be started.
pub(crate) fn spawn<F>(inner: &Arc<Inner>, tasks: &mut JoinSet<()>, name: String, make: F)
where
    F: Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static,
{
    tasks.spawn(supervise(inner.clone(), name, make));
}

async fn supervise<F>(inner: Arc<Inner>, name: String, make: F)
where
    F: Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static,
{
    let settings = &inner.config.engine;
    let backoff = Backoff {
        base_ms: millis(settings.backoff_base),
        cap_ms: millis(settings.backoff_cap),
    };
    let limit = settings.task_restart_limit as usize;
    let window = settings.task_restart_window;
    let mut failures: VecDeque<Instant> = VecDeque::new();
    loop {
        // Caught here, in this same task, so that aborting the join set still stops the run.
        let run = std::panic::AssertUnwindSafe(make()).catch_unwind().await;
        let panic = match run {
            Ok(()) => return,
            Err(panic) => panic,
        };
        let reason = panic_message(panic.as_ref());
        if inner.is_shutting_down() {
            tracing::error!(task = %name, %reason, "engine task failed while stopping");
            return;
        }
        let now = Instant::now();
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            failures.pop_front();
        }
        failures.push_back(now);
        metrics::counter!("concord_task_failures_total", "task" => name.clone()).increment(1);
        if failures.len() > limit {
            tracing::error!(
                task = %name,
                %reason,
                failures = failures.len(),
                window = %humantime::format_duration(window),
                "engine task keeps failing; not restarting it: the hub is not ready and stops"
            );
            inner.supervisor.give_up(TaskFailure {
                task: name,
                reason,
                failures: failures.len(),
            });
            return;
        }
        // Backoff grows with the failures still in the window.
        let attempt = u32::try_from(failures.len() - 1).unwrap_or(u32::MAX);
        let delay = Duration::from_millis(backoff.delay_ms(attempt, fastrand::f64()));
        tracing::error!(
            task = %name,
            %reason,
            failures = failures.len(),
            restart_in = ?delay,
            "engine task failed; restarting it"
        );
        if super::capture::sleep_or_shutdown(&inner, delay).await {
            return;
        }
        inner.supervisor.count_restart(&name);
        metrics::counter!("concord_task_restarts_total", "task" => name.clone()).increment(1);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The message of a panic payload (`panic!("…")` carries a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_read_from_both_payload_kinds() {
        let s = std::panic::catch_unwind(|| panic!("static text")).unwrap_err();
        assert_eq!(panic_message(s.as_ref()), "static text");
        let n = 7;
        let f = std::panic::catch_unwind(|| panic!("formatted {n}")).unwrap_err();
        assert_eq!(panic_message(f.as_ref()), "formatted 7");
        let o = std::panic::catch_unwind(|| std::panic::panic_any(42u8)).unwrap_err();
        assert_eq!(panic_message(o.as_ref()), "panic with a non-text payload");
    }

    #[test]
    fn the_readiness_code_names_only_the_task() {
        let f = TaskFailure {
            task: "deliver:erp".into(),
            reason: "index out of bounds at /home/x/secret.rs".into(),
            failures: 6,
        };
        assert_eq!(f.code(), "engine_task_failed:deliver:erp");
    }
}

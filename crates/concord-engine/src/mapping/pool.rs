//! The threads jq programs run on, off the async workers.
//!
//! Two lanes, each a small fixed set of threads fed by a bounded queue: [`Lane::Inbound`] for
//! inbound mappings (webhooks, pollers: work the outside can cause) and [`Lane::Outbound`] for
//! filters and outbound mappings (the processor, the stock pool, replays). A flood of
//! expensive webhooks therefore queues behind its own lane and never delays the sync path.
//! A job is one evaluation, bounded by its [`super::Budget`], so a thread is never lost to a
//! runaway program: it is free again after at most the budget's timeout.
//!
//! The threads have a large stack ([`THREAD_STACK`]); an evaluation may use
//! [`EVAL_STACK`] of it before the meter stops it, and the rest is the margin for what runs
//! between two steps (jaq's natives, dropping values).
//!
//! The threads are detached and never joined: they hold nothing durable, and the process
//! exits when `main` returns whatever they are doing (a SIGTERM is never held up by a jq
//! program). Must never: run anything but bounded evaluations, or be joined on shutdown.

use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::mpsc;

/// Stack of each jq thread (reserved address space; pages are used only as deep as a program
/// goes).
pub(crate) const THREAD_STACK: usize = 256 << 20;
/// The fallback stack: the evaluation's allowance and three times that for what runs between
/// steps.
pub(crate) const SMALL_THREAD_STACK: usize = 4 * EVAL_STACK;
/// Native stack one evaluation may use before [`super::budget::Limit::Stack`] stops it: some
/// ten thousand levels of jq recursion, far beyond what a mapping needs.
pub(crate) const EVAL_STACK: usize = 16 << 20;
/// Evaluations waiting per lane; beyond that callers wait (asynchronously) for room.
const QUEUE: usize = 1024;

/// Which set of threads runs an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Inbound mappings (`map_in`).
    Inbound,
    /// Filters and outbound mappings (`filter`, `map_out`).
    Outbound,
}

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    jobs: mpsc::Sender<Job>,
}

static INBOUND: OnceLock<Result<Pool, String>> = OnceLock::new();
static OUTBOUND: OnceLock<Result<Pool, String>> = OnceLock::new();

fn pool(lane: Lane) -> Result<&'static Pool, String> {
    let (cell, name) = match lane {
        Lane::Inbound => (&INBOUND, "in"),
        Lane::Outbound => (&OUTBOUND, "out"),
    };
    cell.get_or_init(|| start(name))
        .as_ref()
        .map_err(Clone::clone)
}

fn start(name: &str) -> Result<Pool, String> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    let (tx, rx) = mpsc::channel::<Job>(QUEUE);
    let rx = Arc::new(Mutex::new(rx));
    let mut started = 0;
    let mut failure = None;
    for i in 0..threads {
        let rx = rx.clone();
        let spawned = spawn(format!("concord-jq-{name}-{i}"), move || loop {
            // One thread waits on the queue at a time; the others wait for the lock.
            let job = match rx.lock() {
                Ok(mut rx) => rx.blocking_recv(),
                Err(poisoned) => poisoned.into_inner().blocking_recv(),
            };
            match job {
                // Jobs catch their own unwinds; this one only keeps the thread alive if
                // one ever did not.
                Some(job) => {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
                None => return,
            }
        });
        match spawned {
            Ok(_) => started += 1,
            Err(e) => failure = Some(e.to_string()),
        }
    }
    if started == 0 {
        return Err(format!(
            "no jq thread could be started: {}",
            failure.unwrap_or_default()
        ));
    }
    Ok(Pool { jobs: tx })
}

/// Start a jq thread with a [`THREAD_STACK`] stack, or, where the system refuses to reserve
/// that much (strict overcommit), with [`SMALL_THREAD_STACK`].
fn spawn(name: String, body: impl FnOnce() + Send + Clone + 'static) -> std::io::Result<()> {
    let big = std::thread::Builder::new()
        .name(name.clone())
        .stack_size(THREAD_STACK)
        .spawn(body.clone());
    match big {
        Ok(_) => Ok(()),
        Err(_) => std::thread::Builder::new()
            .name(name)
            .stack_size(SMALL_THREAD_STACK)
            .spawn(body)
            .map(drop),
    }
}

/// Run `job` on a thread of `lane`. The job must report its own result (it is wrapped by the
/// caller so that it cannot unwind out of the thread).
pub(crate) async fn submit(lane: Lane, job: Job) -> Result<(), String> {
    let pool = pool(lane)?;
    pool.jobs
        .send(job)
        .await
        .map_err(|_| "the jq threads have stopped".to_string())
}

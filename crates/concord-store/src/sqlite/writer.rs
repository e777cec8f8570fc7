//! The single writer: one OS thread owns the only write connection and commits in groups.
//!
//! Callers send a job (a closure over the connection plus a oneshot reply). The thread takes the
//! first queued job, drains whatever else is already queued (up to [`MAX_GROUP`]), and runs them
//! all in ONE `BEGIN IMMEDIATE … COMMIT`, each inside its own SAVEPOINT: a failing job rolls back
//! only its own writes and gets its own error, the others still commit. Replies go out only after
//! the commit, so a caller that sees `Ok` knows its write is durable. Under load this turns many
//! small transactions into one fsync-free WAL append each, which is where SQLite's write
//! throughput comes from.
//!
//! The queue in front of the thread is bounded (`[store] write_queue`, see
//! [`super::SqliteOptions`]): every job carries a permit of the store's queue semaphore from the
//! moment it is queued until its reply is sent, so the jobs queued or running never exceed the
//! bound, even when their callers have gone away.
//!
//! This module must never run anything but writer jobs on its connection, and never reply before
//! the group's commit outcome is known.

use crate::{Result, StoreError};
use rusqlite::{Connection, TransactionBehavior};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use tokio::sync::{oneshot, OwnedSemaphorePermit};

/// Most jobs committed together. Bounds the latency one group adds to its first job and the size
/// of a rolled-back group if the commit itself fails.
pub(crate) const MAX_GROUP: usize = 512;

/// State the writer keeps across jobs.
pub(crate) struct WriterCtx {
    /// Last claim token handed out. Seeded at open above every token a previous process may have
    /// issued (see `SqliteStore::open`), then incremented: a token is never reused for an item.
    pub(crate) last_token: i64,
    /// Transactions committed so far (one per group); lets tests see that grouping happens.
    pub(crate) groups: Arc<AtomicU64>,
}

impl WriterCtx {
    pub(crate) fn next_token(&mut self) -> i64 {
        self.last_token = self.last_token.wrapping_add(1);
        self.last_token
    }

    /// A dirty-SKU generation: drawn from the same counter as claim tokens, so it is never
    /// reused for the life of the database (the counter is seeded at open above every stored
    /// generation too), even for a SKU whose mark was cleared and set again.
    pub(crate) fn next_generation(&mut self) -> i64 {
        self.next_token()
    }
}

/// A unit of work for the writer: run inside a savepoint, then told the group's fate.
pub(crate) trait Job: Send {
    /// Run the job; true when it succeeded (its savepoint is then released, else rolled back).
    fn run(&mut self, conn: &Connection, ctx: &mut WriterCtx) -> bool;
    /// Deliver the result, now that the group's commit outcome is known.
    fn finish(self: Box<Self>, commit: &std::result::Result<(), String>);
}

struct TypedJob<T, F> {
    f: Option<F>,
    out: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
    /// This job's place in the bounded queue, given back when the job is finished (or dropped).
    _slot: OwnedSemaphorePermit,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection, &mut WriterCtx) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection, ctx: &mut WriterCtx) -> bool {
        let out = match self.f.take() {
            // A panic in a job (a bug) must not take the writer thread, and with it the whole
            // store, down: the job's savepoint is rolled back and it gets an error.
            Some(f) => match catch_unwind(AssertUnwindSafe(|| f(conn, ctx))) {
                Ok(out) => out,
                Err(_) => Err(StoreError::Db("write job panicked".into())),
            },
            None => Err(StoreError::Db("write job ran twice".into())),
        };
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn finish(self: Box<Self>, commit: &std::result::Result<(), String>) {
        let result = match (self.out, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(e)) => Err(StoreError::Db(format!("commit: {e}"))),
            (None, Ok(())) => Err(StoreError::Db("write job never ran".into())),
        };
        // The caller may have gone away (its future dropped); the write stands regardless.
        let _ = self.reply.send(result);
    }
}

/// Package a closure as a job holding its queue slot, and the receiver of its result.
pub(crate) fn job<T, F>(
    f: F,
    slot: OwnedSemaphorePermit,
) -> (Box<dyn Job>, oneshot::Receiver<Result<T>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection, &mut WriterCtx) -> Result<T> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    (
        Box::new(TypedJob {
            f: Some(f),
            out: None,
            reply: tx,
            _slot: slot,
        }),
        rx,
    )
}

/// The writer thread's loop. Returns when every sender is gone and the queue is drained.
pub(crate) fn run(mut conn: Connection, rx: mpsc::Receiver<Box<dyn Job>>, mut ctx: WriterCtx) {
    let mut group: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = rx.recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let outcome = run_group(&mut conn, &mut group, &mut ctx);
        match &outcome {
            Ok(()) => {
                ctx.groups.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(jobs = group.len(), error = %e, "store write group failed"),
        }
        for job in group.drain(..) {
            job.finish(&outcome);
        }
    }
    // Dropping the connection here closes the database: the WAL is checkpointed by SQLite when
    // the last connection closes (readers are closed by the store).
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the store's write connection");
    }
}

fn run_group(
    conn: &mut Connection,
    group: &mut [Box<dyn Job>],
    ctx: &mut WriterCtx,
) -> std::result::Result<(), String> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| format!("begin: {e}"))?;
    for job in group.iter_mut() {
        match tx.savepoint() {
            Ok(sp) => {
                if job.run(&sp, ctx) {
                    if let Err(e) = sp.commit() {
                        // Could not release: undo everything rather than commit half a job.
                        return Err(format!("release savepoint: {e}"));
                    }
                } else if let Err(e) = sp.finish() {
                    // `finish` with the default drop behaviour = ROLLBACK TO + RELEASE.
                    return Err(format!("roll back savepoint: {e}"));
                }
            }
            Err(e) => return Err(format!("savepoint: {e}")),
        }
    }
    tx.commit().map_err(|e| e.to_string())
}

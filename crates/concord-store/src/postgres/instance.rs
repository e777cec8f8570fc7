//! The instance lock: one running Concord per PostgreSQL database, until the leader lease,
//! the outbox rescuer and shared sessions of several instances exist.
//!
//! [`PgStore::lock_instance`] opens a connection of its own (not a pooled one) and takes the
//! session-level advisory lock [`INSTANCE_LOCK_KEY`] with `pg_try_advisory_lock`: it never
//! waits. The lock lives exactly as long as that connection: [`InstanceLock`] keeps it for the
//! process's life, and a process that dies (even `kill -9`) loses its connection and with it the
//! lock, so the next instance can start. While the lock is held the store answers
//! `is_exclusive() == true`: every in-flight claim found at start-up belongs to a dead process.
//!
//! The key is fixed for the whole database (not per schema): the one-instance rule is per
//! database.

use super::{codec, open_err, PgStore};
use crate::StoreError;
use std::sync::atomic::Ordering;
use tokio_postgres::NoTls;

/// The session advisory lock of a running instance (`pg_try_advisory_lock(bigint)`): "Concord1"
/// in ASCII. In `pg_locks` it shows as `classid` = the high 32 bits, `objid` = the low 32 bits,
/// `objsubid` = 1.
pub const INSTANCE_LOCK_KEY: i64 = 0x436F_6E63_6F72_6431;

/// Why [`PgStore::lock_instance`] did not take the lock.
#[derive(Debug, thiserror::Error)]
pub enum InstanceLockError {
    /// Another session holds the lock: another Concord instance runs on this database.
    /// `holder` describes that session as far as the server shows it (backend pid, application
    /// name, client address, since when), or says it could not be seen.
    #[error("another Concord instance holds this database's instance lock ({holder})")]
    Taken { holder: String },
    /// Connecting or asking for the lock failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The held instance lock: keep it for the life of the process. Dropping it closes its
/// connection, which releases the lock.
pub struct InstanceLock {
    /// The session holding the lock; kept open, never used again.
    _client: tokio_postgres::Client,
    /// Resolves with the reason when the lock's connection ends (the lock is then gone).
    lost: tokio::sync::oneshot::Receiver<String>,
    connection: tokio::task::JoinHandle<()>,
    store_flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl InstanceLock {
    /// Resolves when the lock's connection has ended (the server restarted, the network
    /// failed, an administrator terminated the session): from then on the lock is no longer
    /// held and another instance may start. Returns the reason.
    pub async fn lost(&mut self) -> String {
        match (&mut self.lost).await {
            Ok(reason) => reason,
            Err(_) => "the instance lock's connection task stopped".into(),
        }
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        self.store_flag.store(false, Ordering::Release);
        self.connection.abort();
    }
}

impl PgStore {
    /// Take the instance lock of this database on a dedicated connection (see the module
    /// docs). `Err(Taken)` at once when another session holds it; never waits for it.
    pub async fn lock_instance(&self) -> Result<InstanceLock, InstanceLockError> {
        let mut config = self.config.clone();
        config.application_name(format!("concord instance {}", std::process::id()));
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| open_err(format!("instance lock: {}", codec::describe(&e))))?;
        let (tx, lost) = tokio::sync::oneshot::channel();
        let flag = std::sync::Arc::clone(&self.exclusive);
        let task_flag = std::sync::Arc::clone(&self.exclusive);
        let connection = tokio::spawn(async move {
            let reason = match connection.await {
                Ok(()) => "the instance lock's connection was closed".to_string(),
                Err(e) => format!(
                    "the instance lock's connection failed: {}",
                    codec::describe(&e)
                ),
            };
            task_flag.store(false, Ordering::Release);
            let _ = tx.send(reason);
        });
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&INSTANCE_LOCK_KEY])
            .await
            .map_err(codec::db("take the instance lock"));
        let taken: bool = match row {
            Ok(row) => codec::get(&row, 0)?,
            Err(e) => {
                connection.abort();
                return Err(e.into());
            }
        };
        if !taken {
            let holder = holder(&client).await;
            drop(client);
            connection.abort();
            return Err(InstanceLockError::Taken { holder });
        }
        flag.store(true, Ordering::Release);
        Ok(InstanceLock {
            _client: client,
            lost,
            connection,
            store_flag: flag,
        })
    }
}

/// The session holding the instance lock, as far as `pg_stat_activity` shows it to us.
async fn holder(client: &tokio_postgres::Client) -> String {
    let high = INSTANCE_LOCK_KEY >> 32;
    let low = INSTANCE_LOCK_KEY & 0xFFFF_FFFF;
    let row = client
        .query_opt(
            "SELECT a.pid, a.application_name, host(a.client_addr),
                    to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.classid::text::bigint = $1 AND l.objid::text::bigint = $2
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             LIMIT 1",
            &[&high, &low],
        )
        .await;
    let Ok(Some(row)) = row else {
        return "its session is not visible to this user".into();
    };
    let pid: Option<i32> = row.try_get(0).ok();
    let app: Option<String> = row.try_get(1).ok().flatten();
    let addr: Option<String> = row.try_get(2).ok().flatten();
    let since: Option<String> = row.try_get(3).ok().flatten();
    let mut parts = Vec::new();
    if let Some(pid) = pid {
        parts.push(format!("server backend pid {pid}"));
    }
    match app.filter(|a| !a.is_empty()) {
        Some(app) => parts.push(format!("application \"{app}\"")),
        None => parts.push("application not visible".into()),
    }
    parts.push(format!(
        "from {}",
        addr.unwrap_or_else(|| "a local socket".into())
    ));
    if let Some(since) = since {
        parts.push(format!("connected since {since}"));
    }
    parts.join(", ")
}

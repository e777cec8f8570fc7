//! The instance lock: one *active* Concord per PostgreSQL database, until the leader lease,
//! the outbox rescuer and shared sessions of several active instances exist. Others may stand
//! by ([`PgStore::wait_for_instance_lock`]) and take over when the active one goes.
//!
//! [`PgStore::lock_instance`] opens a connection of its own (not a pooled one) and takes the
//! session-level advisory lock [`INSTANCE_LOCK_KEY`] with `pg_try_advisory_lock`: it never
//! waits. The lock lives exactly as long as that connection: [`InstanceLock`] keeps it for the
//! process's life, and a process that dies (even `kill -9`) loses its connection and with it the
//! lock, so the next instance can start. While the lock is held the store answers
//! `is_exclusive() == true`: every in-flight claim found at start-up belongs to a dead process.
//!
//! The holder checks its lock session every [`INSTANCE_HEARTBEAT`] (the lock still granted
//! to it, an answer within [`INSTANCE_HEARTBEAT_TIMEOUT`]; TCP keepalives on that connection
//! too): a session that stops answering — a network cut that closes nothing — is reported lost
//! within about `INSTANCE_HEARTBEAT + INSTANCE_HEARTBEAT_TIMEOUT`, and the hub stops
//! (`concord run` exits 1). The server only frees the lock for a standby once it has ended the
//! old session, which on a silent network cut takes its own `tcp_keepalives_*` time: set those
//! above that bound (README "Scaling out"), so the old holder has stopped before a standby can
//! start.
//!
//! Must never: wait for the lock inside `lock_instance`, or report the lock held after its
//! session failed a check.
//!
//! The key is fixed for the whole database (not per schema): the one-instance rule is per
//! database.

use super::{codec, open_err, PgStore};
use crate::StoreError;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_postgres::NoTls;

/// How often the holder checks that its lock session still holds the lock.
pub const INSTANCE_HEARTBEAT: Duration = Duration::from_secs(2);
/// How long one check may take before the lock counts as lost.
pub const INSTANCE_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Receives the reason once the lock is lost (the connection ended, or a heartbeat failed).
    lost: tokio::sync::mpsc::Receiver<String>,
    /// Drives the lock's connection.
    connection: tokio::task::JoinHandle<()>,
    /// Owns the lock's session (the client) and checks it every [`INSTANCE_HEARTBEAT`].
    heartbeat: tokio::task::JoinHandle<()>,
    store_flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl InstanceLock {
    /// Resolves when the lock can no longer be trusted: its connection ended (the server
    /// restarted, an administrator terminated the session) or its session failed a heartbeat
    /// (no answer within [`INSTANCE_HEARTBEAT_TIMEOUT`], or the lock no longer granted to it).
    /// From then on another instance may start. Returns the reason.
    pub async fn lost(&mut self) -> String {
        self.lost
            .recv()
            .await
            .unwrap_or_else(|| "the instance lock's tasks stopped".into())
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        self.store_flag.store(false, Ordering::Release);
        self.heartbeat.abort();
        self.connection.abort();
    }
}

/// Does this session still hold the instance lock (granted, in this database)?
const HELD: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.granted AND l.pid = pg_backend_pid()
       AND l.objsubid = 1 AND l.classid::text::bigint = $1 AND l.objid::text::bigint = $2
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))";

/// The heartbeat: every [`INSTANCE_HEARTBEAT`], the lock still granted to this session,
/// answered within [`INSTANCE_HEARTBEAT_TIMEOUT`]. Ends (after reporting) at the first failed
/// check.
async fn heartbeat(
    client: tokio_postgres::Client,
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    lost: tokio::sync::mpsc::Sender<String>,
) {
    let high = INSTANCE_LOCK_KEY >> 32;
    let low = INSTANCE_LOCK_KEY & 0xFFFF_FFFF;
    loop {
        tokio::time::sleep(INSTANCE_HEARTBEAT).await;
        let check = tokio::time::timeout(
            INSTANCE_HEARTBEAT_TIMEOUT,
            client.query_one(HELD, &[&high, &low]),
        )
        .await;
        let reason = match check {
            Ok(Ok(row)) => match row.try_get::<_, bool>(0) {
                Ok(true) => continue,
                Ok(false) => {
                    "the instance lock is no longer granted to this instance's session".to_string()
                }
                Err(e) => format!("the instance lock's heartbeat: {e}"),
            },
            Ok(Err(e)) => format!(
                "the instance lock's heartbeat failed: {}",
                codec::describe(&e)
            ),
            Err(_) => format!(
                "the instance lock's session did not answer its heartbeat within {} s",
                INSTANCE_HEARTBEAT_TIMEOUT.as_secs()
            ),
        };
        flag.store(false, Ordering::Release);
        let _ = lost.try_send(reason);
        return;
    }
}

impl PgStore {
    /// Take the instance lock of this database on a dedicated connection (see the module
    /// docs). `Err(Taken)` at once when another session holds it; never waits for it.
    pub async fn lock_instance(&self) -> Result<InstanceLock, InstanceLockError> {
        let mut config = self.config.clone();
        config
            .application_name(format!("concord instance {}", std::process::id()))
            .keepalives(true)
            .keepalives_idle(INSTANCE_HEARTBEAT)
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(3);
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| open_err(format!("instance lock: {}", codec::describe(&e))))?;
        let (tx, lost) = tokio::sync::mpsc::channel(2);
        let flag = std::sync::Arc::clone(&self.exclusive);
        let task_flag = std::sync::Arc::clone(&self.exclusive);
        let task_tx = tx.clone();
        let connection = tokio::spawn(async move {
            let reason = match connection.await {
                Ok(()) => "the instance lock's connection was closed".to_string(),
                Err(e) => format!(
                    "the instance lock's connection failed: {}",
                    codec::describe(&e)
                ),
            };
            task_flag.store(false, Ordering::Release);
            let _ = task_tx.try_send(reason);
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
        let heartbeat = tokio::spawn(heartbeat(client, std::sync::Arc::clone(&flag), tx));
        Ok(InstanceLock {
            lost,
            connection,
            heartbeat,
            store_flag: flag,
        })
    }

    /// Stand by for the instance lock: try [`PgStore::lock_instance`] every `poll` until it is
    /// taken (the active instance stopped or died). `waiting` hears why each try did not take it
    /// (another instance holds it, naming that instance; or the try failed — a standby rides
    /// out the database being unreachable for a while). Cancel-safe: drop the future to stop
    /// waiting.
    pub async fn wait_for_instance_lock(
        &self,
        poll: Duration,
        mut waiting: impl FnMut(&InstanceLockError),
    ) -> InstanceLock {
        loop {
            match self.lock_instance().await {
                Ok(lock) => return lock,
                Err(e) => waiting(&e),
            }
            tokio::time::sleep(poll).await;
        }
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

//! Opening a [`SqliteStore`]: its options (`[store]`: durability, write queue), the database
//! file made private, the connections configured and migrated, the writer thread started.
//!
//! Must never leave a half-opened store behind (any failure is [`StoreError::Open`] naming the
//! path and the step), nor open the database readable by other users.

use super::{schema, writer, SqliteStore};
use crate::{Result, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::Semaphore;
use writer::{Job, WriterCtx};

/// Read connections. Reads are short point or index-range queries; a few connections cover
/// the engine's concurrent readers without holding many file descriptors and page caches.
const READERS: usize = 4;

/// How hard SQLite works to keep a committed transaction across a power loss (`PRAGMA
/// synchronous` of the write connection, in WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// Every commit is flushed to the disk (`fsync` of the WAL) before it is reported: what
    /// was acknowledged survives a power loss or an OS crash. The default.
    #[default]
    Full,
    /// Commits reach the OS but are flushed only at checkpoints: faster, and safe against a
    /// crash of the process, but a power loss or OS crash can lose changes already
    /// acknowledged to their sender.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// How a [`SqliteStore`] is opened (`[store]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// Most writes queued for (or being run by) the single writer. Beyond it a write waits for
    /// room, or fails with [`StoreError::Busy`] inside [`crate::admission::fail_fast`].
    pub write_queue: usize,
}

impl SqliteOptions {
    /// Default of [`SqliteOptions::write_queue`]: two full groups of the writer (so a group
    /// can fill while the previous one commits), with room for the engine's own tasks.
    pub const DEFAULT_WRITE_QUEUE: usize = 4 * writer::MAX_GROUP;
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            write_queue: Self::DEFAULT_WRITE_QUEUE,
        }
    }
}

/// Create the database file `0600` when it does not exist, and take group and other access away
/// from an existing one and its `-wal`/`-shm`/`-journal` files. Not on Unix: nothing (the
/// platform's ACLs apply).
fn private_files(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let mut files = vec![path.to_path_buf()];
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            files.push(PathBuf::from(name));
        }
        for f in files {
            let Ok(meta) = std::fs::metadata(&f) else {
                continue;
            };
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode & 0o700))?;
                tracing::warn!(file = %f.display(), "the store was readable by other users; made it private (0600)");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path` with the default options, apply
    /// pending migrations and start the writer thread.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Open (creating if needed) the database at `path`, apply pending migrations and start the
    /// writer thread.
    ///
    /// The database is private to its owner: a new file is created `0600` before SQLite opens
    /// it (SQLite gives its `-wal` and `-shm` files the database file's permissions), and an
    /// existing database or WAL file readable by others is made `0600` (logged). It holds
    /// customers, orders and the whole stock position.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let open_err = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        if options.write_queue == 0 {
            return Err(open_err("write_queue must be at least 1".into()));
        }
        private_files(&path).map_err(|e| open_err(format!("permissions: {e}")))?;
        let mut conn = Connection::open(&path).map_err(|e| open_err(format!("open: {e}")))?;
        schema::configure(&conn).map_err(|e| open_err(format!("configure: {e}")))?;
        // Only the writer commits, so only its connection's setting decides durability.
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {}",
            options.synchronous.pragma()
        ))
        .map_err(|e| open_err(format!("configure: synchronous: {e}")))?;
        // Every writer job runs in its own savepoint, so SQLite copies each page a job touches
        // to the transaction's sub-journal first. That copy only serves `ROLLBACK TO` inside
        // the open transaction (never crash recovery, which is the WAL's job): keep it in
        // memory instead of a temporary file, saving a write(2) per page per job under group
        // commit. Durability is unchanged.
        conn.execute_batch("PRAGMA temp_store = MEMORY")
            .map_err(|e| open_err(format!("configure: temp_store: {e}")))?;
        // The writer checkpoints the WAL itself once it holds this many pages (SQLite's default
        // is 1,000). A checkpoint copies each page once, however often it was rewritten since
        // the last one, and ends with an fsync; the write path rewrites the same hot pages
        // (ledger positions, outbox and index tails) in every group, so a longer WAL makes
        // checkpoints rarer for little more work each. 4,000 pages (about 16 MB of WAL) takes
        // most of the gain; longer ones stall the writer long enough to show in p99 latency.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 4000")
            .map_err(|e| open_err(format!("configure: wal_autocheckpoint: {e}")))?;
        schema::migrate(&mut conn).map_err(open_err)?;

        // Tokens only need to differ from every token an item was claimed with before. In-flight
        // tokens are the only ones still stored; the clock (µs) keeps a restarted process above
        // the previous one's counter even for items settled since.
        let max_token: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(token), 0) FROM outbox WHERE state = 'inflight'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| open_err(format!("read claim tokens: {e}")))?;
        // Dirty-SKU generations share the counter: it must start above every stored one.
        let max_generation: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(generation), 0) FROM ats_dirty",
                [],
                |r| r.get(0),
            )
            .map_err(|e| open_err(format!("read dirty generations: {e}")))?;
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2))
            .unwrap_or(0);
        let groups = Arc::new(AtomicU64::new(0));
        let ctx = WriterCtx {
            last_token: max_token.max(max_generation).max(clock),
            groups: Arc::clone(&groups),
        };

        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| open_err(format!("open reader: {e}")))?;
            schema::configure(&r).map_err(|e| open_err(format!("configure reader: {e}")))?;
            // Read-write open (a read-only one cannot create the WAL index if it is missing) but
            // refused any write: reads must never race the writer.
            r.execute_batch("PRAGMA query_only = ON")
                .map_err(|e| open_err(format!("configure reader: {e}")))?;
            readers.push(r);
        }

        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let thread = std::thread::Builder::new()
            .name("concord-store-writer".into())
            .spawn(move || writer::run(conn, rx, ctx))
            .map_err(|e| open_err(format!("start writer thread: {e}")))?;

        Ok(SqliteStore {
            path,
            writer: Mutex::new(Some(tx)),
            queue: Arc::new(Semaphore::new(options.write_queue)),
            thread: Mutex::new(Some(thread)),
            readers: Arc::new(Mutex::new(readers)),
            reader_permits: Arc::new(Semaphore::new(READERS)),
            groups,
        })
    }
}

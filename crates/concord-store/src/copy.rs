//! Moving an installation from SQLite to PostgreSQL (`concord store copy`, issue 14 item 4):
//! every table of a stopped hub's SQLite store copied into a freshly migrated PostgreSQL store,
//! then verified, all in one PostgreSQL transaction.
//!
//! How: the SQLite file is opened without creating it, with `locking_mode = EXCLUSIVE` and
//! `BEGIN EXCLUSIVE` and no busy wait — refused ([`CopyError::SourceInUse`]) while any other
//! connection (a running hub, an open `sqlite3` shell) has it open, and no hub can open it while
//! the copy runs — then made `query_only`. Its schema version (`PRAGMA user_version`) and its
//! set of tables must be exactly this build's. The target is migrated by [`PgStore::connect`],
//! then one transaction locks every store table (`ACCESS EXCLUSIVE`), refuses any row in any of
//! them ([`CopyError::TargetNotEmpty`]), streams each table with binary `COPY` in dependency
//! order ([`TABLES`]; identity columns keep their values; SQLite's `reservations` rowid becomes
//! `row_seq`), sets every identity sequence past both the copied maximum and SQLite's
//! `sqlite_sequence` (AUTOINCREMENT ids never reused), rebuilds the maintained `stats`
//! counters from the copied rows ([`DERIVED`]: not copied, their shapes differ), sets
//! `concord_tokens` above every claim token and dirty generation in the source and above the
//! clock in µs (as `sqlite/open.rs` seeds SQLite's counter), and finally reads every table back: per table the row count and a
//! SHA-256 over its rows in primary-key order (text compared bytewise, `COLLATE "C"`, SQLite's
//! BINARY order) in the canonical text form of [`RowHasher`] must equal the source's. Any
//! difference rolls the transaction back ([`CopyError::Mismatch`], with the report): the
//! target is left as it was, and the copy can simply be run again.
//!
//! Must never write to the source (it is only read, inside a transaction that is rolled back;
//! closing it may checkpoint its WAL, which changes no content), never write to a target that
//! holds any row, and never commit a copy whose counts or hashes differ.

use crate::postgres::PgOptions;
use crate::sqlite::schema::MIGRATIONS as SQLITE_MIGRATIONS;
use crate::PgStore;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Transaction};

/// Every table of the store, in an order where each table comes after the tables it refers to
/// (`outbox_deps` → `outbox`, `reservation_lines` → `reservations`). `schema_migrations`
/// (PostgreSQL's own version record) is not copied: the target's migrations wrote it.
pub const TABLES: &[&str] = &[
    "cursors",
    "journal",
    "inbox_last",
    "entities",
    "xref",
    "hashes",
    "outbox",
    "outbox_deps",
    "dead_letters",
    "audit",
    "stock_levels",
    "reservations",
    "reservation_lines",
    "ats_dirty",
    "order_acceptances",
    "alert_episodes",
    "paused_flows",
    "order_lifecycle",
    "order_events",
    "order_children",
    "delivery_attempts",
    "connector_state",
    "reconcile_runs",
    "admin_sessions",
];

/// Tables derived from the copied ones, not copied: the maintained `stats` counters
/// (SQLite's `stats_counts`, one row per group; PostgreSQL's `stats_deltas`, rows to sum —
/// different shapes by design). The target's triggers count the copied rows as `COPY` inserts
/// them; the copy then rebuilds the counters from the copied rows anyway (truth from the rows,
/// whatever the source's counters said), inside its transaction.
pub const DERIVED: &[(&str, &str)] = &[("stats_counts", "stats_deltas")];

/// Columns PostgreSQL has and SQLite keeps implicitly: (table, PostgreSQL column, SQLite
/// expression).
const IMPLICIT: &[(&str, &str, &str)] = &[("reservations", "row_seq", "rowid")];

/// Rows per chunk passed from the SQLite reader to the PostgreSQL writer.
const CHUNK: usize = 1_000;

/// Why a copy did not happen (nothing was committed to the target in every case).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("source {path}: {reason}")]
    Source { path: String, reason: String },
    #[error(
        "the SQLite store {path} is in use (another process or connection has it open): \
         stop the hub (and any sqlite3 shell) before copying"
    )]
    SourceInUse { path: String },
    #[error(
        "the SQLite store {path} has schema version {found}, this build knows version {known}: \
         open it once with this build's `concord run` (which migrates it), stop it, then copy"
    )]
    SourceVersion {
        path: String,
        found: i64,
        known: usize,
    },
    #[error(
        "the target database is not empty (table {table} has {rows} row(s)): \
         copy only into a fresh database; nothing was written"
    )]
    TargetNotEmpty { table: String, rows: i64 },
    #[error("target: {0}")]
    Target(String),
    #[error("the tables differ between source and target: {0}")]
    Schema(String),
    #[error("verification failed for {tables}: the copy was rolled back, the target is unchanged")]
    Mismatch { tables: String, report: CopyReport },
}

type CopyResult<T> = std::result::Result<T, CopyError>;

/// One table's verification: counts and content hashes on both sides.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableCheck {
    pub table: String,
    pub source_rows: u64,
    pub target_rows: u64,
    /// SHA-256 (hex) of the source's rows in primary-key order, canonical form.
    pub source_hash: String,
    pub target_hash: String,
}

impl TableCheck {
    pub fn equal(&self) -> bool {
        self.source_rows == self.target_rows && self.source_hash == self.target_hash
    }
}

/// What a copy did: one check per table (in [`TABLES`] order) and where `concord_tokens` now
/// stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    pub tables: Vec<TableCheck>,
    /// `concord_tokens`' next value is above this.
    pub tokens_above: i64,
}

impl CopyReport {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.target_rows).sum()
    }
    pub fn all_equal(&self) -> bool {
        self.tables.iter().all(TableCheck::equal)
    }
}

/// A column's type on the PostgreSQL side, which decides how a SQLite value converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColType {
    Int,
    Real,
    Text,
}

impl ColType {
    fn from_pg(data_type: &str) -> Option<ColType> {
        match data_type {
            "bigint" => Some(ColType::Int),
            "double precision" => Some(ColType::Real),
            "text" => Some(ColType::Text),
            _ => None,
        }
    }
    fn pg_type(self) -> Type {
        match self {
            ColType::Int => Type::INT8,
            ColType::Real => Type::FLOAT8,
            ColType::Text => Type::TEXT,
        }
    }
}

/// One value, typed by its PostgreSQL column (`None` is NULL).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
}

impl Cell {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Cell::Int(v) => v,
            Cell::Real(v) => v,
            Cell::Text(v) => v,
        }
    }
}

/// The canonical text form of a table's rows, hashed: per value `N` (NULL), `I<decimal>;`,
/// `R<shortest round-trip decimal>;` or `T<byte length>:<UTF-8 bytes>`, a newline per row.
/// Both sides hash the values as PostgreSQL types them, so equal hashes mean equal content.
#[derive(Default)]
pub(crate) struct RowHasher {
    sha: Sha256,
    rows: u64,
}

impl RowHasher {
    pub(crate) fn add(&mut self, row: &[Cell]) {
        for cell in row {
            match cell {
                Cell::Int(None) | Cell::Real(None) | Cell::Text(None) => self.sha.update(b"N"),
                Cell::Int(Some(i)) => self.sha.update(format!("I{i};").as_bytes()),
                Cell::Real(Some(f)) => self.sha.update(format!("R{f};").as_bytes()),
                Cell::Text(Some(s)) => {
                    self.sha.update(format!("T{}:", s.len()).as_bytes());
                    self.sha.update(s.as_bytes());
                }
            }
        }
        self.sha.update(b"\n");
        self.rows += 1;
    }
    pub(crate) fn finish(self) -> (u64, String) {
        (self.rows, hex::encode(self.sha.finalize()))
    }
}

/// How one table is read on each side and written.
#[derive(Debug, Clone)]
struct TablePlan {
    name: &'static str,
    /// (PostgreSQL column, SQLite expression, type), in SQLite's column order then implicit ones.
    columns: Vec<(String, String, ColType)>,
    /// Primary-key columns (PostgreSQL names), in key order, with their types.
    key: Vec<(String, ColType)>,
    /// The PostgreSQL identity column, if any (its sequence is set past the copied values).
    identity: Option<String>,
}

impl TablePlan {
    fn sqlite_select(&self) -> String {
        let cols: Vec<&str> = self.columns.iter().map(|c| c.1.as_str()).collect();
        let order: Vec<String> = self.key.iter().map(|(k, _)| format!("\"{k}\"")).collect();
        format!(
            "SELECT {} FROM \"{}\" ORDER BY {}",
            cols.join(", "),
            self.name,
            order.join(", ")
        )
    }
    fn pg_columns(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("\"{}\"", c.0))
            .collect();
        cols.join(", ")
    }
    fn pg_select(&self) -> String {
        let order: Vec<String> = self
            .key
            .iter()
            .map(|(k, t)| match t {
                ColType::Text => format!("\"{k}\" COLLATE \"C\""),
                _ => format!("\"{k}\""),
            })
            .collect();
        format!(
            "SELECT {} FROM \"{}\" ORDER BY {}",
            self.pg_columns(),
            self.name,
            order.join(", ")
        )
    }
}

/// What the source's preflight found.
struct Source {
    conn: Connection,
    /// table → SQLite columns (name, primary-key position; 0 = not in the key).
    columns: BTreeMap<String, Vec<(String, i64)>>,
    /// AUTOINCREMENT high-water marks (`sqlite_sequence`).
    sequences: BTreeMap<String, i64>,
}

fn source_err(path: &Path) -> impl Fn(String) -> CopyError + '_ {
    move |reason| CopyError::Source {
        path: path.display().to_string(),
        reason,
    }
}

/// Open the source exclusively (refusing it while in use), check its version and tables.
fn open_source(path: &Path) -> CopyResult<Source> {
    let err = source_err(path);
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(err("not a file".into()));
    }
    // Never created, never opened by URI: exactly this existing file.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| err(format!("open: {e}")))?;
    conn.busy_timeout(std::time::Duration::ZERO)
        .map_err(|e| err(format!("busy_timeout: {e}")))?;
    // EXCLUSIVE locking mode before the first access: the first transaction takes the file's
    // exclusive lock and keeps it, which fails at once while any other connection has the
    // database open (in WAL mode every open connection holds a shared lock), and keeps a hub
    // from opening it until we are done.
    let _: String = conn
        .query_row("PRAGMA locking_mode = EXCLUSIVE", [], |r| r.get(0))
        .map_err(|e| err(format!("locking_mode: {e}")))?;
    match conn.execute_batch("BEGIN EXCLUSIVE") {
        Ok(()) => {}
        Err(rusqlite::Error::SqliteFailure(f, _))
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            return Err(CopyError::SourceInUse {
                path: path.display().to_string(),
            })
        }
        Err(e) => return Err(err(format!("lock: {e}"))),
    }
    conn.execute_batch("PRAGMA query_only = ON")
        .map_err(|e| err(format!("query_only: {e}")))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| err(format!("read schema version: {e}")))?;
    if usize::try_from(version).ok() != Some(SQLITE_MIGRATIONS.len()) {
        return Err(CopyError::SourceVersion {
            path: path.display().to_string(),
            found: version,
            known: SQLITE_MIGRATIONS.len(),
        });
    }
    let tables = sqlite_tables(&conn).map_err(|e| err(format!("list tables: {e}")))?;
    let expected: BTreeSet<String> = TABLES
        .iter()
        .copied()
        .chain(DERIVED.iter().map(|d| d.0))
        .map(str::to_string)
        .collect();
    if tables != expected {
        return Err(CopyError::Schema(format!(
            "the SQLite store's tables are not this build's: unexpected {:?}, missing {:?}",
            tables.difference(&expected).collect::<Vec<_>>(),
            expected.difference(&tables).collect::<Vec<_>>()
        )));
    }
    let mut columns = BTreeMap::new();
    for table in TABLES {
        let mut stmt = conn
            .prepare(&format!("PRAGMA table_info(\"{table}\")"))
            .map_err(|e| err(format!("table_info {table}: {e}")))?;
        let cols = stmt
            .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(5)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| err(format!("table_info {table}: {e}")))?;
        columns.insert(table.to_string(), cols);
    }
    let mut sequences = BTreeMap::new();
    {
        let mut stmt = conn
            .prepare("SELECT name, seq FROM sqlite_sequence")
            .map_err(|e| err(format!("read sqlite_sequence: {e}")))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| err(format!("read sqlite_sequence: {e}")))?;
        sequences.extend(rows);
    }
    Ok(Source {
        conn,
        columns,
        sequences,
    })
}

/// The store tables of a SQLite database (SQLite's own `sqlite_*` left out).
pub(crate) fn sqlite_tables(conn: &Connection) -> rusqlite::Result<BTreeSet<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

/// One SQLite value as the PostgreSQL column's type; anything else is refused, never coerced.
fn convert(value: rusqlite::types::ValueRef<'_>, ty: ColType) -> std::result::Result<Cell, String> {
    use rusqlite::types::ValueRef as V;
    match (ty, value) {
        (ColType::Int, V::Null) => Ok(Cell::Int(None)),
        (ColType::Int, V::Integer(i)) => Ok(Cell::Int(Some(i))),
        (ColType::Real, V::Null) => Ok(Cell::Real(None)),
        (ColType::Real, V::Real(f)) => Ok(Cell::Real(Some(f))),
        // REAL affinity stores a whole number as an integer when it fits.
        (ColType::Real, V::Integer(i)) => Ok(Cell::Real(Some(i as f64))),
        (ColType::Text, V::Null) => Ok(Cell::Text(None)),
        (ColType::Text, V::Text(t)) => std::str::from_utf8(t)
            .map(|s| Cell::Text(Some(s.to_owned())))
            .map_err(|e| format!("text is not UTF-8: {e}")),
        (ty, v) => Err(format!(
            "a {:?} value where PostgreSQL has {ty:?}",
            v.data_type()
        )),
    }
}

/// What the SQLite reader thread sends for each table, in plan order.
enum Chunk {
    Rows(Vec<Vec<Cell>>),
    End { rows: u64, hash: String },
    Failed(CopyError),
}

/// Read every planned table in key order, hashing as it goes, into `out`; then roll back the
/// read transaction (nothing was written) and close the source.
fn read_source(
    path: PathBuf,
    conn: Connection,
    plans: Vec<TablePlan>,
    out: tokio::sync::mpsc::Sender<Chunk>,
) {
    let err = |reason: String| CopyError::Source {
        path: path.display().to_string(),
        reason,
    };
    for plan in &plans {
        let result = (|| -> CopyResult<bool> {
            let mut stmt = conn
                .prepare(&plan.sqlite_select())
                .map_err(|e| err(format!("read {}: {e}", plan.name)))?;
            let mut rows = stmt
                .query([])
                .map_err(|e| err(format!("read {}: {e}", plan.name)))?;
            let mut hasher = RowHasher::default();
            let mut chunk = Vec::with_capacity(CHUNK);
            while let Some(row) = rows
                .next()
                .map_err(|e| err(format!("read {}: {e}", plan.name)))?
            {
                let mut cells = Vec::with_capacity(plan.columns.len());
                for (i, (name, _, ty)) in plan.columns.iter().enumerate() {
                    let value = row
                        .get_ref(i)
                        .map_err(|e| err(format!("read {}.{name}: {e}", plan.name)))?;
                    let cell = convert(value, *ty).map_err(|e| {
                        err(format!(
                            "{}.{name}, row {}: {e}",
                            plan.name,
                            hasher.rows + 1
                        ))
                    })?;
                    cells.push(cell);
                }
                hasher.add(&cells);
                chunk.push(cells);
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    if out.blocking_send(Chunk::Rows(full)).is_err() {
                        return Ok(false);
                    }
                }
            }
            if !chunk.is_empty() && out.blocking_send(Chunk::Rows(chunk)).is_err() {
                return Ok(false);
            }
            let (rows, hash) = hasher.finish();
            Ok(out.blocking_send(Chunk::End { rows, hash }).is_ok())
        })();
        match result {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let _ = out.blocking_send(Chunk::Failed(e));
                break;
            }
        }
    }
    let _ = conn.execute_batch("ROLLBACK");
    drop(conn);
}

fn target_err(what: &str) -> impl FnOnce(tokio_postgres::Error) -> CopyError + '_ {
    move |e| {
        let detail = match e.as_db_error() {
            Some(d) => format!("{} (SQLSTATE {})", d.message(), d.code().code()),
            None => e.to_string(),
        };
        CopyError::Target(format!("{what}: {detail}"))
    }
}

/// Build each table's plan from both sides' columns; any difference beyond [`IMPLICIT`] is a
/// schema error.
async fn plan_tables(tx: &Transaction<'_>, source: &Source) -> CopyResult<Vec<TablePlan>> {
    let mut plans = Vec::with_capacity(TABLES.len());
    for &table in TABLES {
        let rows = tx
            .query(
                "SELECT column_name::text, data_type::text, is_identity::text
                 FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1",
                &[&table],
            )
            .await
            .map_err(target_err("read the target's columns"))?;
        let mut pg: BTreeMap<String, (ColType, bool)> = BTreeMap::new();
        for r in &rows {
            let name: String = r.try_get(0).map_err(target_err("read a column name"))?;
            let data_type: String = r.try_get(1).map_err(target_err("read a column type"))?;
            let identity: String = r.try_get(2).map_err(target_err("read a column"))?;
            let ty = ColType::from_pg(&data_type).ok_or_else(|| {
                CopyError::Schema(format!("{table}.{name} has type {data_type} in the target"))
            })?;
            pg.insert(name, (ty, identity == "YES"));
        }
        if pg.is_empty() {
            return Err(CopyError::Schema(format!(
                "the target has no table {table}"
            )));
        }
        let sqlite_cols = source.columns.get(table).cloned().unwrap_or_default();
        let mut columns = Vec::new();
        let mut key: Vec<(i64, String, ColType)> = Vec::new();
        for (name, pk) in &sqlite_cols {
            let (ty, _) = pg.get(name).copied().ok_or_else(|| {
                CopyError::Schema(format!("{table}.{name} is missing from the target"))
            })?;
            columns.push((name.clone(), format!("\"{name}\""), ty));
            if *pk > 0 {
                key.push((*pk, name.clone(), ty));
            }
        }
        for (t, name, expr) in IMPLICIT {
            if *t == table {
                let (ty, _) = pg.get(*name).copied().ok_or_else(|| {
                    CopyError::Schema(format!("{table}.{name} is missing from the target"))
                })?;
                columns.push(((*name).to_string(), (*expr).to_string(), ty));
            }
        }
        let covered: BTreeSet<&str> = columns.iter().map(|c| c.0.as_str()).collect();
        if let Some(extra) = pg.keys().find(|c| !covered.contains(c.as_str())) {
            return Err(CopyError::Schema(format!(
                "{table}.{extra} exists in the target but not in the SQLite store"
            )));
        }
        if key.is_empty() {
            return Err(CopyError::Schema(format!("{table} has no primary key")));
        }
        key.sort_by_key(|k| k.0);
        let identity = pg
            .iter()
            .find(|(_, (_, identity))| *identity)
            .map(|(name, _)| name.clone());
        plans.push(TablePlan {
            name: table,
            columns,
            key: key.into_iter().map(|(_, n, t)| (n, t)).collect(),
            identity,
        });
    }
    Ok(plans)
}

/// A table's rows as PostgreSQL holds them (inside `tx`), counted and hashed in key order.
async fn hash_target(tx: &Transaction<'_>, plan: &TablePlan) -> CopyResult<(u64, String)> {
    let what = format!("read back {}", plan.name);
    let stmt = tx
        .prepare(&plan.pg_select())
        .await
        .map_err(target_err(&what))?;
    let portal = tx.bind(&stmt, &[]).await.map_err(target_err(&what))?;
    let mut hasher = RowHasher::default();
    loop {
        let rows = tx
            .query_portal(&portal, CHUNK as i32)
            .await
            .map_err(target_err(&what))?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let mut cells = Vec::with_capacity(plan.columns.len());
            for (i, (_, _, ty)) in plan.columns.iter().enumerate() {
                let cell = match ty {
                    ColType::Int => row.try_get(i).map(Cell::Int),
                    ColType::Real => row.try_get(i).map(Cell::Real),
                    ColType::Text => row.try_get(i).map(Cell::Text),
                }
                .map_err(target_err(&what))?;
                cells.push(cell);
            }
            hasher.add(&cells);
        }
    }
    Ok(hasher.finish())
}

/// Copy the SQLite store at `source` into the PostgreSQL database at `url` (schema
/// `options.schema`, else the server's default), verified; see the module docs. The target is
/// migrated first (as any [`PgStore::connect`] does); everything else happens in one
/// transaction that commits only when every table's count and hash agree.
pub async fn sqlite_to_postgres(
    source: &Path,
    url: &str,
    options: &PgOptions,
) -> CopyResult<CopyReport> {
    let path = source.to_path_buf();
    let src = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || open_source(&path))
            .await
            .map_err(|e| CopyError::Source {
                path: source.display().to_string(),
                reason: format!("reader task: {e}"),
            })??
    };

    // Migrate the target (creating its schema when one is named), then work on a plain
    // connection of our own.
    let store = PgStore::connect(
        url,
        PgOptions {
            pool_size: 1,
            schema: options.schema.clone(),
            ..PgOptions::default()
        },
    )
    .await
    .map_err(|e| CopyError::Target(e.to_string()))?;
    store.close();
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| CopyError::Target(format!("bad url: {e}")))?;
    if let Some(schema) = &options.schema {
        // `PgStore::connect` accepted it: a plain identifier.
        config.options(format!("-c search_path={schema}"));
    }
    let (mut client, connection) = config.connect(NoTls).await.map_err(target_err("connect"))?;
    let driver = tokio::spawn(connection);
    let result = copy_in_tx(&mut client, path, src).await;
    drop(client);
    let _ = driver.await;
    result
}

async fn copy_in_tx(
    client: &mut tokio_postgres::Client,
    path: PathBuf,
    src: Source,
) -> CopyResult<CopyReport> {
    let tx = client
        .transaction()
        .await
        .map_err(target_err("begin the copy"))?;
    tx.batch_execute("SET LOCAL lock_timeout = '10s'")
        .await
        .map_err(target_err("set lock_timeout"))?;
    let names: Vec<String> = TABLES
        .iter()
        .copied()
        .chain(DERIVED.iter().map(|d| d.1))
        .map(|t| format!("\"{t}\""))
        .collect();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        names.join(", ")
    ))
    .await
    .map_err(target_err(
        "lock the target's tables (is a hub using this database?)",
    ))?;
    for table in TABLES {
        let rows: i64 = tx
            .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(target_err("count the target's rows"))?;
        if rows > 0 {
            return Err(CopyError::TargetNotEmpty {
                table: (*table).to_string(),
                rows,
            });
        }
    }
    let plans = plan_tables(&tx, &src).await?;
    let sequences = src.sequences;
    let path_text = path.display().to_string();

    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Chunk>(4);
    let reader = {
        let plans = plans.clone();
        let conn = src.conn;
        std::thread::Builder::new()
            .name("concord-store-copy".into())
            .spawn(move || read_source(path, conn, plans, sender))
            .map_err(|e| CopyError::Target(format!("start the reader thread: {e}")))?
    };

    let source_path = path_text;
    let mut sources = Vec::with_capacity(plans.len());
    let copied = async {
        for plan in &plans {
            let what = format!("copy {}", plan.name);
            let sink = tx
                .copy_in(&format!(
                    "COPY \"{}\" ({}) FROM STDIN (FORMAT binary)",
                    plan.name,
                    plan.pg_columns()
                ))
                .await
                .map_err(target_err(&what))?;
            let types: Vec<Type> = plan.columns.iter().map(|c| c.2.pg_type()).collect();
            let writer = BinaryCopyInWriter::new(sink, &types);
            let mut writer = std::pin::pin!(writer);
            let end = loop {
                match receiver.recv().await {
                    Some(Chunk::Rows(rows)) => {
                        for row in &rows {
                            let values: Vec<&(dyn ToSql + Sync)> =
                                row.iter().map(Cell::as_sql).collect();
                            writer
                                .as_mut()
                                .write(&values)
                                .await
                                .map_err(target_err(&what))?;
                        }
                    }
                    Some(Chunk::End { rows, hash }) => break (rows, hash),
                    Some(Chunk::Failed(e)) => return Err(e),
                    None => {
                        return Err(CopyError::Source {
                            path: source_path.clone(),
                            reason: "the reader stopped early".into(),
                        })
                    }
                }
            };
            writer.as_mut().finish().await.map_err(target_err(&what))?;
            sources.push(end);
        }
        Ok(())
    }
    .await;
    // Stop the reader (if still sending) and wait for it to roll back and close the source.
    drop(receiver);
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    copied?;

    // The stats counters from the copied rows (see [`DERIVED`]).
    tx.batch_execute(&crate::postgres::stats::rebuild_sql())
        .await
        .map_err(target_err("rebuild the stats counters"))?;

    // Identity sequences past every copied id and every AUTOINCREMENT id SQLite handed out.
    for plan in &plans {
        let Some(column) = &plan.identity else {
            continue;
        };
        let copied_max: i64 = tx
            .query_one(
                &format!(
                    "SELECT COALESCE(MAX(\"{column}\"), 0)::BIGINT FROM \"{}\"",
                    plan.name
                ),
                &[],
            )
            .await
            .and_then(|r| r.try_get(0))
            .map_err(target_err("read an identity maximum"))?;
        let implicit_rowid = IMPLICIT
            .iter()
            .any(|(t, c, _)| *t == plan.name && c == column);
        let high = if implicit_rowid {
            copied_max
        } else {
            copied_max.max(sequences.get(plan.name).copied().unwrap_or(0))
        };
        tx.execute(
            "SELECT setval(pg_get_serial_sequence($1, $2), GREATEST($3::BIGINT, 1), $3::BIGINT > 0)",
            &[&plan.name, column, &high],
        )
        .await
        .map_err(target_err("set an identity sequence"))?;
    }

    // Claim tokens and dirty generations: above every one stored and above the clock in µs,
    // as SQLite's writer seeds its counter (`sqlite/open.rs`).
    let stored: i64 = tx
        .query_one(
            "SELECT GREATEST(
                 COALESCE((SELECT MAX(token) FROM outbox), 0),
                 COALESCE((SELECT MAX(generation) FROM ats_dirty), 0))::BIGINT",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(target_err("read the stored tokens"))?;
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2))
        .unwrap_or(0);
    let tokens_above = stored.max(clock);
    tx.execute(
        "SELECT setval('concord_tokens', $1::BIGINT, true)",
        &[&tokens_above.max(1)],
    )
    .await
    .map_err(target_err("set concord_tokens"))?;

    // Verify: every table read back, counted and hashed inside this transaction.
    let mut report = CopyReport {
        tables: Vec::with_capacity(plans.len()),
        tokens_above,
    };
    for (plan, (source_rows, source_hash)) in plans.iter().zip(sources) {
        let (target_rows, target_hash) = hash_target(&tx, plan).await?;
        report.tables.push(TableCheck {
            table: plan.name.to_string(),
            source_rows,
            target_rows,
            source_hash,
            target_hash,
        });
    }
    if !report.all_equal() || report.tables.len() != TABLES.len() {
        let tables: Vec<&str> = report
            .tables
            .iter()
            .filter(|t| !t.equal())
            .map(|t| t.table.as_str())
            .collect();
        tx.rollback()
            .await
            .map_err(target_err("roll back the copy"))?;
        return Err(CopyError::Mismatch {
            tables: tables.join(", "),
            report,
        });
    }
    tx.commit().await.map_err(target_err("commit the copy"))?;
    Ok(report)
}

#[cfg(test)]
mod tests;

//! Connection set-up and the versioned schema of the SQLite store.
//!
//! Migrations are numbered by their position in [`MIGRATIONS`] and tracked with
//! `PRAGMA user_version`: each runs once, in its own transaction together with the version bump,
//! so a crash mid-migration leaves the previous version intact. This module must never edit or
//! reorder a released migration — only append new ones.

use rusqlite::Connection;
use std::time::Duration;

/// How long a connection waits on a lock held by another connection before failing. Within one
/// process only the writer thread writes, so waits come from a checkpoint or an external tool
/// (the CLI's `sqlite3` inspection) and are short.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, one entry per version. Index `i` brings the database from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the sync path.
    r#"
    CREATE TABLE cursors (
        endpoint   TEXT NOT NULL,
        stream     TEXT NOT NULL,
        value      TEXT NOT NULL,
        PRIMARY KEY (endpoint, stream)
    ) WITHOUT ROWID;

    CREATE TABLE journal (
        id          INTEGER PRIMARY KEY,
        endpoint    TEXT NOT NULL,
        kind        TEXT NOT NULL,
        external_id TEXT NOT NULL,
        version     TEXT NOT NULL,
        payload     TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        status      TEXT NOT NULL,
        note        TEXT,
        key         TEXT
    );
    -- pending_journal (status = 'pending' ORDER BY id) and the status counts of stats.
    CREATE INDEX journal_status ON journal (status, id);
    -- journal(endpoint, …) and journal(kind, key, …) listings, newest first.
    CREATE INDEX journal_endpoint ON journal (endpoint, id);
    CREATE INDEX journal_kind_key ON journal (kind, key, id);

    -- The last version journaled per record: the inbox dedupe.
    CREATE TABLE inbox_last (
        endpoint    TEXT NOT NULL,
        kind        TEXT NOT NULL,
        external_id TEXT NOT NULL,
        version     TEXT NOT NULL,
        PRIMARY KEY (endpoint, kind, external_id)
    ) WITHOUT ROWID;

    CREATE TABLE entities (
        kind       TEXT NOT NULL,
        key        TEXT NOT NULL,
        state      TEXT NOT NULL,
        hash       TEXT NOT NULL,
        versions   TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID;

    -- One external id per key and one key per external id, at each endpoint.
    CREATE TABLE xref (
        endpoint    TEXT NOT NULL,
        kind        TEXT NOT NULL,
        external_id TEXT NOT NULL,
        key         TEXT NOT NULL,
        PRIMARY KEY (endpoint, kind, external_id),
        UNIQUE (endpoint, kind, key)
    ) WITHOUT ROWID;

    CREATE TABLE hashes (
        dest    TEXT NOT NULL,
        kind    TEXT NOT NULL,
        key     TEXT NOT NULL,
        planned TEXT,
        written TEXT,
        PRIMARY KEY (dest, kind, key)
    ) WITHOUT ROWID;

    -- AUTOINCREMENT: ids are the enqueue order and must never be reused, even after the newest
    -- rows are deleted, or a new item could slot in before an older unfinished one.
    CREATE TABLE outbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        dest        TEXT NOT NULL,
        kind        TEXT NOT NULL,
        key         TEXT NOT NULL,
        op          TEXT NOT NULL,
        payload     TEXT NOT NULL,
        hash        TEXT NOT NULL,
        flow        TEXT NOT NULL,
        journal_id  INTEGER,
        captured_at INTEGER NOT NULL,
        state       TEXT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        next_at     INTEGER NOT NULL,
        last_error  TEXT,
        token       INTEGER,
        lease_until INTEGER,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        coalesce    INTEGER NOT NULL
    );
    -- claim: a destination's pending items in id order; items(); per-state counts of stats.
    CREATE INDEX outbox_dest_state ON outbox (dest, state, id);
    -- items(None, state): all destinations, oldest first.
    CREATE INDEX outbox_state ON outbox (state, id);
    -- The unfinished items of one key: claim's ordering checks and coalescing. Partial, so done
    -- rows (kept for history) never slow the hot path down.
    CREATE INDEX outbox_open_key ON outbox (dest, kind, key, id)
        WHERE state IN ('pending', 'inflight', 'parked');
    -- recover_expired.
    CREATE INDEX outbox_lease ON outbox (lease_until) WHERE state = 'inflight';

    -- Dependencies a parked item still waits for: (kind, key) unknown at dest.
    CREATE TABLE outbox_deps (
        item_id INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
        seq     INTEGER NOT NULL,
        dest    TEXT NOT NULL,
        kind    TEXT NOT NULL,
        key     TEXT NOT NULL,
        PRIMARY KEY (item_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX outbox_deps_target ON outbox_deps (dest, kind, key);

    CREATE TABLE dead_letters (
        id          INTEGER PRIMARY KEY,
        direction   TEXT NOT NULL,
        endpoint    TEXT NOT NULL,
        kind        TEXT NOT NULL,
        key         TEXT NOT NULL,
        op          TEXT,
        flow        TEXT,
        payload     TEXT NOT NULL,
        reason      TEXT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        journal_id  INTEGER,
        item_id     INTEGER,
        state       TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE INDEX dead_letters_state ON dead_letters (state, id);

    CREATE TABLE audit (
        id       INTEGER PRIMARY KEY,
        at       INTEGER NOT NULL,
        event    TEXT NOT NULL,
        endpoint TEXT,
        kind     TEXT,
        key      TEXT,
        detail   TEXT NOT NULL
    );
    "#,
    // 2: the stock ledger and reservations (design §5).
    r#"
    -- One row per (SKU, location): the ERP's figures plus the hub's own `held`/`backordered`,
    -- which always equal the sum of the unreleased reservation lines there.
    CREATE TABLE stock_levels (
        sku         TEXT NOT NULL,
        location    TEXT NOT NULL,
        on_hand     INTEGER NOT NULL,
        committed   INTEGER NOT NULL,
        held        INTEGER NOT NULL,
        backordered INTEGER NOT NULL,
        incoming    TEXT NOT NULL,
        version     TEXT,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (sku, location)
    ) WITHOUT ROWID;

    -- A rowid table: the rowid breaks ties of `created_at` in the newest-first listing.
    CREATE TABLE reservations (
        id               TEXT PRIMARY KEY,
        channel          TEXT NOT NULL,
        client_key       TEXT NOT NULL,
        state            TEXT NOT NULL,
        source           TEXT NOT NULL,
        order_key        TEXT,
        created_at       INTEGER NOT NULL,
        expires_at       INTEGER,
        committed_at     INTEGER,
        accepted_at      INTEGER,
        accepted_version TEXT,
        ended_at         INTEGER,
        UNIQUE (channel, client_key)
    );
    -- expire_reservations / next_expiry: only held reservations expire.
    CREATE INDEX reservations_expiry ON reservations (expires_at) WHERE state = 'held';
    -- A delivered order marks its reservations accepted.
    CREATE INDEX reservations_order ON reservations (order_key, source)
        WHERE order_key IS NOT NULL;
    -- reservations(state, …) newest first.
    CREATE INDEX reservations_state ON reservations (state, created_at);
    CREATE INDEX reservations_created ON reservations (created_at);

    CREATE TABLE reservation_lines (
        reservation_id TEXT NOT NULL REFERENCES reservations (id),
        seq            INTEGER NOT NULL,
        sku            TEXT NOT NULL,
        location       TEXT NOT NULL,
        quantity       INTEGER NOT NULL,
        backorder      INTEGER NOT NULL,
        released_at    INTEGER,
        PRIMARY KEY (reservation_id, seq)
    ) WITHOUT ROWID;
    -- The lines a ledger update may release: unreleased ones at one position. Partial, so the
    -- history of released lines never slows the hot path down.
    CREATE INDEX reservation_lines_open ON reservation_lines (sku, location)
        WHERE released_at IS NULL;
    -- reservations(…, sku, …): reservations with a line of a SKU.
    CREATE INDEX reservation_lines_sku ON reservation_lines (sku, reservation_id);

    -- SKUs whose channel figures must be recomputed. `generation` changes at every mark, so a
    -- planner clears only the marks it has seen.
    CREATE TABLE ats_dirty (
        sku        TEXT PRIMARY KEY,
        generation INTEGER NOT NULL,
        marked_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX ats_dirty_marked ON ats_dirty (marked_at, sku);
    "#,
    // 3: order acceptances remembered on their own, so that a reservation committed after its
    //    order already reached the ERP still learns the acceptance (and its watermark).
    r#"
    CREATE TABLE order_acceptances (
        order_key   TEXT NOT NULL,
        source      TEXT NOT NULL,
        accepted_at INTEGER NOT NULL,
        version     TEXT,
        PRIMARY KEY (order_key, source)
    ) WITHOUT ROWID;
    "#,
    // 4: alert episodes: one row per stretch of time a rule's condition held for a subject, with
    //    whether its firing and resolved notifications were delivered (dedupe across restarts).
    r#"
    CREATE TABLE alert_episodes (
        id                INTEGER PRIMARY KEY,
        rule              TEXT NOT NULL,
        subject           TEXT NOT NULL,
        since             INTEGER NOT NULL,
        resolved_at       INTEGER,
        value             REAL NOT NULL,
        summary           TEXT NOT NULL,
        notified_firing   INTEGER NOT NULL DEFAULT 0,
        notified_resolved INTEGER NOT NULL DEFAULT 0,
        updated_at        INTEGER NOT NULL
    );
    -- At most one open episode per (rule, subject).
    CREATE UNIQUE INDEX alert_open ON alert_episodes (rule, subject) WHERE resolved_at IS NULL;
    CREATE INDEX alert_unnotified ON alert_episodes (id)
        WHERE notified_firing = 0 OR (resolved_at IS NOT NULL AND notified_resolved = 0);
    "#,
    // 5: flows paused by an operator (admin API): `claim` and `next_due` skip their items.
    r#"
    CREATE TABLE paused_flows (
        flow      TEXT PRIMARY KEY,
        paused_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 6: the order lifecycle (issue 6): one row per order (state + the facts it was derived from),
    // every transition applied or refused, the order-scoped records seen per order, and every
    // delivery attempt (written by `settle`).
    r#"
    CREATE TABLE order_lifecycle (
        key         TEXT PRIMARY KEY,
        channel     TEXT NOT NULL,
        state       TEXT NOT NULL,
        facts       TEXT NOT NULL,
        accepted_at INTEGER,
        updated_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- orders(state, …) in key order; order_counts.
    CREATE INDEX order_lifecycle_state ON order_lifecycle (state, key);

    CREATE TABLE order_events (
        id         INTEGER PRIMARY KEY,
        key        TEXT NOT NULL,
        at         INTEGER NOT NULL,
        from_state TEXT,
        to_state   TEXT NOT NULL,
        applied    INTEGER NOT NULL,
        event      TEXT NOT NULL,
        cause_kind TEXT,
        cause_key  TEXT,
        reason     TEXT,
        journal_id INTEGER
    );
    CREATE INDEX order_events_key ON order_events (key, id);

    CREATE TABLE order_children (
        order_key TEXT NOT NULL,
        kind      TEXT NOT NULL,
        key       TEXT NOT NULL,
        PRIMARY KEY (order_key, kind, key)
    ) WITHOUT ROWID;

    CREATE TABLE delivery_attempts (
        id      INTEGER PRIMARY KEY,
        item_id INTEGER NOT NULL,
        dest    TEXT NOT NULL,
        kind    TEXT NOT NULL,
        key     TEXT NOT NULL,
        op      TEXT NOT NULL,
        at      INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        error   TEXT
    );
    CREATE INDEX delivery_attempts_key ON delivery_attempts (kind, key, id);
    -- One order's dead letters (and its children's) for the order history.
    CREATE INDEX dead_letters_key ON dead_letters (kind, key);
    "#,
    // 7: retention (`retention.rs`) deletes delivery attempts by age without scanning the table.
    r#"
    CREATE INDEX delivery_attempts_at ON delivery_attempts (at);
    "#,
    // 8: ledger figures are integers, always. SQLite stores an integer sum that overflows as a
    // REAL without complaint, and a position whose `held` is a REAL can no longer be read: every
    // recomputation of available-to-sell fails. The ledger computes its figures in Rust with
    // checked arithmetic (`ledger.rs`); these triggers refuse a non-integer from any statement
    // that would still slip one through (the job fails and writes nothing).
    r#"
    CREATE TRIGGER stock_levels_integers_insert BEFORE INSERT ON stock_levels
    WHEN typeof(NEW.on_hand) <> 'integer' OR typeof(NEW.committed) <> 'integer'
      OR typeof(NEW.held) <> 'integer' OR typeof(NEW.backordered) <> 'integer'
    BEGIN SELECT RAISE(ABORT, 'stock_levels: a ledger figure is not an integer'); END;
    CREATE TRIGGER stock_levels_integers_update BEFORE UPDATE ON stock_levels
    WHEN typeof(NEW.on_hand) <> 'integer' OR typeof(NEW.committed) <> 'integer'
      OR typeof(NEW.held) <> 'integer' OR typeof(NEW.backordered) <> 'integer'
    BEGIN SELECT RAISE(ABORT, 'stock_levels: a ledger figure is not an integer'); END;
    CREATE TRIGGER reservation_lines_integers_insert BEFORE INSERT ON reservation_lines
    WHEN typeof(NEW.quantity) <> 'integer'
    BEGIN SELECT RAISE(ABORT, 'reservation_lines: a quantity is not an integer'); END;
    CREATE TRIGGER reservation_lines_integers_update BEFORE UPDATE ON reservation_lines
    WHEN typeof(NEW.quantity) <> 'integer'
    BEGIN SELECT RAISE(ABORT, 'reservation_lines: a quantity is not an integer'); END;
    "#,
    // 9: retention of the audit trail, delivered outbox items and the journal (`retention.rs`):
    //    by age without scanning, and "does anything still refer to this journal entry?" by
    //    index. The partial indexes cost nothing for the rows they leave out.
    r#"
    CREATE INDEX audit_at ON audit (at);
    CREATE INDEX journal_received ON journal (received_at);
    CREATE INDEX outbox_done ON outbox (updated_at) WHERE state = 'done';
    CREATE INDEX outbox_journal ON outbox (journal_id) WHERE journal_id IS NOT NULL;
    CREATE INDEX dead_letters_journal ON dead_letters (journal_id)
        WHERE journal_id IS NOT NULL AND state = 'open';
    "#,
    // 10: state a connector asks the engine to keep (an OAuth2 refresh token its provider
    // rotated), one value per endpoint; read back at start (`Connector::restore_state`).
    r#"
    CREATE TABLE connector_state (
        endpoint   TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 11: reconciliation runs (issue 16): counts to list, the engine's report as JSON.
    r#"
    CREATE TABLE reconcile_runs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at  INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        trigger     TEXT NOT NULL,
        heal        INTEGER NOT NULL,
        drifted     INTEGER NOT NULL,
        healed      INTEGER NOT NULL,
        errors      INTEGER NOT NULL,
        report      TEXT NOT NULL
    );
    "#,
    // 12: retention of reconciliation runs (`retention.rs`): by age without scanning.
    r#"
    CREATE INDEX reconcile_runs_finished ON reconcile_runs (finished_at);
    "#,
    // 13: dashboard sessions (`Store::create_session`): the hex SHA-256 of the session id
    //     (never the id), the admin token's name, expiry; expired rows deleted at each login.
    r#"
    CREATE TABLE admin_sessions (
        hash       TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);
    "#,
    // 14: maintained counters for `Store::stats` (issue 14): one row per (table, destination,
    //     state) with the number of rows there, kept exact by the triggers below in the same
    //     transaction as every insert, state change and delete (whoever writes: the store, a
    //     migration, an operator's `sqlite3`), so `stats` reads a handful of rows whatever the
    //     history. `dest` is '' for the journal (state = status) and dead letters. A row whose
    //     count reaches 0 stays (readers skip it). Backfilled here from the existing rows. The
    //     oldest unfinished item per destination is served by `outbox_open_captured` instead.
    //     SQLite has one writer, so a single row per group never contends.
    r#"
    CREATE TABLE stats_counts (
        tbl   TEXT NOT NULL,
        dest  TEXT NOT NULL,
        state TEXT NOT NULL,
        n     INTEGER NOT NULL,
        PRIMARY KEY (tbl, dest, state)
    ) WITHOUT ROWID;
    INSERT INTO stats_counts (tbl, dest, state, n)
        SELECT 'journal', '', status, COUNT(*) FROM journal GROUP BY status;
    INSERT INTO stats_counts (tbl, dest, state, n)
        SELECT 'outbox', dest, state, COUNT(*) FROM outbox GROUP BY dest, state;
    INSERT INTO stats_counts (tbl, dest, state, n)
        SELECT 'dead_letters', '', state, COUNT(*) FROM dead_letters GROUP BY state;

    CREATE TRIGGER stats_journal_insert AFTER INSERT ON journal BEGIN
        INSERT INTO stats_counts (tbl, dest, state, n) VALUES ('journal', '', NEW.status, 1)
            ON CONFLICT (tbl, dest, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER stats_journal_update AFTER UPDATE OF status ON journal
    WHEN OLD.status IS NOT NEW.status BEGIN
        UPDATE stats_counts SET n = n - 1
            WHERE tbl = 'journal' AND dest = '' AND state = OLD.status;
        INSERT INTO stats_counts (tbl, dest, state, n) VALUES ('journal', '', NEW.status, 1)
            ON CONFLICT (tbl, dest, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER stats_journal_delete AFTER DELETE ON journal BEGIN
        UPDATE stats_counts SET n = n - 1
            WHERE tbl = 'journal' AND dest = '' AND state = OLD.status;
    END;

    CREATE TRIGGER stats_outbox_insert AFTER INSERT ON outbox BEGIN
        INSERT INTO stats_counts (tbl, dest, state, n) VALUES ('outbox', NEW.dest, NEW.state, 1)
            ON CONFLICT (tbl, dest, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER stats_outbox_update AFTER UPDATE OF dest, state ON outbox
    WHEN OLD.dest IS NOT NEW.dest OR OLD.state IS NOT NEW.state BEGIN
        UPDATE stats_counts SET n = n - 1
            WHERE tbl = 'outbox' AND dest = OLD.dest AND state = OLD.state;
        INSERT INTO stats_counts (tbl, dest, state, n) VALUES ('outbox', NEW.dest, NEW.state, 1)
            ON CONFLICT (tbl, dest, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER stats_outbox_delete AFTER DELETE ON outbox BEGIN
        UPDATE stats_counts SET n = n - 1
            WHERE tbl = 'outbox' AND dest = OLD.dest AND state = OLD.state;
    END;

    CREATE TRIGGER stats_dead_letters_insert AFTER INSERT ON dead_letters BEGIN
        INSERT INTO stats_counts (tbl, dest, state, n) VALUES ('dead_letters', '', NEW.state, 1)
            ON CONFLICT (tbl, dest, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER stats_dead_letters_update AFTER UPDATE OF state ON dead_letters
    WHEN OLD.state IS NOT NEW.state BEGIN
        UPDATE stats_counts SET n = n - 1
            WHERE tbl = 'dead_letters' AND dest = '' AND state = OLD.state;
        INSERT INTO stats_counts (tbl, dest, state, n) VALUES ('dead_letters', '', NEW.state, 1)
            ON CONFLICT (tbl, dest, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER stats_dead_letters_delete AFTER DELETE ON dead_letters BEGIN
        UPDATE stats_counts SET n = n - 1
            WHERE tbl = 'dead_letters' AND dest = '' AND state = OLD.state;
    END;

    -- stats: the oldest unfinished item of one destination, one index seek (MIN over the
    -- index's leading entry), however many items are unfinished or done.
    CREATE INDEX outbox_open_captured ON outbox (dest, captured_at)
        WHERE state IN ('pending', 'inflight', 'parked');
    "#,
];

/// Settings every connection needs (writer and readers alike).
///
/// `synchronous` starts at NORMAL here, which is what readers keep (they never commit); the
/// write connection is then set to `[store] synchronous` by `SqliteStore::open_with`, FULL by
/// default. In WAL mode FULL fsyncs the WAL at every commit, so an acknowledged change survives
/// a power loss or an OS crash; NORMAL fsyncs only at checkpoints: committed transactions
/// survive a process crash or `kill -9` (the WAL is in the OS page cache and is replayed on the
/// next open), but a power loss can lose the last commits — changes already acknowledged to
/// their sender — though never corrupt the database. Group commit makes FULL's one fsync per
/// transaction cover a whole group of writes.
pub(crate) fn configure(conn: &Connection) -> Result<(), String> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| format!("busy_timeout: {e}"))?;
    // journal_mode answers with the mode actually set; WAL is persistent in the file.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| format!("journal_mode: {e}"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("journal_mode WAL refused (got {mode})"));
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;",
    )
    .map_err(|e| format!("synchronous/foreign_keys: {e}"))?;
    // Prepared statements are reused across group commits; the default cache (16) is too small
    // for the write path's ~40 distinct statements.
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

/// Apply every migration not yet applied. Returns the resulting version.
pub(crate) fn migrate(conn: &mut Connection) -> Result<usize, String> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| format!("read schema version: {e}"))?;
    let current = usize::try_from(current).map_err(|_| format!("bad schema version {current}"))?;
    if current > MIGRATIONS.len() {
        return Err(format!(
            "database schema version {current} is newer than this build knows ({})",
            MIGRATIONS.len()
        ));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = index + 1;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| format!("begin migration {version}: {e}"))?;
        tx.execute_batch(sql)
            .map_err(|e| format!("migration {version}: {e}"))?;
        // PRAGMA takes no bound parameters; `version` is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))
            .map_err(|e| format!("record schema version {version}: {e}"))?;
        tx.commit()
            .map_err(|e| format!("commit migration {version}: {e}"))?;
    }
    Ok(MIGRATIONS.len())
}

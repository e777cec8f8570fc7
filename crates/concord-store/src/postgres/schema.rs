//! The versioned schema of the PostgreSQL store and its one-time application.
//!
//! Tables, columns and indexes are SQLite's (`sqlite/schema.rs`), with the same names: INTEGER
//! becomes BIGINT (booleans stay 0/1 BIGINTs), REAL becomes DOUBLE PRECISION, an INTEGER PRIMARY
//! KEY becomes a `BIGINT GENERATED ALWAYS AS IDENTITY`; TEXT stays TEXT (JSON is TEXT, encoded by
//! the shared `crate::codec`), declared `COLLATE "C"`: compared and ordered bytewise as SQLite
//! does, whatever the database's locale, and those orders served by the indexes. Differences:
//! `reservations.row_seq` stands in for SQLite's rowid, and migration 12 adds the
//! `concord_tokens` sequence and the unique index that keeps one item in flight per key. The
//! column `outbox."coalesce"` must be quoted (a keyword).
//!
//! Migrations are numbered by their position in [`MIGRATIONS`] and recorded in
//! `schema_migrations`; they run under a transaction-scoped `pg_advisory_xact_lock`, so several
//! instances starting together apply each migration exactly once. This module must never edit
//! or reorder a released migration — only append new ones.

use super::codec::db;
use crate::{Result, StoreError};
use tokio_postgres::Client;

/// The schema, one entry per version. Index `i` brings the database from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the sync path.
    r#"
    CREATE TABLE cursors (
        endpoint   TEXT COLLATE "C" NOT NULL,
        stream     TEXT COLLATE "C" NOT NULL,
        value      TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (endpoint, stream)
    );

    CREATE TABLE journal (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        endpoint    TEXT COLLATE "C" NOT NULL,
        kind        TEXT COLLATE "C" NOT NULL,
        external_id TEXT COLLATE "C" NOT NULL,
        version     TEXT COLLATE "C" NOT NULL,
        payload     TEXT COLLATE "C" NOT NULL,
        received_at BIGINT NOT NULL,
        status      TEXT COLLATE "C" NOT NULL,
        note        TEXT COLLATE "C",
        key         TEXT COLLATE "C"
    );
    -- pending_journal (status = 'pending' ORDER BY id) and the status counts of stats.
    CREATE INDEX journal_status ON journal (status, id);
    -- journal(endpoint, …) and journal(kind, key, …) listings, newest first.
    CREATE INDEX journal_endpoint ON journal (endpoint, id);
    CREATE INDEX journal_kind_key ON journal (kind, key, id);

    -- The last version journaled per record: the inbox dedupe.
    CREATE TABLE inbox_last (
        endpoint    TEXT COLLATE "C" NOT NULL,
        kind        TEXT COLLATE "C" NOT NULL,
        external_id TEXT COLLATE "C" NOT NULL,
        version     TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (endpoint, kind, external_id)
    );

    CREATE TABLE entities (
        kind       TEXT COLLATE "C" NOT NULL,
        key        TEXT COLLATE "C" NOT NULL,
        state      TEXT COLLATE "C" NOT NULL,
        hash       TEXT COLLATE "C" NOT NULL,
        versions   TEXT COLLATE "C" NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (kind, key)
    );

    -- One external id per key and one key per external id, at each endpoint.
    CREATE TABLE xref (
        endpoint    TEXT COLLATE "C" NOT NULL,
        kind        TEXT COLLATE "C" NOT NULL,
        external_id TEXT COLLATE "C" NOT NULL,
        key         TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (endpoint, kind, external_id),
        UNIQUE (endpoint, kind, key)
    );

    CREATE TABLE hashes (
        dest    TEXT COLLATE "C" NOT NULL,
        kind    TEXT COLLATE "C" NOT NULL,
        key     TEXT COLLATE "C" NOT NULL,
        planned TEXT COLLATE "C",
        written TEXT COLLATE "C",
        PRIMARY KEY (dest, kind, key)
    );

    -- AUTOINCREMENT: ids are the enqueue order and must never be reused, even after the newest
    -- rows are deleted, or a new item could slot in before an older unfinished one.
    CREATE TABLE outbox (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        dest        TEXT COLLATE "C" NOT NULL,
        kind        TEXT COLLATE "C" NOT NULL,
        key         TEXT COLLATE "C" NOT NULL,
        op          TEXT COLLATE "C" NOT NULL,
        payload     TEXT COLLATE "C" NOT NULL,
        hash        TEXT COLLATE "C" NOT NULL,
        flow        TEXT COLLATE "C" NOT NULL,
        journal_id  BIGINT,
        captured_at BIGINT NOT NULL,
        state       TEXT COLLATE "C" NOT NULL,
        attempts    BIGINT NOT NULL DEFAULT 0,
        next_at     BIGINT NOT NULL,
        last_error  TEXT COLLATE "C",
        token       BIGINT,
        lease_until BIGINT,
        created_at  BIGINT NOT NULL,
        updated_at  BIGINT NOT NULL,
        "coalesce"  BIGINT NOT NULL
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
        item_id BIGINT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
        seq     BIGINT NOT NULL,
        dest    TEXT COLLATE "C" NOT NULL,
        kind    TEXT COLLATE "C" NOT NULL,
        key     TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (item_id, seq)
    );
    CREATE INDEX outbox_deps_target ON outbox_deps (dest, kind, key);

    CREATE TABLE dead_letters (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        direction   TEXT COLLATE "C" NOT NULL,
        endpoint    TEXT COLLATE "C" NOT NULL,
        kind        TEXT COLLATE "C" NOT NULL,
        key         TEXT COLLATE "C" NOT NULL,
        op          TEXT COLLATE "C",
        flow        TEXT COLLATE "C",
        payload     TEXT COLLATE "C" NOT NULL,
        reason      TEXT COLLATE "C" NOT NULL,
        attempts    BIGINT NOT NULL DEFAULT 0,
        journal_id  BIGINT,
        item_id     BIGINT,
        state       TEXT COLLATE "C" NOT NULL,
        created_at  BIGINT NOT NULL,
        updated_at  BIGINT NOT NULL
    );
    CREATE INDEX dead_letters_state ON dead_letters (state, id);

    CREATE TABLE audit (
        id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at       BIGINT NOT NULL,
        event    TEXT COLLATE "C" NOT NULL,
        endpoint TEXT COLLATE "C",
        kind     TEXT COLLATE "C",
        key      TEXT COLLATE "C",
        detail   TEXT COLLATE "C" NOT NULL
    );
    "#,
    // 2: the stock ledger and reservations (design §5).
    r#"
    -- One row per (SKU, location): the ERP's figures plus the hub's own `held`/`backordered`,
    -- which always equal the sum of the unreleased reservation lines there.
    CREATE TABLE stock_levels (
        sku         TEXT COLLATE "C" NOT NULL,
        location    TEXT COLLATE "C" NOT NULL,
        on_hand     BIGINT NOT NULL,
        committed   BIGINT NOT NULL,
        held        BIGINT NOT NULL,
        backordered BIGINT NOT NULL,
        incoming    TEXT COLLATE "C" NOT NULL,
        version     TEXT COLLATE "C",
        updated_at  BIGINT NOT NULL,
        PRIMARY KEY (sku, location)
    );

    -- `row_seq` stands in for SQLite's rowid: it breaks ties of `created_at` (the newest-first
    -- listing, an order's reservations oldest first).
    CREATE TABLE reservations (
        id               TEXT COLLATE "C" PRIMARY KEY,
        channel          TEXT COLLATE "C" NOT NULL,
        client_key       TEXT COLLATE "C" NOT NULL,
        state            TEXT COLLATE "C" NOT NULL,
        source           TEXT COLLATE "C" NOT NULL,
        order_key        TEXT COLLATE "C",
        created_at       BIGINT NOT NULL,
        expires_at       BIGINT,
        committed_at     BIGINT,
        accepted_at      BIGINT,
        accepted_version TEXT COLLATE "C",
        ended_at         BIGINT,
        row_seq          BIGINT GENERATED ALWAYS AS IDENTITY,
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
        reservation_id TEXT COLLATE "C" NOT NULL REFERENCES reservations (id),
        seq            BIGINT NOT NULL,
        sku            TEXT COLLATE "C" NOT NULL,
        location       TEXT COLLATE "C" NOT NULL,
        quantity       BIGINT NOT NULL,
        backorder      BIGINT NOT NULL,
        released_at    BIGINT,
        PRIMARY KEY (reservation_id, seq)
    );
    -- The lines a ledger update may release: unreleased ones at one position. Partial, so the
    -- history of released lines never slows the hot path down.
    CREATE INDEX reservation_lines_open ON reservation_lines (sku, location)
        WHERE released_at IS NULL;
    -- reservations(…, sku, …): reservations with a line of a SKU.
    CREATE INDEX reservation_lines_sku ON reservation_lines (sku, reservation_id);

    -- SKUs whose channel figures must be recomputed. `generation` changes at every mark, so a
    -- planner clears only the marks it has seen.
    CREATE TABLE ats_dirty (
        sku        TEXT COLLATE "C" PRIMARY KEY,
        generation BIGINT NOT NULL,
        marked_at  BIGINT NOT NULL
    );
    CREATE INDEX ats_dirty_marked ON ats_dirty (marked_at, sku);
    "#,
    // 3: order acceptances, remembered per (order, source).
    r#"
    CREATE TABLE order_acceptances (
        order_key   TEXT COLLATE "C" NOT NULL,
        source      TEXT COLLATE "C" NOT NULL,
        accepted_at BIGINT NOT NULL,
        version     TEXT COLLATE "C",
        PRIMARY KEY (order_key, source)
    );
    "#,
    // 4: alert episodes.
    r#"
    CREATE TABLE alert_episodes (
        id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        rule              TEXT COLLATE "C" NOT NULL,
        subject           TEXT COLLATE "C" NOT NULL,
        since             BIGINT NOT NULL,
        resolved_at       BIGINT,
        value             DOUBLE PRECISION NOT NULL,
        summary           TEXT COLLATE "C" NOT NULL,
        notified_firing   BIGINT NOT NULL DEFAULT 0,
        notified_resolved BIGINT NOT NULL DEFAULT 0,
        updated_at        BIGINT NOT NULL
    );
    -- At most one open episode per (rule, subject).
    CREATE UNIQUE INDEX alert_open ON alert_episodes (rule, subject) WHERE resolved_at IS NULL;
    CREATE INDEX alert_unnotified ON alert_episodes (id)
        WHERE notified_firing = 0 OR (resolved_at IS NOT NULL AND notified_resolved = 0);
    "#,
    // 5: flows paused by an operator.
    r#"
    CREATE TABLE paused_flows (
        flow      TEXT COLLATE "C" PRIMARY KEY,
        paused_at BIGINT NOT NULL
    );
    "#,
    // 6: the order lifecycle (issue 6): lifecycle rows, events, children, delivery attempts.
    r#"
    CREATE TABLE order_lifecycle (
        key         TEXT COLLATE "C" PRIMARY KEY,
        channel     TEXT COLLATE "C" NOT NULL,
        state       TEXT COLLATE "C" NOT NULL,
        facts       TEXT COLLATE "C" NOT NULL,
        accepted_at BIGINT,
        updated_at  BIGINT NOT NULL
    );
    -- orders(state, …) in key order; order_counts.
    CREATE INDEX order_lifecycle_state ON order_lifecycle (state, key);

    CREATE TABLE order_events (
        id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        key        TEXT COLLATE "C" NOT NULL,
        at         BIGINT NOT NULL,
        from_state TEXT COLLATE "C",
        to_state   TEXT COLLATE "C" NOT NULL,
        applied    BIGINT NOT NULL,
        event      TEXT COLLATE "C" NOT NULL,
        cause_kind TEXT COLLATE "C",
        cause_key  TEXT COLLATE "C",
        reason     TEXT COLLATE "C",
        journal_id BIGINT
    );
    CREATE INDEX order_events_key ON order_events (key, id);

    CREATE TABLE order_children (
        order_key TEXT COLLATE "C" NOT NULL,
        kind      TEXT COLLATE "C" NOT NULL,
        key       TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (order_key, kind, key)
    );

    CREATE TABLE delivery_attempts (
        id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        item_id BIGINT NOT NULL,
        dest    TEXT COLLATE "C" NOT NULL,
        kind    TEXT COLLATE "C" NOT NULL,
        key     TEXT COLLATE "C" NOT NULL,
        op      TEXT COLLATE "C" NOT NULL,
        at      BIGINT NOT NULL,
        outcome TEXT COLLATE "C" NOT NULL,
        error   TEXT COLLATE "C"
    );
    CREATE INDEX delivery_attempts_key ON delivery_attempts (kind, key, id);
    -- One order's dead letters (and its children's) for the order history.
    CREATE INDEX dead_letters_key ON dead_letters (kind, key);
    "#,
    // 7: retention deletes delivery attempts by age.
    r#"
    CREATE INDEX delivery_attempts_at ON delivery_attempts (at);
    "#,
    // 8: ledger figures are integers (a no-op here, see below).
    r#"
    -- Ledger figures are BIGINT columns here: PostgreSQL refuses a non-integer (and an
    -- overflowing sum) by type, so SQLite's guard triggers have nothing to add. Kept as a
    -- numbered no-op so both backends' migration numbers name the same change.
    SELECT 1;
    "#,
    // 9: retention indexes.
    r#"
    CREATE INDEX audit_at ON audit (at);
    CREATE INDEX journal_received ON journal (received_at);
    CREATE INDEX outbox_done ON outbox (updated_at) WHERE state = 'done';
    CREATE INDEX outbox_journal ON outbox (journal_id) WHERE journal_id IS NOT NULL;
    CREATE INDEX dead_letters_journal ON dead_letters (journal_id)
        WHERE journal_id IS NOT NULL AND state = 'open';
    "#,
    // 10: connector state.
    r#"
    CREATE TABLE connector_state (
        endpoint   TEXT COLLATE "C" PRIMARY KEY,
        value      TEXT COLLATE "C" NOT NULL,
        updated_at BIGINT NOT NULL
    );
    "#,
    // 11: reconciliation runs (issue 16).
    r#"
    CREATE TABLE reconcile_runs (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        started_at  BIGINT NOT NULL,
        finished_at BIGINT NOT NULL,
        trigger     TEXT COLLATE "C" NOT NULL,
        heal        BIGINT NOT NULL,
        drifted     BIGINT NOT NULL,
        healed      BIGINT NOT NULL,
        errors      BIGINT NOT NULL,
        report      TEXT COLLATE "C" NOT NULL
    );
    "#,
    // 12: (PostgreSQL only) the token sequence and the one-in-flight-per-key index.
    r#"
    -- PostgreSQL only. Claim tokens and dirty-SKU generations, never reused for the life of the
    -- database and shared by every instance (SQLite's writer keeps a counter instead).
    CREATE SEQUENCE concord_tokens AS BIGINT;
    -- At most one item in flight per (dest, kind, key), whatever several instances claim
    -- concurrently: the claim query keeps it, this index enforces it.
    CREATE UNIQUE INDEX outbox_one_inflight ON outbox (dest, kind, key) WHERE state = 'inflight';
    "#,
    // 13: reconciliation runs are pruned by age (SQLite's migration 12).
    r#"
    CREATE INDEX reconcile_runs_finished ON reconcile_runs (finished_at);
    "#,
    // 14: dashboard sessions, shared by every instance (SQLite's migration 13).
    r#"
    CREATE TABLE admin_sessions (
        hash       TEXT COLLATE "C" PRIMARY KEY,
        name       TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);
    "#,
    // 15: maintained counters for `Store::stats` (SQLite's migration 14), without a hot row:
    //     statement-level triggers with transition tables append one delta row per (table,
    //     destination, state) a statement changed — an INSERT only, so concurrent ingests and
    //     claims on several connections never wait for each other's counter (a single counter
    //     row would hold its row lock until commit and serialise them all). `stats` sums the
    //     deltas per group; `postgres/stats.rs` folds them into one row per group (retention,
    //     and `stats` when it summed too many), which is exact under concurrency: the fold
    //     deletes exactly the rows it re-adds. Backfilled here from the existing rows (one row
    //     per group). The triggers also fire for `COPY` and any operator's SQL. The oldest
    //     unfinished item per destination is served by `outbox_open_captured` instead.
    r#"
    CREATE TABLE stats_deltas (
        tbl   TEXT COLLATE "C" NOT NULL,
        dest  TEXT COLLATE "C" NOT NULL,
        state TEXT COLLATE "C" NOT NULL,
        n     BIGINT NOT NULL
    );
    INSERT INTO stats_deltas (tbl, dest, state, n)
        SELECT 'journal', '', status, COUNT(*) FROM journal GROUP BY status;
    INSERT INTO stats_deltas (tbl, dest, state, n)
        SELECT 'outbox', dest, state, COUNT(*) FROM outbox GROUP BY dest, state;
    INSERT INTO stats_deltas (tbl, dest, state, n)
        SELECT 'dead_letters', '', state, COUNT(*) FROM dead_letters GROUP BY state;

    CREATE FUNCTION stats_journal_delta() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO stats_deltas (tbl, dest, state, n)
                SELECT 'journal', ''::text COLLATE "C", status, COUNT(*) FROM new_rows GROUP BY 2, 3;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO stats_deltas (tbl, dest, state, n)
                SELECT 'journal', ''::text COLLATE "C", status, -COUNT(*) FROM old_rows GROUP BY 2, 3;
        ELSE
            INSERT INTO stats_deltas (tbl, dest, state, n)
                SELECT 'journal', d, s, SUM(n) FROM (
                    SELECT ''::text COLLATE "C" AS d, status AS s, -1 AS n FROM old_rows
                    UNION ALL
                    SELECT ''::text COLLATE "C", status, 1 FROM new_rows
                ) changed
                GROUP BY d, s HAVING SUM(n) <> 0;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER stats_journal_insert AFTER INSERT ON journal
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION stats_journal_delta();
    CREATE TRIGGER stats_journal_update AFTER UPDATE ON journal
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION stats_journal_delta();
    CREATE TRIGGER stats_journal_delete AFTER DELETE ON journal
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION stats_journal_delta();
    CREATE FUNCTION stats_outbox_delta() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO stats_deltas (tbl, dest, state, n)
                SELECT 'outbox', dest, state, COUNT(*) FROM new_rows GROUP BY 2, 3;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO stats_deltas (tbl, dest, state, n)
                SELECT 'outbox', dest, state, -COUNT(*) FROM old_rows GROUP BY 2, 3;
        ELSE
            INSERT INTO stats_deltas (tbl, dest, state, n)
                SELECT 'outbox', d, s, SUM(n) FROM (
                    SELECT dest AS d, state AS s, -1 AS n FROM old_rows
                    UNION ALL
                    SELECT dest, state, 1 FROM new_rows
                ) changed
                GROUP BY d, s HAVING SUM(n) <> 0;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER stats_outbox_insert AFTER INSERT ON outbox
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION stats_outbox_delta();
    CREATE TRIGGER stats_outbox_update AFTER UPDATE ON outbox
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION stats_outbox_delta();
    CREATE TRIGGER stats_outbox_delete AFTER DELETE ON outbox
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION stats_outbox_delta();
    CREATE FUNCTION stats_dead_letters_delta() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO stats_deltas (tbl, dest, state, n)
                SELECT 'dead_letters', ''::text COLLATE "C", state, COUNT(*) FROM new_rows GROUP BY 2, 3;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO stats_deltas (tbl, dest, state, n)
                SELECT 'dead_letters', ''::text COLLATE "C", state, -COUNT(*) FROM old_rows GROUP BY 2, 3;
        ELSE
            INSERT INTO stats_deltas (tbl, dest, state, n)
                SELECT 'dead_letters', d, s, SUM(n) FROM (
                    SELECT ''::text COLLATE "C" AS d, state AS s, -1 AS n FROM old_rows
                    UNION ALL
                    SELECT ''::text COLLATE "C", state, 1 FROM new_rows
                ) changed
                GROUP BY d, s HAVING SUM(n) <> 0;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER stats_dead_letters_insert AFTER INSERT ON dead_letters
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION stats_dead_letters_delta();
    CREATE TRIGGER stats_dead_letters_update AFTER UPDATE ON dead_letters
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION stats_dead_letters_delta();
    CREATE TRIGGER stats_dead_letters_delete AFTER DELETE ON dead_letters
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION stats_dead_letters_delta();

    -- stats: the oldest unfinished item of one destination, one index seek.
    CREATE INDEX outbox_open_captured ON outbox (dest, captured_at)
        WHERE state IN ('pending', 'inflight', 'parked');
    "#,
];

/// The advisory lock key of the migrations: one per schema, so that test schemas side by side
/// do not wait for each other, and instances on one schema serialize.
const LOCK_SQL: &str =
    "SELECT pg_advisory_xact_lock(hashtext('concord-migrations:' || current_schema()))";

/// Apply every migration not yet applied, in one transaction holding the migration lock.
/// Returns the resulting version.
pub(crate) async fn migrate(client: &mut Client) -> Result<usize> {
    let tx = client.transaction().await.map_err(db("begin migrations"))?;
    // `current_schema()` is NULL when no schema of the search path exists: say so clearly.
    let schema: Option<String> = tx
        .query_one("SELECT current_schema()", &[])
        .await
        .map_err(db("read current schema"))?
        .get(0);
    if schema.is_none() {
        return Err(StoreError::Open {
            path: "postgres".into(),
            reason: "no schema of the search path exists".into(),
        });
    }
    tx.execute(LOCK_SQL, &[])
        .await
        .map_err(db("take the migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(db("create schema_migrations"))?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(db("read schema version"))?
        .get(0);
    let current = usize::try_from(current).map_err(|_| StoreError::Open {
        path: "postgres".into(),
        reason: format!("bad schema version {current}"),
    })?;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Open {
            path: "postgres".into(),
            reason: format!(
                "database schema version {current} is newer than this build knows ({})",
                MIGRATIONS.len()
            ),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i64::try_from(index + 1).unwrap_or(i64::MAX);
        tx.batch_execute(sql).await.map_err(|e| StoreError::Open {
            path: "postgres".into(),
            reason: format!("migration {version}: {}", super::codec::describe(&e)),
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(db("record schema version"))?;
    }
    tx.commit().await.map_err(db("commit migrations"))?;
    Ok(MIGRATIONS.len())
}

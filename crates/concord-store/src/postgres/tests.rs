//! Unit tests of `postgres/mod.rs`: schema names, migrations, the transaction helper's retries, the write queue, a killed connection.

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

#[test]
fn only_plain_identifiers_name_a_schema() {
    for ok in ["concord", "concord_test_1", "_x"] {
        assert!(plain_identifier(ok), "{ok}");
    }
    for bad in [
        "",
        "1abc",
        "Concord",
        "a-b",
        "a;drop",
        "a b",
        &"x".repeat(64),
    ] {
        assert!(!plain_identifier(bad), "{bad}");
    }
}

#[test]
fn urls_are_checked_without_repeating_them() {
    for ok in [
        "postgres://concord:secret@db.internal:5432/concord",
        "postgresql://postgres@127.0.0.1/postgres",
    ] {
        assert_eq!(PgStore::check_url(ok), Ok(()), "{ok}");
    }
    for bad in [
        "mysql://u:hunter2@h/db",
        "postgres://u:hunter2@h:notaport/db",
        "postgres:///db",
        "/var/lib/concord.sqlite",
    ] {
        let reason = PgStore::check_url(bad).expect_err(bad);
        assert!(
            !reason.contains("hunter2") && !reason.contains(bad),
            "{reason}"
        );
    }
}

#[test]
fn backoff_stays_under_its_ceiling() {
    for attempt in 1..40 {
        let ceiling = BASE_BACKOFF
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(MAX_BACKOFF);
        for _ in 0..50 {
            assert!(backoff(attempt) <= ceiling, "attempt {attempt}");
        }
    }
}

/// The server under `CONCORD_TEST_POSTGRES_URL` with a fresh schema, or `None` (skipped
/// loudly; a failure under CI).
async fn store() -> Option<(PgStore, String, String)> {
    let Some(url) = std::env::var("CONCORD_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        concord_testkit::real::missing(
            "\n!!!!! SKIPPED a PostgreSQL store unit test: CONCORD_TEST_POSTGRES_URL is not set\n",
        );
        return None;
    };
    let schema = format!("concord_unit_{}_{}", std::process::id(), fastrand::u32(..));
    let store = PgStore::connect(
        &url,
        PgOptions {
            pool_size: 4,
            schema: Some(schema.clone()),
            ..PgOptions::default()
        },
    )
    .await
    .expect("connect");
    Some((store, url, schema))
}

async fn drop_schema(store: PgStore, schema: &str) {
    let conn = store.client().await.expect("client");
    conn.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .expect("drop schema");
}

async fn counter(store: &PgStore) -> i64 {
    let conn = store.client().await.expect("client");
    let row = conn
        .query_one(
            "SELECT value FROM connector_state WHERE endpoint = 'counter'",
            &[],
        )
        .await
        .expect("read counter");
    row.get::<_, String>(0).parse().expect("a number")
}

/// With every connection in use, a write inside `admission::fail_fast` is refused with
/// `Busy` and writes nothing; outside it the write waits for a connection and commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_refuses_fail_fast_writes_and_holds_the_others() {
    let Some((store, url, schema)) = store().await else {
        return;
    };
    drop(store);
    let store = Arc::new(
        PgStore::connect(
            &url,
            PgOptions {
                pool_size: 1,
                schema: Some(schema.clone()),
                // No waiting room: a write that would wait for a connection is refused.
                write_queue: 0,
            },
        )
        .await
        .expect("connect"),
    );
    let event = |at| crate::AuditEvent {
        at,
        event: "test".into(),
        endpoint: None,
        kind: None,
        key: None,
        detail: serde_json::json!({}),
    };
    let held = store.client().await.expect("the only connection");
    let refused = crate::admission::fail_fast(store.record_audit(vec![event(1)])).await;
    assert!(matches!(refused, Err(StoreError::Busy)), "{refused:?}");
    let waiting = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.record_audit(vec![event(2)]).await })
    };
    drop(held);
    waiting
        .await
        .expect("task")
        .expect("the waiting write commits");
    let log = store.audit_log(10).await.expect("audit log");
    assert_eq!(
        log.iter().map(|a| a.event.at).collect::<Vec<_>>(),
        [2],
        "only the write that waited is stored"
    );
    match Arc::try_unwrap(store) {
        Ok(store) => drop_schema(store, &schema).await,
        Err(_) => panic!("store still shared"),
    }
}

/// A pooled connection the server killed is the store unavailable at worst (never an
/// error that blames what was written), and the next call runs on a fresh connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_unavailable_then_replaced() {
    let Some((store, url, schema)) = store().await else {
        return;
    };
    drop(store);
    let store = PgStore::connect(
        &url,
        PgOptions {
            pool_size: 1,
            schema: Some(schema.clone()),
            ..PgOptions::default()
        },
    )
    .await
    .expect("connect");
    let pid: i32 = {
        let conn = store.client().await.expect("client");
        conn.query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("pid")
            .get(0)
    };
    let (killer, connection) = url
        .parse::<tokio_postgres::Config>()
        .expect("url")
        .connect(NoTls)
        .await
        .expect("connect the killer");
    tokio::spawn(connection);
    let killed: bool = killer
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate")
        .get(0);
    assert!(killed);
    let first = store.set_connector_state("e", "v1", 1).await;
    assert!(
        matches!(first, Ok(()) | Err(StoreError::Unavailable(_))),
        "{first:?}"
    );
    store
        .set_connector_state("e", "v2", 2)
        .await
        .expect("a fresh connection");
    assert_eq!(
        store.connector_state("e").await.expect("read").as_deref(),
        Some("v2")
    );
    drop_schema(store, &schema).await;
}

/// `write_queue` is the waiting room of fail-fast writes: with the only connection in use,
/// a first fail-fast write waits (room for one) and commits once the connection is free; a
/// second one, finding the room full, is refused with `Busy` and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_writes_wait_while_the_write_queue_has_room() {
    let Some((store, url, schema)) = store().await else {
        return;
    };
    drop(store);
    let store = Arc::new(
        PgStore::connect(
            &url,
            PgOptions {
                pool_size: 1,
                schema: Some(schema.clone()),
                write_queue: 1,
            },
        )
        .await
        .expect("connect"),
    );
    let event = |at| crate::AuditEvent {
        at,
        event: "test".into(),
        endpoint: None,
        kind: None,
        key: None,
        detail: serde_json::json!({}),
    };
    let held = store.client().await.expect("the only connection");
    let queued = {
        let store = Arc::clone(&store);
        tokio::spawn(crate::admission::fail_fast(async move {
            store.record_audit(vec![event(1)]).await
        }))
    };
    concord_testkit::wait_until(
        "the first fail-fast write waits for the connection",
        std::time::Duration::from_secs(10),
        async || store.pool.status().waiting == 1,
    )
    .await;
    let refused = crate::admission::fail_fast(store.record_audit(vec![event(2)])).await;
    assert!(matches!(refused, Err(StoreError::Busy)), "{refused:?}");
    drop(held);
    queued
        .await
        .expect("task")
        .expect("the queued fail-fast write commits");
    let log = store.audit_log(10).await.expect("audit log");
    assert_eq!(
        log.iter().map(|a| a.event.at).collect::<Vec<_>>(),
        [1],
        "the queued write is stored, the refused one is not"
    );
    match Arc::try_unwrap(store) {
        Ok(store) => drop_schema(store, &schema).await,
        Err(_) => panic!("store still shared"),
    }
}

/// A closure failing with `Conflict` runs again on a fresh transaction: what the failed
/// attempt wrote is gone, what the retry wrote is committed, once.
#[tokio::test]
async fn a_conflict_is_retried_on_a_fresh_transaction() {
    let Some((store, _, schema)) = store().await else {
        return;
    };
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&attempts);
    let out = store
        .write_tx("test", move |tx| {
            let seen = Arc::clone(&seen);
            Box::pin(async move {
                let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                tx.execute(
                    "INSERT INTO connector_state (endpoint, value, updated_at)
                     VALUES ('counter', $1, 0)",
                    &[&n.to_string()],
                )
                .await
                .map_err(db("insert"))?;
                if n == 1 {
                    return Err(StoreError::Conflict("simulated".into()));
                }
                Ok(n)
            })
        })
        .await
        .expect("retried");
    assert_eq!(out, 2);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(
        counter(&store).await,
        2,
        "only the retry's write is committed"
    );
    drop_schema(store, &schema).await;
}

/// Two SERIALIZABLE read-modify-write transactions on one row, both reading before either
/// writes: the server aborts one with SQLSTATE 40001, it is retried, and no increment is
/// lost. Other errors are not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serialization_failure_is_retried_and_nothing_is_lost() {
    let Some((store, _, schema)) = store().await else {
        return;
    };
    store
        .set_connector_state("counter", "0", 0)
        .await
        .expect("seed");
    let store = Arc::new(store);
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let attempts = Arc::new(AtomicU32::new(0));
    let tasks = (0..2).map(|_| {
        let (store, barrier, attempts) = (
            Arc::clone(&store),
            Arc::clone(&barrier),
            Arc::clone(&attempts),
        );
        tokio::spawn(async move {
            store
                .write_tx_at(IsolationLevel::Serializable, "increment", move |tx| {
                    let (barrier, attempts) = (Arc::clone(&barrier), Arc::clone(&attempts));
                    Box::pin(async move {
                        let first = attempts.fetch_add(1, Ordering::SeqCst) < 2;
                        let row = tx
                            .query_one(
                                "SELECT value FROM connector_state WHERE endpoint = 'counter'",
                                &[],
                            )
                            .await
                            .map_err(db("read"))?;
                        let n: i64 = row
                            .get::<_, String>(0)
                            .parse()
                            .map_err(|_| StoreError::Decode("counter".into()))?;
                        if first {
                            // Both first attempts have read before either writes.
                            barrier.wait().await;
                        }
                        tx.execute(
                            "UPDATE connector_state SET value = $1 WHERE endpoint = 'counter'",
                            &[&(n + 1).to_string()],
                        )
                        .await
                        .map_err(db("write"))?;
                        Ok(())
                    })
                })
                .await
        })
    });
    for t in tasks.collect::<Vec<_>>() {
        t.await.expect("task").expect("committed after retrying");
    }
    assert!(
        attempts.load(Ordering::SeqCst) >= 3,
        "one of them was retried"
    );
    assert_eq!(counter(&store).await, 2, "no increment lost");

    let failed = store
        .write_tx("bad statement", |tx| {
            Box::pin(async move {
                tx.execute("SELECT * FROM no_such_table", &[])
                    .await
                    .map_err(db("bad"))?;
                Ok(())
            })
        })
        .await;
    assert!(matches!(failed, Err(StoreError::Db(_))), "{failed:?}");
    match Arc::try_unwrap(store) {
        Ok(store) => drop_schema(store, &schema).await,
        Err(_) => panic!("store still shared"),
    }
}

/// Migration 15 backfills the stats counters from the rows already there: a schema taken back
/// to version 14 (migration 15 undone) holding journal entries, outbox items and dead letters
/// reads, once migrated again, the same figures from its counters as from fresh counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_15_backfills_the_stats_counters() {
    use crate::Store;
    let Some((store, url, schema)) = store().await else {
        return;
    };
    {
        let conn = store.client().await.expect("client");
        conn.batch_execute(
            "DROP TABLE stats_deltas;
             DROP FUNCTION stats_journal_delta, stats_outbox_delta, stats_dead_letters_delta
                 CASCADE;
             DROP INDEX outbox_open_captured;
             DELETE FROM schema_migrations WHERE version = 15;
             INSERT INTO journal (endpoint, kind, external_id, version, payload, received_at, status)
             VALUES ('shop', 'product', 'a', '1', '{}', 1, 'pending'),
                    ('shop', 'product', 'b', '1', '{}', 1, 'processed'),
                    ('shop', 'product', 'd', '1', '{}', 1, 'rejected');
             INSERT INTO outbox (dest, kind, key, op, payload, hash, flow, captured_at, state,
                                 next_at, created_at, updated_at, \"coalesce\")
             VALUES ('shop', 'product', 'A', 'upsert', '{}', 'h', 'f', 7, 'pending', 1, 1, 1, 1),
                    ('shop', 'product', 'B', 'upsert', '{}', 'h', 'f', 5, 'parked', 1, 1, 1, 1),
                    ('erp', 'product', 'A', 'upsert', '{}', 'h', 'f', 3, 'done', 1, 1, 1, 1);
             INSERT INTO dead_letters (direction, endpoint, kind, key, payload, reason, state,
                                       created_at, updated_at)
             VALUES ('inbound', 'shop', 'product', 'd', '{}', 'no', 'open', 1, 1);",
        )
        .await
        .expect("back to version 14, with rows");
    }
    store.close();
    let store = PgStore::connect(
        &url,
        PgOptions {
            pool_size: 2,
            schema: Some(schema.clone()),
            ..PgOptions::default()
        },
    )
    .await
    .expect("migrate again");
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats, store.recount_stats().await.expect("recount"));
    assert_eq!(
        (
            stats.journal_total,
            stats.journal_pending,
            stats.dead_letters_open
        ),
        (3, 1, 1)
    );
    let shop = stats
        .queues
        .iter()
        .find(|q| q.dest == "shop")
        .expect("shop");
    assert_eq!(
        (shop.pending, shop.parked, shop.oldest_captured_at),
        (1, 1, Some(5))
    );
    drop_schema(store, &schema).await;
}

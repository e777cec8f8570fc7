//! Unit tests of the SQLite store itself: group commit, durability settings, the bounded write
//! queue. (The behaviour every store shares is the conformance suite's, in `tests/`.)

use super::*;

/// Writes queued while the writer is busy are committed together, in one transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writes_share_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("concord.db")).unwrap());
    // Hold the writer inside a job until every other write is queued.
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let blocker = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .write(move |_, _| {
                    let _ = wait.recv();
                    Ok(())
                })
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let before = store.write_groups();
    let mut tasks = Vec::new();
    for n in 0..20 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let audit = crate::AuditEvent {
                at: n,
                event: "test".into(),
                endpoint: None,
                kind: None,
                key: None,
                detail: serde_json::Value::Null,
            };
            store.record_audit(vec![audit]).await
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    release.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.audit_log(100).await.unwrap().len(), 20);
    assert_eq!(
        store.write_groups() - before,
        2,
        "the blocker's group, then all 20 queued writes in one"
    );
}

/// Durability is FULL unless the config says otherwise: every commit the writer reports is
/// on the disk (issue 12: NORMAL could lose acknowledged changes on a power loss).
#[tokio::test]
async fn the_writer_commits_with_synchronous_full_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let level = |store: SqliteStore| async move {
        let v = store
            .write(|c, _| {
                c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))
                    .map_err(|e| StoreError::Db(e.to_string()))
            })
            .await
            .unwrap();
        store.close().await;
        v
    };
    let full = SqliteStore::open(dir.path().join("a.db")).unwrap();
    assert_eq!(level(full).await, 2, "FULL");
    let normal = SqliteStore::open_with(
        dir.path().join("b.db"),
        SqliteOptions {
            synchronous: Synchronous::Normal,
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    assert_eq!(level(normal).await, 1, "NORMAL when asked for");
}

/// The writer's queue is bounded: when it is full, a write made inside `fail_fast` is
/// refused at once with `Busy` (and writes nothing), any other write waits for room; once
/// the writer drains, both kinds go through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_queue_refuses_fail_fast_writes_and_holds_the_others() {
    use crate::admission::fail_fast;
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        write_queue: 2,
        ..SqliteOptions::default()
    };
    let store = Arc::new(SqliteStore::open_with(dir.path().join("q.db"), options).unwrap());
    let audit = |n: i64| crate::AuditEvent {
        at: n,
        event: format!("e{n}"),
        endpoint: None,
        kind: None,
        key: None,
        detail: serde_json::Value::Null,
    };
    // Slot 1: a job that holds the writer until released.
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let blocker = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .write(move |_, _| {
                    let _ = started_tx.send(());
                    let _ = wait.recv();
                    Ok(())
                })
                .await
        })
    };
    started.await.unwrap();
    // Slot 2: an ordinary write, queued behind the blocker.
    let queued = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.record_audit(vec![audit(1)]).await })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.queue.available_permits() > 0 {
        assert!(std::time::Instant::now() < deadline, "write 1 never queued");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The queue is full: a fail-fast write is refused, at once.
    let refused = fail_fast(store.record_audit(vec![audit(2)])).await;
    assert!(matches!(refused, Err(StoreError::Busy)), "{refused:?}");
    // An ordinary write waits for room instead.
    let waiting = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.record_audit(vec![audit(3)]).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "a write outside fail_fast waits for room"
    );
    release.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    queued.await.unwrap().unwrap();
    waiting.await.unwrap().unwrap();
    // Drained: fail-fast writes are accepted again.
    fail_fast(store.record_audit(vec![audit(4)])).await.unwrap();
    let mut events: Vec<String> = store
        .audit_log(10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.event.event)
        .collect();
    events.sort();
    assert_eq!(
        events,
        ["e1", "e3", "e4"],
        "the refused write wrote nothing"
    );
}

/// Migration 14 backfills the stats counters from the rows already there: a store written at
/// version 13 (journal entries of each status, outbox items of each state at two destinations,
/// open and dropped dead letters) reads the same figures from its counters as from fresh counts.
#[tokio::test]
async fn migration_14_backfills_the_stats_counters() {
    use crate::Store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("concord.db");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &schema::MIGRATIONS[..13] {
            tx.execute_batch(sql).unwrap();
        }
        tx.execute_batch(
            "PRAGMA user_version = 13;
             INSERT INTO journal (endpoint, kind, external_id, version, payload, received_at, status)
             VALUES ('shop', 'product', 'a', '1', '{}', 1, 'pending'),
                    ('shop', 'product', 'b', '1', '{}', 1, 'processed'),
                    ('shop', 'product', 'c', '1', '{}', 1, 'processed'),
                    ('shop', 'product', 'd', '1', '{}', 1, 'rejected');
             INSERT INTO outbox (dest, kind, key, op, payload, hash, flow, captured_at, state,
                                 next_at, created_at, updated_at, coalesce)
             VALUES ('shop', 'product', 'A', 'upsert', '{}', 'h', 'f', 7, 'pending', 1, 1, 1, 1),
                    ('shop', 'product', 'B', 'upsert', '{}', 'h', 'f', 5, 'parked', 1, 1, 1, 1),
                    ('shop', 'product', 'C', 'upsert', '{}', 'h', 'f', 1, 'done', 1, 1, 1, 1),
                    ('erp', 'product', 'A', 'upsert', '{}', 'h', 'f', 3, 'dead', 1, 1, 1, 1);
             INSERT INTO dead_letters (direction, endpoint, kind, key, payload, reason, state,
                                       created_at, updated_at)
             VALUES ('inbound', 'shop', 'product', 'd', '{}', 'no', 'open', 1, 1),
                    ('outbound', 'erp', 'product', 'A', '{}', 'no', 'dropped', 1, 1);",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(stats, store.recount_stats().await.unwrap());
    assert_eq!(
        (
            stats.journal_total,
            stats.journal_pending,
            stats.journal_rejected,
            stats.dead_letters_open
        ),
        (4, 1, 1, 1)
    );
    let shop = stats.queues.iter().find(|q| q.dest == "shop").unwrap();
    assert_eq!((shop.pending, shop.parked, shop.done), (1, 1, 1));
    assert_eq!(shop.oldest_captured_at, Some(5));
}

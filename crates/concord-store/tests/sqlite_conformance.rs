//! Runs the store conformance suite against [`SqliteStore`], each check on a fresh database in
//! its own temp dir, plus the checks only SQLite can have (reopening, migrations, query plans).

use concord_store::conformance::Fixture;
use concord_store::{Capture, IngestOutcome, SqliteStore, Store};
use std::path::PathBuf;
use std::sync::Arc;

/// Installs a trigger that makes journaling a capture with this external id fail, through a
/// second connection (the store's own writer is not reachable from here, by design).
fn poison(path: PathBuf, external_id: String) {
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let quoted = external_id.replace('\'', "''");
    conn.execute_batch(&format!(
        "CREATE TRIGGER fault_injection BEFORE INSERT ON journal
         WHEN NEW.external_id = '{quoted}'
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
    ))
    .unwrap();
}

async fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("concord.db");
    let store = SqliteStore::open(&path).unwrap();
    Fixture::new(Arc::new(store), dir).with_fault_injector(Box::new(move |external_id| {
        let path = path.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || poison(path, external_id))
                .await
                .unwrap();
        })
    }))
}

concord_store::store_conformance_tests!(sqlite_fixture);

fn capture(id: &str) -> Capture {
    Capture {
        endpoint: "shop".into(),
        kind: concord_core::Kind::Product,
        external_id: id.into(),
        version: "1".into(),
        payload: serde_json::json!({ "id": id }),
        received_at: 1,
        rejected: None,
    }
}

#[tokio::test]
async fn data_survives_reopen_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("concord.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.is_exclusive());
        store.ingest(vec![capture("p1")], None).await.unwrap();
        store.close().await;
        assert!(
            matches!(
                store.ingest(vec![capture("p2")], None).await,
                Err(concord_store::StoreError::Closed)
            ),
            "a closed store refuses writes"
        );
        assert!(matches!(
            store.stats().await,
            Err(concord_store::StoreError::Closed)
        ));
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.journal(None, None, None, 10).await.unwrap().len(), 1);
    assert_eq!(
        store.ingest(vec![capture("p1")], None).await.unwrap(),
        [IngestOutcome::Duplicate],
        "the dedupe memory survives a restart"
    );
    drop(store);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 14, "every migration ran, once");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("concord.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    assert!(matches!(
        SqliteStore::open(&path),
        Err(concord_store::StoreError::Open { .. })
    ));
}

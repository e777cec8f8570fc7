//! The SQLite store's files are private to their owner (issue 12): the database, its WAL and
//! its shared-memory index are created `0600` whatever the process umask, and an existing
//! database left readable by others is made private when the store opens it.

#![cfg(unix)]

use concord_store::{Capture, SqliteStore, Store};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn sibling(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

fn capture() -> Capture {
    Capture {
        endpoint: "shop".into(),
        kind: concord_core::Kind::Product,
        external_id: "p1".into(),
        version: "1".into(),
        payload: serde_json::json!({"id": "p1"}),
        received_at: 1,
        rejected: None,
    }
}

/// Regression: the store was created with the umask's permissions (world-readable under the
/// usual 022), and so were its WAL and shared-memory files.
#[tokio::test]
async fn the_database_wal_and_shm_are_created_0600() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("concord.sqlite");
    let store = SqliteStore::open(&path).expect("open");
    // A write makes sure the WAL exists and has content.
    store.ingest(vec![capture()], None).await.expect("ingest");
    for file in [path.clone(), sibling(&path, "-wal"), sibling(&path, "-shm")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    store.close().await;
}

#[tokio::test]
async fn an_existing_world_readable_database_is_made_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("concord.sqlite");
    drop(SqliteStore::open(&path).expect("create"));
    for file in [path.clone(), sibling(&path, "-wal"), sibling(&path, "-shm")] {
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }
    let store = SqliteStore::open(&path).expect("reopen");
    store.ingest(vec![capture()], None).await.expect("ingest");
    for file in [path.clone(), sibling(&path, "-wal"), sibling(&path, "-shm")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    store.close().await;
}

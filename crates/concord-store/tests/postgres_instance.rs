//! The instance lock (`PgStore::lock_instance`): one running Concord per PostgreSQL database.
//! Two handles on one database: the second is refused while the first holds the lock (naming
//! the holder), takes it once the first has let go, and a lock whose session the server
//! terminates is reported lost.
//!
//! Runs on the server named by `CONCORD_TEST_POSTGRES_URL`, in a database of its own created
//! and dropped by the test (the lock is per database); without the variable it skips loudly on
//! a workstation and fails under CI (`concord_testkit::real::missing`). Every wait is a
//! condition polled under a deadline.

use concord_store::{InstanceLockError, PgOptions, PgStore, Store, INSTANCE_LOCK_KEY};
use std::time::Duration;

const URL_VAR: &str = "CONCORD_TEST_POSTGRES_URL";
const DEADLINE: Duration = Duration::from_secs(10);

fn url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            concord_testkit::real::missing(&format!(
                "\n!!!!! SKIPPED a PostgreSQL store test: {URL_VAR} is not set \
                 (scripts/test.sh sets it; or start scripts/postgres/start.sh)\n"
            ));
            None
        }
    }
}

/// `url` with its database replaced by `db` (URL form: `postgres://…/DB[?…]`).
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    client
}

#[test]
fn with_database_replaces_only_the_database() {
    assert_eq!(
        with_database("postgres://u:p@h:5/a?sslmode=disable", "b"),
        "postgres://u:p@h:5/b?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "b"), "postgres://u@h/b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_handle_is_refused_until_the_first_lets_go() {
    let Some(url) = url() else { return };
    concord_testkit::real::ran("postgres_instance");
    let db = format!("concord_lock_{}_{}", std::process::id(), fastrand::u32(..));
    let server = admin(&url).await;
    server
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("create the test database");
    let db_url = with_database(&url, &db);

    let a = PgStore::connect(&db_url, PgOptions::default())
        .await
        .expect("connect a");
    let b = PgStore::connect(&db_url, PgOptions::default())
        .await
        .expect("connect b");
    assert!(!a.is_exclusive() && !b.is_exclusive(), "no lock taken yet");

    let lock_a = a.lock_instance().await.expect("a takes the lock");
    assert!(a.is_exclusive(), "a holds the lock");
    match b.lock_instance().await {
        Err(InstanceLockError::Taken { holder }) => assert!(
            holder.contains(&format!("concord instance {}", std::process::id())),
            "the refusal names the holder: {holder}"
        ),
        Err(other) => panic!("expected Taken, got {other}"),
        Ok(_) => panic!("b took the lock a holds"),
    }
    assert!(!b.is_exclusive(), "a refused handle is not exclusive");

    // Letting go (as a dying process's connection does) frees it for the other handle.
    drop(lock_a);
    assert!(!a.is_exclusive(), "a let go");
    let mut lock_b = None;
    concord_testkit::wait_until("b takes the lock a let go", DEADLINE, async || {
        match b.lock_instance().await {
            Ok(l) => {
                lock_b = Some(l);
                true
            }
            Err(InstanceLockError::Taken { .. }) => false,
            Err(e) => panic!("b: {e}"),
        }
    })
    .await;
    let mut lock_b = lock_b.expect("b's lock");
    assert!(b.is_exclusive());
    assert!(
        matches!(
            a.lock_instance().await,
            Err(InstanceLockError::Taken { .. })
        ),
        "now a is refused"
    );

    // The server ends b's lock session (as a failover or an administrator would): b learns
    // that it lost the lock, stops being exclusive, and a may take it.
    let high = INSTANCE_LOCK_KEY >> 32;
    let low = INSTANCE_LOCK_KEY & 0xFFFF_FFFF;
    let terminated = server
        .query_one(
            "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.classid::text::bigint = $1 AND l.objid::text::bigint = $2
               AND l.database = (SELECT oid FROM pg_database WHERE datname = $3)",
            &[&high, &low, &db],
        )
        .await
        .expect("terminate the lock's session");
    assert_eq!(terminated.get::<_, i64>(0), 1, "one session held the lock");
    let reason = tokio::time::timeout(DEADLINE, lock_b.lost())
        .await
        .expect("b notices the lost lock");
    assert!(reason.contains("instance lock"), "{reason}");
    assert!(!b.is_exclusive(), "a lost lock is not exclusive");
    concord_testkit::wait_until("a takes the lock again", DEADLINE, async || {
        a.lock_instance().await.is_ok()
    })
    .await;

    drop(lock_b);
    a.close();
    b.close();
    server
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await
        .expect("drop the test database");
}

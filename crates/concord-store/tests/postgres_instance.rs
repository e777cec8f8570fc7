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

/// A TCP relay to the test server that can go silent: once frozen it forwards nothing more and
/// closes nothing (a network cut as the two ends see it), until it is dropped.
struct Relay {
    addr: std::net::SocketAddr,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn to(server: std::net::SocketAddr) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let frozen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (f, t) = (frozen.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(server).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (ur, uw) = upstream.into_split();
                let mut held = t.lock().expect("relay tasks");
                held.push(tokio::spawn(pipe(cr, uw, f.clone())).abort_handle());
                held.push(tokio::spawn(pipe(ur, cw, f.clone())).abort_handle());
            }
        });
        tasks
            .lock()
            .expect("relay tasks")
            .push(accept.abort_handle());
        async fn pipe(
            mut from: tokio::net::tcp::OwnedReadHalf,
            mut to: tokio::net::tcp::OwnedWriteHalf,
            frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
        ) {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if frozen.load(Ordering::SeqCst) {
                    // Swallow it and hold both ends open: nothing is closed by a silent cut.
                    std::future::pending::<()>().await;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
        Relay {
            addr,
            frozen,
            tasks,
        }
    }

    fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in self.tasks.lock().expect("relay tasks").drain(..) {
            t.abort();
        }
    }
}

/// `url` with its host and port replaced by `addr`.
fn via(url: &str, addr: std::net::SocketAddr) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let (userinfo, hostpart) = match rest.find('@') {
        Some(at) if rest[..at].find('/').is_none() => (&rest[..=at], &rest[at + 1..]),
        _ => ("", rest),
    };
    let tail = hostpart.find(['/', '?']).map_or("", |i| &hostpart[i..]);
    format!("{}{userinfo}{addr}{tail}", &url[..start])
}

/// The server's address from its URL (host and port; a host name is resolved).
async fn server_addr(url: &str) -> std::net::SocketAddr {
    let config: tokio_postgres::Config = url.parse().expect("CONCORD_TEST_POSTGRES_URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => panic!("the relay test needs a TCP host in CONCORD_TEST_POSTGRES_URL"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("resolve the test server");
    addrs.next().expect("an address of the test server")
}

#[test]
fn via_replaces_only_host_and_port() {
    let a: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
    assert_eq!(
        via("postgres://u:p@h:5/db?x=1", a),
        "postgres://u:p@127.0.0.1:9/db?x=1"
    );
    assert_eq!(via("postgres://h/db", a), "postgres://127.0.0.1:9/db");
}

/// A standby (`wait_for_instance_lock`) takes over once the holder dies; a holder whose lock
/// session goes silent (a network cut that closes nothing: the relay freezes) learns within the
/// heartbeat bound that its lock can no longer be trusted — while the server still holds the
/// old session, so the standby cannot take the lock until that session really ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_and_a_silent_lock_session_is_reported_lost() {
    let Some(url) = url() else { return };
    concord_testkit::real::ran("postgres_instance");
    let db = format!(
        "concord_standby_{}_{}",
        std::process::id(),
        fastrand::u32(..)
    );
    let server = admin(&url).await;
    server
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("create the test database");
    let db_url = with_database(&url, &db);
    let relay = Relay::to(server_addr(&url).await).await;

    // The active instance reaches the server through the relay; the standby directly.
    let active = PgStore::connect(&via(&db_url, relay.addr), PgOptions::default())
        .await
        .expect("connect the active instance");
    let standby = PgStore::connect(&db_url, PgOptions::default())
        .await
        .expect("connect the standby");
    let first = active
        .lock_instance()
        .await
        .expect("the active takes the lock");

    // Standing by while it is held: told who holds it, never given it.
    let mut told = Vec::new();
    let waited = tokio::time::timeout(
        Duration::from_secs(3),
        standby.wait_for_instance_lock(Duration::from_millis(200), |e| told.push(e.to_string())),
    )
    .await;
    assert!(waited.is_err(), "the standby took a held lock");
    assert!(
        told.iter()
            .any(|t| t.contains("another Concord instance holds")),
        "the standby was told why it waits: {told:?}"
    );

    // The holder lets go (a dying process): the standby takes over, then hands it back.
    drop(first);
    let taken = tokio::time::timeout(
        DEADLINE,
        standby.wait_for_instance_lock(Duration::from_millis(200), |_| {}),
    )
    .await
    .expect("the standby takes the lock once the holder let go");
    assert!(standby.is_exclusive());
    drop(taken);
    let mut lock = concord_testkit::wait_for_some(
        "the active instance takes the lock back",
        DEADLINE,
        async || active.lock_instance().await.ok(),
    )
    .await;

    // A silent cut: the heartbeat reports it within its bound, though nothing was closed.
    relay.freeze();
    let bound = concord_store::INSTANCE_HEARTBEAT
        + concord_store::INSTANCE_HEARTBEAT_TIMEOUT
        + Duration::from_secs(3);
    let reason = tokio::time::timeout(bound, lock.lost())
        .await
        .expect("a silent lock session is reported lost within the heartbeat bound");
    assert!(reason.contains("heartbeat"), "{reason}");
    assert!(!active.is_exclusive(), "a lost lock is not exclusive");
    // The server still has the old session (the relay holds it open): no one may take over yet.
    assert!(
        matches!(
            standby.lock_instance().await,
            Err(InstanceLockError::Taken { .. })
        ),
        "the lock was free while the old session lived"
    );
    // The cut ends the session for real (the relay drops its sockets): the standby takes over.
    drop(lock);
    drop(relay);
    let taken = tokio::time::timeout(
        DEADLINE,
        standby.wait_for_instance_lock(Duration::from_millis(200), |_| {}),
    )
    .await
    .expect("the standby takes over once the old session ended");
    assert!(standby.is_exclusive());

    drop(taken);
    active.close();
    standby.close();
    server
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await
        .expect("drop the test database");
}

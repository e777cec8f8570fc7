//! `concord store copy` end to end: a real demo store (`concord demo --seconds N --dir DIR`)
//! copied into a fresh PostgreSQL database of its own (created here, dropped at the end): every
//! table's counts and hashes equal, the `PgStore` then answers the same reads as the
//! `SqliteStore` (stats, levels of every SKU, reservations, dead letters, orders, journal,
//! outbox items), identity sequences and `concord_tokens` continue above the copied values, a
//! copy from a store still open is refused as in use, and a second copy into the now non-empty
//! target is refused.
//!
//! Runs on the server named by `CONCORD_TEST_POSTGRES_URL` (`scripts/test.sh` sets it); without
//! it the test skips loudly on a workstation and fails under CI (`concord_testkit::real`).

use concord_store::{
    DeadLetterFilter, DeadLetterState, ItemState, OrderFilter, PgOptions, PgStore,
    ReservationState, SqliteStore, Store,
};
use concord_testkit::real::{missing, ran};
use std::path::Path;
use std::process::{Command, Output};

const URL_VAR: &str = "CONCORD_TEST_POSTGRES_URL";

fn concord(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(args)
        .env_remove("CONCORD_CONFIG")
        .env_remove("CONCORD_STORE_COPY_TO")
        .output()
        .expect("run the concord binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to postgres");
    tokio::spawn(connection);
    client
}

/// Drops the test's database when the test is over, whatever happened.
struct DbGuard {
    rt: tokio::runtime::Runtime,
    admin_url: String,
    name: String,
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        self.rt.block_on(async move {
            let client = admin_client(&url).await;
            if let Err(e) = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
            {
                eprintln!("could not drop test database {name}: {e}");
            }
        });
    }
}

/// Everything the two stores must answer alike.
async fn reads(store: &dyn Store, skus: &[String]) -> serde_json::Value {
    let stats = store.stats().await.expect("stats");
    let levels = store.levels(skus).await.expect("levels");
    let reservations = store
        .reservations(None, None, 100_000)
        .await
        .expect("reservations");
    let held = store
        .reservations(Some(ReservationState::Held), None, 100_000)
        .await
        .expect("held reservations");
    let mut dead = Vec::new();
    for state in [
        DeadLetterState::Open,
        DeadLetterState::Replayed,
        DeadLetterState::Dropped,
    ] {
        dead.extend(
            store
                .dead_letters(DeadLetterFilter {
                    state: Some(state),
                    limit: Some(100_000),
                    ..Default::default()
                })
                .await
                .expect("dead letters"),
        );
    }
    let orders = store
        .orders(OrderFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .expect("orders");
    let order_counts = store.order_counts().await.expect("order counts");
    let journal = store
        .journal(None, None, None, 100_000)
        .await
        .expect("journal");
    let mut items = Vec::new();
    for state in [
        ItemState::Pending,
        ItemState::Inflight,
        ItemState::Parked,
        ItemState::Done,
        ItemState::Dead,
    ] {
        items.extend(
            store
                .items(None, state, 100_000)
                .await
                .expect("outbox items"),
        );
    }
    serde_json::json!({
        "stats": stats,
        "levels": levels,
        "reservations": reservations,
        "held": held,
        "dead_letters": dead,
        "orders": orders,
        "order_counts": order_counts,
        "journal": journal,
        "items": items,
    })
}

#[test]
fn a_demo_store_copies_verified_and_postgres_then_answers_the_same() {
    let base = match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => {
            missing(&format!(
                "\n!!!!! SKIPPED the `concord store copy` test: {URL_VAR} is not set \
                 (scripts/test.sh sets it; or start scripts/postgres/start.sh)\n"
            ));
            return;
        }
    };
    ran("store_copy");

    // A realistic store: the demo's traffic (orders, reservations, an outage, dead letters).
    let dir = tempfile::tempdir().expect("tempdir");
    let demo_dir = dir.path().join("demo");
    let demo_dir_s = demo_dir.to_str().expect("utf-8 path");
    let out = concord(&["demo", "--seconds", "6", "--dir", demo_dir_s]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "demo failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let sqlite = demo_dir.join("concord.sqlite");
    assert!(sqlite.is_file(), "the demo left no {}", sqlite.display());
    let sqlite_s = sqlite.to_str().expect("utf-8 path");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let name = format!("pgcopy_test_{}_{}", std::process::id(), fastrand::u32(..));
    rt.block_on(async {
        admin_client(&base)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
    });
    let guard = DbGuard {
        rt,
        admin_url: base.clone(),
        name: name.clone(),
    };
    let mut target = reqwest::Url::parse(&base).expect("CONCORD_TEST_POSTGRES_URL is a URL");
    target.set_path(&format!("/{name}"));
    let target = target.to_string();

    // The copy, verified.
    let out = concord(&[
        "store", "copy", "--from", sqlite_s, "--to", &target, "--json",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "copy failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(!stdout.contains(&target), "the URL is never printed");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let (summary, tables) = lines.split_last().expect("some lines");
    assert_eq!(summary["committed"], true, "{summary}");
    assert_eq!(tables.len(), concord_store::copy::TABLES.len());
    let rows_of = |table: &str| -> u64 {
        let t = tables
            .iter()
            .find(|t| t["table"] == table)
            .unwrap_or_else(|| panic!("no line for {table}"));
        assert_eq!(t["equal"], true, "{t}");
        assert_eq!(t["source_rows"], t["target_rows"], "{t}");
        assert_eq!(t["source_hash"], t["target_hash"], "{t}");
        t["target_rows"].as_u64().expect("a count")
    };
    for table in concord_store::copy::TABLES {
        rows_of(table);
    }
    for table in [
        "journal",
        "entities",
        "outbox",
        "stock_levels",
        "reservations",
    ] {
        assert!(
            rows_of(table) > 0,
            "the demo left {table} empty: not a realistic store"
        );
    }

    guard.rt.block_on(async {
        let sqlite_store = SqliteStore::open(&sqlite).expect("open the SQLite store");
        let pg = PgStore::connect(&target, PgOptions::default())
            .await
            .expect("open the PostgreSQL store");
        let client = admin_client(&target).await;
        let skus: Vec<String> = client
            .query("SELECT DISTINCT sku FROM stock_levels ORDER BY sku", &[])
            .await
            .expect("skus")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(!skus.is_empty());
        let from_sqlite = reads(&sqlite_store, &skus).await;
        let from_pg = reads(&pg, &skus).await;
        assert_eq!(from_sqlite, from_pg, "the two stores answer differently");

        // New ids and tokens continue above the copied ones.
        let max_outbox: i64 = client
            .query_one("SELECT MAX(id) FROM outbox", &[])
            .await
            .expect("max id")
            .get(0);
        let next_outbox: i64 = client
            .query_one(
                "SELECT nextval(pg_get_serial_sequence('outbox', 'id'))",
                &[],
            )
            .await
            .expect("nextval")
            .get(0);
        assert!(next_outbox > max_outbox, "{next_outbox} <= {max_outbox}");
        let max_token: i64 = client
            .query_one(
                "SELECT GREATEST(COALESCE((SELECT MAX(token) FROM outbox), 0),
                                 COALESCE((SELECT MAX(generation) FROM ats_dirty), 0))",
                &[],
            )
            .await
            .expect("max token")
            .get(0);
        let next_token: i64 = client
            .query_one("SELECT nextval('concord_tokens')", &[])
            .await
            .expect("next token")
            .get(0);
        assert!(next_token > max_token, "{next_token} <= {max_token}");
        pg.close();

        // A store still open (a hub running) is refused, before the target is looked at.
        let out = concord(&["store", "copy", "--from", sqlite_s, "--to", &target]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        assert!(
            text(&out.stderr).contains("is in use"),
            "{}",
            text(&out.stderr)
        );
        sqlite_store.close().await;
        drop(sqlite_store);
    });

    // A second copy into the now non-empty target is refused and changes nothing.
    let out = concord(&["store", "copy", "--from", sqlite_s, "--to", &target]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("not empty"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).is_empty(), "nothing claimed");
    drop(guard);
    assert!(Path::new(&sqlite).is_file());
}

//! Runs the store conformance suite against [`PgStore`] on the PostgreSQL server named by
//! `CONCORD_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:55499/postgres`; start one
//! with `scripts/postgres/start.sh`), each check on a fresh schema of its own (dropped
//! afterwards), plus the checks only a shared server can have (migrations once under several
//! instances, dedupe and one-in-flight across two handles).
//!
//! Without the variable every check skips loudly on a workstation and fails under CI
//! (`concord_testkit::real::missing`).

use concord_store::conformance::Fixture;
use concord_store::{Capture, IngestOutcome, PgOptions, PgStore, Store};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const URL_VAR: &str = "CONCORD_TEST_POSTGRES_URL";

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

/// A schema name no other check (of this run or a concurrent one) uses.
fn fresh_schema() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "concord_test_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    )
}

/// A plain connection into `schema` (for what a check does behind the store's back).
async fn raw_client(url: &str, schema: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = url.parse().expect("postgres url");
    config.options(format!("-c search_path={schema}"));
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to postgres");
    tokio::spawn(connection);
    client
}

/// Drops its schema when the check is over (on a thread of its own: `Drop` cannot await).
struct SchemaGuard {
    url: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let client = raw_client(&url, "public").await;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {dropped:?}", self.schema);
        }
    }
}

/// Makes journaling a capture with this external id fail, by a trigger in the check's schema.
async fn poison(url: &str, schema: &str, external_id: &str) {
    let client = raw_client(url, schema).await;
    let quoted = external_id.replace('\'', "''");
    client
        .batch_execute(&format!(
            "CREATE FUNCTION fault_injection() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.external_id = '{quoted}' THEN RAISE EXCEPTION 'injected fault'; END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER fault_injection BEFORE INSERT ON journal
                 FOR EACH ROW EXECUTE FUNCTION fault_injection();"
        ))
        .await
        .expect("install the fault trigger");
}

async fn store_in(url: &str, schema: &str) -> PgStore {
    PgStore::connect(
        url,
        PgOptions {
            pool_size: 4,
            schema: Some(schema.to_owned()),
            ..PgOptions::default()
        },
    )
    .await
    .expect("connect the PostgreSQL store")
}

async fn postgres_fixture() -> Option<Fixture> {
    let url = url()?;
    let schema = fresh_schema();
    let store = store_in(&url, &schema).await;
    concord_testkit::real::ran("postgres_conformance");
    let guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    Some(
        Fixture::new(Arc::new(store), guard).with_fault_injector(Box::new(move |external_id| {
            let (url, schema) = (url.clone(), schema.clone());
            Box::pin(async move { poison(&url, &schema, &external_id).await })
        })),
    )
}

concord_store::store_conformance_tests!(optional postgres_fixture);

fn capture(id: &str, version: &str) -> Capture {
    Capture {
        endpoint: "shop".into(),
        kind: concord_core::Kind::Product,
        external_id: id.into(),
        version: version.into(),
        payload: serde_json::json!({ "id": id }),
        received_at: 1,
        rejected: None,
    }
}

/// Several instances starting together on one empty schema: each migration runs once, every
/// instance comes up, and the data one writes the others see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_once_and_share_data() {
    let Some(url) = url() else { return };
    let schema = fresh_schema();
    let _guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let starts = (0..4).map(|_| {
        let (url, schema) = (url.clone(), schema.clone());
        tokio::spawn(async move { store_in(&url, &schema).await })
    });
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.expect("start task"));
    }
    concord_testkit::real::ran("postgres_conformance");
    assert!(
        !stores[0].is_exclusive(),
        "a shared database is not exclusive"
    );
    let client = raw_client(&url, &schema).await;
    let rows = client
        .query(
            "SELECT version, COUNT(*) FROM schema_migrations GROUP BY version ORDER BY version",
            &[],
        )
        .await
        .expect("read schema_migrations");
    let versions: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        versions,
        (1..=12).map(|v| (v, 1)).collect::<Vec<_>>(),
        "every migration recorded exactly once"
    );
    stores[0]
        .ingest(vec![capture("p1", "1")], None)
        .await
        .expect("ingest");
    assert_eq!(
        stores[3]
            .journal(None, None, None, 10)
            .await
            .expect("journal")
            .len(),
        1,
        "another handle sees it"
    );
    drop(client);
    for s in &stores {
        s.close();
    }
}

/// The inbox dedupe holds across two handles ingesting the same change at the same time: it
/// is journaled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_holds_across_two_handles() {
    let Some(url) = url() else { return };
    let schema = fresh_schema();
    let _guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let a = Arc::new(store_in(&url, &schema).await);
    let b = Arc::new(store_in(&url, &schema).await);
    concord_testkit::real::ran("postgres_conformance");
    for round in 0..20 {
        let version = round.to_string();
        let tasks = [
            Arc::clone(&a),
            Arc::clone(&b),
            Arc::clone(&a),
            Arc::clone(&b),
        ]
        .map(|s| {
            let version = version.clone();
            tokio::spawn(async move { s.ingest(vec![capture("p1", &version)], None).await })
        });
        let mut stored = 0;
        for t in tasks {
            let out = t.await.expect("task").expect("ingest");
            stored += out
                .iter()
                .filter(|o| matches!(o, IngestOutcome::Stored(_)))
                .count();
        }
        assert_eq!(
            stored, 1,
            "round {round}: one of four concurrent ingests stores it"
        );
    }
    assert_eq!(
        a.journal(None, None, None, 100)
            .await
            .expect("journal")
            .len(),
        20
    );
}

/// Two handles claiming one destination at the same time never have two items of a key in
/// flight, and never claim one item twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_item_in_flight_per_key_across_two_handles() {
    use concord_store::{NewItem, ProcessBatch};
    let Some(url) = url() else { return };
    let schema = fresh_schema();
    let _guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let a = Arc::new(store_in(&url, &schema).await);
    let b = Arc::new(store_in(&url, &schema).await);
    concord_testkit::real::ran("postgres_conformance");
    // Five keys, four command items each (commands never coalesce): 20 items.
    let items = (0..4)
        .flat_map(|n| {
            (0..5).map(move |k| NewItem {
                dest: "erp".into(),
                kind: concord_core::Kind::Order,
                key: format!("web/{k}"),
                op: "update".into(),
                payload: serde_json::json!({ "n": n }),
                hash: format!("h{n}"),
                flow: "orders".into(),
                journal_id: None,
                captured_at: 1,
                coalesce: false,
                not_before: 0,
                waiting_on: Vec::new(),
            })
        })
        .collect();
    a.apply(
        ProcessBatch {
            items,
            ..ProcessBatch::default()
        },
        1,
    )
    .await
    .expect("enqueue");
    let claims = [Arc::clone(&a), Arc::clone(&b)]
        .map(|s| tokio::spawn(async move { s.claim("erp", 100, 10, 1_000).await }));
    let mut keys = Vec::new();
    let mut ids = Vec::new();
    for c in claims {
        for claimed in c.await.expect("task").expect("claim") {
            keys.push(claimed.item.key.clone());
            ids.push(claimed.item.id);
        }
    }
    keys.sort();
    let mut unique = keys.clone();
    unique.dedup();
    assert_eq!(keys, unique, "no key in flight twice: {keys:?}");
    assert_eq!(
        keys.len(),
        5,
        "the first item of every key was claimed by one of them"
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
}

//! What the PostgreSQL store tests share: the server they run on (`CONCORD_TEST_POSTGRES_URL`,
//! loud skip on a workstation, failure under CI), a fresh schema per test dropped afterwards,
//! and a plain connection for what a test does behind the store's back.
//!
//! Must never touch a schema it did not create.

#![allow(dead_code)] // each test file uses its own part of this module

use concord_store::{PgOptions, PgStore};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const URL_VAR: &str = "CONCORD_TEST_POSTGRES_URL";

/// The server's URL, or `None` after the real-system rule's loud skip (a failure under CI).
pub fn url() -> Option<String> {
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

/// A schema name no other test (of this run or a concurrent one) uses.
pub fn fresh_schema(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    )
}

/// A plain connection into `schema`.
pub async fn raw_client(url: &str, schema: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = url.parse().expect("postgres url");
    config.options(format!("-c search_path={schema}"));
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to postgres");
    tokio::spawn(connection);
    client
}

/// A store handle (a pool of its own, as an instance has) on `schema`.
pub async fn store_in(url: &str, schema: &str) -> PgStore {
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

/// Drops its schema when the test is over (on a thread of its own: `Drop` cannot await).
pub struct SchemaGuard {
    pub url: String,
    pub schema: String,
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

/// Two store handles (a pool each, as two instances have) on one fresh schema named from
/// `prefix`, and the guard that drops it; `None` after the real-system rule's skip.
pub async fn two_handles(prefix: &str) -> Option<(Arc<PgStore>, Arc<PgStore>, SchemaGuard)> {
    let url = url()?;
    let schema = fresh_schema(prefix);
    let guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let a = Arc::new(store_in(&url, &schema).await);
    let b = Arc::new(store_in(&url, &schema).await);
    Some((a, b, guard))
}

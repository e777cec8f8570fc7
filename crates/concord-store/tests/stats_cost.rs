//! What `Store::stats` costs with a big journal: a manual measurement, not a check (ignored by
//! default; nothing is asserted about time). Journals `CONCORD_STATS_ROWS` captures (200,000 by
//! default) on SQLite and, when `CONCORD_TEST_POSTGRES_URL` is set, on PostgreSQL, then times
//! `stats()` (median of 9 calls) and prints one `STATS-COST` line per backend:
//!
//! ```text
//! CONCORD_TEST_POSTGRES_URL=postgres://… cargo test -p concord-store --release \
//!     --test stats_cost -- --ignored --nocapture
//! ```
//!
//! Measured (debug build, 2 cores, 200,000 journal rows, one in ten rejected): before the
//! maintained counters `stats()` took 7.9 ms on SQLite and 43 ms on PostgreSQL (COUNT(*)s over
//! the whole journal); with them 0.06 ms and 5.8 ms (a handful of counter rows; PostgreSQL's
//! figure is mostly the read transaction's round trips). On PostgreSQL the first call after
//! the fill sums one delta row per journaled statement, then folds them: in a running hub the
//! metrics loop and retention fold every few seconds, so the sum stays small.
//!
//! Must never touch a schema it did not create.

use concord_store::{Capture, SqliteStore, Store};
use std::time::{Duration, Instant};

mod support;
use support::pg::{fresh_schema, store_in, SchemaGuard, URL_VAR};

fn rows() -> usize {
    std::env::var("CONCORD_STATS_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

async fn fill(store: &dyn Store, rows: usize) -> Duration {
    let started = Instant::now();
    let mut n = 0;
    while n < rows {
        let batch: Vec<Capture> = (n..(n + 1_000).min(rows))
            .map(|i| Capture {
                endpoint: "shop".into(),
                kind: concord_core::Kind::Product,
                external_id: format!("p{i}"),
                version: "v1".into(),
                payload: serde_json::json!({ "id": i }),
                received_at: 1,
                rejected: (i % 10 == 0).then(|| "invalid".to_string()),
            })
            .collect();
        n += batch.len();
        store.ingest(batch, None).await.expect("ingest");
    }
    started.elapsed()
}

async fn time_stats(store: &dyn Store) -> Duration {
    let mut times = Vec::new();
    for _ in 0..9 {
        let started = Instant::now();
        let stats = store.stats().await.expect("stats");
        times.push(started.elapsed());
        assert!(stats.journal_total > 0);
    }
    times.sort();
    times[times.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn stats_cost_with_a_big_journal() {
    let rows = rows();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqliteStore::open(dir.path().join("stats.sqlite")).expect("open sqlite");
    let filled = fill(&sqlite, rows).await;
    let median = time_stats(&sqlite).await;
    println!(
        "STATS-COST sqlite journal_rows={rows} fill={:.1}s stats_median={:.3}ms",
        filled.as_secs_f64(),
        median.as_secs_f64() * 1e3
    );
    let Ok(url) = std::env::var(URL_VAR) else {
        println!("STATS-COST postgres skipped: {URL_VAR} is not set");
        return;
    };
    let schema = fresh_schema("concord_stats_cost");
    let _guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let pg = store_in(&url, &schema).await;
    let filled = fill(&pg, rows).await;
    let median = time_stats(&pg).await;
    println!(
        "STATS-COST postgres journal_rows={rows} fill={:.1}s stats_median={:.3}ms",
        filled.as_secs_f64(),
        median.as_secs_f64() * 1e3
    );
}

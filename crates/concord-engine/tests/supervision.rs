//! Issue 12, "nothing from outside can stall the hub": what happens when a part of the engine
//! fails, on a real engine over a real `SqliteStore` with scripted fake connectors.
//!
//! - A connector write that panics is a transient failure of that batch: retried, delivered,
//!   and the endpoint's in-flight count goes back to 0 (it leaked, and the items stayed in
//!   flight, when the delivery task died).
//! - An absurd `Retry-After` is cut to `[engine] retry_after_max`.
//! - A task that panics (here the poller, through its connector) is restarted with backoff and
//!   its work goes on; one that keeps failing is given up: readiness names it.
//! - A journal entry that keeps failing (the store refuses to apply it) becomes an inbound dead
//!   letter with the reason, and the entries after it are processed.

mod support;

use concord_core::Kind;
use concord_engine::connector::Captured;
use concord_engine::Readiness;
use concord_store::{DeadLetterFilter, Direction, JournalStatus};
use std::time::Duration;
use support::{config_text, stock, wait_until, Fake, Harness, Outcome, DEADLINE};

const STOCK_FLOW: &str = r#"
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]
"#;

const STOCK_POLL: &str = r#"
[[flows]]
name = "stock-poll"
kind = "stock"
pattern = "broadcast"
mode = "delta"
interval = "20ms"
from = ["erp"]
to = ["web"]
"#;

fn inflight(h: &Harness, endpoint: &str) -> usize {
    h.engine
        .endpoint_health()
        .into_iter()
        .find(|e| e.endpoint == endpoint)
        .map(|e| e.inflight)
        .unwrap_or(usize::MAX)
}

fn rec(sku: &str, on_hand: i64) -> Captured {
    Captured {
        kind: Kind::Stock,
        external_id: format!("{sku}@WH"),
        version: Some("1".into()),
        record: stock(sku, on_hand),
    }
}

/// Issue 12: a panic in the delivery task leaked the endpoint's in-flight count and left the
/// claimed items in flight until a restart. Now the panicking write is retried like a transient
/// failure and the count returns to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_panics_is_retried_and_gives_its_inflight_slot_back() {
    let h = Harness::start(
        &config_text(&["erp", "web"], &[], STOCK_FLOW),
        vec![
            Fake::new("erp", &[Kind::Stock]),
            Fake::new("web", &[Kind::Stock]),
        ],
    )
    .await;
    let web = h.fake("web").clone();
    web.panic_writes(2);
    h.capture("erp", &[(Kind::Stock, "A@WH", Some("1"), stock("A", 7))])
        .await;
    wait_until(
        "A is delivered after two panicking writes",
        DEADLINE,
        async || !web.done_of("A@WH").is_empty() && h.drained().await,
    )
    .await;
    wait_until("no delivery is counted in flight", DEADLINE, async || {
        inflight(&h, "web") == 0
    })
    .await;
    assert_eq!(h.breaker("web"), "closed");
    // The endpoint keeps delivering.
    h.capture("erp", &[(Kind::Stock, "B@WH", Some("1"), stock("B", 3))])
        .await;
    wait_until("B is delivered", DEADLINE, async || {
        !web.done_of("B@WH").is_empty()
    })
    .await;
    assert_eq!(h.engine.readiness(), Readiness::Ready);
    h.stop().await;
}

/// A `Retry-After` of ~31 years (a 429 from a broken or hostile API) is honoured only up to
/// `[engine] retry_after_max`: the endpoint is paused briefly, not for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_is_cut_to_retry_after_max() {
    let h = Harness::start(
        &config_text(
            &["erp", "web"],
            &[("retry_after_max", "\"200ms\"")],
            STOCK_FLOW,
        ),
        vec![
            Fake::new("erp", &[Kind::Stock]),
            Fake::new("web", &[Kind::Stock]),
        ],
    )
    .await;
    let web = h.fake("web").clone();
    web.push_key_outcomes(
        "A@WH",
        [Outcome::RateLimited(Duration::from_secs(1_000_000_000))],
    );
    h.capture("erp", &[(Kind::Stock, "A@WH", Some("1"), stock("A", 1))])
        .await;
    wait_until(
        "A is delivered once the capped pause is over",
        DEADLINE,
        async || !web.done_of("A@WH").is_empty(),
    )
    .await;
    assert_eq!(web.writes_of("A@WH").len(), 2, "one 429, then the write");
    h.stop().await;
}

/// A task that panics is restarted (with backoff) and its work goes on: here the poller, whose
/// connector panics on its first read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_panics_is_restarted_and_its_work_goes_on() {
    let erp = Fake::new("erp", &[Kind::Stock]).with_changes();
    erp.panic_reads(2);
    erp.feed([rec("P1", 1), rec("P2", 2)]);
    let h = Harness::start(
        &config_text(&["erp", "web"], &[], STOCK_POLL),
        vec![erp, Fake::new("web", &[Kind::Stock])],
    )
    .await;
    let web = h.fake("web").clone();
    wait_until("the polled records are delivered", DEADLINE, async || {
        !web.done_of("P1@WH").is_empty() && !web.done_of("P2@WH").is_empty()
    })
    .await;
    assert_eq!(
        h.engine.task_restarts().get("poll:erp:stock").copied(),
        Some(2),
        "{:?}",
        h.engine.task_restarts()
    );
    assert_eq!(h.engine.readiness(), Readiness::Ready);
    h.stop().await;
}

/// A task that fails more than `task_restart_limit` times within the window is not restarted:
/// the engine reports it (readiness, `failed()`), naming the task; the rest keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_keeps_failing_is_given_up_and_named_by_readiness() {
    let erp = Fake::new("erp", &[Kind::Stock]).with_changes();
    erp.panic_reads(u32::MAX);
    let h = Harness::start(
        &config_text(
            &["erp", "web"],
            &[
                ("task_restart_limit", "2"),
                ("task_restart_window", "\"1m\""),
            ],
            STOCK_POLL,
        ),
        vec![erp, Fake::new("web", &[Kind::Stock])],
    )
    .await;
    let failure = tokio::time::timeout(DEADLINE, h.engine.failed())
        .await
        .expect("the engine gives up on the poller");
    assert_eq!(failure.task, "poll:erp:stock");
    assert_eq!(failure.failures, 3, "the first run and two restarts");
    assert!(
        failure.reason.contains("fake read_changes panicked"),
        "{failure:?}"
    );
    assert_eq!(failure.code(), "engine_task_failed:poll:erp:stock");
    assert_eq!(h.engine.readiness(), Readiness::Failed(failure));
    // The other tasks still run: a webhook (accepted for the polled flow too) is processed and
    // delivered.
    let web = h.fake("web").clone();
    h.capture("erp", &[(Kind::Stock, "W@WH", Some("1"), stock("W", 4))])
        .await;
    wait_until("a webhook still goes through", DEADLINE, async || {
        !web.done_of("W@WH").is_empty()
    })
    .await;
    h.stop().await;
}

/// Issue 12: "a processing error on one journal entry retries the whole batch forever; the
/// hub stalls on one row". The store refuses to apply one entry (a trigger in its database
/// aborts the write of that entity); the entries before and after it in the same batch, and
/// later ones, are processed and delivered; the failing one becomes an inbound dead letter with
/// the reason, and its journal entry is rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_entry_that_keeps_failing_becomes_a_dead_letter_and_the_rest_flow_on() {
    let h = Harness::start(
        &config_text(&["erp", "web"], &[], STOCK_FLOW),
        vec![
            Fake::new("erp", &[Kind::Stock]),
            Fake::new("web", &[Kind::Stock]),
        ],
    )
    .await;
    let db = rusqlite::Connection::open(h.db_path()).expect("open the store's file");
    db.execute_batch(
        "CREATE TRIGGER poison BEFORE INSERT ON entities WHEN NEW.key = 'POISON@WH'
         BEGIN SELECT RAISE(ABORT, 'poisoned row for the test'); END;",
    )
    .expect("create the trigger");
    drop(db);
    // One webhook, one batch: a good entry, the poisoned one, another good one.
    h.capture(
        "erp",
        &[
            (Kind::Stock, "G1@WH", Some("1"), stock("G1", 1)),
            (Kind::Stock, "POISON@WH", Some("1"), stock("POISON", 2)),
            (Kind::Stock, "G2@WH", Some("1"), stock("G2", 3)),
        ],
    )
    .await;
    h.capture("erp", &[(Kind::Stock, "G3@WH", Some("1"), stock("G3", 4))])
        .await;
    let web = h.fake("web").clone();
    wait_until(
        "the entries around the poisoned one are delivered",
        DEADLINE,
        async || {
            ["G1@WH", "G2@WH", "G3@WH"]
                .iter()
                .all(|k| !web.done_of(k).is_empty())
                && h.journal_pending().await == 0
        },
    )
    .await;
    assert!(web.writes_of("POISON@WH").is_empty());
    let dead = h
        .store
        .dead_letters(DeadLetterFilter {
            endpoint: Some("erp".into()),
            ..Default::default()
        })
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].direction, Direction::Inbound);
    assert_eq!(dead[0].key, "POISON@WH");
    assert!(
        dead[0].reason.contains("processing failed 5 times")
            && dead[0].reason.contains("poisoned row for the test"),
        "{}",
        dead[0].reason
    );
    let journal = h
        .store
        .journal(Some("erp"), Some(Kind::Stock), None, 10)
        .await
        .expect("journal");
    let poisoned = journal
        .iter()
        .find(|e| e.external_id == "POISON@WH")
        .expect("the poisoned entry is journaled");
    assert_eq!(poisoned.status, JournalStatus::Rejected);
    assert_eq!(h.engine.readiness(), Readiness::Ready);
    h.stop().await;
}

//! Engine behaviour tests: a real engine over a real SQLite store (fresh temp dir per test)
//! driving scripted fake connectors (`support::Fake`). They cover the delivery promises of
//! design §2-3:
//!
//! 1. coalescing of state kinds keeps only the newest state;
//! 2. command kinds (orders) keep their order through a transient failure, nothing coalesced;
//! 3. per-key order holds under parallel delivery (and parallelism really happens);
//! 4. echo suppression stops a bidirectional ping-pong;
//! 5. dependency parking holds an order until its customer is known at the destination;
//! 6. 429 + Retry-After pauses the endpoint, and does not count as an attempt;
//! 7. permanent errors dead-letter (without blocking other keys) and replay delivers them once;
//! 8. the circuit breaker opens, lets only probes through, and recovers (also when the probe
//!    itself is answered with a 429);
//! 9. endless transient failures end as a dead letter after `max_attempts`;
//! 10. delta polling: exactly-once arrival, durable cursor, failed pages, invalid records.
//!
//! No test sleeps and hopes: each waits on a condition under a deadline (`wait_until`). The only
//! timing assertions are lower bounds (Retry-After) and an upper bound on calls during a measured
//! window (breaker).

mod support;

use concord_core::Kind;
use concord_engine::connector::Captured;
use concord_store::{DeadLetterFilter, DeadLetterState, Direction, ItemState, JournalStatus};
use std::time::{Duration, Instant};
use support::{config_text, customer, order, stock, wait_until, Fake, Harness, Outcome, DEADLINE};

const STOCK_FLOW: &str = r#"
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]
"#;

fn stock_fakes() -> Vec<Fake> {
    vec![
        Fake::new("erp", &[Kind::Stock]),
        Fake::new("web", &[Kind::Stock]),
    ]
}

async fn stock_harness(engine: &[(&str, &str)]) -> Harness {
    Harness::start(
        &config_text(&["erp", "web"], engine, STOCK_FLOW),
        stock_fakes(),
    )
    .await
}

fn on_hand(w: &support::Written) -> i64 {
    w.op.payload["on_hand"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_keeps_only_the_newest_state() {
    let h = stock_harness(&[]).await;
    let web = h.fake("web").clone();
    web.close();
    h.capture("erp", &[(Kind::Stock, "A@WH", Some("1"), stock("A", 1))])
        .await;
    wait_until("the first write is held in flight", DEADLINE, async || {
        web.waiting_at_gate() == 1
    })
    .await;
    for v in 2..=20 {
        let version = v.to_string();
        h.capture(
            "erp",
            &[(Kind::Stock, "A@WH", Some(version.as_str()), stock("A", v))],
        )
        .await;
    }
    wait_until("every capture is processed", DEADLINE, async || {
        h.journal_pending().await == 0
    })
    .await;
    let pending = h
        .store
        .items(Some("web"), ItemState::Pending, 100)
        .await
        .expect("items");
    assert_eq!(pending.len(), 1, "19 newer states coalesced into one item");
    web.open();
    wait_until("everything is delivered", DEADLINE, async || {
        h.drained().await
    })
    .await;

    let writes = web.writes_of("A@WH");
    assert!(
        writes.len() <= 2,
        "at most the in-flight write and the newest state, got {:?}",
        writes.iter().map(on_hand).collect::<Vec<_>>()
    );
    assert_eq!(on_hand(&writes[0]), 1, "the write in flight was version 1");
    assert_eq!(on_hand(writes.last().expect("a write")), 20, "newest last");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_kinds_keep_their_order() {
    let flows = r#"
[[flows]]
name = "orders"
kind = "order"
pattern = "broadcast"
mode = "realtime"
from = ["web"]
to = ["erp"]
"#;
    let h = Harness::start(
        &config_text(&["web", "erp"], &[], flows),
        vec![
            Fake::new("web", &[Kind::Order]),
            Fake::new("erp", &[Kind::Order]),
        ],
    )
    .await;
    let erp = h.fake("erp").clone();
    erp.close();
    erp.push_key_outcomes("web/1001", [Outcome::Transient]);
    h.capture(
        "web",
        &[
            (
                Kind::Order,
                "1001",
                Some("1"),
                order("1001", "ann@example.com", "placed"),
            ),
            (
                Kind::Order,
                "1001",
                Some("2"),
                order("1001", "ann@example.com", "accepted"),
            ),
            (
                Kind::Order,
                "1001",
                Some("3"),
                order("1001", "ann@example.com", "cancelled"),
            ),
        ],
    )
    .await;
    wait_until("the order's changes are processed", DEADLINE, async || {
        h.journal_pending().await == 0
    })
    .await;
    let queued = h
        .store
        .items(Some("erp"), ItemState::Pending, 100)
        .await
        .expect("items")
        .len()
        + h.store
            .items(Some("erp"), ItemState::Inflight, 100)
            .await
            .expect("items")
            .len();
    assert_eq!(queued, 3, "command items are never coalesced");
    erp.open();
    wait_until("all three are delivered", DEADLINE, async || {
        erp.done_of("web/1001").len() == 3 && h.drained().await
    })
    .await;

    let seen: Vec<(String, String, bool)> = erp
        .writes_of("web/1001")
        .iter()
        .map(|w| {
            (
                w.op.op.clone(),
                w.op.payload["status"].as_str().unwrap_or("").to_string(),
                w.ok(),
            )
        })
        .collect();
    let expect = |op: &str, status: &str, ok: bool| (op.to_string(), status.to_string(), ok);
    assert_eq!(
        seen,
        vec![
            expect("create", "placed", false),
            expect("create", "placed", true),
            expect("update", "accepted", true),
            expect("cancel", "cancelled", true),
        ],
        "the failed create is retried before anything later of the order is sent"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_under_parallel_delivery() {
    let h = stock_harness(&[("endpoint_concurrency", "8")]).await;
    let web = h.fake("web").clone();
    web.set_latency_ms(0, 5);
    let keys: Vec<String> = (0..20).map(|k| format!("K{k}")).collect();
    for v in 1..=10i64 {
        let version = v.to_string();
        let ids: Vec<String> = keys.iter().map(|k| format!("{k}@WH")).collect();
        let events: Vec<_> = keys
            .iter()
            .zip(&ids)
            .map(|(k, id)| {
                (
                    Kind::Stock,
                    id.as_str(),
                    Some(version.as_str()),
                    stock(k, v),
                )
            })
            .collect();
        h.capture("erp", &events).await;
    }
    wait_until(
        "every key's newest state is delivered",
        DEADLINE,
        async || {
            h.drained().await
                && keys.iter().all(|k| {
                    web.done_of(&format!("{k}@WH"))
                        .last()
                        .is_some_and(|w| on_hand(w) == 10)
                })
        },
    )
    .await;

    for k in &keys {
        let states: Vec<i64> = web
            .writes_of(&format!("{k}@WH"))
            .iter()
            .map(on_hand)
            .collect();
        assert!(
            states.windows(2).all(|w| w[0] <= w[1]),
            "{k}: states went backwards: {states:?}"
        );
        assert_eq!(states.last(), Some(&10), "{k}: ends at the newest state");
    }
    assert!(
        web.max_inflight() > 1,
        "deliveries ran in parallel (max in flight {})",
        web.max_inflight()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_suppression_stops_a_bidirectional_loop() {
    let flows = r#"
[[flows]]
name = "customers"
kind = "customer"
pattern = "bidirectional"
mode = "realtime"
between = ["a", "b"]
"#;
    let h = Harness::start(
        &config_text(&["a", "b"], &[], flows),
        vec![
            Fake::new("a", &[Kind::Customer]),
            Fake::new("b", &[Kind::Customer]),
        ],
    )
    .await;
    let (a, b) = (h.fake("a").clone(), h.fake("b").clone());
    a.echo_to(Some(h.engine.clone()));
    b.echo_to(Some(h.engine.clone()));
    let key = "ann@example.com";
    let journal_of = async |ep: &str| {
        h.store
            .journal(Some(ep), Some(Kind::Customer), None, 100)
            .await
            .expect("journal")
    };

    // One change at A.
    h.capture(
        "a",
        &[(Kind::Customer, "a-7", Some("1"), customer(key, "Ann"))],
    )
    .await;
    wait_until(
        "B got the change and its echo was processed",
        DEADLINE,
        async || {
            b.done_of(key).len() == 1
                && h.drained().await
                && journal_of("b")
                    .await
                    .iter()
                    .any(|e| e.status == JournalStatus::Processed)
        },
    )
    .await;
    let echo = journal_of("b").await;
    assert_eq!(echo.len(), 1, "B echoed its write once");
    assert!(
        echo[0].note.as_deref().unwrap_or("").contains("unchanged"),
        "the echo was recognised: {:?}",
        echo[0].note
    );
    assert_eq!((a.writes().len(), b.writes().len()), (0, 1));

    // Let the processor run more cycles: A re-sends the same record (as a periodic full webhook
    // would); once it is processed and everything is drained, nothing more was written.
    h.capture(
        "a",
        &[(Kind::Customer, "a-7", Some("2"), customer(key, "Ann"))],
    )
    .await;
    wait_until("the repeat is processed", DEADLINE, async || {
        h.drained().await && journal_of("a").await.len() == 2
    })
    .await;
    assert_eq!(
        (a.writes().len(), b.writes().len()),
        (0, 1),
        "no ping-pong after quiescence"
    );

    // And the other way: one change at B → exactly one write at A, none back at B.
    let b_id = b.external_id(Kind::Customer, key).expect("B's id for Ann");
    h.capture(
        "b",
        &[(Kind::Customer, &b_id, None, customer(key, "Ann B."))],
    )
    .await;
    wait_until(
        "A got B's change and its echo was processed",
        DEADLINE,
        async || a.done_of(key).len() == 1 && h.drained().await && journal_of("a").await.len() == 3,
    )
    .await;
    assert_eq!(a.writes()[0].op.payload["name"], "Ann B.");
    assert_eq!(
        a.writes()[0].op.external_id.as_deref(),
        Some("a-7"),
        "A's own id"
    );
    assert_eq!((a.writes().len(), b.writes().len()), (1, 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_order_is_released_when_its_customer_arrives() {
    // No product flow touches `erp`: products are not reachable there and not waited for.
    let flows = r#"
[[flows]]
name = "customers"
kind = "customer"
pattern = "broadcast"
mode = "realtime"
from = ["web"]
to = ["erp"]

[[flows]]
name = "orders"
kind = "order"
pattern = "broadcast"
mode = "realtime"
from = ["web"]
to = ["erp"]
"#;
    let kinds = [Kind::Customer, Kind::Order];
    let h = Harness::start(
        &config_text(&["web", "erp"], &[], flows),
        vec![Fake::new("web", &kinds), Fake::new("erp", &kinds)],
    )
    .await;
    let erp = h.fake("erp").clone();
    let email = "ann@example.com";
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("1"),
            order("1001", email, "placed"),
        )],
    )
    .await;
    let parked = async || {
        h.store
            .items(Some("erp"), ItemState::Parked, 10)
            .await
            .expect("items")
    };
    wait_until("the order is parked", DEADLINE, async || {
        h.journal_pending().await == 0 && !parked().await.is_empty()
    })
    .await;
    let items = parked().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].key, "web/1001");
    assert_eq!(
        items[0].waiting_on,
        vec![(Kind::Customer, email.to_string())],
        "waits on its customer only"
    );
    assert!(erp.writes().is_empty(), "nothing written while parked");

    h.capture(
        "web",
        &[(Kind::Customer, "web-c-1", Some("1"), customer(email, "Ann"))],
    )
    .await;
    wait_until("the order is delivered", DEADLINE, async || {
        erp.done_of("web/1001").len() == 1 && h.drained().await
    })
    .await;
    let writes = erp.writes();
    let pos = |key: &str| writes.iter().position(|w| w.op.key == key && w.ok());
    assert!(
        pos(email) < pos("web/1001"),
        "customer written before the order"
    );
    let order_write = &erp.done_of("web/1001")[0];
    let customer_id = erp.external_id(Kind::Customer, email).expect("customer id");
    assert_eq!(
        order_write.op.refs.get(&format!("customer:{email}")),
        Some(&customer_id),
        "the order refers to the customer's id at the ERP"
    );
    assert!(parked().await.is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_not_counted_as_an_attempt() {
    // max_attempts = 2: were the 429 counted, the transient failure after it would dead-letter.
    let h = stock_harness(&[("max_attempts", "2")]).await;
    let web = h.fake("web").clone();
    let retry_after = Duration::from_millis(600);
    web.push_key_outcomes(
        "A@WH",
        [Outcome::RateLimited(retry_after), Outcome::Transient],
    );
    h.capture("erp", &[(Kind::Stock, "A@WH", Some("1"), stock("A", 1))])
        .await;
    wait_until("the endpoint is paused by the 429", DEADLINE, async || {
        h.engine
            .endpoint_health()
            .iter()
            .any(|e| e.endpoint == "web" && e.paused_until.is_some())
    })
    .await;
    // Another key captured during the pause waits too: Retry-After applies to the endpoint.
    h.capture("erp", &[(Kind::Stock, "B@WH", Some("1"), stock("B", 1))])
        .await;
    wait_until("both are delivered", DEADLINE, async || {
        web.done_of("A@WH").len() == 1 && web.done_of("B@WH").len() == 1 && h.drained().await
    })
    .await;

    let writes = web.writes();
    let first = &writes[0];
    assert_eq!(first.outcome, Outcome::RateLimited(retry_after));
    for w in &writes[1..] {
        // The engine's clock counts whole milliseconds: allow 1 ms of truncation.
        let gap = w.at.duration_since(first.at);
        assert!(
            gap >= retry_after - Duration::from_millis(1),
            "{} written {gap:?} after the 429",
            w.op.key
        );
    }
    assert!(h.engine.stats(None).rate_limited >= 1);
    let done = h
        .store
        .items(Some("web"), ItemState::Done, 10)
        .await
        .expect("items");
    let a = done.iter().find(|i| i.key == "A@WH").expect("A done");
    assert_eq!(a.attempts, 1, "only the transient failure counted");
    let open = h
        .store
        .dead_letters(DeadLetterFilter::default())
        .await
        .expect("dead letters");
    assert!(open.is_empty(), "nothing dead-lettered: {open:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_dead_letter_and_replay_delivers_them() {
    let h = stock_harness(&[]).await;
    let web = h.fake("web").clone();
    web.set_key(
        "BAD@WH",
        Some(Outcome::Permanent("HTTP 422: sku BAD is unknown".into())),
    );
    h.capture(
        "erp",
        &[
            (Kind::Stock, "BAD@WH", Some("1"), stock("BAD", 1)),
            (Kind::Stock, "G1@WH", Some("1"), stock("G1", 1)),
            (Kind::Stock, "G2@WH", Some("1"), stock("G2", 1)),
        ],
    )
    .await;
    let open = async || {
        h.store
            .dead_letters(DeadLetterFilter {
                endpoint: Some("web".into()),
                ..Default::default()
            })
            .await
            .expect("dead letters")
    };
    wait_until(
        "BAD is dead-lettered and the others delivered",
        DEADLINE,
        async || {
            open().await.len() == 1
                && web.done_of("G1@WH").len() == 1
                && web.done_of("G2@WH").len() == 1
                && h.drained().await
        },
    )
    .await;
    let dl = open().await.remove(0);
    assert_eq!(
        (dl.direction, dl.kind, dl.key.as_str()),
        (Direction::Outbound, Kind::Stock, "BAD@WH")
    );
    assert!(
        dl.reason.contains("sku BAD is unknown"),
        "reason: {}",
        dl.reason
    );
    assert_eq!(dl.state, DeadLetterState::Open);

    web.set_key("BAD@WH", None);
    let replayed = h
        .engine
        .replay_dead_letters(vec![dl.id])
        .await
        .expect("replay");
    assert_eq!(replayed, vec![dl.id]);
    wait_until("the replay is delivered", DEADLINE, async || {
        web.done_of("BAD@WH").len() == 1 && h.drained().await
    })
    .await;
    assert_eq!(web.done_of("BAD@WH")[0].op.payload["on_hand"], 1);
    let after = h
        .store
        .dead_letter(dl.id)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(after.state, DeadLetterState::Replayed);

    let again = h
        .engine
        .replay_dead_letters(vec![dl.id])
        .await
        .expect("replay again");
    assert!(
        again.is_empty(),
        "a replayed dead letter is not replayed twice"
    );
    let queued = h
        .store
        .items(Some("web"), ItemState::Pending, 10)
        .await
        .expect("items");
    assert!(queued.is_empty(), "nothing enqueued: {queued:?}");
    wait_until("drained", DEADLINE, async || h.drained().await).await;
    assert_eq!(
        web.writes_of("BAD@WH").len(),
        2,
        "one failure, one delivery"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_and_recovers() {
    let h = stock_harness(&[("breaker_threshold", "3"), ("max_attempts", "1000")]).await;
    let web = h.fake("web").clone();
    web.set_default(Some(Outcome::Unavailable));
    let keys: Vec<String> = (1..=5).map(|i| format!("K{i}")).collect();
    let ids: Vec<String> = keys.iter().map(|k| format!("{k}@WH")).collect();
    let events: Vec<_> = keys
        .iter()
        .zip(&ids)
        .map(|(k, id)| (Kind::Stock, id.as_str(), Some("1"), stock(k, 1)))
        .collect();
    h.capture("erp", &events).await;
    // Writes claimed before the breaker opened may still be on their way: start measuring once
    // nothing is in flight.
    wait_until(
        "the breaker is open with nothing in flight",
        DEADLINE,
        async || {
            h.breaker("web") == "open" && h.engine.endpoint_health().iter().all(|e| e.inflight == 0)
        },
    )
    .await;

    // Measure the calls over a window while the endpoint stays down: probes only, at most one
    // per open interval (200 ms, doubling to 400 ms), where retries without a breaker would make
    // dozens (5 keys, backoff ≤ 200 ms).
    let (c0, t0) = (web.calls(), Instant::now());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (calls, window) = (web.calls() - c0, t0.elapsed());
    let bound = (window.as_millis() / 200) as usize + 2;
    assert!(
        calls <= bound,
        "{calls} calls in {window:?} with the breaker open (bound {bound})"
    );
    assert_ne!(h.breaker("web"), "closed", "still down, still not closed");

    web.set_default(None);
    wait_until(
        "the breaker closes and everything is delivered",
        DEADLINE,
        async || {
            h.breaker("web") == "closed"
                && ids.iter().all(|id| !web.done_of(id).is_empty())
                && h.drained().await
        },
    )
    .await;
    for id in &ids {
        assert_eq!(web.done_of(id).len(), 1, "{id} delivered exactly once");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_probe_does_not_wedge_the_breaker() {
    let h = stock_harness(&[("breaker_threshold", "3"), ("max_attempts", "1000")]).await;
    let web = h.fake("web").clone();
    web.set_default(Some(Outcome::Unavailable));
    let ids = ["K1@WH", "K2@WH", "K3@WH"];
    let events: Vec<_> = ids
        .iter()
        .map(|id| (Kind::Stock, *id, Some("1"), stock(&id[..2], 1)))
        .collect();
    h.capture("erp", &events).await;
    wait_until(
        "the breaker is open with nothing in flight",
        DEADLINE,
        async || {
            h.breaker("web") == "open" && h.engine.endpoint_health().iter().all(|e| e.inflight == 0)
        },
    )
    .await;
    // The endpoint is back but busy: the half-open probe (the next call) gets a 429.
    let before = web.calls();
    web.push_outcomes([Outcome::RateLimited(Duration::from_millis(100))]);
    web.set_default(None);
    wait_until(
        "the breaker closes and everything is delivered",
        DEADLINE,
        async || {
            h.breaker("web") == "closed"
                && ids.iter().all(|id| !web.done_of(id).is_empty())
                && h.drained().await
        },
    )
    .await;
    let writes = web.writes();
    let probe = &writes[before];
    assert_eq!(
        probe.outcome,
        Outcome::RateLimited(Duration::from_millis(100))
    );
    for w in &writes[before + 1..] {
        assert!(w.at.duration_since(probe.at) >= Duration::from_millis(99));
    }
    for id in ids {
        assert_eq!(web.done_of(id).len(), 1, "{id} delivered exactly once");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_transient_failures_end_as_a_dead_letter() {
    let h = stock_harness(&[("max_attempts", "3"), ("breaker_threshold", "1000")]).await;
    let web = h.fake("web").clone();
    web.set_key("A@WH", Some(Outcome::Transient));
    h.capture(
        "erp",
        &[
            (Kind::Stock, "A@WH", Some("1"), stock("A", 1)),
            (Kind::Stock, "B@WH", Some("1"), stock("B", 1)),
        ],
    )
    .await;
    let open = async || {
        h.store
            .dead_letters(DeadLetterFilter::default())
            .await
            .expect("dead letters")
    };
    wait_until("A is dead-lettered", DEADLINE, async || {
        !open().await.is_empty() && h.drained().await
    })
    .await;
    let dls = open().await;
    assert_eq!(dls.len(), 1);
    assert_eq!(dls[0].key, "A@WH");
    assert!(
        dls[0].reason.contains("gave up after 3 attempts"),
        "reason: {}",
        dls[0].reason
    );
    assert_eq!(web.writes_of("A@WH").len(), 3, "exactly max_attempts tries");
    assert_eq!(web.done_of("B@WH").len(), 1, "B is not held back");
    h.stop().await;
}

/// A page whose records the connector all filtered out is empty but moves the cursor: the
/// cycle goes on to the next page instead of waiting for the next interval (an hour here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_page_that_moves_the_cursor_does_not_end_the_poll_cycle() {
    let flows = r#"
[[flows]]
name = "stock-poll"
kind = "stock"
pattern = "broadcast"
mode = "delta"
interval = "1h"
page_size = 3
from = ["erp"]
to = ["web"]
"#;
    let rec = |sku: &str, on_hand: i64| Captured {
        kind: Kind::Stock,
        external_id: format!("{sku}@WH"),
        version: Some("1".into()),
        record: stock(sku, on_hand),
    };
    let erp = Fake::new("erp", &[Kind::Stock]).with_changes();
    erp.feed((1..=3).map(|i| rec(&format!("K{i}"), i)));
    erp.feed_filtered(Kind::Stock, 6);
    erp.feed((4..=6).map(|i| rec(&format!("K{i}"), i)));
    let last = erp.last_seq().to_string();
    let h = Harness::start(
        &config_text(&["erp", "web"], &[], flows),
        vec![erp, Fake::new("web", &[Kind::Stock]).with_changes()],
    )
    .await;
    let (erp, web) = (h.fake("erp").clone(), h.fake("web").clone());
    wait_until(
        "every record after the empty pages arrives",
        DEADLINE,
        async || {
            h.store
                .cursor("erp", "stock")
                .await
                .expect("cursor")
                .as_deref()
                == Some(last.as_str())
                && (1..=6).all(|i| !web.done_of(&format!("K{i}@WH")).is_empty())
        },
    )
    .await;
    let cursors: Vec<Option<String>> = erp.reads().into_iter().map(|r| r.cursor).collect();
    assert_eq!(
        cursors,
        [None, Some("3".into()), Some("6".into()), Some("9".into())],
        "one cycle of four pages"
    );

    // Reconciliation reads the store's listing the same way: its records after the empty pages
    // are compared, not reported missing.
    wait_until("everything delivered", DEADLINE, async || h.drained().await).await;
    web.feed((1..=3).map(|i| rec(&format!("K{i}"), i)));
    web.feed_filtered(Kind::Stock, 6);
    web.feed((4..=6).map(|i| rec(&format!("K{i}"), i)));
    let run = h
        .engine
        .reconcile(&[], false, "test")
        .await
        .expect("reconcile");
    let at_web: Vec<_> = run.results.iter().filter(|r| r.dest == "web").collect();
    assert_eq!(at_web.len(), 1, "{run:?}");
    assert_eq!(at_web[0].error, None, "{run:?}");
    assert_eq!(at_web[0].reads, 4, "the whole listing was read: {run:?}");
    assert_eq!(run.drifted(), 0, "{run:?}");
    h.stop().await;
}

/// The same for a full listing (a batch flow): an empty page that moves the token is not the
/// end of the listing, so the records after it are not left out of every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_page_that_moves_the_token_does_not_end_a_full_listing() {
    let flows = r#"
[[flows]]
name = "stock-batch"
kind = "stock"
pattern = "broadcast"
mode = "batch"
schedule = "* * * * * *"
page_size = 3
from = ["erp"]
to = ["web"]
"#;
    let rec = |sku: &str, on_hand: i64| Captured {
        kind: Kind::Stock,
        external_id: format!("{sku}@WH"),
        version: Some("1".into()),
        record: stock(sku, on_hand),
    };
    let erp = Fake::new("erp", &[Kind::Stock]).with_changes();
    erp.feed((1..=3).map(|i| rec(&format!("K{i}"), i)));
    erp.feed_filtered(Kind::Stock, 6);
    erp.feed((4..=6).map(|i| rec(&format!("K{i}"), i)));
    let h = Harness::start(
        &config_text(&["erp", "web"], &[], flows),
        vec![erp, Fake::new("web", &[Kind::Stock])],
    )
    .await;
    let web = h.fake("web").clone();
    wait_until(
        "every record of the listing arrives",
        DEADLINE,
        async || (1..=6).all(|i| !web.done_of(&format!("K{i}@WH")).is_empty()),
    )
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_delivers_every_record_once_and_keeps_a_durable_cursor() {
    let flows = r#"
[[flows]]
name = "stock-poll"
kind = "stock"
pattern = "broadcast"
mode = "delta"
interval = "50ms"
page_size = 3
from = ["erp"]
to = ["web"]
"#;
    let rec = |sku: &str, on_hand: i64| Captured {
        kind: Kind::Stock,
        external_id: format!("{sku}@WH"),
        version: Some("1".into()),
        record: stock(sku, on_hand),
    };
    let erp = Fake::new("erp", &[Kind::Stock]).with_changes();
    erp.feed((1..=5).map(|i| rec(&format!("K{i}"), i)));
    let h = Harness::start(
        &config_text(&["erp", "web"], &[], flows),
        vec![erp, Fake::new("web", &[Kind::Stock])],
    )
    .await;
    let (erp, web) = (h.fake("erp").clone(), h.fake("web").clone());
    let cursor = async || h.store.cursor("erp", "stock").await.expect("cursor");
    let delivered = |n: i64| (1..=n).all(|i| !web.done_of(&format!("K{i}@WH")).is_empty());
    wait_until("the first five arrive", DEADLINE, async || {
        cursor().await.as_deref() == Some("5") && delivered(5) && h.drained().await
    })
    .await;

    // The next read fails; then more records, one of them invalid, across two pages.
    erp.fail_reads(1);
    erp.feed([
        rec("K6", 6),
        rec("K7", 7),
        rec("K8", 8),
        rec("BAD", -1),
        rec("K9", 9),
        rec("K10", 10),
    ]);
    let last = erp.last_seq().to_string();
    wait_until("the rest arrive", DEADLINE, async || {
        cursor().await.as_deref() == Some(last.as_str()) && delivered(10) && h.drained().await
    })
    .await;

    for i in 1..=10 {
        let key = format!("K{i}@WH");
        assert_eq!(web.writes_of(&key).len(), 1, "{key} written exactly once");
    }
    assert!(web.writes_of("BAD@WH").is_empty());
    let reads = erp.reads();
    let failed = reads.iter().position(|r| r.failed).expect("a read failed");
    assert_eq!(reads[failed].cursor.as_deref(), Some("5"));
    assert_eq!(
        reads.get(failed + 1).map(|r| r.cursor.clone()),
        Some(Some("5".to_string())),
        "the failed page did not move the cursor"
    );
    assert_eq!(cursor().await, Some(last));

    let inbound = h
        .store
        .dead_letters(DeadLetterFilter {
            endpoint: Some("erp".into()),
            ..Default::default()
        })
        .await
        .expect("dead letters");
    assert_eq!(inbound.len(), 1, "{inbound:?}");
    assert_eq!(inbound[0].direction, Direction::Inbound);
    assert!(
        inbound[0].reason.contains("on_hand"),
        "reason names the field: {}",
        inbound[0].reason
    );
    h.stop().await;
}

/// A write the endpoint cannot do *yet* (the record it needs is created by another pending
/// write, e.g. a stock level before its product) waits and retries without blaming the
/// endpoint: the breaker stays closed and the other keys are delivered meanwhile (issue 15:
/// with `Transient` the breaker opened and its probes kept picking the waiting item).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_cannot_be_done_yet_waits_without_tripping_the_breaker() {
    let h = stock_harness(&[
        ("breaker_threshold", "1"),
        ("max_attempts", "100"),
        ("backoff_base", "\"10ms\""),
        ("backoff_cap", "\"50ms\""),
    ])
    .await;
    let web = h.fake("web").clone();
    web.push_key_outcomes("A@WH", (0..6).map(|_| Outcome::NotYet));
    h.capture("erp", &[(Kind::Stock, "A@WH", Some("1"), stock("A", 1))])
        .await;
    wait_until("A has been refused a few times", DEADLINE, async || {
        web.writes_of("A@WH").len() >= 3
    })
    .await;
    assert_eq!(h.breaker("web"), "closed", "not an endpoint failure");
    let others: Vec<(Kind, String, Option<&str>, serde_json::Value)> = ["B", "C"]
        .iter()
        .map(|k| (Kind::Stock, format!("{k}@WH"), Some("1"), stock(k, 2)))
        .collect();
    let others: Vec<(Kind, &str, Option<&str>, serde_json::Value)> = others
        .iter()
        .map(|(k, id, v, r)| (*k, id.as_str(), *v, r.clone()))
        .collect();
    h.capture("erp", &others).await;
    wait_until("everything is delivered", DEADLINE, async || {
        ["A@WH", "B@WH", "C@WH"]
            .iter()
            .all(|id| web.done_of(id).len() == 1)
            && h.drained().await
    })
    .await;
    assert_eq!(h.breaker("web"), "closed");
    assert_eq!(
        web.writes_of("A@WH").len(),
        7,
        "six refusals, then the write"
    );
    h.stop().await;
}

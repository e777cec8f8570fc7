//! jq programs under their budget, on a real engine (fake connectors, real SQLite store):
//!
//! 1. an outbound mapping that recurses or loops without end on one record dead-letters that
//!    record's item, naming the flow, the destination, the program and the limit; the other
//!    records of the flow and another flow's records are delivered; the engine stops cleanly;
//! 2. replaying a dead letter opened while planning goes through the flow's filter and mapping
//!    again, never around them (still failing: kept open, nothing sent; fixed: the mapped
//!    record is sent, never the canonical one);
//! 3. the stock pool: a channel flow whose filter errors or runs over budget publishes nothing
//!    for that SKU (audited `stock.not_published`), and the other SKUs' figures are published;
//! 4. a polled record whose inbound mapping runs over budget is dead-lettered, and the records
//!    after it are captured;
//! 5. a shutdown does not wait for a jq program (the interrupted batch is done again later);
//! 6. a webhook with a record over budget is refused naming it, without spending a budget on
//!    each of the records after it.
//!
//! Without the budget the first case aborts the test process (stack overflow on an async
//! worker) or never finishes; the stock pool published the unfiltered figure.

mod support;

use concord_core::Kind;
use concord_engine::connector::Captured;
use concord_store::{DeadLetter, DeadLetterFilter, DeadLetterState, Direction};
use serde_json::json;
use support::{config_text, customer, stock, wait_until, Fake, Harness, DEADLINE};

async fn open_dead_letters(h: &Harness) -> Vec<DeadLetter> {
    h.store
        .dead_letters(DeadLetterFilter::default())
        .await
        .expect("dead letters")
}

fn dead_letter_of<'a>(dls: &'a [DeadLetter], key: &str) -> &'a DeadLetter {
    dls.iter()
        .find(|d| d.key == key)
        .unwrap_or_else(|| panic!("no dead letter for {key}: {dls:?}"))
}

const RUNAWAY: &str = r#"
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]
[flows.map_out]
web = '''
def deeper: 1 + deeper;
if .sku == "DEEP" then deeper
elif .sku == "LOOP" then {sku, n: last(range(1e15))}
else {sku, location, on_hand} end
'''

[[flows]]
name = "customers"
kind = "customer"
pattern = "aggregation"
mode = "realtime"
from = ["web"]
to = ["erp"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_mapping_dead_letters_its_record_and_the_rest_flows_on() {
    let h = Harness::start(
        &config_text(&["erp", "web"], &[("jq_steps", "200000")], RUNAWAY),
        vec![
            Fake::new("erp", &[Kind::Stock, Kind::Customer]),
            Fake::new("web", &[Kind::Stock, Kind::Customer]),
        ],
    )
    .await;
    let (erp, web) = (h.fake("erp").clone(), h.fake("web").clone());
    h.capture(
        "erp",
        &[
            (Kind::Stock, "DEEP@WH", Some("1"), stock("DEEP", 1)),
            (Kind::Stock, "LOOP@WH", Some("1"), stock("LOOP", 1)),
            (Kind::Stock, "G1@WH", Some("1"), stock("G1", 1)),
        ],
    )
    .await;
    h.capture(
        "web",
        &[(
            Kind::Customer,
            "c1",
            Some("1"),
            customer("ann@example.com", "Ann"),
        )],
    )
    .await;
    wait_until(
        "both runaways are dead-lettered and the rest delivered",
        DEADLINE,
        async || {
            open_dead_letters(&h).await.len() == 2
                && web.done_of("G1@WH").len() == 1
                && erp.done_of("ann@example.com").len() == 1
                && h.drained().await
        },
    )
    .await;
    assert_eq!(
        web.done_of("G1@WH")[0].op.payload,
        json!({"sku": "G1", "location": "WH", "on_hand": 1})
    );
    let dls = open_dead_letters(&h).await;
    for (key, limit) in [
        ("DEEP@WH", "MiB of stack"),
        ("LOOP@WH", "200000 steps (engine.jq_steps)"),
    ] {
        let dl = dead_letter_of(&dls, key);
        assert_eq!(
            (
                dl.direction,
                dl.endpoint.as_str(),
                dl.kind,
                dl.flow.as_deref()
            ),
            (Direction::Outbound, "web", Kind::Stock, Some("stock"))
        );
        assert!(
            dl.reason.contains(
                "mapping of flow `stock` for `web` failed: jq program `flows[0].map_out.web`"
            ) && dl.reason.contains(limit),
            "{key}: {}",
            dl.reason
        );
        assert!(web.writes_of(key).is_empty(), "{key} was sent");
    }

    // The hub still serves: a later record of the same flow is delivered.
    h.capture("erp", &[(Kind::Stock, "G2@WH", Some("1"), stock("G2", 2))])
        .await;
    wait_until("a later record is delivered", DEADLINE, async || {
        web.done_of("G2@WH").len() == 1 && h.drained().await
    })
    .await;
    h.stop().await;
}

const REPLAYED: &str = r#"
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]
filter = 'if .sku == "F" then error("no filter for F") else true end'
[flows.map_out]
web = '{sku, n: ([range(.on_hand)] | length)}'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_planning_dead_letter_goes_through_the_filter_and_mapping() {
    let h = Harness::start(
        &config_text(&["erp", "web"], &[("jq_steps", "20000")], REPLAYED),
        vec![
            Fake::new("erp", &[Kind::Stock]),
            Fake::new("web", &[Kind::Stock]),
        ],
    )
    .await;
    let web = h.fake("web").clone();
    // A and B over the step budget (a range of 100,000), F's filter fails.
    h.capture(
        "erp",
        &[
            (Kind::Stock, "A@WH", Some("1"), stock("A", 100_000)),
            (Kind::Stock, "B@WH", Some("1"), stock("B", 100_000)),
            (Kind::Stock, "F@WH", Some("1"), stock("F", 1)),
        ],
    )
    .await;
    wait_until("three dead letters", DEADLINE, async || {
        open_dead_letters(&h).await.len() == 3 && h.drained().await
    })
    .await;
    let dls = open_dead_letters(&h).await;
    let id_of = |key: &str| dead_letter_of(&dls, key).id;
    assert!(dead_letter_of(&dls, "F@WH")
        .reason
        .contains("filter of flow `stock` failed: jq error: no filter for F"));

    // A's figure comes down: delivered through the mapping.
    h.capture("erp", &[(Kind::Stock, "A@WH", Some("2"), stock("A", 3))])
        .await;
    wait_until("A's new figure is delivered", DEADLINE, async || {
        web.done_of("A@WH").len() == 1 && h.drained().await
    })
    .await;

    // Replayed: A is re-planned from its current state through the mapping; B's mapping and
    // F's filter still fail, so they stay open and nothing of theirs is sent.
    let replayed = h
        .engine
        .replay_dead_letters(vec![id_of("A@WH"), id_of("B@WH"), id_of("F@WH")])
        .await
        .expect("replay");
    assert_eq!(replayed, vec![id_of("A@WH")]);
    wait_until("the replay is delivered", DEADLINE, async || {
        web.done_of("A@WH").len() == 2 && h.drained().await
    })
    .await;
    for w in web.writes() {
        assert!(
            w.op.payload.get("n").is_some() && w.op.payload.get("on_hand").is_none(),
            "an unmapped record was sent: {:?}",
            w.op
        );
    }
    assert_eq!(
        web.done_of("A@WH")[1].op.payload,
        json!({"sku": "A", "n": 3})
    );
    assert!(web.writes_of("B@WH").is_empty() && web.writes_of("F@WH").is_empty());
    for key in ["B@WH", "F@WH"] {
        let dl = h.store.dead_letter(id_of(key)).await.unwrap().unwrap();
        assert_eq!(dl.state, DeadLetterState::Open, "{key}");
    }
    h.stop().await;
}

const POOL: &str = r#"
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]
filter = '''
if .sku == "BAD" then error("no figure for BAD")
elif .sku == "LOOP" then last(range(1e15)) > 0
else true end
'''

[inventory]
source = "erp"
[inventory.channels.web]
locations = ["WH"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_filter_that_fails_publishes_nothing_for_its_sku() {
    let h = Harness::start(
        &config_text(&["erp", "web"], &[("jq_steps", "200000")], POOL),
        vec![
            Fake::new("erp", &[Kind::Stock]),
            Fake::new("web", &[Kind::Stock]),
        ],
    )
    .await;
    let web = h.fake("web").clone();
    h.capture(
        "erp",
        &[
            (Kind::Stock, "BAD@WH", Some("1"), stock("BAD", 5)),
            (Kind::Stock, "LOOP@WH", Some("1"), stock("LOOP", 5)),
            (Kind::Stock, "A@WH", Some("1"), stock("A", 5)),
        ],
    )
    .await;
    let not_published = async || {
        h.store
            .audit_log(100)
            .await
            .expect("audit")
            .into_iter()
            .filter(|a| a.event.event == "stock.not_published")
            .collect::<Vec<_>>()
    };
    let sent = |sku: &str| {
        web.writes()
            .into_iter()
            .filter(|w| w.op.payload["sku"] == sku)
            .count()
    };
    wait_until(
        "A is published, BAD and LOOP refused",
        DEADLINE,
        async || {
            let refused = not_published().await;
            sent("A") >= 1
                && ["BAD", "LOOP"]
                    .iter()
                    .all(|s| refused.iter().any(|a| a.event.key.as_deref() == Some(*s)))
                && h.drained().await
        },
    )
    .await;
    assert_eq!(sent("BAD"), 0, "an erroring filter published");
    assert_eq!(sent("LOOP"), 0, "an over-budget filter published");
    for a in not_published().await {
        let reason = a.event.detail["reason"].as_str().unwrap_or_default();
        assert_eq!(a.event.endpoint.as_deref(), Some("web"));
        assert!(
            reason.starts_with("filter of flow `stock` failed: "),
            "{reason}"
        );
        match a.event.key.as_deref() {
            Some("BAD") => assert!(reason.contains("no figure for BAD"), "{reason}"),
            Some("LOOP") => assert!(
                reason.contains("`flows[0].filter` stopped after 200000 steps"),
                "{reason}"
            ),
            other => panic!("unexpected {other:?}"),
        }
    }
    h.stop().await;
}

const POLLED: &str = r#"
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "delta"
interval = "50ms"
from = ["erp"]
to = ["web"]
map_in = 'if .sku == "LOOP" then (last(range(1e15)) | {}) else . end'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_record_over_budget_is_dead_lettered_and_the_feed_goes_on() {
    let erp = Fake::new("erp", &[Kind::Stock]).with_changes();
    let record = |sku: &str| Captured {
        kind: Kind::Stock,
        external_id: format!("{sku}@WH"),
        version: Some("1".into()),
        record: stock(sku, 1),
    };
    erp.feed([record("G1"), record("LOOP"), record("G2")]);
    let h = Harness::start(
        &config_text(&["erp", "web"], &[("jq_steps", "200000")], POLLED),
        vec![erp, Fake::new("web", &[Kind::Stock])],
    )
    .await;
    let web = h.fake("web").clone();
    wait_until(
        "G1 and G2 delivered, LOOP dead-lettered",
        DEADLINE,
        async || {
            web.done_of("G1@WH").len() == 1
                && web.done_of("G2@WH").len() == 1
                && open_dead_letters(&h).await.len() == 1
        },
    )
    .await;
    let dl = open_dead_letters(&h).await.remove(0);
    assert_eq!(
        (dl.direction, dl.endpoint.as_str(), dl.key.as_str()),
        (Direction::Inbound, "erp", "LOOP@WH")
    );
    assert!(
        dl.reason.contains(
            "inbound mapping failed: jq program `flows[0].map_in` stopped after 200000 steps"
        ),
        "{}",
        dl.reason
    );
    assert!(web.writes_of("LOOP@WH").is_empty());
    h.stop().await;
}

const SLOW: &str = r#"
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]
[flows.map_out]
web = 'if .sku == "LOOP" then {sku, n: last(range(1e15))} else . end'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_jq_program_does_not_hold_up_the_shutdown() {
    // Only a 60 s clock would stop LOOP's mapping; the engine must stop long before that.
    let engine = [
        ("batch_size", "1"),
        ("jq_steps", "1000000000000"),
        ("jq_timeout", "\"60s\""),
    ];
    let h = Harness::start(
        &config_text(&["erp", "web"], &engine, SLOW),
        vec![
            Fake::new("erp", &[Kind::Stock]),
            Fake::new("web", &[Kind::Stock]),
        ],
    )
    .await;
    let web = h.fake("web").clone();
    h.capture(
        "erp",
        &[
            (Kind::Stock, "G1@WH", Some("1"), stock("G1", 1)),
            (Kind::Stock, "LOOP@WH", Some("1"), stock("LOOP", 1)),
        ],
    )
    .await;
    // One entry per batch: once G1 is delivered the processor has gone on to LOOP.
    wait_until("G1 is delivered", DEADLINE, async || {
        web.done_of("G1@WH").len() == 1
    })
    .await;
    let store = h.store.clone();
    // `stop` fails the test if the engine's tasks are not done within the support deadline.
    h.stop().await;
    // Nothing of the interrupted batch was committed: LOOP is processed again at the next start.
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.journal_pending, stats.dead_letters_open), (1, 0));
}

const HOOKED: &str = r#"
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]
map_in = 'if .sku == "LOOP" then (last(range(1e15)) | {}) else . end'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_whose_record_runs_over_budget_is_refused_without_mapping_the_rest() {
    let h = Harness::start(
        &config_text(&["erp", "web"], &[("jq_steps", "200000")], HOOKED),
        vec![
            Fake::new("erp", &[Kind::Stock]),
            Fake::new("web", &[Kind::Stock]),
        ],
    )
    .await;
    let body = support::webhook_body(&[
        (Kind::Stock, "G1@WH", Some("1"), stock("G1", 1)),
        (Kind::Stock, "LOOP@WH", Some("1"), stock("LOOP", 1)),
        (Kind::Stock, "LOOP@WH2", Some("1"), stock("LOOP", 2)),
        (Kind::Stock, "G2@WH", Some("1"), stock("G2", 1)),
    ]);
    let refused = h
        .engine
        .capture_webhook("erp", &http::HeaderMap::new(), &body)
        .await;
    let Err(concord_engine::runtime::CaptureError::Invalid(errors)) = refused else {
        panic!("{refused:?}")
    };
    // One budget spent, not three: the rest is named, not mapped.
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("events[1]: stock `LOOP@WH` from `erp`: inbound mapping failed: jq program `flows[0].map_in` stopped after 200000 steps"),
        "{}",
        errors[0]
    );
    assert_eq!(
        errors[1],
        "events[2..4]: not checked (the request is refused)"
    );
    // Nothing of the request was stored; the same endpoint's next webhook is.
    assert_eq!(h.store.stats().await.unwrap().journal_total, 0);
    h.capture("erp", &[(Kind::Stock, "G1@WH", Some("1"), stock("G1", 1))])
        .await;
    let web = h.fake("web").clone();
    wait_until("G1 is delivered", DEADLINE, async || {
        web.done_of("G1@WH").len() == 1
    })
    .await;
    h.stop().await;
}

//! The order lifecycle through a real engine over a real SQLite store, with the scripted fake
//! connectors of `support` (issue 6):
//!
//! 1. the state machine followed from placement to closed and refunds, with split shipments;
//!    an illegal cancellation after shipment refused and recorded, not applied;
//! 2. an edit before shipment goes out as `amend` where the ERP declares it, as cancel-and-
//!    replace (`{key}~n`) where it does not, and is refused under `[orders] edits = "reject"`;
//!    an `amend` the ERP answers "cannot amend this order" falls back to the same policy at
//!    delivery (cancel + `{key}~2` delivered once, a later waiting edit folded into it; or a
//!    dead letter with the ERP's reason), with `edit` events in the order's history;
//! 3. an edit after shipment is refused with a reason (dead letter, event, audit);
//! 4. a cancellation releases the order's committed reservation; an edit adjusts it and is
//!    refused when the pool cannot cover the increase;
//! 5. a refund for an ERP that cannot record refunds becomes a "needs attention" dead letter;
//! 6. an order is parked (visibly) until its customer exists at the ERP;
//! 7. the same order webhook delivered three times creates one ERP order.
//!
//! Every wait is a condition under a deadline (`wait_until`).

mod support;

use concord_core::inventory::Line;
use concord_core::Kind;
use concord_store::{
    DeadLetterFilter, DeadLetterState, Direction, JournalStatus, OrderFilter, Reservation,
    ReservationState, ReserveOutcome,
};
use serde_json::{json, Value};
use support::{config_text, customer, wait_until, Fake, Harness, Outcome, DEADLINE, ORDERS_TO_ERP};

fn order(number: &str, lines: &[(&str, i64)], status: &str) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, q)| json!({"sku": sku, "quantity": q, "unit_price_minor": 1000}))
        .collect();
    json!({"number": number, "customer": {"email": "ann@example.com"}, "currency": "USD",
           "status": status, "lines": lines, "total_minor": 3000})
}

fn back_flow(kind: &str) -> String {
    format!(
        r#"
[[flows]]
name = "{kind}s-to-web"
kind = "{kind}"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]
"#
    )
}

const REFUNDS_TO_ERP: &str = r#"
[[flows]]
name = "refunds"
kind = "refund"
pattern = "aggregation"
mode = "realtime"
from = ["web"]
to = ["erp"]
"#;

const ALL_KINDS: [Kind; 6] = [
    Kind::Order,
    Kind::Shipment,
    Kind::Invoice,
    Kind::Payment,
    Kind::Refund,
    Kind::Customer,
];

/// Start the channel `web` and the ERP `erp` (fakes both handling `kinds`) with `flows`;
/// `erp` shapes the ERP's fake (`|erp| erp.with_amend()`, or `|erp| erp` for the plain one).
async fn web_and_erp(flows: &str, kinds: &[Kind], erp: impl FnOnce(Fake) -> Fake) -> Harness {
    web_and_erp_with_config(&config_text(&["web", "erp"], &[], flows), kinds, erp).await
}

/// [`web_and_erp`] with a whole config text instead of just its flows.
async fn web_and_erp_with_config(
    config: &str,
    kinds: &[Kind],
    erp: impl FnOnce(Fake) -> Fake,
) -> Harness {
    Harness::start(
        config,
        vec![Fake::new("web", kinds), erp(Fake::new("erp", kinds))],
    )
    .await
}

async fn state(h: &Harness, key: &str) -> String {
    h.engine
        .order_history(key)
        .await
        .expect("order_history")
        .map(|o| o.order.state)
        .unwrap_or_default()
}

async fn wait_state(h: &Harness, key: &str, want: &str) {
    wait_until(&format!("order {key} is {want}"), DEADLINE, async || {
        h.journal_pending().await == 0 && state(h, key).await == want
    })
    .await;
}

fn ops(fake: &Fake, key: &str) -> Vec<(String, Option<String>, bool)> {
    fake.writes_of(key)
        .iter()
        .map(|w| {
            (
                w.op.op.clone(),
                w.op.payload
                    .get("reference")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                w.ok(),
            )
        })
        .collect()
}

fn shipment(id: &str, lines: &[(&str, i64)], status: &str, tracking: &str) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, q)| json!({"sku": sku, "quantity": q}))
        .collect();
    json!({"id": id, "order": "web/1001", "status": status, "carrier": "UPS",
           "tracking_number": tracking, "lines": lines})
}

async fn open_dead_letters(h: &Harness) -> Vec<concord_store::DeadLetter> {
    h.store
        .dead_letters(DeadLetterFilter {
            state: Some(DeadLetterState::Open),
            ..DeadLetterFilter::default()
        })
        .await
        .expect("dead letters")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_machine_runs_through_the_engine() {
    let flows = format!(
        "{ORDERS_TO_ERP}{}{}{}{REFUNDS_TO_ERP}",
        back_flow("shipment"),
        back_flow("invoice"),
        back_flow("payment")
    );
    let h = web_and_erp(&flows, &ALL_KINDS, |erp| erp).await;
    let (erp, web) = (h.fake("erp").clone(), h.fake("web").clone());
    let key = "web/1001";
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("1"),
            order("1001", &[("A", 2), ("B", 1)], "placed"),
        )],
    )
    .await;
    wait_state(&h, key, "accepted").await;
    assert_eq!(ops(&erp, key), [("create".into(), None, true)]);

    // Two shipments with their own tracking numbers, each sent to the channel.
    h.capture(
        "erp",
        &[(
            Kind::Shipment,
            "S1",
            Some("1"),
            shipment("S1", &[("A", 2)], "shipped", "1Z1"),
        )],
    )
    .await;
    wait_state(&h, key, "partially_shipped").await;
    h.capture(
        "erp",
        &[(
            Kind::Shipment,
            "S2",
            Some("1"),
            shipment("S2", &[("B", 1)], "shipped", "1Z2"),
        )],
    )
    .await;
    wait_state(&h, key, "shipped").await;
    wait_until("both shipments reach the channel", DEADLINE, async || {
        web.done_of("web/1001:S1").len() == 1 && web.done_of("web/1001:S2").len() == 1
    })
    .await;
    assert_eq!(
        web.done_of("web/1001:S2")[0].op.payload["tracking_number"],
        "1Z2"
    );

    // Cancelling now is illegal: refused, recorded, not applied, nothing sent to the ERP.
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("2"),
            order("1001", &[("A", 2), ("B", 1)], "cancelled"),
        )],
    )
    .await;
    wait_until("the cancellation is processed", DEADLINE, async || {
        h.journal_pending().await == 0
    })
    .await;
    assert_eq!(state(&h, key).await, "shipped");
    let dl = open_dead_letters(&h).await;
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(dl[0].direction, Direction::Inbound);
    assert_eq!(dl[0].key, key);
    assert!(
        dl[0].reason.contains("can no longer be cancelled"),
        "{}",
        dl[0].reason
    );

    h.capture(
        "erp",
        &[(
            Kind::Invoice,
            "INV-1",
            Some("1"),
            json!({"number": "INV-1", "order": key, "status": "posted", "currency": "USD",
                   "total_minor": 3000}),
        )],
    )
    .await;
    wait_state(&h, key, "invoiced").await;
    h.capture(
        "erp",
        &[(
            Kind::Payment,
            "P1",
            Some("1"),
            json!({"id": "P1", "order": key, "invoice": "INV-1", "amount_minor": 3000,
                   "currency": "USD", "status": "captured"}),
        )],
    )
    .await;
    wait_state(&h, key, "paid").await;
    h.capture(
        "erp",
        &[
            (
                Kind::Shipment,
                "S1",
                Some("2"),
                shipment("S1", &[("A", 2)], "delivered", "1Z1"),
            ),
            (
                Kind::Shipment,
                "S2",
                Some("2"),
                shipment("S2", &[("B", 1)], "delivered", "1Z2"),
            ),
        ],
    )
    .await;
    wait_state(&h, key, "closed").await;
    wait_until(
        "the invoice and the payment reach the channel",
        DEADLINE,
        async || web.done_of("web/1001:INV-1").len() == 1 && web.done_of("web/1001:P1").len() == 1,
    )
    .await;
    assert_eq!(
        web.done_of("web/1001:INV-1")[0].op.payload["total_minor"],
        3000
    );
    h.capture(
        "web",
        &[(
            Kind::Refund,
            "R1",
            Some("1"),
            json!({"id": "R1", "order": key, "amount_minor": 1000, "currency": "USD",
                   "lines": [{"sku": "B", "quantity": 1}], "restock": true}),
        )],
    )
    .await;
    wait_state(&h, key, "partially_refunded").await;
    wait_until("the refund reaches the ERP", DEADLINE, async || {
        erp.done_of("web/1001:R1").len() == 1
    })
    .await;
    assert_eq!(erp.done_of("web/1001:R1")[0].op.op, "create");
    assert!(
        erp.writes_of(key).iter().all(|w| w.op.op != "cancel"),
        "the refused cancellation never reached the ERP"
    );

    let hist = h.engine.order_history(key).await.unwrap().unwrap();
    let moves: Vec<(Option<&str>, &str, bool)> = hist
        .events
        .iter()
        .map(|e| {
            (
                e.event.from.as_deref(),
                e.event.to.as_str(),
                e.event.applied,
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            (None, "placed", true),
            (Some("placed"), "accepted", true),
            (Some("accepted"), "partially_shipped", true),
            (Some("partially_shipped"), "shipped", true),
            (Some("shipped"), "cancelled", false),
            (Some("shipped"), "invoiced", true),
            (Some("invoiced"), "paid", true),
            (Some("paid"), "closed", true),
            (Some("closed"), "partially_refunded", true),
        ]
    );
    let refused = &hist.events[4].event;
    assert!(refused
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("refund or return it instead"));
    assert!(hist.journal.iter().any(|j| j.kind == Kind::Shipment));
    assert!(hist
        .journal
        .iter()
        .any(|j| j.status == JournalStatus::Rejected && j.kind == Kind::Order));
    let delivered: Vec<(&str, &str)> = hist
        .attempts
        .iter()
        .filter(|a| a.outcome == "delivered")
        .map(|a| (a.dest.as_str(), a.key.as_str()))
        .collect();
    assert!(delivered.contains(&("erp", key)));
    assert!(delivered.contains(&("web", "web/1001:S1")));
    assert!(delivered.contains(&("erp", "web/1001:R1")));
    assert_eq!(hist.dead_letters.len(), 1);
    let audit = h.store.audit_log(100).await.unwrap();
    assert!(audit.iter().any(|a| a.event.event == "order.rejected"));
    let counts = h.engine.order_counts().await.unwrap();
    assert_eq!(counts.get("partially_refunded"), Some(&1));
    let listed = h
        .engine
        .orders(OrderFilter {
            state: Some("partially_refunded".into()),
            ..OrderFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, key);
    h.stop().await;
}

/// The channel `web` captures order 1001 (version 1): 2 of A, placed.
async fn place_1001(h: &Harness) {
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("1"),
            order("1001", &[("A", 2)], "placed"),
        )],
    )
    .await;
}

/// Place an order, wait for the ERP create, then send an edit (A: 2 → 3, a new line C).
async fn place_then_edit(h: &Harness) {
    place_1001(h).await;
    wait_state(h, "web/1001", "accepted").await;
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("2"),
            order("1001", &[("A", 3), ("C", 1)], "placed"),
        )],
    )
    .await;
    wait_until("the edit is processed", DEADLINE, async || {
        h.journal_pending().await == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_amended_where_the_erp_can_amend() {
    let h = web_and_erp(ORDERS_TO_ERP, &[Kind::Order], |erp| erp.with_amend()).await;
    place_then_edit(&h).await;
    let erp = h.fake("erp").clone();
    wait_until("the amend is delivered", DEADLINE, async || {
        erp.done_of("web/1001").len() == 2 && h.drained().await
    })
    .await;
    assert_eq!(
        ops(&erp, "web/1001"),
        [("create".into(), None, true), ("amend".into(), None, true)]
    );
    let amend = &erp.writes_of("web/1001")[1].op;
    assert_eq!(amend.payload["lines"][0]["quantity"], 3);
    assert_eq!(amend.payload["lines"][1]["sku"], "C");
    let hist = h.engine.order_history("web/1001").await.unwrap().unwrap();
    assert!(hist.events.iter().any(|e| e.event.event == "edit"));
    assert_eq!(hist.order.state, "accepted");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_cancels_and_replaces_where_the_erp_cannot_amend() {
    let h = web_and_erp(ORDERS_TO_ERP, &[Kind::Order], |erp| erp).await;
    place_then_edit(&h).await;
    let erp = h.fake("erp").clone();
    wait_until("the replacement is delivered", DEADLINE, async || {
        erp.done_of("web/1001").len() == 3 && h.drained().await
    })
    .await;
    // A second edit replaces the replacement.
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("3"),
            order("1001", &[("A", 1)], "placed"),
        )],
    )
    .await;
    wait_until(
        "the second replacement is delivered",
        DEADLINE,
        async || erp.done_of("web/1001").len() == 5 && h.drained().await,
    )
    .await;
    let r2 = Some("web/1001~2".to_string());
    let r3 = Some("web/1001~3".to_string());
    assert_eq!(
        ops(&erp, "web/1001"),
        [
            ("create".into(), None, true),
            ("cancel".into(), None, true),
            ("create".into(), r2.clone(), true),
            ("cancel".into(), r2, true),
            ("create".into(), r3.clone(), true),
        ]
    );
    let last = &erp.writes_of("web/1001")[4].op;
    assert_eq!(last.payload["lines"][0]["quantity"], 1);
    let hist = h.engine.order_history("web/1001").await.unwrap().unwrap();
    assert_eq!(hist.order.facts["reference"], "web/1001~3");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_refused_under_the_reject_policy() {
    let config = format!(
        "{}\n[orders]\nedits = \"reject\"\n",
        config_text(&["web", "erp"], &[], ORDERS_TO_ERP)
    );
    let h = web_and_erp_with_config(&config, &[Kind::Order], |erp| erp).await;
    place_then_edit(&h).await;
    let dl = open_dead_letters(&h).await;
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert!(
        dl[0].reason.contains("cannot amend orders"),
        "{}",
        dl[0].reason
    );
    assert!(dl[0].reason.contains("edits = \"reject\""));
    let erp = h.fake("erp").clone();
    wait_until("drained", DEADLINE, async || h.drained().await).await;
    assert_eq!(ops(&erp, "web/1001"), [("create".into(), None, true)]);
    let e = h
        .store
        .entity(Kind::Order, "web/1001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e.state["lines"][0]["quantity"], 2,
        "the edit is not applied"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_after_shipment_is_refused_with_a_reason() {
    let flows = format!("{ORDERS_TO_ERP}{}", back_flow("shipment"));
    let h = web_and_erp(&flows, &[Kind::Order, Kind::Shipment], |erp| {
        erp.with_amend()
    })
    .await;
    place_1001(&h).await;
    wait_state(&h, "web/1001", "accepted").await;
    h.capture(
        "erp",
        &[(
            Kind::Shipment,
            "S1",
            Some("1"),
            shipment("S1", &[("A", 2)], "shipped", "1Z1"),
        )],
    )
    .await;
    wait_state(&h, "web/1001", "shipped").await;
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("2"),
            order("1001", &[("A", 5)], "placed"),
        )],
    )
    .await;
    wait_until("the edit is processed", DEADLINE, async || {
        h.journal_pending().await == 0
    })
    .await;
    let dl = open_dead_letters(&h).await;
    assert_eq!(dl.len(), 1);
    assert!(
        dl[0].reason.contains("goods have shipped"),
        "{}",
        dl[0].reason
    );
    let hist = h.engine.order_history("web/1001").await.unwrap().unwrap();
    let last = hist.events.last().unwrap();
    assert!(!last.event.applied);
    assert_eq!(hist.order.state, "shipped");
    let erp = h.fake("erp").clone();
    wait_until("drained", DEADLINE, async || h.drained().await).await;
    assert!(erp.writes_of("web/1001").iter().all(|w| w.op.op != "amend"));
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

[inventory]
source = "erp"
[inventory.channels.web]
locations = ["WH"]
"#;

/// Once the ledger has a figure of SKU `A`: reserve `quantity` of it for `cart` on `web` and
/// commit the reservation to order 1001 (a checkout through the pool).
async fn checkout_a(h: &Harness, cart: &str, quantity: i64) -> Reservation {
    wait_until("the ledger has the figure", DEADLINE, async || {
        h.store
            .levels(&["A".to_string()])
            .await
            .is_ok_and(|l| !l.is_empty())
    })
    .await;
    let line = Line {
        sku: "A".into(),
        quantity,
    };
    let r = match h.engine.reserve("web", cart, vec![line]).await.unwrap() {
        ReserveOutcome::Reserved(r) => r,
        other => panic!("expected a reservation, got {other:?}"),
    };
    h.engine.commit_reservation(&r.id, "1001").await.unwrap();
    r
}

async fn held(h: &Harness, sku: &str) -> i64 {
    h.store
        .levels(&[sku.to_string()])
        .await
        .unwrap()
        .iter()
        .map(|l| l.held)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_follow_edits_and_cancellations() {
    let flows = format!("{ORDERS_TO_ERP}{POOL}");
    let kinds = [Kind::Order, Kind::Stock];
    let h = web_and_erp(&flows, &kinds, |erp| erp.with_amend()).await;
    h.capture(
        "erp",
        &[(
            Kind::Stock,
            "A@WH",
            Some("1"),
            json!({"sku": "A", "location": "WH", "on_hand": 10}),
        )],
    )
    .await;
    let r = checkout_a(&h, "cart-1", 2).await;
    assert_eq!(held(&h, "A").await, 2);
    place_1001(&h).await;
    wait_state(&h, "web/1001", "accepted").await;

    // An increase the pool covers: the reservation grows with the edit.
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("2"),
            order("1001", &[("A", 5)], "placed"),
        )],
    )
    .await;
    wait_until("the edit is processed", DEADLINE, async || {
        h.journal_pending().await == 0
    })
    .await;
    assert_eq!(held(&h, "A").await, 5);
    // One it cannot: refused, nothing oversold, nothing sent.
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("3"),
            order("1001", &[("A", 11)], "placed"),
        )],
    )
    .await;
    wait_until("the second edit is processed", DEADLINE, async || {
        h.journal_pending().await == 0
    })
    .await;
    assert_eq!(held(&h, "A").await, 5, "never more than the pool");
    let dl = open_dead_letters(&h).await;
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert!(
        dl[0]
            .reason
            .contains("A needs 6 more but only 5 can be reserved"),
        "{}",
        dl[0].reason
    );

    // Cancelled by the channel: the reservation is released, the ERP order cancelled.
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("4"),
            order("1001", &[("A", 5)], "cancelled"),
        )],
    )
    .await;
    wait_state(&h, "web/1001", "cancelled").await;
    assert_eq!(held(&h, "A").await, 0);
    let r = h.engine.reservation(&r.id).await.unwrap();
    assert_eq!(r.state, concord_store::ReservationState::Cancelled);
    let erp = h.fake("erp").clone();
    wait_until("the ERP order is cancelled", DEADLINE, async || {
        erp.done_of("web/1001").iter().any(|w| w.op.op == "cancel")
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_the_erp_cannot_record_needs_attention() {
    let flows = format!("{ORDERS_TO_ERP}{REFUNDS_TO_ERP}");
    let h = web_and_erp(&flows, &[Kind::Order, Kind::Refund], |erp| {
        erp.without_write(Kind::Refund)
    })
    .await;
    h.capture(
        "web",
        &[
            (
                Kind::Order,
                "1001",
                Some("1"),
                order("1001", &[("A", 2)], "placed"),
            ),
            (
                Kind::Refund,
                "R1",
                Some("1"),
                json!({"id": "R1", "order": "web/1001", "amount_minor": 500, "currency": "USD"}),
            ),
        ],
    )
    .await;
    wait_until("processed and delivered", DEADLINE, async || {
        h.journal_pending().await == 0 && h.drained().await
    })
    .await;
    let dl = open_dead_letters(&h).await;
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(dl[0].direction, Direction::Outbound);
    assert_eq!(dl[0].kind, Kind::Refund);
    assert!(
        dl[0].reason.starts_with("needs attention"),
        "{}",
        dl[0].reason
    );
    assert!(dl[0].reason.contains("cannot record refunds"));
    assert!(h.fake("erp").writes_of("web/1001:R1").is_empty());
    assert_eq!(state(&h, "web/1001").await, "partially_refunded");
    let hist = h.engine.order_history("web/1001").await.unwrap().unwrap();
    assert_eq!(hist.dead_letters.len(), 1, "the order's history shows it");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_parked_until_its_customer_exists() {
    let flows = format!(
        "{ORDERS_TO_ERP}{}",
        r#"
[[flows]]
name = "customers"
kind = "customer"
pattern = "aggregation"
mode = "realtime"
from = ["web"]
to = ["erp"]
"#
    );
    let kinds = [Kind::Customer, Kind::Order];
    let h = web_and_erp(&flows, &kinds, |erp| erp).await;
    place_1001(&h).await;
    wait_until("the order is parked", DEADLINE, async || {
        h.engine.parked(10).await.is_ok_and(|p| !p.is_empty())
    })
    .await;
    let parked = h.engine.parked(10).await.unwrap();
    assert_eq!(parked[0].key, "web/1001");
    assert_eq!(parked[0].dest, "erp");
    assert_eq!(
        parked[0].waiting_on,
        vec![(Kind::Customer, "ann@example.com".to_string())]
    );
    assert_eq!(state(&h, "web/1001").await, "placed");
    let erp = h.fake("erp").clone();
    assert!(erp.writes().is_empty());
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
    wait_state(&h, "web/1001", "accepted").await;
    assert!(h.engine.parked(10).await.unwrap().is_empty());
    assert_eq!(erp.done_of("web/1001").len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_order_webhook_three_times_creates_one_erp_order() {
    let h = web_and_erp(ORDERS_TO_ERP, &[Kind::Order], |erp| erp).await;
    let o = order("1001", &[("A", 2)], "placed");
    // Webhook retries: the same delivery twice (same version), then once more re-stamped.
    for version in ["1", "1", "2"] {
        h.capture("web", &[(Kind::Order, "1001", Some(version), o.clone())])
            .await;
    }
    wait_until("processed and delivered", DEADLINE, async || {
        h.journal_pending().await == 0 && h.drained().await
    })
    .await;
    let erp = h.fake("erp").clone();
    assert_eq!(ops(&erp, "web/1001"), [("create".into(), None, true)]);
    let hist = h.engine.order_history("web/1001").await.unwrap().unwrap();
    assert_eq!(
        hist.journal.len(),
        2,
        "the exact repeat is dropped at the journal"
    );
    assert_eq!(
        hist.attempts
            .iter()
            .filter(|a| a.outcome == "delivered")
            .count(),
        1
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_from_the_erp_reaches_the_channel_and_releases_the_reservation() {
    let flows = format!(
        "{ORDERS_TO_ERP}{POOL}{}",
        r#"
[[flows]]
name = "orders-back"
kind = "order"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]
"#
    );
    let kinds = [Kind::Order, Kind::Stock];
    let h = web_and_erp(&flows, &kinds, |erp| erp).await;
    h.capture(
        "erp",
        &[(
            Kind::Stock,
            "A@WH",
            Some("1"),
            json!({"sku": "A", "location": "WH", "on_hand": 10}),
        )],
    )
    .await;
    checkout_a(&h, "cart-9", 3).await;
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("1"),
            order("1001", &[("A", 3)], "placed"),
        )],
    )
    .await;
    wait_state(&h, "web/1001", "accepted").await;
    let erp = h.fake("erp").clone();
    let erp_id = erp
        .external_id(Kind::Order, "web/1001")
        .expect("the ERP order's id");
    // The ERP cancels its order (its record names the channel it came from).
    let mut cancelled = order("1001", &[("A", 3)], "cancelled");
    cancelled["channel"] = json!("web");
    h.capture("erp", &[(Kind::Order, &erp_id, Some("7"), cancelled)])
        .await;
    wait_state(&h, "web/1001", "cancelled").await;
    assert_eq!(held(&h, "A").await, 0, "the reservation is released");
    let web = h.fake("web").clone();
    wait_until("the channel is told", DEADLINE, async || {
        web.done_of("web/1001").iter().any(|w| w.op.op == "cancel")
    })
    .await;
    // Un-cancelling is refused.
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("2"),
            order("1001", &[("A", 3)], "placed"),
        )],
    )
    .await;
    wait_until("processed", DEADLINE, async || {
        h.journal_pending().await == 0
    })
    .await;
    assert_eq!(state(&h, "web/1001").await, "cancelled");
    let dl = open_dead_letters(&h).await;
    assert!(
        dl.iter().any(|d| d.reason.contains("is cancelled")),
        "{dl:?}"
    );
    h.stop().await;
}

/// Payments (and refunds, shipments, invoices) are keyed `{order}:{id}`: a channel makes its
/// ids unique only among its own records, so two stores both numbering payments `pay_1` are two
/// payments of two orders — both reach the ERP, neither overwrites the other, nothing is
/// refused. (Before, the key was the id alone: web2's `pay_1` merged into web1's, then was
/// dead-lettered as a clash.) A payment whose `order` later changes at its channel is refused
/// visibly (its xref names the record of the first order), never moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_payment_id_from_two_channels_is_two_payments() {
    let flows = r#"
[[flows]]
name = "orders"
kind = "order"
pattern = "aggregation"
mode = "realtime"
from = ["web1", "web2"]
to = ["erp"]

[[flows]]
name = "payments"
kind = "payment"
pattern = "aggregation"
mode = "realtime"
from = ["web1", "web2"]
to = ["erp"]
"#;
    let kinds = [Kind::Order, Kind::Payment];
    let h = Harness::start(
        &config_text(&["web1", "web2", "erp"], &[], flows),
        vec![
            Fake::new("web1", &kinds),
            Fake::new("web2", &kinds),
            Fake::new("erp", &kinds),
        ],
    )
    .await;
    for (channel, number) in [("web1", "1001"), ("web1", "1002"), ("web2", "2001")] {
        h.capture(
            channel,
            &[(
                Kind::Order,
                number,
                Some("1"),
                order(number, &[("A", 1)], "placed"),
            )],
        )
        .await;
        wait_state(&h, &format!("{channel}/{number}"), "accepted").await;
    }
    let payment = |order: &str, amount: i64| {
        json!({"id": "pay_1", "order": order, "amount_minor": amount, "currency": "USD",
               "status": "captured"})
    };
    for (channel, order_key, amount) in [("web1", "web1/1001", 3000), ("web2", "web2/2001", 1200)] {
        h.capture(
            channel,
            &[(
                Kind::Payment,
                "pay_1",
                Some("1"),
                payment(order_key, amount),
            )],
        )
        .await;
    }
    wait_until("both payments reach the ERP", DEADLINE, async || {
        let erp = h.fake("erp");
        erp.done_of("web1/1001:pay_1").len() == 1
            && erp.done_of("web2/2001:pay_1").len() == 1
            && h.journal_pending().await == 0
            && h.drained().await
    })
    .await;
    let erp = h.fake("erp").clone();
    for (key, order_key, amount) in [
        ("web1/1001:pay_1", "web1/1001", 3000),
        ("web2/2001:pay_1", "web2/2001", 1200),
    ] {
        let sent: Vec<(Value, Value, Value)> = erp
            .writes_of(key)
            .iter()
            .map(|w| {
                let p = &w.op.payload;
                (
                    p["id"].clone(),
                    p["order"].clone(),
                    p["amount_minor"].clone(),
                )
            })
            .collect();
        assert_eq!(
            sent,
            [(json!("pay_1"), json!(order_key), json!(amount))],
            "{key}"
        );
    }
    let dls = open_dead_letters(&h).await;
    assert!(dls.is_empty(), "{dls:?}");
    for (key, payments) in [
        ("web1/1001", json!({"pay_1": 3000})),
        ("web2/2001", json!({"pay_1": 1200})),
    ] {
        let hist = h.engine.order_history(key).await.unwrap().unwrap();
        assert_eq!(hist.order.facts["payments"], payments, "{key}");
    }
    // web1 now says its pay_1 belongs to another of its orders: refused, not moved.
    h.capture(
        "web1",
        &[(
            Kind::Payment,
            "pay_1",
            Some("2"),
            payment("web1/1002", 3000),
        )],
    )
    .await;
    wait_until("processed", DEADLINE, async || {
        h.journal_pending().await == 0 && h.drained().await
    })
    .await;
    let dls = open_dead_letters(&h).await;
    assert_eq!(dls.len(), 1, "{dls:?}");
    assert_eq!(
        (dls[0].endpoint.as_str(), dls[0].kind),
        ("web1", Kind::Payment)
    );
    for part in ["web1/1001:pay_1", "web1/1001", "web1/1002", "cannot move"] {
        assert!(dls[0].reason.contains(part), "{part}: {}", dls[0].reason);
    }
    assert!(erp.writes_of("web1/1002:pay_1").is_empty());
    let hist = h.engine.order_history("web1/1002").await.unwrap().unwrap();
    assert_eq!(hist.order.facts["payments"], json!({}));
    h.stop().await;
}

/// A partial refund before anything shipped (a line the store could not supply, refunded) does
/// not make the order "shipped": the customer may still cancel the rest, and the cancellation
/// reaches the ERP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_partially_refunded_before_shipment_can_still_be_cancelled() {
    let flows = format!("{ORDERS_TO_ERP}{REFUNDS_TO_ERP}");
    let h = web_and_erp(&flows, &[Kind::Order, Kind::Refund], |erp| erp).await;
    let key = "web/1001";
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("1"),
            order("1001", &[("A", 2), ("B", 1)], "placed"),
        )],
    )
    .await;
    wait_state(&h, key, "accepted").await;
    h.capture(
        "web",
        &[(
            Kind::Refund,
            "R1",
            Some("1"),
            json!({"id": "R1", "order": key, "amount_minor": 1000, "currency": "USD",
                   "lines": [{"sku": "B", "quantity": 1}]}),
        )],
    )
    .await;
    wait_state(&h, key, "partially_refunded").await;
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("2"),
            order("1001", &[("A", 2), ("B", 1)], "cancelled"),
        )],
    )
    .await;
    wait_state(&h, key, "cancelled").await;
    let erp = h.fake("erp").clone();
    wait_until("the ERP order is cancelled", DEADLINE, async || {
        erp.done_of(key).iter().any(|w| w.op.op == "cancel")
    })
    .await;
    assert!(open_dead_letters(&h).await.is_empty());
    h.stop().await;
}

/// An edit after the ERP accepted the order and its figures took the order over (the hub's
/// reservation lines are released, the reservation ended) still goes through the pool: an
/// increase the pool cannot cover is refused, one it can is held until the ERP's figures
/// include the edited order — never sold twice in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increase_after_the_erp_took_the_order_over_is_still_reserved() {
    let flows = format!(
        "{ORDERS_TO_ERP}{}",
        POOL.replace(
            "[inventory]\nsource = \"erp\"",
            "[inventory]\nsource = \"erp\"\nrelease_grace = \"1ms\""
        )
    );
    let kinds = [Kind::Order, Kind::Stock];
    let h = web_and_erp(&flows, &kinds, |erp| erp.with_amend()).await;
    let figure = |version: &str, committed: i64| {
        (
            Kind::Stock,
            "A@WH",
            Some(version.to_string()),
            json!({"sku": "A", "location": "WH", "on_hand": 10, "committed": committed}),
        )
    };
    let (k, id, v, rec) = figure("1", 0);
    h.capture("erp", &[(k, id, v.as_deref(), rec)]).await;
    checkout_a(&h, "cart-1", 2).await;
    place_1001(&h).await;
    wait_state(&h, "web/1001", "accepted").await;
    // The ERP's next figure holds the order: the hub's lines are released.
    let started = std::time::Instant::now();
    wait_until("a moment after the acceptance", DEADLINE, async || {
        started.elapsed() > std::time::Duration::from_millis(5)
    })
    .await;
    let (k, id, v, rec) = figure("2", 2);
    h.capture("erp", &[(k, id, v.as_deref(), rec)]).await;
    wait_until("the reservation is released", DEADLINE, async || {
        held(&h, "A").await == 0
    })
    .await;

    // 10 on hand, 2 committed by the ERP: an increase of 9 cannot be covered.
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("2"),
            order("1001", &[("A", 11)], "placed"),
        )],
    )
    .await;
    wait_until("the edit is processed", DEADLINE, async || {
        h.journal_pending().await == 0
    })
    .await;
    let dl = open_dead_letters(&h).await;
    assert_eq!(dl.len(), 1, "the uncoverable increase is refused: {dl:?}");
    assert!(dl[0].reason.contains("cannot cover"), "{}", dl[0].reason);
    assert_eq!(held(&h, "A").await, 0);
    // An increase of 3 can: held by the hub until the ERP's figures include it.
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("3"),
            order("1001", &[("A", 5)], "placed"),
        )],
    )
    .await;
    wait_until("the covered edit is processed", DEADLINE, async || {
        h.journal_pending().await == 0
    })
    .await;
    assert_eq!(held(&h, "A").await, 3);
    h.stop().await;
}

/// The hub's available-to-sell of SKU `A` (buffer 0): what the ERP has free less the hub's
/// holds, with the stored version of the ERP's figure.
async fn ats_a(h: &Harness) -> (i64, Option<String>) {
    let levels = h.store.levels(&["A".to_string()]).await.unwrap();
    let ats = levels
        .iter()
        .map(|l| l.on_hand - l.committed - l.held - l.backordered)
        .sum();
    (ats, levels.first().and_then(|l| l.version.clone()))
}

/// Cancel-and-replace of an order the ERP's figures took over: from the planning on, the hub
/// holds the order again, so the ERP's figure showing the cancel (its committed drops) does
/// not raise available-to-sell by the order's quantity; once the replacement is accepted, the
/// next figure (which includes it) releases the hold, exactly once, and available-to-sell is
/// the ERP's free stock again. The edit (2 → 9 of 10 on hand, 2 committed by the ERP) fits:
/// units held again while the ERP still commits them are not counted twice.
/// Planned by the engine (the ERP does not declare `amend`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_replace_keeps_the_order_held_until_the_replacement_is_in_the_figures() {
    replacement_is_held(false).await;
}

/// Planned at settlement (the ERP declares `amend` but answers "cannot amend this order").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_amend_keeps_the_order_held_until_the_replacement_is_in_the_figures() {
    replacement_is_held(true).await;
}

async fn replacement_is_held(amend: bool) {
    let flows = format!(
        "{ORDERS_TO_ERP}{}",
        POOL.replace(
            "[inventory]\nsource = \"erp\"",
            "[inventory]\nsource = \"erp\"\nrelease_grace = \"1ms\""
        )
    );
    let kinds = [Kind::Order, Kind::Stock];
    let h = web_and_erp(
        &flows,
        &kinds,
        |erp| if amend { erp.with_amend() } else { erp },
    )
    .await;
    let erp = h.fake("erp").clone();
    let figure = |version: &str, committed: i64| {
        (
            Kind::Stock,
            "A@WH",
            Some(version.to_string()),
            json!({"sku": "A", "location": "WH", "on_hand": 10, "committed": committed}),
        )
    };
    let send = async |version: &str, committed: i64| {
        let (k, id, v, rec) = figure(version, committed);
        h.capture("erp", &[(k, id, v.as_deref(), rec)]).await;
        wait_until(
            &format!("the ledger has figure {version}"),
            DEADLINE,
            async || ats_a(&h).await.1.as_deref() == Some(version),
        )
        .await;
    };
    let a_moment = async || {
        let started = std::time::Instant::now();
        wait_until("a moment after the acceptance", DEADLINE, async || {
            started.elapsed() > std::time::Duration::from_millis(5)
        })
        .await;
    };
    send("1", 0).await;
    let r = checkout_a(&h, "cart-1", 2).await;
    place_1001(&h).await;
    wait_state(&h, "web/1001", "accepted").await;
    a_moment().await;
    send("2", 2).await;
    wait_until(
        "the ERP's figures took the order over",
        DEADLINE,
        async || held(&h, "A").await == 0,
    )
    .await;
    assert_eq!(ats_a(&h).await.0, 8);

    // (The amend is refused;) the cancel goes through; the replacement's create waits (502s).
    if amend {
        erp.push_key_outcomes(
            "web/1001",
            [Outcome::CannotAmend(CANNOT_ADD.into()), Outcome::Done],
        );
    } else {
        erp.push_key_outcomes("web/1001", [Outcome::Done]);
    }
    erp.set_key("web/1001", Some(Outcome::Transient));
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("2"),
            order("1001", &[("A", 9)], "placed"),
        )],
    )
    .await;
    wait_until(
        "the cancel is delivered, the replacement not",
        DEADLINE,
        async || {
            erp.done_of("web/1001").len() == 2
                && erp
                    .writes_of("web/1001")
                    .iter()
                    .any(|w| w.op.op == "create" && !w.ok())
        },
    )
    .await;
    assert_eq!(
        held(&h, "A").await,
        9,
        "the whole edited order is held again"
    );
    // The ERP's figure after the cancel: nothing committed for the order any more.
    send("3", 0).await;
    assert_eq!(
        held(&h, "A").await,
        9,
        "the figure showing the cancel releases nothing"
    );
    assert_eq!(ats_a(&h).await.0, 1, "never more than 10 - 9 to sell");

    // The replacement is accepted; the ERP's next figure includes it: released once.
    erp.set_key("web/1001", None);
    wait_until("the replacement is delivered", DEADLINE, async || {
        erp.done_of("web/1001").len() == 3 && h.drained().await
    })
    .await;
    assert_eq!(ats_a(&h).await.0, 1);
    a_moment().await;
    send("4", 9).await;
    wait_until("the hold is released", DEADLINE, async || {
        held(&h, "A").await == 0
    })
    .await;
    assert_eq!(ats_a(&h).await.0, 1, "the ERP's free stock, counted once");
    let r = h
        .store
        .reservation(&r.id)
        .await
        .unwrap()
        .expect("the reservation");
    assert_eq!(r.state, ReservationState::Released);
    assert_eq!(r.lines.iter().map(|l| l.quantity).sum::<i64>(), 9);
    h.stop().await;
}

/// What the fake ERP answers to an amend it cannot apply (Tryton's words for the common case).
const CANNOT_ADD: &str = "sale 7 is processing and Tryton's sale amendment cannot add a line";

/// An ERP that declares `amend` but cannot apply this edit: the engine cancels the ERP order
/// and creates the replacement `{key}~2`, each once; a later edit amends the replacement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amend_the_erp_cannot_apply_is_cancelled_and_replaced() {
    let h = web_and_erp(ORDERS_TO_ERP, &[Kind::Order], |erp| erp.with_amend()).await;
    let erp = h.fake("erp").clone();
    erp.push_key_outcomes(
        "web/1001",
        [Outcome::Done, Outcome::CannotAmend(CANNOT_ADD.into())],
    );
    place_then_edit(&h).await;
    wait_until("the replacement is delivered", DEADLINE, async || {
        erp.done_of("web/1001").len() == 3 && h.drained().await
    })
    .await;
    let r2 = Some("web/1001~2".to_string());
    assert_eq!(
        ops(&erp, "web/1001"),
        [
            ("create".into(), None, true),
            ("amend".into(), None, false),
            ("cancel".into(), None, true),
            ("create".into(), r2.clone(), true),
        ],
        "cancel then create {{key}}~2, each delivered once"
    );
    let writes = erp.writes_of("web/1001");
    assert_eq!(writes[2].op.payload["status"], "cancelled");
    assert_eq!(writes[3].op.payload["lines"][0]["quantity"], 3);
    assert_eq!(writes[3].op.payload["lines"][1]["sku"], "C");
    assert!(open_dead_letters(&h).await.is_empty());
    let hist = h.engine.order_history("web/1001").await.unwrap().unwrap();
    assert_eq!(hist.order.state, "accepted");
    assert_eq!(hist.order.facts["reference"], "web/1001~2");
    assert_eq!(hist.order.facts["replacements"], 1);
    let fallback = hist
        .events
        .iter()
        .find(|e| {
            e.event.event == "edit" && e.event.reason.as_deref().is_some_and(|r| r.contains("~2"))
        })
        .expect("an edit event for the fallback");
    let why = fallback.event.reason.as_deref().unwrap_or_default();
    assert!(fallback.event.applied);
    assert!(why.contains("`erp` cannot amend this order"), "{why}");
    assert!(why.contains(CANNOT_ADD), "{why}");
    assert!(why.contains("replaced by `web/1001~2`"), "{why}");
    let outcomes: Vec<(&str, &str)> = hist
        .attempts
        .iter()
        .map(|a| (a.op.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("create", "delivered"),
            ("amend", "refused"),
            ("cancel", "delivered"),
            ("create", "delivered"),
        ]
    );
    // The next edit amends the replacement (by its reference).
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("3"),
            order("1001", &[("A", 1), ("C", 1)], "placed"),
        )],
    )
    .await;
    wait_until(
        "the amend of the replacement is delivered",
        DEADLINE,
        async || erp.done_of("web/1001").len() == 4 && h.drained().await,
    )
    .await;
    assert_eq!(
        ops(&erp, "web/1001")[4],
        ("amend".to_string(), r2, true),
        "later edits address the replacement"
    );
    h.stop().await;
}

/// An edit that arrives while the refused amend is in flight is not sent to the old (cancelled)
/// ERP order: the replacement carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_edit_waiting_behind_a_refused_amend_goes_into_the_replacement() {
    let h = web_and_erp(ORDERS_TO_ERP, &[Kind::Order], |erp| erp.with_amend()).await;
    let erp = h.fake("erp").clone();
    erp.push_key_outcomes(
        "web/1001",
        [Outcome::Done, Outcome::CannotAmend(CANNOT_ADD.into())],
    );
    place_1001(&h).await;
    wait_state(&h, "web/1001", "accepted").await;
    erp.close();
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("2"),
            order("1001", &[("A", 3), ("C", 1)], "placed"),
        )],
    )
    .await;
    wait_until("the amend is held at the ERP", DEADLINE, async || {
        erp.waiting_at_gate() == 1
    })
    .await;
    h.capture(
        "web",
        &[(
            Kind::Order,
            "1001",
            Some("3"),
            order("1001", &[("A", 4), ("C", 2)], "placed"),
        )],
    )
    .await;
    wait_until("the second edit is processed", DEADLINE, async || {
        h.journal_pending().await == 0
    })
    .await;
    erp.open();
    wait_until("the replacement is delivered", DEADLINE, async || {
        erp.done_of("web/1001").len() == 3 && h.drained().await
    })
    .await;
    assert_eq!(
        ops(&erp, "web/1001"),
        [
            ("create".into(), None, true),
            ("amend".into(), None, false),
            ("cancel".into(), None, true),
            ("create".into(), Some("web/1001~2".into()), true),
        ]
    );
    let replacement = &erp.writes_of("web/1001")[3].op;
    assert_eq!(
        replacement.payload["lines"][0]["quantity"], 4,
        "the newest edit"
    );
    assert_eq!(replacement.payload["lines"][1]["quantity"], 2);
    assert!(open_dead_letters(&h).await.is_empty());
    h.stop().await;
}

/// Under `[orders] edits = "reject"` an amend the ERP cannot apply becomes a dead letter with
/// the ERP's reason; the ERP order is neither cancelled nor replaced; the history says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amend_the_erp_cannot_apply_is_a_dead_letter_under_reject() {
    let config = format!(
        "{}\n[orders]\nedits = \"reject\"\n",
        config_text(&["web", "erp"], &[], ORDERS_TO_ERP)
    );
    let h = web_and_erp_with_config(&config, &[Kind::Order], |erp| erp.with_amend()).await;
    let erp = h.fake("erp").clone();
    erp.push_key_outcomes(
        "web/1001",
        [Outcome::Done, Outcome::CannotAmend(CANNOT_ADD.into())],
    );
    place_then_edit(&h).await;
    wait_until("the refused amend is dead-lettered", DEADLINE, async || {
        h.drained().await && !open_dead_letters(&h).await.is_empty()
    })
    .await;
    let dl = open_dead_letters(&h).await;
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(dl[0].direction, Direction::Outbound);
    assert_eq!(dl[0].key, "web/1001");
    assert!(dl[0].reason.contains(CANNOT_ADD), "{}", dl[0].reason);
    assert!(
        dl[0].reason.contains("edits = \"reject\""),
        "{}",
        dl[0].reason
    );
    assert_eq!(
        ops(&erp, "web/1001"),
        [("create".into(), None, true), ("amend".into(), None, false)],
        "no cancel, no replacement"
    );
    let hist = h.engine.order_history("web/1001").await.unwrap().unwrap();
    let refused = hist
        .events
        .iter()
        .find(|e| e.event.event == "edit" && !e.event.applied)
        .expect("a refused edit event");
    assert!(refused
        .event
        .reason
        .as_deref()
        .is_some_and(|r| r.contains(CANNOT_ADD)));
    assert!(hist.order.facts.get("reference").is_none_or(Value::is_null));
    assert!(hist
        .attempts
        .iter()
        .any(|a| a.op == "amend" && a.outcome == "refused"));
    // Replayed (say the ERP can take it now), it is the amend it was, not an `update` an ERP
    // connector would answer done without applying the edit.
    let replayed = h.engine.replay_dead_letters(vec![dl[0].id]).await.unwrap();
    assert_eq!(replayed, [dl[0].id]);
    wait_until("the replayed amend is delivered", DEADLINE, async || {
        erp.done_of("web/1001").len() == 2 && h.drained().await
    })
    .await;
    assert_eq!(ops(&erp, "web/1001")[2], ("amend".to_string(), None, true));
    assert_eq!(
        erp.writes_of("web/1001")[2].op.payload["lines"][1]["sku"],
        "C"
    );
    assert!(open_dead_letters(&h).await.is_empty());
    h.stop().await;
}

/// After cancel-and-replace the ERP reports its original order cancelled — it was, for the
/// replacement `web/1001~2`. That ERP order is superseded, not the hub's order: the hub's order
/// stays open and the channel is not told to cancel it. The replacement's own reports (it names
/// `reference = web/1001~2`) still apply: its cancellation cancels the order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_erps_superseded_original_order_does_not_cancel_the_order() {
    let flows = format!("{ORDERS_TO_ERP}{}", back_flow("order"));
    let h = web_and_erp(&flows, &[Kind::Order], |erp| erp).await;
    place_then_edit(&h).await;
    let (erp, web) = (h.fake("erp").clone(), h.fake("web").clone());
    wait_until("the replacement is delivered", DEADLINE, async || {
        erp.done_of("web/1001").len() == 3 && h.drained().await
    })
    .await;
    let erp_order = |status: &str, reference: Option<&str>| {
        let mut o = order("1001", &[("A", 3), ("C", 1)], status);
        o["channel"] = json!("web");
        if let Some(r) = reference {
            o["reference"] = json!(r);
        }
        o
    };
    h.capture(
        "erp",
        &[(Kind::Order, "SO-1", Some("5"), erp_order("cancelled", None))],
    )
    .await;
    wait_until("processed", DEADLINE, async || {
        h.journal_pending().await == 0 && h.drained().await
    })
    .await;
    assert_eq!(state(&h, "web/1001").await, "accepted");
    let to_web: Vec<String> = web
        .writes_of("web/1001")
        .iter()
        .map(|w| w.op.op.clone())
        .collect();
    assert!(!to_web.iter().any(|op| op == "cancel"), "{to_web:?}");
    let hist = h.engine.order_history("web/1001").await.unwrap().unwrap();
    let note = hist
        .journal
        .iter()
        .filter(|j| j.endpoint == "erp")
        .filter_map(|j| j.note.clone())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(note.contains("superseded"), "{note}");
    assert!(open_dead_letters(&h).await.is_empty());
    // The replacement cancelled at the ERP: that is the order's.
    h.capture(
        "erp",
        &[(
            Kind::Order,
            "SO-2",
            Some("6"),
            erp_order("cancelled", Some("web/1001~2")),
        )],
    )
    .await;
    wait_state(&h, "web/1001", "cancelled").await;
    h.stop().await;
}

/// A store from before order-scoped keys: web1's `pay_1` is keyed by the bare id `pay_1`, and
/// (as the c21c850 guard left it) web2's external id `pay_1` is cross-referenced to that
/// record although web2 never wrote it. After the upgrade web2's `pay_1` is its own payment of
/// its own order (`web2/2001:pay_1`), delivered — not refused as another order's — and web1's
/// updates still reach the record under its old key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_id_key_from_an_older_store_is_not_another_channels_payment() {
    let flows = r#"
[[flows]]
name = "payments"
kind = "payment"
pattern = "aggregation"
mode = "realtime"
from = ["web1", "web2"]
to = ["erp"]
"#;
    let kinds = [Kind::Order, Kind::Payment];
    let h = Harness::start(
        &config_text(&["web1", "web2", "erp"], &[], flows),
        vec![
            Fake::new("web1", &kinds),
            Fake::new("web2", &kinds),
            Fake::new("erp", &kinds),
        ],
    )
    .await;
    let payment = |order: &str, amount: i64| {
        json!({"id": "pay_1", "order": order, "amount_minor": amount, "currency": "USD",
               "status": "captured"})
    };
    let old = payment("web1/1001", 3000);
    let mut batch = concord_store::ProcessBatch::default();
    batch.entities.push(concord_store::EntityWrite {
        kind: Kind::Payment,
        key: "pay_1".into(),
        hash: concord_core::content_hash(&old),
        state: old,
        endpoint: "web1".into(),
        version: "1".into(),
        at: 1,
    });
    for endpoint in ["web1", "web2"] {
        batch.xrefs.push(concord_store::Xref {
            endpoint: endpoint.into(),
            kind: Kind::Payment,
            external_id: "pay_1".into(),
            key: "pay_1".into(),
        });
    }
    h.store.apply(batch, 1).await.unwrap();
    h.capture(
        "web2",
        &[(
            Kind::Payment,
            "pay_1",
            Some("1"),
            payment("web2/2001", 1200),
        )],
    )
    .await;
    h.capture(
        "web1",
        &[(
            Kind::Payment,
            "pay_1",
            Some("2"),
            payment("web1/1001", 2900),
        )],
    )
    .await;
    let erp = h.fake("erp").clone();
    wait_until("both payments reach the ERP", DEADLINE, async || {
        erp.done_of("web2/2001:pay_1").len() == 1
            && erp.done_of("pay_1").len() == 1
            && h.journal_pending().await == 0
            && h.drained().await
    })
    .await;
    assert_eq!(
        erp.done_of("web2/2001:pay_1")[0].op.payload["amount_minor"],
        1200
    );
    assert_eq!(erp.done_of("pay_1")[0].op.payload["amount_minor"], 2900);
    let dls = open_dead_letters(&h).await;
    assert!(dls.is_empty(), "{dls:?}");
    let web1 = h
        .store
        .entity(Kind::Payment, "pay_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(web1.state["order"], "web1/1001");
    assert!(h
        .store
        .entity(Kind::Payment, "web1/1001:pay_1")
        .await
        .unwrap()
        .is_none());
    h.stop().await;
}

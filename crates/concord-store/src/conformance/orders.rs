//! Conformance checks: the order lifecycle (issue 6) — lifecycle rows and events written by
//! `apply`, acceptance and the delivery-attempt log written by `settle`, orders by state and one
//! order's history, parked items with what they wait on, and a cancelled or edited order's
//! reservation released or adjusted without overselling.
//!
//! Written only against `&dyn Store` through [`Fixture`]: never SQL, never an implementation
//! type. Each public check is listed in `store_conformance_tests!` and re-exported by
//! `conformance/mod.rs`.

use super::{
    capture, check_ledger, claim, enqueue, figure, item, position, request, reserve_ok, set_levels,
    settle, Fixture, ERP, WEB,
};
use crate::{
    AdjustOutcome, AdjustRequest, Feed, IngestOutcome, JournalStatus, NewDeadLetter, NewOrderEvent,
    OrderFilter, OrderWrite, ProcessBatch, ReservationState, Settlement, Store,
};
use concord_core::Kind;
use serde_json::json;

fn write(key: &str, state: &str, from: Option<&str>, child: Option<(Kind, &str)>) -> OrderWrite {
    OrderWrite {
        key: key.into(),
        channel: key.split('/').next().unwrap_or_default().into(),
        state: Some(state.into()),
        facts: Some(json!({"ordered": {"A": 2}, "accepted": false})),
        child: child.map(|(k, c)| (k, c.to_string())),
        event: Some(NewOrderEvent {
            at: 1_000,
            from: from.map(str::to_owned),
            to: state.into(),
            applied: true,
            event: "transition".into(),
            cause_kind: child.map(|(k, _)| k),
            cause_key: child.map(|(_, c)| c.to_string()),
            reason: None,
            journal_id: None,
        }),
    }
}

async fn apply_orders(s: &dyn Store, orders: Vec<OrderWrite>) {
    s.apply(
        ProcessBatch {
            orders,
            ..ProcessBatch::default()
        },
        1_000,
    )
    .await
    .expect("apply(orders) failed");
}

async fn state_of(s: &dyn Store, key: &str) -> String {
    s.order_lifecycles(&[key.to_string()])
        .await
        .expect("order_lifecycles")[0]
        .as_ref()
        .map(|o| o.state.clone())
        .unwrap_or_else(|| panic!("no lifecycle row for {key}"))
}

/// Lifecycle rows are written by `apply`, listed by state and channel with key paging, counted
/// by state; a refused transition records its event and leaves the row alone.
pub async fn order_lifecycle_rows_are_listed_and_counted(fx: &Fixture) {
    let s = fx.store();
    apply_orders(
        s,
        vec![
            write("web/1", "placed", None, None),
            write("web/2", "placed", None, None),
            write("b2b/7", "placed", None, None),
        ],
    )
    .await;
    apply_orders(
        s,
        vec![
            write(
                "web/2",
                "shipped",
                Some("placed"),
                Some((Kind::Shipment, "S1")),
            ),
            OrderWrite {
                state: None,
                facts: None,
                child: None,
                event: Some(NewOrderEvent {
                    applied: false,
                    reason: Some("goods have shipped".into()),
                    ..write("web/2", "cancelled", Some("shipped"), None)
                        .event
                        .unwrap()
                }),
                ..write("web/2", "cancelled", None, None)
            },
        ],
    )
    .await;
    assert_eq!(
        state_of(s, "web/2").await,
        "shipped",
        "refused: not applied"
    );
    let counts = s.order_counts().await.unwrap();
    assert_eq!(counts.get("placed"), Some(&2));
    assert_eq!(counts.get("shipped"), Some(&1));
    let placed = s
        .orders(OrderFilter {
            state: Some("placed".into()),
            ..OrderFilter::default()
        })
        .await
        .unwrap();
    let keys: Vec<&str> = placed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["b2b/7", "web/1"], "key order");
    let web = s
        .orders(OrderFilter {
            channel: Some("web".into()),
            limit: 1,
            ..OrderFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(web.len(), 1);
    assert_eq!(web[0].key, "web/1");
    assert_eq!(web[0].facts["ordered"]["A"], 2);
    let next = s
        .orders(OrderFilter {
            channel: Some("web".into()),
            after: Some("web/1".into()),
            ..OrderFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].key, "web/2");
    let h = s.order_history("web/2").await.unwrap().expect("history");
    assert_eq!(h.events.len(), 3);
    assert!(h.events[1].event.applied);
    assert_eq!(h.events[1].event.cause_key.as_deref(), Some("S1"));
    assert!(!h.events[2].event.applied);
    assert_eq!(
        h.events[2].event.reason.as_deref(),
        Some("goods have shipped")
    );
    assert_eq!(h.children, vec![(Kind::Shipment, "S1".to_string())]);
    assert_eq!(s.order_history("web/404").await.unwrap(), None);
}

/// `settle` logs every attempt with its outcome and error; an order delivered to an endpoint
/// other than its channel is accepted once (`placed → accepted`, one event); a later write of
/// the lifecycle that still says `placed` keeps the acceptance. The history gathers the journal
/// entries, attempts and dead letters of the order and of its children.
pub async fn settle_logs_attempts_and_accepts_orders(fx: &Fixture) {
    let s = fx.store();
    apply_orders(s, vec![write("web/1", "placed", None, None)]).await;
    // Journal: the order and its shipment, resolved to their keys.
    let mut ids = Vec::new();
    for (kind, ext) in [
        (Kind::Order, "o1"),
        (Kind::Shipment, "s1"),
        (Kind::Order, "x9"),
    ] {
        match s
            .ingest(vec![capture(WEB, kind, ext, "1")], None)
            .await
            .unwrap()[0]
        {
            IngestOutcome::Stored(id) => ids.push(id),
            IngestOutcome::Duplicate => panic!("fresh capture"),
        }
    }
    s.apply(
        ProcessBatch {
            journal: vec![
                (ids[0], JournalStatus::Processed, None, Some("web/1".into())),
                (ids[1], JournalStatus::Processed, None, Some("S1".into())),
                (ids[2], JournalStatus::Processed, None, Some("web/9".into())),
            ],
            orders: vec![OrderWrite {
                state: None,
                facts: None,
                event: None,
                ..write("web/1", "placed", None, Some((Kind::Shipment, "S1")))
            }],
            dead_letters: vec![NewDeadLetter {
                direction: crate::Direction::Inbound,
                endpoint: WEB.into(),
                kind: Kind::Order,
                key: "web/1".into(),
                payload: json!({}),
                reason: "edit after shipment".into(),
                journal_id: Some(ids[0]),
                flow: None,
                at: 1_000,
            }],
            ..ProcessBatch::default()
        },
        1_000,
    )
    .await
    .unwrap();

    // To the channel itself: no acceptance.
    enqueue(s, vec![item(WEB, Kind::Order, "web/1", "h0")], 1_000).await;
    let c = claim(s, WEB, 10, 1_000).await;
    settle(
        s,
        vec![Settlement::Delivered {
            id: c[0].item.id,
            token: c[0].token,
            external_id: None,
            version: None,
            at: 1_500,
        }],
    )
    .await;
    assert_eq!(state_of(s, "web/1").await, "placed");

    enqueue(s, vec![item(ERP, Kind::Order, "web/1", "h1")], 2_000).await;
    let c = claim(s, ERP, 10, 2_000).await;
    settle(
        s,
        vec![Settlement::Retry {
            id: c[0].item.id,
            token: c[0].token,
            next_at: 2_000,
            error: "HTTP 502".into(),
            count: true,
        }],
    )
    .await;
    assert_eq!(
        state_of(s, "web/1").await,
        "placed",
        "a retry accepts nothing"
    );
    let c = claim(s, ERP, 10, 3_000).await;
    let delivered = |at| Settlement::Delivered {
        id: c[0].item.id,
        token: c[0].token,
        external_id: Some("SO-1".into()),
        version: None,
        at,
    };
    settle(s, vec![delivered(3_000)]).await;
    settle(s, vec![delivered(3_100)]).await; // a stale repeat settles nothing
    assert_eq!(state_of(s, "web/1").await, "accepted");
    // A lifecycle write computed before the acceptance landed keeps it.
    apply_orders(s, vec![write("web/1", "placed", Some("placed"), None)]).await;
    let o = &s.order_lifecycles(&["web/1".into()]).await.unwrap()[0];
    let o = o.as_ref().unwrap();
    assert_eq!(o.state, "accepted");
    assert_eq!(o.facts["accepted"], true);
    assert_eq!(o.accepted_at, Some(3_000));

    let h = s.order_history("web/1").await.unwrap().unwrap();
    let accepted: Vec<_> = h
        .events
        .iter()
        .filter(|e| e.event.event == "accepted")
        .collect();
    assert_eq!(accepted.len(), 1, "{:?}", h.events);
    assert_eq!(accepted[0].event.from.as_deref(), Some("placed"));
    let outcomes: Vec<(&str, &str, Option<&str>)> = h
        .attempts
        .iter()
        .map(|a| (a.dest.as_str(), a.outcome.as_str(), a.error.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (WEB, "delivered", None),
            (ERP, "retry", Some("HTTP 502")),
            (ERP, "delivered", None)
        ]
    );
    let journal: Vec<i64> = h.journal.iter().map(|e| e.id).collect();
    assert_eq!(
        journal,
        [ids[0], ids[1]],
        "the order and its shipment, not web/9"
    );
    assert_eq!(h.dead_letters.len(), 1);
    assert_eq!(h.dead_letters[0].reason, "edit after shipment");
}

/// Parked items are listed with what they still wait on; un-parking removes them.
pub async fn parked_items_say_what_they_wait_on(fx: &Fixture) {
    let s = fx.store();
    let mut order = item(ERP, Kind::Order, "web/1", "h");
    order.waiting_on = vec![
        (Kind::Customer, "ann@example.com".into()),
        (Kind::Product, "A".into()),
    ];
    enqueue(s, vec![order], 1_000).await;
    let parked = s.parked(10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].dest, ERP);
    assert_eq!(parked[0].key, "web/1");
    assert_eq!(parked[0].since, 1_000);
    assert_eq!(
        parked[0].waiting_on,
        vec![
            (Kind::Customer, "ann@example.com".to_string()),
            (Kind::Product, "A".to_string())
        ]
    );
    s.apply(
        ProcessBatch {
            xrefs: vec![super::xref(ERP, Kind::Customer, "C1", "ann@example.com")],
            ..ProcessBatch::default()
        },
        2_000,
    )
    .await
    .unwrap();
    let parked = s.parked(10).await.unwrap();
    assert_eq!(parked[0].waiting_on, vec![(Kind::Product, "A".to_string())]);
    s.apply(
        ProcessBatch {
            xrefs: vec![super::xref(ERP, Kind::Product, "P1", "A")],
            ..ProcessBatch::default()
        },
        3_000,
    )
    .await
    .unwrap();
    assert!(s.parked(10).await.unwrap().is_empty());
}

/// A cancelled order's committed reservation is released in the `apply` that records the
/// cancellation; an edit's new quantities are applied to it without ever overselling.
pub async fn order_reservations_follow_cancellations_and_edits(fx: &Fixture) {
    let s = fx.store();
    set_levels(
        s,
        vec![figure("A", "WH1", 5, 0, "1"), figure("B", "WH1", 1, 0, "1")],
    )
    .await;
    let r = reserve_ok(s, request(WEB, "k1", &[("A", 2)], &[("WH1", 0)])).await;
    s.commit_reservation(&r.id, "web/1", 1_000)
        .await
        .unwrap()
        .unwrap();
    let feeds = |skus: &[&str]| -> Vec<(String, Vec<Feed>)> {
        skus.iter()
            .map(|s| {
                (
                    s.to_string(),
                    vec![Feed {
                        location: "WH1".into(),
                        buffer: 0,
                    }],
                )
            })
            .collect()
    };
    let adjust = |q: Vec<(&str, i64)>| AdjustRequest {
        order: "web/1".into(),
        quantities: q.into_iter().map(|(s, n)| (s.to_string(), n)).collect(),
        feeds: feeds(&["A", "B"]),
        rehold: false,
        now: 2_000,
    };
    // Increase within stock, add a line.
    match s
        .adjust_order_reservation(adjust(vec![("A", 4), ("B", 1)]))
        .await
        .unwrap()
    {
        AdjustOutcome::Adjusted(r) => assert_eq!(r.state, ReservationState::Committed),
        other => panic!("expected Adjusted, got {other:?}"),
    }
    assert_eq!(position(s, "A", "WH1").await.held, 4);
    assert_eq!(position(s, "B", "WH1").await.held, 1);
    check_ledger(s).await;
    // More than the pool has: nothing changes.
    match s
        .adjust_order_reservation(adjust(vec![("A", 6), ("B", 1)]))
        .await
        .unwrap()
    {
        AdjustOutcome::Short(short) => {
            assert_eq!(short[0].sku, "A");
            assert_eq!(short[0].requested, 2);
            assert_eq!(short[0].available, 1);
        }
        other => panic!("expected Short, got {other:?}"),
    }
    assert_eq!(position(s, "A", "WH1").await.held, 4, "never oversold");
    // Decrease and remove a line; again is a no-op.
    for _ in 0..2 {
        s.adjust_order_reservation(adjust(vec![("A", 1)]))
            .await
            .unwrap();
        assert_eq!(position(s, "A", "WH1").await.held, 1);
        assert_eq!(position(s, "B", "WH1").await.held, 0);
        check_ledger(s).await;
    }
    assert_eq!(
        s.adjust_order_reservation(AdjustRequest {
            order: "web/404".into(),
            ..adjust(vec![("A", 1)])
        })
        .await
        .unwrap(),
        AdjustOutcome::NoReservation
    );
    // Cancelled: released in the same apply.
    s.apply(
        ProcessBatch {
            cancel_reservations: vec!["web/1".into()],
            ..ProcessBatch::default()
        },
        3_000,
    )
    .await
    .unwrap();
    let r = s.reservation(&r.id).await.unwrap().unwrap();
    assert_eq!(r.state, ReservationState::Cancelled);
    assert_eq!(position(s, "A", "WH1").await.held, 0);
    check_ledger(s).await;
}

/// An order item to the ERP with this op and ordered quantity of `A`.
fn order_item(key: &str, op: &str, quantity: i64) -> crate::NewItem {
    let payload = json!({"number": key, "status": if op == "cancel" { "cancelled" } else { "placed" },
                         "lines": [{"sku": "A", "quantity": quantity}]});
    crate::NewItem {
        op: op.into(),
        hash: concord_core::content_hash(&payload),
        payload,
        coalesce: op != "cancel",
        ..item(ERP, Kind::Order, key, "unused")
    }
}

/// `Settlement::AmendRefused`: under cancel-and-replace the refused amend becomes the cancel of
/// the current reference and one `create` of `{key}~2` follows, carrying a later waiting edit
/// (folded in, not sent to the cancelled order); the facts take the new reference, an `edit`
/// event and a `refused` attempt are recorded — all in that settlement, and a stale token
/// settles nothing. A later waiting cancel means no replacement. Under reject: a dead letter.
pub async fn a_refused_amend_follows_the_edit_policy_in_its_settlement(fx: &Fixture) {
    use crate::{DeadLetterFilter, Direction, EditFallback, ItemState};
    let s = fx.store();
    let keys = ["web/1", "web/2", "web/3"];
    apply_orders(
        s,
        keys.iter()
            .map(|k| write(k, "accepted", None, None))
            .collect(),
    )
    .await;
    enqueue(
        s,
        keys.iter().map(|k| order_item(k, "amend", 3)).collect(),
        1_000,
    )
    .await;
    let claimed = claim(s, ERP, 10, 1_000).await;
    assert_eq!(claimed.len(), 3);
    // While the amends are in flight: a second edit of web/1, a cancellation of web/3.
    enqueue(
        s,
        vec![
            order_item("web/1", "amend", 5),
            order_item("web/3", "cancel", 3),
        ],
        1_100,
    )
    .await;
    let refused = |c: &crate::Claimed, token: i64, fallback| Settlement::AmendRefused {
        id: c.item.id,
        token,
        reason: "`erp` cannot amend this order: no line to reuse".into(),
        fallback,
        at: 1_200,
    };
    let by_key = |k: &str| {
        claimed
            .iter()
            .find(|c| c.item.key == k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} claimed"))
    };
    let (c1, c2, c3) = (by_key("web/1"), by_key("web/2"), by_key("web/3"));
    assert_eq!(
        settle(
            s,
            vec![refused(
                &c1,
                c1.token.wrapping_add(7),
                EditFallback::CancelAndReplace
            )]
        )
        .await,
        0,
        "a stale token settles nothing"
    );
    assert_eq!(
        settle(
            s,
            vec![
                refused(&c1, c1.token, EditFallback::CancelAndReplace),
                refused(&c2, c2.token, EditFallback::Reject),
                refused(&c3, c3.token, EditFallback::CancelAndReplace),
            ]
        )
        .await,
        3
    );

    // web/1: the cancel first (the refused item itself), then the replacement.
    let next = claim(s, ERP, 10, 2_000).await;
    let ops: Vec<(&str, &str)> = next
        .iter()
        .map(|c| (c.item.key.as_str(), c.item.op.as_str()))
        .collect();
    assert_eq!(ops, [("web/1", "cancel"), ("web/3", "cancel")], "{next:?}");
    assert_eq!(next[0].item.id, c1.item.id);
    assert_eq!(next[0].item.payload["status"], "cancelled");
    assert!(next[0].item.payload.get("reference").is_none());
    settle(
        s,
        next.iter()
            .map(|c| Settlement::Delivered {
                id: c.item.id,
                token: c.token,
                external_id: None,
                version: None,
                at: 2_100,
            })
            .collect(),
    )
    .await;
    let last = claim(s, ERP, 10, 3_000).await;
    assert_eq!(last.len(), 1, "only web/1 is replaced: {last:?}");
    assert_eq!(last[0].item.op, "create");
    assert_eq!(last[0].item.payload["reference"], "web/1~2");
    assert_eq!(
        last[0].item.payload["lines"][0]["quantity"], 5,
        "the later edit is folded into the replacement"
    );
    let h1 = s.order_history("web/1").await.unwrap().unwrap();
    assert_eq!(h1.order.facts["reference"], "web/1~2");
    assert_eq!(h1.order.facts["replacements"], 1);
    assert_eq!(h1.order.state, "accepted");
    let ev = h1
        .events
        .iter()
        .find(|e| e.event.event == "edit")
        .expect("edit event");
    assert!(ev.event.applied);
    let why = ev.event.reason.clone().unwrap_or_default();
    assert!(
        why.contains("no line to reuse") && why.contains("replaced by `web/1~2`"),
        "{why}"
    );
    assert!(h1
        .attempts
        .iter()
        .any(|a| a.op == "amend" && a.outcome == "refused"));

    // web/2 under reject: an outbound dead letter with the reason; nothing else planned.
    let dl = s.dead_letters(DeadLetterFilter::default()).await.unwrap();
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(
        (dl[0].direction, dl[0].key.as_str()),
        (Direction::Outbound, "web/2")
    );
    assert!(
        dl[0].reason.contains("no line to reuse"),
        "{}",
        dl[0].reason
    );
    assert!(
        dl[0].reason.contains("edits = \"reject\""),
        "{}",
        dl[0].reason
    );
    let h2 = s.order_history("web/2").await.unwrap().unwrap();
    assert!(h2
        .events
        .iter()
        .any(|e| e.event.event == "edit" && !e.event.applied));
    assert!(h2.order.facts.get("reference").is_none_or(|r| r.is_null()));

    // web/3: being cancelled, so cancelled once and not replaced.
    let h3 = s.order_history("web/3").await.unwrap().unwrap();
    assert!(h3.order.facts.get("reference").is_none_or(|r| r.is_null()));
    let done = s.items(Some(ERP), ItemState::Done, 100).await.unwrap();
    assert_eq!(
        done.iter()
            .filter(|i| i.key == "web/3" && i.op == "cancel")
            .count(),
        2,
        "the refused amend became the cancel; the later cancel is superseded"
    );
}

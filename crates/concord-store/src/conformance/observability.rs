//! Conformance checks: observability: stats, the audit log and item listings reflect the store, and
//! finished history never slows or changes a claim.
//!
//! Written only against `&dyn Store` through [`Fixture`]: never SQL, never an implementation
//! type. Each public check is listed in `store_conformance_tests!` and re-exported by
//! `conformance/mod.rs`.

use super::{
    capture, claim, count_items, delivered, enqueue, item, keys, settle, stored, waiting, Fixture,
    ERP, SHOP,
};
use crate::{AuditEvent, ItemState, JournalStatus, NewItem, ProcessBatch, Settlement};
use concord_core::{Kind, Millis};
use serde_json::json;

pub async fn stats_reflect_the_store(fx: &Fixture) {
    let s = fx.store();
    assert_eq!(
        s.stats().await.unwrap(),
        crate::StoreStats::default(),
        "an empty store"
    );
    let mut bad = capture(SHOP, Kind::Product, "p9", "v1");
    bad.rejected = Some("invalid".into());
    let ids: Vec<i64> = s
        .ingest(
            vec![
                capture(SHOP, Kind::Product, "p1", "v1"),
                capture(SHOP, Kind::Product, "p2", "v1"),
                bad,
            ],
            None,
        )
        .await
        .unwrap()
        .into_iter()
        .map(stored)
        .collect();
    s.apply(
        ProcessBatch {
            journal: vec![(ids[0], JournalStatus::Processed, None, None)],
            ..ProcessBatch::default()
        },
        1_000,
    )
    .await
    .unwrap();
    let at = |mut it: NewItem, captured_at: Millis| {
        it.captured_at = captured_at;
        it
    };
    enqueue(
        s,
        vec![
            at(item(SHOP, Kind::Order, "o1", "a"), 300), // will be done
            at(item(SHOP, Kind::Order, "o2", "b"), 400), // will be in flight
            at(item(SHOP, Kind::Order, "o1", "c"), 500), // pending
            at(
                waiting(item(SHOP, Kind::Order, "o3", "d"), &[(Kind::Customer, "x")]),
                200,
            ), // parked
            at(item(ERP, Kind::Stock, "s1", "e"), 900),  // will be dead
        ],
        1_000,
    )
    .await;
    let c = claim(s, SHOP, 10, 1_000).await;
    assert_eq!(c.len(), 2);
    let o1 = c.iter().find(|x| x.item.key == "o1").unwrap();
    settle(s, vec![delivered(o1, None, 1_100)]).await;
    let e = claim(s, ERP, 10, 1_000).await.remove(0);
    settle(
        s,
        vec![Settlement::Dead {
            id: e.item.id,
            token: e.token,
            reason: "no".into(),
            at: 1_200,
        }],
    )
    .await;

    let stats = s.stats().await.unwrap();
    assert_eq!(
        (
            stats.journal_total,
            stats.journal_pending,
            stats.journal_rejected,
            stats.dead_letters_open
        ),
        (3, 1, 1, 2)
    );
    let expected = vec![
        crate::QueueStats {
            dest: ERP.into(),
            dead: 1,
            ..Default::default()
        },
        crate::QueueStats {
            dest: SHOP.into(),
            pending: 1,
            inflight: 1,
            parked: 1,
            done: 1,
            dead: 0,
            oldest_captured_at: Some(200),
        },
    ];
    let mut queues = stats.queues.clone();
    queues.sort_by(|a, b| a.dest.cmp(&b.dest));
    assert_eq!(queues, expected);
}

pub async fn audit_log_is_newest_first(fx: &Fixture) {
    let s = fx.store();
    let ev = |n: i64| AuditEvent {
        at: 1_000 + n,
        event: format!("breaker.{n}"),
        endpoint: if n % 2 == 0 { Some(SHOP.into()) } else { None },
        kind: if n % 2 == 0 { Some(Kind::Stock) } else { None },
        key: None,
        detail: json!({ "n": n }),
    };
    s.record_audit(vec![ev(1), ev(2)]).await.unwrap();
    s.record_audit(vec![ev(3)]).await.unwrap();
    s.record_audit(vec![]).await.unwrap();
    let log = s.audit_log(10).await.unwrap();
    let events: Vec<AuditEvent> = log.iter().map(|a| a.event.clone()).collect();
    assert_eq!(events, [ev(3), ev(2), ev(1)]);
    assert!(log[0].id > log[1].id && log[1].id > log[2].id);
    assert_eq!(s.audit_log(2).await.unwrap().len(), 2);
}

pub async fn items_are_listed_oldest_first(fx: &Fixture) {
    let s = fx.store();
    enqueue(
        s,
        vec![
            item(SHOP, Kind::Order, "o1", "a"),
            item(ERP, Kind::Order, "o2", "b"),
            item(SHOP, Kind::Order, "o3", "c"),
        ],
        1_000,
    )
    .await;
    let all: Vec<String> = s
        .items(None, ItemState::Pending, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(all, ["o1", "o2", "o3"]);
    let shop: Vec<String> = s
        .items(Some(SHOP), ItemState::Pending, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(shop, ["o1", "o3"]);
    assert_eq!(s.items(None, ItemState::Pending, 2).await.unwrap().len(), 2);
    assert!(s.items(None, ItemState::Done, 10).await.unwrap().is_empty());
    let first = &s.items(Some(SHOP), ItemState::Pending, 1).await.unwrap()[0];
    let expected = item(SHOP, Kind::Order, "o1", "a");
    assert_eq!(
        (
            &first.op,
            &first.payload,
            &first.flow,
            first.captured_at,
            first.attempts,
            first.next_at
        ),
        (&expected.op, &expected.payload, &expected.flow, 500, 0, 0)
    );
    assert_eq!(
        (
            first.created_at,
            first.updated_at,
            first.last_error.as_deref()
        ),
        (1_000, 1_000, None)
    );
}

/// A long history of done items does not change what claim returns.
pub async fn claim_ignores_finished_history(fx: &Fixture) {
    let s = fx.store();
    const N: usize = 2_000;
    let items = (0..N)
        .map(|n| {
            item(
                SHOP,
                Kind::Stock,
                &format!("SKU-{}", n % 50),
                &format!("h{n}"),
            )
        })
        .map(|mut it| {
            it.coalesce = false;
            it
        })
        .collect();
    enqueue(s, items, 1_000).await;
    loop {
        let c = claim(s, SHOP, 500, 1_000).await;
        if c.is_empty() {
            break;
        }
        assert!(c.len() <= 50, "at most one per key");
        settle(s, c.iter().map(|c| delivered(c, None, 1_000)).collect()).await;
    }
    assert_eq!(count_items(s, SHOP, ItemState::Done).await, N);
    enqueue(s, vec![item(SHOP, Kind::Stock, "SKU-7", "new")], 2_000).await;
    let started = std::time::Instant::now();
    let c = claim(s, SHOP, 500, 2_000).await;
    let took = started.elapsed();
    assert_eq!(keys(&c), [(Kind::Stock, "SKU-7".into(), "new".into())]);
    eprintln!("claim with {N} done items took {took:?}");
}

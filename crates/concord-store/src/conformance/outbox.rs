//! Conformance checks: the outbox queue: coalescing of state items, command order, at most one in-
//! flight item per key, due times, and parked items waiting on xrefs.
//!
//! Written only against `&dyn Store` through [`Fixture`]: never SQL, never an implementation
//! type. Each public check is listed in `store_conformance_tests!` and re-exported by
//! `conformance/mod.rs`.

use super::{
    claim, count_items, delivered, enqueue, item, item_by_id, keys, settle, waiting, xref, Fixture,
    ERP, SHOP,
};
use crate::{ItemState, ProcessBatch, Settlement, Xref};
use concord_core::Kind;
use serde_json::json;
use std::sync::Arc;

/// A newer state replaces a pending item of its key in place: same id (place in line), new
/// payload and hash, attempts reset, the earlier of the two due times.
pub async fn pending_state_items_coalesce(fx: &Fixture) {
    let s = fx.store();
    enqueue(
        s,
        vec![
            item(SHOP, Kind::Stock, "SKU-1", "h1"),
            item(SHOP, Kind::Stock, "SKU-2", "x1"),
        ],
        1_000,
    )
    .await;
    // Give the first a failed attempt and a later due time.
    let c = claim(s, SHOP, 1, 1_000).await;
    assert_eq!(c.len(), 1);
    let first_id = c[0].item.id;
    let retry = Settlement::Retry {
        id: first_id,
        token: c[0].token,
        next_at: 50_000,
        error: "timeout".into(),
        count: true,
    };
    assert_eq!(settle(s, vec![retry]).await, 1);

    let mut newer = item(SHOP, Kind::Stock, "SKU-1", "h2");
    newer.payload = json!({ "qty": 2 });
    newer.journal_id = Some(42);
    newer.captured_at = 1_500;
    newer.not_before = 2_000;
    enqueue(s, vec![newer], 2_000).await;

    let pending = s.items(Some(SHOP), ItemState::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 2, "coalesced, not appended: {pending:?}");
    let it = pending.iter().find(|i| i.key == "SKU-1").unwrap();
    assert_eq!(
        it.id, first_id,
        "the coalesced item keeps its place in line"
    );
    assert_eq!(
        (it.hash.as_str(), &it.payload),
        ("h2", &json!({ "qty": 2 }))
    );
    assert_eq!((it.journal_id, it.captured_at), (Some(42), 1_500));
    assert_eq!(it.attempts, 0, "attempts reset for the new state");
    assert_eq!(it.next_at, 2_000, "due at the earlier of the two times");
    assert_eq!(
        s.hashes(SHOP, Kind::Stock, "SKU-1")
            .await
            .unwrap()
            .0
            .as_deref(),
        Some("h2")
    );

    // Another destination's item of the same key is separate.
    enqueue(s, vec![item(ERP, Kind::Stock, "SKU-1", "h3")], 2_000).await;
    assert_eq!(count_items(s, SHOP, ItemState::Pending).await, 2);
    assert_eq!(count_items(s, ERP, ItemState::Pending).await, 1);

    // Items enqueued without `coalesce` are appended even for a state kind.
    let mut plain = item(SHOP, Kind::Stock, "SKU-2", "x2");
    plain.coalesce = false;
    enqueue(s, vec![plain], 2_000).await;
    assert_eq!(count_items(s, SHOP, ItemState::Pending).await, 3);
}

/// An in-flight item is never touched by coalescing: the new state queues behind it.
pub async fn inflight_items_are_never_coalesced(fx: &Fixture) {
    let s = fx.store();
    enqueue(s, vec![item(SHOP, Kind::Price, "SKU-1", "h1")], 1_000).await;
    let c = claim(s, SHOP, 10, 1_000).await;
    assert_eq!(c.len(), 1);
    enqueue(s, vec![item(SHOP, Kind::Price, "SKU-1", "h2")], 1_100).await;
    enqueue(s, vec![item(SHOP, Kind::Price, "SKU-1", "h3")], 1_200).await;

    let inflight = s.items(Some(SHOP), ItemState::Inflight, 10).await.unwrap();
    assert_eq!(inflight.len(), 1);
    assert_eq!(inflight[0].hash, "h1", "the in-flight payload is untouched");
    let pending = s.items(Some(SHOP), ItemState::Pending, 10).await.unwrap();
    assert_eq!(
        pending.len(),
        1,
        "h2 and h3 coalesced into one pending item behind it"
    );
    assert_eq!(pending[0].hash, "h3");
    assert!(pending[0].id > inflight[0].id);

    assert!(
        claim(s, SHOP, 10, 1_300).await.is_empty(),
        "key busy while one is in flight"
    );
    assert_eq!(settle(s, vec![delivered(&c[0], None, 1_400)]).await, 1);
    let next = claim(s, SHOP, 10, 1_500).await;
    assert_eq!(keys(&next), [(Kind::Price, "SKU-1".into(), "h3".into())]);
}

/// Command items (no coalescing) are delivered one at a time in enqueue order.
pub async fn command_items_keep_order_and_never_overtake(fx: &Fixture) {
    let s = fx.store();
    let mut items = Vec::new();
    for n in 1..=3 {
        items.push(item(SHOP, Kind::Order, "ORD-1", &format!("o{n}")));
    }
    items.push(item(SHOP, Kind::Order, "ORD-2", "p1"));
    enqueue(s, items, 1_000).await;
    assert_eq!(
        count_items(s, SHOP, ItemState::Pending).await,
        4,
        "commands never coalesce"
    );

    let c = claim(s, SHOP, 10, 1_000).await;
    assert_eq!(
        keys(&c),
        [
            (Kind::Order, "ORD-1".into(), "o1".into()),
            (Kind::Order, "ORD-2".into(), "p1".into())
        ],
        "only the head of each key, different keys in parallel"
    );
    assert!(
        claim(s, SHOP, 10, 1_000).await.is_empty(),
        "nothing overtakes an in-flight head"
    );
    // Walk the key: settle the head, the next one becomes claimable.
    let mut head = c.into_iter().find(|x| x.item.key == "ORD-1").unwrap();
    for expected in ["o2", "o3"] {
        assert_eq!(settle(s, vec![delivered(&head, None, 2_000)]).await, 1);
        let next = claim(s, SHOP, 10, 2_000).await;
        assert_eq!(
            keys(&next),
            [(Kind::Order, "ORD-1".into(), expected.into())]
        );
        head = next.into_iter().next().unwrap();
    }
    assert_eq!(settle(s, vec![delivered(&head, None, 3_000)]).await, 1);
    assert!(claim(s, SHOP, 10, 3_000).await.is_empty());
    assert_eq!(count_items(s, SHOP, ItemState::Done).await, 3);
}

/// Repeated claims never put two items of one key in flight.
pub async fn at_most_one_item_in_flight_per_key(fx: &Fixture) {
    let s = fx.store();
    let mut items = Vec::new();
    for n in 0..12 {
        items.push(item(
            SHOP,
            Kind::Order,
            &format!("ORD-{}", n % 3),
            &format!("h{n}"),
        ));
    }
    enqueue(s, items, 1_000).await;
    let mut claimed = Vec::new();
    for _ in 0..5 {
        claimed.extend(claim(s, SHOP, 2, 1_000).await);
    }
    let mut claimed_keys: Vec<String> = claimed.iter().map(|c| c.item.key.clone()).collect();
    claimed_keys.sort();
    assert_eq!(
        claimed_keys,
        ["ORD-0", "ORD-1", "ORD-2"],
        "one per key, across claims"
    );
    let inflight = s.items(Some(SHOP), ItemState::Inflight, 100).await.unwrap();
    assert_eq!(inflight.len(), 3);
    let mut tokens: Vec<i64> = claimed.iter().map(|c| c.token).collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "every claim gets its own token");
    for c in &claimed {
        assert_eq!(c.item.state, ItemState::Inflight);
    }

    // Concurrent claimers: still one per key.
    let settle_all: Vec<Settlement> = claimed.iter().map(|c| delivered(c, None, 1_100)).collect();
    assert_eq!(settle(s, settle_all).await, 3);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&fx.store);
        tasks.push(tokio::spawn(async move {
            store.claim(SHOP, 10, 1_200, 60_000).await
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap().unwrap());
    }
    let mut concurrent_keys: Vec<String> = all.iter().map(|c| c.item.key.clone()).collect();
    concurrent_keys.sort();
    assert_eq!(concurrent_keys, ["ORD-0", "ORD-1", "ORD-2"]);
}

/// Items are claimable only once due; an earlier item that is not yet due still blocks its key.
pub async fn items_wait_until_due(fx: &Fixture) {
    let s = fx.store();
    let mut later = item(SHOP, Kind::Order, "ORD-1", "o1");
    later.not_before = 5_000;
    let follower = item(SHOP, Kind::Order, "ORD-1", "o2");
    let mut other = item(SHOP, Kind::Order, "ORD-2", "p1");
    other.not_before = 3_000;
    enqueue(s, vec![later, follower, other], 1_000).await;
    assert_eq!(
        s.next_due(SHOP).await.unwrap(),
        Some(0),
        "the follower is due (but blocked)"
    );
    assert!(
        claim(s, SHOP, 10, 1_000).await.is_empty(),
        "o1 not due, o2 must not overtake it"
    );
    assert_eq!(
        keys(&claim(s, SHOP, 10, 3_000).await),
        [(Kind::Order, "ORD-2".into(), "p1".into())]
    );
    assert_eq!(
        keys(&claim(s, SHOP, 10, 5_000).await),
        [(Kind::Order, "ORD-1".into(), "o1".into())]
    );
    assert_eq!(s.next_due(ERP).await.unwrap(), None);
    assert!(
        claim(s, ERP, 10, 10_000).await.is_empty(),
        "destinations are separate"
    );
}

/// A parked item is not claimable, blocks later items of its key, and is released (due now) when
/// `apply` records the xrefs it waits for.
pub async fn parked_item_blocks_its_key_until_apply_adds_the_xref(fx: &Fixture) {
    let s = fx.store();
    let order = waiting(
        item(SHOP, Kind::Order, "ORD-1", "o1"),
        &[(Kind::Customer, "c1"), (Kind::Product, "p1")],
    );
    enqueue(
        s,
        vec![order, item(SHOP, Kind::Order, "ORD-1", "o2")],
        1_000,
    )
    .await;
    let parked = s.items(Some(SHOP), ItemState::Parked, 10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        parked[0].waiting_on,
        [
            (Kind::Customer, "c1".to_string()),
            (Kind::Product, "p1".to_string())
        ]
    );
    assert_eq!(
        s.hashes(SHOP, Kind::Order, "ORD-1")
            .await
            .unwrap()
            .0
            .as_deref(),
        Some("o2")
    );
    assert!(
        claim(s, SHOP, 10, 1_000).await.is_empty(),
        "parked head blocks its key"
    );

    let add = |x: Xref| ProcessBatch {
        xrefs: vec![x],
        ..ProcessBatch::default()
    };
    // An xref at another endpoint does not help; one dependency of two is not enough.
    s.apply(add(xref(ERP, Kind::Customer, "E-c1", "c1")), 1_500)
        .await
        .unwrap();
    s.apply(add(xref(SHOP, Kind::Customer, "S-c1", "c1")), 1_600)
        .await
        .unwrap();
    let parked = s.items(Some(SHOP), ItemState::Parked, 10).await.unwrap();
    assert_eq!(parked.len(), 1, "still waiting on p1");
    assert_eq!(parked[0].waiting_on, [(Kind::Product, "p1".to_string())]);
    assert!(claim(s, SHOP, 10, 1_600).await.is_empty());

    s.apply(add(xref(SHOP, Kind::Product, "S-p1", "p1")), 2_000)
        .await
        .unwrap();
    let released = item_by_id(s, parked[0].id).await;
    assert_eq!(released.state, ItemState::Pending);
    assert!(released.waiting_on.is_empty());
    assert_eq!(released.next_at, 2_000, "released items are due now");
    assert_eq!(
        keys(&claim(s, SHOP, 10, 2_000).await),
        [(Kind::Order, "ORD-1".into(), "o1".into())]
    );
}

/// A delivery that reports the destination's id records the xref and releases items waiting on
/// that key there.
pub async fn parked_item_is_released_by_a_delivered_xref(fx: &Fixture) {
    let s = fx.store();
    let customer = item(SHOP, Kind::Customer, "c1", "hc");
    let order = waiting(
        item(SHOP, Kind::Order, "ORD-1", "o1"),
        &[(Kind::Customer, "c1")],
    );
    enqueue(s, vec![customer, order], 1_000).await;
    let c = claim(s, SHOP, 10, 1_000).await;
    assert_eq!(
        keys(&c),
        [(Kind::Customer, "c1".into(), "hc".into())],
        "the parked order waits"
    );
    assert_eq!(
        settle(s, vec![delivered(&c[0], Some("S-77"), 3_000)]).await,
        1
    );
    assert_eq!(
        s.xref_key(SHOP, Kind::Customer, "S-77")
            .await
            .unwrap()
            .as_deref(),
        Some("c1")
    );
    assert_eq!(count_items(s, SHOP, ItemState::Parked).await, 0);
    let next = claim(s, SHOP, 10, 3_000).await;
    assert_eq!(keys(&next), [(Kind::Order, "ORD-1".into(), "o1".into())]);
    assert!(next[0].item.waiting_on.is_empty());
}

/// Dependencies already known at the destination are not recorded; with none left the item is
/// pending at once.
pub async fn satisfied_dependencies_are_not_waited_for(fx: &Fixture) {
    let s = fx.store();
    s.apply(
        ProcessBatch {
            xrefs: vec![xref(SHOP, Kind::Customer, "S-c1", "c1")],
            ..ProcessBatch::default()
        },
        500,
    )
    .await
    .unwrap();
    let a = waiting(
        item(SHOP, Kind::Order, "ORD-1", "o1"),
        &[(Kind::Customer, "c1")],
    );
    let b = waiting(
        item(SHOP, Kind::Order, "ORD-2", "p1"),
        &[(Kind::Customer, "c1"), (Kind::Product, "p9")],
    );
    enqueue(s, vec![a, b], 1_000).await;
    let pending = s.items(Some(SHOP), ItemState::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].key.as_str(), pending[0].waiting_on.len()),
        ("ORD-1", 0)
    );
    let parked = s.items(Some(SHOP), ItemState::Parked, 10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].waiting_on, [(Kind::Product, "p9".to_string())]);
    // An xref added in the same batch as the item counts as known.
    s.apply(
        ProcessBatch {
            xrefs: vec![xref(SHOP, Kind::Customer, "S-c2", "c2")],
            items: vec![waiting(
                item(SHOP, Kind::Order, "ORD-3", "q1"),
                &[(Kind::Customer, "c2")],
            )],
            ..ProcessBatch::default()
        },
        1_100,
    )
    .await
    .unwrap();
    assert_eq!(count_items(s, SHOP, ItemState::Pending).await, 2);
}

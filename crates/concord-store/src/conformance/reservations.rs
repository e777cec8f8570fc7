//! Conformance checks: stock reservations (design §5): all-or-nothing reserve naming the shortage,
//! idempotency on the client key, routing and splits, buffers, backorder limits, state transitions,
//! expiry, and no overselling under concurrency.
//!
//! Written only against `&dyn Store` through [`Fixture`]: never SQL, never an implementation
//! type. Each public check is listed in `store_conformance_tests!` and re-exported by
//! `conformance/mod.rs`.

use super::{
    allocations, check_ledger, figure, position, request, reserve_ok, set_levels, Fixture, B2B, WEB,
};
use crate::{Reservation, ReservationState, ReserveOutcome, TransitionError};
use concord_core::inventory::Shortage;
use serde_json::json;
use std::sync::Arc;

/// All lines or nothing; a short request names each short line with what could be had, and
/// reserves nothing.
pub async fn reserve_is_all_or_nothing_and_names_the_shortage(fx: &Fixture) {
    let s = fx.store();
    set_levels(
        s,
        vec![
            figure("A", "WH1", 10, 2, "1"),
            figure("B", "WH1", 3, 0, "1"),
        ],
    )
    .await;
    let r = reserve_ok(s, request(WEB, "k1", &[("A", 5)], &[("WH1", 0)])).await;
    assert_eq!(r.state, ReservationState::Held);
    assert_eq!(r.expires_at, Some(61_000));
    assert_eq!(allocations(&r), [("A".into(), "WH1".into(), 5, false)]);
    assert_eq!(position(s, "A", "WH1").await.held, 5);
    check_ledger(s).await;

    let out = s
        .reserve(request(WEB, "k2", &[("A", 4), ("B", 2)], &[("WH1", 0)]))
        .await
        .unwrap();
    assert_eq!(
        out,
        ReserveOutcome::Short(vec![Shortage {
            sku: "A".into(),
            requested: 4,
            available: 3
        }]),
        "10 on hand − 2 committed − 5 held = 3"
    );
    assert_eq!(position(s, "A", "WH1").await.held, 5, "nothing reserved");
    assert_eq!(
        position(s, "B", "WH1").await.held,
        0,
        "not even the line that fit"
    );
    assert_eq!(s.reservation("r-k2").await.unwrap(), None);
    // An unknown SKU (no position anywhere) has no stock.
    let out = s
        .reserve(request(WEB, "k3", &[("Z", 1)], &[("WH1", 0)]))
        .await
        .unwrap();
    assert!(
        matches!(out, ReserveOutcome::Short(ref v) if v[0].available == 0),
        "{out:?}"
    );
    let r = reserve_ok(s, request(WEB, "k4", &[("A", 3), ("B", 3)], &[("WH1", 0)])).await;
    assert_eq!(r.lines.len(), 2);
    assert_eq!(s.reservation("r-k4").await.unwrap(), Some(r));
    check_ledger(s).await;
}

/// The same (channel, client key) returns the first reservation, even with other lines; the
/// same key on another channel is another reservation.
pub async fn reserve_is_idempotent_on_the_client_key(fx: &Fixture) {
    let s = fx.store();
    set_levels(s, vec![figure("A", "WH1", 10, 0, "1")]).await;
    let first = reserve_ok(s, request(WEB, "k", &[("A", 2)], &[("WH1", 0)])).await;
    let mut again = request(WEB, "k", &[("A", 7)], &[("WH1", 0)]);
    again.id = "other-id".into();
    assert_eq!(
        s.reserve(again).await.unwrap(),
        ReserveOutcome::Existing(first.clone()),
        "a repeated key returns what it made, unchanged"
    );
    assert_eq!(position(s, "A", "WH1").await.held, 2);
    let mut b2b = request(B2B, "k", &[("A", 1)], &[("WH1", 0)]);
    b2b.id = "r-b2b".into();
    reserve_ok(s, b2b).await;
    assert_eq!(position(s, "A", "WH1").await.held, 3);
    // After a transition the key still names it, in its current state.
    s.commit_reservation(&first.id, "web/1", 2_000)
        .await
        .unwrap()
        .unwrap();
    match s
        .reserve(request(WEB, "k", &[("A", 2)], &[("WH1", 0)]))
        .await
        .unwrap()
    {
        ReserveOutcome::Existing(r) => assert_eq!(r.state, ReservationState::Committed),
        other => panic!("expected Existing, got {other:?}"),
    }
    check_ledger(s).await;
}

/// The highest-priority location that fills the whole order first; else each line split by
/// priority.
pub async fn reserve_routes_one_location_first_else_splits(fx: &Fixture) {
    let s = fx.store();
    set_levels(
        s,
        vec![
            figure("A", "WH1", 5, 0, "1"),
            figure("A", "WH2", 10, 0, "1"),
            figure("B", "WH1", 0, 0, "1"),
            figure("B", "WH2", 3, 0, "1"),
        ],
    )
    .await;
    let feeds = [("WH1", 0), ("WH2", 0)];
    let r = reserve_ok(s, request(WEB, "one", &[("A", 4), ("B", 2)], &feeds)).await;
    assert_eq!(
        allocations(&r),
        [
            ("A".into(), "WH2".into(), 4, false),
            ("B".into(), "WH2".into(), 2, false)
        ],
        "WH1 cannot fill B: WH2 fills everything"
    );
    let r = reserve_ok(s, request(WEB, "split", &[("A", 8)], &feeds)).await;
    assert_eq!(
        allocations(&r),
        [
            ("A".into(), "WH1".into(), 5, false),
            ("A".into(), "WH2".into(), 3, false)
        ],
        "WH1 has 5, WH2 has 6 left: split by priority"
    );
    assert_eq!(position(s, "A", "WH1").await.held, 5);
    assert_eq!(position(s, "A", "WH2").await.held, 7);
    check_ledger(s).await;
}

/// A location gives a channel `max(0, on_hand − committed − held − buffer)`.
pub async fn reserve_respects_buffers(fx: &Fixture) {
    let s = fx.store();
    set_levels(s, vec![figure("A", "WH1", 10, 1, "1")]).await;
    let out = s
        .reserve(request(WEB, "k1", &[("A", 8)], &[("WH1", 2)]))
        .await
        .unwrap();
    assert_eq!(
        out,
        ReserveOutcome::Short(vec![Shortage {
            sku: "A".into(),
            requested: 8,
            available: 7
        }])
    );
    reserve_ok(s, request(WEB, "k2", &[("A", 7)], &[("WH1", 2)])).await;
    let level = position(s, "A", "WH1").await;
    assert_eq!(
        level.on_hand - level.committed - level.held,
        2,
        "the buffer is left"
    );
    // Another channel without a buffer may take it.
    reserve_ok(s, request(B2B, "k3", &[("A", 2)], &[("WH1", 0)])).await;
    // A buffer larger than free stock gives nothing, never a negative amount.
    let out = s
        .reserve(request(WEB, "k4", &[("A", 1)], &[("WH1", 5)]))
        .await
        .unwrap();
    assert!(
        matches!(out, ReserveOutcome::Short(ref v) if v[0].available == 0),
        "{out:?}"
    );
    check_ledger(s).await;
}

/// Backorders take what free stock cannot, up to the channel's limit and never beyond the feeds'
/// incoming minus what is already backordered, at the first feed with incoming stock.
pub async fn backorders_are_limited_and_never_exceed_incoming(fx: &Fixture) {
    let s = fx.store();
    let mut wh2 = figure("A", "WH2", 0, 0, "1");
    wh2.incoming =
        json!([{ "quantity": 4, "eta": "2030-01-01" }, { "quantity": 2, "eta": "2030-02-01" }]);
    set_levels(s, vec![figure("A", "WH1", 2, 0, "1"), wh2]).await;
    let feeds = [("WH1", 0), ("WH2", 0)];
    let with_limit = |key: &str, q: i64, limit: Option<i64>| {
        let mut r = request(WEB, key, &[("A", q)], &feeds);
        r.backorder_limit = limit;
        r
    };
    let out = s.reserve(with_limit("none", 3, None)).await.unwrap();
    assert_eq!(
        out,
        ReserveOutcome::Short(vec![Shortage {
            sku: "A".into(),
            requested: 3,
            available: 2
        }]),
        "no limit, no backorders"
    );
    let out = s.reserve(with_limit("over", 6, Some(3))).await.unwrap();
    assert_eq!(
        out,
        ReserveOutcome::Short(vec![Shortage {
            sku: "A".into(),
            requested: 6,
            available: 5
        }]),
        "2 free + a limit of 3"
    );
    let r = reserve_ok(s, with_limit("ok", 5, Some(3))).await;
    assert_eq!(
        allocations(&r),
        [
            ("A".into(), "WH1".into(), 2, false),
            ("A".into(), "WH2".into(), 3, true)
        ]
    );
    let wh2 = position(s, "A", "WH2").await;
    assert_eq!((wh2.held, wh2.backordered), (0, 3));
    // 6 incoming, 3 backordered: at most 3 more, whatever the limit.
    let out = s.reserve(with_limit("beyond", 4, Some(100))).await.unwrap();
    assert_eq!(
        out,
        ReserveOutcome::Short(vec![Shortage {
            sku: "A".into(),
            requested: 4,
            available: 3
        }]),
        "never beyond incoming"
    );
    reserve_ok(s, with_limit("rest", 3, Some(100))).await;
    assert_eq!(position(s, "A", "WH2").await.backordered, 6);
    // Cancelling gives the allowance back.
    s.cancel_reservation(&r.id, 2_000).await.unwrap().unwrap();
    assert_eq!(position(s, "A", "WH2").await.backordered, 3);
    assert_eq!(position(s, "A", "WH1").await.held, 0);
    check_ledger(s).await;
}

/// Commit, cancel, expire: the allowed transitions, idempotent repeats and refusals.
pub async fn reservation_transitions_and_wrong_states(fx: &Fixture) {
    let s = fx.store();
    set_levels(s, vec![figure("A", "WH1", 100, 0, "1")]).await;
    let feeds = [("WH1", 0)];
    let a = reserve_ok(s, request(WEB, "a", &[("A", 1)], &feeds)).await;
    let b = reserve_ok(s, request(WEB, "b", &[("A", 2)], &feeds)).await;
    let c = reserve_ok(s, request(WEB, "c", &[("A", 4)], &feeds)).await;

    assert_eq!(
        s.commit_reservation("nope", "web/0", 2_000).await.unwrap(),
        Err(TransitionError::NotFound)
    );
    assert_eq!(
        s.cancel_reservation("nope", 2_000).await.unwrap(),
        Err(TransitionError::NotFound)
    );
    let committed = s
        .commit_reservation(&a.id, "web/1", 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(committed.state, ReservationState::Committed);
    assert_eq!(committed.order.as_deref(), Some("web/1"));
    assert_eq!(committed.expires_at, None, "no expiry once committed");
    assert_eq!(committed.committed_at, Some(2_000));
    assert_eq!(
        s.commit_reservation(&a.id, "web/1", 3_000).await.unwrap(),
        Ok(committed.clone()),
        "same order: a no-op"
    );
    assert_eq!(
        s.commit_reservation(&a.id, "web/2", 3_000).await.unwrap(),
        Err(TransitionError::WrongState(ReservationState::Committed))
    );
    assert_eq!(position(s, "A", "WH1").await.held, 7);

    let cancelled = s.cancel_reservation(&b.id, 4_000).await.unwrap().unwrap();
    assert_eq!(cancelled.state, ReservationState::Cancelled);
    assert_eq!(cancelled.ended_at, Some(4_000));
    assert!(cancelled.lines.iter().all(|l| l.released_at == Some(4_000)));
    assert_eq!(position(s, "A", "WH1").await.held, 5);
    assert_eq!(
        s.cancel_reservation(&b.id, 5_000).await.unwrap(),
        Ok(cancelled),
        "cancelling again: a no-op"
    );
    assert_eq!(position(s, "A", "WH1").await.held, 5, "held lowered once");
    assert_eq!(
        s.commit_reservation(&b.id, "web/3", 5_000).await.unwrap(),
        Err(TransitionError::WrongState(ReservationState::Cancelled))
    );
    // A committed reservation can be cancelled too.
    let a2 = s.cancel_reservation(&a.id, 6_000).await.unwrap().unwrap();
    assert_eq!(a2.state, ReservationState::Cancelled);
    assert_eq!(position(s, "A", "WH1").await.held, 4);

    let expired = s.expire_reservations(61_000).await.unwrap();
    assert_eq!(
        expired.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [c.id.as_str()]
    );
    assert_eq!(expired[0].state, ReservationState::Expired);
    assert_eq!(position(s, "A", "WH1").await.held, 0);
    assert_eq!(
        s.cancel_reservation(&c.id, 62_000).await.unwrap(),
        Err(TransitionError::WrongState(ReservationState::Expired))
    );
    assert_eq!(
        s.commit_reservation(&c.id, "web/4", 62_000).await.unwrap(),
        Err(TransitionError::WrongState(ReservationState::Expired))
    );

    // Listings: newest first, by state, by SKU.
    let ids = |rs: Vec<Reservation>| rs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let mut later = request(WEB, "d", &[], &feeds);
    later.now = 7_000;
    reserve_ok(s, later).await;
    assert_eq!(
        ids(s.reservations(None, None, 10).await.unwrap()),
        ["r-d", "r-c", "r-b", "r-a"]
    );
    assert_eq!(
        ids(s.reservations(None, None, 2).await.unwrap()),
        ["r-d", "r-c"]
    );
    assert_eq!(
        ids(s
            .reservations(Some(ReservationState::Cancelled), None, 10)
            .await
            .unwrap()),
        ["r-b", "r-a"]
    );
    assert_eq!(
        ids(s.reservations(None, Some("A"), 10).await.unwrap()),
        ["r-c", "r-b", "r-a"]
    );
    assert!(s
        .reservations(Some(ReservationState::Held), Some("A"), 10)
        .await
        .unwrap()
        .is_empty());
    check_ledger(s).await;
}

/// Only held reservations whose time has come expire, each exactly once; `next_expiry` follows.
pub async fn expiry_returns_each_reservation_once(fx: &Fixture) {
    let s = fx.store();
    set_levels(s, vec![figure("A", "WH1", 100, 0, "1")]).await;
    assert_eq!(s.next_expiry().await.unwrap(), None);
    for (key, expires_at) in [("a", 5_000), ("b", 9_000), ("c", 7_000), ("d", 5_000)] {
        let mut r = request(WEB, key, &[("A", 1)], &[("WH1", 0)]);
        r.expires_at = expires_at;
        reserve_ok(s, r).await;
    }
    s.commit_reservation("r-d", "web/d", 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.next_expiry().await.unwrap(), Some(5_000));
    assert!(s.expire_reservations(4_999).await.unwrap().is_empty());
    let first = s.expire_reservations(7_000).await.unwrap();
    let mut ids: Vec<&str> = first.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["r-a", "r-c"], "the committed one never expires");
    assert!(first
        .iter()
        .all(|r| r.state == ReservationState::Expired && r.ended_at == Some(7_000)));
    assert!(
        s.expire_reservations(7_000).await.unwrap().is_empty(),
        "once"
    );
    assert_eq!(s.next_expiry().await.unwrap(), Some(9_000));
    let second = s.expire_reservations(100_000).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, "r-b");
    assert_eq!(s.next_expiry().await.unwrap(), None);
    assert_eq!(
        position(s, "A", "WH1").await.held,
        1,
        "only the committed one"
    );
    check_ledger(s).await;
}

/// 64 concurrent reservations of one unit against 10 on hand: exactly 10 succeed.
pub async fn concurrent_reservations_never_oversell(fx: &Fixture) {
    set_levels(fx.store(), vec![figure("A", "WH1", 10, 0, "1")]).await;
    let mut tasks = Vec::new();
    for n in 0..64 {
        let store = Arc::clone(&fx.store);
        tasks.push(tokio::spawn(async move {
            let req = request(
                if n % 2 == 0 { WEB } else { B2B },
                &format!("k{n}"),
                &[("A", 1)],
                &[("WH1", 0)],
            );
            store.reserve(req).await
        }));
    }
    let mut reserved = 0;
    for t in tasks {
        match t.await.expect("task panicked").expect("reserve failed") {
            ReserveOutcome::Reserved(_) => reserved += 1,
            ReserveOutcome::Short(v) => assert_eq!(v[0].available, 0),
            ReserveOutcome::Existing(r) => panic!("unexpected Existing {r:?}"),
        }
    }
    assert_eq!(reserved, 10);
    let level = position(fx.store(), "A", "WH1").await;
    assert_eq!(
        (level.held, level.on_hand - level.committed - level.held),
        (10, 0)
    );
    check_ledger(fx.store()).await;
}

//! Conformance checks: settlement: lease tokens and expiry, retry counting, and what `Delivered`,
//! `Skipped` and `Dead` leave behind.
//!
//! Written only against `&dyn Store` through [`Fixture`]: never SQL, never an implementation
//! type. Each public check is listed in `store_conformance_tests!` and re-exported by
//! `conformance/mod.rs`.

use super::{claim, delivered, enqueue, item, item_by_id, settle, Fixture, ERP, SHOP};
use crate::{Claimed, DeadLetterFilter, DeadLetterState, Direction, ItemState, Settlement};
use concord_core::{Kind, Millis};

/// Settlements apply only to an in-flight item under the token it was claimed with.
pub async fn stale_token_settlements_are_ignored(fx: &Fixture) {
    let s = fx.store();
    enqueue(s, vec![item(SHOP, Kind::Order, "ORD-1", "o1")], 1_000).await;
    let first = claim(s, SHOP, 1, 1_000).await.remove(0);
    let mut forged = first.clone();
    forged.token = first.token.wrapping_add(1);
    assert_eq!(
        settle(s, vec![delivered(&forged, None, 1_100)]).await,
        0,
        "wrong token ignored"
    );
    assert_eq!(
        item_by_id(s, first.item.id).await.state,
        ItemState::Inflight
    );

    // The lease ends, another worker claims it: the first worker's token is stale.
    assert_eq!(s.recover_expired(100_000).await.unwrap(), 1);
    let second = claim(s, SHOP, 1, 200_000).await.remove(0);
    assert_eq!(second.item.id, first.item.id);
    assert_ne!(second.token, first.token, "a new claim gets a new token");
    let stale = vec![
        delivered(&first, None, 200_100),
        Settlement::Retry {
            id: first.item.id,
            token: first.token,
            next_at: 0,
            error: "stale".into(),
            count: true,
        },
        Settlement::Dead {
            id: first.item.id,
            token: first.token,
            reason: "stale".into(),
            at: 0,
        },
        Settlement::Skipped {
            id: first.item.id,
            token: first.token,
            reason: "stale".into(),
            at: 0,
        },
        Settlement::AmendRefused {
            id: first.item.id,
            token: first.token,
            reason: "stale".into(),
            fallback: crate::EditFallback::CancelAndReplace,
            at: 0,
        },
    ];
    assert_eq!(
        settle(s, stale).await,
        0,
        "stale settlements are ignored, not errors"
    );
    let it = item_by_id(s, first.item.id).await;
    assert_eq!((it.state, it.attempts), (ItemState::Inflight, 0));
    assert!(s
        .dead_letters(DeadLetterFilter::default())
        .await
        .unwrap()
        .is_empty());

    assert_eq!(settle(s, vec![delivered(&second, None, 200_200)]).await, 1);
    assert_eq!(
        settle(s, vec![delivered(&second, None, 200_300)]).await,
        0,
        "settles once"
    );
    assert_eq!(item_by_id(s, first.item.id).await.state, ItemState::Done);
    // An unknown id is ignored too.
    let mut ghost = second.clone();
    ghost.item.id += 1_000;
    assert_eq!(settle(s, vec![delivered(&ghost, None, 0)]).await, 0);
}

/// In-flight items whose lease ended before `before` return to pending, attempts untouched.
pub async fn expired_leases_are_recovered(fx: &Fixture) {
    let s = fx.store();
    enqueue(
        s,
        vec![
            item(SHOP, Kind::Order, "ORD-1", "o1"),
            item(ERP, Kind::Order, "ORD-2", "p1"),
        ],
        1_000,
    )
    .await;
    let a = s.claim(SHOP, 10, 1_000, 5_000).await.unwrap();
    let b = s.claim(ERP, 10, 1_000, 9_000).await.unwrap();
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_eq!(
        s.recover_expired(5_000).await.unwrap(),
        0,
        "lease_until == before is not expired"
    );
    assert_eq!(s.recover_expired(5_001).await.unwrap(), 1);
    let it = item_by_id(s, a[0].item.id).await;
    assert_eq!((it.state, it.attempts), (ItemState::Pending, 0));
    assert_eq!(
        item_by_id(s, b[0].item.id).await.state,
        ItemState::Inflight,
        "live lease kept"
    );
    let again = claim(s, SHOP, 10, 6_000).await;
    assert_eq!(again.len(), 1, "recovered items are claimable again");
    assert_eq!(
        settle(s, vec![delivered(&a[0], None, 6_100)]).await,
        0,
        "old claim is stale"
    );
    assert_eq!(s.recover_expired(i64::MAX).await.unwrap(), 2);
}

pub async fn retry_counts_only_counted_attempts(fx: &Fixture) {
    let s = fx.store();
    enqueue(s, vec![item(SHOP, Kind::Order, "ORD-1", "o1")], 1_000).await;
    let c = claim(s, SHOP, 1, 1_000).await.remove(0);
    let retry = |c: &Claimed, next_at: Millis, error: &str, count: bool| Settlement::Retry {
        id: c.item.id,
        token: c.token,
        next_at,
        error: error.into(),
        count,
    };
    assert_eq!(settle(s, vec![retry(&c, 5_000, "HTTP 503", true)]).await, 1);
    let it = item_by_id(s, c.item.id).await;
    assert_eq!(
        (it.state, it.attempts, it.next_at),
        (ItemState::Pending, 1, 5_000)
    );
    assert_eq!(it.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(s.next_due(SHOP).await.unwrap(), Some(5_000));
    assert!(
        claim(s, SHOP, 1, 4_999).await.is_empty(),
        "not before next_at"
    );

    let c = claim(s, SHOP, 1, 5_000).await.remove(0);
    assert_eq!(c.item.attempts, 1);
    assert_eq!(
        settle(s, vec![retry(&c, 9_000, "breaker open", false)]).await,
        1
    );
    let it = item_by_id(s, c.item.id).await;
    assert_eq!(it.attempts, 1, "an uncounted failure keeps attempts");
    assert_eq!(
        (it.next_at, it.last_error.as_deref()),
        (9_000, Some("breaker open"))
    );
}

/// Dead: item dead, an outbound dead letter with everything needed to replay it, and the planned
/// hash falls back to the written one.
pub async fn dead_item_opens_a_dead_letter_and_resets_the_plan(fx: &Fixture) {
    let s = fx.store();
    enqueue(s, vec![item(SHOP, Kind::Product, "SKU-1", "h1")], 1_000).await;
    let c = claim(s, SHOP, 1, 1_000).await.remove(0);
    settle(s, vec![delivered(&c, None, 1_100)]).await;
    assert_eq!(
        s.hashes(SHOP, Kind::Product, "SKU-1").await.unwrap(),
        (Some("h1".into()), Some("h1".into()))
    );

    let mut next = item(SHOP, Kind::Product, "SKU-1", "h2");
    next.journal_id = Some(7);
    enqueue(s, vec![next.clone()], 2_000).await;
    assert_eq!(
        s.hashes(SHOP, Kind::Product, "SKU-1")
            .await
            .unwrap()
            .0
            .as_deref(),
        Some("h2")
    );
    let c = claim(s, SHOP, 1, 2_000).await.remove(0);
    settle(
        s,
        vec![Settlement::Retry {
            id: c.item.id,
            token: c.token,
            next_at: 2_000,
            error: "timeout".into(),
            count: true,
        }],
    )
    .await;
    let c = claim(s, SHOP, 1, 2_000).await.remove(0);
    let dead = Settlement::Dead {
        id: c.item.id,
        token: c.token,
        reason: "422 invalid sku".into(),
        at: 3_000,
    };
    assert_eq!(settle(s, vec![dead]).await, 1);

    let it = item_by_id(s, c.item.id).await;
    assert_eq!(it.state, ItemState::Dead);
    let dls = s.dead_letters(DeadLetterFilter::default()).await.unwrap();
    assert_eq!(dls.len(), 1);
    let dl = &dls[0];
    assert_eq!(dl.direction, Direction::Outbound);
    assert_eq!(
        (dl.endpoint.as_str(), dl.kind, dl.key.as_str()),
        (SHOP, Kind::Product, "SKU-1")
    );
    assert_eq!(
        (dl.op.as_deref(), dl.flow.as_deref()),
        (Some("upsert"), Some(next.flow.as_str()))
    );
    assert_eq!(dl.payload, next.payload);
    assert_eq!(dl.reason, "422 invalid sku");
    assert_eq!(dl.attempts, 1);
    assert_eq!((dl.journal_id, dl.item_id), (Some(7), Some(c.item.id)));
    assert_eq!((dl.state, dl.created_at), (DeadLetterState::Open, 3_000));
    assert_eq!(
        s.hashes(SHOP, Kind::Product, "SKU-1").await.unwrap(),
        (Some("h1".into()), Some("h1".into())),
        "planned falls back to written"
    );
    // A dead item does not block its key.
    enqueue(s, vec![item(SHOP, Kind::Product, "SKU-1", "h3")], 4_000).await;
    assert_eq!(claim(s, SHOP, 1, 4_000).await.len(), 1);
}

pub async fn skipped_item_is_done_with_an_audit_event(fx: &Fixture) {
    let s = fx.store();
    enqueue(s, vec![item(SHOP, Kind::Payment, "PAY-1", "h1")], 1_000).await;
    let c = claim(s, SHOP, 1, 1_000).await.remove(0);
    let skipped = Settlement::Skipped {
        id: c.item.id,
        token: c.token,
        reason: "no matching order".into(),
        at: 2_000,
    };
    assert_eq!(settle(s, vec![skipped]).await, 1);
    assert_eq!(item_by_id(s, c.item.id).await.state, ItemState::Done);
    assert_eq!(
        s.hashes(SHOP, Kind::Payment, "PAY-1").await.unwrap(),
        (Some("h1".into()), None),
        "nothing was written"
    );
    let audit = s.audit_log(10).await.unwrap();
    assert_eq!(audit.len(), 1);
    let e = &audit[0].event;
    assert_eq!((e.event.as_str(), e.at), ("delivery.skipped", 2_000));
    assert_eq!(
        (e.endpoint.as_deref(), e.kind, e.key.as_deref()),
        (Some(SHOP), Some(Kind::Payment), Some("PAY-1"))
    );
    assert_eq!(e.detail["reason"], "no matching order");
}

pub async fn delivered_item_records_written_hash_and_xref(fx: &Fixture) {
    let s = fx.store();
    enqueue(
        s,
        vec![
            item(SHOP, Kind::Customer, "c1", "h1"),
            item(SHOP, Kind::Customer, "c2", "h2"),
        ],
        1_000,
    )
    .await;
    let c = claim(s, SHOP, 10, 1_000).await;
    assert_eq!(c.len(), 2);
    let n = settle(
        s,
        vec![
            delivered(&c[0], Some("S-1"), 2_000),
            delivered(&c[1], None, 2_000),
        ],
    )
    .await;
    assert_eq!(n, 2);
    assert_eq!(
        s.hashes(SHOP, Kind::Customer, "c1").await.unwrap(),
        (Some("h1".into()), Some("h1".into()))
    );
    assert_eq!(
        s.xref_external(SHOP, Kind::Customer, "c1")
            .await
            .unwrap()
            .as_deref(),
        Some("S-1")
    );
    assert_eq!(
        s.xref_external(SHOP, Kind::Customer, "c2").await.unwrap(),
        None
    );
    let done = item_by_id(s, c[0].item.id).await;
    assert_eq!((done.state, done.updated_at), (ItemState::Done, 2_000));
}

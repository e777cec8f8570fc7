//! Conformance checks: dead letters: replaying open ones exactly once, dropping, and the listing
//! filters.
//!
//! Written only against `&dyn Store` through [`Fixture`]: never SQL, never an implementation
//! type. Each public check is listed in `store_conformance_tests!` and re-exported by
//! `conformance/mod.rs`.

use super::{capture, claim, count_items, enqueue, item, settle, Fixture, ERP, SHOP};
use crate::{
    DeadLetterFilter, DeadLetterState, Direction, ItemState, NewDeadLetter, ProcessBatch, Replay,
    Settlement,
};
use concord_core::Kind;
use serde_json::Value;

/// Only open dead letters are replayed, once; the replay happens with the state change.
pub async fn replay_replays_open_dead_letters_once(fx: &Fixture) {
    let s = fx.store();
    // An outbound dead letter.
    enqueue(s, vec![item(SHOP, Kind::Order, "ORD-1", "o1")], 1_000).await;
    let c = claim(s, SHOP, 1, 1_000).await.remove(0);
    settle(
        s,
        vec![Settlement::Dead {
            id: c.item.id,
            token: c.token,
            reason: "400".into(),
            at: 1_100,
        }],
    )
    .await;
    // An inbound one.
    let mut bad = capture(SHOP, Kind::Customer, "c1", "v1");
    bad.rejected = Some("invalid".into());
    s.ingest(vec![bad.clone()], None).await.unwrap();
    let dls = s.dead_letters(DeadLetterFilter::default()).await.unwrap();
    assert_eq!(dls.len(), 2);
    let (out_dl, in_dl) = if dls[0].direction == Direction::Outbound {
        (dls[0].id, dls[1].id)
    } else {
        (dls[1].id, dls[0].id)
    };

    let mut fixed = bad.clone();
    fixed.rejected = None; // same version: the replay must not be swallowed by the dedupe
    let replays = vec![
        (
            out_dl,
            Replay::Outbound(item(SHOP, Kind::Order, "ORD-1", "o1-fixed")),
        ),
        (in_dl, Replay::Inbound(fixed.clone())),
        (
            out_dl,
            Replay::Outbound(item(SHOP, Kind::Order, "ORD-1", "dup")),
        ),
    ];
    let mut replayed = s.replay_dead_letters(replays, 2_000).await.unwrap();
    replayed.sort_unstable();
    let mut expected = vec![out_dl, in_dl];
    expected.sort_unstable();
    assert_eq!(replayed, expected, "each open dead letter replayed once");
    let pending = s.items(Some(SHOP), ItemState::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].hash, "o1-fixed");
    assert_eq!(
        s.hashes(SHOP, Kind::Order, "ORD-1")
            .await
            .unwrap()
            .0
            .as_deref(),
        Some("o1-fixed")
    );
    let journal = s.pending_journal(10).await.unwrap();
    assert_eq!(
        journal.len(),
        1,
        "the inbound replay is journaled as pending"
    );
    assert_eq!(
        (journal[0].external_id.as_str(), journal[0].version.as_str()),
        ("c1", "v1")
    );
    for id in [out_dl, in_dl] {
        let dl = s.dead_letter(id).await.unwrap().unwrap();
        assert_eq!(
            (dl.state, dl.updated_at),
            (DeadLetterState::Replayed, 2_000)
        );
    }

    let again = s
        .replay_dead_letters(
            vec![(
                out_dl,
                Replay::Outbound(item(SHOP, Kind::Order, "ORD-1", "x")),
            )],
            3_000,
        )
        .await
        .unwrap();
    assert!(
        again.is_empty(),
        "a replayed dead letter is not replayed again"
    );
    assert_eq!(count_items(s, SHOP, ItemState::Pending).await, 1);
    let none = s
        .replay_dead_letters(vec![(9_999, Replay::Inbound(fixed))], 3_000)
        .await
        .unwrap();
    assert!(none.is_empty(), "unknown ids are ignored");
    assert_eq!(s.pending_journal(10).await.unwrap().len(), 1);
}

pub async fn drop_dead_letters_only_drops_open_ones(fx: &Fixture) {
    let s = fx.store();
    let rejected = |id: &str| {
        let mut c = capture(SHOP, Kind::Customer, id, "v1");
        c.rejected = Some("invalid".into());
        c
    };
    s.ingest(vec![rejected("c1"), rejected("c2"), rejected("c3")], None)
        .await
        .unwrap();
    let ids: Vec<i64> = s
        .dead_letters(DeadLetterFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids.len(), 3);
    let replayed = s
        .replay_dead_letters(
            vec![(
                ids[2],
                Replay::Inbound(capture(SHOP, Kind::Customer, "c3", "v2")),
            )],
            1_500,
        )
        .await
        .unwrap();
    assert_eq!(replayed, [ids[2]]);

    let dropped = s
        .drop_dead_letters(vec![ids[0], ids[2], 9_999], 2_000)
        .await
        .unwrap();
    assert_eq!(dropped, [ids[0]], "only open dead letters are dropped");
    assert_eq!(
        s.drop_dead_letters(vec![ids[0]], 2_100).await.unwrap(),
        Vec::<i64>::new()
    );
    let dl = s.dead_letter(ids[0]).await.unwrap().unwrap();
    assert_eq!((dl.state, dl.updated_at), (DeadLetterState::Dropped, 2_000));
    assert_eq!(
        s.dead_letter(ids[2]).await.unwrap().unwrap().state,
        DeadLetterState::Replayed
    );
    let open: Vec<i64> = s
        .dead_letters(DeadLetterFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(open, [ids[1]]);
    assert!(
        s.replay_dead_letters(vec![(ids[0], Replay::Inbound(rejected("c1")))], 3_000)
            .await
            .unwrap()
            .is_empty(),
        "dropped ones are not replayed"
    );
    assert_eq!(s.stats().await.unwrap().dead_letters_open, 1);
}

pub async fn dead_letter_filters(fx: &Fixture) {
    let s = fx.store();
    let dl = |endpoint: &str, kind: Kind, key: &str| NewDeadLetter {
        direction: Direction::Inbound,
        endpoint: endpoint.into(),
        kind,
        key: key.into(),
        payload: Value::Null,
        reason: "r".into(),
        journal_id: None,
        flow: None,
        at: 1_000,
    };
    s.apply(
        ProcessBatch {
            dead_letters: vec![
                dl(SHOP, Kind::Order, "a"),
                dl(SHOP, Kind::Customer, "b"),
                dl(ERP, Kind::Order, "c"),
                dl(SHOP, Kind::Order, "d"),
            ],
            ..ProcessBatch::default()
        },
        1_000,
    )
    .await
    .unwrap();
    let keys_of = |v: Vec<crate::DeadLetter>| v.into_iter().map(|d| d.key).collect::<Vec<_>>();
    let f = |endpoint: Option<&str>, kind: Option<Kind>, limit: Option<usize>| DeadLetterFilter {
        endpoint: endpoint.map(str::to_owned),
        kind,
        state: None,
        key: None,
        limit,
    };
    assert_eq!(
        keys_of(s.dead_letters(f(None, None, None)).await.unwrap()),
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        keys_of(s.dead_letters(f(Some(SHOP), None, None)).await.unwrap()),
        ["a", "b", "d"]
    );
    assert_eq!(
        keys_of(
            s.dead_letters(f(None, Some(Kind::Order), None))
                .await
                .unwrap()
        ),
        ["a", "c", "d"]
    );
    assert_eq!(
        keys_of(
            s.dead_letters(f(Some(SHOP), Some(Kind::Order), Some(1)))
                .await
                .unwrap()
        )
        .len(),
        1
    );
    let mut dropped_filter = f(None, None, None);
    dropped_filter.state = Some(DeadLetterState::Dropped);
    assert!(s
        .dead_letters(dropped_filter.clone())
        .await
        .unwrap()
        .is_empty());
    let all = s.dead_letters(f(None, None, None)).await.unwrap();
    s.drop_dead_letters(vec![all[1].id], 2_000).await.unwrap();
    assert_eq!(
        keys_of(s.dead_letters(dropped_filter).await.unwrap()),
        ["b"]
    );
    assert_eq!(
        keys_of(s.dead_letters(f(None, None, None)).await.unwrap()),
        ["a", "c", "d"]
    );
}

//! Conformance checks: stock levels (design §5): stale figures are ignored, newer figures release
//! accepted orders once (by version, else by time), dirty marks with a generation-guarded clean,
//! order acceptance marked for its source only, and an order re-held for cancel-and-replace
//! until a figure includes the replacement.
//!
//! Written only against `&dyn Store` through [`Fixture`]: never SQL, never an implementation
//! type. Each public check is listed in `store_conformance_tests!` and re-exported by
//! `conformance/mod.rs`.

use super::{
    check_ledger, claim, deliver_order, delivered, enqueue, figure, item, position, request,
    reserve_ok, set_levels, settle, Fixture, ERP, SHOP, WEB,
};
use crate::{
    AdjustOutcome, AdjustRequest, Feed, LevelOutcome, LevelUpdate, ProcessBatch, ReservationState,
    ReserveOutcome, TransitionError,
};
use concord_core::Kind;

/// An older figure changes nothing; a newer one replaces on_hand, committed, incoming, version.
/// Integers compare numerically (whatever their length), timestamps as the instants they name
/// (`concord_core::version::compare`): an older figure stamped in another UTC offset is stale,
/// and the later figure at a daylight-saving fall-back is applied.
pub async fn stale_figures_are_ignored(fx: &Fixture) {
    let s = fx.store();
    let out = set_levels(s, vec![figure("A", "WH1", 10, 1, "9")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 9
        }]
    );
    let out = set_levels(s, vec![figure("A", "WH1", 50, 0, "10")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 50
        }],
        "10 > 9 numerically"
    );
    let out = set_levels(s, vec![figure("A", "WH1", 3, 0, "8")]).await;
    assert_eq!(out, [LevelOutcome::Stale]);
    let level = position(s, "A", "WH1").await;
    assert_eq!((level.on_hand, level.version.as_deref()), (50, Some("10")));
    // Equal: not stale, nothing changes.
    let out = set_levels(s, vec![figure("A", "WH1", 50, 0, "10")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 50
        }]
    );

    let t = |on_hand, v: &str| figure("T", "WH1", on_hand, 0, v);
    set_levels(s, vec![t(5, "2024-05-01T10:00:00Z")]).await;
    assert_eq!(
        set_levels(s, vec![t(6, "2024-04-30T23:00:00Z")]).await,
        [LevelOutcome::Stale]
    );
    set_levels(s, vec![t(7, "2024-05-01T10:00:01Z")]).await;
    assert_eq!(position(s, "T", "WH1").await.on_hand, 7);
    // Not comparable: never stale.
    set_levels(s, vec![t(8, "abc")]).await;
    assert_eq!(position(s, "T", "WH1").await.on_hand, 8);
    // Offsets: `10:00+02:00` (08:00 UTC) after `09:30+00:00` is older and rolls nothing back.
    let o = |on_hand, v: &str| figure("O", "WH1", on_hand, 0, v);
    set_levels(s, vec![o(7, "2026-03-01T09:30:00+00:00")]).await;
    assert_eq!(
        set_levels(s, vec![o(3, "2026-03-01T10:00:00+02:00")]).await,
        [LevelOutcome::Stale]
    );
    assert_eq!(position(s, "O", "WH1").await.on_hand, 7, "no roll-back");
    // Daylight-saving fall-back: 02:10 winter time (01:10 UTC) is after 02:30 summer time.
    let d = |on_hand, v: &str| figure("DST", "WH1", on_hand, 0, v);
    set_levels(s, vec![d(5, "2026-10-25T02:30:00+02:00")]).await;
    set_levels(s, vec![d(9, "2026-10-25T02:10:00+01:00")]).await;
    assert_eq!(
        position(s, "DST", "WH1").await.on_hand,
        9,
        "the newer figure"
    );
    // Integers longer than any machine type.
    let big = |on_hand, v: &str| figure("BIG", "WH1", on_hand, 0, v);
    set_levels(s, vec![big(1, "99999999999999999999999999999999999999999")]).await;
    assert_eq!(
        set_levels(s, vec![big(2, "99999999999999999999999999999999999999998")]).await,
        [LevelOutcome::Stale]
    );
    // Within one call, in order.
    let out = set_levels(
        s,
        vec![figure("C", "WH1", 1, 0, "2"), figure("C", "WH1", 2, 0, "1")],
    )
    .await;
    assert_eq!(out[1], LevelOutcome::Stale);
    assert_eq!(position(s, "C", "WH1").await.on_hand, 1);
}

/// An accepted order's lines are released by the first figure newer than the acceptance, once:
/// an equal or older figure afterwards releases nothing, and `held` is lowered once.
pub async fn accepted_order_is_released_once_by_a_newer_figure(fx: &Fixture) {
    let s = fx.store();
    set_levels(s, vec![figure("A", "WH1", 10, 0, "100")]).await;
    let r = reserve_ok(s, request(WEB, "k", &[("A", 3)], &[("WH1", 0)])).await;
    s.commit_reservation(&r.id, "web/1", 1_500)
        .await
        .unwrap()
        .unwrap();
    // Not accepted yet: a newer figure releases nothing.
    let out = set_levels(s, vec![figure("A", "WH1", 10, 0, "101")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 7
        }]
    );
    deliver_order(s, ERP, "web/1", Some("105"), 2_000).await;
    let accepted = s.reservation(&r.id).await.unwrap().unwrap();
    assert_eq!(
        (accepted.accepted_at, accepted.accepted_version.as_deref()),
        (Some(2_000), Some("105"))
    );
    // A figure from before the acceptance (delayed) must not release.
    let out = set_levels(s, vec![figure("A", "WH1", 10, 0, "104")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 7
        }]
    );
    // The acceptance's own version is not newer.
    let out = set_levels(s, vec![figure("A", "WH1", 10, 3, "105")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 4
        }]
    );
    assert_eq!(position(s, "A", "WH1").await.held, 3);
    let out = set_levels(s, vec![figure("A", "WH1", 10, 3, "106")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![(r.id.clone(), 3)],
            free: 7
        }]
    );
    let done = s.reservation(&r.id).await.unwrap().unwrap();
    assert_eq!(done.state, ReservationState::Released);
    assert!(done.lines.iter().all(|l| l.released_at.is_some()));
    // Again, equal and older and newer: nothing more.
    for v in ["106", "105", "107"] {
        let out = set_levels(s, vec![figure("A", "WH1", 10, 3, v)]).await;
        assert!(
            matches!(&out[0], LevelOutcome::Stale)
                || matches!(&out[0], LevelOutcome::Applied { released, free: 7 } if released.is_empty()),
            "version {v}: {out:?}"
        );
    }
    assert_eq!(position(s, "A", "WH1").await.held, 0);
    // Released is final.
    assert_eq!(
        s.cancel_reservation(&r.id, 9_000).await.unwrap(),
        Err(TransitionError::WrongState(ReservationState::Released))
    );
    check_ledger(s).await;
}

/// The ERP's figure can reach the ledger before the delivery that carries the order's acceptance
/// is settled (its stock webhook races the worker). When the acceptance arrives, a stored figure
/// newer than its watermark already includes the order: the lines are released then (once, the
/// SKU marked dirty), not left held until the next stock change — a re-delivery of the same
/// figure releases nothing. The same holds for a reservation committed after the acceptance.
pub async fn figure_ahead_of_the_acceptance_releases_at_the_acceptance(fx: &Fixture) {
    let s = fx.store();
    set_levels(s, vec![figure("A", "WH1", 10, 0, "100")]).await;
    let r = reserve_ok(s, request(WEB, "k", &[("A", 4)], &[("WH1", 0)])).await;
    s.commit_reservation(&r.id, "web/1", 1_500)
        .await
        .unwrap()
        .unwrap();
    // The ERP committed the order (its figure 106 holds it) before the hub settled the delivery.
    let out = set_levels(s, vec![figure("A", "WH1", 10, 4, "106")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 2
        }],
        "not accepted yet: held and committed both count"
    );
    let before = s.dirty_skus(10).await.unwrap();
    deliver_order(s, ERP, "web/1", Some("105"), 2_000).await;
    let done = s.reservation(&r.id).await.unwrap().unwrap();
    assert_eq!(
        done.state,
        ReservationState::Released,
        "the stored figure 106 already includes the order accepted at 105"
    );
    assert!(done.lines.iter().all(|l| l.released_at == Some(2_000)));
    assert_eq!(position(s, "A", "WH1").await.held, 0);
    let after = s.dirty_skus(10).await.unwrap();
    assert_ne!(
        after.iter().find(|d| d.sku == "A").map(|d| d.generation),
        before.iter().find(|d| d.sku == "A").map(|d| d.generation),
        "A is marked dirty again: its ATS changed"
    );
    // The same figure again (a poll): nothing more.
    let out = set_levels(s, vec![figure("A", "WH1", 10, 4, "106")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 6
        }]
    );

    // A figure equal to the watermark does not include the order: held until a newer one.
    let held = reserve_ok(s, request(WEB, "k2", &[("A", 2)], &[("WH1", 0)])).await;
    s.commit_reservation(&held.id, "web/2", 3_000)
        .await
        .unwrap()
        .unwrap();
    set_levels(s, vec![figure("A", "WH1", 10, 6, "110")]).await;
    deliver_order(s, ERP, "web/2", Some("110"), 3_100).await;
    assert_eq!(
        s.reservation(&held.id).await.unwrap().unwrap().state,
        ReservationState::Committed
    );
    assert_eq!(position(s, "A", "WH1").await.held, 2);

    // Committed only after its order was accepted, under a figure newer than that acceptance.
    let late = reserve_ok(s, request(WEB, "k3", &[("A", 1)], &[("WH1", 0)])).await;
    set_levels(s, vec![figure("A", "WH1", 10, 6, "111")]).await;
    assert_eq!(
        s.reservation(&held.id).await.unwrap().unwrap().state,
        ReservationState::Released,
        "111 includes web/2"
    );
    s.commit_reservation(&late.id, "web/2", 3_200)
        .await
        .unwrap()
        .unwrap();
    let late = s.reservation(&late.id).await.unwrap().unwrap();
    assert_eq!(
        (late.state, late.accepted_version.as_deref()),
        (ReservationState::Released, Some("110"))
    );
    assert_eq!(position(s, "A", "WH1").await.held, 0);
    check_ledger(s).await;
}

/// Cancel-and-replace of an order whose lines the ERP's figures released
/// (`AdjustRequest::rehold`): the order is held again at once and its watermark cleared, so the
/// ERP's figure after the cancel (its committed drops) releases nothing and free stock does not
/// rise by the order; the replacement's acceptance sets the watermark again and only a figure
/// newer than it releases the lines, once. Re-holding twice holds once.
pub async fn cancel_and_replace_holds_the_order_until_the_replacement_is_in_the_figures(
    fx: &Fixture,
) {
    let s = fx.store();
    set_levels(s, vec![figure("A", "WH1", 10, 0, "100")]).await;
    let r = reserve_ok(s, request(WEB, "k", &[("A", 4)], &[("WH1", 0)])).await;
    s.commit_reservation(&r.id, "web/1", 1_500)
        .await
        .unwrap()
        .unwrap();
    deliver_order(s, ERP, "web/1", Some("105"), 2_000).await;
    set_levels(s, vec![figure("A", "WH1", 10, 4, "106")]).await;
    assert_eq!(
        s.reservation(&r.id).await.unwrap().unwrap().state,
        ReservationState::Released
    );
    assert_eq!(position(s, "A", "WH1").await.held, 0);
    // Cancel-and-replace planned (twice: idempotent).
    for now in [3_000, 3_100] {
        let out = s
            .adjust_order_reservation(AdjustRequest {
                order: "web/1".into(),
                quantities: vec![("A".into(), 4)],
                feeds: vec![(
                    "A".into(),
                    vec![Feed {
                        location: "WH1".into(),
                        buffer: 0,
                    }],
                )],
                rehold: true,
                now,
            })
            .await
            .unwrap();
        assert!(matches!(out, AdjustOutcome::Adjusted(_)), "{out:?}");
        let again = s.reservation(&r.id).await.unwrap().unwrap();
        assert_eq!(again.state, ReservationState::Committed);
        assert_eq!(again.accepted_version, None);
        assert!(again.lines.iter().all(|l| l.released_at.is_none()));
        assert_eq!(position(s, "A", "WH1").await.held, 4);
        check_ledger(s).await;
    }
    // The ERP applied the cancel: nothing released, free stays 10 - 4.
    let out = set_levels(s, vec![figure("A", "WH1", 10, 0, "107")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 6
        }],
        "the figure showing the cancel must not free the order's units"
    );
    // The replacement is accepted at 108; the stored 107 does not include it.
    deliver_order(s, ERP, "web/1", Some("108"), 4_000).await;
    assert_eq!(position(s, "A", "WH1").await.held, 4);
    assert_eq!(
        s.reservation(&r.id)
            .await
            .unwrap()
            .unwrap()
            .accepted_version
            .as_deref(),
        Some("108")
    );
    // 109 includes the replacement: released once, free is the ERP's free stock.
    let out = set_levels(s, vec![figure("A", "WH1", 10, 4, "109")]).await;
    assert!(
        matches!(&out[..], [LevelOutcome::Applied { released, free: 6 }] if !released.is_empty()),
        "{out:?}"
    );
    assert_eq!(
        s.reservation(&r.id).await.unwrap().unwrap().state,
        ReservationState::Released
    );
    assert_eq!(position(s, "A", "WH1").await.held, 0);
    let out = set_levels(s, vec![figure("A", "WH1", 10, 4, "110")]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 6
        }]
    );
    check_ledger(s).await;
}

/// A reservation split over two locations is released location by location, and becomes
/// `Released` only when the last line is; versions that cannot be compared fall back to time.
pub async fn release_falls_back_to_time_when_versions_are_not_comparable(fx: &Fixture) {
    let s = fx.store();
    set_levels(
        s,
        vec![
            figure("A", "WH1", 2, 0, "h-a"),
            figure("A", "WH2", 3, 0, "h-b"),
        ],
    )
    .await;
    let r = reserve_ok(s, request(WEB, "k", &[("A", 4)], &[("WH1", 0), ("WH2", 0)])).await;
    assert_eq!(r.lines.len(), 2);
    s.commit_reservation(&r.id, "web/7", 1_500)
        .await
        .unwrap()
        .unwrap();
    deliver_order(s, ERP, "web/7", Some("etag-xyz"), 10_000).await;
    let at = |mut f: LevelUpdate, captured_at| {
        f.captured_at = captured_at;
        f
    };
    // Grace is 60 s: captured 30 s after acceptance, not yet.
    let out = set_levels(s, vec![at(figure("A", "WH1", 2, 2, "h-c"), 40_000)]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: -2
        }]
    );
    let out = set_levels(s, vec![at(figure("A", "WH1", 2, 2, "h-d"), 70_000)]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![(r.id.clone(), 2)],
            free: 0
        }]
    );
    assert_eq!(
        s.reservation(&r.id).await.unwrap().unwrap().state,
        ReservationState::Committed,
        "WH2's line is still held"
    );
    // The same figure again (equal version) releases nothing, even later.
    let out = set_levels(s, vec![at(figure("A", "WH2", 3, 0, "h-b"), 90_000)]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![],
            free: 1
        }]
    );
    let out = set_levels(s, vec![at(figure("A", "WH2", 3, 2, "h-e"), 90_000)]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![(r.id.clone(), 2)],
            free: 1
        }]
    );
    assert_eq!(
        s.reservation(&r.id).await.unwrap().unwrap().state,
        ReservationState::Released
    );

    // Acceptance without any version: time decides too.
    let r2 = reserve_ok(s, request(WEB, "k2", &[("A", 1)], &[("WH2", 0)])).await;
    s.commit_reservation(&r2.id, "web/8", 1_500)
        .await
        .unwrap()
        .unwrap();
    deliver_order(s, ERP, "web/8", None, 10_000).await;
    let out = set_levels(s, vec![at(figure("A", "WH2", 3, 3, "h-f"), 70_000)]).await;
    assert_eq!(
        out,
        [LevelOutcome::Applied {
            released: vec![(r2.id.clone(), 1)],
            free: 0
        }]
    );
    check_ledger(s).await;
}

/// Reservations and figures mark their SKUs dirty, oldest mark first; a planner's clean (via
/// `apply`) clears a mark only if it was not set again since. `apply` applies figures like
/// `update_levels`, in the same transaction.
pub async fn dirty_marks_and_generation_guarded_clean(fx: &Fixture) {
    let s = fx.store();
    assert!(s.dirty_skus(10).await.unwrap().is_empty());
    set_levels(s, vec![figure("A", "WH1", 10, 0, "1")]).await;
    // A reservation without lines marks nothing.
    reserve_ok(s, request(WEB, "k", &[], &[])).await;
    let mut r = request(WEB, "k2", &[("A", 1)], &[("WH1", 0)]);
    r.now = 2_000;
    reserve_ok(s, r).await;
    let dirty = s.dirty_skus(10).await.unwrap();
    assert_eq!(
        dirty.iter().map(|d| d.sku.as_str()).collect::<Vec<_>>(),
        ["A"]
    );
    let seen = dirty[0].clone();
    assert_eq!(s.dirty_skus(0).await.unwrap(), []);

    // Marked again after the planner read it: the clean must not clear it.
    let mut f = figure("C", "WH1", 1, 0, "1");
    f.captured_at = 3_000;
    s.update_levels(vec![f], 0, 3_000).await.unwrap();
    let mut r = request(WEB, "k3", &[("A", 1)], &[("WH1", 0)]);
    r.now = 4_000;
    reserve_ok(s, r).await;
    let now = s.dirty_skus(10).await.unwrap();
    assert_eq!(
        now.iter().map(|d| d.sku.as_str()).collect::<Vec<_>>(),
        ["A", "C"],
        "oldest mark first"
    );
    assert_ne!(
        now[0].generation, seen.generation,
        "a new mark, a new generation"
    );
    s.apply(
        ProcessBatch {
            clean: vec![seen],
            ..ProcessBatch::default()
        },
        5_000,
    )
    .await
    .unwrap();
    assert_eq!(
        s.dirty_skus(10).await.unwrap().len(),
        2,
        "A was marked again: kept"
    );
    s.apply(
        ProcessBatch {
            clean: now.clone(),
            ..ProcessBatch::default()
        },
        5_000,
    )
    .await
    .unwrap();
    assert!(s.dirty_skus(10).await.unwrap().is_empty());

    // Figures in a processing batch: applied, stale ones ignored, the SKU marked again even if
    // the same batch cleans its old mark.
    let mut r = request(WEB, "k4", &[("D", 1)], &[("WH1", 0)]);
    r.now = 6_000;
    assert!(matches!(
        s.reserve(r).await.unwrap(),
        ReserveOutcome::Short(_)
    ));
    s.update_levels(vec![figure("D", "WH1", 1, 0, "5")], 0, 6_000)
        .await
        .unwrap();
    let old = s.dirty_skus(10).await.unwrap();
    s.apply(
        ProcessBatch {
            levels: vec![figure("D", "WH1", 9, 0, "6"), figure("E", "WH1", 9, 0, "1")],
            clean: old,
            ..ProcessBatch::default()
        },
        7_000,
    )
    .await
    .unwrap();
    assert_eq!(position(s, "D", "WH1").await.on_hand, 9);
    assert_eq!(
        s.dirty_skus(10)
            .await
            .unwrap()
            .iter()
            .map(|d| d.sku.as_str())
            .collect::<Vec<_>>(),
        ["D", "E"]
    );
    s.apply(
        ProcessBatch {
            levels: vec![figure("D", "WH1", 1, 0, "4")],
            ..ProcessBatch::default()
        },
        8_000,
    )
    .await
    .unwrap();
    assert_eq!(
        position(s, "D", "WH1").await.on_hand,
        9,
        "stale in a batch too"
    );
}

/// A delivered order marks accepted only the active reservations of that order sourced from
/// the destination it was delivered to; other kinds and other orders mark nothing.
pub async fn delivered_order_marks_acceptance_for_its_source_only(fx: &Fixture) {
    let s = fx.store();
    set_levels(s, vec![figure("A", "WH1", 100, 0, "1")]).await;
    let feeds = [("WH1", 0)];
    let ours = reserve_ok(s, request(WEB, "ours", &[("A", 1)], &feeds)).await;
    let mut other_source = request(WEB, "theirs", &[("A", 1)], &feeds);
    other_source.source = "erp2".into();
    let theirs = reserve_ok(s, other_source).await;
    let other_order = reserve_ok(s, request(WEB, "other", &[("A", 1)], &feeds)).await;
    let held = reserve_ok(s, request(WEB, "held", &[("A", 1)], &feeds)).await;
    s.commit_reservation(&ours.id, "web/1", 1_100)
        .await
        .unwrap()
        .unwrap();
    s.commit_reservation(&theirs.id, "web/1", 1_100)
        .await
        .unwrap()
        .unwrap();
    s.commit_reservation(&other_order.id, "web/2", 1_100)
        .await
        .unwrap()
        .unwrap();

    // Another kind with the same key at the ERP: nothing.
    enqueue(s, vec![item(ERP, Kind::Customer, "web/1", "h")], 1_200).await;
    let c = claim(s, ERP, 10, 1_200).await;
    settle(s, vec![delivered(&c[0], None, 1_200)]).await;
    // The order to another endpoint: nothing either.
    deliver_order(s, SHOP, "web/1", Some("1"), 1_300).await;
    assert_eq!(
        s.reservation(&ours.id).await.unwrap().unwrap().accepted_at,
        None
    );

    deliver_order(s, ERP, "web/1", Some("42"), 2_000).await;
    let get = |id: String| async move { s.reservation(&id).await.unwrap().unwrap() };
    let r = get(ours.id.clone()).await;
    assert_eq!(
        (r.accepted_at, r.accepted_version.as_deref()),
        (Some(2_000), Some("42"))
    );
    assert_eq!(
        get(theirs.id.clone()).await.accepted_at,
        None,
        "another source"
    );
    assert_eq!(
        get(other_order.id.clone()).await.accepted_at,
        None,
        "another order"
    );
    assert_eq!(
        get(held.id.clone()).await.accepted_at,
        None,
        "not committed to the order"
    );
    // A later delivery of the same order (an update) keeps the first acceptance.
    deliver_order(s, ERP, "web/1", Some("50"), 3_000).await;
    let r = get(ours.id.clone()).await;
    assert_eq!(
        (r.accepted_at, r.accepted_version.as_deref()),
        (Some(2_000), Some("42"))
    );
    // Committed only after the ERP accepted the order: it takes over the first acceptance.
    s.commit_reservation(&held.id, "web/1", 3_050)
        .await
        .unwrap()
        .unwrap();
    let late = get(held.id.clone()).await;
    assert_eq!(
        (late.accepted_at, late.accepted_version.as_deref()),
        (Some(2_000), Some("42")),
        "a commit after the acceptance must learn it"
    );
    // A cancelled reservation is never marked.
    s.cancel_reservation(&other_order.id, 3_100)
        .await
        .unwrap()
        .unwrap();
    deliver_order(s, ERP, "web/2", Some("60"), 3_200).await;
    assert_eq!(get(other_order.id.clone()).await.accepted_at, None);
    check_ledger(s).await;
}

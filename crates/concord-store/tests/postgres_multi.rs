//! The stock ledger across two [`PgStore`] handles on one database (two Concord instances):
//! reservations on the same hot SKUs from both at once never oversell — the units reserved are
//! exactly the stock, never more — and cancellations and expiry racing from both release each
//! line once.
//!
//! Runs on the server named by `CONCORD_TEST_POSTGRES_URL` (see `postgres_conformance.rs`),
//! each test in a fresh schema dropped afterwards; without the variable every test skips loudly
//! on a workstation and fails under CI (`concord_testkit::real::missing`). No sleeps: every
//! task is awaited, and the assertions read the store afterwards.

use concord_core::inventory::Line;
use concord_store::{
    Feed, LevelUpdate, PgStore, ReservationState, ReserveOutcome, ReserveRequest, Store,
};
use std::collections::BTreeMap;
use std::sync::Arc;

mod support;
use support::pg::SchemaGuard;

/// Two handles (two pools, as two instances have) on one fresh schema.
async fn two_handles() -> Option<(Arc<PgStore>, Arc<PgStore>, SchemaGuard)> {
    let handles = support::pg::two_handles("concord_multi").await?;
    concord_testkit::real::ran("postgres_multi");
    Some(handles)
}

fn figure(sku: &str, location: &str, on_hand: i64) -> LevelUpdate {
    LevelUpdate {
        sku: sku.into(),
        location: location.into(),
        on_hand,
        committed: 0,
        incoming: serde_json::json!([]),
        version: "1".into(),
        captured_at: 1_000,
    }
}

fn feeds() -> Vec<Feed> {
    ["WH1", "WH2"]
        .into_iter()
        .map(|l| Feed {
            location: l.into(),
            buffer: 0,
        })
        .collect()
}

fn request(key: &str, skus: &[&str], expires_at: i64) -> ReserveRequest {
    ReserveRequest {
        id: format!("r-{key}"),
        channel: "web".into(),
        client_key: key.into(),
        lines: skus
            .iter()
            .map(|s| Line {
                sku: (*s).into(),
                quantity: 1,
            })
            .collect(),
        feeds: skus.iter().map(|s| ((*s).to_string(), feeds())).collect(),
        backorder_limit: None,
        source: "erp".into(),
        now: 1_000,
        expires_at,
    }
}

/// `held` of every position of these SKUs equals the sum of the unreleased lines there, read
/// through `handle`.
async fn assert_ledger_consistent(handle: &PgStore, skus: &[&str]) {
    let all = handle
        .reservations(None, None, 100_000)
        .await
        .expect("reservations");
    let mut expected: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in &all {
        for l in r.lines.iter().filter(|l| l.released_at.is_none()) {
            assert!(
                r.state.is_active(),
                "{} is {:?} with an open line",
                r.id,
                r.state
            );
            *expected
                .entry((l.sku.clone(), l.location.clone()))
                .or_default() += l.quantity;
        }
    }
    let skus: Vec<String> = skus.iter().map(|s| s.to_string()).collect();
    for level in handle.levels(&skus).await.expect("levels") {
        let want = expected
            .get(&(level.sku.clone(), level.location.clone()))
            .copied()
            .unwrap_or(0);
        assert_eq!(
            level.held, want,
            "held of ({}, {}) = its unreleased lines",
            level.sku, level.location
        );
        assert!(
            level.on_hand - level.committed - level.held >= 0,
            "({}, {}) oversold: {level:?}",
            level.sku,
            level.location
        );
    }
}

/// 16 tasks, half on each handle, reserve one unit of hot SKUs H1 (6 + 4 at two locations) and
/// H2 (7 at one): some requests want H1, some H2, some both in either order (so two handles
/// lock the same SKUs from requests listing them differently). Far more is asked than there
/// is: the units reserved are exactly the stock — 10 of H1, 7 of H2 — never more, every short
/// answer names nothing available, and no call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handles_reserving_hot_skus_never_oversell() {
    let Some((a, b, _guard)) = two_handles().await else {
        return;
    };
    a.update_levels(
        vec![
            figure("H1", "WH1", 6),
            figure("H1", "WH2", 4),
            figure("H2", "WH2", 7),
        ],
        60_000,
        1_000,
    )
    .await
    .expect("figures");
    let shapes: [&[&str]; 4] = [&["H1"], &["H2"], &["H1", "H2"], &["H2", "H1"]];
    let mut tasks = Vec::new();
    for t in 0..16usize {
        let store: Arc<PgStore> = if t % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        tasks.push(tokio::spawn(async move {
            let mut units: BTreeMap<String, i64> = BTreeMap::new();
            let mut ids = Vec::new();
            for n in 0..10usize {
                let skus = shapes[(t + n) % shapes.len()];
                let req = request(&format!("t{t}-{n}"), skus, 61_000);
                match store.reserve(req).await.expect("reserve failed") {
                    ReserveOutcome::Reserved(r) => {
                        for l in &r.lines {
                            *units.entry(l.sku.clone()).or_default() += l.quantity;
                        }
                        ids.push(r.id);
                    }
                    ReserveOutcome::Short(short) => {
                        assert!(short.iter().all(|s| s.available == 0), "{short:?}");
                    }
                    ReserveOutcome::Existing(r) => panic!("fresh key answered {r:?}"),
                }
            }
            (units, ids)
        }));
    }
    let mut units: BTreeMap<String, i64> = BTreeMap::new();
    let mut reserved = 0usize;
    for task in tasks {
        let (u, ids) = task.await.expect("task panicked");
        reserved += ids.len();
        for (sku, q) in u {
            *units.entry(sku).or_default() += q;
        }
    }
    assert_eq!(
        units,
        BTreeMap::from([("H1".to_string(), 10), ("H2".to_string(), 7)]),
        "the successful reservations took exactly the stock ({reserved} reservations)"
    );
    for (handle, name) in [(&a, "a"), (&b, "b")] {
        let levels = handle
            .levels(&["H1".into(), "H2".into()])
            .await
            .expect("levels");
        let held: Vec<(&str, &str, i64)> = levels
            .iter()
            .map(|l| (l.sku.as_str(), l.location.as_str(), l.held))
            .collect();
        assert_eq!(
            held,
            [("H1", "WH1", 6), ("H1", "WH2", 4), ("H2", "WH2", 7)],
            "handle {name} sees every unit held once"
        );
    }
    assert_ledger_consistent(&b, &["H1", "H2"]).await;
}

/// Both handles cancel the same reservations and expire them at once, while figures arrive:
/// each reservation ends once (cancelled or expired), `held` is lowered exactly once per line
/// (back to 0, never below), and expiry returns each reservation at most once over both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancels_and_expiry_racing_on_two_handles_release_each_line_once() {
    let Some((a, b, _guard)) = two_handles().await else {
        return;
    };
    a.update_levels(
        vec![figure("H1", "WH1", 20), figure("H2", "WH1", 20)],
        60_000,
        1_000,
    )
    .await
    .expect("figures");
    let mut ids = Vec::new();
    for n in 0..12 {
        let skus: &[&str] = if n % 2 == 0 {
            &["H1", "H2"]
        } else {
            &["H2", "H1"]
        };
        match b
            .reserve(request(&format!("k{n}"), skus, 5_000))
            .await
            .expect("reserve")
        {
            ReserveOutcome::Reserved(r) => ids.push(r.id),
            other => panic!("expected Reserved, got {other:?}"),
        }
    }
    let ids = Arc::new(ids);
    let mut cancels = Vec::new();
    for (t, store) in [&a, &b, &a, &b].into_iter().enumerate() {
        let (store, ids) = (Arc::clone(store), Arc::clone(&ids));
        cancels.push(tokio::spawn(async move {
            // Half the tasks walk the list backwards: opposite orders, same rows.
            let order: Vec<&String> = if t % 2 == 0 {
                ids.iter().collect()
            } else {
                ids.iter().rev().collect()
            };
            for id in order {
                match store.cancel_reservation(id, 6_000).await.expect("cancel") {
                    Ok(r) => assert_eq!(r.state, ReservationState::Cancelled),
                    Err(e) => assert_eq!(
                        e,
                        concord_store::TransitionError::WrongState(ReservationState::Expired),
                        "only an expired one refuses"
                    ),
                }
            }
        }));
    }
    let expiries = [&a, &b].map(|store| {
        let store = Arc::clone(store);
        tokio::spawn(async move { store.expire_reservations(6_000).await.expect("expire") })
    });
    let figures = {
        let store = Arc::clone(&a);
        tokio::spawn(async move {
            for v in 2..8 {
                let mut f = figure("H1", "WH1", 20);
                f.version = v.to_string();
                store
                    .update_levels(vec![f], 60_000, 2_000)
                    .await
                    .expect("figure");
            }
        })
    };
    for c in cancels {
        c.await.expect("cancel task panicked");
    }
    let mut expired = Vec::new();
    for e in expiries {
        expired.extend(
            e.await
                .expect("expiry task panicked")
                .into_iter()
                .map(|r| r.id),
        );
    }
    figures.await.expect("figure task panicked");
    let mut unique = expired.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        expired.len(),
        "expired once each: {expired:?}"
    );
    for id in ids.iter() {
        let r = a.reservation(id).await.expect("read").expect("exists");
        assert!(
            matches!(
                r.state,
                ReservationState::Cancelled | ReservationState::Expired
            ),
            "{id}: {:?}",
            r.state
        );
        assert!(r.lines.iter().all(|l| l.released_at.is_some()));
    }
    let held: Vec<i64> = b
        .levels(&["H1".into(), "H2".into()])
        .await
        .expect("levels")
        .iter()
        .map(|l| l.held)
        .collect();
    assert_eq!(held, [0, 0], "every line released exactly once");
    assert_ledger_consistent(&a, &["H1", "H2"]).await;
}

/// A reservation committed to an order on one handle while the other settles that order's
/// delivery to the ERP: whichever commits first, the reservation ends up with the order's
/// acceptance (taken over at the commit, or stamped by the settlement) — never lost between
/// the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_racing_the_orders_acceptance_on_another_handle_is_accepted() {
    use concord_store::{NewItem, ProcessBatch, Settlement};
    let Some((a, b, _guard)) = two_handles().await else {
        return;
    };
    a.update_levels(vec![figure("H1", "WH1", 100)], 60_000, 1_000)
        .await
        .expect("figures");
    const ORDERS: usize = 24;
    let mut ids = Vec::new();
    let mut items = Vec::new();
    for n in 0..ORDERS {
        match a
            .reserve(request(&format!("k{n}"), &["H1"], 61_000))
            .await
            .expect("reserve")
        {
            ReserveOutcome::Reserved(r) => ids.push(r.id),
            other => panic!("expected Reserved, got {other:?}"),
        }
        items.push(NewItem {
            dest: "erp".into(),
            kind: concord_core::Kind::Order,
            key: format!("web/{n}"),
            op: "create".into(),
            payload: serde_json::json!({ "n": n }),
            hash: format!("h{n}"),
            flow: "orders".into(),
            journal_id: None,
            captured_at: 1_000,
            coalesce: false,
            not_before: 0,
            waiting_on: Vec::new(),
        });
    }
    b.apply(
        ProcessBatch {
            items,
            ..ProcessBatch::default()
        },
        1_000,
    )
    .await
    .expect("enqueue");
    let claimed = b.claim("erp", 100, 1_000, 60_000).await.expect("claim");
    assert_eq!(claimed.len(), ORDERS);
    let mut tasks = Vec::new();
    for c in claimed {
        let n: usize = c
            .item
            .key
            .strip_prefix("web/")
            .and_then(|n| n.parse().ok())
            .expect("order key");
        let (a, b, id) = (Arc::clone(&a), Arc::clone(&b), ids[n].clone());
        let order = c.item.key.clone();
        tasks.push(tokio::spawn(async move {
            a.commit_reservation(&id, &order, 1_500)
                .await
                .expect("commit")
                .expect("held");
        }));
        tasks.push(tokio::spawn(async move {
            let settled = b
                .settle(vec![Settlement::Delivered {
                    id: c.item.id,
                    token: c.token,
                    external_id: None,
                    version: Some("42".into()),
                    at: 2_000,
                }])
                .await
                .expect("settle");
            assert_eq!(settled, 1);
        }));
    }
    for t in tasks {
        t.await.expect("task panicked");
    }
    for id in &ids {
        let r = b.reservation(id).await.expect("read").expect("exists");
        assert_eq!(r.state, ReservationState::Committed, "{id}");
        assert_eq!(
            (r.accepted_at, r.accepted_version.as_deref()),
            (Some(2_000), Some("42")),
            "{id}: the acceptance must not be lost between the two handles"
        );
    }
}

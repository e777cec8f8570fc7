//! Property test of the stock ledger over the FULL domain (issue 12), on [`SqliteStore`]:
//! reservations with quantities anywhere in `i64` (zero, negative, `i64::MAX`), repeated SKUs
//! whose sum overflows, SKUs with a NUL byte or 1,000 bytes long; ERP figures with `on_hand`
//! and `committed` anywhere in `i64`; buffers anywhere in `i64`; cancellations, expiries,
//! restarts. The store is not where input is bounded (the boundaries are, `concord_core::limits`)
//! — so it must stay whole whatever reaches it:
//!
//! - every ledger column is an SQLite integer (checked with `typeof` on the file itself), so a
//!   position can always be read back;
//! - `held` (`backordered`) of every position equals the exact (`i128`) sum of its unreleased
//!   lines and is never negative;
//! - a reservation is refused (an error, or `Short`) or reserves exactly what was asked, every
//!   line positive, never taking a location below `free − buffer = 0` (computed in `i128`);
//! - available-to-sell computed from the ledger is never negative;
//! - a figure's outcome reports `free` exactly (clamped into `i64`).
//!
//! The generators of `ledger_props.rs` stay within small friendly values to compare with a
//! model; this test trades the model for the whole range.

use concord_core::inventory::{ats, Line, Position};
use concord_core::Millis;
use concord_store::{
    Feed, LevelOutcome, LevelUpdate, ReserveOutcome, ReserveRequest, SqliteStore, Store, StoreError,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

fn skus() -> Vec<String> {
    vec!["A".into(), "B".into(), "C\u{0}D".into(), "E".repeat(1_000)]
}
const LOCS: [&str; 2] = ["L1", "L2"];

fn quantity() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 1i64..20,
        2 => any::<i64>(),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => Just(0i64),
        1 => Just(i64::MAX / 2 + 1),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        key: u8,
        lines: Vec<(usize, i64)>,
        buffers: [i64; 2],
        backorder_limit: Option<i64>,
    },
    Figure {
        sku: usize,
        loc: usize,
        on_hand: i64,
        committed: i64,
        incoming: i64,
    },
    Cancel(usize),
    Expire,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (
            any::<u8>(),
            prop::collection::vec((0..4usize, quantity()), 1..5),
            [prop_oneof![0i64..3, any::<i64>()], prop_oneof![0i64..3, any::<i64>()]],
            prop::option::of(prop_oneof![0i64..10, any::<i64>()]),
        )
            .prop_map(|(key, lines, buffers, backorder_limit)| Op::Reserve { key, lines, buffers, backorder_limit }),
        4 => (0..4usize, 0..2usize, quantity(), prop_oneof![0i64..5, any::<i64>()], prop_oneof![0i64..5, any::<i64>()])
            .prop_map(|(sku, loc, on_hand, committed, incoming)| Op::Figure { sku, loc, on_hand, committed, incoming }),
        2 => any::<usize>().prop_map(Op::Cancel),
        1 => Just(Op::Expire),
        1 => Just(Op::Restart),
    ]
}

/// Every ledger column of the file is an integer (an SQLite REAL would make the position
/// unreadable), checked on the database itself.
fn integers_only(path: &Path) {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open read-only");
    let bad: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM stock_levels
                     WHERE typeof(on_hand) <> 'integer' OR typeof(committed) <> 'integer'
                        OR typeof(held) <> 'integer' OR typeof(backordered) <> 'integer')
                  + (SELECT count(*) FROM reservation_lines WHERE typeof(quantity) <> 'integer')",
            [],
            |r| r.get(0),
        )
        .expect("count non-integers");
    assert_eq!(bad, 0, "a ledger figure is not an integer");
}

async fn check(store: &SqliteStore, path: &Path) {
    integers_only(path);
    let levels = store.levels(&skus()).await.expect("the ledger reads back");
    let reservations = store
        .reservations(None, None, 100_000)
        .await
        .expect("reservations");
    let mut sums: BTreeMap<(String, String), (i128, i128)> = BTreeMap::new();
    for r in &reservations {
        for l in &r.lines {
            assert!(l.quantity > 0, "a stored line of quantity {}", l.quantity);
            if l.released_at.is_none() {
                assert!(r.state.is_active(), "an ended reservation holds nothing");
                let e = sums.entry((l.sku.clone(), l.location.clone())).or_default();
                if l.backorder {
                    e.1 += i128::from(l.quantity);
                } else {
                    e.0 += i128::from(l.quantity);
                }
            }
        }
    }
    for level in &levels {
        let (held, backordered) = sums
            .get(&(level.sku.clone(), level.location.clone()))
            .copied()
            .unwrap_or_default();
        assert_eq!(
            (i128::from(level.held), i128::from(level.backordered)),
            (held, backordered),
            "held = Σ unreleased lines: {level:?}"
        );
        assert!(level.held >= 0 && level.backordered >= 0, "{level:?}");
    }
    for sku in skus() {
        let positions: Vec<(String, Position)> = levels
            .iter()
            .filter(|l| l.sku == sku)
            .map(|l| {
                (
                    l.location.clone(),
                    Position {
                        on_hand: l.on_hand,
                        committed: l.committed,
                        held: l.held,
                    },
                )
            })
            .collect();
        let a = ats(positions.iter().map(|(l, p)| (l.as_str(), p, 0)));
        assert!(a >= 0, "ats of {sku:?} is {a}");
    }
}

async fn step(store: &mut SqliteStore, path: &Path, now: &mut Millis, version: &mut i64, op: &Op) {
    let skus = skus();
    match op {
        Op::Reserve {
            key,
            lines,
            buffers,
            backorder_limit,
        } => {
            let lines: Vec<Line> = lines
                .iter()
                .map(|(s, q)| Line {
                    sku: skus[*s].clone(),
                    quantity: *q,
                })
                .collect();
            let feeds: Vec<Feed> = LOCS
                .iter()
                .zip(buffers)
                .map(|(l, b)| Feed {
                    location: (*l).into(),
                    buffer: *b,
                })
                .collect();
            let req = ReserveRequest {
                id: format!("r{now}"),
                channel: "web".into(),
                client_key: format!("k{key}"),
                lines: lines.clone(),
                feeds: skus.iter().map(|s| (s.clone(), feeds.clone())).collect(),
                backorder_limit: *backorder_limit,
                source: "erp".into(),
                now: *now,
                expires_at: now.saturating_add(30_000),
            };
            match store.reserve(req).await {
                Ok(ReserveOutcome::Reserved(r)) => {
                    assert!(lines.iter().all(|l| l.quantity > 0), "{lines:?}");
                    for sku in &skus {
                        let asked: i128 = lines
                            .iter()
                            .filter(|l| &l.sku == sku)
                            .map(|l| i128::from(l.quantity))
                            .sum();
                        let got: i128 = r
                            .lines
                            .iter()
                            .filter(|l| &l.sku == sku)
                            .map(|l| i128::from(l.quantity))
                            .sum();
                        assert_eq!(asked, got, "reserved exactly what was asked of {sku:?}");
                    }
                    // Never below free − buffer = 0 where free stock was taken.
                    let after = store.levels(&skus).await.expect("levels");
                    for a in r.lines.iter().filter(|l| !l.backorder) {
                        let buffer = feeds
                            .iter()
                            .find(|f| f.location == a.location)
                            .map_or(0, |f| f.buffer);
                        let l = after
                            .iter()
                            .find(|l| l.sku == a.sku && l.location == a.location)
                            .expect("the position exists");
                        let free =
                            i128::from(l.on_hand) - i128::from(l.committed) - i128::from(l.held);
                        // A negative buffer keeps nothing back; it never gives more than free.
                        let buffer = i128::from(buffer.max(0));
                        assert!(free - buffer >= 0, "oversold: {l:?} buffer {buffer}");
                    }
                }
                Ok(ReserveOutcome::Existing(_)) | Ok(ReserveOutcome::Short(_)) => {}
                Err(StoreError::OutOfRange(m)) => assert!(!m.is_empty()),
                Err(StoreError::Unsupported(m)) => {
                    assert!(lines.iter().any(|l| l.quantity < 1), "{m}: {lines:?}")
                }
                Err(e) => panic!("reserve failed: {e} ({lines:?})"),
            }
        }
        Op::Figure {
            sku,
            loc,
            on_hand,
            committed,
            incoming,
        } => {
            *version += 1;
            let u = LevelUpdate {
                sku: skus[*sku].clone(),
                location: LOCS[*loc].into(),
                on_hand: *on_hand,
                committed: *committed,
                incoming: serde_json::json!([{ "quantity": incoming, "eta": "2030-01-01" }]),
                version: version.to_string(),
                captured_at: *now,
            };
            let out = store
                .update_levels(vec![u], 1_000, *now)
                .await
                .expect("any figure is applied");
            let level = store
                .levels(&[skus[*sku].clone()])
                .await
                .expect("levels")
                .into_iter()
                .find(|l| l.location == LOCS[*loc])
                .expect("the position exists");
            let exact =
                i128::from(level.on_hand) - i128::from(level.committed) - i128::from(level.held);
            let clamped = exact.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
            match &out[..] {
                [LevelOutcome::Applied { free, .. }] => assert_eq!(*free, clamped),
                other => panic!("{other:?}"),
            }
        }
        Op::Cancel(pick) => {
            let all = store
                .reservations(None, None, 100_000)
                .await
                .expect("reservations");
            if !all.is_empty() {
                let id = all[pick % all.len()].id.clone();
                store
                    .cancel_reservation(&id, *now)
                    .await
                    .expect("cancel")
                    .ok();
            }
        }
        Op::Expire => {
            *now += 40_000;
            store.expire_reservations(*now).await.expect("expire");
        }
        Op::Restart => {
            store.close().await;
            *store = SqliteStore::open(path).expect("reopen");
        }
    }
}

fn run(ops: Vec<Op>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("concord.db");
        let mut store = SqliteStore::open(&path).expect("open");
        let (mut now, mut version) = (1_000, 0);
        for op in &ops {
            step(&mut store, &path, &mut now, &mut version, op).await;
            now += 100;
            check(&store, &path).await;
        }
        store.close().await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_stays_whole_over_the_full_domain(ops in prop::collection::vec(op(), 5..40)) {
        run(ops);
    }
}

/// The reported exploit at the store: two lines of one SKU, each `i64::MAX`, are refused
/// (never a held of −2), and a position whose `held` is near the end of the range refuses
/// what would overflow it instead of turning the column into a REAL.
#[tokio::test]
async fn overflowing_reservations_are_refused_and_held_stays_an_integer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("concord.db");
    let store = SqliteStore::open(&path).expect("open");
    let figure = |on_hand: i64| LevelUpdate {
        sku: "X".into(),
        location: "L1".into(),
        on_hand,
        committed: 0,
        incoming: serde_json::json!([]),
        version: on_hand.to_string(),
        captured_at: 0,
    };
    store
        .update_levels(vec![figure(i64::MAX)], 1_000, 0)
        .await
        .expect("figure");
    let req = |id: &str, lines: Vec<i64>| ReserveRequest {
        id: id.into(),
        channel: "web".into(),
        client_key: id.into(),
        lines: lines
            .into_iter()
            .map(|quantity| Line {
                sku: "X".into(),
                quantity,
            })
            .collect(),
        feeds: vec![(
            "X".into(),
            vec![Feed {
                location: "L1".into(),
                buffer: 0,
            }],
        )],
        backorder_limit: None,
        source: "erp".into(),
        now: 0,
        expires_at: 30_000,
    };
    let out = store.reserve(req("r1", vec![i64::MAX, i64::MAX])).await;
    assert!(matches!(out, Err(StoreError::OutOfRange(_))), "{out:?}");
    // Fill the position almost to the end of the range, then ask for more than is left.
    let out = store
        .reserve(req("r2", vec![i64::MAX - 1]))
        .await
        .expect("reserve");
    assert!(matches!(out, ReserveOutcome::Reserved(_)), "{out:?}");
    let out = store.reserve(req("r3", vec![1])).await.expect("reserve");
    assert!(matches!(out, ReserveOutcome::Reserved(_)), "{out:?}");
    // The ERP now reports more than i64 can hold beside what is held: nothing free to sell…
    store
        .update_levels(vec![figure(i64::MAX - 1)], 1_000, 0)
        .await
        .expect("figure");
    integers_only(&path);
    let levels = store.levels(&["X".to_string()]).await.expect("levels");
    assert_eq!(levels[0].held, i64::MAX);
    // …and a raw statement that would overflow `held` is refused by the schema.
    let conn = rusqlite::Connection::open(&path).expect("open");
    let e = conn
        .execute(
            "UPDATE stock_levels SET held = held + 1 WHERE sku = 'X'",
            [],
        )
        .expect_err("an overflowing sum is refused");
    assert!(e.to_string().contains("not an integer"), "{e}");
    drop(conn);
    integers_only(&path);
    store.close().await;
}

//! Property test of the stock ledger (design §5) on [`SqliteStore`]: random interleavings of
//! reservations, commits, cancellations, expiries, ERP snapshots (delayed, repeated, stale),
//! order acceptance (a `Delivered` order settlement, possibly after the ERP's figures that already
//! include the order) and restarts (close, reopen the same file),
//! checked after every step against a small in-memory model.
//!
//! After every step:
//! - (a) a successful reservation left `free − buffer ≥ 0` at every position it took free stock
//!   from (it never promised more than `on_hand − committed − buffer`);
//! - (b) `held` (`backordered`) of every position equals the sum of its unreleased (backorder)
//!   lines, is never negative, and no line is released twice (the model releases each once and
//!   the store's figures must follow it exactly);
//! - (c) the store agrees with the model on every position's figures and every reservation's
//!   state and lines, and on every call's outcome (routing, shortages, releases, free).
//!
//! The ERP is modelled too: accepting an order raises its `committed` (or takes its incoming),
//! and each figure carries the ERP's version then; a line may only be released by a figure that
//! includes its order (version ≥ the acceptance's), which the model asserts.

use concord_core::inventory::{route, Backorderable, Candidate, Line, RouteError};
use concord_core::{Kind, Millis};
use concord_store::{
    Feed, LevelOutcome, LevelUpdate, NewItem, ProcessBatch, ReservationState, ReserveOutcome,
    ReserveRequest, Settlement, SqliteStore, Store, TransitionError,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

const SKUS: [&str; 2] = ["A", "B"];
const LOCS: [&str; 2] = ["L1", "L2"];
const ERP: &str = "erp";
const TTL: Millis = 30_000;

/// (location, buffer) in routing priority order, and the backorder limit, per channel.
fn policy(channel: usize) -> (&'static str, [(&'static str, i64); 2], Option<i64>) {
    match channel {
        0 => ("web", [("L1", 1), ("L2", 0)], None),
        _ => ("b2b", [("L2", 2), ("L1", 0)], Some(3)),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        channel: usize,
        key: u8,
        lines: Vec<(usize, i64)>,
    },
    Commit(usize),
    Cancel(usize),
    Expire(Millis),
    /// The ERP's own on-hand changes (receipts, a rep's direct sale).
    ErpChange {
        sku: usize,
        loc: usize,
        delta: i64,
    },
    /// The ERP reports a position: sent at once, or held back to arrive later (out of order).
    Snapshot {
        sku: usize,
        loc: usize,
        delay: bool,
    },
    SendDelayed(usize),
    /// The ERP reports every position (sent at once, or held back).
    SnapshotAll {
        delay: bool,
    },
    /// The last figure sent for a position, again.
    Resend {
        sku: usize,
        loc: usize,
    },
    /// The ERP accepts a committed order (the order item is delivered to it). With
    /// `figures_first`, the ERP's figures of the order's positions (newer than the acceptance)
    /// reach the hub before the delivery is settled, as a stock webhook can overtake the worker.
    Accept {
        pick: usize,
        figures_first: bool,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..8u8, prop::collection::vec((0..2usize, 1..5i64), 1..3))
            .prop_map(|(channel, key, lines)| Op::Reserve { channel, key, lines }),
        3 => any::<usize>().prop_map(Op::Commit),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => (0..40_000i64).prop_map(Op::Expire),
        1 => (0..2usize, 0..2usize, -3..6i64).prop_map(|(sku, loc, delta)| Op::ErpChange { sku, loc, delta }),
        3 => (0..2usize, 0..2usize, any::<bool>()).prop_map(|(sku, loc, delay)| Op::Snapshot { sku, loc, delay }),
        3 => any::<usize>().prop_map(Op::SendDelayed),
        1 => (0..2usize, 0..2usize).prop_map(|(sku, loc)| Op::Resend { sku, loc }),
        3 => (any::<usize>(), any::<bool>())
            .prop_map(|(pick, figures_first)| Op::Accept { pick, figures_first }),
        2 => any::<bool>().prop_map(|delay| Op::SnapshotAll { delay }),
        1 => Just(Op::Restart),
    ]
}

/// The ERP's truth for one position.
#[derive(Debug, Clone, Default)]
struct ErpPos {
    on_hand: i64,
    committed: i64,
    incoming: i64,
}

/// What the hub's ledger should hold for one position.
#[derive(Debug, Clone, Default, PartialEq)]
struct HubPos {
    on_hand: i64,
    committed: i64,
    incoming: i64,
    version: Option<i64>,
    held: i64,
    backordered: i64,
}

#[derive(Debug, Clone)]
struct MLine {
    sku: String,
    loc: String,
    quantity: i64,
    backorder: bool,
    released: bool,
}

#[derive(Debug, Clone)]
struct MRes {
    id: String,
    state: ReservationState,
    lines: Vec<MLine>,
    order: Option<String>,
    expires_at: Millis,
    accepted_version: Option<i64>,
}

#[derive(Debug, Clone)]
struct Figure {
    sku: String,
    loc: String,
    on_hand: i64,
    committed: i64,
    incoming: i64,
    version: i64,
}

impl Figure {
    fn update(&self, captured_at: Millis) -> LevelUpdate {
        LevelUpdate {
            sku: self.sku.clone(),
            location: self.loc.clone(),
            on_hand: self.on_hand,
            committed: self.committed,
            incoming: if self.incoming > 0 {
                serde_json::json!([{ "quantity": self.incoming, "eta": "2030-01-01" }])
            } else {
                serde_json::json!([])
            },
            version: self.version.to_string(),
            captured_at,
        }
    }
}

#[derive(Default)]
struct Model {
    now: Millis,
    erp_version: i64,
    erp: BTreeMap<(String, String), ErpPos>,
    hub: BTreeMap<(String, String), HubPos>,
    reservations: Vec<MRes>,
    keys: BTreeMap<(String, String), usize>,
    delayed: Vec<Figure>,
    last_sent: BTreeMap<(String, String), Figure>,
    next_id: usize,
}

impl Model {
    fn pos(&self, sku: &str, loc: &str) -> HubPos {
        self.hub
            .get(&(sku.to_owned(), loc.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    fn hub_mut(&mut self, sku: &str, loc: &str) -> &mut HubPos {
        self.hub
            .entry((sku.to_owned(), loc.to_owned()))
            .or_default()
    }

    fn capture(&mut self, sku: &str, loc: &str) -> Figure {
        self.erp_version += 1;
        let e = self
            .erp
            .get(&(sku.to_owned(), loc.to_owned()))
            .cloned()
            .unwrap_or_default();
        Figure {
            sku: sku.into(),
            loc: loc.into(),
            on_hand: e.on_hand,
            committed: e.committed,
            incoming: e.incoming,
            version: self.erp_version,
        }
    }

    fn release(&mut self, r: usize, l: usize) {
        let line = &mut self.reservations[r].lines[l];
        assert!(!line.released, "model: a line released twice");
        line.released = true;
        let (sku, loc, q, bo) = (
            line.sku.clone(),
            line.loc.clone(),
            line.quantity,
            line.backorder,
        );
        let p = self.hub_mut(&sku, &loc);
        if bo {
            p.backordered -= q;
        } else {
            p.held -= q;
        }
    }

    fn end(&mut self, r: usize, state: ReservationState) {
        self.reservations[r].state = state;
        for l in 0..self.reservations[r].lines.len() {
            if !self.reservations[r].lines[l].released {
                self.release(r, l);
            }
        }
    }

    /// What applying `f` should do: `None` = stale, else (released per reservation, free).
    fn apply_figure(&mut self, f: &Figure) -> Option<(Vec<(String, i64)>, i64)> {
        let p = self.pos(&f.sku, &f.loc);
        match p.version {
            Some(v) if f.version < v => return None,
            Some(v) if f.version == v => {
                return Some((Vec::new(), p.on_hand - p.committed - p.held))
            }
            _ => {}
        }
        {
            let p = self.hub_mut(&f.sku, &f.loc);
            p.on_hand = f.on_hand;
            p.committed = f.committed;
            p.incoming = f.incoming;
            p.version = Some(f.version);
        }
        let mut released: BTreeMap<String, i64> = BTreeMap::new();
        for r in 0..self.reservations.len() {
            let res = &self.reservations[r];
            let Some(accepted) = res.accepted_version else {
                continue;
            };
            if !res.state.is_active() || f.version <= accepted {
                continue;
            }
            // The ERP's figure includes every order it accepted at or before its version.
            assert!(f.version >= accepted);
            for l in 0..res.lines.len() {
                let line = &self.reservations[r].lines[l];
                if !line.released && line.sku == f.sku && line.loc == f.loc {
                    let q = line.quantity;
                    self.release(r, l);
                    *released.entry(self.reservations[r].id.clone()).or_default() += q;
                }
            }
            if self.reservations[r].lines.iter().all(|l| l.released) {
                self.reservations[r].state = ReservationState::Released;
            }
        }
        let p = self.pos(&f.sku, &f.loc);
        Some((
            released.into_iter().collect(),
            p.on_hand - p.committed - p.held,
        ))
    }
}

async fn send(store: &SqliteStore, model: &mut Model, f: Figure) {
    let out = store
        .update_levels(vec![f.update(model.now)], 1_000_000, model.now)
        .await
        .expect("update_levels");
    let expected = match model.apply_figure(&f) {
        None => LevelOutcome::Stale,
        Some((released, free)) => LevelOutcome::Applied { released, free },
    };
    assert_eq!(out, vec![expected], "figure {f:?}");
    model
        .last_sent
        .insert((f.sku.clone(), f.loc.clone()), f.clone());
}

async fn step(store: &mut SqliteStore, path: &Path, model: &mut Model, op: &Op) {
    match op {
        Op::Reserve {
            channel,
            key,
            lines,
        } => {
            let (name, feeds, backorder_limit) = policy(*channel);
            let client_key = format!("k{key}");
            let lines: Vec<Line> = lines
                .iter()
                .map(|(s, q)| Line {
                    sku: SKUS[*s].into(),
                    quantity: *q,
                })
                .collect();
            let id = format!("r{}", model.next_id);
            let req = ReserveRequest {
                id: id.clone(),
                channel: name.into(),
                client_key: client_key.clone(),
                lines: lines.clone(),
                feeds: SKUS
                    .iter()
                    .map(|s| {
                        let f = feeds
                            .iter()
                            .map(|(l, b)| Feed {
                                location: (*l).into(),
                                buffer: *b,
                            })
                            .collect();
                        ((*s).to_owned(), f)
                    })
                    .collect(),
                backorder_limit,
                source: ERP.into(),
                now: model.now,
                expires_at: model.now + TTL,
            };
            let out = store.reserve(req).await.expect("reserve");
            if let Some(&r) = model.keys.get(&(name.to_owned(), client_key.clone())) {
                match out {
                    ReserveOutcome::Existing(got) => assert_eq!(got.id, model.reservations[r].id),
                    other => panic!("a reused key must give Existing, got {other:?}"),
                }
                return;
            }
            // The model's own routing over the model's positions.
            let candidates = |sku: &str| -> Vec<Candidate> {
                feeds
                    .iter()
                    .map(|(l, b)| {
                        let p = model.pos(sku, l);
                        Candidate {
                            location: (*l).into(),
                            available: (p.on_hand - p.committed - p.held - b).max(0),
                        }
                    })
                    .collect()
            };
            let backorderable = |sku: &str| -> Option<Backorderable> {
                let limit = backorder_limit?;
                let location = feeds
                    .iter()
                    .find(|(l, _)| model.pos(sku, l).incoming > 0)?
                    .0;
                let incoming: i64 = feeds.iter().map(|(l, _)| model.pos(sku, l).incoming).sum();
                let bo: i64 = feeds
                    .iter()
                    .map(|(l, _)| model.pos(sku, l).backordered)
                    .sum();
                Some(Backorderable {
                    quantity: (limit - bo).min(incoming - bo).max(0),
                    location: location.into(),
                })
            };
            let expected = route(&lines, &candidates, &backorderable);
            match (out, expected) {
                (ReserveOutcome::Short(got), Err(RouteError::Short(want))) => assert_eq!(got, want),
                (ReserveOutcome::Reserved(got), Ok(want)) => {
                    let got_allocs: Vec<_> = got
                        .lines
                        .iter()
                        .map(|l| (l.sku.clone(), l.location.clone(), l.quantity, l.backorder))
                        .collect();
                    let want_allocs: Vec<_> = want
                        .iter()
                        .map(|a| (a.sku.clone(), a.location.clone(), a.quantity, a.backorder))
                        .collect();
                    assert_eq!(got_allocs, want_allocs);
                    let mut mlines = Vec::new();
                    for a in &want {
                        let p = model.hub_mut(&a.sku, &a.location);
                        if a.backorder {
                            p.backordered += a.quantity;
                        } else {
                            p.held += a.quantity;
                        }
                        mlines.push(MLine {
                            sku: a.sku.clone(),
                            loc: a.location.clone(),
                            quantity: a.quantity,
                            backorder: a.backorder,
                            released: false,
                        });
                    }
                    model
                        .keys
                        .insert((name.to_owned(), client_key), model.reservations.len());
                    model.reservations.push(MRes {
                        id,
                        state: ReservationState::Held,
                        lines: mlines,
                        order: None,
                        expires_at: model.now + TTL,
                        accepted_version: None,
                    });
                    model.next_id += 1;
                    // (a) what was taken from free stock left free − buffer ≥ 0 there.
                    let levels = store.levels(&SKUS.map(String::from)).await.expect("levels");
                    for a in want.iter().filter(|a| !a.backorder) {
                        let buffer = feeds
                            .iter()
                            .find(|(l, _)| *l == a.location)
                            .map_or(0, |(_, b)| *b);
                        let level = levels
                            .iter()
                            .find(|l| l.sku == a.sku && l.location == a.location)
                            .expect("a reserved position exists");
                        assert!(
                            level.on_hand - level.committed - level.held - buffer >= 0,
                            "reserved beyond on_hand − committed − buffer: {level:?}"
                        );
                    }
                }
                (got, want) => panic!("store {got:?}, model {want:?}"),
            }
        }
        Op::Commit(pick) => {
            if model.reservations.is_empty() {
                return;
            }
            let r = pick % model.reservations.len();
            let res = model.reservations[r].clone();
            let order = format!("web/{}", res.id);
            let out = store
                .commit_reservation(&res.id, &order, model.now)
                .await
                .expect("commit");
            match res.state {
                ReservationState::Held => {
                    let got = out.expect("held commits");
                    assert_eq!(got.state, ReservationState::Committed);
                    model.reservations[r].state = ReservationState::Committed;
                    model.reservations[r].order = Some(order);
                }
                ReservationState::Committed => {
                    assert_eq!(out.map(|r| r.state), Ok(ReservationState::Committed))
                }
                state => assert_eq!(out, Err(TransitionError::WrongState(state))),
            }
        }
        Op::Cancel(pick) => {
            if model.reservations.is_empty() {
                return;
            }
            let r = pick % model.reservations.len();
            let res = model.reservations[r].clone();
            let out = store
                .cancel_reservation(&res.id, model.now)
                .await
                .expect("cancel");
            match res.state {
                ReservationState::Held | ReservationState::Committed => {
                    assert_eq!(out.map(|r| r.state), Ok(ReservationState::Cancelled));
                    model.end(r, ReservationState::Cancelled);
                }
                ReservationState::Cancelled => {
                    assert_eq!(out.map(|r| r.state), Ok(ReservationState::Cancelled))
                }
                state => assert_eq!(out, Err(TransitionError::WrongState(state))),
            }
        }
        Op::Expire(advance) => {
            model.now += advance;
            let mut got: Vec<String> = store
                .expire_reservations(model.now)
                .await
                .expect("expire")
                .into_iter()
                .map(|r| r.id)
                .collect();
            got.sort();
            let mut want = Vec::new();
            for r in 0..model.reservations.len() {
                let res = &model.reservations[r];
                if res.state == ReservationState::Held && res.expires_at <= model.now {
                    want.push(res.id.clone());
                    model.end(r, ReservationState::Expired);
                }
            }
            want.sort();
            assert_eq!(got, want, "expired");
        }
        Op::ErpChange { sku, loc, delta } => {
            model.erp_version += 1;
            let e = model
                .erp
                .entry((SKUS[*sku].into(), LOCS[*loc].into()))
                .or_default();
            e.on_hand = (e.on_hand + delta).max(0);
        }
        Op::Snapshot { sku, loc, delay } => {
            let f = model.capture(SKUS[*sku], LOCS[*loc]);
            if *delay {
                model.delayed.push(f);
            } else {
                send(store, model, f).await;
            }
        }
        Op::SnapshotAll { delay } => {
            for sku in SKUS {
                for loc in LOCS {
                    let f = model.capture(sku, loc);
                    if *delay {
                        model.delayed.push(f);
                    } else {
                        send(store, model, f).await;
                    }
                }
            }
        }
        Op::SendDelayed(pick) => {
            if model.delayed.is_empty() {
                return;
            }
            let f = model.delayed.remove(pick % model.delayed.len());
            send(store, model, f).await;
        }
        Op::Resend { sku, loc } => {
            if let Some(f) = model
                .last_sent
                .get(&(SKUS[*sku].to_owned(), LOCS[*loc].to_owned()))
                .cloned()
            {
                send(store, model, f).await;
            }
        }
        Op::Accept {
            pick,
            figures_first,
        } => {
            let open: Vec<usize> = (0..model.reservations.len())
                .filter(|&r| {
                    let res = &model.reservations[r];
                    res.state == ReservationState::Committed && res.accepted_version.is_none()
                })
                .collect();
            if open.is_empty() {
                return;
            }
            let r = open[pick % open.len()];
            // The ERP takes the order: committed for stock lines, incoming for backorders.
            model.erp_version += 1;
            for l in model.reservations[r].lines.clone() {
                let e = model.erp.entry((l.sku, l.loc)).or_default();
                if l.backorder {
                    e.incoming = (e.incoming - l.quantity).max(0);
                } else {
                    e.committed += l.quantity;
                }
            }
            let version = model.erp_version;
            let order = model.reservations[r]
                .order
                .clone()
                .expect("a committed reservation has an order");
            if *figures_first {
                let mut positions: Vec<_> = model.reservations[r]
                    .lines
                    .iter()
                    .map(|l| (l.sku.clone(), l.loc.clone()))
                    .collect();
                positions.sort();
                positions.dedup();
                for (sku, loc) in positions {
                    let f = model.capture(&sku, &loc);
                    send(store, model, f).await;
                }
            }
            model.reservations[r].accepted_version = Some(version);
            deliver_order(store, &order, version, model.now).await;
            // The acceptance releases the lines whose position's figure already includes it.
            let mut any = false;
            for l in 0..model.reservations[r].lines.len() {
                let line = &model.reservations[r].lines[l];
                let includes = model
                    .pos(&line.sku, &line.loc)
                    .version
                    .is_some_and(|v| v > version);
                if !line.released && includes {
                    model.release(r, l);
                    any = true;
                }
            }
            if any && model.reservations[r].lines.iter().all(|l| l.released) {
                model.reservations[r].state = ReservationState::Released;
            }
        }
        Op::Restart => {
            store.close().await;
            *store = SqliteStore::open(path).expect("reopen");
        }
    }
}

/// Deliver the order item to the ERP with the ERP's version of it.
async fn deliver_order(store: &SqliteStore, order: &str, version: i64, now: Millis) {
    let item = NewItem {
        dest: ERP.into(),
        kind: Kind::Order,
        key: order.into(),
        op: "create".into(),
        payload: serde_json::json!({ "order": order }),
        hash: format!("h-{order}"),
        flow: "orders".into(),
        journal_id: None,
        captured_at: now,
        waiting_on: Vec::new(),
        coalesce: false,
        not_before: 0,
    };
    store
        .apply(
            ProcessBatch {
                items: vec![item],
                ..ProcessBatch::default()
            },
            now,
        )
        .await
        .expect("apply");
    let claimed = store
        .claim(ERP, 100, now, now + 60_000)
        .await
        .expect("claim");
    let settlements: Vec<Settlement> = claimed
        .iter()
        .map(|c| Settlement::Delivered {
            id: c.item.id,
            token: c.token,
            external_id: None,
            version: Some(version.to_string()),
            at: now,
        })
        .collect();
    assert_eq!(settlements.len(), 1, "only this order is pending");
    assert_eq!(store.settle(settlements).await.expect("settle"), 1);
}

/// (b) and (c): the store's ledger and reservations match the model and the invariant.
async fn check(store: &SqliteStore, model: &Model) {
    let levels = store.levels(&SKUS.map(String::from)).await.expect("levels");
    let stored = store
        .reservations(None, None, 10_000)
        .await
        .expect("reservations");
    assert_eq!(stored.len(), model.reservations.len());
    let mut sums: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for res in &stored {
        let m = model
            .reservations
            .iter()
            .find(|m| m.id == res.id)
            .expect("a reservation the model knows");
        assert_eq!(res.state, m.state, "state of {}", res.id);
        assert_eq!(res.order, m.order);
        assert_eq!(
            res.accepted_version,
            m.accepted_version.map(|v| v.to_string())
        );
        assert_eq!(res.lines.len(), m.lines.len());
        for (l, ml) in res.lines.iter().zip(&m.lines) {
            assert_eq!(l.released_at.is_some(), ml.released, "line of {}", res.id);
            if l.released_at.is_none() {
                assert!(res.state.is_active(), "an ended reservation holds nothing");
                let e = sums.entry((l.sku.clone(), l.location.clone())).or_default();
                if l.backorder {
                    e.1 += l.quantity;
                } else {
                    e.0 += l.quantity;
                }
            }
        }
    }
    for level in &levels {
        let key = (level.sku.clone(), level.location.clone());
        let (held, backordered) = sums.get(&key).copied().unwrap_or_default();
        assert!(level.held >= 0 && level.backordered >= 0, "{level:?}");
        assert_eq!(
            (level.held, level.backordered),
            (held, backordered),
            "held = Σ unreleased lines at {key:?}"
        );
        let m = model.pos(&level.sku, &level.location);
        assert_eq!(
            (
                level.on_hand,
                level.committed,
                level.held,
                level.backordered,
                level.version.clone()
            ),
            (
                m.on_hand,
                m.committed,
                m.held,
                m.backordered,
                m.version.map(|v| v.to_string())
            ),
            "position {key:?}"
        );
    }
    for ((sku, loc), m) in &model.hub {
        if m.version.is_some() || m.held != 0 || m.backordered != 0 {
            assert!(
                levels.iter().any(|l| &l.sku == sku && &l.location == loc),
                "position ({sku}, {loc}) missing"
            );
        }
    }
}

fn run(initial: Vec<i64>, incoming: Vec<i64>, ops: Vec<Op>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("concord.db");
        let mut store = SqliteStore::open(&path).expect("open");
        let mut model = Model {
            now: 1_000,
            ..Model::default()
        };
        for (i, (sku, loc)) in SKUS
            .iter()
            .flat_map(|s| LOCS.iter().map(move |l| (*s, *l)))
            .enumerate()
        {
            let e = model.erp.entry((sku.into(), loc.into())).or_default();
            e.on_hand = initial[i];
            // Purchase orders arrive at L2.
            e.incoming = if loc == "L2" { incoming[i] } else { 0 };
            let f = model.capture(sku, loc);
            send(&store, &mut model, f).await;
        }
        check(&store, &model).await;
        for op in &ops {
            step(&mut store, &path, &mut model, op).await;
            model.now += 100;
            check(&store, &model).await;
        }
        store.close().await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_never_oversells_and_releases_once(
        initial in prop::collection::vec(0..15i64, 4),
        incoming in prop::collection::vec(0..6i64, 4),
        ops in prop::collection::vec(op(), 10..60),
    ) {
        run(initial, incoming, ops);
    }
}

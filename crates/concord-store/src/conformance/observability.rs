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
use crate::{AuditEvent, ItemState, JournalStatus, NewItem, ProcessBatch, Settlement, Store};
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

/// `stats` (maintained counters) must equal `recount_stats` (fresh `COUNT(*)`s of the rows).
async fn counters_match(s: &dyn Store, after: &str) -> crate::StoreStats {
    let maintained = s.stats().await.expect("stats");
    let fresh = s.recount_stats().await.expect("recount_stats");
    assert_eq!(
        maintained, fresh,
        "after {after}: the maintained stats counters differ from fresh counts of the rows"
    );
    maintained
}

/// Every writer of the journal, the outbox and the dead letters keeps the maintained counters
/// exact: after each step of a mixed workload (ingests with a duplicate and a rejected capture,
/// applies with items and a journal status change, claims, settlements to done, dead and
/// retry, parking and un-parking, lease recovery, dead-letter replay and drop, retention), the
/// figures of `stats` equal fresh counts of the rows.
pub async fn stats_counters_equal_fresh_counts(fx: &Fixture) {
    let s = fx.store();
    counters_match(s, "nothing").await;
    let mut bad = capture(SHOP, Kind::Product, "bad", "v1");
    bad.rejected = Some("invalid".into());
    let outcomes = s
        .ingest(
            vec![
                capture(SHOP, Kind::Product, "p1", "v1"),
                capture(SHOP, Kind::Product, "p2", "v1"),
                capture(SHOP, Kind::Product, "p1", "v1"), // a duplicate: not stored
                bad,
                capture(SHOP, Kind::Product, "p3", "v1"),
            ],
            None,
        )
        .await
        .expect("ingest");
    let ids: Vec<i64> = outcomes
        .into_iter()
        .filter_map(|o| match o {
            crate::IngestOutcome::Stored(id) => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 4, "three captures and the rejected one stored");
    let st = counters_match(s, "ingest").await;
    assert_eq!((st.journal_total, st.journal_rejected), (4, 1));
    assert_eq!(st.dead_letters_open, 1);

    let journal = |it: NewItem, id: i64, captured_at: Millis| NewItem {
        journal_id: Some(id),
        captured_at,
        ..it
    };
    s.apply(
        ProcessBatch {
            journal: vec![
                (ids[0], JournalStatus::Processed, None, None),
                (ids[1], JournalStatus::Processed, None, None),
                (ids[3], JournalStatus::Rejected, Some("no".into()), None),
            ],
            items: vec![
                journal(item(ERP, Kind::Product, "p1", "a"), ids[0], 100),
                journal(item(ERP, Kind::Product, "p2", "b"), ids[1], 90),
                journal(item(ERP, Kind::Order, "o1", "c"), ids[1], 80),
                waiting(item(ERP, Kind::Order, "o2", "d"), &[(Kind::Customer, "c1")]),
                item(SHOP, Kind::Order, "o3", "e"),
                item(SHOP, Kind::Customer, "c1", "f"),
            ],
            ..ProcessBatch::default()
        },
        1_000,
    )
    .await
    .expect("apply");
    let st = counters_match(s, "apply").await;
    assert_eq!((st.journal_pending, st.journal_rejected), (0, 2));

    let erp = claim(s, ERP, 10, 1_000).await;
    assert_eq!(erp.len(), 3, "the parked item is not claimed");
    counters_match(s, "claim").await;
    settle(
        s,
        vec![
            delivered(&erp[0], None, 1_100),
            Settlement::Dead {
                id: erp[1].item.id,
                token: erp[1].token,
                reason: "refused".into(),
                at: 1_100,
            },
            Settlement::Retry {
                id: erp[2].item.id,
                token: erp[2].token,
                next_at: 1_200,
                error: "timeout".into(),
                count: true,
            },
        ],
    )
    .await;
    let st = counters_match(s, "settlements to done, dead and retry").await;
    assert_eq!(st.dead_letters_open, 2);

    // The customer reaches the ERP (an xref): the parked order is released.
    let erp = claim(s, ERP, 10, 1_300).await;
    assert!(!erp.is_empty());
    let shop = claim(s, SHOP, 10, 1_300).await;
    let customer = shop
        .iter()
        .find(|c| c.item.kind == Kind::Customer)
        .expect("the customer is claimed");
    settle(
        s,
        vec![Settlement::Delivered {
            id: customer.item.id,
            token: customer.token,
            external_id: Some("c1".into()),
            version: None,
            at: 1_300,
        }],
    )
    .await;
    counters_match(s, "a delivered dependency").await;
    // Leases end: every in-flight item returns to pending.
    assert!(s.recover_expired(i64::MAX / 2).await.expect("recover") > 0);
    counters_match(s, "lease recovery").await;

    let open = s
        .dead_letters(crate::DeadLetterFilter::default())
        .await
        .expect("dead letters");
    assert_eq!(open.len(), 2);
    let replayed = s
        .replay_dead_letters(
            vec![(
                open[0].id,
                crate::Replay::Inbound(capture(SHOP, Kind::Product, "bad", "v2")),
            )],
            2_000,
        )
        .await
        .expect("replay");
    assert_eq!(replayed.len(), 1);
    counters_match(s, "a replay").await;
    let dropped = s
        .drop_dead_letters(vec![open[1].id], 2_000)
        .await
        .expect("drop");
    assert_eq!(dropped.len(), 1);
    let st = counters_match(s, "a drop").await;
    assert_eq!(st.dead_letters_open, 0);

    // Deliver what is left, then retention takes the delivered items and finished entries.
    for dest in [ERP, SHOP] {
        for _ in 0..5 {
            let c = claim(s, dest, 10, 9_000).await;
            if c.is_empty() {
                break;
            }
            settle(s, c.iter().map(|c| delivered(c, None, 9_000)).collect()).await;
        }
    }
    counters_match(s, "deliveries").await;
    let pruned = s
        .prune_history(i64::MAX / 2, 1_000)
        .await
        .expect("prune_history");
    assert!(pruned.outbox_items > 0 && pruned.journal > 0, "{pruned:?}");
    let st = counters_match(s, "prune_history").await;
    assert!(st.queues.iter().all(|q| q.done == 0), "{st:?}");
}

/// A cheap property: random sequences of ingests, applies, claims, settlements, recoveries,
/// dead-letter replays and drops and retention (a fixed-seed generator, so a failure repeats)
/// leave `stats` equal to fresh counts after every step.
pub async fn stats_counters_survive_random_operations(fx: &Fixture) {
    let s = fx.store();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| -> u64 {
        // xorshift64*: deterministic, no dependency.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    };
    let dests = [ERP, SHOP, "third"];
    let mut now: Millis = 1_000;
    // Highest rejected, open dead letters, parked, in flight, done, dead seen; rows pruned.
    let mut seen = [0u64; 6];
    let mut pruned = 0u64;
    for step in 0..120 {
        now += 100;
        let op = next(7);
        match op {
            0 => {
                let captures = (0..=next(4))
                    .map(|_| {
                        let mut c = capture(
                            SHOP,
                            Kind::Product,
                            &format!("p{}", next(6)),
                            &format!("v{}", next(3)),
                        );
                        c.received_at = now;
                        if next(4) == 0 {
                            c.rejected = Some("invalid".into());
                        }
                        c
                    })
                    .collect();
                s.ingest(captures, None).await.expect("ingest");
            }
            1 => {
                let pending = s.pending_journal(3).await.expect("pending journal");
                let journal = pending
                    .iter()
                    .map(|e| {
                        let status = if next(3) == 0 {
                            JournalStatus::Rejected
                        } else {
                            JournalStatus::Processed
                        };
                        (e.id, status, None, None)
                    })
                    .collect();
                let items = (0..next(6))
                    .map(|_| {
                        let dest = dests[next(3) as usize];
                        let kind = if next(2) == 0 {
                            Kind::Product
                        } else {
                            Kind::Order
                        };
                        let mut it =
                            item(dest, kind, &format!("k{}", next(40)), &format!("h{step}"));
                        it.captured_at = now - next(500) as Millis;
                        if next(10) == 0 {
                            it = waiting(it, &[(Kind::Customer, "nobody")]);
                        }
                        it
                    })
                    .collect();
                s.apply(
                    ProcessBatch {
                        journal,
                        items,
                        ..ProcessBatch::default()
                    },
                    now,
                )
                .await
                .expect("apply");
            }
            2 | 3 => {
                let dest = dests[next(3) as usize];
                let claimed = claim(s, dest, 1 + next(4) as usize, now).await;
                let outcomes = claimed
                    .iter()
                    .filter_map(|c| match next(5) {
                        0 => None, // left in flight
                        1 => Some(Settlement::Dead {
                            id: c.item.id,
                            token: c.token,
                            reason: "refused".into(),
                            at: now,
                        }),
                        2 => Some(Settlement::Retry {
                            id: c.item.id,
                            token: c.token,
                            next_at: now,
                            error: "timeout".into(),
                            count: true,
                        }),
                        _ => Some(delivered(c, None, now)),
                    })
                    .collect::<Vec<_>>();
                if !outcomes.is_empty() {
                    settle(s, outcomes).await;
                }
            }
            4 => {
                s.recover_expired(now + 120_000)
                    .await
                    .expect("recover_expired");
            }
            5 => {
                let open = s
                    .dead_letters(crate::DeadLetterFilter::default())
                    .await
                    .expect("dead letters");
                if let Some(d) = open.first() {
                    if next(2) == 0 {
                        s.drop_dead_letters(vec![d.id], now).await.expect("drop");
                    } else {
                        let mut c = capture(SHOP, Kind::Product, &d.key, &format!("r{step}"));
                        c.received_at = now;
                        s.replay_dead_letters(vec![(d.id, crate::Replay::Inbound(c))], now)
                            .await
                            .expect("replay");
                    }
                }
            }
            _ => {
                let p = s
                    .prune_history(now - 300, 1 + next(5) as usize)
                    .await
                    .expect("prune_history");
                pruned += p.outbox_items + p.journal;
            }
        }
        let st = counters_match(s, &format!("step {step} (operation {op})")).await;
        seen[0] = seen[0].max(st.journal_rejected);
        seen[1] = seen[1].max(st.dead_letters_open);
        for q in &st.queues {
            seen[2] = seen[2].max(q.parked);
            seen[3] = seen[3].max(q.inflight);
            seen[4] = seen[4].max(q.done);
            seen[5] = seen[5].max(q.dead);
        }
    }
    assert!(
        seen.iter().all(|n| *n > 0) && pruned > 0,
        "the sequence exercised every counter and retention: {seen:?}, pruned {pruned}"
    );
}

//! Conformance checks: capture and the journal: `ingest` dedupe and rejection, cursors moving with
//! (and only with) the captures they cover, group commit, and the pending-journal and journal
//! lookups.
//!
//! Written only against `&dyn Store` through [`Fixture`]: never SQL, never an implementation
//! type. Each public check is listed in `store_conformance_tests!` and re-exported by
//! `conformance/mod.rs`.

use super::{capture, stored, Fixture, ERP, SHOP};
use crate::{
    CursorUpdate, DeadLetterFilter, DeadLetterState, Direction, IngestOutcome, JournalStatus,
    ProcessBatch,
};
use concord_core::Kind;
use serde_json::json;
use std::sync::Arc;

/// A, A: the second is a duplicate, within one call and across calls; the version is compared
/// per (endpoint, kind, external id).
pub async fn ingest_dedupes_a_repeated_version(fx: &Fixture) {
    let s = fx.store();
    let a = capture(SHOP, Kind::Product, "p1", "v1");
    let out = s.ingest(vec![a.clone(), a.clone()], None).await.unwrap();
    assert!(
        matches!(out[0], IngestOutcome::Stored(_)),
        "first capture must be stored: {out:?}"
    );
    assert_eq!(
        out[1],
        IngestOutcome::Duplicate,
        "same version twice in one call is a duplicate"
    );
    let again = s.ingest(vec![a.clone()], None).await.unwrap();
    assert_eq!(
        again,
        vec![IngestOutcome::Duplicate],
        "same version in a later call is a duplicate"
    );

    // Same version, different record / kind / endpoint: not duplicates.
    let others = vec![
        capture(SHOP, Kind::Product, "p2", "v1"),
        capture(SHOP, Kind::Stock, "p1", "v1"),
        capture(ERP, Kind::Product, "p1", "v1"),
    ];
    let out = s.ingest(others, None).await.unwrap();
    assert!(
        out.iter().all(|o| matches!(o, IngestOutcome::Stored(_))),
        "dedupe must be per (endpoint, kind, external id): {out:?}"
    );
    let journal = s.journal(None, None, None, 100).await.unwrap();
    assert_eq!(
        journal.len(),
        4,
        "journal must hold exactly the stored captures"
    );
}

/// A, B, A: three changes (the dedupe compares with the LAST journaled version only).
pub async fn ingest_stores_a_b_a_as_three_changes(fx: &Fixture) {
    let s = fx.store();
    let a = capture(SHOP, Kind::Product, "p1", "A");
    let b = capture(SHOP, Kind::Product, "p1", "B");
    let out = s
        .ingest(vec![a.clone(), b.clone(), a.clone()], None)
        .await
        .unwrap();
    let ids: Vec<i64> = out.into_iter().map(stored).collect();
    assert!(
        ids[0] < ids[1] && ids[1] < ids[2],
        "journal ids must increase: {ids:?}"
    );
    // And across calls.
    assert!(matches!(
        s.ingest(vec![b.clone()], None).await.unwrap()[0],
        IngestOutcome::Stored(_)
    ));
    assert_eq!(
        s.ingest(vec![b], None).await.unwrap()[0],
        IngestOutcome::Duplicate
    );
    let versions: Vec<String> = s
        .journal(Some(SHOP), Some(Kind::Product), None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, ["B", "A", "B", "A"], "journal newest first");
}

/// A rejected capture is journaled `Rejected`, never pending, with an open inbound dead letter.
pub async fn ingest_dead_letters_rejected_captures(fx: &Fixture) {
    let s = fx.store();
    let mut bad = capture(SHOP, Kind::Customer, "c9", "v1");
    bad.rejected = Some("email: missing".into());
    bad.payload = json!({ "raw": "as received" });
    let id = stored(s.ingest(vec![bad.clone()], None).await.unwrap()[0]);
    let entry = s
        .journal_entry(id)
        .await
        .unwrap()
        .expect("rejected capture must be journaled");
    assert_eq!(entry.status, JournalStatus::Rejected);
    assert_eq!(entry.payload, json!({ "raw": "as received" }));
    assert!(
        s.pending_journal(10).await.unwrap().is_empty(),
        "rejected entries are never pending"
    );

    let dls = s.dead_letters(DeadLetterFilter::default()).await.unwrap();
    assert_eq!(dls.len(), 1, "one open dead letter expected: {dls:?}");
    let dl = &dls[0];
    assert_eq!(dl.direction, Direction::Inbound);
    assert_eq!(dl.state, DeadLetterState::Open);
    assert_eq!(
        (dl.endpoint.as_str(), dl.kind, dl.key.as_str()),
        (SHOP, Kind::Customer, "c9")
    );
    assert_eq!(dl.reason, "email: missing");
    assert_eq!(dl.journal_id, Some(id));
    assert_eq!(dl.payload, bad.payload);
    assert_eq!(dl.item_id, None);
    assert_eq!(s.dead_letter(dl.id).await.unwrap().as_ref(), Some(dl));
    // Its version counts as journaled: the same rejected record again is a duplicate.
    assert_eq!(
        s.ingest(vec![bad], None).await.unwrap()[0],
        IngestOutcome::Duplicate
    );
    let stats = s.stats().await.unwrap();
    assert_eq!((stats.journal_rejected, stats.dead_letters_open), (1, 1));
}

/// The cursor moves in the same call as the captures, per (endpoint, stream), also when every
/// capture was a duplicate or there were none.
pub async fn ingest_moves_the_cursor_with_the_captures(fx: &Fixture) {
    let s = fx.store();
    assert_eq!(s.cursor(SHOP, "stock").await.unwrap(), None);
    let cur = |v: &str| CursorUpdate {
        endpoint: SHOP.into(),
        stream: "stock".into(),
        value: v.into(),
    };
    let a = capture(SHOP, Kind::Stock, "s1", "1");
    s.ingest(vec![a.clone()], Some(cur("page-1")))
        .await
        .unwrap();
    assert_eq!(
        s.cursor(SHOP, "stock").await.unwrap().as_deref(),
        Some("page-1")
    );
    s.ingest(vec![a], Some(cur("page-2"))).await.unwrap();
    assert_eq!(
        s.cursor(SHOP, "stock").await.unwrap().as_deref(),
        Some("page-2"),
        "a page of duplicates still moves the cursor"
    );
    s.ingest(vec![], Some(cur("page-3"))).await.unwrap();
    assert_eq!(
        s.cursor(SHOP, "stock").await.unwrap().as_deref(),
        Some("page-3")
    );
    assert_eq!(
        s.cursor(SHOP, "order:snapshot").await.unwrap(),
        None,
        "streams are separate"
    );
    assert_eq!(
        s.cursor(ERP, "stock").await.unwrap(),
        None,
        "endpoints are separate"
    );
}

/// A failed ingest stores nothing: no capture, no dedupe memory, no cursor move.
pub async fn failed_ingest_moves_no_cursor(fx: &Fixture) {
    let s = fx.store();
    let Some(inject) = &fx.fault_injector else {
        eprintln!("failed_ingest_moves_no_cursor: no fault injector, checked nothing");
        return;
    };
    let cur = |v: &str| CursorUpdate {
        endpoint: SHOP.into(),
        stream: "product".into(),
        value: v.into(),
    };
    s.ingest(vec![], Some(cur("before"))).await.unwrap();
    inject("poison".into()).await;
    let good = capture(SHOP, Kind::Product, "p1", "v1");
    let bad = capture(SHOP, Kind::Product, "poison", "v1");
    let result = s.ingest(vec![good.clone(), bad], Some(cur("after"))).await;
    assert!(
        result.is_err(),
        "the injected fault must fail the ingest: {result:?}"
    );
    assert_eq!(
        s.cursor(SHOP, "product").await.unwrap().as_deref(),
        Some("before"),
        "a failed ingest must not move the cursor"
    );
    assert!(
        s.journal(None, None, None, 10).await.unwrap().is_empty(),
        "nothing journaled"
    );
    // The good capture was not remembered as journaled either.
    assert!(matches!(
        s.ingest(vec![good], None).await.unwrap()[0],
        IngestOutcome::Stored(_)
    ));
}

/// Writes committed together stay independent: one failing call fails alone.
pub async fn group_commit_isolates_a_failing_write(fx: &Fixture) {
    let Some(inject) = &fx.fault_injector else {
        eprintln!("group_commit_isolates_a_failing_write: no fault injector, checked nothing");
        return;
    };
    inject("poison".into()).await;
    let mut tasks = Vec::new();
    for n in 0..40 {
        let store = Arc::clone(&fx.store);
        tasks.push(tokio::spawn(async move {
            let id = if n == 20 {
                "poison".to_string()
            } else {
                format!("p{n}")
            };
            let cursor = CursorUpdate {
                endpoint: SHOP.into(),
                stream: format!("s{n}"),
                value: "done".into(),
            };
            store
                .ingest(vec![capture(SHOP, Kind::Product, &id, "v1")], Some(cursor))
                .await
        }));
    }
    for (n, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        assert_eq!(
            result.is_err(),
            n == 20,
            "call {n}: only the poisoned call fails: {result:?}"
        );
    }
    let journal = fx.store().journal(None, None, None, 100).await.unwrap();
    assert_eq!(journal.len(), 39, "every other call committed");
    assert_eq!(fx.store().cursor(SHOP, "s20").await.unwrap(), None);
    assert_eq!(
        fx.store().cursor(SHOP, "s19").await.unwrap().as_deref(),
        Some("done")
    );
}

/// Many concurrent ingests all commit, each exactly once.
pub async fn concurrent_ingests_all_commit(fx: &Fixture) {
    const TASKS: usize = 64;
    const PER_TASK: usize = 5;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = Arc::clone(&fx.store);
        tasks.push(tokio::spawn(async move {
            let captures = (0..PER_TASK)
                .map(|i| capture(SHOP, Kind::Stock, &format!("t{t}-i{i}"), "v1"))
                .collect();
            let cursor = CursorUpdate {
                endpoint: SHOP.into(),
                stream: format!("task-{t}"),
                value: format!("{t}"),
            };
            store.ingest(captures, Some(cursor)).await
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let out = task.await.unwrap().expect("concurrent ingest failed");
        ids.extend(out.into_iter().map(stored));
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        TASKS * PER_TASK,
        "every capture stored once with its own id"
    );
    let pending = fx.store().pending_journal(10_000).await.unwrap();
    let mut journaled: Vec<i64> = pending.iter().map(|e| e.id).collect();
    journaled.sort_unstable();
    assert_eq!(
        journaled, ids,
        "the journal holds exactly the stored captures"
    );
    for t in 0..TASKS {
        assert_eq!(
            fx.store().cursor(SHOP, &format!("task-{t}")).await.unwrap(),
            Some(t.to_string())
        );
    }
    assert_eq!(
        fx.store().stats().await.unwrap().journal_total,
        (TASKS * PER_TASK) as u64
    );
}

pub async fn pending_journal_is_oldest_first_and_limited(fx: &Fixture) {
    let s = fx.store();
    let captures = (0..5)
        .map(|i| capture(SHOP, Kind::Product, &format!("p{i}"), "v1"))
        .collect();
    let ids: Vec<i64> = s
        .ingest(captures, None)
        .await
        .unwrap()
        .into_iter()
        .map(stored)
        .collect();
    let first3: Vec<i64> = s
        .pending_journal(3)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(first3, ids[..3], "oldest first, at most `limit`");
    // Processing the oldest makes the next ones come first.
    s.apply(
        ProcessBatch {
            journal: vec![(
                ids[0],
                JournalStatus::Processed,
                Some("applied".into()),
                None,
            )],
            ..ProcessBatch::default()
        },
        2_000,
    )
    .await
    .unwrap();
    let rest: Vec<i64> = s
        .pending_journal(10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(rest, ids[1..]);
    assert!(s.pending_journal(0).await.unwrap().is_empty());
}

pub async fn journal_lookups_and_filters(fx: &Fixture) {
    let s = fx.store();
    let c = capture(SHOP, Kind::Order, "o1", "v1");
    let out = s
        .ingest(
            vec![
                c.clone(),
                capture(ERP, Kind::Order, "o1", "v1"),
                capture(SHOP, Kind::Customer, "c1", "v1"),
            ],
            None,
        )
        .await
        .unwrap();
    let ids: Vec<i64> = out.into_iter().map(stored).collect();
    let e = s.journal_entry(ids[0]).await.unwrap().expect("entry");
    assert_eq!(
        (
            e.endpoint.as_str(),
            e.kind,
            e.external_id.as_str(),
            e.version.as_str()
        ),
        (SHOP, Kind::Order, "o1", "v1")
    );
    assert_eq!(e.payload, c.payload, "payload round-trips exactly");
    assert_eq!(e.received_at, c.received_at);
    assert_eq!(
        (e.status, e.note.as_deref(), e.key.as_deref()),
        (JournalStatus::Pending, None, None)
    );
    assert_eq!(s.journal_entry(ids[2] + 1000).await.unwrap(), None);

    let all: Vec<i64> = s
        .journal(None, None, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(all, [ids[2], ids[1], ids[0]], "newest first");
    let shop: Vec<i64> = s
        .journal(Some(SHOP), None, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(shop, [ids[2], ids[0]]);
    let orders: Vec<i64> = s
        .journal(None, Some(Kind::Order), None, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(orders, [ids[1], ids[0]]);
    assert_eq!(
        s.journal(None, None, None, 1).await.unwrap().len(),
        1,
        "limit applies"
    );

    s.apply(
        ProcessBatch {
            journal: vec![
                (
                    ids[0],
                    JournalStatus::Processed,
                    Some("applied".into()),
                    Some("ORD-1".into()),
                ),
                (
                    ids[1],
                    JournalStatus::Processed,
                    Some("applied".into()),
                    Some("ORD-1".into()),
                ),
            ],
            ..ProcessBatch::default()
        },
        2_000,
    )
    .await
    .unwrap();
    let by_key: Vec<i64> = s
        .journal(None, Some(Kind::Order), Some("ORD-1"), 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(by_key, [ids[1], ids[0]], "filter by resolved key");
    let by_all: Vec<i64> = s
        .journal(Some(ERP), Some(Kind::Order), Some("ORD-1"), 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(by_all, [ids[1]]);
}

//! Conformance: retention (`prune_history`) of the audit trail, delivered outbox items, the
//! journal and reconciliation runs, and the bound on every audit row (`AuditEvent::bounded`). Retention must take only
//! what is old *and* finished: a pending journal entry, one an outbox item or an open dead
//! letter still refers to, and anything recent stay.

use super::*;
use crate::{
    AuditEvent, DeadLetterFilter, JournalStatus, MAX_AUDIT_DETAIL_BYTES, MAX_AUDIT_EVENT_BYTES,
    MAX_AUDIT_FIELD_BYTES,
};

/// Old history goes, what is still referred to or recent stays:
/// - `done` (processed; its item delivered long ago) and `quiet` (processed, no item) go, with
///   `done`'s delivered item;
/// - `waiting` (processed; its item still pending), `refused` (rejected; its dead letter open),
///   `fresh` (processed but recent) and `unread` (old but pending) stay;
/// - once `refused`'s dead letter is dropped, `refused` goes too.
pub async fn prune_history_keeps_the_journal_that_is_referred_to(f: &Fixture) {
    let s = f.store();
    let old = |id: &str| Capture {
        received_at: 100,
        ..capture(SHOP, Kind::Product, id, "1")
    };
    let mut refused = old("refused");
    refused.rejected = Some("sku: missing".into());
    let fresh = Capture {
        received_at: 9_000,
        ..capture(SHOP, Kind::Product, "fresh", "1")
    };
    let ids: Vec<i64> = s
        .ingest(
            vec![
                old("done"),
                old("quiet"),
                old("waiting"),
                refused,
                fresh,
                old("unread"),
            ],
            None,
        )
        .await
        .expect("ingest")
        .into_iter()
        .map(stored)
        .collect();
    let [done, quiet, waiting, refused, fresh, unread] = ids[..] else {
        panic!("six captures stored: {ids:?}");
    };
    let with_journal = |dest: &str, key: &str, journal: i64| NewItem {
        journal_id: Some(journal),
        ..item(dest, Kind::Product, key, "h")
    };
    s.apply(
        ProcessBatch {
            journal: [done, quiet, waiting, fresh]
                .iter()
                .map(|id| (*id, JournalStatus::Processed, None, None))
                .collect(),
            items: vec![
                with_journal(ERP, "done", done),
                with_journal(SHOP, "waiting", waiting),
            ],
            ..ProcessBatch::default()
        },
        200,
    )
    .await
    .expect("apply");
    // Deliver `done`'s item at 300; `waiting`'s (another destination) stays pending.
    let claimed = claim(s, ERP, 100, 300).await;
    assert_eq!(keys(&claimed).len(), 1);
    settle(s, vec![delivered(&claimed[0], None, 300)]).await;
    assert_eq!(count_items(s, ERP, ItemState::Done).await, 1);

    let p = s.prune_history(5_000, 100).await.expect("prune");
    assert_eq!((p.outbox_items, p.journal), (1, 2), "{p:?}");
    let present = async |id: i64| s.journal_entry(id).await.expect("journal_entry").is_some();
    assert!(
        !present(done).await,
        "processed, its item delivered: pruned"
    );
    assert!(!present(quiet).await, "processed, no item: pruned");
    assert!(present(waiting).await, "its item is still pending");
    assert!(present(refused).await, "its dead letter is open");
    assert!(present(fresh).await, "recent");
    assert!(present(unread).await, "never processed");
    assert_eq!(count_items(s, ERP, ItemState::Done).await, 0);
    assert_eq!(count_items(s, SHOP, ItemState::Pending).await, 1);
    // The pending entry is still served to the processor.
    let pending: Vec<i64> = s
        .pending_journal(100)
        .await
        .expect("pending")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(pending, [unread]);

    // Dropping the dead letter lets its entry go; nothing else changes.
    let open = s
        .dead_letters(DeadLetterFilter::default())
        .await
        .expect("dead letters");
    assert_eq!(open.len(), 1);
    s.drop_dead_letters(vec![open[0].id], 400)
        .await
        .expect("drop");
    let p = s.prune_history(5_000, 100).await.expect("prune");
    assert_eq!((p.outbox_items, p.journal), (0, 1), "{p:?}");
    assert!(!present(refused).await);
    assert!(present(waiting).await && present(fresh).await && present(unread).await);
    let again = s.prune_history(5_000, 100).await.expect("prune");
    assert_eq!(again, crate::Pruned::default(), "nothing old is left");
}

/// Audit events older than the cutoff go, in batches; newer ones stay.
pub async fn prune_history_prunes_old_audit_events(f: &Fixture) {
    let s = f.store();
    let event = |at: Millis, name: &str| AuditEvent {
        at,
        event: name.into(),
        endpoint: None,
        kind: None,
        key: None,
        detail: json!({}),
    };
    s.record_audit(vec![
        event(100, "old-1"),
        event(200, "old-2"),
        event(300, "old-3"),
        event(9_000, "recent"),
    ])
    .await
    .expect("record");
    let first = s.prune_history(5_000, 2).await.expect("prune");
    assert_eq!(first.audit, 2);
    let second = s.prune_history(5_000, 2).await.expect("prune");
    assert_eq!(second.audit, 1);
    let left: Vec<String> = s
        .audit_log(10)
        .await
        .expect("audit")
        .into_iter()
        .map(|a| a.event.event)
        .collect();
    assert_eq!(left, ["recent"]);
}

/// Reconciliation runs finished before the cutoff go, oldest first and in batches, counted in
/// `Pruned::reconcile_runs`; a run finished at or after it stays with its report (one started
/// before it too), and nothing else is counted.
pub async fn prune_history_prunes_old_reconcile_runs(f: &Fixture) {
    let s = f.store();
    let run = |started_at: Millis, finished_at: Millis, flow: &str| crate::NewReconcileRun {
        started_at,
        finished_at,
        trigger: "schedule".into(),
        heal: false,
        drifted: 1,
        healed: 0,
        errors: 0,
        report: json!({"results": [{"flow": flow, "drifted": 1}]}),
    };
    let mut ids = Vec::new();
    for r in [
        run(90, 100, "old-1"),
        run(190, 200, "old-2"),
        run(290, 300, "old-3"),
        run(4_000, 6_000, "straddling"),
        run(5_000, 5_000, "at-the-cutoff"),
        run(9_000, 9_010, "recent"),
    ] {
        ids.push(s.record_reconcile_run(r).await.expect("record run"));
    }
    let [old1, old2, old3, straddling, at_cutoff, recent] = ids[..] else {
        panic!("six runs stored: {ids:?}");
    };
    let first = s.prune_history(5_000, 2).await.expect("prune");
    assert_eq!(
        first,
        crate::Pruned {
            reconcile_runs: 2,
            ..crate::Pruned::default()
        },
        "the two oldest runs, nothing else"
    );
    assert!(first.any_full(2), "a full batch says more may be left");
    let gone = async |id: i64| s.reconcile_run(id).await.expect("reconcile_run").is_none();
    assert!(gone(old1).await && gone(old2).await, "oldest first");
    assert!(!gone(old3).await, "beyond the batch: still there");
    let second = s.prune_history(5_000, 2).await.expect("prune");
    assert_eq!(second.reconcile_runs, 1, "{second:?}");
    assert!(!second.any_full(2));
    assert!(gone(old3).await);
    let listed: Vec<i64> = s
        .reconcile_runs(10)
        .await
        .expect("runs")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, [recent, at_cutoff, straddling], "newest first");
    let kept = s
        .reconcile_run(straddling)
        .await
        .expect("run")
        .expect("kept");
    assert_eq!(
        kept.report["results"][0]["flow"], "straddling",
        "its report too"
    );
    let again = s.prune_history(5_000, 2).await.expect("prune");
    assert_eq!(again, crate::Pruned::default(), "nothing old is left");
}

/// Every audit row is bounded, whatever its caller put in it: a huge detail becomes a marked
/// preview of at most `MAX_AUDIT_DETAIL_BYTES`, huge names and keys are cut; small rows are
/// kept exactly.
pub async fn audit_rows_are_bounded(f: &Fixture) {
    let s = f.store();
    let huge = "x".repeat(1 << 20);
    let controls: String = std::iter::repeat_n('\u{1}', 100_000).collect();
    let big = AuditEvent {
        at: 1,
        event: format!("admin.{huge}"),
        endpoint: Some(huge.clone()),
        kind: Some(Kind::Order),
        key: Some(format!("é{huge}")),
        detail: json!({"who": "ops", "target": {"ids": huge}}),
    };
    let escaped = AuditEvent {
        at: 2,
        event: "escaped".into(),
        endpoint: None,
        kind: None,
        key: None,
        detail: json!({ "path": controls }),
    };
    let small = AuditEvent {
        at: 3,
        event: "small".into(),
        endpoint: Some("erp".into()),
        kind: None,
        key: Some("web/1".into()),
        detail: json!({"who": "ops", "ids": [1, 2, 3]}),
    };
    s.record_audit(vec![big.clone(), escaped, small.clone()])
        .await
        .expect("record");
    let rows = s.audit_log(10).await.expect("audit");
    let by = |name: &str| {
        rows.iter()
            .find(|r| r.event.event.starts_with(name))
            .unwrap_or_else(|| panic!("row {name} missing"))
            .event
            .clone()
    };
    let b = by("admin.");
    assert!(b.event.len() <= MAX_AUDIT_EVENT_BYTES, "{}", b.event.len());
    assert!(b.event.ends_with('…'));
    for field in [&b.endpoint, &b.key] {
        let v = field.as_deref().expect("kept, cut");
        assert!(
            v.len() <= MAX_AUDIT_FIELD_BYTES && v.ends_with('…'),
            "{}",
            v.len()
        );
    }
    let text = b.detail.to_string();
    assert!(text.len() <= MAX_AUDIT_DETAIL_BYTES, "{}", text.len());
    assert_eq!(b.detail["truncated"], true, "{text}");
    assert_eq!(b.detail["bytes"], big.detail.to_string().len());
    assert!(
        b.detail["preview"]
            .as_str()
            .is_some_and(|p| p.starts_with("{\"target\"") || p.starts_with("{\"who\"")),
        "{text}"
    );
    let e = by("escaped");
    assert!(
        e.detail.to_string().len() <= MAX_AUDIT_DETAIL_BYTES,
        "escaping cannot push a row past the bound: {}",
        e.detail.to_string().len()
    );
    assert_eq!(e.detail["truncated"], true);
    assert_eq!(by("small"), small, "a small row is kept exactly");
}

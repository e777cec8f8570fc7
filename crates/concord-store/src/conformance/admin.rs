//! Checks of what the admin API needs from a store: journal search (filters, time range,
//! paging) and paused flows (durable; `claim` and `next_due` skip their items). Must never
//! depend on one implementation's internals: only the `Store` trait.

use super::{capture, claim, enqueue, item, keys, Fixture, SHOP};
use crate::{JournalQuery, JournalStatus};
use concord_core::Kind;

/// `search_journal` filters by endpoint, kind, key, status and `received_at` range, newest
/// first, and pages by id without overlap.
pub async fn search_journal_filters_and_pages(fx: &Fixture) {
    let s = fx.store();
    let mut captures = Vec::new();
    for i in 0..5 {
        let mut c = capture(SHOP, Kind::Order, &format!("o{i}"), "v1");
        c.received_at = 1_000 + i * 100;
        captures.push(c);
    }
    let mut other = capture("erp", Kind::Stock, "s1", "v1");
    other.received_at = 1_150;
    captures.push(other);
    s.ingest(captures, None).await.unwrap();
    let ids = |v: Vec<crate::JournalEntry>| -> Vec<String> {
        v.into_iter().map(|e| e.external_id).collect()
    };
    let q = |f: fn(&mut JournalQuery)| {
        let mut q = JournalQuery {
            limit: 100,
            ..JournalQuery::default()
        };
        f(&mut q);
        q
    };
    let all = ids(s.search_journal(q(|_| {})).await.unwrap());
    assert_eq!(all, ["s1", "o4", "o3", "o2", "o1", "o0"], "newest first");
    let orders = ids(s
        .search_journal(q(|q| {
            q.kind = Some(Kind::Order);
            q.endpoint = Some(SHOP.into());
        }))
        .await
        .unwrap());
    assert_eq!(orders, ["o4", "o3", "o2", "o1", "o0"]);
    let range = ids(s
        .search_journal(q(|q| {
            q.from = Some(1_100);
            q.to = Some(1_300);
        }))
        .await
        .unwrap());
    assert_eq!(range, ["s1", "o2", "o1"], "from inclusive, to exclusive");
    let pending = s
        .search_journal(q(|q| q.status = Some(JournalStatus::Pending)))
        .await
        .unwrap();
    assert_eq!(pending.len(), 6);
    let rejected = s
        .search_journal(q(|q| q.status = Some(JournalStatus::Rejected)))
        .await
        .unwrap();
    assert!(rejected.is_empty());
    // Pages of two, following `before_id`.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .search_journal(JournalQuery {
                before_id: before,
                limit: 2,
                ..JournalQuery::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.id);
        seen.extend(page.into_iter().map(|e| e.external_id));
    }
    assert_eq!(seen, all, "paging walks every entry once");
}

/// A paused flow's pending items are neither claimed nor due; other flows' items to the same
/// destination are; resuming releases them. Pausing twice changes nothing the second time.
pub async fn paused_flows_are_skipped_by_claim(fx: &Fixture) {
    let s = fx.store();
    let held = item(SHOP, Kind::Stock, "SKU-1@WH1", "h1"); // flow "stock-to-shop"
    let mut other = item(SHOP, Kind::Product, "SKU-1", "p1"); // flow "product-to-shop"
    other.not_before = 10;
    assert!(s
        .set_flow_paused("stock-to-shop", true, 1_000)
        .await
        .unwrap());
    assert!(
        !s.set_flow_paused("stock-to-shop", true, 1_001)
            .await
            .unwrap(),
        "already paused"
    );
    assert_eq!(s.paused_flows().await.unwrap(), ["stock-to-shop"]);
    enqueue(s, vec![held, other], 1_000).await;
    assert_eq!(
        s.next_due(SHOP).await.unwrap(),
        Some(10),
        "only the other flow's item is due"
    );
    assert_eq!(
        keys(&claim(s, SHOP, 10, 1_000).await),
        [(Kind::Product, "SKU-1".into(), "p1".into())]
    );
    assert!(claim(s, SHOP, 10, 2_000).await.is_empty(), "held");
    assert!(s
        .set_flow_paused("stock-to-shop", false, 3_000)
        .await
        .unwrap());
    assert!(s.paused_flows().await.unwrap().is_empty());
    assert_eq!(s.next_due(SHOP).await.unwrap(), Some(0));
    assert_eq!(
        keys(&claim(s, SHOP, 10, 3_000).await),
        [(Kind::Stock, "SKU-1@WH1".into(), "h1".into())]
    );
}

/// A connector's kept state (a rotated refresh token): absent until set, replaced by the next
/// set, one value per endpoint, and never mixed with another endpoint's.
pub async fn connector_state_is_kept_per_endpoint(fx: &Fixture) {
    let s = fx.store();
    assert_eq!(s.connector_state("shop").await.unwrap(), None);
    s.set_connector_state("shop", r#"{"refresh_token":"r1"}"#, 1_000)
        .await
        .unwrap();
    s.set_connector_state("erp", "other", 1_000).await.unwrap();
    s.set_connector_state("shop", r#"{"refresh_token":"r2"}"#, 2_000)
        .await
        .unwrap();
    assert_eq!(
        s.connector_state("shop").await.unwrap().as_deref(),
        Some(r#"{"refresh_token":"r2"}"#)
    );
    assert_eq!(
        s.connector_state("erp").await.unwrap().as_deref(),
        Some("other")
    );
    assert_eq!(s.connector_state("nobody").await.unwrap(), None);
}

/// `ping` answers on a working store (readiness probes call it).
pub async fn ping_answers_on_a_working_store(fx: &Fixture) {
    fx.store().ping().await.unwrap();
}

/// Dashboard sessions: found by their id hash until they expire, ended by `delete_session`,
/// replaced by a second create with the same hash, and swept when a later login finds them
/// expired.
pub async fn dashboard_sessions_are_kept_until_they_expire_or_end(fx: &Fixture) {
    let s = fx.store();
    assert_eq!(s.session("h1", 1_000).await.unwrap(), None);
    s.create_session("h1", "ann", 10_000, 1_000).await.unwrap();
    s.create_session("h2", "ops", 5_000, 1_000).await.unwrap();
    assert_eq!(
        s.session("h1", 9_999).await.unwrap().as_deref(),
        Some("ann")
    );
    assert_eq!(
        s.session("h2", 4_999).await.unwrap().as_deref(),
        Some("ops")
    );
    // Expired at its instant, not after.
    assert_eq!(s.session("h2", 5_000).await.unwrap(), None);
    assert_eq!(s.session("h1", 10_000).await.unwrap(), None);
    // Ended.
    s.delete_session("h1").await.unwrap();
    assert_eq!(s.session("h1", 2_000).await.unwrap(), None);
    s.delete_session("nothing").await.unwrap();
    // The same hash again: the newer one wins.
    s.create_session("h3", "ann", 8_000, 2_000).await.unwrap();
    s.create_session("h3", "ops", 9_000, 2_500).await.unwrap();
    assert_eq!(
        s.session("h3", 8_500).await.unwrap().as_deref(),
        Some("ops")
    );
    // A login at 6_000 sweeps h2 (expired at 5_000): it stays gone even for an earlier `now`.
    s.create_session("h4", "ann", 20_000, 6_000).await.unwrap();
    assert_eq!(s.session("h2", 1_000).await.unwrap(), None);
    assert_eq!(
        s.session("h3", 6_000).await.unwrap().as_deref(),
        Some("ops")
    );
}

/// Reconciliation runs are kept with their reports: listed newest first without the report,
/// read back by id with it; an unknown id is `None`.
pub async fn reconcile_runs_are_kept_and_listed(fx: &Fixture) {
    let s = fx.store();
    assert!(s.reconcile_runs(10).await.unwrap().is_empty());
    let run = |at: i64, drifted: u64| crate::NewReconcileRun {
        started_at: at,
        finished_at: at + 5,
        trigger: "schedule".into(),
        heal: drifted > 0,
        drifted,
        healed: drifted,
        errors: 0,
        report: serde_json::json!({"results": [{"flow": "stock", "drifted": drifted}]}),
    };
    let first = s.record_reconcile_run(run(1_000, 0)).await.unwrap();
    let second = s.record_reconcile_run(run(2_000, 3)).await.unwrap();
    assert!(second > first);
    let listed = s.reconcile_runs(10).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [second, first]
    );
    assert!(listed.iter().all(|r| r.report.is_null()));
    assert_eq!(s.reconcile_runs(1).await.unwrap().len(), 1);
    let one = s.reconcile_run(second).await.unwrap().expect("stored");
    assert_eq!(
        (
            one.started_at,
            one.finished_at,
            one.heal,
            one.drifted,
            one.healed
        ),
        (2_000, 2_005, true, 3, 3)
    );
    assert_eq!(one.trigger, "schedule");
    assert_eq!(one.report["results"][0]["drifted"], 3);
    assert_eq!(s.reconcile_run(second + 100).await.unwrap(), None);
}

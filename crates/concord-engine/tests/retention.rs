//! Retention (`[store] retention`): delivery attempts older than the retention are pruned by
//! `Engine::prune_history` (the engine also runs it every hour); recent ones stay. So are the
//! journal entries of finished work, their delivered outbox items and old audit events; an
//! entry whose delivery still waits stays, however old; stored reconciliation runs go by age.
//! A real engine over a real SQLite store with the fake connectors of `support`; waits are
//! conditions under a deadline.

mod support;

use concord_core::Kind;
use serde_json::json;
use support::{config_text, wait_until, Fake, Harness, DEADLINE, ORDERS_TO_ERP};

fn order(number: &str) -> serde_json::Value {
    json!({"number": number, "customer": {"email": "ann@example.com"}, "currency": "USD",
           "lines": [{"sku": "A", "quantity": 1}]})
}

async fn attempts(h: &Harness, key: &str) -> usize {
    h.engine
        .order_history(key)
        .await
        .expect("order_history")
        .map_or(0, |o| o.attempts.len())
}

async fn start(retention: &str) -> Harness {
    let config = format!(
        "[store]\nretention = \"{retention}\"\n{}",
        config_text(&["web", "erp"], &[], ORDERS_TO_ERP)
    );
    Harness::start(
        &config,
        vec![
            Fake::new("web", &[Kind::Order, Kind::Customer]),
            Fake::new("erp", &[Kind::Order, Kind::Customer]),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_attempts_older_than_the_retention_are_pruned() {
    let h = start("300ms").await;
    h.capture("web", &[(Kind::Order, "1", Some("1"), order("1"))])
        .await;
    wait_until(
        "the order's create attempt is logged",
        DEADLINE,
        async || attempts(&h, "web/1").await == 1,
    )
    .await;
    // Still within the retention: kept.
    let p = h.engine.prune_history().await.expect("prune");
    assert_eq!(p.delivery_attempts, 0);
    assert_eq!(attempts(&h, "web/1").await, 1);
    // Once it is older than the retention it goes; a newer attempt stays.
    let logged = std::time::Instant::now();
    wait_until("the retention has passed", DEADLINE, async || {
        logged.elapsed() > std::time::Duration::from_millis(400)
    })
    .await;
    h.capture("web", &[(Kind::Order, "2", Some("1"), order("2"))])
        .await;
    wait_until(
        "the second order's attempt is logged",
        DEADLINE,
        async || attempts(&h, "web/2").await == 1,
    )
    .await;
    let p = h.engine.prune_history().await.expect("prune");
    assert_eq!(p.delivery_attempts, 1, "{p:?}");
    assert_eq!(attempts(&h, "web/1").await, 0);
    assert_eq!(attempts(&h, "web/2").await, 1);
    // The order itself and its lifecycle are history the retention does not touch.
    let o = h.engine.order_history("web/1").await.expect("history");
    assert_eq!(o.map(|o| o.order.state), Some("accepted".to_string()));
}

/// Regression (issue 12): the journal and the audit trail grew forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_journal_entries_and_old_audit_events_are_pruned() {
    let h = start("300ms").await;
    let journal = async || {
        h.store
            .journal(Some("web"), Some(Kind::Order), None, 100)
            .await
            .expect("journal")
            .into_iter()
            .map(|e| e.external_id)
            .collect::<Vec<_>>()
    };
    h.store
        .record_audit(vec![concord_store::AuditEvent {
            at: h.engine.now(),
            event: "test.old".into(),
            endpoint: None,
            kind: None,
            key: None,
            detail: json!({}),
        }])
        .await
        .expect("audit");
    h.capture("web", &[(Kind::Order, "1", Some("1"), order("1"))])
        .await;
    wait_until("order 1 is delivered", DEADLINE, async || {
        attempts(&h, "web/1").await == 1 && h.drained().await
    })
    .await;
    // Order 2's delivery waits (the ERP is closed) past the retention.
    h.fake("erp").close();
    h.capture("web", &[(Kind::Order, "2", Some("1"), order("2"))])
        .await;
    wait_until("order 2 waits at the ERP", DEADLINE, async || {
        h.fake("erp").waiting_at_gate() > 0
    })
    .await;
    let logged = std::time::Instant::now();
    wait_until("the retention has passed", DEADLINE, async || {
        logged.elapsed() > std::time::Duration::from_millis(400)
    })
    .await;
    let p = h.engine.prune_history().await.expect("prune");
    assert!(
        p.journal >= 1 && p.outbox_items >= 1 && p.audit >= 1,
        "{p:?}"
    );
    assert_eq!(
        journal().await,
        ["2"],
        "order 1's entry went, order 2's stays"
    );
    let audit = h.store.audit_log(100).await.expect("audit");
    assert!(
        audit.iter().all(|a| a.event.event != "test.old"),
        "{audit:?}"
    );
    // Order 2 is still delivered once the ERP is back, and its entry goes after that.
    h.fake("erp").open();
    wait_until("order 2 is delivered", DEADLINE, async || {
        attempts(&h, "web/2").await >= 1 && h.drained().await
    })
    .await;
    h.stop().await;
}

#[test]
fn the_retention_must_be_a_positive_duration() {
    for bad in ["0s", "soon"] {
        let text = format!(
            "[store]\nretention = \"{bad}\"\n{}",
            config_text(&["web", "erp"], &[], ORDERS_TO_ERP)
        );
        let e = concord_engine::config::Config::from_toml_str_with_env(
            &text,
            std::path::Path::new("test.toml"),
            |_| None,
        )
        .expect_err(bad);
        assert!(e.to_string().contains("store.retention"), "{bad}: {e}");
    }
}

/// Stored reconciliation runs older than the retention go with the rest of the history (their
/// reports can be large); a recent run stays and is still read back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_runs_older_than_the_retention_are_pruned() {
    let h = start("300ms").await;
    let old = h
        .engine
        .reconcile(&[], false, "test")
        .await
        .expect("reconcile")
        .id
        .expect("stored");
    let p = h.engine.prune_history().await.expect("prune");
    assert_eq!(p.reconcile_runs, 0, "within the retention: kept");
    let finished = std::time::Instant::now();
    wait_until("the retention has passed", DEADLINE, async || {
        finished.elapsed() > std::time::Duration::from_millis(400)
    })
    .await;
    let recent = h
        .engine
        .reconcile(&[], false, "test")
        .await
        .expect("reconcile")
        .id
        .expect("stored");
    let p = h.engine.prune_history().await.expect("prune");
    assert_eq!(p.reconcile_runs, 1, "{p:?}");
    assert_eq!(h.engine.reconcile_run(old).await.expect("read"), None);
    let kept = h.engine.reconcile_run(recent).await.expect("read");
    assert!(
        kept.is_some_and(|r| r.report["trigger"] == "test"),
        "the recent run stays with its report"
    );
    let listed: Vec<i64> = h
        .engine
        .reconcile_runs(10)
        .await
        .expect("runs")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, [recent]);
    h.stop().await;
}

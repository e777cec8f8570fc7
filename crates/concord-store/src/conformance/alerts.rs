//! Conformance checks: alert episodes (one open episode per rule and subject, idempotent
//! opening, notifications recorded once, resolution) and the oversold-positions query.
//!
//! Written only against `&dyn Store` through [`Fixture`]: never SQL, never an implementation
//! type. Each public check is listed in `store_conformance_tests!` and re-exported by
//! `conformance/mod.rs`.

use super::{figure, set_levels, Fixture};
use crate::{AlertNotice, AlertObservation};

fn obs(rule: &str, subject: &str, value: f64, since: i64) -> AlertObservation {
    AlertObservation {
        rule: rule.into(),
        subject: subject.into(),
        value,
        summary: format!("{rule} {subject} = {value}"),
        since,
    }
}

pub async fn alert_episodes_open_once_and_resolve(fx: &Fixture) {
    let s = fx.store();
    assert!(s.alert_episodes(false, 10).await.unwrap().is_empty());
    let a = s
        .observe_alert(obs("dlq", "", 3.0, 100), 100)
        .await
        .unwrap();
    assert!(a.is_open() && !a.notified_firing && a.since == 100);
    // Observing again (a later evaluation, or a restarted engine) keeps the same episode.
    let again = s
        .observe_alert(obs("dlq", "", 5.0, 900), 900)
        .await
        .unwrap();
    assert_eq!(again.id, a.id, "one open episode per (rule, subject)");
    assert_eq!(
        (again.since, again.value),
        (100, 5.0),
        "since kept, value updated"
    );
    let other = s
        .observe_alert(obs("dlq", "erp", 1.0, 900), 900)
        .await
        .unwrap();
    assert_ne!(other.id, a.id, "another subject is another episode");
    assert_eq!(s.unnotified_alerts(10).await.unwrap().len(), 2);

    assert!(s
        .mark_alert_notified(a.id, AlertNotice::Firing, 950)
        .await
        .unwrap());
    assert!(
        !s.mark_alert_notified(a.id, AlertNotice::Firing, 960)
            .await
            .unwrap(),
        "a notification is recorded once"
    );
    assert!(
        !s.mark_alert_notified(a.id, AlertNotice::Resolved, 960)
            .await
            .unwrap(),
        "an open episode cannot be notified resolved"
    );
    let pending = s.unnotified_alerts(10).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].id, other.id);

    let closed = s
        .resolve_alert("dlq", "", 1_000)
        .await
        .unwrap()
        .expect("open episode");
    assert_eq!((closed.id, closed.resolved_at), (a.id, Some(1_000)));
    assert!(s.resolve_alert("dlq", "", 1_100).await.unwrap().is_none());
    let owed = s.unnotified_alerts(10).await.unwrap();
    let notices = |id| {
        owed.iter()
            .find(|e| e.id == id)
            .map(|e| e.pending_notices())
    };
    assert_eq!(
        notices(a.id),
        Some(vec![AlertNotice::Resolved]),
        "resolution owed"
    );
    assert_eq!(
        notices(other.id),
        Some(vec![AlertNotice::Firing]),
        "the other subject still owes its firing notice"
    );
    assert!(s
        .mark_alert_notified(a.id, AlertNotice::Resolved, 1_200)
        .await
        .unwrap());

    // The condition returns: a new episode.
    let b = s
        .observe_alert(obs("dlq", "", 2.0, 2_000), 2_000)
        .await
        .unwrap();
    assert_ne!(b.id, a.id, "a new episode after resolution");
    let open = s.alert_episodes(true, 10).await.unwrap();
    assert_eq!(
        open.iter().map(|e| e.id).collect::<Vec<_>>(),
        [b.id, other.id],
        "open only, newest first"
    );
    let all = s.alert_episodes(false, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        [b.id, other.id, a.id],
        "open first, then resolved"
    );
}

pub async fn oversold_positions_are_listed(fx: &Fixture) {
    let s = fx.store();
    set_levels(
        s,
        vec![
            figure("A", "WH1", 10, 2, "1"),
            figure("B", "WH1", 2, 5, "1"),
            figure("B", "WH2", 9, 0, "1"),
        ],
    )
    .await;
    let risky = s.oversold_positions(100).await.unwrap();
    assert_eq!(
        risky
            .iter()
            .map(|l| (l.sku.as_str(), l.location.as_str()))
            .collect::<Vec<_>>(),
        [("B", "WH1")],
        "only the position with on_hand < committed + held"
    );
}

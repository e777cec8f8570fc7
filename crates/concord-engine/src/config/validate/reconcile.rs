//! A flow's `reconcile` schedule and `heal` (issue 16), checked: a cron expression with
//! seconds, `heal` only with a schedule, and only on a flow reconciliation can check. No I/O.

use super::super::{Issue, Pattern, ReconcileSchedule};
use concord_core::Kind;
use std::str::FromStr;

type Result<T> = std::result::Result<T, Issue>;

/// `flows[i].reconcile` and `flows[i].heal` (`at` = `flows[i]`).
pub(super) fn schedule(
    at: &str,
    kind: Kind,
    pattern: Pattern,
    expr: Option<String>,
    heal: Option<bool>,
) -> Result<Option<ReconcileSchedule>> {
    let Some(expr) = expr else {
        if heal.is_some() {
            return Err(Issue::new(
                format!("{at}.heal"),
                "`heal` is only for a flow with a `reconcile` schedule",
            ));
        }
        return Ok(None);
    };
    let field = format!("{at}.reconcile");
    if kind.is_order_scoped() {
        return Err(Issue::new(
            field,
            format!("{kind} records belong to their order and cannot be reconciled on their own"),
        ));
    }
    if pattern == Pattern::Correlation {
        return Err(Issue::new(
            field,
            "a correlation flow only updates what the destination already has: it cannot be reconciled",
        ));
    }
    let schedule = cron::Schedule::from_str(expr.trim()).map_err(|e| {
        Issue::new(
            field.clone(),
            format!("invalid cron schedule {expr:?}: {e} (expected 6 or 7 fields: sec min hour day-of-month month day-of-week [year])"),
        )
    })?;
    Ok(Some(ReconcileSchedule {
        schedule: Box::new(schedule),
        expr,
        heal: heal.unwrap_or(false),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_checked_with_their_field_paths() {
        let ok = schedule(
            "flows[0]",
            Kind::Stock,
            Pattern::Broadcast,
            Some("0 0 3 * * *".into()),
            Some(true),
        )
        .unwrap()
        .expect("a schedule");
        assert!(ok.heal);
        assert_eq!(ok.expr, "0 0 3 * * *");
        let err = |kind, pattern, expr: Option<&str>, heal| {
            schedule("flows[2]", kind, pattern, expr.map(String::from), heal).unwrap_err()
        };
        let e = err(Kind::Stock, Pattern::Broadcast, Some("every night"), None);
        assert_eq!(e.path, "flows[2].reconcile");
        assert!(e.message.contains("invalid cron schedule"), "{}", e.message);
        let e = err(Kind::Stock, Pattern::Broadcast, None, Some(true));
        assert_eq!(e.path, "flows[2].heal");
        let e = err(
            Kind::Shipment,
            Pattern::Broadcast,
            Some("0 0 3 * * *"),
            None,
        );
        assert_eq!(e.path, "flows[2].reconcile");
        let e = err(
            Kind::Product,
            Pattern::Correlation,
            Some("0 0 3 * * *"),
            None,
        );
        assert!(e.message.contains("correlation"), "{}", e.message);
        assert_eq!(
            schedule("flows[0]", Kind::Stock, Pattern::Broadcast, None, None).unwrap(),
            None
        );
    }
}

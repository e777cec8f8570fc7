//! `[orders]` → [`OrdersConfig`]: the edits policy is one of its two names. Part of
//! [`validate`](super::validate): no I/O, and it must never look at other sections.

use super::Result;
use crate::config::raw::RawOrders;
use crate::config::{EditPolicy, Issue, OrdersConfig};

pub(super) fn orders(raw: RawOrders) -> Result<OrdersConfig> {
    let edits = match raw.edits.as_deref() {
        None | Some("cancel_and_replace") => EditPolicy::CancelAndReplace,
        Some("reject") => EditPolicy::Reject,
        Some(other) => {
            return Err(Issue::new(
                "orders.edits",
                format!("must be \"cancel_and_replace\" or \"reject\", got {other:?}"),
            ))
        }
    };
    Ok(OrdersConfig { edits })
}

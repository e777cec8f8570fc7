//! The processor's order-scoping checks, run before the merge (`process/resolve.rs`): an ERP
//! order superseded by cancel-and-replace, an order-scoped record an xref resolves to another
//! order's, and an older store's bare-id key that is another channel's record.
//!
//! Must never merge, write or plan anything: each check only answers what the processor
//! should do with the record (skip it with a note, refuse it, or re-resolve it).

use concord_core::{natural_key, Kind};
use concord_store::Entity;
use serde_json::Value;

/// For an order-scoped record resolved through an xref to `key`: `Some(its own key)` when that
/// xref is a mis-correlation left by a store from before order-scoped keys — `key` is a bare id
/// (not `{order}:{id}` of the record under it), that record belongs to another order, and this
/// endpoint never wrote it (its id only matched another channel's by chance). A record of the
/// hub's own keying, or one this endpoint wrote, is not re-resolved: its order changing is
/// refused by [`other_order`].
pub(in crate::runtime) fn legacy_miscorrelation(
    kind: Kind,
    key: &str,
    current: &Entity,
    endpoint: &str,
    incoming: &Value,
) -> Option<String> {
    if !kind.is_order_scoped() || current.versions.contains_key(endpoint) {
        return None;
    }
    let had = current.state.get("order").and_then(Value::as_str)?;
    let says = incoming.get("order").and_then(Value::as_str)?;
    let legacy = natural_key(kind, &current.state, endpoint).ok()? != key;
    (had != says && legacy)
        .then(|| natural_key(kind, incoming, endpoint).ok())
        .flatten()
}

/// For an order record from an endpoint other than its channel (an ERP): `Some(note)` when it
/// reports an ERP order that cancel-and-replace superseded — the order has a replacement
/// reference (`current`) and the record names another one (no `reference`: the key, i.e. the
/// original). ERP connectors report a replacement's `reference` (see `Order::reference`).
pub(in crate::runtime) fn superseded(
    kind: Kind,
    key: &str,
    endpoint: &str,
    current: Option<&str>,
    record: &Value,
) -> Option<String> {
    if kind != Kind::Order || record.get("channel").and_then(Value::as_str) == Some(endpoint) {
        return None;
    }
    let current = current?;
    let says = record
        .get("reference")
        .and_then(Value::as_str)
        .unwrap_or(key);
    (says != current).then(|| {
        format!(
            "superseded: `{endpoint}` reports its order `{says}`, which cancel-and-replace \
             replaced by `{current}`; its state is not the order's (skipped, not merged)"
        )
    })
}

/// For an order-scoped record: `Some(reason)` when the hub's record under `key` belongs to
/// another order than `incoming` names (its xref resolved it to a record of another order: a
/// record cannot move between orders).
pub(in crate::runtime) fn other_order(
    kind: Kind,
    key: &str,
    current: &Value,
    incoming: &Value,
) -> Option<String> {
    if !kind.is_order_scoped() {
        return None;
    }
    let had = current.get("order").and_then(Value::as_str)?;
    let says = incoming.get("order").and_then(Value::as_str)?;
    (had != says).then(|| {
        format!(
            "order: this {kind} is known to the hub as `{key}` of order `{had}` but now names \
             order `{says}`; a {kind} cannot move to another order (refused, not merged: the \
             existing {kind} is unchanged; record it under the new order with a new id)"
        )
    })
}

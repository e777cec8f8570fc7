//! Plan: from a changed entity, the outbox items that deliver it to every destination of every
//! flow that takes its kind from its source.
//!
//! Per destination: order-scoped routing (shipments, invoices, payments, refunds go back only
//! to the order's channel), the flow's jq filter then outbound mapping (one trip to a jq
//! thread), the write operation (`operation`, also used by dead-letter replay), an ERP order's
//! cancel-and-replace or amend, skip when the destination already has (or is about to get)
//! the same content hash, and park (`waiting_on`) while dependencies are unknown there. A
//! failing filter or mapping, or a refund the destination cannot record, becomes an outbound
//! dead letter naming the flow.
//!
//! It never merges or changes an entity, and never delivers: items go to the outbox in the
//! batch's one `Store::apply`.

use super::merge::ledger_pool;
use super::planner::Planner;
use crate::config::{FlowConfig, Pattern};
use crate::mapping::{filter_then_map, Filtered, MapVars, Stage};
use crate::runtime::{reachable_kinds, EngineError};
use concord_core::{content_hash, dependencies, Kind, Millis};
use concord_store::{Direction, JournalEntry, NewDeadLetter, NewItem};
use serde_json::Value;

impl Planner<'_> {
    /// Plan the delivery of the entry `e`'s merged `state` (under `key`) through `flows`.
    /// Returns how many items were enqueued.
    pub(super) async fn plan_entry(
        &mut self,
        e: &JournalEntry,
        flows: &[&FlowConfig],
        key: &str,
        state: &Value,
    ) -> Result<usize, EngineError> {
        let pool = ledger_pool(self.inner, e);
        let mut planned = 0usize;
        for flow in flows.iter().copied() {
            for dest in &flow.to {
                if dest == &e.endpoint {
                    continue;
                }
                // Pool channels get available-to-sell from the pool, not per-location copies.
                if pool.is_some_and(|p| p.is_channel(dest)) {
                    continue;
                }
                if self
                    .plan(
                        flow,
                        dest,
                        e.kind,
                        key,
                        state,
                        &e.endpoint,
                        Some(e.id),
                        e.received_at,
                    )
                    .await?
                {
                    planned += 1;
                }
            }
        }
        Ok(planned)
    }

    /// Plan one delivery of `state` to `dest`. Returns whether an item was enqueued.
    #[allow(clippy::too_many_arguments)]
    async fn plan(
        &mut self,
        flow: &FlowConfig,
        dest: &str,
        kind: Kind,
        key: &str,
        state: &Value,
        source: &str,
        journal_id: Option<i64>,
        captured_at: Millis,
    ) -> Result<bool, EngineError> {
        // Shipments, invoices, payments and refunds from the ERP go back only to the order's
        // channel; from the order's own channel (a refund, a captured payment) they go wherever
        // their flow sends them (the ERP).
        if kind.is_order_scoped() {
            if let Some(order_key) = state.get("order").and_then(Value::as_str) {
                let channel = self
                    .entity(Kind::Order, order_key)
                    .await?
                    .and_then(|o| {
                        o.state
                            .get("channel")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .or_else(|| order_key.split_once('/').map(|(c, _)| c.to_string()));
                if channel.as_deref().is_some_and(|c| c != dest && c != source) {
                    return Ok(false);
                }
            }
        }
        let vars = MapVars {
            dest: dest.to_string(),
            source: source.to_string(),
            kind: kind.as_str().to_string(),
        };
        // The filter and the mapping, in one trip to a jq thread.
        let mapping = flow.map_out.get(dest).or_else(|| flow.map_out.get("*"));
        let planned = self
            .inner
            .unless_shutdown(filter_then_map(flow.filter.as_ref(), mapping, state, &vars))
            .await
            .ok_or(EngineError::ShuttingDown)?;
        let payload = match planned {
            Ok(Filtered::Dropped) => return Ok(false),
            Err((Stage::Filter, err)) => {
                self.dead_out(
                    flow,
                    dest,
                    kind,
                    key,
                    state,
                    journal_id,
                    format!("filter of flow `{}` failed: {err}", flow.name),
                );
                return Ok(false);
            }
            Ok(Filtered::Kept(payload)) => Ok(payload),
            Err((Stage::Mapping, err)) => Err(err),
        };
        // A refund for a destination that cannot record refunds: an operator must (the config
        // is accepted; see `check_capabilities`).
        if kind == Kind::Refund && !self.can_write(dest, kind) {
            let connector = self
                .inner
                .connectors
                .get(dest)
                .map_or("?", |c| c.connector_type());
            self.dead_out(
                flow,
                dest,
                kind,
                key,
                state,
                journal_id,
                format!(
                    "needs attention: `{dest}` ({connector}) cannot record refunds; record this \
                     refund (credit note / return) there by hand, then drop this dead letter"
                ),
            );
            return Ok(false);
        }
        let mut payload = match payload {
            Ok(v) => v,
            Err(err) => {
                self.dead_out(
                    flow,
                    dest,
                    kind,
                    key,
                    state,
                    journal_id,
                    format!("mapping of flow `{}` for `{dest}` failed: {err}", flow.name),
                );
                return Ok(false);
            }
        };
        // An ERP order keyed by another reference (cancel-and-replace) is addressed by it.
        let channel_of_order =
            kind == Kind::Order && state.get("channel").and_then(Value::as_str) == Some(dest);
        let replacing = match (&self.edit, kind == Kind::Order && !channel_of_order) {
            (Some(edit), true) => Some(edit.clone()),
            _ => None,
        };
        if kind == Kind::Order && !channel_of_order {
            if let Some(r) = self.orders.reference(key) {
                set_reference(&mut payload, Some(&r));
            }
        }
        let hash = content_hash(&payload);
        let previous = self.planned_hash(dest, kind, key).await?;
        if previous.as_deref() == Some(hash.as_str()) {
            return Ok(false);
        }
        let mut op = operation(flow, kind, state, previous.is_some());
        let mut coalesce = kind.is_state();
        if let (Some(edit), true, "update") = (&replacing, previous.is_some(), op.as_str()) {
            if self.can_amend(dest) {
                op = "amend".into();
            } else if edit.new_reference.is_some() {
                // Cancel the current ERP order, then create the replacement (this item).
                let mut cancel = payload.clone();
                set_reference(&mut cancel, edit.old_reference.as_deref());
                if let Some(obj) = cancel.as_object_mut() {
                    obj.insert("status".into(), Value::String("cancelled".into()));
                }
                self.batch.items.push(NewItem {
                    dest: dest.to_string(),
                    kind,
                    key: key.to_string(),
                    op: "cancel".into(),
                    hash: content_hash(&cancel),
                    payload: cancel,
                    flow: flow.name.clone(),
                    journal_id,
                    captured_at,
                    waiting_on: Vec::new(),
                    coalesce: false,
                    not_before: self.now,
                });
                op = "create".into();
                coalesce = false;
            }
        }
        let mut waiting_on = Vec::new();
        let reachable = reachable_kinds(&self.inner.config, dest);
        for (dk, dkey) in dependencies(kind, state) {
            if reachable.contains(&dk) && !self.is_known_at(dest, dk, &dkey).await? {
                waiting_on.push((dk, dkey));
            }
        }
        self.cache
            .planned
            .insert((dest.to_string(), kind, key.to_string()), hash.clone());
        self.batch.items.push(NewItem {
            dest: dest.to_string(),
            kind,
            key: key.to_string(),
            op,
            payload,
            hash,
            flow: flow.name.clone(),
            journal_id,
            captured_at,
            waiting_on,
            coalesce,
            not_before: self.now,
        });
        self.dests.insert(dest.to_string());
        Ok(true)
    }

    fn can_write(&self, dest: &str, kind: Kind) -> bool {
        self.inner
            .connectors
            .get(dest)
            .is_some_and(|c| c.capabilities().kind(kind).write.upsert)
    }

    fn can_amend(&self, dest: &str) -> bool {
        self.inner
            .connectors
            .get(dest)
            .is_some_and(|c| c.capabilities().kind(Kind::Order).write.amend)
    }

    #[allow(clippy::too_many_arguments)]
    fn dead_out(
        &mut self,
        flow: &FlowConfig,
        dest: &str,
        kind: Kind,
        key: &str,
        state: &Value,
        journal_id: Option<i64>,
        reason: String,
    ) {
        tracing::warn!(flow = %flow.name, dest, %kind, key, %reason, "dead-lettered while planning");
        self.batch.dead_letters.push(NewDeadLetter {
            direction: Direction::Outbound,
            endpoint: dest.to_string(),
            kind,
            key: key.to_string(),
            payload: state.clone(),
            reason,
            journal_id,
            flow: Some(flow.name.clone()),
            at: self.now,
        });
    }
}

/// Set (or, with `None`, remove) an order payload's `reference`.
pub(in crate::runtime) fn set_reference(payload: &mut Value, reference: Option<&str>) {
    if let Some(obj) = payload.as_object_mut() {
        match reference {
            Some(r) => {
                obj.insert("reference".into(), Value::String(r.to_string()));
            }
            None => {
                obj.remove("reference");
            }
        }
    }
}

/// The write operation for a planned delivery (also used by dead-letter replay).
pub(in crate::runtime) fn operation(
    flow: &FlowConfig,
    kind: Kind,
    state: &Value,
    sent_before: bool,
) -> String {
    if kind == Kind::Order {
        let cancelled = state.get("status").and_then(Value::as_str) == Some("cancelled");
        return if cancelled {
            "cancel"
        } else if sent_before {
            "update"
        } else {
            "create"
        }
        .to_string();
    }
    if flow.pattern == Pattern::Correlation {
        "update_only".into()
    } else if kind == Kind::Refund {
        // A refund is a new document at the destination (credit note), idempotent by its id.
        "create".into()
    } else {
        "upsert".into()
    }
}

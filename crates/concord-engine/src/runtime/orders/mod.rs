//! The order lifecycle at run time (issue 6), hooked into the processor (`process/`).
//!
//! For every journal entry of an order or of an order-scoped record (shipment, invoice, payment,
//! refund) the processor calls [`Planner::track_order`] / [`Planner::track_child`] after the
//! merge and before the entity is written. They fold the record into the order's
//! [`OrderFacts`], derive its status (`concord_core::lifecycle`), check the transition, and put
//! the lifecycle row, its event and the record's child link into the *same* `ProcessBatch` as
//! the entity change, so both commit in one `Store::apply`.
//!
//! - **Illegal transitions** are recorded, not applied: an order change (an edit or a
//!   cancellation after shipment, a status going backwards) is refused as a whole — journal
//!   entry `rejected` with the reason, an inbound dead letter under the order's key (an operator
//!   sees it), an `order.rejected` audit event and a refused lifecycle event. A shipment,
//!   invoice, payment or refund that would make an illegal move is still synced (it happened
//!   at its source), but the order's status does not move: a refused event, an audit event and
//!   a note on the journal entry say why.
//! - **Placement**: an order waits in the outbox (dependency parking, see `process/plan.rs`)
//!   until its customer and SKUs are known at the ERP; [`Engine::parked`] lists what it waits
//!   on. It is created once: the journal drops repeated versions and an unchanged merge plans
//!   nothing. The ERP's acceptance is recorded by `Store::settle` with the delivery.
//! - **Edits** before shipment (quantities, lines, addresses — only from the order's own
//!   channel): the committed reservation is first brought to the new quantities
//!   (`Store::adjust_order_reservation`, one single-writer transaction that never oversells — an
//!   increase the pool cannot cover refuses the edit); then each destination that already has
//!   the order gets an `amend` when its connector declares `amend`, else `[orders] edits`
//!   decides: `cancel_and_replace` (a `cancel` of the current reference, then a `create` with
//!   reference `"{key}~{n}"`) or `reject`. The adjustment commits just before the batch; if the
//!   process dies in between, re-processing the entry adjusts to the same quantities again (a
//!   no-op) and applies the edit. An `amend` the connector answers `CannotAmend` (it cannot
//!   apply this edit, but could cancel) takes the same policy at delivery, not here:
//!   `deliver/mod.rs` settles it as `Settlement::AmendRefused` and the store plans the cancel and
//!   the `{key}~{n}` create (or the dead letter) in that settlement's transaction.
//! - **Cancellations** from either side release the order's reservation in the same `apply`
//!   (`ProcessBatch::cancel_reservations`) and plan `cancel` to the other side.
//! - **Refunds** are planned as `create`; a destination whose connector cannot write refunds
//!   gets a "needs attention" outbound dead letter instead (`process/plan.rs`).
//! - **Returns**: the hub never puts returned stock back in its ledger. Stock re-enters only
//!   through the ERP's own figures, once the ERP reports the goods received.
//!
//! `tracker.rs` holds the lifecycle rows of one batch; `scoping.rs` the order-scoping checks the
//! processor runs before the merge.
//!
//! Must never write to the store itself (everything goes through the batch, except the
//! reservation adjustment described above) and never call a connector.

mod scoping;
mod tracker;

use super::process::Planner;
use super::EngineError;
use crate::config::EditPolicy;
use concord_core::lifecycle::{check_edit, check_move, derive_status, OrderFacts};
use concord_core::model::{Invoice, Order, OrderStatus, Payment, Refund, Shipment};
use concord_core::Kind;
use concord_store::{
    AdjustOutcome, AdjustRequest, AuditEvent, Direction, Entity, JournalEntry, JournalStatus,
    NewDeadLetter, NewOrderEvent, OrderWrite, StoreError,
};
pub use concord_store::{
    DeliveryAttempt, OrderEvent, OrderFilter, OrderHistory, OrderSummary, ParkedItem,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use tracker::Row;

/// Kept at these paths: the processor (`process/`) reaches them as `orders::…`.
pub(super) use scoping::{legacy_miscorrelation, other_order, superseded};
pub(crate) use tracker::Tracker;

/// What this entry's edit means for planning (set by `track_order`, read by `plan`).
#[derive(Debug, Clone)]
pub(crate) struct EditPlan {
    /// The reference the ERP order had before this edit (`None`: the key).
    pub old_reference: Option<String>,
    /// Set when destinations that cannot amend cancel and replace: the replacement's reference.
    pub new_reference: Option<String>,
}

/// The outcome of tracking one record.
pub(crate) enum Tracked {
    /// Apply the record; `note` is appended to its journal note.
    Apply { note: String },
    /// Refuse the order change with this reason.
    Reject(String),
}

/// What an edit compares: the lines (SKU, quantity, ship-to, location; their order does not
/// matter) and the addresses.
fn edit_view(o: &Order) -> Value {
    let mut lines: Vec<String> = o
        .lines
        .iter()
        .map(|l| json!([l.sku, l.quantity, l.ship_to, l.location]).to_string())
        .collect();
    lines.sort();
    json!({
        "lines": lines,
        "shipping": o.shipping_address,
        "billing": o.billing_address,
    })
}

fn parse<T: serde::de::DeserializeOwned>(v: &Value) -> Option<T> {
    serde_json::from_value(v.clone()).ok()
}

impl Planner<'_> {
    fn order_event(
        &self,
        e: &JournalEntry,
        from: Option<OrderStatus>,
        to: OrderStatus,
        applied: bool,
        event: &str,
        reason: Option<String>,
    ) -> NewOrderEvent {
        NewOrderEvent {
            at: self.now,
            from: from.map(|s| s.as_str().to_string()),
            to: to.as_str().to_string(),
            applied,
            event: event.to_string(),
            cause_kind: Some(e.kind),
            cause_key: e.key.clone().or_else(|| Some(e.external_id.clone())),
            reason,
            journal_id: Some(e.id),
        }
    }

    /// Track an order record (see the module docs). `previous` is the hub's state before this
    /// entry; `state` the merged one.
    pub(super) async fn track_order(
        &mut self,
        e: &JournalEntry,
        key: &str,
        previous: Option<&Entity>,
        state: &Value,
    ) -> Result<Tracked, EngineError> {
        self.edit = None;
        let Some(order) = parse::<Order>(state) else {
            return Ok(Tracked::Apply {
                note: String::new(),
            });
        };
        let inner = self.inner;
        let existing = self.orders.get(inner, key).await?;
        let channel = order
            .channel
            .clone()
            .or_else(|| existing.as_ref().map(|r| r.channel.clone()))
            .unwrap_or_else(|| e.endpoint.clone());
        let from = existing.as_ref().map(|r| r.status);
        let mut facts = existing
            .as_ref()
            .map(|r| r.facts.clone())
            .unwrap_or_default();
        let was_cancelled = facts.cancelled;
        if was_cancelled && order.status != OrderStatus::Cancelled {
            return Ok(Tracked::Reject(format!(
                "the order is cancelled; it cannot become {} again",
                order.status
            )));
        }
        facts.apply_order(&order);
        let cancelling = facts.cancelled && !was_cancelled;
        // An edit: the order's own channel changed its lines or addresses.
        let prev_order = previous.and_then(|p| parse::<Order>(&p.state));
        let edited = !cancelling
            && e.endpoint == channel
            && prev_order
                .as_ref()
                .is_some_and(|p| edit_view(p) != edit_view(&order));
        let mut note = String::new();
        let mut event = "transition";
        if edited {
            let status = from.unwrap_or_default();
            if let Err(why) = check_edit(status) {
                return Ok(Tracked::Reject(format!("edit refused: {why}")));
            }
            let plan = self.plan_edit(key, &order, &facts).await?;
            match plan {
                Err(reason) => return Ok(Tracked::Reject(format!("edit refused: {reason}"))),
                Ok(p) => {
                    if let Some(r) = &p.new_reference {
                        facts.reference = Some(r.clone());
                        facts.replacements += 1;
                        note = format!("; edit: cancel and replace as {r}");
                    } else {
                        note = "; edit".to_string();
                    }
                    event = "edit";
                    self.edit = Some(p);
                }
            }
        }
        let to = derive_status(&facts);
        if let Some(f) = from {
            if let Err(illegal) = check_move(f, to, &facts) {
                self.edit = None;
                return Ok(Tracked::Reject(illegal.to_string()));
            }
        }
        if cancelling {
            self.batch.cancel_reservations.push(key.to_string());
            event = "cancel";
        }
        let record_event = from != Some(to) || edited;
        let ev = record_event.then(|| {
            self.order_event(
                e,
                from,
                to,
                true,
                if from.is_none() { "placed" } else { event },
                None,
            )
        });
        if from != Some(to) {
            note.push_str(&format!(
                "; order {}{}",
                from.map(|f| format!("{f} → ")).unwrap_or_default(),
                to
            ));
        }
        self.batch.orders.push(OrderWrite {
            key: key.to_string(),
            channel: channel.clone(),
            state: Some(to.as_str().to_string()),
            facts: Some(serde_json::to_value(&facts).unwrap_or(Value::Null)),
            child: None,
            event: ev,
        });
        self.orders.set(
            key,
            Row {
                channel,
                status: to,
                facts,
            },
        );
        Ok(Tracked::Apply { note })
    }

    /// Decide how an edit reaches the destinations that already have the order, and adjust the
    /// order's reservation. `Err(reason)` refuses the edit.
    async fn plan_edit(
        &mut self,
        key: &str,
        order: &Order,
        facts: &OrderFacts,
    ) -> Result<Result<EditPlan, String>, EngineError> {
        let inner = self.inner;
        let channel = order.channel.as_deref().unwrap_or_default().to_string();
        let mut replace = false;
        let dests: BTreeSet<String> = inner
            .config
            .flows_for(Kind::Order, &channel)
            .flat_map(|f| f.to.iter().filter(|d| **d != channel).cloned())
            .collect();
        for dest in &dests {
            if self.planned_hash(dest, Kind::Order, key).await?.is_none() {
                continue; // not sent yet: the create will carry the edited order
            }
            let can_amend = inner
                .connectors
                .get(dest)
                .is_some_and(|c| c.capabilities().kind(Kind::Order).write.amend);
            if !can_amend {
                match inner.config.orders.edits {
                    EditPolicy::Reject => {
                        return Ok(Err(format!(
                            "`{dest}` cannot amend orders and [orders] edits = \"reject\""
                        )))
                    }
                    EditPolicy::CancelAndReplace => replace = true,
                }
            }
        }
        // The reservation follows the edit, or the edit does not happen.
        if let Some(pool) = &inner.pool {
            if let Some(policy) = pool.cfg.channels.get(&channel) {
                let quantities: Vec<(String, i64)> = concord_core::lifecycle::ordered_of(order)
                    .into_iter()
                    .collect();
                let skus: Vec<String> = quantities.iter().map(|(s, _)| s.clone()).collect();
                let feeds = match pool
                    .feeds(inner.store.as_ref(), policy, &channel, &skus)
                    .await
                {
                    Ok(f) => f,
                    Err(StoreError::Unsupported(_)) => Vec::new(),
                    Err(e) => return Err(e.into()),
                };
                let out = inner
                    .store
                    .adjust_order_reservation(AdjustRequest {
                        order: key.to_string(),
                        quantities,
                        feeds,
                        rehold: replace,
                        now: self.now,
                    })
                    .await;
                match out {
                    Ok(AdjustOutcome::Short(short)) => {
                        let parts: Vec<String> = short
                            .iter()
                            .map(|s| {
                                format!(
                                    "{} needs {} more but only {} can be reserved",
                                    s.sku, s.requested, s.available
                                )
                            })
                            .collect();
                        return Ok(Err(format!(
                            "the stock pool cannot cover the increase: {}",
                            parts.join(", ")
                        )));
                    }
                    Ok(_) | Err(StoreError::Unsupported(_)) => pool.notify.notify_one(),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let new_reference =
            replace.then(|| format!("{key}~{}", facts.replacements.saturating_add(2)));
        Ok(Ok(EditPlan {
            old_reference: facts.reference.clone(),
            new_reference,
        }))
    }

    /// Track a shipment, invoice, payment or refund against its order.
    pub(super) async fn track_child(
        &mut self,
        e: &JournalEntry,
        key: &str,
        state: &Value,
    ) -> Result<String, EngineError> {
        let Some(order_key) = state.get("order").and_then(Value::as_str) else {
            return Ok(String::new());
        };
        let inner = self.inner;
        let existing = self.orders.get(inner, order_key).await?;
        let (channel, from, mut facts) = match existing {
            Some(r) => (r.channel, Some(r.status), r.facts),
            None => {
                // The lifecycle starts here (an order that predates it, or arrives later).
                let order = self
                    .entity(Kind::Order, order_key)
                    .await?
                    .and_then(|o| parse::<Order>(&o.state));
                let mut facts = OrderFacts::default();
                if let Some(o) = &order {
                    facts.apply_order(o);
                }
                let channel = order
                    .and_then(|o| o.channel)
                    .or_else(|| order_key.split_once('/').map(|(c, _)| c.to_string()))
                    .unwrap_or_default();
                (channel, None, facts)
            }
        };
        match e.kind {
            Kind::Shipment => {
                if let Some(s) = parse::<Shipment>(state) {
                    facts.apply_shipment(&s);
                    facts.accepted = true; // the ERP shipped it: it has the order
                }
            }
            Kind::Invoice => {
                if let Some(i) = parse::<Invoice>(state) {
                    facts.apply_invoice(&i);
                }
            }
            Kind::Payment => {
                if let Some(p) = parse::<Payment>(state) {
                    facts.apply_payment(&p);
                }
            }
            Kind::Refund => {
                if let Some(r) = parse::<Refund>(state) {
                    facts.apply_refund(&r);
                }
            }
            _ => return Ok(String::new()),
        }
        let to = derive_status(&facts);
        let child = Some((e.kind, key.to_string()));
        let checked = match from {
            Some(f) => check_move(f, to, &facts),
            None => Ok(()),
        };
        match checked {
            Ok(()) => {
                let ev = (from != Some(to)).then(|| {
                    self.order_event(
                        e,
                        from,
                        to,
                        true,
                        if from.is_none() {
                            "placed"
                        } else {
                            "transition"
                        },
                        None,
                    )
                });
                self.batch.orders.push(OrderWrite {
                    key: order_key.to_string(),
                    channel: channel.clone(),
                    state: Some(to.as_str().to_string()),
                    facts: Some(serde_json::to_value(&facts).unwrap_or(Value::Null)),
                    child,
                    event: ev,
                });
                self.orders.set(
                    order_key,
                    Row {
                        channel,
                        status: to,
                        facts,
                    },
                );
                Ok(match from {
                    Some(f) if f != to => format!("; order {order_key} {f} → {to}"),
                    _ => String::new(),
                })
            }
            Err(illegal) => {
                let reason = illegal.reason.clone();
                let ev = self.order_event(e, from, to, false, "transition", Some(reason));
                self.batch.orders.push(OrderWrite {
                    key: order_key.to_string(),
                    channel,
                    state: None,
                    facts: None,
                    child,
                    event: Some(ev),
                });
                self.audit_rejected(e, order_key, &illegal.to_string());
                Ok(format!(
                    "; order {order_key} not moved: {illegal} (recorded, not applied)"
                ))
            }
        }
    }

    fn audit_rejected(&mut self, e: &JournalEntry, order_key: &str, reason: &str) {
        self.batch.audit.push(AuditEvent {
            at: self.now,
            event: "order.rejected".into(),
            endpoint: Some(e.endpoint.clone()),
            kind: Some(Kind::Order),
            key: Some(order_key.to_string()),
            detail: json!({"reason": reason, "record_kind": e.kind, "journal_id": e.id}),
        });
    }

    /// Refuse an order change: journal entry `rejected`, inbound dead letter under the order's
    /// key, audit event, refused lifecycle event. Nothing of the change is applied.
    pub(super) fn reject_order(&mut self, e: &JournalEntry, key: &str, reason: String) {
        tracing::warn!(order = key, endpoint = %e.endpoint, %reason, "order change refused");
        let row = self.orders.rows.get(key).cloned().flatten();
        let from = row.as_ref().map(|r| r.status);
        let asked = parse::<Order>(&e.payload)
            .map(|o| {
                if o.status == OrderStatus::Cancelled {
                    OrderStatus::Cancelled
                } else {
                    from.unwrap_or_default()
                }
            })
            .unwrap_or_default();
        let ev = self.order_event(e, from, asked, false, "rejected", Some(reason.clone()));
        self.batch.orders.push(OrderWrite {
            key: key.to_string(),
            channel: row.map(|r| r.channel).unwrap_or_else(|| e.endpoint.clone()),
            state: None,
            facts: None,
            child: None,
            event: Some(ev),
        });
        self.audit_rejected(e, key, &reason);
        self.batch.dead_letters.push(NewDeadLetter {
            direction: Direction::Inbound,
            endpoint: e.endpoint.clone(),
            kind: e.kind,
            key: key.to_string(),
            payload: e.payload.clone(),
            reason: reason.clone(),
            journal_id: Some(e.id),
            flow: None,
            at: self.now,
        });
        self.batch.journal.push((
            e.id,
            JournalStatus::Rejected,
            Some(reason),
            Some(key.to_string()),
        ));
    }
}

/// The operator's views of the order lifecycle (`concord status`, `concord order`, the admin API).
impl super::Engine {
    /// Orders by state / channel, in key order, paged by `filter.after`.
    pub async fn orders(&self, filter: OrderFilter) -> Result<Vec<OrderSummary>, EngineError> {
        Ok(self.inner.store.orders(filter).await?)
    }

    /// How many orders are in each state.
    pub async fn order_counts(&self) -> Result<BTreeMap<String, u64>, EngineError> {
        Ok(self.inner.store.order_counts().await?)
    }

    /// One order's whole history: its lifecycle row, every event (refused ones too), the journal
    /// entries, delivery attempts and dead letters of the order and of its shipments, invoices,
    /// payments and refunds. `None` when the hub has never seen the order.
    pub async fn order_history(&self, key: &str) -> Result<Option<OrderHistory>, EngineError> {
        Ok(self.inner.store.order_history(key).await?)
    }

    /// Outbox items waiting for dependencies at their destination (oldest first), with what each
    /// waits on.
    pub async fn parked(&self, limit: usize) -> Result<Vec<ParkedItem>, EngineError> {
        Ok(self.inner.store.parked(limit).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::{edit_view, Order};
    use serde_json::json;

    fn order(lines: serde_json::Value, ship: &str) -> Order {
        serde_json::from_value(json!({"number": "1", "customer": {"email": "a@b.co"},
            "currency": "USD", "lines": lines,
            "shipping_address": {"line1": ship, "city": "X", "country": "US"}}))
        .expect("order")
    }

    #[test]
    fn an_edit_is_a_change_of_lines_or_addresses_not_of_their_order() {
        let a = json!({"sku": "A", "quantity": 2});
        let b = json!({"sku": "B", "quantity": 1});
        let base = order(json!([a, b]), "1 Main St");
        assert_eq!(
            edit_view(&base),
            edit_view(&order(json!([b, a]), "1 Main St"))
        );
        let more = json!({"sku": "A", "quantity": 3});
        assert_ne!(
            edit_view(&base),
            edit_view(&order(json!([more, b]), "1 Main St"))
        );
        assert_ne!(edit_view(&base), edit_view(&order(json!([a]), "1 Main St")));
        assert_ne!(
            edit_view(&base),
            edit_view(&order(json!([a, b]), "2 High St"))
        );
    }
}

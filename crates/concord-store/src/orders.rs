//! Types of the order lifecycle as the [`crate::Store`] keeps it (issue 6): one lifecycle row per
//! order (its status and the facts it was derived from), the history of every transition —
//! applied or refused, with the reason —, the log of every delivery attempt, and the views the
//! operator reads (orders by state, one order's whole history, parked items and what they wait
//! on).
//!
//! The status arithmetic is `concord_core::lifecycle`; the engine decides every transition and
//! hands the store the result. The store interprets one thing only, because it learns it inside
//! the settlement transaction: an order delivered (`create`, `amend`, `update`, `upsert`) to an
//! endpoint other than its channel was *accepted by the ERP* — its row then moves `placed →
//! accepted` in the same transaction (see [`OrderEvent`] with `cause_kind = None`). It must
//! never derive or check a status itself.

use crate::{DeadLetter, ItemId, JournalEntry, JournalId};
use concord_core::{Kind, Millis};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One order's lifecycle row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderSummary {
    /// Canonical order key (`channel/number`).
    pub key: String,
    /// The channel that sold it.
    pub channel: String,
    /// `concord_core::model::OrderStatus` as snake_case (`placed`, `partially_shipped`, …).
    pub state: String,
    /// `concord_core::lifecycle::OrderFacts` as JSON.
    pub facts: Value,
    /// When the ERP accepted the order (its first successful delivery there).
    pub accepted_at: Option<Millis>,
    pub updated_at: Millis,
}

/// A lifecycle change to write in the same `apply` as the entity change that caused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderWrite {
    pub key: String,
    pub channel: String,
    /// The new state and facts, or `None` to leave the row as it is (a refused transition only
    /// records its event).
    pub state: Option<String>,
    pub facts: Option<Value>,
    /// The order-scoped record (shipment, invoice, payment, refund) that caused the change: it
    /// is remembered as a child of the order for [`crate::Store::order_history`].
    pub child: Option<(Kind, String)>,
    /// The event to record (a transition, applied or refused, or a note such as an edit).
    pub event: Option<NewOrderEvent>,
}

/// An order event to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewOrderEvent {
    pub at: Millis,
    /// State before (`None` for the first event of an order).
    pub from: Option<String>,
    /// State after (the state asked for, when refused).
    pub to: String,
    /// Applied (`true`) or refused (`false`).
    pub applied: bool,
    /// What happened, in a word: `placed`, `transition`, `edit`, `cancel`, `accepted`, …
    pub event: String,
    /// The record that caused it.
    pub cause_kind: Option<Kind>,
    pub cause_key: Option<String>,
    /// Why it was refused, or a note.
    pub reason: Option<String>,
    pub journal_id: Option<JournalId>,
}

/// A recorded order event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderEvent {
    pub id: i64,
    pub key: String,
    #[serde(flatten)]
    pub event: NewOrderEvent,
}

/// One delivery attempt, as `settle` logged it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttempt {
    pub id: i64,
    pub item_id: ItemId,
    pub dest: String,
    pub kind: Kind,
    pub key: String,
    pub op: String,
    /// When the outcome was recorded (for a retry: when the attempt was claimed).
    pub at: Millis,
    /// `delivered`, `retry`, `dead`, `skipped`, or `refused` (an order's `amend` the
    /// destination cannot apply; `[orders] edits` decided what followed).
    pub outcome: String,
    pub error: Option<String>,
}

/// Which orders to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFilter {
    pub state: Option<String>,
    pub channel: Option<String>,
    /// Keys greater than this (paging in key order).
    pub after: Option<String>,
    /// At most this many (0 = 100).
    pub limit: usize,
}

/// Everything about one order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderHistory {
    pub order: OrderSummary,
    /// Oldest first.
    pub events: Vec<OrderEvent>,
    /// Journal entries of the order and of its shipments, invoices, payments and refunds, oldest
    /// first.
    pub journal: Vec<JournalEntry>,
    /// Every delivery attempt of the order and its children, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
    /// Dead letters (any state) of the order and its children, oldest first.
    pub dead_letters: Vec<DeadLetter>,
    /// The order-scoped records seen for it: (kind, key).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<String>>))]
    pub children: Vec<(Kind, String)>,
}

/// An outbox item waiting for dependencies to become known at its destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParkedItem {
    pub item_id: ItemId,
    pub dest: String,
    pub kind: Kind,
    pub key: String,
    pub op: String,
    /// What it still waits for: (kind, key) not yet known at `dest`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<String>>))]
    pub waiting_on: Vec<(Kind, String)>,
    /// When it was enqueued.
    pub since: Millis,
}

/// Change the committed reservation(s) of an order to these quantities (an edit before shipment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustRequest {
    /// Canonical order key the reservation was committed to.
    pub order: String,
    /// The new quantity per SKU (a SKU absent here is removed).
    pub quantities: Vec<(String, i64)>,
    /// Per SKU that may grow: the channel's feeding locations in priority order with buffers.
    pub feeds: Vec<(String, Vec<crate::Feed>)>,
    /// Cancel-and-replace is planned for the order: its released lines are held again and its
    /// acceptance cleared before adjusting, so that only the replacement's acceptance releases
    /// them (the ERP's figure showing the cancel must not leave the order unheld).
    pub rehold: bool,
    pub now: Millis,
}

/// What [`crate::Store::adjust_order_reservation`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdjustOutcome {
    /// No active reservation is committed to the order: nothing to adjust.
    NoReservation,
    /// Adjusted (or already at these quantities): the reservation as it is now.
    Adjusted(Box<crate::Reservation>),
    /// An increase the pool cannot cover: nothing changed.
    Short(Vec<concord_core::inventory::Shortage>),
}

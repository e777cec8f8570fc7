//! The order lifecycle: which [`OrderStatus`] an order is in, derived from the facts the hub has
//! seen about it, and which moves between statuses are legal.
//!
//! The main line is `placed → accepted → partially_shipped → shipped → invoiced → paid → closed`;
//! `cancelled`, `partially_refunded`, `refunded` and `returned` are branches. The status is never
//! set directly: the engine folds every record that concerns an order (the order itself, its
//! shipments, invoices, payments and refunds, the ERP's acceptance) into [`OrderFacts`], derives
//! the status with [`derive_status`] and asks [`check_move`] (the status table
//! [`check_transition`], refined by the facts) whether the move from the current status is
//! legal. An illegal move is recorded with its reason and not applied.
//!
//! Forward moves on the main line may skip steps (a single shipment of everything goes from
//! `accepted` straight to `shipped`; facts that arrive in one batch move several steps at once).
//! Nothing moves backwards, nothing follows `cancelled` or `returned`, an order whose goods have
//! shipped can no longer be cancelled or edited (a refund before shipment still allows a
//! cancellation, not an edit), and `returned` needs shipped goods.
//!
//! Pure: no I/O, no clock. Must never decide anything about stock: returned goods re-enter the
//! ledger only when the ERP reports them (the hub never puts stock back on its own).

use crate::model::{
    Invoice, InvoiceStatus, Order, OrderStatus, Payment, PaymentStatus, Refund, Shipment,
    ShipmentStatus,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

impl OrderStatus {
    /// Every status, main line first, then the branches.
    pub const ALL: [OrderStatus; 11] = [
        OrderStatus::Placed,
        OrderStatus::Accepted,
        OrderStatus::PartiallyShipped,
        OrderStatus::Shipped,
        OrderStatus::Invoiced,
        OrderStatus::Paid,
        OrderStatus::Closed,
        OrderStatus::Cancelled,
        OrderStatus::PartiallyRefunded,
        OrderStatus::Refunded,
        OrderStatus::Returned,
    ];

    /// The snake_case name (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Accepted => "accepted",
            OrderStatus::PartiallyShipped => "partially_shipped",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Invoiced => "invoiced",
            OrderStatus::Paid => "paid",
            OrderStatus::Closed => "closed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::PartiallyRefunded => "partially_refunded",
            OrderStatus::Refunded => "refunded",
            OrderStatus::Returned => "returned",
        }
    }

    /// Parse a snake_case name.
    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Position on the main line (`None` for the branches).
    fn rank(self) -> Option<u8> {
        Some(match self {
            OrderStatus::Placed => 0,
            OrderStatus::Accepted => 1,
            OrderStatus::PartiallyShipped => 2,
            OrderStatus::Shipped => 3,
            OrderStatus::Invoiced => 4,
            OrderStatus::Paid => 5,
            OrderStatus::Closed => 6,
            _ => return None,
        })
    }

    /// Goods may have left the warehouse: edits and cancellations are no longer possible.
    pub fn has_shipped(self) -> bool {
        !matches!(
            self,
            OrderStatus::Placed | OrderStatus::Accepted | OrderStatus::Cancelled
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refund as the lifecycle counts it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundFact {
    pub amount_minor: i64,
    /// Refunded quantity per SKU (empty: by amount only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lines: BTreeMap<String, i64>,
    /// The goods come back (a customer return).
    #[serde(default)]
    pub restock: bool,
}

/// Everything the hub knows about one order that decides its status. Stored as JSON next to the
/// status; every field has a default so older rows read back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    /// Ordered quantity per SKU (the order's current lines, summed per SKU).
    #[serde(default)]
    pub ordered: BTreeMap<String, i64>,
    /// Per shipment id, its quantity per SKU (cancelled shipments are removed).
    #[serde(default)]
    pub shipments: BTreeMap<String, BTreeMap<String, i64>>,
    /// Shipment ids reported delivered.
    #[serde(default)]
    pub delivered: BTreeSet<String>,
    /// Per invoice number, its total (posted or paid invoices; drafts and cancelled ones are
    /// not counted).
    #[serde(default)]
    pub invoices: BTreeMap<String, i64>,
    /// Per payment id, the amount captured (authorised or failed payments are not counted).
    #[serde(default)]
    pub payments: BTreeMap<String, i64>,
    /// Per refund id.
    #[serde(default)]
    pub refunds: BTreeMap<String, RefundFact>,
    /// The order's total, when it states one.
    #[serde(default)]
    pub total_minor: Option<i64>,
    /// The ERP accepted (created) the order.
    #[serde(default)]
    pub accepted: bool,
    /// Cancelled by the channel or the ERP.
    #[serde(default)]
    pub cancelled: bool,
    /// The reference the ERP order currently has when it is not the canonical key
    /// (cancel-and-replace: `"{key}~{n}"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// How many times the order was cancelled and replaced at the ERP.
    #[serde(default)]
    pub replacements: u32,
}

impl OrderFacts {
    /// Fold in the order record itself: its lines, total and cancellation. (Acceptance by the
    /// ERP is a delivery outcome, not part of the record.)
    pub fn apply_order(&mut self, order: &Order) {
        self.ordered = ordered_of(order);
        self.total_minor = order.total_minor;
        if order.status == OrderStatus::Cancelled {
            self.cancelled = true;
        }
    }

    pub fn apply_shipment(&mut self, s: &Shipment) {
        if s.status == ShipmentStatus::Cancelled {
            self.shipments.remove(&s.id);
            self.delivered.remove(&s.id);
            return;
        }
        let mut lines = BTreeMap::new();
        for l in &s.lines {
            add(lines.entry(l.sku.clone()).or_insert(0), l.quantity);
        }
        self.shipments.insert(s.id.clone(), lines);
        if s.status == ShipmentStatus::Delivered {
            self.delivered.insert(s.id.clone());
        }
    }

    pub fn apply_invoice(&mut self, i: &Invoice) {
        match i.status {
            InvoiceStatus::Posted | InvoiceStatus::Paid => {
                self.invoices.insert(i.number.clone(), i.total_minor);
            }
            InvoiceStatus::Draft | InvoiceStatus::Cancelled => {
                self.invoices.remove(&i.number);
            }
        }
    }

    pub fn apply_payment(&mut self, p: &Payment) {
        match p.status {
            PaymentStatus::Captured | PaymentStatus::Refunded => {
                // A refunded payment was captured first; the refund itself is a refund record.
                self.payments.insert(p.id.clone(), p.amount_minor);
            }
            PaymentStatus::Authorized | PaymentStatus::Failed => {
                self.payments.remove(&p.id);
            }
        }
    }

    pub fn apply_refund(&mut self, r: &Refund) {
        let mut lines = BTreeMap::new();
        for l in &r.lines {
            add(lines.entry(l.sku.clone()).or_insert(0), l.quantity);
        }
        self.refunds.insert(
            r.id.clone(),
            RefundFact {
                amount_minor: r.amount_minor,
                lines,
                restock: r.restock,
            },
        );
    }

    /// Shipped quantity per SKU across every shipment.
    pub fn shipped(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for lines in self.shipments.values() {
            for (sku, q) in lines {
                add(out.entry(sku.clone()).or_insert(0), *q);
            }
        }
        out
    }

    /// Some quantity of some SKU has shipped.
    pub fn any_shipped(&self) -> bool {
        self.shipments
            .values()
            .flat_map(|l| l.values())
            .any(|q| *q > 0)
    }

    /// Returned quantity per SKU (refund lines with `restock`).
    pub fn returned(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for r in self.refunds.values().filter(|r| r.restock) {
            for (sku, q) in &r.lines {
                add(out.entry(sku.clone()).or_insert(0), *q);
            }
        }
        out
    }

    pub fn refunded_minor(&self) -> i64 {
        self.refunds
            .values()
            .fold(0i64, |a, r| a.saturating_add(r.amount_minor))
    }

    pub fn captured_minor(&self) -> i64 {
        self.payments
            .values()
            .fold(0i64, |a, p| a.saturating_add(*p))
    }

    pub fn invoiced_minor(&self) -> i64 {
        self.invoices
            .values()
            .fold(0i64, |a, p| a.saturating_add(*p))
    }

    /// What the customer owes: the invoiced total when invoiced, else the order's total.
    pub fn due_minor(&self) -> i64 {
        if self.invoices.is_empty() {
            self.total_minor.unwrap_or(0)
        } else {
            self.invoiced_minor()
        }
    }
}

/// Add to a per-SKU or money total, saturating. Records reach the lifecycle validated
/// (`crate::model::validate`: each quantity at most 10⁹ and a SKU's lines in one record adding
/// up to no more, money at most 10¹⁵), so no sum over an order's records comes near `i64::MAX`;
/// if one ever did, it stops there rather than wrapping to a negative figure that would flip a
/// status (a "shipped" order would read as nothing shipped).
fn add(total: &mut i64, q: i64) {
    *total = total.saturating_add(q);
}

/// Ordered quantity per SKU of an order's lines (see [`add`] for the arithmetic).
pub fn ordered_of(order: &Order) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for l in &order.lines {
        add(out.entry(l.sku.clone()).or_insert(0), l.quantity);
    }
    out
}

/// The status the facts put the order in.
///
/// - cancelled → `cancelled`;
/// - every shipped unit came back (refund lines with `restock`) → `returned`;
/// - refunds ≥ what was charged (captured, else invoiced, else the order total) → `refunded`;
///   any refund → `partially_refunded`;
/// - otherwise the main line: nothing shipped → `placed`, or `accepted` once the ERP accepted;
///   some shipped → `partially_shipped`; every ordered unit shipped → `shipped`, then
///   `invoiced` (a posted invoice), `paid` (captured ≥ due, due > 0), `closed` (paid and every
///   shipment delivered).
pub fn derive_status(f: &OrderFacts) -> OrderStatus {
    if f.cancelled {
        return OrderStatus::Cancelled;
    }
    let shipped = f.shipped();
    let any_shipped = shipped.values().any(|q| *q > 0);
    let returned = f.returned();
    if any_shipped
        && shipped
            .iter()
            .all(|(sku, q)| returned.get(sku).copied().unwrap_or(0) >= *q)
    {
        return OrderStatus::Returned;
    }
    let refunded = f.refunded_minor();
    if refunded > 0 {
        let charged = [
            f.captured_minor(),
            f.invoiced_minor(),
            f.total_minor.unwrap_or(0),
        ]
        .into_iter()
        .find(|v| *v > 0)
        .unwrap_or(0);
        return if charged > 0 && refunded >= charged {
            OrderStatus::Refunded
        } else {
            OrderStatus::PartiallyRefunded
        };
    }
    let fully_shipped = !f.ordered.is_empty()
        && f.ordered
            .iter()
            .all(|(sku, q)| shipped.get(sku).copied().unwrap_or(0) >= *q);
    if fully_shipped {
        if f.invoices.is_empty() {
            return OrderStatus::Shipped;
        }
        let due = f.due_minor();
        if due <= 0 || f.captured_minor() < due {
            return OrderStatus::Invoiced;
        }
        let all_delivered =
            !f.shipments.is_empty() && f.shipments.keys().all(|id| f.delivered.contains(id));
        return if all_delivered {
            OrderStatus::Closed
        } else {
            OrderStatus::Paid
        };
    }
    if any_shipped {
        OrderStatus::PartiallyShipped
    } else if f.accepted {
        OrderStatus::Accepted
    } else {
        OrderStatus::Placed
    }
}

/// A move the lifecycle does not allow, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("illegal order transition {from} → {to}: {reason}")]
pub struct IllegalTransition {
    pub from: OrderStatus,
    pub to: OrderStatus,
    pub reason: String,
}

/// Is `from → to` legal? Staying in the same status always is (it is not a move).
pub fn check_transition(from: OrderStatus, to: OrderStatus) -> Result<(), IllegalTransition> {
    use OrderStatus::*;
    if from == to {
        return Ok(());
    }
    let no = |reason: String| Err(IllegalTransition { from, to, reason });
    match (from, to) {
        (Cancelled, _) => no("the order is cancelled; nothing may follow a cancellation".into()),
        (Returned, _) => no("the order was returned; that is final".into()),
        (_, Cancelled) if from.has_shipped() => no(format!(
            "an order that is {from} has shipped goods and can no longer be cancelled; \
             refund or return it instead"
        )),
        (_, Cancelled) => Ok(()),
        (_, Returned) if !from.has_shipped() => no(format!(
            "an order that is {from} has shipped nothing, so nothing can be returned"
        )),
        (_, Returned) => Ok(()),
        (Refunded, PartiallyRefunded) => {
            no("a fully refunded order cannot become partially refunded again".into())
        }
        (_, PartiallyRefunded | Refunded) => Ok(()),
        (PartiallyRefunded | Refunded, _) => no(format!(
            "a refunded order does not move back to {to}; only a further refund or a return \
             may follow"
        )),
        _ => match (from.rank(), to.rank()) {
            (Some(a), Some(b)) if b > a => Ok(()),
            _ => no(format!("an order never goes back from {from} to {to}")),
        },
    }
}

/// Is `from → to` legal for an order with these facts? [`check_transition`], except that a
/// refunded or partially refunded order whose facts show nothing shipped may still be cancelled
/// (a line refunded before shipment does not make the goods leave the warehouse).
pub fn check_move(
    from: OrderStatus,
    to: OrderStatus,
    facts: &OrderFacts,
) -> Result<(), IllegalTransition> {
    use OrderStatus::*;
    if to == Cancelled && matches!(from, PartiallyRefunded | Refunded) && !facts.any_shipped() {
        return Ok(());
    }
    check_transition(from, to)
}

/// May an order in `status` still be edited (quantities, lines, addresses)? Only before anything
/// shipped or was refunded, and while it is not cancelled.
pub fn check_edit(status: OrderStatus) -> Result<(), String> {
    match status {
        OrderStatus::Placed | OrderStatus::Accepted => Ok(()),
        OrderStatus::Cancelled => Err("the order is cancelled; it can no longer be edited".into()),
        s @ (OrderStatus::PartiallyRefunded | OrderStatus::Refunded) => Err(format!(
            "the order is {s}: an order with refunds can no longer be edited"
        )),
        s => Err(format!(
            "the order is {s}: goods have shipped, so it can no longer be edited"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    /// Every legal move (besides staying put). Anything not listed must be refused.
    const LEGAL: &[(OrderStatus, OrderStatus)] = &[
        (Placed, Accepted),
        (Placed, PartiallyShipped),
        (Placed, Shipped),
        (Placed, Invoiced),
        (Placed, Paid),
        (Placed, Closed),
        (Placed, Cancelled),
        (Placed, PartiallyRefunded),
        (Placed, Refunded),
        (Accepted, PartiallyShipped),
        (Accepted, Shipped),
        (Accepted, Invoiced),
        (Accepted, Paid),
        (Accepted, Closed),
        (Accepted, Cancelled),
        (Accepted, PartiallyRefunded),
        (Accepted, Refunded),
        (PartiallyShipped, Shipped),
        (PartiallyShipped, Invoiced),
        (PartiallyShipped, Paid),
        (PartiallyShipped, Closed),
        (PartiallyShipped, PartiallyRefunded),
        (PartiallyShipped, Refunded),
        (PartiallyShipped, Returned),
        (Shipped, Invoiced),
        (Shipped, Paid),
        (Shipped, Closed),
        (Shipped, PartiallyRefunded),
        (Shipped, Refunded),
        (Shipped, Returned),
        (Invoiced, Paid),
        (Invoiced, Closed),
        (Invoiced, PartiallyRefunded),
        (Invoiced, Refunded),
        (Invoiced, Returned),
        (Paid, Closed),
        (Paid, PartiallyRefunded),
        (Paid, Refunded),
        (Paid, Returned),
        (Closed, PartiallyRefunded),
        (Closed, Refunded),
        (Closed, Returned),
        (PartiallyRefunded, Refunded),
        (PartiallyRefunded, Returned),
        (Refunded, Returned),
    ];

    #[test]
    fn a_refund_before_shipment_does_not_block_cancellation() {
        let mut f = OrderFacts::default();
        f.ordered.insert("A".into(), 2);
        f.refunds.insert(
            "R1".into(),
            RefundFact {
                amount_minor: 500,
                ..RefundFact::default()
            },
        );
        for from in [PartiallyRefunded, Refunded] {
            assert_eq!(check_move(from, Cancelled, &f), Ok(()), "{from}");
        }
        f.shipments
            .insert("S1".into(), BTreeMap::from([("A".to_string(), 1)]));
        for from in [PartiallyRefunded, Refunded] {
            let e = check_move(from, Cancelled, &f).expect_err("shipped");
            assert!(e.reason.contains("shipped"), "{e}");
        }
        // Everything else is exactly check_transition.
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                if to != Cancelled {
                    assert_eq!(check_move(from, to, &f), check_transition(from, to));
                }
            }
        }
        assert!(check_edit(PartiallyRefunded)
            .expect_err("refunded")
            .contains("refunds"));
    }

    #[test]
    fn every_legal_transition_is_allowed_and_every_other_refused() {
        for &(from, to) in LEGAL {
            assert_eq!(check_transition(from, to), Ok(()), "{from} → {to}");
        }
        let mut refused = 0;
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                if from == to {
                    assert_eq!(check_transition(from, to), Ok(()));
                    continue;
                }
                if LEGAL.contains(&(from, to)) {
                    continue;
                }
                let e = check_transition(from, to).expect_err(&format!("{from} → {to}"));
                assert_eq!((e.from, e.to), (from, to));
                assert!(!e.reason.is_empty());
                refused += 1;
            }
        }
        assert_eq!(refused, 11 * 10 - LEGAL.len());
    }

    #[test]
    fn illegal_transitions_say_why() {
        let table: &[(OrderStatus, OrderStatus, &str)] = &[
            (Shipped, Placed, "never goes back from shipped to placed"),
            (Paid, Invoiced, "never goes back"),
            (Accepted, Placed, "never goes back"),
            (Shipped, Cancelled, "can no longer be cancelled"),
            (PartiallyShipped, Cancelled, "refund or return it instead"),
            (Closed, Cancelled, "can no longer be cancelled"),
            (Cancelled, Accepted, "nothing may follow a cancellation"),
            (Cancelled, Refunded, "nothing may follow a cancellation"),
            (Returned, Refunded, "final"),
            (Accepted, Returned, "shipped nothing"),
            (Placed, Returned, "shipped nothing"),
            (
                Refunded,
                PartiallyRefunded,
                "cannot become partially refunded",
            ),
            (PartiallyRefunded, Shipped, "does not move back to shipped"),
            (Refunded, Paid, "does not move back"),
        ];
        for (from, to, needle) in table {
            let e = check_transition(*from, *to).unwrap_err();
            assert!(e.to_string().contains(needle), "{from} → {to}: {e}");
            assert!(e.to_string().contains(&format!("{from} → {to}")), "{e}");
        }
    }

    /// Sums never wrap (the reported `ordered_of` overflow): two lines of `i64::MAX` are not −2.
    #[test]
    fn sums_never_wrap() {
        let order: Order = serde_json::from_value(serde_json::json!({
            "number": "1", "customer": {"email": "a@b.co"}, "currency": "USD",
            "lines": [{"sku": "A", "quantity": i64::MAX}, {"sku": "A", "quantity": i64::MAX}]
        }))
        .unwrap();
        assert_eq!(ordered_of(&order)["A"], i64::MAX);
        let mut f = facts(&[("A", 1)]);
        ship(&mut f, "S1", &[("A", i64::MAX)]);
        ship(&mut f, "S2", &[("A", i64::MAX)]);
        assert_eq!(f.shipped()["A"], i64::MAX);
        assert_eq!(derive_status(&f), Shipped, "not read as nothing shipped");
    }

    #[test]
    fn edits_only_before_shipment() {
        for s in OrderStatus::ALL {
            let ok = matches!(s, Placed | Accepted);
            assert_eq!(check_edit(s).is_ok(), ok, "{s}");
        }
        assert!(check_edit(Shipped)
            .unwrap_err()
            .contains("goods have shipped"));
        assert!(check_edit(Cancelled).unwrap_err().contains("cancelled"));
    }

    fn facts(ordered: &[(&str, i64)]) -> OrderFacts {
        OrderFacts {
            ordered: ordered.iter().map(|(s, q)| (s.to_string(), *q)).collect(),
            total_minor: Some(1000),
            ..OrderFacts::default()
        }
    }

    fn ship(f: &mut OrderFacts, id: &str, lines: &[(&str, i64)]) {
        f.shipments.insert(
            id.into(),
            lines.iter().map(|(s, q)| (s.to_string(), *q)).collect(),
        );
    }

    #[test]
    fn status_follows_the_facts() {
        let mut f = facts(&[("A", 2), ("B", 1)]);
        assert_eq!(derive_status(&f), Placed);
        f.accepted = true;
        assert_eq!(derive_status(&f), Accepted);
        ship(&mut f, "S1", &[("A", 2)]);
        assert_eq!(derive_status(&f), PartiallyShipped);
        ship(&mut f, "S2", &[("B", 1)]);
        assert_eq!(derive_status(&f), Shipped);
        f.invoices.insert("INV1".into(), 1000);
        assert_eq!(derive_status(&f), Invoiced);
        f.payments.insert("P1".into(), 600);
        assert_eq!(derive_status(&f), Invoiced, "not paid in full");
        f.payments.insert("P2".into(), 400);
        assert_eq!(derive_status(&f), Paid);
        f.delivered.insert("S1".into());
        assert_eq!(derive_status(&f), Paid, "one shipment still on its way");
        f.delivered.insert("S2".into());
        assert_eq!(derive_status(&f), Closed);
        f.refunds.insert(
            "R1".into(),
            RefundFact {
                amount_minor: 300,
                ..RefundFact::default()
            },
        );
        assert_eq!(derive_status(&f), PartiallyRefunded);
        f.refunds.insert(
            "R2".into(),
            RefundFact {
                amount_minor: 700,
                lines: [("A".to_string(), 2)].into(),
                restock: true,
            },
        );
        assert_eq!(derive_status(&f), Refunded);
        f.refunds.insert(
            "R3".into(),
            RefundFact {
                amount_minor: 0,
                lines: [("B".to_string(), 1)].into(),
                restock: true,
            },
        );
        assert_eq!(derive_status(&f), Returned);
        f.cancelled = true;
        assert_eq!(derive_status(&f), Cancelled);
    }

    #[test]
    fn facts_fold_records() {
        use crate::model::{ItemQty, Shipment};
        let mut f = facts(&[("A", 2)]);
        let s = |status| Shipment {
            id: "S1".into(),
            order: "web/1".into(),
            status,
            carrier: None,
            tracking_number: Some("T1".into()),
            tracking_url: None,
            lines: vec![ItemQty {
                sku: "A".into(),
                quantity: 2,
            }],
            address: None,
            shipped_at: None,
        };
        f.apply_shipment(&s(ShipmentStatus::Shipped));
        assert_eq!(derive_status(&f), Shipped);
        f.apply_shipment(&s(ShipmentStatus::Cancelled));
        assert_eq!(
            derive_status(&f),
            Placed,
            "a cancelled shipment counts for nothing"
        );
        assert_eq!(
            OrderStatus::parse("partially_shipped"),
            Some(PartiallyShipped)
        );
        for s in OrderStatus::ALL {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.as_str().into())
            );
        }
    }
}

//! The ERP emulator's money and returns, independent of HTTP: one invoice per sales order,
//! payments recorded against an order and its invoice (idempotent by order and payment id),
//! credit notes for refunds (full or partial, by lines or by amount; idempotent by order and
//! refund id) and customer returns, which put stock back on hand only when they are received.
//!
//! Everything is emitted in the feed under the state lock like any other change: invoices
//! (`Kind::Invoice`, id = the invoice number, status `posted` → `paid` when captured payments
//! cover the total), payments (`Kind::Payment`, id = the payment id), credit notes
//! (`Kind::Refund`, id `CN-n`, the record being the canonical refund), the order record whose
//! status follows (`invoiced`, `paid`, `partially_refunded`, `refunded`, `returned`) and the stock
//! a received return puts back.
//!
//! Must never: await (all of this runs under the state's std mutex), or put returned stock back
//! before the return is received.

use super::state::{ErpError, ErpOrderStatus, ErpState, SalesOrder};
use super::ErpInner;
use crate::core::lock;
use concord_core::model::{ItemQty, Payment, Refund};
use concord_core::{order_scoped_key, validate, Kind};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// An invoice of one sales order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErpInvoice {
    /// `INV-<n>`.
    pub number: String,
    pub sales_order: String,
    /// The order's canonical key (`channel/number`).
    pub order: String,
    /// `posted`, `paid` or `cancelled`.
    pub status: &'static str,
    pub currency: String,
    pub total_minor: i64,
    pub due_date: String,
}

impl ErpInvoice {
    /// The canonical invoice record.
    pub fn record(&self) -> Value {
        json!({"number": self.number, "order": self.order, "status": self.status,
               "currency": self.currency, "total_minor": self.total_minor,
               "due_date": self.due_date})
    }
}

/// A credit note: a refund booked against a sales order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreditNote {
    /// `CN-<n>`.
    pub id: String,
    pub sales_order: String,
    /// The canonical refund it books (its `id` is the refund id it is idempotent on).
    pub refund: Refund,
    /// The customer return it opened (`restock` with lines), if any.
    #[serde(rename = "return")]
    pub return_id: Option<String>,
}

/// Whether a customer return has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnStatus {
    /// Announced by the credit note; nothing is back on hand yet.
    Expected,
    /// Received: its units are back on hand at their locations.
    Received,
}

/// One returned line: `quantity` of `sku` back to `location` (the order line's).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReturnLine {
    pub sku: String,
    pub location: String,
    pub quantity: i64,
}

/// A customer return opened by a restocking credit note.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerReturn {
    /// `RMA-<n>`.
    pub id: String,
    pub credit_note: String,
    pub sales_order: String,
    /// The order's canonical key.
    pub order: String,
    pub status: ReturnStatus,
    pub lines: Vec<ReturnLine>,
}

/// The ERP's invoices, payments, credit notes and returns.
#[derive(Default)]
pub(crate) struct Money {
    /// By number.
    pub invoices: BTreeMap<String, ErpInvoice>,
    /// Canonical payments: a channel's by `{order}:{id}` (its ids are unique only among its own
    /// records), the ERP's own by `PAY-<n>`. The key is the payment's id in the feed.
    pub payments: BTreeMap<String, Value>,
    /// By `{order}:{refund id}`.
    pub credit_notes: BTreeMap<String, CreditNote>,
    /// By return id.
    pub returns: BTreeMap<String, CustomerReturn>,
    next_invoice: u64,
    next_credit: u64,
    next_return: u64,
    next_payment: u64,
}

fn invalid(e: concord_core::ValidationError) -> ErpError {
    ErpError::Invalid(e.to_string())
}

fn so_number(id: &str) -> u64 {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl ErpState {
    /// The sales order an order reference names: its exact reference, else its canonical key
    /// (`channel/number`: after a cancel-and-replace the live replacement, not the cancelled
    /// original). Among several, an open or shipped one before a cancelled one, then the newest.
    pub fn live_order(&self, reference: &str) -> Option<&SalesOrder> {
        if let Some(so) = self
            .order_by_ref
            .get(reference)
            .and_then(|id| self.orders.get(id))
        {
            if so.status != ErpOrderStatus::Cancelled {
                return Some(so);
            }
        }
        self.orders
            .values()
            .filter(|o| o.reference == reference || o.key() == reference)
            .max_by_key(|o| (o.status != ErpOrderStatus::Cancelled, so_number(&o.id)))
    }
}

impl ErpInner {
    fn order_ref<'a>(st: &'a ErpState, field: &str, r: &str) -> Result<&'a SalesOrder, ErpError> {
        st.live_order(r).ok_or_else(|| {
            ErpError::Invalid(format!(
                "field `{field}`: no sales order for order `{r}` (the ERP has not accepted it)"
            ))
        })
    }

    /// Re-emit a sales order after a money change (its status follows).
    fn order_changed(&self, st: &mut ErpState, so: SalesOrder) {
        self.core.emit(Kind::Order, &so.id, so.record());
        st.orders.insert(so.id.clone(), so);
    }

    /// Invoice sales order `so_id` (idempotent: its existing invoice is returned). A cancelled
    /// order cannot be invoiced (409).
    pub fn invoice_locked(&self, st: &mut ErpState, so_id: &str) -> Result<ErpInvoice, ErpError> {
        let mut so = st
            .orders
            .get(so_id)
            .cloned()
            .ok_or_else(|| ErpError::NotFound {
                what: "sales order",
                id: so_id.into(),
            })?;
        if let Some(inv) = so.invoice.as_ref().and_then(|n| st.money.invoices.get(n)) {
            return Ok(inv.clone());
        }
        if so.status == ErpOrderStatus::Cancelled {
            return Err(ErpError::Conflict(format!(
                "sales order {so_id} is cancelled; it cannot be invoiced"
            )));
        }
        st.money.next_invoice += 1;
        let total = so.total_minor();
        let paid = so.paid_minor >= total;
        let inv = ErpInvoice {
            number: format!("INV-{}", st.money.next_invoice),
            sales_order: so.id.clone(),
            order: so.key(),
            status: if paid { "paid" } else { "posted" },
            currency: so.currency.clone(),
            total_minor: total,
            due_date: (chrono::Utc::now() + chrono::Duration::days(30))
                .format("%Y-%m-%d")
                .to_string(),
        };
        st.money.invoices.insert(inv.number.clone(), inv.clone());
        self.core.emit(Kind::Invoice, &inv.number, inv.record());
        so.invoice = Some(inv.number.clone());
        so.invoice_paid = paid;
        self.order_changed(st, so);
        Ok(inv)
    }

    pub fn invoice(&self, so_id: &str) -> Result<ErpInvoice, ErpError> {
        let mut st = lock(&self.state);
        self.invoice_locked(&mut st, so_id)
    }

    /// Recompute what is paid on an order from its captured payments; flips its invoice between
    /// `posted` and `paid` and re-emits what changed.
    fn settle(&self, st: &mut ErpState, so_id: &str) {
        let Some(mut so) = st.orders.get(so_id).cloned() else {
            return;
        };
        let key = so.key();
        so.paid_minor = st
            .money
            .payments
            .values()
            .filter(|p| p["order"] == key.as_str() || p["order"] == so.reference.as_str())
            .filter(|p| p["status"] == "captured")
            .filter_map(|p| p["amount_minor"].as_i64())
            .sum();
        if let Some(inv) = so
            .invoice
            .as_ref()
            .and_then(|n| st.money.invoices.get_mut(n))
        {
            if inv.status != "cancelled" {
                let paid = so.paid_minor >= inv.total_minor;
                let status = if paid { "paid" } else { "posted" };
                if inv.status != status {
                    inv.status = status;
                    let rec = inv.record();
                    self.core.emit(Kind::Invoice, &inv.number, rec);
                }
                so.invoice_paid = paid;
            }
        }
        self.order_changed(st, so);
    }

    /// `POST /api/payments` (a canonical payment): recorded against the order it names (its
    /// reference or canonical key) and the order's invoice, idempotent by order and payment id —
    /// the same payment again is `(payment, false)` and changes nothing; a new status (captured →
    /// refunded) updates it. Unknown order or another currency → 422 naming the field.
    pub fn record_payment(&self, body: Value) -> Result<(Value, bool), ErpError> {
        let v = validate(Kind::Payment, &body).map_err(invalid)?;
        let p: Payment = serde_json::from_value(v).map_err(|e| ErpError::Invalid(e.to_string()))?;
        let mut st = lock(&self.state);
        let so = Self::order_ref(&st, "order", &p.order)?.clone();
        if p.currency != so.currency {
            return Err(ErpError::Invalid(format!(
                "field `currency`: payment {} is in {} but sales order {} is in {}",
                p.id, p.currency, so.id, so.currency
            )));
        }
        let mut p = p;
        p.order = so.key();
        if p.invoice.is_none() {
            p.invoice = so.invoice.clone();
        }
        let rec = serde_json::to_value(&p).map_err(|e| ErpError::Invalid(e.to_string()))?;
        let key = order_scoped_key(&p.order, &p.id);
        if let Some(old) = st.money.payments.get(&key) {
            if *old == rec {
                return Ok((old.clone(), false));
            }
        }
        st.money.payments.insert(key.clone(), rec.clone());
        self.core.emit(Kind::Payment, &key, rec.clone());
        self.core.count_writes(Kind::Payment, 1);
        self.settle(&mut st, &so.id);
        Ok((rec, true))
    }

    /// A payment received at the ERP itself (a bank transfer booked against invoice `number`):
    /// `amount` defaults to what is still open. Emitted as payment `PAY-n`.
    pub fn pay_invoice(
        &self,
        number: &str,
        amount: Option<i64>,
        method: Option<&str>,
    ) -> Result<Value, ErpError> {
        let mut st = lock(&self.state);
        let inv = st
            .money
            .invoices
            .get(number)
            .cloned()
            .ok_or_else(|| ErpError::NotFound {
                what: "invoice",
                id: number.into(),
            })?;
        let paid = st
            .orders
            .get(&inv.sales_order)
            .map_or(0, |so| so.paid_minor);
        let amount = amount.unwrap_or(inv.total_minor - paid);
        if amount <= 0 {
            return Err(ErpError::Conflict(format!(
                "invoice {number} has nothing left to pay"
            )));
        }
        st.money.next_payment += 1;
        let id = format!("PAY-{}", st.money.next_payment);
        let mut rec = json!({"id": id, "order": inv.order, "invoice": number,
                             "amount_minor": amount, "currency": inv.currency,
                             "status": "captured"});
        if let Some(m) = method {
            rec["method"] = json!(m);
        }
        st.money.payments.insert(id.clone(), rec.clone());
        self.core.emit(Kind::Payment, &id, rec.clone());
        self.settle(&mut st, &inv.sales_order);
        Ok(rec)
    }

    /// `POST /api/credit-notes` (a canonical refund): a credit note against the order it names,
    /// idempotent by order and refund id (the same refund again is `(note, false)`). By lines:
    /// each SKU must be on the order and not credited beyond what was ordered; the amount, when 0, is the
    /// lines' value. By amount: at most what is not credited yet. `restock` with lines opens a
    /// customer return (stock comes back only when it is received). 422 names the field.
    pub fn credit(&self, body: Value) -> Result<(CreditNote, bool), ErpError> {
        let v = validate(Kind::Refund, &body).map_err(invalid)?;
        let r: Refund = serde_json::from_value(v).map_err(|e| ErpError::Invalid(e.to_string()))?;
        let mut st = lock(&self.state);
        let mut so = Self::order_ref(&st, "order", &r.order)?.clone();
        let note_key = order_scoped_key(&so.key(), &r.id);
        if let Some(cn) = st.money.credit_notes.get(&note_key) {
            return Ok((cn.clone(), false));
        }
        if r.currency != so.currency {
            return Err(ErpError::Invalid(format!(
                "field `currency`: refund {} is in {} but sales order {} is in {}",
                r.id, r.currency, so.id, so.currency
            )));
        }
        let mut ordered: BTreeMap<&str, (i64, i64)> = BTreeMap::new(); // sku → (qty, unit price)
        for l in &so.lines {
            let e = ordered
                .entry(l.sku.as_str())
                .or_insert((0, l.unit_price_minor));
            e.0 += l.quantity;
        }
        let mut credited = so.credited.clone();
        let mut lines_value = 0i64;
        for (i, l) in r.lines.iter().enumerate() {
            let Some((qty, price)) = ordered.get(l.sku.as_str()).copied() else {
                return Err(ErpError::Invalid(format!(
                    "field `lines[{i}].sku`: `{}` is not on sales order {}",
                    l.sku, so.id
                )));
            };
            let c = credited.entry(l.sku.clone()).or_default();
            if *c + l.quantity > qty {
                return Err(ErpError::Invalid(format!(
                    "field `lines[{i}].quantity`: crediting {} of `{}` exceeds the {} ordered \
                     on sales order {} ({} already credited)",
                    l.quantity, l.sku, qty, so.id, *c
                )));
            }
            *c += l.quantity;
            lines_value += l.quantity.saturating_mul(price);
        }
        let mut r = r;
        if r.amount_minor == 0 {
            r.amount_minor = lines_value;
        }
        if r.amount_minor <= 0 {
            return Err(ErpError::Invalid(
                "field `amount_minor`: a credit note needs an amount or lines".into(),
            ));
        }
        let open = so.total_minor() - so.credited_minor;
        if r.amount_minor > open {
            return Err(ErpError::Invalid(format!(
                "field `amount_minor`: crediting {} exceeds the {open} still open on sales order {}",
                r.amount_minor, so.id
            )));
        }
        r.order = so.key();
        st.money.next_credit += 1;
        let cn_id = format!("CN-{}", st.money.next_credit);
        let return_id = if r.restock && !r.lines.is_empty() {
            st.money.next_return += 1;
            let rma = CustomerReturn {
                id: format!("RMA-{}", st.money.next_return),
                credit_note: cn_id.clone(),
                sales_order: so.id.clone(),
                order: so.key(),
                status: ReturnStatus::Expected,
                lines: r
                    .lines
                    .iter()
                    .map(|l: &ItemQty| ReturnLine {
                        sku: l.sku.clone(),
                        location: so
                            .lines
                            .iter()
                            .find(|ol| ol.sku == l.sku)
                            .and_then(|ol| ol.location.clone())
                            .unwrap_or_else(|| self.opts.default_location.clone()),
                        quantity: l.quantity,
                    })
                    .collect(),
            };
            let id = rma.id.clone();
            st.money.returns.insert(id.clone(), rma);
            Some(id)
        } else {
            None
        };
        let cn = CreditNote {
            id: cn_id.clone(),
            sales_order: so.id.clone(),
            refund: r.clone(),
            return_id,
        };
        st.money.credit_notes.insert(note_key, cn.clone());
        let rec = serde_json::to_value(&r).map_err(|e| ErpError::Invalid(e.to_string()))?;
        self.core.emit(Kind::Refund, &cn_id, rec);
        self.core.count_writes(Kind::Refund, 1);
        so.credited = credited;
        so.credited_minor += r.amount_minor;
        self.order_changed(&mut st, so);
        Ok((cn, true))
    }

    /// Receive customer return `id`: its units go back on hand at their locations (emitted in
    /// the stock feed) and the order becomes `returned`. Idempotent.
    pub fn receive_return(&self, id: &str) -> Result<CustomerReturn, ErpError> {
        let mut st = lock(&self.state);
        let mut rma = st
            .money
            .returns
            .get(id)
            .cloned()
            .ok_or_else(|| ErpError::NotFound {
                what: "return",
                id: id.into(),
            })?;
        if rma.status == ReturnStatus::Received {
            return Ok(rma);
        }
        rma.status = ReturnStatus::Received;
        for l in &rma.lines {
            let row = st
                .stock
                .entry((l.sku.clone(), l.location.clone()))
                .or_default();
            row.on_hand = row.on_hand.saturating_add(l.quantity);
            self.stock_changed(&st, &l.sku, &l.location);
        }
        st.money.returns.insert(rma.id.clone(), rma.clone());
        if let Some(mut so) = st.orders.get(&rma.sales_order).cloned() {
            so.returned = true;
            self.order_changed(&mut st, so);
        }
        Ok(rma)
    }

    /// A cancelled order's invoice is cancelled with it.
    pub(crate) fn cancel_invoice(&self, st: &mut ErpState, so: &SalesOrder) {
        if let Some(inv) = so
            .invoice
            .as_ref()
            .and_then(|n| st.money.invoices.get_mut(n))
        {
            if inv.status != "cancelled" {
                inv.status = "cancelled";
                let rec = inv.record();
                self.core.emit(Kind::Invoice, &inv.number, rec);
            }
        }
    }

    pub fn invoices_of(&self, order: Option<&str>) -> Vec<ErpInvoice> {
        let st = lock(&self.state);
        st.money
            .invoices
            .values()
            .filter(|i| order.is_none_or(|o| i.order == o || i.sales_order == o))
            .cloned()
            .collect()
    }

    /// A payment by its key in the feed (`{order}:{id}` or `PAY-<n>`), else the first whose
    /// `id` is `id`.
    pub fn payment(&self, id: &str) -> Option<Value> {
        let st = lock(&self.state);
        st.money
            .payments
            .get(id)
            .cloned()
            .or_else(|| st.money.payments.values().find(|p| p["id"] == id).cloned())
    }

    pub fn credit_notes_of(&self, order: Option<&str>) -> Vec<CreditNote> {
        let st = lock(&self.state);
        st.money
            .credit_notes
            .values()
            .filter(|c| order.is_none_or(|o| c.refund.order == o || c.sales_order == o))
            .cloned()
            .collect()
    }

    pub fn returns_of(&self, order: Option<&str>) -> Vec<CustomerReturn> {
        let st = lock(&self.state);
        st.money
            .returns
            .values()
            .filter(|r| order.is_none_or(|o| r.order == o || r.sales_order == o))
            .cloned()
            .collect()
    }
}

//! The ERP emulator's sales orders: create (commit on accept), amend, the sales rep's order,
//! cancel (release), ship (all or by lines). Business rules only, independent of HTTP; every
//! change is emitted through the core while the state lock is held.
//!
//! Must never: await (all of this runs under a std mutex).

use super::state::{invalid, ErpError, ErpOrderStatus, ErpState, SalesOrder};
use super::ErpInner;
use crate::core::lock;
use concord_core::model::{Address, OrderLine};
use concord_core::{validate, Kind};
use serde_json::{json, Value};
use std::collections::BTreeMap;

impl ErpInner {
    /// `POST /api/sales-orders`: `(order, created)`.
    pub fn create_order(&self, mut body: Value) -> Result<(SalesOrder, bool), ErpError> {
        let obj = body
            .as_object_mut()
            .ok_or_else(|| ErpError::Invalid("body must be a JSON object".into()))?;
        let customer_id = match obj.remove("customer_id") {
            Some(Value::String(s)) => s,
            Some(_) => {
                return Err(ErpError::Invalid(
                    "field `customer_id`: must be a string".into(),
                ))
            }
            None => return Err(ErpError::Invalid("field `customer_id`: is required".into())),
        };
        let o = validate(Kind::Order, &body).map_err(invalid)?;
        let o: concord_core::model::Order =
            serde_json::from_value(o).map_err(|e| ErpError::Invalid(e.to_string()))?;
        let channel = o
            .channel
            .clone()
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                ErpError::Invalid(
                    "field `channel`: is required (the reference is channel/number)".into(),
                )
            })?;
        let reference = o
            .reference
            .clone()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| format!("{channel}/{}", o.number));
        let mut st = lock(&self.state);
        let email = st
            .customers
            .get(&customer_id)
            .map(|c| c["email"].as_str().unwrap_or_default().to_string());
        if let Some(existing) = st
            .order_by_ref
            .get(&reference)
            .and_then(|id| st.orders.get(id))
        {
            // Idempotent for the same order only: a retry is 200, another order under the
            // reference (a store that restarted its numbering) is refused, never taken for it.
            let want = quantities(&o.lines);
            let have = quantities(&existing.lines);
            let same_customer = email
                .as_deref()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case(existing.email.trim()));
            if same_customer && want == have {
                return Ok((existing.clone(), false));
            }
            return Err(ErpError::Conflict(format!(
                "reference `{reference}` already belongs to sales order {} (customer {}, lines \
                 {}), not to this order (customer {}, lines {})",
                existing.id,
                existing.email,
                concord_connectors::identity::describe_lines(&have),
                email.as_deref().unwrap_or(customer_id.as_str()),
                concord_connectors::identity::describe_lines(&want),
            )));
        }
        let email = email.ok_or_else(|| ErpError::UnknownCustomer(customer_id.clone()))?;
        if lock(&self.credit_hold).contains(&email) {
            return Err(ErpError::CreditHold(email));
        }
        self.known_skus(&o.lines)?;
        let so = self.accept(&mut st, reference, channel, o, customer_id, email);
        drop(st);
        self.schedule_ship(&so.id);
        Ok((so, true))
    }

    /// Accept a validated order under the state lock: each line at its `location` (the
    /// default location when it names none), committing stock there; counts units beyond the
    /// ERP's own `on_hand − committed` in `oversold_units`.
    fn accept(
        &self,
        st: &mut ErpState,
        reference: String,
        channel: String,
        o: concord_core::model::Order,
        customer_id: String,
        email: String,
    ) -> SalesOrder {
        // Taken before the stock changes below are emitted (under the state lock, which every
        // stock change holds): figures with a greater seq include this order, others don't.
        let version = self.core.last_seq().to_string();
        st.next_order += 1;
        let so = SalesOrder {
            id: format!("SO-{}", st.next_order),
            reference: reference.clone(),
            channel,
            number: o.number.clone(),
            customer_id,
            email,
            currency: o.currency.clone(),
            lines: self.located(o.lines.clone()),
            shipping_address: o.shipping_address.clone(),
            billing_address: o.billing_address.clone(),
            status: ErpOrderStatus::Open,
            shipped: BTreeMap::new(),
            invoice: None,
            invoice_paid: false,
            credited: BTreeMap::new(),
            credited_minor: 0,
            paid_minor: 0,
            returned: false,
            version,
        };
        self.commit_stock(st, &so.remaining_at());
        st.order_by_ref.insert(reference, so.id.clone());
        st.orders.insert(so.id.clone(), so.clone());
        self.core.emit(Kind::Order, &so.id, so.record());
        self.core.count_writes(Kind::Order, 1);
        so
    }

    /// Every line's SKU must be a known product.
    fn known_skus(&self, lines: &[OrderLine]) -> Result<(), ErpError> {
        for (i, l) in lines.iter().enumerate() {
            if self.core.record(Kind::Product, &l.sku).is_none() {
                return Err(ErpError::UnknownSku {
                    path: format!("lines[{i}].sku"),
                    sku: l.sku.clone(),
                });
            }
        }
        Ok(())
    }

    /// Lines with their `location` set (the default location when a line names none).
    fn located(&self, mut lines: Vec<OrderLine>) -> Vec<OrderLine> {
        for l in &mut lines {
            if l.location.as_deref().is_none_or(|x| x.trim().is_empty()) {
                l.location = Some(self.opts.default_location.clone());
            }
        }
        lines
    }

    /// Commit `(sku, location, quantity)`s, counting units beyond the ERP's own free stock in
    /// `oversold_units`; emits each stock change.
    fn commit_stock(&self, st: &mut ErpState, lines: &[(String, String, i64)]) {
        for (sku, loc, q) in lines {
            let row = st.stock.entry((sku.clone(), loc.clone())).or_default();
            let free = (row.on_hand - row.committed).max(0);
            if *q > free {
                self.core
                    .counters
                    .oversold_units
                    .fetch_add((q - free) as u64, std::sync::atomic::Ordering::Relaxed);
            }
            row.committed += q;
            self.stock_changed(st, sku, loc);
        }
    }

    /// Release what `lines` committed; emits each stock change.
    fn release_stock(&self, st: &mut ErpState, lines: &[(String, String, i64)]) {
        for (sku, loc, q) in lines {
            let row = st.stock.entry((sku.clone(), loc.clone())).or_default();
            row.committed = (row.committed - q).max(0);
            self.stock_changed(st, sku, loc);
        }
    }

    /// `PATCH /api/sales-orders/{id}`: apply an edit to an order not yet shipped. The body is a
    /// canonical order (or part of one): `lines` (the full new list) and `shipping_address` /
    /// `billing_address` (`null` removes) replace the order's when present; other fields are
    /// ignored. The edited order is validated as a whole (422 naming the field). What the old lines committed is released and the new lines are committed in one
    /// step under the lock; the order gets a new acceptance `version` (the seq before those stock
    /// changes). Refused with 409 once anything shipped or was invoiced, or when cancelled.
    pub fn amend(&self, id: &str, body: Value) -> Result<SalesOrder, ErpError> {
        let edit = body
            .as_object()
            .ok_or_else(|| ErpError::Invalid("body must be a JSON object".into()))?;
        let mut st = lock(&self.state);
        let mut so = st
            .orders
            .get(id)
            .cloned()
            .ok_or_else(|| ErpError::NotFound {
                what: "sales order",
                id: id.into(),
            })?;
        if so.status == ErpOrderStatus::Cancelled {
            return Err(ErpError::Conflict(format!(
                "sales order {id} is cancelled; a cancelled order cannot be amended"
            )));
        }
        if so.has_shipped() {
            let shipped: Vec<String> = so
                .shipped
                .iter()
                .map(|(s, q)| format!("{q} × {s}"))
                .collect();
            return Err(ErpError::Conflict(format!(
                "sales order {id} has already shipped ({}); an order cannot be amended after shipment",
                shipped.join(", ")
            )));
        }
        if let Some(inv) = &so.invoice {
            return Err(ErpError::Conflict(format!(
                "sales order {id} is invoiced ({inv}); an invoiced order cannot be amended"
            )));
        }
        // The edited order, validated as a whole canonical order (errors name the field).
        let mut merged = json!({"channel": so.channel, "number": so.number,
                                "customer": {"email": so.email}, "currency": so.currency,
                                "lines": so.lines});
        for f in ["lines", "shipping_address", "billing_address"] {
            match edit.get(f) {
                Some(Value::Null) => {}
                Some(v) => merged[f] = v.clone(),
                None => {
                    if let Some(a) = so.record().get(f) {
                        merged[f] = a.clone();
                    }
                }
            }
        }
        let o = validate(Kind::Order, &merged).map_err(invalid)?;
        let o: concord_core::model::Order =
            serde_json::from_value(o).map_err(|e| ErpError::Invalid(e.to_string()))?;
        self.known_skus(&o.lines)?;
        let mut next = so.clone();
        next.lines = self.located(o.lines);
        next.shipping_address = o.shipping_address;
        next.billing_address = o.billing_address;
        if next == so {
            return Ok(so);
        }
        next.version = self.core.last_seq().to_string();
        if next.lines != so.lines {
            self.release_stock(&mut st, &so.remaining_at());
            self.commit_stock(&mut st, &next.remaining_at());
        }
        so = next;
        st.orders.insert(so.id.clone(), so.clone());
        self.core.emit(Kind::Order, &so.id, so.record());
        self.core.count_writes(Kind::Order, 1);
        Ok(so)
    }

    /// An order a sales rep keys into the ERP directly (reference `rep/<n>`): the customer is
    /// created when the e-mail is unknown; lines are taken from the default location.
    pub fn rep_order(&self, email: &str, lines: &[(String, i64)]) -> Result<SalesOrder, ErpError> {
        let c = validate(Kind::Customer, &json!({"email": email})).map_err(invalid)?;
        let email = c["email"].as_str().unwrap_or_default().to_string();
        let mut st = lock(&self.state);
        // Checked before anything changes: a refused order takes no number and makes no
        // customer.
        let number = (st.next_rep + 1).to_string();
        let body = json!({"channel": "rep", "number": number, "customer": {"email": email},
                          "currency": "USD",
                          "lines": lines.iter().map(|(s, q)| json!({"sku": s, "quantity": q})).collect::<Vec<_>>()});
        let o = validate(Kind::Order, &body).map_err(invalid)?;
        let o: concord_core::model::Order =
            serde_json::from_value(o).map_err(|e| ErpError::Invalid(e.to_string()))?;
        self.known_skus(&o.lines)?;
        let (customer_id, created) = st.customers.ensure("C-", &c);
        if created {
            self.core.emit(Kind::Customer, &customer_id, c.clone());
        }
        st.next_rep += 1;
        let so = self.accept(
            &mut st,
            format!("rep/{number}"),
            "rep".into(),
            o,
            customer_id,
            email,
        );
        drop(st);
        self.schedule_ship(&so.id);
        Ok(so)
    }

    pub fn cancel(&self, id: &str) -> Result<SalesOrder, ErpError> {
        let mut st = lock(&self.state);
        let so = st
            .orders
            .get(id)
            .cloned()
            .ok_or_else(|| ErpError::NotFound {
                what: "sales order",
                id: id.into(),
            })?;
        match so.status {
            ErpOrderStatus::Cancelled => return Ok(so),
            ErpOrderStatus::Shipped => {
                return Err(ErpError::Conflict(format!(
                    "sales order {id} is already shipped"
                )))
            }
            ErpOrderStatus::Open => {}
        }
        self.release_stock(&mut st, &so.remaining_at());
        let mut so = so;
        so.status = ErpOrderStatus::Cancelled;
        self.cancel_invoice(&mut st, &so);
        st.orders.insert(so.id.clone(), so.clone());
        self.core.emit(Kind::Order, &so.id, so.record());
        Ok(so)
    }

    pub fn ship(&self, id: &str) -> Result<Value, ErpError> {
        let remaining = {
            let st = lock(&self.state);
            let so = st.orders.get(id).ok_or_else(|| ErpError::NotFound {
                what: "sales order",
                id: id.into(),
            })?;
            so.remaining().into_iter().collect::<Vec<_>>()
        };
        self.ship_lines(id, &remaining, None, None)
    }

    /// Create a shipment for `lines` of an open order (one of several when split): lowers
    /// on-hand and committed. `carrier` defaults to `UPS`, the tracking number to a generated
    /// one. The shipment names the order by its canonical key and carries the order's shipping
    /// address. With `invoice_on_ship`, the shipment that completes the order invoices it.
    pub fn ship_lines(
        &self,
        id: &str,
        lines: &[(String, i64)],
        carrier: Option<&str>,
        tracking: Option<&str>,
    ) -> Result<Value, ErpError> {
        let mut st = lock(&self.state);
        let mut so = st
            .orders
            .get(id)
            .cloned()
            .ok_or_else(|| ErpError::NotFound {
                what: "sales order",
                id: id.into(),
            })?;
        if so.status != ErpOrderStatus::Open {
            return Err(ErpError::Conflict(format!("sales order {id} is not open")));
        }
        let remaining = so.remaining();
        let mut merged: BTreeMap<String, i64> = BTreeMap::new();
        for (i, (sku, q)) in lines.iter().enumerate() {
            if *q <= 0 {
                return Err(ErpError::Invalid(format!(
                    "lines[{i}].quantity: must be greater than 0"
                )));
            }
            *merged.entry(sku.clone()).or_default() += q;
        }
        if merged.is_empty() {
            return Err(ErpError::Conflict(format!(
                "sales order {id} has nothing left to ship"
            )));
        }
        for (sku, q) in &merged {
            if remaining.get(sku).copied().unwrap_or(0) < *q {
                return Err(ErpError::Conflict(format!(
                    "cannot ship {q} of `{sku}` on {id}: only {} open",
                    remaining.get(sku).copied().unwrap_or(0)
                )));
            }
        }
        st.next_shipment += 1;
        let n = st.next_shipment;
        let tracking = tracking
            .map(str::to_string)
            .unwrap_or_else(|| format!("1Z999AA1{:010}", n * 7919 % 10_000_000_000));
        let mut shipment = json!({
            "id": format!("SH-{n}"), "order": so.key(), "status": "shipped",
            "carrier": carrier.unwrap_or("UPS"), "tracking_number": tracking,
            "lines": merged.iter().map(|(s, q)| json!({"sku": s, "quantity": q})).collect::<Vec<_>>(),
            "shipped_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        // Where it goes: the lines' own `ship_to` when every shipped line has the same one (a
        // multi-address order ships per address), else the order's shipping address.
        let ship_tos: Vec<Option<&Address>> = so
            .lines
            .iter()
            .filter(|l| merged.contains_key(&l.sku))
            .map(|l| l.ship_to.as_ref())
            .collect();
        let address = match ship_tos.first() {
            Some(Some(first)) if ship_tos.iter().all(|a| *a == Some(*first)) => Some(*first),
            _ => so.shipping_address.as_ref(),
        };
        if let Some(a) = address {
            shipment["address"] = json!(a);
        }
        st.shipments.push(shipment.clone());
        self.core
            .emit(Kind::Shipment, &format!("SH-{n}"), shipment.clone());
        let open = so.remaining_at();
        for (sku, q) in &merged {
            // From the SKU's open lines in line order, each at its own location.
            let mut left = *q;
            for (_, loc, avail) in open.iter().filter(|(s, _, _)| s == sku) {
                let take = left.min(*avail);
                if take <= 0 {
                    continue;
                }
                left -= take;
                let row = st.stock.entry((sku.clone(), loc.clone())).or_default();
                row.on_hand = (row.on_hand - take).max(0);
                row.committed = (row.committed - take).max(0);
                self.stock_changed(&st, sku, loc);
            }
            *so.shipped.entry(sku.clone()).or_default() += q;
        }
        if so.remaining().is_empty() {
            so.status = ErpOrderStatus::Shipped;
        }
        st.orders.insert(so.id.clone(), so.clone());
        self.core.emit(Kind::Order, &so.id, so.record());
        if so.status == ErpOrderStatus::Shipped && self.opts.invoice_on_ship {
            self.invoice_locked(&mut st, &so.id)?;
        }
        Ok(shipment)
    }
}

/// Quantity per SKU of order lines (summed over lines and locations).
fn quantities(lines: &[OrderLine]) -> BTreeMap<String, i64> {
    let mut m: BTreeMap<String, i64> = BTreeMap::new();
    for l in lines {
        let e = m.entry(l.sku.clone()).or_default();
        *e = e.saturating_add(l.quantity);
    }
    m.retain(|_, q| *q != 0);
    m
}

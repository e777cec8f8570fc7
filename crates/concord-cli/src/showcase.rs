//! The order-lifecycle showcase of `concord demo`: one order at `web1`, driven from outside the
//! way a merchant, a customer and a warehouse would — checked out, edited before shipment,
//! shipped in two shipments with two tracking numbers, invoiced, paid at the store, one unit
//! refunded and restocked, the return received. Each step waits, under a deadline, until the
//! systems agree (the ERP amended the order, the store has both fulfilments, the ERP booked the
//! payment and the credit note, the hub's order reached `partially_refunded`); the demo's
//! summary prints what happened, or the step that did not happen.
//!
//! Must never reach into the engine's internals: it drives the sandboxes through their handles
//! and reads the hub only through `Engine::order_history`, the public query.

use concord_core::model::ItemQty;
use concord_engine::Engine;
use concord_sandbox::erp::ErpHandle;
use concord_sandbox::shop::{OrderEdit, RefundRequest, ShopHandle};
use std::time::{Duration, Instant};

/// The customer whose orders the demo's ERP warehouse ships by hand (`ErpOptions::hold_for`).
pub const SHOWCASE_CUSTOMER: &str = "showcase@demo.example";
const STEP_DEADLINE: Duration = Duration::from_secs(30);

/// What the showcase did: summary lines, and the step that failed, if one did.
#[derive(Debug, Default)]
pub struct Showcase {
    pub key: String,
    pub lines: Vec<String>,
    pub failed: Option<String>,
}

/// Poll `cond` every 50 ms until it holds; `Err` naming `what` after the deadline.
async fn wait(what: &str, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let until = Instant::now() + STEP_DEADLINE;
    while !cond() {
        if Instant::now() >= until {
            return Err(format!("{what}: not within {STEP_DEADLINE:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn money(minor: i64) -> String {
    format!("{}.{:02} USD", minor / 100, minor % 100)
}

/// Run the showcase on `skus` (three SKUs with plenty of stock).
pub async fn run(engine: &Engine, erp: &ErpHandle, web1: &ShopHandle, skus: [&str; 3]) -> Showcase {
    let mut out = Showcase::default();
    if let Err(e) = steps(engine, erp, web1, skus, &mut out).await {
        out.failed = Some(e);
    }
    out
}

async fn steps(
    engine: &Engine,
    erp: &ErpHandle,
    web1: &ShopHandle,
    [a, b, c]: [&str; 3],
    out: &mut Showcase,
) -> Result<(), String> {
    // The hub's pool must have the ERP's stock before the store can sell.
    let until = Instant::now() + STEP_DEADLINE;
    let wanted = [a.to_string(), b.to_string(), c.to_string()];
    loop {
        let ats = engine
            .availability("web1", &wanted)
            .await
            .map_err(|e| e.to_string())?;
        if ats.iter().all(|x| x.ats >= 3) {
            break;
        }
        if Instant::now() >= until {
            return Err(format!("the hub's pool never had 3 of {wanted:?} for web1"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let placed = web1
        .checkout(SHOWCASE_CUSTOMER, "Showcase", &[(a, 2), (b, 1)])
        .await
        .map_err(|e| format!("checkout at web1: {e}"))?;
    out.key = placed.key.clone();
    let key = placed.key.clone();
    wait("the ERP accepts the order", || {
        erp.order_by_reference(&key).is_some()
    })
    .await?;
    let so = erp
        .order_by_reference(&key)
        .ok_or("the ERP order vanished")?;

    // The merchant edits it before shipment: one more of A, C added, a new address.
    let edit = OrderEdit {
        lines: Some(vec![
            ItemQty {
                sku: a.into(),
                quantity: 3,
            },
            ItemQty {
                sku: b.into(),
                quantity: 1,
            },
            ItemQty {
                sku: c.into(),
                quantity: 1,
            },
        ]),
        shipping_address: serde_json::from_value(serde_json::json!(
            {"line1": "1 Harbour St", "city": "Bristol", "country": "GB"}
        ))
        .ok()
        .map(Some),
    };
    web1.edit_order(&placed.id, edit)
        .map_err(|e| format!("the edit at web1: {e}"))?;
    wait("the ERP amends the order", || {
        erp.order(&so.id).is_some_and(|o| {
            o.lines.len() == 3 && o.lines.iter().any(|l| l.sku == a && l.quantity == 3)
        })
    })
    .await?;
    out.lines.push(format!(
        "edited before shipment: {a} ×2 → ×3, {c} ×1 added, new address; the ERP amended {} in place ({} sales order)",
        so.id,
        erp.sales_orders().iter().filter(|o| o.key() == key).count()
    ));

    // The warehouse ships it in two parcels.
    let first = erp
        .ship_with(&so.id, &[(a, 3)], "DHL", "JD0146000031")
        .map_err(|e| format!("first shipment: {e}"))?;
    let second = erp
        .ship_with(&so.id, &[(b, 1), (c, 1)], "UPS", "1Z999AA10000000032")
        .map_err(|e| format!("second shipment: {e}"))?;
    wait("web1 has both fulfilments", || {
        web1.fulfillments(&placed.id).len() == 2
    })
    .await?;
    let tracking: Vec<String> = web1
        .fulfillments(&placed.id)
        .iter()
        .map(|f| {
            format!(
                "{} {} {}",
                f.shipment_id,
                f.carrier.as_deref().unwrap_or("?"),
                f.tracking_number.as_deref().unwrap_or("?")
            )
        })
        .collect();
    out.lines.push(format!(
        "shipped in 2 shipments ({} and {}), both fulfilments at web1: {}",
        first["id"].as_str().unwrap_or("?"),
        second["id"].as_str().unwrap_or("?"),
        tracking.join(", ")
    ));

    // Invoiced in the ERP, paid at the store, the ERP books the payment.
    let invoice = erp
        .invoice(&so.id)
        .map_err(|e| format!("the invoice: {e}"))?;
    let number = invoice.number.clone();
    wait("web1 has the invoice", || {
        web1.order(&placed.id)
            .is_some_and(|o| o.invoices.iter().any(|i| i["number"] == number.as_str()))
    })
    .await?;
    let pay = web1
        .capture(&placed.id, None)
        .map_err(|e| format!("the payment at web1: {e}"))?;
    wait("the ERP's invoice is paid", || {
        erp.invoices(Some(&key))
            .iter()
            .any(|i| i.number == number && i.status == "paid")
    })
    .await?;
    out.lines.push(format!(
        "invoiced {number} ({}), paid at web1 ({}), booked by the ERP: invoice paid",
        money(invoice.total_minor),
        pay["id"].as_str().unwrap_or("?")
    ));

    // One unit of A comes back: refunded at the store, restocked.
    let refund = web1
        .refund(
            &placed.id,
            RefundRequest {
                lines: vec![ItemQty {
                    sku: a.into(),
                    quantity: 1,
                }],
                restock: true,
                reason: Some("damaged in transit".into()),
                ..RefundRequest::default()
            },
        )
        .map_err(|e| format!("the refund at web1: {e}"))?;
    let refund_id = refund["id"].as_str().unwrap_or_default().to_string();
    wait("the ERP books the credit note", || {
        erp.credit_notes(Some(&key))
            .iter()
            .any(|n| n.refund.id == refund_id)
    })
    .await?;
    let note = erp
        .credit_notes(Some(&key))
        .into_iter()
        .find(|n| n.refund.id == refund_id)
        .ok_or("the credit note vanished")?;
    let rma = note.return_id.clone().ok_or("no return was opened")?;
    erp.receive_return(&rma)
        .map_err(|e| format!("receiving the return: {e}"))?;
    out.lines.push(format!(
        "refunded 1 × {a} ({}, {refund_id} at web1) → credit note {} in the ERP; return {rma} received, back on hand",
        money(note.refund.amount_minor),
        note.id
    ));

    // The hub's state comes from its store (an async query), polled the same way.
    let until = Instant::now() + STEP_DEADLINE;
    loop {
        let state = engine
            .order_history(&key)
            .await
            .map_err(|e| e.to_string())?
            .map(|h| h.order.state);
        if state.as_deref() == Some("partially_refunded") {
            break;
        }
        if Instant::now() >= until {
            return Err(format!(
                "the hub's order is partially_refunded: still {state:?} after {STEP_DEADLINE:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let h = engine
        .order_history(&key)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the hub forgot the order")?;
    let mut path: Vec<String> = Vec::new();
    for e in h.events.iter().filter(|e| e.event.applied) {
        if path.last() != Some(&e.event.to) {
            path.push(e.event.to.clone());
        }
    }
    out.lines.push(format!(
        "the hub's order {key}: {} (`concord order {key}` shows it all)",
        path.join(" → ")
    ));
    Ok(())
}

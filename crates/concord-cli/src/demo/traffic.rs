//! The demo's traffic: goods receipts in the ERP, checkouts in both stores through the hub's
//! stock pool (new and returning customers, one on credit hold, hot SKUs with less stock than
//! demand), abandoned carts (reservations cancelled or left to expire), web2 going down for a
//! while and a burst of 429s from the ERP. It counts what it did in `Traffic` for the summary.
//!
//! Must never check or judge anything (that is `checks.rs`) nor reach into the engine: it acts
//! on the sandboxes and the hub's `/v1` API from outside, as shoppers and a warehouse would.

use super::topology::{demo_key, Systems, HELD_CUSTOMER, HOT_SKUS, LOCATIONS};
use super::DemoArgs;
use concord_sandbox::shop::ShopError;
use concord_sandbox::Faults;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the traffic did, counted as it happens (read by the per-second line and the summary).
#[derive(Default)]
pub(super) struct Traffic {
    pub(super) orders_placed: AtomicU64,
    /// Refused by the hub's stock pool (409).
    pub(super) orders_refused: AtomicU64,
    /// Checkouts that failed for another reason (hub unreachable).
    pub(super) orders_failed: AtomicU64,
    pub(super) carts_abandoned: AtomicU64,
    pub(super) stock_changes: AtomicU64,
    pub(super) web2_down: AtomicBool,
    pub(super) erp_throttled: AtomicBool,
}

/// The traffic generator: goods receipts, checkouts through the hub (concurrent, both stores),
/// abandoned carts, an outage of web2 and a 429 burst at the ERP.
pub(super) async fn drive(
    sys: Arc<Systems>,
    t: Arc<Traffic>,
    stop: Arc<AtomicBool>,
    skus: Vec<String>,
    args: DemoArgs,
    total: Option<Duration>,
    hub: String,
) {
    let started = Instant::now();
    // Outage of web2 from 30 % to 55 % of the run; 429s from the ERP from 60 % to 75 %.
    let span = total.unwrap_or(Duration::from_secs(40));
    let (down_at, up_at) = (span.mul_f64(0.30), span.mul_f64(0.55));
    let (throttle_at, unthrottle_at) = (span.mul_f64(0.60), span.mul_f64(0.75));
    let tick = Duration::from_millis(50);
    let orders_per_tick = args.orders_per_sec * tick.as_secs_f64();
    let stock_per_tick = args.stock_changes_per_sec * tick.as_secs_f64();
    let (mut order_acc, mut stock_acc) = (0.0, 0.0);
    let mut held_sent = false;
    let hot = HOT_SKUS.min(skus.len());
    let customers: Vec<String> = (1..=25)
        .map(|i| format!("buyer{i:02}@example.com"))
        .collect();
    let http = reqwest::Client::new();
    let mut checkouts = tokio::task::JoinSet::new();
    let mut cart = 0u64;
    while !stop.load(Ordering::Acquire) {
        let el = started.elapsed();
        let cycle = Duration::from_nanos((el.as_nanos() % span.as_nanos().max(1)) as u64);
        let want_down = cycle >= down_at && cycle < up_at;
        if want_down != t.web2_down.load(Ordering::Relaxed)
            && sys.shops[1].1.set_down(want_down).await.is_ok()
        {
            t.web2_down.store(want_down, Ordering::Relaxed);
        }
        let want_throttle = cycle >= throttle_at && cycle < unthrottle_at;
        if want_throttle != t.erp_throttled.load(Ordering::Relaxed) {
            sys.erp.set_faults(if want_throttle {
                Faults {
                    rate_limit_every: 4,
                    rate_limit_retry_after_secs: 0.5,
                    ..Faults::default()
                }
            } else {
                Faults::default()
            });
            t.erp_throttled.store(want_throttle, Ordering::Relaxed);
        }
        stock_acc += stock_per_tick;
        while stock_acc >= 1.0 {
            stock_acc -= 1.0;
            // Goods receipts only (shrinkage would make the ERP itself short, which is not what
            // `oversold` measures); the hot SKUs get one in ten.
            let sku = if fastrand::u8(..10) == 0 || hot == skus.len() {
                &skus[fastrand::usize(..skus.len())]
            } else {
                &skus[fastrand::usize(hot..skus.len())]
            };
            let loc = LOCATIONS[fastrand::usize(..LOCATIONS.len())];
            if sys.erp.adjust_stock(sku, loc, fastrand::i64(1..=6)).is_ok() {
                t.stock_changes.fetch_add(1, Ordering::Relaxed);
            }
        }
        order_acc += orders_per_tick;
        while order_acc >= 1.0 {
            order_acc -= 1.0;
            let shop_idx = if t.web2_down.load(Ordering::Relaxed) {
                0
            } else {
                fastrand::usize(..2)
            };
            let (channel, shop) = &sys.shops[shop_idx];
            let email = if !held_sent && el >= span.mul_f64(0.2) {
                held_sent = true;
                HELD_CUSTOMER.to_string()
            } else {
                customers[fastrand::usize(..customers.len())].clone()
            };
            let n_lines = fastrand::usize(1..=3);
            let mut lines: Vec<(String, i64)> = Vec::new();
            // A hot SKU in one checkout in four (never in the credit-hold customer's, whose
            // order must reach the ERP to be refused there).
            if hot > 0 && email != HELD_CUSTOMER && fastrand::u8(..4) == 0 {
                lines.push((skus[fastrand::usize(..hot)].clone(), fastrand::i64(1..=3)));
            }
            while lines.len() < n_lines {
                let sku = if email == HELD_CUSTOMER && hot < skus.len() {
                    skus[fastrand::usize(hot..skus.len())].clone()
                } else {
                    skus[fastrand::usize(..skus.len())].clone()
                };
                if !lines.iter().any(|(s, _)| *s == sku) {
                    lines.push((sku, fastrand::i64(1..=3)));
                } else if lines.len() >= skus.len() {
                    break;
                }
            }
            // One cart in eight is abandoned: reserved at the hub, then cancelled or left to
            // expire (the stock comes back either way).
            if fastrand::u8(..8) == 0 && email != HELD_CUSTOMER {
                cart += 1;
                let (http, hub, t) = (http.clone(), hub.clone(), t.clone());
                let key = demo_key(channel);
                let body = serde_json::json!({
                    "channel": channel, "key": format!("demo-abandoned-{cart}"),
                    "lines": lines.iter().map(|(s, q)| serde_json::json!({"sku": s, "quantity": q})).collect::<Vec<_>>(),
                });
                checkouts.spawn(async move {
                    let r = http
                        .post(format!("{hub}/v1/reservations"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await;
                    let Ok(r) = r else { return };
                    if r.status().as_u16() != 201 {
                        return;
                    }
                    t.carts_abandoned.fetch_add(1, Ordering::Relaxed);
                    let id = r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string));
                    if let Some(id) = id.filter(|_| fastrand::bool()) {
                        tokio::time::sleep(Duration::from_millis(fastrand::u64(200..2_000))).await;
                        let _ = http
                            .delete(format!("{hub}/v1/reservations/{id}"))
                            .bearer_auth(&key)
                            .send()
                            .await;
                    }
                });
                continue;
            }
            let (shop, t) = (shop.clone(), t.clone());
            let name = email.split('@').next().unwrap_or("buyer").to_string();
            checkouts.spawn(async move {
                let line_refs: Vec<(&str, i64)> =
                    lines.iter().map(|(s, q)| (s.as_str(), *q)).collect();
                match shop.checkout(&email, &name, &line_refs).await {
                    Ok(_) => t.orders_placed.fetch_add(1, Ordering::Relaxed),
                    Err(ShopError::OutOfStock { .. }) => {
                        t.orders_refused.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => t.orders_failed.fetch_add(1, Ordering::Relaxed),
                };
            });
        }
        while checkouts.try_join_next().is_some() {}
        tokio::time::sleep(tick).await;
    }
    while checkouts.join_next().await.is_some() {}
}

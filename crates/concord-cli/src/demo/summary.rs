//! What the demo prints: one line per second while the traffic runs (`print_line`) and the final
//! summary (`print_final`: the engine's counters, the traffic, the check's `Report`, a contract
//! price from the price index, the lifecycle showcase's steps, and the verdict).
//!
//! Must never decide the outcome: the verdict printed here is `Report::ok` and the showcase's
//! own result, the same ones `run` turns into the exit code.

use super::checks::Report;
use super::topology::{Systems, CONTRACT_CUSTOMER, CONTRACT_SKU};
use super::traffic::Traffic;
use concord_engine::runtime::pricing::PriceRequest;
use concord_engine::Engine;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub(super) async fn print_line(engine: &Engine, sys: &Systems, t: &Traffic, elapsed: Duration) {
    let s = engine.stats(Some(engine.now() - 5_000));
    let (mut queue, mut parked) = (0, 0);
    if let Ok(st) = engine.store().stats().await {
        for q in &st.queues {
            queue += q.pending + q.inflight;
            parked += q.parked;
        }
    }
    let mut notes = Vec::new();
    if t.web2_down.load(Ordering::Relaxed) {
        notes.push("web2 DOWN".to_string());
    }
    if t.erp_throttled.load(Ordering::Relaxed) {
        notes.push("erp answering 429s".to_string());
    }
    for h in engine.endpoint_health() {
        if h.breaker != "closed" {
            notes.push(format!("{} breaker {}", h.endpoint, h.breaker));
        }
    }
    println!(
        "[{:>3}s] captured {:>6}  delivered {:>6}  retried {:>4}  dead {:>2}  queue {:>4}  parked {:>2}  p99 lag {:>5} ms  orders {:>4}  ats-refused {:>3}{}",
        elapsed.as_secs(),
        s.captured,
        s.delivered,
        s.retried,
        s.dead_lettered,
        queue,
        parked,
        s.lag_p99_ms,
        t.orders_placed.load(Ordering::Relaxed),
        hub_refused(sys),
        if notes.is_empty() { String::new() } else { format!("  | {}", notes.join(", ")) }
    );
}

/// Checkouts the hub refused, over both stores.
fn hub_refused(sys: &Systems) -> u64 {
    sys.shops
        .iter()
        .map(|(_, s)| s.counters().hub_refused)
        .sum()
}

pub(super) async fn print_final(
    engine: &Engine,
    sys: &Systems,
    t: &Traffic,
    r: &Report,
    showcase: Option<&crate::showcase::Showcase>,
    elapsed: Duration,
) -> anyhow::Result<()> {
    let s = engine.stats(None);
    println!(
        "\n== concord demo: final summary after {:.1} s ==",
        elapsed.as_secs_f64()
    );
    println!(
        "captured       {:>7}  (changes journaled; {} duplicates dropped)",
        s.captured, s.duplicates
    );
    println!("delivered      {:>7}", s.delivered);
    println!(
        "retried        {:>7}  (web2 outage, ERP 429s; {} rate-limited)",
        s.retried, s.rate_limited
    );
    println!("dead-lettered  {:>7}", s.dead_lettered);
    println!(
        "lag p50/p99    {:>4} / {} ms (capture → delivery)",
        s.lag_p50_ms, s.lag_p99_ms
    );
    println!("traffic        {} checkouts ({} refused by the hub, {} failed), {} carts abandoned, {} ERP goods receipts",
        t.orders_placed.load(Ordering::Relaxed), t.orders_refused.load(Ordering::Relaxed),
        t.orders_failed.load(Ordering::Relaxed), t.carts_abandoned.load(Ordering::Relaxed),
        t.stock_changes.load(Ordering::Relaxed));
    println!("orders         {} placed: {} in the ERP exactly once, {} dead-lettered with a reason, {} missing, {} duplicated",
        r.orders_total, r.orders_in_erp_once, r.orders_dead_lettered.len(), r.orders_missing.len(), r.orders_duplicated.len());
    for (reference, reason) in &r.orders_dead_lettered {
        println!("               dead letter: order {reference}: {reason}");
    }
    println!(
        "stock          {} ERP positions in the hub's ledger, {} disagree; {} store figures = the hub's ats, {} disagree",
        r.ledger_positions,
        r.ledger_mismatches.len(),
        r.stock_positions,
        r.stock_mismatches.len(),
    );
    let [held, committed, released, expired, cancelled] = r.reservations;
    println!(
        "reservations   {held} held / {committed} committed / {released} released / {expired} expired / {cancelled} cancelled; {} stuck{}",
        r.reservations_stuck.len(),
        if r.reservations_excused.is_empty() {
            String::new()
        } else {
            format!(
                " ({} committed for dead-lettered orders, awaiting an operator)",
                r.reservations_excused.len()
            )
        }
    );
    println!(
        "hub refused    {:>7}  (insufficient stock)",
        hub_refused(sys)
    );
    println!(
        "oversold       {:>7}  (units the ERP accepted beyond its own on-hand − committed)",
        r.oversold_units
    );
    println!(
        "shipments      {} shipped by the ERP, {} missing at their store",
        r.shipments_total,
        r.shipments_missing.len()
    );
    for line in r
        .orders_missing
        .iter()
        .chain(&r.orders_duplicated)
        .chain(&r.stock_mismatches)
        .chain(&r.ledger_mismatches)
        .chain(&r.shipments_missing)
        .chain(&r.reservations_stuck)
        .take(10)
    {
        println!("  ! {line}");
    }
    for line in &r.other_dead_letters {
        println!("  ! unexpected dead letter {line}");
    }
    if r.parked > 0 {
        println!("  ! {} deliveries still parked", r.parked);
    }
    if !r.drained {
        println!("  ! the queues did not drain in time");
    }
    let lookup = |customer: Option<&str>| {
        engine.price(&PriceRequest {
            channel: "web1".into(),
            customer: customer.map(str::to_string),
            sku: CONTRACT_SKU.into(),
            quantity: 48,
            currency: None,
        })
    };
    match (lookup(Some(CONTRACT_CUSTOMER)), lookup(None)) {
        (Ok(c), Ok(l)) => println!(
            "prices         GET /v1/prices?channel=web1&customer={CONTRACT_CUSTOMER}&sku={CONTRACT_SKU}&qty=48 → {} {}/unit, {} total ({}); list price {}/unit",
            c.quote.currency, c.quote.unit_minor, c.quote.extended_minor, c.quote.rule, l.quote.unit_minor
        ),
        (c, l) => println!("  ! price lookup failed: {:?} / {:?}", c.err(), l.err()),
    }
    if let Some(sc) = showcase {
        println!(
            "lifecycle      one order driven end to end at web1 ({}):",
            sc.key
        );
        for line in &sc.lines {
            println!("               {line}");
        }
        if let Some(e) = &sc.failed {
            println!("  ! the lifecycle showcase stopped: {e}");
        }
    }
    println!("lost: {}", r.lost());
    let showcase_ok = showcase.is_none_or(|s| s.failed.is_none());
    println!(
        "{}",
        if r.ok() && showcase_ok {
            "result: OK — every change delivered or dead-lettered with a reason, nothing oversold"
        } else {
            "result: FAILED"
        }
    );
    Ok(())
}

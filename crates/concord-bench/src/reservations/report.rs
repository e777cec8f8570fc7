//! What the `reservations` case prints: a table of every run and one JSON line per run, with
//! the goal beside the figures.
//!
//! Must never assert the goal (design section 8): a run below it is printed as such.

use super::GOAL_OPS_PER_S;
use crate::harness::{round1, round3};
use serde_json::{json, Value};

/// The figures of one run.
pub(super) struct Outcome {
    /// `sqlite` or `postgres`.
    pub(super) store: &'static str,
    pub(super) requests: u64,
    pub(super) seconds: f64,
    pub(super) ops_per_s: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) max_ms: f64,
    pub(super) reserved: u64,
    pub(super) refused: u64,
    pub(super) errors: u64,
    pub(super) units_reserved: i64,
    pub(super) supply: i64,
    pub(super) oversold: i64,
    pub(super) held_mismatch: usize,
    pub(super) unsold: i64,
    pub(super) inexact: usize,
    pub(super) bad_refusals: u64,
    pub(super) ats_mismatch: usize,
    pub(super) shop_stale: usize,
    pub(super) write_groups: u64,
    /// Process CPU (all threads, load generator included) per answered request, µs.
    pub(super) cpu_us_per_op: f64,
    /// The store writer thread's CPU per answered request, µs.
    pub(super) writer_us_per_op: f64,
    pub(super) load_start: f64,
    pub(super) load_end: f64,
}

pub(super) fn print_table(outcomes: &[Outcome]) {
    if let Some(o) = outcomes.first() {
        println!("store: {}", o.store);
    }
    println!(
        "{:<13} {:>8} {:>7} {:>8} {:>7} {:>7} {:>7} {:>8} {:>8} {:>6} {:>8} {:>5} {:>7} {:>7} {:>9} {:>12}",
        "case",
        "requests",
        "seconds",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "reserved",
        "refused",
        "errors",
        "oversold",
        "held≠",
        "inexact",
        "groups",
        "cpu µs/op",
        "writer µs/op"
    );
    for o in outcomes {
        println!(
            "{:<13} {:>8} {:>7.3} {:>8.0} {:>7.2} {:>7.2} {:>7.2} {:>8} {:>8} {:>6} {:>8} {:>5} {:>7} {:>7} {:>9.1} {:>12.1}",
            "reservations",
            o.requests,
            o.seconds,
            o.ops_per_s,
            o.p50_ms,
            o.p99_ms,
            o.max_ms,
            o.reserved,
            o.refused,
            o.errors,
            o.oversold,
            o.held_mismatch,
            o.inexact,
            o.write_groups,
            o.cpu_us_per_op,
            o.writer_us_per_op
        );
    }
    println!(
        "goal (not asserted): reservations >= {GOAL_OPS_PER_S:.0} requests/s with oversold = 0"
    );
    for o in outcomes {
        println!(
            "  reservations  {:.0} requests/s {} {GOAL_OPS_PER_S:.0}; oversold {}; held mismatches {}; \
             unsold after the load {} of {} units; inexact {}; bad refusals {}; ats mismatches {}; storefront stale {}; load average {:.2} -> {:.2}",
            o.ops_per_s,
            if o.ops_per_s >= GOAL_OPS_PER_S { ">=" } else { "<" },
            o.oversold,
            o.held_mismatch,
            o.unsold,
            o.supply,
            o.inexact,
            o.bad_refusals,
            o.ats_mismatch,
            o.shop_stale,
            o.load_start,
            o.load_end,
        );
    }
}

pub(super) fn json_line(o: &Outcome) -> Value {
    let mut v = json!({
        "bench": "reservations",
        "store": o.store,
        "ops_per_s": round1(o.ops_per_s),
        "p99_ms": round3(o.p99_ms),
        "oversold": o.oversold,
    });
    if let Some(m) = v.as_object_mut() {
        m.insert("requests".into(), json!(o.requests));
        m.insert("seconds".into(), json!(round3(o.seconds)));
        m.insert("p50_ms".into(), json!(round3(o.p50_ms)));
        m.insert("max_ms".into(), json!(round3(o.max_ms)));
        m.insert("reserved".into(), json!(o.reserved));
        m.insert("refused".into(), json!(o.refused));
        m.insert("errors".into(), json!(o.errors));
        m.insert("units_reserved".into(), json!(o.units_reserved));
        m.insert("supply".into(), json!(o.supply));
        m.insert("held_mismatch".into(), json!(o.held_mismatch));
        m.insert("unsold".into(), json!(o.unsold));
        m.insert("inexact".into(), json!(o.inexact));
        m.insert("bad_refusals".into(), json!(o.bad_refusals));
        m.insert("ats_mismatch".into(), json!(o.ats_mismatch));
        m.insert("shop_stale".into(), json!(o.shop_stale));
        m.insert("write_groups".into(), json!(o.write_groups));
        m.insert("cpu_us_per_op".into(), json!(round1(o.cpu_us_per_op)));
        m.insert("writer_us_per_op".into(), json!(round1(o.writer_us_per_op)));
        m.insert(
            "loadavg".into(),
            json!(round1(o.load_start.max(o.load_end))),
        );
    }
    v
}

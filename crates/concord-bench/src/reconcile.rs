//! Case `reconcile` (issue 16): drift on a large catalogue. A sandbox ERP with `--skus` SKUs
//! (50,000 by default) at one location feeds a sandbox storefront through the stock pool; once
//! every figure is there, `--drift-pct` of the SKUs (1 %) are changed in the store behind the
//! hub's back. The case then times `Engine::reconcile` of the stock flow (the storefront's
//! listing against each SKU's available-to-sell, and the ERP's listing against the ledger) to
//! a full report, counts the listing calls it made, checks that it found exactly the drifted
//! SKUs, and times a heal (`heal = true`) until the storefront holds the hub's figures again.
//! Goal (printed, never asserted): the report within 60 s.

use crate::harness::{round3, Rig};
use anyhow::Context;
use serde_json::json;
use std::time::{Duration, Instant};

const GOAL_REPORT_S: f64 = 60.0;

#[derive(clap::Args, Clone)]
pub struct ReconcileArgs {
    /// SKUs in the catalogue.
    #[arg(long, default_value_t = 50_000)]
    pub skus: usize,
    /// Percentage of the SKUs drifted at the storefront.
    #[arg(long, default_value_t = 1.0)]
    pub drift_pct: f64,
    /// Records per listing page.
    #[arg(long, default_value_t = 1000)]
    pub page_size: usize,
}

impl Default for ReconcileArgs {
    fn default() -> Self {
        ReconcileArgs {
            skus: 50_000,
            drift_pct: 1.0,
            page_size: 1000,
        }
    }
}

fn sku(i: usize) -> String {
    format!("SKU-{i:04}")
}

/// Poll `cond` every 200 ms until it holds or `deadline` passes.
async fn wait(
    what: &str,
    deadline: Duration,
    mut cond: impl AsyncFnMut() -> bool,
) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    while !cond().await {
        if Instant::now() >= until {
            anyhow::bail!("timed out after {deadline:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

pub async fn run(a: &ReconcileArgs) -> anyhow::Result<()> {
    let rest = format!(
        r#"
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["shop"]
page_size = {page}

[inventory]
source = "erp"

[inventory.channels.shop]
locations = ["WH1"]
stock_location = "WH1"
"#,
        page = a.page_size
    );
    let rig = Rig::start(None, &rest, None).await?;
    let skus = a.skus.max(1);
    let loaded = Instant::now();
    rig.erp
        .seed(skus, &["WH1"], 10)
        .context("seeding the ERP")?;
    wait(
        "the storefront holds every figure",
        Duration::from_secs(3600),
        async || {
            (1..=skus)
                .step_by((skus / 50).max(1))
                .chain([skus])
                .all(|i| rig.shop.inventory(&sku(i)).get("WH1") == Some(&10))
                && {
                    rig.store.stats().await.is_ok_and(|s| {
                        s.journal_pending == 0
                            && s.queues
                                .iter()
                                .all(|q| q.pending + q.inflight + q.parked == 0)
                    })
                }
        },
    )
    .await?;
    let load_s = loaded.elapsed().as_secs_f64();

    let every = ((100.0 / a.drift_pct.max(0.001)).round() as usize).max(1);
    let drifted: Vec<usize> = (1..=skus).step_by(every).collect();
    for &i in &drifted {
        rig.shop
            .set_inventory(&sku(i), "WH1", 3)
            .context("drifting the storefront")?;
    }

    let calls_before = rig.engine.stats(None).api_calls;
    let t = Instant::now();
    let run = rig
        .engine
        .reconcile(&["stock".to_string()], false, "bench")
        .await?;
    let report_s = t.elapsed().as_secs_f64();
    let read_calls = rig.engine.stats(None).api_calls - calls_before;
    let found = run.drifted();

    let t = Instant::now();
    let healed = rig
        .engine
        .reconcile(&["stock".to_string()], true, "bench")
        .await?;
    let healed_keys: usize = healed.results.iter().map(|r| r.healed.len()).sum();
    wait(
        "the storefront is put right",
        Duration::from_secs(600),
        async || {
            drifted
                .iter()
                .all(|&i| rig.shop.inventory(&sku(i)).get("WH1") == Some(&10))
        },
    )
    .await?;
    let heal_s = t.elapsed().as_secs_f64();
    let after = rig
        .engine
        .reconcile(&["stock".to_string()], false, "bench")
        .await?;

    println!(
        "reconcile: {skus} SKUs, {} drifted at the storefront",
        drifted.len()
    );
    println!("  loading the catalogue through the hub: {load_s:.1} s");
    println!(
        "  report: {report_s:.2} s (goal ≤ {GOAL_REPORT_S} s), {read_calls} listing calls, {found} drifted keys found"
    );
    println!("  heal: {healed_keys} corrective writes, storefront right again after {heal_s:.2} s; next run: {} drifted", after.drifted());
    println!(
        "{}",
        json!({
            "case": "reconcile",
            "skus": skus,
            "drifted": drifted.len(),
            "found": found,
            "report_s": round3(report_s),
            "goal_report_s": GOAL_REPORT_S,
            "read_calls": read_calls,
            "healed": healed_keys,
            "heal_s": round3(heal_s),
            "after_heal_drifted": after.drifted(),
            "load_s": round3(load_s),
        })
    );
    rig.stop().await;
    Ok(())
}

//! The `reservations` case's rig: the hub's flows and pool for one channel fed by two
//! locations (a units buffer on `WH2`), and the seeding through the real path — the sandbox
//! ERP's figures and a sales rep's phone order reach the ledger by signed webhooks, and the run
//! waits until the ledger holds exactly the ERP's figures and the engine is idle.
//!
//! Must never write the ledger directly: the figures arrive the way production's do.

use super::{LOCATIONS, WH2_BUFFER};
use crate::harness::Rig;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The case's flows and pool, after the endpoints.
pub(super) fn config_rest() -> String {
    format!(
        r#"
# Feeds the ledger from the ERP; the pool turns it into the channel's available-to-sell.
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["shop"]
[flows.map_out]
"*" = '{{sku, location, available: ([.on_hand - .committed, 0] | max)}}'

[inventory]
source = "erp"
reservation_ttl = "1h"

[inventory.channels.shop]
locations = ["WH1", "WH2"]
stock_location = "default"

[[inventory.buffers]]
location = "WH2"
channel = "shop"
units = {buffer}
"#,
        buffer = WH2_BUFFER,
    )
}

impl Rig {
    /// Wait until the engine has nothing pending or in flight and no SKU awaits recomputation.
    pub(super) async fn idle(&self, deadline: Instant) -> anyhow::Result<bool> {
        loop {
            if self.engine.is_drained().await? && self.store.dirty_skus(1).await?.is_empty() {
                // Settle: the broadcaster may be between reading the marks and planning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if self.engine.is_drained().await? && self.store.dirty_skus(1).await?.is_empty() {
                    return Ok(true);
                }
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub(super) fn sku_name(i: usize) -> String {
    format!("HOT-{:04}", i + 1)
}

/// The ERP's figures of one hot SKU: (WH1 on-hand, WH1 committed by the rep's order, WH2
/// on-hand), so that the channel can sell exactly `supply` units.
fn seed_figures(i: usize, supply: i64) -> (i64, i64, i64) {
    let committed = 1 + (i as i64 % 5);
    let wh1_free = supply * 3 / 5;
    let wh2_free = supply - wh1_free;
    (wh1_free + committed, committed, wh2_free + WH2_BUFFER)
}

/// Seed the ERP and wait until the ledger holds its figures and the engine is idle.
pub(super) async fn seed(
    rig: &Rig,
    skus: &[String],
    supply: i64,
    deadline: Instant,
) -> anyhow::Result<BTreeMap<(String, String), (i64, i64)>> {
    let http = reqwest::Client::new();
    let mut expect = BTreeMap::new();
    let mut order_lines = Vec::new();
    for (i, s) in skus.iter().enumerate() {
        let (wh1, committed, wh2) = seed_figures(i, supply);
        rig.erp
            .upsert_product(json!({"sku": s, "name": format!("Hot product {}", i + 1)}))
            .map_err(|e| anyhow::anyhow!("ERP product {s}: {e}"))?;
        rig.erp
            .set_stock(s, LOCATIONS[0], wh1)
            .map_err(|e| anyhow::anyhow!("ERP stock {s}: {e}"))?;
        rig.erp
            .set_stock(s, LOCATIONS[1], wh2)
            .map_err(|e| anyhow::anyhow!("ERP stock {s}: {e}"))?;
        order_lines.push(json!({"sku": s, "quantity": committed}));
        expect.insert((s.clone(), LOCATIONS[0].to_string()), (wh1, committed));
        expect.insert((s.clone(), LOCATIONS[1].to_string()), (wh2, 0));
    }
    // A phone order keyed in by a sales rep commits part of WH1 (the ERP's default location).
    let erp = rig.erp.base_url();
    let customer: Value = http
        .post(format!("{erp}/api/customers"))
        .json(&json!({"email": "rep@bench.example", "name": "Bench rep"}))
        .send()
        .await?
        .error_for_status()
        .context("creating the ERP customer")?
        .json()
        .await?;
    let customer_id = customer["id"]
        .as_str()
        .context("the ERP's customer has no id")?;
    http.post(format!("{erp}/api/sales-orders"))
        .json(&json!({
            "channel": "phone", "number": "1", "customer_id": customer_id,
            "customer": {"email": "rep@bench.example"}, "currency": "USD",
            "lines": order_lines,
        }))
        .send()
        .await?
        .error_for_status()
        .context("creating the ERP's phone order")?;

    loop {
        let levels = rig.store.levels(skus).await?;
        let seen = levels
            .iter()
            .filter(|l| {
                expect.get(&(l.sku.clone(), l.location.clone())) == Some(&(l.on_hand, l.committed))
            })
            .count();
        if seen == expect.len() && rig.idle(Instant::now() + Duration::from_secs(5)).await? {
            return Ok(expect);
        }
        if Instant::now() > deadline {
            bail!(
                "seeding: the ledger holds {seen} of {} ERP figures after the timeout",
                expect.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

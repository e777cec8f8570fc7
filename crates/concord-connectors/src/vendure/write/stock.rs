//! Stock: per SKU and stock location, `stockOnHand = available + stockAllocated`, batched into
//! one `updateProductVariants` call, read back and rewritten when an allocation moved.
//!
//! A read-modify-write, **verified**: Vendure's saleable figure is `stockOnHand −
//! stockAllocated − outOfStockThreshold`, and `stockAllocated` holds the units of
//! placed-but-unfulfilled orders (allocated at `PaymentAuthorized`/`PaymentSettled`, released at
//! fulfillment, when `stockOnHand` drops by the same amount). Concord's figure for the channel
//! (`available`: the ERP's `on_hand − committed`, or the pool's ats) already counts those
//! orders, so the connector reads the level's `stockAllocated` and writes `stockOnHand =
//! available + stockAllocated`: what Vendure then offers is exactly Concord's figure. Vendure's
//! `updateProductVariants(stockLevels)` takes an absolute `stockOnHand` and has no
//! compare-and-set (no version or expected-value argument, and `adjustProductVariantStock`-style
//! deltas would be wrong after a missed write), so the read and the write are not atomic: an
//! order allocated (or fulfilled) between them would leave figures that do not add up — and,
//! as the hub's figure did not change, nothing would write them again. So every write is read
//! back: a level whose `stockOnHand − stockAllocated` is not the figure written (the allocation
//! moved underneath) is written again from the fresh allocation, up to [`STOCK_REWRITES`] times;
//! one that still moves is a transient failure, retried later by the engine (never `Done`). A
//! fulfillment between the write and the read-back lowers both figures and is no mismatch. The
//! engine keeps one write in flight per key, so two Concord writes of one SKU and location never
//! interleave, and a stale figure never overwrites a newer one.
//!
//! Must never answer `Done` for a figure it did not see in Vendure, nor write a figure below
//! what Vendure has already allocated.

use super::{done, permanent, str_at};
use crate::vendure::VendureConnector;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// How many times a stock write is written again when the read-back shows an allocation moved
/// underneath it, before it gives up with a transient error (the engine retries later).
const STOCK_REWRITES: usize = 3;

/// `(stockOnHand, stockAllocated)` of a variant's level at stock location `loc`.
fn level(variant: &Value, loc: &str) -> Option<(i64, i64)> {
    let l = variant
        .get("stockLevels")
        .and_then(Value::as_array)?
        .iter()
        .find(|l| l.get("stockLocationId").and_then(Value::as_str) == Some(loc))?;
    Some((
        l.get("stockOnHand").and_then(Value::as_i64)?,
        l.get("stockAllocated").and_then(Value::as_i64).unwrap_or(0),
    ))
}

impl VendureConnector {
    pub(super) async fn write_stock(&self, ops: &[WriteOp]) -> Vec<WriteOutcome> {
        let mut out: Vec<Option<WriteOutcome>> = vec![None; ops.len()];
        // (op index, sku, stock location id, available)
        let mut items: Vec<(usize, String, String, i64)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if !matches!(
                op.op.as_str(),
                "create" | "upsert" | "update" | "update_only"
            ) {
                out[i] = Some(WriteOutcome::Failed(permanent(format!(
                    "the vendure connector cannot `{}` a stock record",
                    op.op
                ))));
                continue;
            }
            let p = &op.payload;
            let Some(sku) = str_at(p, "/sku") else {
                out[i] = Some(WriteOutcome::Failed(permanent(
                    "payload field `sku` is required",
                )));
                continue;
            };
            let num = |f: &str| p.get(f).and_then(Value::as_i64);
            let available = match num("available") {
                Some(a) => a,
                None => match num("on_hand") {
                    Some(h) => h - num("committed").unwrap_or(0),
                    None => {
                        out[i] = Some(WriteOutcome::Failed(permanent(
                            "payload field `available` (or `on_hand`) is required",
                        )));
                        continue;
                    }
                },
            }
            .max(0);
            let location = str_at(p, "/location").unwrap_or("default");
            match self.stock_location(location).await {
                Ok(id) => items.push((i, sku.to_string(), id, available)),
                Err(e) => out[i] = Some(WriteOutcome::Failed(e)),
            }
        }
        let skus: Vec<&str> = items.iter().map(|x| x.1.as_str()).collect();
        let mut variants = match self.variants(&skus).await {
            Ok(v) => v,
            Err(e) => {
                for x in &items {
                    out[x.0] = Some(WriteOutcome::Failed(e.clone()));
                }
                BTreeMap::new()
            }
        };
        // (op index, variant id, stock location id, available) of every figure to write.
        let mut pending: Vec<(usize, String, String, i64)> = Vec::new();
        for (i, sku, loc, available) in &items {
            if out[*i].is_some() {
                continue;
            }
            let Some(v) = variants.get(sku) else {
                out[*i] = Some(if ops[*i].op == "update_only" {
                    WriteOutcome::NoMatch
                } else {
                    WriteOutcome::Failed(permanent(format!(
                        "no variant with SKU `{sku}` in Vendure"
                    )))
                });
                continue;
            };
            let Some(id) = v.get("id").and_then(Value::as_str) else {
                out[*i] = Some(WriteOutcome::Failed(permanent("variant without id")));
                continue;
            };
            pending.push((*i, id.to_string(), loc.clone(), *available));
        }
        // Write, read back, and rewrite what an allocation moved underneath (module doc).
        let sku_of = |i: usize| {
            str_at(&ops[i].payload, "/sku")
                .unwrap_or_default()
                .to_string()
        };
        let mut moved: Vec<String> = Vec::new();
        for round in 0..=STOCK_REWRITES {
            if pending.is_empty() {
                break;
            }
            let by_id: BTreeMap<&str, &Value> = variants
                .values()
                .filter_map(|v| Some((v.get("id")?.as_str()?, v)))
                .collect();
            // One input per variant with all its levels of this batch (the last figure of a
            // key wins; the engine sends one per key anyway).
            let mut inputs: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
            for (_, id, loc, available) in &pending {
                let allocated = by_id
                    .get(id.as_str())
                    .and_then(|v| level(v, loc))
                    .map_or(0, |l| l.1.max(0));
                inputs
                    .entry(id.clone())
                    .or_default()
                    .insert(loc.clone(), available.saturating_add(allocated));
            }
            if let Some(hook) = self.stock_hook() {
                hook().await;
            }
            let input: Vec<Value> = inputs
                .iter()
                .map(|(id, levels)| {
                    json!({"id": id, "stockLevels": levels.iter()
                        .map(|(l, q)| json!({"stockLocationId": l, "stockOnHand": q}))
                        .collect::<Vec<_>>()})
                })
                .collect();
            let written = self
                .gql
                .query(
                    "mutation($i:[UpdateProductVariantInput!]!){ updateProductVariants(input:$i){ id } }",
                    json!({"i": input}),
                )
                .await;
            if let Err(e) = written {
                for (i, ..) in pending.drain(..) {
                    out[i] = Some(WriteOutcome::Failed(e.clone()));
                }
                break;
            }
            let skus: Vec<String> = pending.iter().map(|p| sku_of(p.0)).collect();
            let refs: Vec<&str> = skus.iter().map(String::as_str).collect();
            variants = match self.variants(&refs).await {
                Ok(v) => v,
                Err(e) => {
                    // Written, but not verified: the engine retries the write, which is
                    // idempotent (it recomputes from the allocation it reads then).
                    for (i, ..) in pending.drain(..) {
                        out[i] = Some(WriteOutcome::Failed(e.clone()));
                    }
                    break;
                }
            };
            let by_id: BTreeMap<&str, &Value> = variants
                .values()
                .filter_map(|v| Some((v.get("id")?.as_str()?, v)))
                .collect();
            moved.clear();
            pending.retain(|(i, id, loc, available)| {
                let now = by_id.get(id.as_str()).and_then(|v| level(v, loc));
                match now {
                    Some((on_hand, allocated)) if on_hand - allocated == *available => {
                        out[*i] = Some(done(format!(
                            "{}@{}",
                            sku_of(*i),
                            str_at(&ops[*i].payload, "/location").unwrap_or("default")
                        )));
                        false
                    }
                    other => {
                        let (h, a) = other.unwrap_or((0, 0));
                        moved.push(format!(
                            "{} at stock location {loc}: on hand {h} − allocated {a} ≠ {available}",
                            sku_of(*i)
                        ));
                        true
                    }
                }
            });
            if !pending.is_empty() && round < STOCK_REWRITES {
                tracing::debug!(endpoint = %self.endpoint, moved = ?moved,
                    "Vendure's allocations moved during a stock write; writing again");
            }
        }
        for (i, ..) in pending {
            out[i] = Some(WriteOutcome::Failed(DeliveryError::Transient {
                reason: format!(
                    "Vendure's allocations kept changing while the figure was written ({} \
                     times; {}): retrying later",
                    STOCK_REWRITES + 1,
                    moved.join("; ")
                ),
                retry_after: None,
            }));
        }
        out.into_iter()
            .map(|o| {
                o.unwrap_or(WriteOutcome::Failed(DeliveryError::Transient {
                    reason: "no outcome".into(),
                    retry_after: None,
                }))
            })
            .collect()
    }
}

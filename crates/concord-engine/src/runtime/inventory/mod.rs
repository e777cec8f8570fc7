//! The stock pool at run time (design §5): keeps each channel's available-to-sell in step with
//! the ledger, expires reservations, raises oversold-risk alerts, and serves the commerce API's
//! reads and reservations.
//!
//! - The processor feeds the ledger: every `stock` record from the inventory source becomes a
//!   `LevelUpdate` in the same transaction as its journal entry (see `process/merge.rs`), and pool
//!   channels get no per-location copies of it.
//! - Every ledger change (ERP figure, reservation, expiry, cancellation, release) marks its SKU
//!   dirty in the store. The broadcaster recomputes `ats(s, c)` for dirty SKUs and plans one
//!   `stock` item per (channel, SKU) through the channel's stock flow — coalesced and
//!   hash-skipped like any state kind — and clears the marks in the same transaction, so a crash
//!   never loses a recomputation. While changes keep coming, passes start at most once per
//!   `broadcast_interval`, so a hot SKU is recomputed once per interval rather than once per
//!   reservation; a change after a quiet spell is handled at once.
//! - Reservations are decided inside the store's single writer (all lines or nothing, atomic
//!   with every other reservation and ledger update); this module only resolves the channel's
//!   policy (feeding locations in priority order, buffers, backorder limit) into the request.
//!
//! This module keeps the channels in step (the pool's figures, the broadcaster, expiry and
//! oversold-risk alerts); `commerce.rs` serves the commerce API's operations.
//!
//! Must never call a connector: storefront reads and reservations are served from the ledger.

mod commerce;

use super::Inner;
use crate::config::{ChannelPolicy, FlowConfig, InventoryConfig};
use crate::mapping::{filter_then_map, Filtered, MapVars, Stage};
use concord_core::inventory::{
    backorder_allowance, buffer, buffer_needs_on_hand, sellable, sum_non_negative, Position,
};
use concord_core::limits::LimitError;
use concord_core::{content_hash, Kind, Millis};
use concord_store::{
    AuditEvent, DirtySku, Feed, NewItem, ProcessBatch, ReservationState, StockLevel, StoreError,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Errors of the commerce API, each mapped to an HTTP status by the server.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// No `[inventory]` section in the config: 404.
    #[error("the stock pool is not configured (no [inventory] section)")]
    NotConfigured,
    /// 400, naming the field.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// 404.
    #[error("reservation `{0}` not found")]
    NotFound(String),
    /// 409.
    #[error("reservation `{id}` is {state:?}; {action} is not possible")]
    WrongState {
        id: String,
        state: ReservationState,
        action: &'static str,
    },
    /// 503.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The operating system's secure random source failed (no reservation id can be made): 503.
    #[error("no secure random source for a reservation id: {0}")]
    Random(String),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InventoryError {
    InventoryError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl From<LimitError> for InventoryError {
    fn from(e: LimitError) -> Self {
        invalid(e.field, e.message)
    }
}

/// One location's part of a SKU's availability for a channel.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LocationAvailability {
    pub location: String,
    pub on_hand: i64,
    pub committed: i64,
    pub held: i64,
    pub buffer: i64,
    /// `max(0, on_hand − committed − held − buffer)`.
    pub available: i64,
}

/// A lot expected at a feeding location.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IncomingLot {
    pub location: String,
    pub quantity: i64,
    pub eta: Option<String>,
}

/// What a channel may sell of one SKU now.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkuAvailability {
    pub sku: String,
    /// Available-to-sell: the sum of `locations[].available`.
    pub ats: i64,
    pub locations: Vec<LocationAvailability>,
    pub incoming: Vec<IncomingLot>,
    /// Units that may still be sold against incoming stock (0 without backorders).
    pub backorderable: i64,
}

/// One SKU across the pool (admin API `GET /api/v1/stock/{sku}`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StockPool {
    pub sku: String,
    /// The endpoint whose figures feed the ledger (the ERP).
    pub source: String,
    /// Ledger positions of the SKU, one per location (empty when the ERP never reported it).
    pub positions: Vec<StockLevel>,
    /// What each channel may sell.
    pub channels: Vec<ChannelStock>,
}

/// One channel's availability of a SKU.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelStock {
    pub channel: String,
    pub availability: SkuAvailability,
}

/// The pool's run-time state.
pub(crate) struct Pool {
    pub cfg: InventoryConfig,
    /// The stock flow that delivers from the source to each channel.
    pub channel_flows: BTreeMap<String, FlowConfig>,
    /// Positions currently below what is promised (for raise/clear of the alert).
    at_risk: Mutex<BTreeSet<(String, String)>>,
    pub notify: tokio::sync::Notify,
}

impl Pool {
    /// Each SKU's feeds for a reservation by `channel` (its policy's locations, in order), with
    /// the buffer each location keeps back. Percent buffers need on-hand: the positions are read
    /// only when a percent rule decides some feed's buffer (the store re-reads positions inside
    /// its transaction for the decision itself).
    pub(crate) async fn feeds(
        &self,
        store: &dyn concord_store::Store,
        policy: &ChannelPolicy,
        channel: &str,
        skus: &[String],
    ) -> Result<Vec<(String, Vec<Feed>)>, StoreError> {
        let needs_on_hand = skus.iter().any(|sku| {
            policy
                .locations
                .iter()
                .any(|loc| buffer_needs_on_hand(&self.cfg.buffers, sku, channel, loc))
        });
        let levels = if needs_on_hand {
            store.levels(skus).await?
        } else {
            Vec::new()
        };
        Ok(skus
            .iter()
            .map(|sku| {
                let f = policy
                    .locations
                    .iter()
                    .map(|loc| {
                        let on_hand = levels
                            .iter()
                            .find(|l| &l.sku == sku && &l.location == loc)
                            .map_or(0, |l| l.on_hand);
                        Feed {
                            location: loc.clone(),
                            buffer: buffer(&self.cfg.buffers, sku, channel, loc, on_hand),
                        }
                    })
                    .collect();
                (sku.clone(), f)
            })
            .collect())
    }

    pub fn new(cfg: InventoryConfig, flows: &[FlowConfig]) -> Pool {
        let mut channel_flows = BTreeMap::new();
        for c in cfg.channels.keys() {
            if let Some(f) = flows.iter().find(|f| {
                f.kind == Kind::Stock
                    && f.from.iter().any(|s| s == &cfg.source)
                    && f.to.iter().any(|d| d == c)
            }) {
                channel_flows.insert(c.clone(), f.clone());
            }
        }
        Pool {
            cfg,
            channel_flows,
            at_risk: Mutex::new(BTreeSet::new()),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// Is `dest` a channel fed by the pool (it gets ats, not the source's per-location figures)?
    pub fn is_channel(&self, dest: &str) -> bool {
        self.cfg.channels.contains_key(dest)
    }

    fn position(l: &StockLevel) -> Position {
        Position {
            on_hand: l.on_hand,
            committed: l.committed,
            held: l.held,
        }
    }

    /// Availability of `sku` for `channel` from the ledger positions of that SKU.
    pub fn availability(&self, channel: &str, sku: &str, levels: &[StockLevel]) -> SkuAvailability {
        let Some(policy) = self.cfg.channels.get(channel) else {
            return SkuAvailability {
                sku: sku.into(),
                ats: 0,
                locations: vec![],
                incoming: vec![],
                backorderable: 0,
            };
        };
        let mut locations = Vec::new();
        let mut incoming = Vec::new();
        let mut backordered = Vec::new();
        for loc in &policy.locations {
            let level = levels.iter().find(|l| l.sku == sku && &l.location == loc);
            let pos = level.map(Self::position).unwrap_or_default();
            let buf = buffer(&self.cfg.buffers, sku, channel, loc, pos.on_hand);
            locations.push(LocationAvailability {
                location: loc.clone(),
                on_hand: pos.on_hand,
                committed: pos.committed,
                held: pos.held,
                buffer: buf,
                available: sellable(&pos, buf),
            });
            if let Some(l) = level {
                backordered.push(l.backordered);
                for lot in l.incoming.as_array().into_iter().flatten() {
                    incoming.push(IncomingLot {
                        location: loc.clone(),
                        quantity: lot.get("quantity").and_then(Value::as_i64).unwrap_or(0),
                        eta: lot.get("eta").and_then(Value::as_str).map(str::to_string),
                    });
                }
            }
        }
        // Sums of non-negative terms, clamped rather than wrapped (concord_core::inventory).
        let expected = sum_non_negative(incoming.iter().map(|l| l.quantity));
        let backordered = sum_non_negative(backordered);
        let backorderable = policy
            .backorder_limit
            .map(|limit| backorder_allowance(limit, expected, backordered))
            .unwrap_or(0);
        SkuAvailability {
            sku: sku.into(),
            ats: sum_non_negative(locations.iter().map(|l| l.available)),
            locations,
            incoming,
            backorderable,
        }
    }
}

impl Pool {
    /// The stock record `channel` gets for `sku` (before its flow's filter and mapping): its
    /// available-to-sell as `on_hand` at the channel's stock location, and the incoming lots;
    /// with the ats. The broadcaster publishes it; reconciliation (`runtime/reconcile`)
    /// compares the channel's own figure with it.
    pub(crate) fn channel_record(
        &self,
        channel: &str,
        policy: &ChannelPolicy,
        sku: &str,
        levels: &[StockLevel],
    ) -> (Value, i64) {
        let a = self.availability(channel, sku, levels);
        let incoming: Vec<Value> = a
            .incoming
            .iter()
            .map(|l| json!({"quantity": l.quantity, "eta": l.eta}))
            .collect();
        let mut record = json!({
            "sku": sku,
            "location": policy.stock_location,
            "on_hand": a.ats,
            "committed": 0,
        });
        if !incoming.is_empty() {
            record["incoming"] = Value::Array(incoming);
        }
        (record, a.ats)
    }
}

/// Most dirty SKUs recomputed in one pass.
const BROADCAST_PAGE: usize = 500;

/// Run the broadcaster and the expiry timer until shutdown.
pub(crate) async fn run(inner: Arc<Inner>) {
    let Some(pool) = inner.pool.as_ref() else {
        return;
    };
    let mut shutdown = inner.shutdown.subscribe();
    let mut next_expiry_check: Millis = 0;
    loop {
        if inner.is_shutting_down() {
            return;
        }
        let notified = pool.notify.notified();
        let now = inner.now();
        if now >= next_expiry_check {
            match inner.store.expire_reservations(now).await {
                Ok(expired) => {
                    for r in &expired {
                        tracing::info!(reservation = %r.id, channel = %r.channel, "reservation expired");
                    }
                    if !expired.is_empty() {
                        metrics::counter!("concord_reservations_expired_total")
                            .increment(expired.len() as u64);
                    }
                }
                Err(e) => tracing::error!(error = %e, "expiring reservations failed"),
            }
            next_expiry_check = match inner.store.next_expiry().await {
                Ok(Some(t)) => t.min(now + 1_000),
                _ => now + 1_000,
            };
        }
        let started = tokio::time::Instant::now();
        let handled = match broadcast(&inner, pool).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "recomputing available-to-sell failed");
                0
            }
        };
        if handled >= BROADCAST_PAGE {
            // A backlog (an ERP snapshot, a restart): keep going.
            continue;
        }
        if handled > 0 {
            // Changes keep coming (checkouts): let them gather for the rest of the interval, so
            // that a hot SKU is recomputed and delivered once per interval, not once per
            // reservation. After a quiet spell the next change is broadcast at once.
            tokio::select! {
                _ = tokio::time::sleep_until(started + pool.cfg.broadcast_interval) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let wait = Duration::from_millis((next_expiry_check - inner.now()).clamp(5, 200) as u64);
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Recompute ats for dirty SKUs and plan the channel deliveries. Returns SKUs handled.
pub(crate) async fn broadcast(inner: &Inner, pool: &Pool) -> Result<usize, StoreError> {
    let dirty: Vec<DirtySku> = inner.store.dirty_skus(BROADCAST_PAGE).await?;
    if dirty.is_empty() {
        return Ok(0);
    }
    let now = inner.now();
    let skus: Vec<String> = dirty.iter().map(|d| d.sku.clone()).collect();
    let levels = inner.store.levels(&skus).await?;
    let mut batch = ProcessBatch {
        clean: dirty.clone(),
        ..ProcessBatch::default()
    };
    // Every (channel, SKU) record first, then their planned hashes in one read: a pass over
    // many dirty SKUs (the norm under checkout load) costs one round trip, not one per record.
    let mut planned: Vec<(NewItem, &str, i64)> = Vec::new();
    for sku in &skus {
        let mine: Vec<StockLevel> = levels.iter().filter(|l| &l.sku == sku).cloned().collect();
        check_risk(inner, pool, sku, &mine, now, &mut batch).await?;
        for (channel, policy) in &pool.cfg.channels {
            let Some(flow) = pool.channel_flows.get(channel) else {
                continue;
            };
            let (record, ats) = pool.channel_record(channel, policy, sku, &mine);
            let vars = MapVars {
                dest: channel.clone(),
                source: pool.cfg.source.clone(),
                kind: Kind::Stock.as_str().to_string(),
            };
            // A filter or mapping that fails publishes nothing (never the unfiltered or
            // unmapped figure); why is logged and audited. At shutdown the pass stops before
            // applying anything: its SKUs stay dirty.
            let run = filter_then_map(
                flow.filter.as_ref(),
                flow.map_out_for(channel),
                &record,
                &vars,
            );
            let Some(filtered) = inner.unless_shutdown(run).await else {
                return Ok(0);
            };
            let payload = match filtered {
                Ok(Filtered::Kept(payload)) => payload,
                Ok(Filtered::Dropped) => continue,
                Err((stage, e)) => {
                    let reason = match stage {
                        Stage::Filter => format!("filter of flow `{}` failed: {e}", flow.name),
                        Stage::Mapping => format!(
                            "mapping of flow `{}` for `{channel}` failed: {e}",
                            flow.name
                        ),
                    };
                    not_published(flow, channel, sku, &record, reason, now, &mut batch);
                    continue;
                }
            };
            let key = format!("{sku}@{}", policy.stock_location);
            let hash = content_hash(&payload);
            planned.push((
                NewItem {
                    dest: channel.clone(),
                    kind: Kind::Stock,
                    key,
                    op: "upsert".into(),
                    payload,
                    hash,
                    flow: flow.name.clone(),
                    journal_id: None,
                    captured_at: now,
                    waiting_on: Vec::new(),
                    coalesce: true,
                    not_before: now,
                },
                sku.as_str(),
                ats,
            ));
        }
    }
    let keys: Vec<(String, Kind, String)> = planned
        .iter()
        .map(|(item, _, _)| (item.dest.clone(), Kind::Stock, item.key.clone()))
        .collect();
    let hashes = inner.store.hashes_of(&keys).await?;
    let mut dests = BTreeSet::new();
    for ((item, sku, ats), (last, _)) in planned.into_iter().zip(hashes) {
        if last.as_deref() == Some(item.hash.as_str()) {
            continue;
        }
        // One series per (channel, SKU) publishes the whole catalogue and its stock and grows
        // with every SKU ever seen: only when `[metrics] per_sku` asks for it.
        if inner.config.metrics.per_sku {
            metrics::gauge!("concord_ats", "channel" => item.dest.clone(), "sku" => sku.to_string())
                .set(ats as f64);
        }
        metrics::counter!("concord_ats_updates_total", "channel" => item.dest.clone()).increment(1);
        dests.insert(item.dest.clone());
        batch.items.push(item);
    }
    let n = skus.len();
    super::Stats::add(&inner.stats.planned, batch.items.len() as u64);
    inner.store.apply(batch, now).await?;
    inner.wake(dests);
    Ok(n)
}

/// A channel's figure for `sku` that its flow's filter or mapping could not produce: nothing
/// is sent (the channel keeps its last figure; the next ledger change of the SKU tries again),
/// and the reason is logged, counted and audited (`stock.not_published`) with the computed
/// record.
fn not_published(
    flow: &FlowConfig,
    channel: &str,
    sku: &str,
    record: &Value,
    reason: String,
    now: Millis,
    batch: &mut ProcessBatch,
) {
    tracing::error!(flow = %flow.name, %channel, %sku, %reason, "available-to-sell not published");
    metrics::counter!("concord_stock_not_published_total", "channel" => channel.to_string())
        .increment(1);
    batch.audit.push(AuditEvent {
        at: now,
        event: "stock.not_published".into(),
        endpoint: Some(channel.to_string()),
        kind: Some(Kind::Stock),
        key: Some(sku.to_string()),
        detail: json!({"flow": flow.name, "reason": reason, "record": record}),
    });
}

/// Raise (once) or clear the oversold-risk alert of each position of `sku`.
async fn check_risk(
    inner: &Inner,
    pool: &Pool,
    sku: &str,
    levels: &[StockLevel],
    now: Millis,
    batch: &mut ProcessBatch,
) -> Result<(), StoreError> {
    for l in levels {
        let free = Pool::position(l).free();
        let k = (l.sku.clone(), l.location.clone());
        let newly = {
            let Ok(mut risk) = pool.at_risk.lock() else {
                continue;
            };
            if free < 0 {
                risk.insert(k.clone())
            } else {
                if risk.remove(&k) {
                    tracing::info!(sku, location = %l.location, "oversold risk cleared");
                    batch.audit.push(AuditEvent {
                        at: now,
                        event: "oversold_risk.cleared".into(),
                        endpoint: Some(pool.cfg.source.clone()),
                        kind: Some(Kind::Stock),
                        key: Some(format!("{sku}@{}", l.location)),
                        detail: json!({"sku": sku, "location": l.location, "free": free}),
                    });
                }
                false
            }
        };
        let at_risk = pool.at_risk.lock().map(|r| r.len()).unwrap_or(0);
        metrics::gauge!("concord_oversold_risk_positions").set(at_risk as f64);
        if newly {
            let reservations: Vec<Value> = inner
                .store
                .reservations(None, Some(sku), 200)
                .await?
                .into_iter()
                .filter(|r| r.state.is_active())
                .filter_map(|r| {
                    let qty = sum_non_negative(
                        r.lines
                            .iter()
                            .filter(|x| x.location == l.location && x.sku == sku && x.released_at.is_none())
                            .map(|x| x.quantity),
                    );
                    (qty > 0).then(|| json!({"reservation": r.id, "channel": r.channel, "order": r.order, "quantity": qty}))
                })
                .collect();
            tracing::warn!(sku, location = %l.location, on_hand = l.on_hand, committed = l.committed, held = l.held,
                reservations = reservations.len(), "OVERSOLD RISK: the ERP's on-hand is below what is already promised");
            metrics::counter!("concord_oversold_risk_total").increment(1);
            batch.audit.push(AuditEvent {
                at: now,
                event: "oversold_risk".into(),
                endpoint: Some(pool.cfg.source.clone()),
                kind: Some(Kind::Stock),
                key: Some(format!("{sku}@{}", l.location)),
                detail: json!({"sku": sku, "location": l.location, "on_hand": l.on_hand,
                               "committed": l.committed, "held": l.held, "short_by": free.saturating_neg(),
                               "reservations": reservations}),
            });
        }
    }
    Ok(())
}

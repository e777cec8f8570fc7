//! The two sides of one check: what the endpoint holds (its listing, read page by page under
//! the endpoint's delivery budget) and what the hub says it should hold; and the keys in
//! flight (queued for it, journaled and not yet applied, SKUs awaiting their channel figure).
//!
//! Must never write anything: healing is `super::heal_one`'s.

use super::{Check, DestinationDrift, Target};
use crate::connector::{Captured, DeliveryError, Page, ReadRequest};
use crate::mapping::{filter_then_map, Filtered, MapVars};
use crate::runtime::{EngineError, Inner};
use concord_core::reconcile::compare;
use concord_core::{natural_key, Kind, Millis};
use concord_store::{Entity, ItemState, StockLevel};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One check's report and what healing needs from it.
pub(crate) struct Checked {
    pub report: DestinationDrift,
    /// The record the hub would write, per expected key (the destination's shape).
    pub payloads: BTreeMap<String, Value>,
    /// The endpoint's records as read, per key (for the ledger: journaled when healing).
    pub captured: BTreeMap<String, Captured>,
}

/// Entities read from the store per page.
const PAGE: usize = 500;
/// Most queued items or journal entries looked at for in-flight keys.
const QUEUE_SCAN: usize = 1_000_000;
/// Tries of one listing page before the check gives up.
const READ_TRIES: u32 = 6;

/// What the hub says the endpoint should hold.
#[derive(Default)]
struct Hub {
    /// By key: what is compared (orders: existence only).
    expected: BTreeMap<String, Value>,
    payloads: BTreeMap<String, Value>,
    /// Keys the hub has a record of that this flow does not put at this endpoint (the
    /// endpoint's own records, or dropped by the filter): not "unknown to the hub".
    known: BTreeSet<String>,
    /// Keys whose hub state changed since the run started: on their way, not drift.
    changed: BTreeSet<String>,
}

pub(crate) async fn check(
    inner: &Inner,
    t: &Target,
    started: Millis,
) -> Result<Checked, EngineError> {
    let kind = t.flow.kind;
    let before = in_flight(inner, t).await?;
    let (mut actual, captured, reads) = read_endpoint(inner, t).await?;
    let hub = match t.check {
        Check::Destination => destination_side(inner, t, started).await?,
        Check::ChannelStock => channel_side(inner, t, started).await?,
        Check::Ledger => ledger_side(inner, started).await?,
    };
    let after = in_flight(inner, t).await?;
    actual.retain(|k, _| hub.expected.contains_key(k) || !hub.known.contains(k));
    let mut flight = before;
    flight.extend(after);
    flight.extend(hub.changed);
    let comparison = compare(&hub.expected, &actual, &flight);
    Ok(Checked {
        report: DestinationDrift {
            flow: t.flow.name.clone(),
            dest: t.dest.clone(),
            kind,
            check: t.check,
            comparison,
            reads,
            healed: Vec::new(),
            error: None,
        },
        payloads: hub.payloads,
        captured,
    })
}

/// Keys of `kind` with an item for `dest` pending, parked or in flight.
pub(crate) async fn queued(
    inner: &Inner,
    dest: &str,
    kind: Kind,
) -> Result<BTreeSet<String>, EngineError> {
    let mut keys = BTreeSet::new();
    for state in [ItemState::Pending, ItemState::Inflight, ItemState::Parked] {
        for item in inner.store.items(Some(dest), state, QUEUE_SCAN).await? {
            if item.kind == kind {
                keys.insert(item.key);
            }
        }
    }
    Ok(keys)
}

/// Keys whose state at the endpoint is about to change (see the module docs).
async fn in_flight(inner: &Inner, t: &Target) -> Result<BTreeSet<String>, EngineError> {
    let kind = t.flow.kind;
    let mut keys = if t.check == Check::Ledger {
        BTreeSet::new()
    } else {
        queued(inner, &t.dest, kind).await?
    };
    // Journaled, not yet applied: keyed as the processor will key them.
    let pending: Vec<_> = inner
        .store
        .pending_journal(QUEUE_SCAN)
        .await?
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect();
    let ids: Vec<(String, Kind, String)> = pending
        .iter()
        .map(|e| (e.endpoint.clone(), kind, e.external_id.clone()))
        .collect();
    let known = inner.store.xref_keys(&ids).await?;
    let stock_location = inner
        .pool
        .as_ref()
        .and_then(|p| p.cfg.channels.get(&t.dest))
        .map(|p| p.stock_location.clone());
    for (e, k) in pending.iter().zip(known) {
        let key = k.or_else(|| natural_key(kind, &e.payload, &e.endpoint).ok());
        if let Some(key) = key {
            keys.insert(channel_key(&key, stock_location.as_deref()));
        }
    }
    if let (Check::ChannelStock, Some(loc)) = (t.check, &stock_location) {
        for d in inner.store.dirty_skus(QUEUE_SCAN).await? {
            keys.insert(format!("{}@{loc}", d.sku));
        }
    }
    Ok(keys)
}

/// A stock key `sku@location` as a channel holds it (at its stock location).
fn channel_key(key: &str, stock_location: Option<&str>) -> String {
    match (stock_location, key.rsplit_once('@')) {
        (Some(loc), Some((sku, _))) => format!("{sku}@{loc}"),
        _ => key.to_string(),
    }
}

/// The endpoint's listing, keyed canonically (xref, else the natural key of the record as the
/// hub would capture it), with the pages read.
pub(crate) async fn read_endpoint(
    inner: &Inner,
    t: &Target,
) -> Result<(BTreeMap<String, Value>, BTreeMap<String, Captured>, u64), EngineError> {
    let kind = t.flow.kind;
    let endpoint = t.dest.as_str();
    let connector = inner
        .connectors
        .get(endpoint)
        .ok_or_else(|| EngineError::MissingConnector(endpoint.to_string()))?
        .clone();
    let mut actual = BTreeMap::new();
    let mut captured = BTreeMap::new();
    let mut reads = 0u64;
    let mut cursor: Option<String> = None;
    loop {
        let page = read_page(inner, endpoint, &*connector, kind, cursor.as_deref(), t).await?;
        reads += 1;
        let n = page.records.len();
        // An empty page that moved the cursor (its records filtered out by the connector) is
        // not the end of the listing; one that did not move it ends it whatever `more` says.
        let moved = page.cursor.is_some() && page.cursor != cursor;
        let ids: Vec<(String, Kind, String)> = page
            .records
            .iter()
            .map(|c| (endpoint.to_string(), kind, c.external_id.clone()))
            .collect();
        let known = inner.store.xref_keys(&ids).await?;
        for (c, k) in page.records.into_iter().zip(known) {
            // Canonical as the hub would capture it (the endpoint's inbound mapping, validation);
            // a record that is not valid canonical data is compared as read.
            let record =
                match crate::runtime::capture::to_capture(inner, endpoint, c.clone(), 0).await {
                    Ok(capture) => capture.payload,
                    Err(_) => c.record.clone(),
                };
            let key = k
                .or_else(|| natural_key(kind, &record, endpoint).ok())
                .unwrap_or_else(|| format!("?{}", c.external_id));
            actual.insert(key.clone(), record);
            captured.insert(key, c);
        }
        if !page.more || (n == 0 && !moved) {
            break;
        }
        cursor = page.cursor;
        if inner.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
    }
    Ok((actual, captured, reads))
}

/// One listing page, paced by the endpoint's delivery budget and retried like a poll: a 429
/// or `Retry-After` pauses the endpoint's deliveries too.
async fn read_page(
    inner: &Inner,
    endpoint: &str,
    connector: &dyn crate::connector::Connector,
    kind: Kind,
    cursor: Option<&str>,
    t: &Target,
) -> Result<Page, EngineError> {
    let runtime = inner.endpoints.get(endpoint);
    let mut delay = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        if let Some(ep) = runtime {
            let wait = ep.read_wait(inner.now());
            if !wait.is_zero() && crate::runtime::capture::sleep_or_shutdown(inner, wait).await {
                return Err(EngineError::ShuttingDown);
            }
        }
        crate::runtime::Stats::add(&inner.stats.api_calls, 1);
        metrics::counter!("concord_api_calls_total", "endpoint" => endpoint.to_string(), "op" => "reconcile")
            .increment(1);
        let result = connector
            .read_snapshot(ReadRequest {
                kind,
                cursor,
                limit: t.flow.page_size,
                overlap: Duration::ZERO,
            })
            .await;
        let err = match result {
            Ok(page) => return Ok(page),
            Err(e) => e,
        };
        tries += 1;
        if err.is_permanent() || tries >= READ_TRIES {
            return Err(EngineError::NotPossible(format!(
                "cannot list {kind} records of `{endpoint}`: {err}"
            )));
        }
        let wait = err.retry_after().unwrap_or(delay);
        if let (DeliveryError::RateLimited { .. }, Some(ep)) = (&err, runtime) {
            let until = inner
                .now()
                .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
            ep.read_rate_limited(until);
        }
        if crate::runtime::capture::sleep_or_shutdown(inner, wait).await {
            return Err(EngineError::ShuttingDown);
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Every entity of `kind`, page by page.
async fn for_each_entity(
    inner: &Inner,
    kind: Kind,
    mut each: impl FnMut(Entity),
) -> Result<(), EngineError> {
    let mut after: Option<String> = None;
    loop {
        let page = inner
            .store
            .entities_of_kind(kind, after.as_deref(), PAGE)
            .await?;
        let n = page.len();
        after = page.last().map(|e| e.key.clone());
        for e in page {
            each(e);
        }
        if n < PAGE {
            return Ok(());
        }
    }
}

/// Run the flow's filter and mapping for `dest` over `record` as the processor does.
async fn planned(
    inner: &Inner,
    t: &Target,
    source: &str,
    record: &Value,
) -> Result<Option<Value>, EngineError> {
    let vars = MapVars {
        dest: t.dest.clone(),
        source: source.to_string(),
        kind: t.flow.kind.as_str().to_string(),
    };
    let run = filter_then_map(
        t.flow.filter.as_ref(),
        t.flow.map_out_for(&t.dest),
        record,
        &vars,
    );
    match inner.unless_shutdown(run).await {
        None => Err(EngineError::ShuttingDown),
        Some(Ok(Filtered::Kept(p))) => Ok(Some(p)),
        // Dropped, or a program that fails (the processor dead-letters that record): nothing
        // the hub would put there.
        Some(Ok(Filtered::Dropped)) | Some(Err(_)) => Ok(None),
    }
}

/// The hub's records of the flow's kind that came from one of its sources (other than `dest`).
async fn destination_side(inner: &Inner, t: &Target, started: Millis) -> Result<Hub, EngineError> {
    let mut entities = Vec::new();
    for_each_entity(inner, t.flow.kind, |e| entities.push(e)).await?;
    let mut hub = Hub::default();
    for e in entities {
        if e.updated_at >= started {
            hub.changed.insert(e.key.clone());
        }
        let source = e
            .versions
            .keys()
            .find(|s| *s != &t.dest && t.flow.from.contains(s))
            .cloned();
        let Some(source) = source else {
            hub.known.insert(e.key);
            continue;
        };
        match planned(inner, t, &source, &e.state).await? {
            Some(payload) => {
                // Orders: existence only (their state at a destination is its own lifecycle).
                let view = if t.flow.kind == Kind::Order {
                    json!({})
                } else {
                    payload.clone()
                };
                hub.expected.insert(e.key.clone(), view);
                hub.payloads.insert(e.key, payload);
            }
            None => {
                hub.known.insert(e.key);
            }
        }
    }
    Ok(hub)
}

/// SKUs with a ledger position (stock records from the pool's source), with the stock keys
/// whose record changed since `started`.
async fn pool_skus(
    inner: &Inner,
    source: &str,
    started: Millis,
) -> Result<(Vec<String>, BTreeSet<String>), EngineError> {
    let mut skus = BTreeSet::new();
    let mut changed = BTreeSet::new();
    for_each_entity(inner, Kind::Stock, |e| {
        if !e.versions.contains_key(source) {
            return;
        }
        if let Some(sku) = e.state.get("sku").and_then(Value::as_str) {
            skus.insert(sku.to_string());
            if e.updated_at >= started {
                changed.insert(sku.to_string());
            }
        }
    })
    .await?;
    Ok((skus.into_iter().collect(), changed))
}

async fn levels(inner: &Inner, skus: &[String]) -> Result<Vec<StockLevel>, EngineError> {
    let mut out = Vec::new();
    for chunk in skus.chunks(PAGE) {
        out.extend(inner.store.levels(chunk).await?);
    }
    Ok(out)
}

/// A pool channel's figure per SKU: its available-to-sell, through its flow.
async fn channel_side(inner: &Inner, t: &Target, started: Millis) -> Result<Hub, EngineError> {
    let pool = inner
        .pool
        .as_ref()
        .ok_or_else(|| EngineError::NotPossible("the stock pool is not configured".into()))?;
    let policy =
        pool.cfg.channels.get(&t.dest).ok_or_else(|| {
            EngineError::NotPossible(format!("`{}` is not a pool channel", t.dest))
        })?;
    let (skus, changed) = pool_skus(inner, &pool.cfg.source, started).await?;
    let all = levels(inner, &skus).await?;
    let mut by_sku: BTreeMap<&str, Vec<StockLevel>> = BTreeMap::new();
    for l in &all {
        by_sku.entry(l.sku.as_str()).or_default().push(l.clone());
    }
    let mut hub = Hub::default();
    for sku in &skus {
        let key = format!("{sku}@{}", policy.stock_location);
        if changed.contains(sku) {
            hub.changed.insert(key.clone());
        }
        let mine = by_sku.get(sku.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let (record, _) = pool.channel_record(&t.dest, policy, sku, mine);
        match planned(inner, t, &pool.cfg.source, &record).await? {
            Some(payload) => {
                hub.expected.insert(key.clone(), payload.clone());
                hub.payloads.insert(key, payload);
            }
            None => {
                hub.known.insert(key);
            }
        }
    }
    Ok(hub)
}

/// The ledger's figures of the pool's source, per position, as its stock records carry them.
async fn ledger_side(inner: &Inner, started: Millis) -> Result<Hub, EngineError> {
    let pool = inner
        .pool
        .as_ref()
        .ok_or_else(|| EngineError::NotPossible("the stock pool is not configured".into()))?;
    let (skus, changed) = pool_skus(inner, &pool.cfg.source, started).await?;
    let mut hub = Hub::default();
    for l in levels(inner, &skus).await? {
        let key = format!("{}@{}", l.sku, l.location);
        if changed.contains(&l.sku) || l.updated_at >= started {
            hub.changed.insert(key.clone());
        }
        hub.expected.insert(
            key,
            json!({"sku": l.sku, "location": l.location, "on_hand": l.on_hand,
                   "committed": l.committed}),
        );
    }
    Ok(hub)
}

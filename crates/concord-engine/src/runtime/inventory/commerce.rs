//! The stock pool's operations for the commerce API (`/v1/availability`, `/v1/reservations…`)
//! and the admin API's view of one SKU, on the engine: every input checked against the bounded
//! domain before the store is asked, reservations decided by the store's single writer.
//!
//! Must never call a connector nor compute a figure the store did not give: reads come from the
//! ledger, decisions from `Store::reserve` and its siblings.

use super::{invalid, ChannelStock, InventoryError, Pool, SkuAvailability, StockPool};
use concord_core::inventory::Line;
use concord_core::limits;
use concord_store::{Reservation, ReserveOutcome, ReserveRequest, StoreError, TransitionError};
use std::collections::{BTreeMap, BTreeSet};

/// A fresh reservation id: `res_` and 128 bits from the operating system's secure random
/// source, as 32 hex digits. Reservation ids are capabilities of a kind (an open storefront API
/// serves a reservation to whoever names it), so they must not be guessable from the time or a
/// neighbour's id.
fn reservation_id() -> Result<String, InventoryError> {
    let mut bits = [0u8; 16];
    getrandom::fill(&mut bits).map_err(|e| InventoryError::Random(e.to_string()))?;
    Ok(format!("res_{}", hex::encode(bits)))
}

/// The commerce API's operations, on the engine.
impl crate::runtime::Engine {
    fn pool(&self) -> Result<&Pool, InventoryError> {
        self.inner
            .pool
            .as_ref()
            .ok_or(InventoryError::NotConfigured)
    }

    fn channel_policy(
        &self,
        channel: &str,
    ) -> Result<&crate::config::ChannelPolicy, InventoryError> {
        let pool = self.pool()?;
        pool.cfg.channels.get(channel).ok_or_else(|| {
            let known: Vec<&str> = pool.cfg.channels.keys().map(String::as_str).collect();
            invalid(
                "channel",
                format!(
                    "unknown channel `{channel}`; the pool feeds {}",
                    known.join(", ")
                ),
            )
        })
    }

    /// The pool's view of one SKU (admin API): every ledger position (on hand, committed,
    /// held, backordered, incoming with ETA) and what each channel may sell (buffer, ats per
    /// location). From the ledger only, never the ERP.
    pub async fn stock_pool(&self, sku: &str) -> Result<StockPool, InventoryError> {
        limits::key("sku", sku)?;
        let pool = self.pool()?;
        let skus = [sku.to_string()];
        let positions = self.inner.store.levels(&skus).await?;
        let channels = pool
            .cfg
            .channels
            .keys()
            .map(|c| ChannelStock {
                channel: c.clone(),
                availability: pool.availability(c, sku, &positions),
            })
            .collect();
        Ok(StockPool {
            sku: sku.to_string(),
            source: pool.cfg.source.clone(),
            positions,
            channels,
        })
    }

    /// `GET /v1/availability`: served from the ledger, never by calling the ERP.
    pub async fn availability(
        &self,
        channel: &str,
        skus: &[String],
    ) -> Result<Vec<SkuAvailability>, InventoryError> {
        self.channel_policy(channel)?;
        if skus.is_empty() {
            return Err(invalid("sku", "give at least one `sku`"));
        }
        // Each SKU is a ledger read: bounded before the store is asked.
        limits::count("sku", skus.len(), limits::MAX_QUERY_SKUS, "`sku` values")?;
        for (i, s) in skus.iter().enumerate() {
            limits::key(&format!("sku[{i}]"), s)?;
        }
        let pool = self.pool()?;
        let levels = self.inner.store.levels(skus).await?;
        Ok(skus
            .iter()
            .map(|s| pool.availability(channel, s, &levels))
            .collect())
    }

    /// `POST /v1/reservations`: all lines or nothing; idempotent on (channel, client_key).
    pub async fn reserve(
        &self,
        channel: &str,
        client_key: &str,
        lines: Vec<Line>,
    ) -> Result<ReserveOutcome, InventoryError> {
        let policy = self.channel_policy(channel)?.clone();
        let pool = self.pool()?;
        // The bounded domain (concord_core::limits), all of it checked before the store's
        // single writer is asked anything.
        limits::key("key", client_key)?;
        if lines.is_empty() {
            return Err(invalid("lines", "a reservation needs at least one line"));
        }
        limits::count("lines", lines.len(), limits::MAX_RESERVATION_LINES, "lines")?;
        let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
        for (i, l) in lines.iter().enumerate() {
            limits::key(&format!("lines[{i}].sku"), &l.sku)?;
            let field = format!("lines[{i}].quantity");
            limits::line_quantity(&field, l.quantity)?;
            let total = totals.entry(l.sku.as_str()).or_insert(0);
            *total = limits::add_quantity(&field, *total, l.quantity)?;
        }
        let skus: Vec<String> = lines
            .iter()
            .map(|l| l.sku.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let feeds = pool
            .feeds(self.inner.store.as_ref(), &policy, channel, &skus)
            .await?;
        let now = self.inner.now();
        let ttl = i64::try_from(pool.cfg.reservation_ttl.as_millis()).unwrap_or(i64::MAX);
        let req = ReserveRequest {
            id: reservation_id()?,
            channel: channel.to_string(),
            client_key: client_key.to_string(),
            lines,
            feeds,
            backorder_limit: policy.backorder_limit,
            source: pool.cfg.source.clone(),
            now,
            expires_at: now.saturating_add(ttl),
        };
        let out = match self.inner.store.reserve(req).await {
            Ok(out) => out,
            // Bounded lines cannot overflow a position, but the ledger checks anyway.
            Err(StoreError::OutOfRange(m)) => return Err(invalid("lines", m)),
            Err(e) => return Err(e.into()),
        };
        match &out {
            ReserveOutcome::Reserved(_) => metrics::counter!("concord_reservations_total", "channel" => channel.to_string(), "result" => "reserved").increment(1),
            ReserveOutcome::Existing(_) => metrics::counter!("concord_reservations_total", "channel" => channel.to_string(), "result" => "existing").increment(1),
            ReserveOutcome::Short(_) => metrics::counter!("concord_reservations_total", "channel" => channel.to_string(), "result" => "short").increment(1),
        }
        pool.notify.notify_one();
        Ok(out)
    }

    pub async fn reservation(&self, id: &str) -> Result<Reservation, InventoryError> {
        self.pool()?;
        limits::key("id", id)?;
        self.inner
            .store
            .reservation(id)
            .await?
            .ok_or_else(|| InventoryError::NotFound(id.to_string()))
    }

    /// `POST /v1/reservations/{id}/commit`: the channel placed order `number`; the reservation
    /// stops expiring and waits for the ERP to include the order.
    pub async fn commit_reservation(
        &self,
        id: &str,
        number: &str,
    ) -> Result<Reservation, InventoryError> {
        self.pool()?;
        if number.trim().is_empty() || number.contains('/') {
            return Err(invalid("order", "give the channel's order number (no `/`)"));
        }
        limits::key("order", number)?;
        let r = self.reservation(id).await?;
        let order = format!("{}/{}", r.channel, number.trim());
        let out = self
            .inner
            .store
            .commit_reservation(id, &order, self.inner.now())
            .await?;
        self.transition(id, out, "commit")
    }

    /// `DELETE /v1/reservations/{id}`: cancel; its stock is free again at once.
    pub async fn cancel_reservation(&self, id: &str) -> Result<Reservation, InventoryError> {
        let pool = self.pool()?;
        limits::key("id", id)?;
        let out = self
            .inner
            .store
            .cancel_reservation(id, self.inner.now())
            .await?;
        pool.notify.notify_one();
        self.transition(id, out, "cancel")
    }

    fn transition(
        &self,
        id: &str,
        out: Result<Reservation, TransitionError>,
        action: &'static str,
    ) -> Result<Reservation, InventoryError> {
        match out {
            Ok(r) => Ok(r),
            Err(TransitionError::NotFound) => Err(InventoryError::NotFound(id.to_string())),
            Err(TransitionError::WrongState(state)) => Err(InventoryError::WrongState {
                id: id.to_string(),
                state,
                action,
            }),
        }
    }
}

//! `[inventory]` → [`InventoryConfig`]: the source and channels are known endpoints joined by
//! `stock` flows, locations are listed once each, buffers give exactly one amount, quantities
//! (buffer units, backorder limits) lie in the bounded domain (`concord_core::limits`),
//! durations default. Part of [`validate`](super::validate), called after endpoints and flows are checked:
//! no I/O, and it must never change them, only read them to cross-check.

use super::{config_amount, duration, known_endpoint, Result};
use crate::config::env::push_key;
use crate::config::raw::RawInventory;
use crate::config::{ChannelPolicy, FlowConfig, InventoryConfig, Issue};
use crate::connector::EndpointSpec;
use concord_core::Kind;
use std::collections::BTreeMap;
use std::time::Duration;

pub(super) fn inventory(
    raw: RawInventory,
    endpoints: &BTreeMap<String, EndpointSpec>,
    flows: &[FlowConfig],
) -> Result<InventoryConfig> {
    use concord_core::inventory::{BufferAmount, BufferRule};
    known_endpoint("inventory.source", &raw.source, endpoints)?;
    let feeds_stock = |to: Option<&str>| {
        flows.iter().any(|f| {
            f.kind == Kind::Stock
                && f.from.iter().any(|s| s == &raw.source)
                && to.is_none_or(|t| f.to.iter().any(|d| d == t))
        })
    };
    if !feeds_stock(None) {
        return Err(Issue::new(
            "inventory.source",
            format!(
                "no `stock` flow reads from `{}`, so the ledger would never be fed",
                raw.source
            ),
        ));
    }
    let reservation_ttl = duration(
        "inventory.reservation_ttl",
        raw.reservation_ttl.as_deref(),
        Duration::from_secs(15 * 60),
        false,
    )?;
    let release_grace = duration(
        "inventory.release_grace",
        raw.release_grace.as_deref(),
        Duration::from_secs(5),
        true,
    )?;
    let broadcast_interval = duration(
        "inventory.broadcast_interval",
        raw.broadcast_interval.as_deref(),
        Duration::from_millis(50),
        true,
    )?;
    if raw.channels.is_empty() {
        return Err(Issue::new(
            "inventory.channels",
            "list at least one channel (`[inventory.channels.NAME]`)",
        ));
    }
    let mut channels = BTreeMap::new();
    for (name, ch) in raw.channels {
        let mut at = String::from("inventory.channels");
        push_key(&mut at, &name);
        known_endpoint(&at, &name, endpoints)?;
        if !feeds_stock(Some(&name)) {
            return Err(Issue::new(
                &at,
                format!(
                    "no `stock` flow delivers from `{}` to `{name}`; add `{name}` to a stock flow's `to`",
                    raw.source
                ),
            ));
        }
        if ch.locations.is_empty() {
            return Err(Issue::new(
                format!("{at}.locations"),
                "list at least one location that feeds this channel",
            ));
        }
        for (i, l) in ch.locations.iter().enumerate() {
            if l.trim().is_empty() {
                return Err(Issue::new(
                    format!("{at}.locations[{i}]"),
                    "must not be empty",
                ));
            }
            if ch.locations[..i].contains(l) {
                return Err(Issue::new(
                    format!("{at}.locations[{i}]"),
                    format!("`{l}` is listed twice"),
                ));
            }
        }
        let backorder_limit = match ch.backorder_limit {
            None => None,
            Some(n) => Some(config_amount(
                &format!("{at}.backorder_limit"),
                n,
                concord_core::limits::quantity,
            )?),
        };
        channels.insert(
            name,
            ChannelPolicy {
                locations: ch.locations,
                backorder_limit,
                stock_location: ch.stock_location.unwrap_or_else(|| "default".to_string()),
            },
        );
    }
    let mut buffers = Vec::with_capacity(raw.buffers.len());
    for (i, b) in raw.buffers.into_iter().enumerate() {
        let at = format!("inventory.buffers[{i}]");
        if let Some(c) = &b.channel {
            known_endpoint(&format!("{at}.channel"), c, endpoints)?;
        }
        let amount = match (b.units, b.percent) {
            (Some(u), None) => BufferAmount::Units(config_amount(
                &format!("{at}.units"),
                u,
                concord_core::limits::quantity,
            )?),
            (None, Some(p)) if p <= 100 => BufferAmount::Percent(p as u32),
            (None, Some(p)) => {
                return Err(Issue::new(
                    format!("{at}.percent"),
                    format!("must be between 0 and 100, got {p}"),
                ))
            }
            _ => return Err(Issue::new(&at, "give exactly one of `units` and `percent`")),
        };
        buffers.push(BufferRule {
            sku: b.sku,
            channel: b.channel,
            location: b.location,
            amount,
        });
    }
    Ok(InventoryConfig {
        source: raw.source,
        reservation_ttl,
        release_grace,
        broadcast_interval,
        channels,
        buffers,
    })
}

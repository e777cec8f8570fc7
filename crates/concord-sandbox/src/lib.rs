//! Concord's sandbox: built-in HTTP emulators of an ERP ([`erp::ErpSim`]) and of a storefront
//! ([`shop::ShopSim`]), for `concord demo`, `concord sandbox`, dry runs, benchmarks and tests.
//! The connectors that talk to them are `concord_connectors::sandbox` (`sandbox-erp`,
//! `sandbox-shop`); the wire contract both sides share is `concord_connectors::sandbox::protocol`
//! (re-exported here as [`protocol`], with [`sign`], [`SIGNATURE_HEADER`], [`TOPIC_HEADER`]).
//!
//! The emulators behave like real systems: real HTTP on 127.0.0.1, real signed webhooks out
//! (batched, retried, then dropped), a gapless changes feed, a snapshot listing, and injected
//! failures ([`Faults`]: latency, 500s, 429 with `Retry-After`, 503 maintenance, a write's answer
//! held back, and a real outage where the port stops accepting). Both speak canonical JSON (the
//! shapes of `concord_core::model`), so no mapping is needed. Each one's own API is documented
//! in its module ([`erp`], [`shop`]).
//!
//! # What both emulators add to the wire contract
//! - Webhooks (when `webhook_url` is set): in seq order, up to `webhook_batch` events per POST,
//!   sent at once when idle; retried after 100 ms, 400 ms, 1.6 s, then dropped
//!   (`webhooks_dropped`) — as real platforms do; the changes feed is the safety net.
//! - Faults apply to `/api/*` only: latency, then `down` (503 "down for maintenance"), then every
//!   Nth request 429 with `Retry-After`, then `error_rate` 500s; `reply_delay_ms` holds the
//!   answer to a write that was applied.
//!
//! # Control calls
//! What happens *inside* a system (a warehouse ships, a rep keys in an order, a customer
//! cancels) and the levers of a test (faults, outages, counters). Every control call is reachable
//! over HTTP, so a script can drive the sandbox as a test drives the handles ([`ErpHandle`],
//! [`ShopHandle`]: the Rust method is named in brackets). Control calls are never faulted and
//! never counted as requests or writes. Bodies are JSON; where every field is optional an empty
//! body means the defaults; a missing, unknown, mistyped or out-of-range field is 422 naming its
//! path (`lines[0].quantity: …`), a malformed body 400, an unknown id 404.
//!
//! Both emulators:
//!
//! | call | body | effect |
//! |---|---|---|
//! | `POST /_control/faults` | a [`Faults`] (missing fields = default: `{}` clears every fault) | 200, the faults now in force on every later `/api` request (`set_faults`) |
//! | `GET /_control/faults` | | 200, the faults in force |
//! | `POST /_control/outage` | `{"duration_ms": 1..=600000}` | 202 `{"down_for_ms"}`, then a real outage: the listener is closed (connections refused; an open connection ends after its request) and bound again on the same port after `duration_ms`; every record is kept (`set_down(true)`, `set_down(false)`) |
//! | `GET /_control/counters` | | 200, the [`Counters`] (`counters`) |
//! | `GET /_control/write-log` | | 200 `{"writes":[{"method","path","body"}]}`: every `/api` write that got past fault injection, oldest first (`write_log`) |
//! | `GET /_control/seq` | | 200 `{"last_seq"}`: the last change's seq, 0 before any; unchanged means nothing happened (`last_seq`) |
//!
//! The ERP ([`erp`]):
//!
//! | call | body | effect |
//! |---|---|---|
//! | `POST /_control/seed` | `{"skus": 1..=10000, "locations": ["WH1", …], "quantity"}` | 200 `{"skus"}`: products `SKU-0001…` (named, `default` list price 1000 + i) with `quantity` on hand at each location (`seed`) |
//! | `POST /_control/stock/{sku}/{location}/adjust` | `{"delta"}` | 200, the stock row: a goods receipt (`delta` > 0) or a count correction (< 0; on hand never below 0; above 10⁹ units → 422) (`adjust_stock`) |
//! | `POST /_control/stock/{sku}/{location}/unannounced` | `{"on_hand"}` | 200, the stock row: on hand set with no change event — a lost webhook: in the snapshot and the changes feed, never sent (drift tests); outside 0..=10⁹ → 422 (`set_stock_unannounced`) |
//! | `POST /_control/rep-orders` | `{"email", "lines": [{"sku", "quantity"}]}` | 201, the sales order a sales rep keyed in (reference `rep/<n>`, lines from the default location): it commits stock whatever the hub promised (`rep_order`) |
//! | `POST /_control/sales-orders/{id}/ship` | `{"lines": [{"sku", "quantity"}], "carrier", "tracking_number"}`, all optional (no lines: the rest) | 201, the shipment: one of several (`ship_with`, `ship_partial`, `ship`) |
//! | `POST /_control/sales-orders/{id}/invoice` | | 200, the order's invoice (idempotent) (`invoice`) |
//! | `POST /_control/sales-orders/{id}/cancel` | | 200, the sales order, cancelled, its commitment released; 409 once shipped (`cancel`) |
//! | `POST /_control/invoices/{number}/pay` | `{"amount_minor", "method"}`, optional (default: what is open, no method) | 200, the payment `PAY-n` received at the ERP, e.g. a bank transfer; 409 when nothing is left to pay (`pay_invoice`: method `bank_transfer`) |
//! | `POST /_control/returns/{id}/receive` | | 200, the return, received: its units back on hand at the order line's location, the order `returned` (idempotent) (`receive_return`) |
//! | `PUT /_control/credit-hold/{email}` | | 204: the customer's new orders are refused (422) (`set_credit_hold(email, true)`) |
//! | `DELETE /_control/credit-hold/{email}` | | 204: the hold is lifted (`set_credit_hold(email, false)`) |
//!
//! The storefront ([`shop`]; the customer's own checkout is an API call, `POST /api/checkout`):
//!
//! | call | body | effect |
//! |---|---|---|
//! | `POST /_control/orders/{id}/edit` | `{"lines": [{"sku", "quantity"}], "shipping_address"}` | 200, the order, edited by the merchant and emitted as its update; 409 once fulfilled or cancelled (`edit_order`) |
//! | `POST /_control/orders/{id}/cancel` | | 200, the order, cancelled by the customer; 409 once fulfilled (`customer_cancel`) |
//! | `POST /_control/orders/{id}/capture` | `{"amount_minor", "method"}`, optional (what is not captured yet) | 201, the payment `pay_n`, captured (`capture`) |
//! | `POST /_control/orders/{id}/refund` | `{"lines", "amount_minor", "restock", "reason"}`, optional (by lines — their value —, by amount, or else the rest) | 201, the refund `re_n`; beyond what was ordered or is left → 422 naming the field (`refund`) |
//! | `DELETE /_control/products/{sku}` | | 204: the product deleted in the store's admin, gone from its listing, no event (drift tests); 404 when there is none (`delete_product`) |
//!
//! The crate's modules: `core` (fault middleware, write log, the shared routes, the server
//! lifecycle), `feed` (the change feed and its routes), `webhook` (the sender), `customers`,
//! and one folder per emulator.
//!
//! *Architecture invariant:* nothing on Concord's production path depends on this crate. Only
//! the CLI's `demo` and `sandbox` commands, the benchmarks and tests use it; the hub reaches the
//! emulators over HTTP through its connectors like any other system.
//!
//! Must never: touch Concord's store or engine runtime, be used as a production endpoint, or be
//! a dependency of `concord-connectors` (other than its tests), `concord-engine`,
//! `concord-store` or `concord-server`. The emulators keep everything in memory and forget it on
//! shutdown.

pub(crate) mod core;
pub(crate) mod customers;
pub mod erp;
pub(crate) mod feed;
pub mod shop;
pub(crate) mod webhook;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use self::core::WriteEntry;
pub use concord_connectors::sandbox::protocol::{self, sign, SIGNATURE_HEADER, TOPIC_HEADER};
pub use erp::{ErpHandle, ErpOptions, ErpSim};
pub use shop::{HubCheckout, InventorySet, ShopError, ShopHandle, ShopOptions, ShopSim};

/// Failures injected into `/api/*` requests (never into `/_control/*`). Set with
/// `handle.set_faults(..)` or `POST /_control/faults` (JSON, missing fields = default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every `/api` request before it is answered.
    pub latency_ms: u64,
    /// Fraction (0..1) of `/api` requests answered 500.
    pub error_rate: f64,
    /// Every Nth `/api` request is answered 429 (0 = off).
    pub rate_limit_every: u32,
    /// The `Retry-After` of those 429s, in seconds (fractions are sent as e.g. `0.5`). In JSON
    /// either a number or a string (`"0.5"`).
    #[serde(deserialize_with = "secs")]
    pub rate_limit_retry_after_secs: f64,
    /// Every `/api` request is answered 503 "down for maintenance". (For a real outage where
    /// the port refuses connections, use `POST /_control/outage` or the handle's
    /// `set_down(true)`.)
    pub down: bool,
    /// Every `/api` write (non-GET) is applied at once but answered this much later: the answer
    /// to a write that happened is late (or, past the client's timeout, lost) — the window in
    /// which a caller that dies has done the write without knowing it.
    pub reply_delay_ms: u64,
}

fn secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Secs {
        Num(f64),
        Text(String),
    }
    let v = match Secs::deserialize(d)? {
        Secs::Num(n) => n,
        Secs::Text(t) => t.trim().parse::<f64>().map_err(serde::de::Error::custom)?,
    };
    if !v.is_finite() || v < 0.0 {
        return Err(serde::de::Error::custom(
            "must be a non-negative number of seconds",
        ));
    }
    Ok(v)
}

impl Faults {
    /// The `Retry-After` header value: whole seconds as an integer, else a decimal.
    pub fn retry_after_header(&self) -> String {
        let s = self.rate_limit_retry_after_secs.max(0.0);
        if s.fract() == 0.0 {
            format!("{}", s as u64)
        } else {
            format!("{s}")
        }
    }
}

/// A snapshot of an emulator's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counters {
    /// `/api` requests received (faulted ones included).
    pub requests: u64,
    pub responses_429: u64,
    pub responses_5xx: u64,
    /// Accepted writes per kind (a bulk inventory call counts each item).
    pub writes: BTreeMap<String, u64>,
    /// Webhook POSTs answered 2xx.
    pub webhooks_sent: u64,
    /// Events carried by those POSTs.
    pub webhook_events_sent: u64,
    /// Webhook POST attempts that failed (connection error or non-2xx).
    pub webhooks_failed: u64,
    /// Batches given up after the last retry.
    pub webhooks_dropped: u64,
    /// Events in those batches.
    pub webhook_events_dropped: u64,
    /// Storefront checkouts refused for lack of stock.
    pub oversell_refused: u64,
    /// Storefront checkouts the hub's stock pool refused (`409` from `POST /v1/reservations`).
    pub hub_refused: u64,
    /// ERP only: units accepted on sales orders beyond the ERP's own `on_hand − committed` at
    /// the line's location when the order was accepted (stock the ERP did not have).
    pub oversold_units: u64,
}

impl Counters {
    /// Accepted writes of one kind.
    pub fn writes_of(&self, kind: &str) -> u64 {
        self.writes.get(kind).copied().unwrap_or(0)
    }
}

/// Starting an emulator or changing its server state failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the emulator has been shut down")]
    ShutDown,
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_formats_whole_and_fractional_seconds() {
        let mut f = Faults {
            rate_limit_retry_after_secs: 2.0,
            ..Faults::default()
        };
        assert_eq!(f.retry_after_header(), "2");
        f.rate_limit_retry_after_secs = 0.5;
        assert_eq!(f.retry_after_header(), "0.5");
        let parsed: Faults = serde_json::from_str(r#"{"down": true}"#).unwrap();
        assert!(parsed.down && parsed.rate_limit_every == 0);
        let parsed: Faults =
            serde_json::from_str(r#"{"rate_limit_retry_after_secs": "0.5"}"#).unwrap();
        assert_eq!(parsed.rate_limit_retry_after_secs, 0.5);
        assert!(serde_json::from_str::<Faults>(r#"{"rate_limit_retry_after_secs": -1}"#).is_err());
        assert!(serde_json::from_str::<Faults>(r#"{"latency": 1}"#).is_err());
    }
}

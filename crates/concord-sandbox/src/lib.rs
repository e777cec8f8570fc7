//! The sandbox: built-in HTTP emulators of an ERP ([`erp::ErpSim`]) and of a storefront
//! ([`shop::ShopSim`]), and the two connectors that talk to them ([`connector`]).
//!
//! The emulators serve `concord demo`, dry runs and fault tests, so they behave like real
//! systems: real HTTP on 127.0.0.1, real signed webhooks out (batched, retried, then dropped),
//! a gapless changes feed, a snapshot listing, and injected failures ([`Faults`]: latency, 500s,
//! 429 with `Retry-After`, 503 maintenance, and a real outage where the port stops accepting).
//! Both speak canonical JSON (the shapes of `concord_core::model`), so no mapping is needed.
//!
//! # Shared HTTP contract (both emulators)
//! - Every record change gets a new global, monotonic `seq` (its version) and `updated_at` (ms).
//!   A save that changes nothing is not a change.
//! - `GET /api/changes?kind=K&after=<seq>&limit=N` (limit 1..=1000, default 100) →
//!   `{"records":[{"id","version","updated_at","record"}],"next":"<last seq>","more":bool}`: the
//!   latest state of each record changed after `seq`, ordered by its latest seq (keyset; an empty
//!   page returns `next` = `after`). The seq is assigned under the same lock as the write, so the
//!   feed has no gaps and needs no overlap.
//! - `GET /api/records?kind=K&after_id=<id>&limit=N` → `{"records":[...],"next":"<last id>"|null,
//!   "more":bool}` ordered by id (string order).
//! - Webhooks (when `webhook_url` is set): POST `{"events":[{"kind","id","version","record"}]}`
//!   with `Content-Type: application/json`, `X-Sandbox-Topic: <kind>` (one kind per POST) and
//!   `X-Sandbox-Signature: sha256=<hex HMAC-SHA256(body, webhook_secret)>` (omitted when no
//!   secret is set). In seq order, up to `webhook_batch` events per POST, sent at once when
//!   idle; retried after 100 ms, 400 ms, 1.6 s, then dropped (`webhooks_dropped`).
//! - Faults apply to `/api/*` only: latency, then `down` (503 "down for maintenance"), then every
//!   Nth request 429 with `Retry-After`, then `error_rate` 500s; `reply_delay_ms` holds the answer
//!   to a write that was applied. `set_down(true)` is a real outage:
//!   the listener is closed (connection refused) and `set_down(false)` re-binds the same port.
//! - `POST /_control/faults` (a [`Faults`] as JSON), `GET /_control/faults`,
//!   `GET /_control/counters` (a [`Counters`]).
//! - Writes are validated with `concord_core::validate`; invalid → 422 `{"error"}` naming the
//!   field; a malformed body → 400 naming the position.
//!
//! This module holds what both emulators share: [`Faults`], webhook signing ([`sign`],
//! [`verify_signature`]), the counters; `core` (fault middleware, write log, server lifecycle),
//! `feed` (the change feed and its routes) and `webhook` (the sender).
//!
//! Must never: touch Concord's store or engine runtime, or be used as a production endpoint.
//! The emulators keep everything in memory and forget it on shutdown.

pub mod client;
pub mod connector;
pub(crate) mod core;
pub(crate) mod customers;
pub mod erp;
pub(crate) mod feed;
pub mod shop;
pub(crate) mod webhook;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;

pub use self::core::WriteEntry;
pub use connector::{SandboxErpConnector, SandboxShopConnector};
pub use erp::{ErpHandle, ErpOptions, ErpSim};
pub use shop::{InventorySet, ShopError, ShopHandle, ShopOptions, ShopSim};

/// Header carrying the webhook's topic (the kind of its events).
pub const TOPIC_HEADER: &str = "X-Sandbox-Topic";
/// Header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Sandbox-Signature";

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
    /// the port refuses connections, use the handle's `set_down(true)`.)
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

/// A webhook signature check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {SIGNATURE_HEADER} header")]
    Missing,
    #[error("{SIGNATURE_HEADER} must look like `sha256=<hex>`")]
    Malformed,
    #[error("signature does not match the body")]
    Mismatch,
}

type HmacSha256 = Hmac<Sha256>;

/// `sha256=<hex HMAC-SHA256 of body with secret>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Check a signature header value against the body, in constant time.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let sig = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| SignatureError::Malformed)?;
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_round_trip_and_reject_tampering() {
        let s = sign(b"k", b"{\"a\":1}");
        assert!(s.starts_with("sha256="));
        assert_eq!(verify_signature(b"k", b"{\"a\":1}", Some(&s)), Ok(()));
        assert_eq!(
            verify_signature(b"k", b"{\"a\":2}", Some(&s)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"other", b"{\"a\":1}", Some(&s)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"k", b"x", None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(b"k", b"x", Some("md5=zz")),
            Err(SignatureError::Malformed)
        );
    }

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

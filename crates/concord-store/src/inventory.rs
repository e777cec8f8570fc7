//! Types of the stock ledger and reservations (design §5), as the [`crate::Store`] keeps them.
//!
//! The ledger holds, per (SKU, location), the ERP's `on_hand` and `committed`, its incoming lots,
//! and the hub's `held` (the sum of active reservation lines there). Reservations move
//! `held → committed → released`, `held → expired`, `held|committed → cancelled`; every line is
//! released exactly once (its `held` contribution removed once), and a committed line is released
//! only when an ERP figure newer than the order's acceptance arrives for its position.
//! The arithmetic (free, buffers, ats, routing) is `concord_core::inventory`, the ledger's
//! decisions over stored rows are `crate::ledger`'s; this module only describes what is stored.

use concord_core::inventory::{Line, Shortage};
use concord_core::Millis;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One ledger position as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StockLevel {
    pub sku: String,
    pub location: String,
    pub on_hand: i64,
    pub committed: i64,
    /// Sum of active (held or committed, not yet released) reservation lines on free stock.
    pub held: i64,
    /// Sum of active backorder lines (sold against incoming).
    pub backordered: i64,
    /// Incoming lots as the ERP reports them: `[{"quantity": n, "eta": "YYYY-MM-DD"}]`.
    pub incoming: Value,
    /// The ERP's version of this position (sequence or timestamp); `None` before the first
    /// update.
    pub version: Option<String>,
    pub updated_at: Millis,
}

/// An ERP figure for one position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelUpdate {
    pub sku: String,
    pub location: String,
    pub on_hand: i64,
    pub committed: i64,
    pub incoming: Value,
    /// The ERP's version. An update whose version is older than the stored one
    /// ([`compare_versions`]) is stale and changes nothing.
    pub version: String,
    /// When the hub captured it (for the time-based release fallback).
    pub captured_at: Millis,
}

/// What became of one [`LevelUpdate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LevelOutcome {
    Applied {
        /// Reservation lines released by this figure (the ERP now includes their orders).
        released: Vec<(String, i64)>,
        /// `free = on_hand − committed − held` after the update; negative = oversold risk.
        free: i64,
    },
    /// Older than what the ledger already has; nothing changed.
    Stale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ReservationState {
    /// Reserved at checkout; expires at `expires_at`.
    Held,
    /// The channel confirmed the order (`order` set); no expiry; waiting for the ERP to include it.
    Committed,
    /// Every line's quantity is now in the ERP's own figures.
    Released,
    Expired,
    Cancelled,
}

impl ReservationState {
    pub fn is_active(self) -> bool {
        matches!(self, ReservationState::Held | ReservationState::Committed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReservationLine {
    pub sku: String,
    pub location: String,
    pub quantity: i64,
    /// Sold against incoming stock.
    pub backorder: bool,
    /// When this line's `held` contribution was removed (released, expired or cancelled).
    pub released_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reservation {
    pub id: String,
    pub channel: String,
    /// The client's idempotency key (unique per channel).
    pub client_key: String,
    pub state: ReservationState,
    pub lines: Vec<ReservationLine>,
    /// The endpoint whose figures must include the order before release (the ERP).
    pub source: String,
    /// Canonical order key (`channel/number`) once committed.
    pub order: Option<String>,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub committed_at: Option<Millis>,
    /// When the ERP accepted the order, and its version then (the watermark a position's
    /// figure must pass for the line to be released).
    pub accepted_at: Option<Millis>,
    pub accepted_version: Option<String>,
    pub ended_at: Option<Millis>,
}

/// Where a SKU may be taken from for a channel, in routing priority order, with the buffer
/// that applies there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feed {
    pub location: String,
    pub buffer: i64,
}

/// A reservation request, with the channel's policy already resolved by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveRequest {
    /// Id to give the reservation if it is created.
    pub id: String,
    pub channel: String,
    pub client_key: String,
    pub lines: Vec<Line>,
    /// Per SKU of `lines`: the feeding locations in priority order with their buffers.
    pub feeds: Vec<(String, Vec<Feed>)>,
    /// Most units of one SKU outstanding as backorders at once (`None`: no backorders).
    pub backorder_limit: Option<i64>,
    pub source: String,
    pub now: Millis,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReserveOutcome {
    /// Reserved now.
    Reserved(Reservation),
    /// The client key was used before: the reservation it made, unchanged.
    Existing(Reservation),
    /// Not enough stock: nothing reserved.
    Short(Vec<Shortage>),
}

/// Why a reservation transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransitionError {
    NotFound,
    /// The reservation is in a state that does not allow it.
    WrongState(ReservationState),
}

/// A SKU whose channel figures must be recomputed, with the generation that marked it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirtySku {
    pub sku: String,
    pub generation: i64,
}

/// Order two ERP versions: the one order of versions, [`concord_core::version::compare`]
/// (integers of any length numerically, RFC 3339 date-times as instants, `None` for what
/// cannot be ordered). Every store implementation uses it for staleness and release watermarks,
/// so that they — and the engine — agree on which figure is newer. What a store does with
/// `None`: the figure is applied (it is not known to be stale) and a line is released by time
/// (`release_grace`), never by version.
pub use concord_core::version::compare as compare_versions;

#[cfg(test)]
mod tests {
    use super::compare_versions;
    use std::cmp::Ordering::*;

    #[test]
    fn versions_compare_only_when_comparable() {
        assert_eq!(compare_versions("9", "10"), Some(Less));
        assert_eq!(compare_versions("010", "10"), Some(Equal));
        assert_eq!(compare_versions("abc", "abc"), Some(Equal));
        assert_eq!(compare_versions("abc", "abd"), None);
        assert_eq!(compare_versions("10", "2024-01-01T00:00:00Z"), None);
        assert_eq!(
            compare_versions("2024-01-02T00:00:00Z", "2024-01-01T23:59:59Z"),
            Some(Greater)
        );
        assert_eq!(
            compare_versions("2024-01-01T00:00:00.120Z", "2024-01-01T00:00:00.119Z"),
            Some(Greater)
        );
        assert_eq!(
            compare_versions("2024-01-01T00:00:00.1Z", "2024-01-01T00:00:00Z"),
            Some(Greater),
            "fractions of any width"
        );
        assert_eq!(
            compare_versions("2024-01-01T10:00:00+02:00", "2024-01-01T09:00:00+00:00"),
            Some(Less),
            "instants, whatever the offsets"
        );
        assert_eq!(compare_versions("2024-01-01", "2024-01-02"), None);
    }
}

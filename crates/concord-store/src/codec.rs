//! Column encodings shared by every backend: enums as their snake_case names, kinds as
//! `Kind::as_str()`, JSON as TEXT, counts and limits as `i64`. Pure conversions only; each
//! backend's own `codec` adds its row reading on top.
//!
//! Must never panic on what a database holds: a bad value is a [`StoreError::Decode`], and
//! never change an encoding (both backends' stored data depend on it).

use crate::{DeadLetterState, Direction, ItemState, JournalStatus, StoreError};
use concord_core::Kind;
use serde_json::Value;

pub(crate) fn decode_err(what: impl std::fmt::Display) -> StoreError {
    StoreError::Decode(what.to_string())
}

pub(crate) fn kind(s: &str) -> Result<Kind, StoreError> {
    s.parse::<Kind>().map_err(decode_err)
}

pub(crate) fn json(s: &str) -> Result<Value, StoreError> {
    serde_json::from_str(s).map_err(|e| decode_err(format_args!("json: {e}")))
}

pub(crate) fn to_json(v: &Value) -> String {
    // Serialising a `Value` cannot fail: its keys are strings and it holds no non-finite floats.
    v.to_string()
}

/// A `usize` limit as SQLite's LIMIT operand (`-1` = none is never needed: saturate instead).
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn count(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| decode_err(format_args!("negative count {n}")))
}

pub(crate) fn attempts(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| decode_err(format_args!("attempts out of range: {n}")))
}

pub(crate) fn journal_status_str(s: JournalStatus) -> &'static str {
    match s {
        JournalStatus::Pending => "pending",
        JournalStatus::Processed => "processed",
        JournalStatus::Rejected => "rejected",
    }
}

pub(crate) fn journal_status(s: &str) -> Result<JournalStatus, StoreError> {
    match s {
        "pending" => Ok(JournalStatus::Pending),
        "processed" => Ok(JournalStatus::Processed),
        "rejected" => Ok(JournalStatus::Rejected),
        other => Err(decode_err(format_args!("journal status `{other}`"))),
    }
}

pub(crate) fn item_state_str(s: ItemState) -> &'static str {
    match s {
        ItemState::Pending => "pending",
        ItemState::Inflight => "inflight",
        ItemState::Parked => "parked",
        ItemState::Done => "done",
        ItemState::Dead => "dead",
    }
}

pub(crate) fn item_state(s: &str) -> Result<ItemState, StoreError> {
    match s {
        "pending" => Ok(ItemState::Pending),
        "inflight" => Ok(ItemState::Inflight),
        "parked" => Ok(ItemState::Parked),
        "done" => Ok(ItemState::Done),
        "dead" => Ok(ItemState::Dead),
        other => Err(decode_err(format_args!("item state `{other}`"))),
    }
}

pub(crate) fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

pub(crate) fn direction(s: &str) -> Result<Direction, StoreError> {
    match s {
        "inbound" => Ok(Direction::Inbound),
        "outbound" => Ok(Direction::Outbound),
        other => Err(decode_err(format_args!("dead-letter direction `{other}`"))),
    }
}

pub(crate) fn dl_state_str(s: DeadLetterState) -> &'static str {
    match s {
        DeadLetterState::Open => "open",
        DeadLetterState::Replayed => "replayed",
        DeadLetterState::Dropped => "dropped",
    }
}

pub(crate) fn dl_state(s: &str) -> Result<DeadLetterState, StoreError> {
    match s {
        "open" => Ok(DeadLetterState::Open),
        "replayed" => Ok(DeadLetterState::Replayed),
        "dropped" => Ok(DeadLetterState::Dropped),
        other => Err(decode_err(format_args!("dead-letter state `{other}`"))),
    }
}

pub(crate) fn reservation_state_str(s: crate::ReservationState) -> &'static str {
    use crate::ReservationState as S;
    match s {
        S::Held => "held",
        S::Committed => "committed",
        S::Released => "released",
        S::Expired => "expired",
        S::Cancelled => "cancelled",
    }
}

pub(crate) fn reservation_state(s: &str) -> Result<crate::ReservationState, StoreError> {
    use crate::ReservationState as S;
    match s {
        "held" => Ok(S::Held),
        "committed" => Ok(S::Committed),
        "released" => Ok(S::Released),
        "expired" => Ok(S::Expired),
        "cancelled" => Ok(S::Cancelled),
        other => Err(decode_err(format_args!("reservation state `{other}`"))),
    }
}

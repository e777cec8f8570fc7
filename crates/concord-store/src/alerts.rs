//! Alert episodes: the durable half of the engine's alerting (`concord-engine`'s
//! `runtime/alerts.rs` evaluates the rules and sends the notifications).
//!
//! An *episode* is one stretch of time during which a rule's condition held for one subject
//! (the whole hub, an endpoint, a `sku@location` position). At most one episode per
//! (rule, subject) is open at a time; opening is idempotent, so a restarted engine finds the
//! episode it already announced instead of starting (and announcing) a new one. Each episode
//! records whether its `firing` and its `resolved` notification were delivered, which is what
//! makes notifications exactly-once per episode across restarts (at least once on the wire:
//! a crash between the receiver's 2xx and the mark resends that one notification).
//!
//! This module only defines the records; it must never decide when a condition holds.

use concord_core::Millis;
use serde::{Deserialize, Serialize};

pub type AlertId = i64;

/// Which notification of an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertNotice {
    Firing,
    Resolved,
}

/// A condition that holds now, as the evaluator saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertObservation {
    pub rule: String,
    /// What the condition is about: `""` for the whole hub, an endpoint name, `sku@location`.
    pub subject: String,
    /// The measured value (count, seconds, units short).
    pub value: f64,
    /// One line for people.
    pub summary: String,
    /// When the condition started to hold (may be before `now` for a breaker that has been open
    /// a while); used only when a new episode opens.
    pub since: Millis,
}

/// One episode of a rule for one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEpisode {
    pub id: AlertId,
    pub rule: String,
    pub subject: String,
    /// When the condition started to hold.
    pub since: Millis,
    /// When it stopped; `None` while the episode is open (firing).
    pub resolved_at: Option<Millis>,
    /// The latest measured value while firing.
    pub value: f64,
    /// The latest summary while firing.
    pub summary: String,
    /// The `firing` notification was delivered.
    pub notified_firing: bool,
    /// The `resolved` notification was delivered.
    pub notified_resolved: bool,
    pub updated_at: Millis,
}

impl AlertEpisode {
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }

    /// The notifications of this episode not yet delivered, in the order they must go out.
    pub fn pending_notices(&self) -> Vec<AlertNotice> {
        let mut out = Vec::new();
        if !self.notified_firing {
            out.push(AlertNotice::Firing);
        }
        if self.resolved_at.is_some() && !self.notified_resolved {
            out.push(AlertNotice::Resolved);
        }
        out
    }
}

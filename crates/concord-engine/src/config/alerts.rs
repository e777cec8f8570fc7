//! `[alerts]`, checked: where notifications go, how often rules are evaluated, and the rules.
//! The run-time side is `runtime/alerts.rs`. Plain data: nothing here evaluates a rule, and the
//! webhook URL must never be quoted in an error or log (it can carry credentials).

use crate::secret::Secret;
use std::fmt;
use std::time::Duration;

/// `[alerts]`, checked. The default has no rules (nothing is evaluated). Its `Debug` shows only
/// the webhook's host.
#[derive(Clone, PartialEq)]
pub struct AlertsConfig {
    /// Where `firing` and `resolved` notifications are POSTed as JSON; `None`: alerts are only
    /// shown (dashboard, `/api/v1/alerts`, logs).
    pub webhook_url: Option<String>,
    /// Key of the `X-Concord-Signature` HMAC over each notification; `None`: unsigned.
    pub webhook_secret: Option<Secret>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rules: Vec<AlertRule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook_url: None,
            webhook_secret: None,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            rules: Vec::new(),
        }
    }
}

impl fmt::Debug for AlertsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertsConfig")
            .field(
                "webhook_url",
                &self.webhook_url.as_deref().map(crate::outbound::url_host),
            )
            .field("webhook_secret", &self.webhook_secret)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("rules", &self.rules)
            .finish()
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// Unique name, `[a-z0-9_-]+`; the episode's identity together with its subject.
    pub name: String,
    pub condition: AlertCondition,
    /// Only this endpoint (dead letters, lag, breaker); `None`: every endpoint (lag, breaker,
    /// one alert each) or the whole hub (dead letters).
    pub endpoint: Option<String>,
}

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlertCondition {
    /// More than `above` open dead letters.
    DeadLetters { above: u64 },
    /// A destination's oldest waiting item was captured more than `above` ago.
    Lag { above: Duration },
    /// An endpoint's circuit breaker has not been closed for longer than `longer_than`.
    BreakerOpen { longer_than: Duration },
    /// A stock position's on-hand is more than `above` units below what is committed and held.
    OversoldRisk { above: u64 },
    /// The latest reconciliation of a flow found more than `above` drifted keys at one
    /// destination (`runtime/reconcile`).
    Drift { above: u64 },
}

impl AlertCondition {
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertCondition::DeadLetters { .. } => "dead_letters",
            AlertCondition::Lag { .. } => "lag",
            AlertCondition::BreakerOpen { .. } => "breaker_open",
            AlertCondition::OversoldRisk { .. } => "oversold_risk",
            AlertCondition::Drift { .. } => "drift",
        }
    }

    /// The threshold in the unit of the rule's value (count, seconds, units).
    pub fn threshold(&self) -> f64 {
        match self {
            AlertCondition::DeadLetters { above }
            | AlertCondition::OversoldRisk { above }
            | AlertCondition::Drift { above } => *above as f64,
            AlertCondition::Lag { above } => above.as_secs_f64(),
            AlertCondition::BreakerOpen { longer_than } => longer_than.as_secs_f64(),
        }
    }
}

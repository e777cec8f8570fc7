//! Alerts: the `[alerts]` rules evaluated periodically, their episodes kept in the store, and
//! their notifications POSTed to the configured webhook.
//!
//! Every `interval` the evaluator measures each rule's condition (open dead letters from the
//! store's stats, each destination's oldest waiting item, each endpoint's circuit breaker as its
//! dispatcher reports it, stock positions whose ERP on-hand is below what is committed and
//! held) and turns what holds into observations. An observation opens an episode for its
//! (rule, subject) or updates the open one (`Store::observe_alert`, idempotent); an open
//! episode that nothing observed any more is resolved — including episodes of rules removed
//! from the config. Then every notification the store says is owed (`Store::unnotified_alerts`)
//! is sent, oldest first, and marked delivered only after the receiver answered 2xx; a failure
//! is retried with full-jitter exponential backoff (`concord_core::retry::Backoff`, 1 s doubling
//! to 5 min). Because the owed notifications live in the store, a restart neither repeats one
//! already delivered nor forgets one not yet delivered: one `firing` and one `resolved`
//! notification per episode.
//!
//! Notifications go through the shared outbound client (`crate::outbound`: redirects refused,
//! timeouts, the answer's body never read). With `[alerts] webhook_secret` each one carries
//! `X-Concord-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! ([`signature`]; a receiver checks it with [`verify_signature`]): the receiver can tell a
//! notification from this hub from anyone's POST, and refuse an old one replayed. Errors and
//! logs name the webhook by its host only (its path can itself be a secret).
//!
//! How long a breaker has been open is the one figure kept only in memory (like the breaker
//! itself); after a restart it counts from the first evaluation that sees it open.
//!
//! Must never block or slow the sync path: it only reads the store and the dispatchers' health,
//! and writes nothing but alert episodes.

use super::{EngineError, Inner};
use crate::config::{AlertCondition, AlertRule, AlertsConfig};
use concord_core::retry::Backoff;
use concord_core::Millis;
use concord_store::{
    AlertEpisode, AlertId, AlertNotice, AlertObservation, DeadLetterFilter, StoreError,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Retry delays of a notification the receiver did not accept.
const NOTIFY_BACKOFF: Backoff = Backoff {
    base_ms: 1_000,
    cap_ms: 300_000,
};

/// Most episodes looked at per evaluation (open ones) and per notification round.
const EPISODE_LIMIT: usize = 1_000;

/// The header carrying a notification's signature.
pub const SIGNATURE_HEADER: &str = "X-Concord-Signature";

/// The `X-Concord-Signature` value of `body` sent at `timestamp` (unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    // HMAC accepts a key of any length; `new_from_slice` cannot fail for it.
    let Ok(mut m) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return Vec::new();
    };
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Check a notification as a receiver should: the header parses, its HMAC matches (compared in
/// constant time), and its timestamp is within `tolerance_secs` of `now_secs` (older ones may
/// be replays). The error says which check failed.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), String> {
    use hmac::{Hmac, Mac};
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = hex::decode(x).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err("malformed signature header (expected t=<unix>,v1=<hex>)".into());
    };
    if now_secs.abs_diff(t) > tolerance_secs.unsigned_abs() {
        return Err(format!(
            "timestamp {t} is more than {tolerance_secs} s from now ({now_secs})"
        ));
    }
    let Ok(mut m) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return Err("unusable key".into());
    };
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.verify_slice(&v1)
        .map_err(|_| "signature does not match the body".to_string())
}

/// An alert as the admin API and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    /// The episode's id.
    pub id: AlertId,
    pub rule: String,
    /// `dead_letters`, `lag`, `breaker_open`, `oversold_risk` or `drift`; `None` when the rule is no
    /// longer configured.
    pub condition: Option<String>,
    /// `""` (the whole hub), an endpoint, or `sku@location`.
    pub subject: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// When the condition started to hold (ms since the epoch).
    pub since: Millis,
    pub resolved_at: Option<Millis>,
    /// The latest measured value (count, seconds or units).
    pub value: f64,
    /// The rule's threshold in the same unit; `None` when the rule is no longer configured.
    pub threshold: Option<f64>,
    pub summary: String,
    /// Every notification owed for this episode so far was delivered (or no webhook is set).
    pub notified: bool,
}

impl super::Engine {
    /// Firing alerts first (newest first), then recently resolved ones (most recent first); at
    /// most `limit`.
    pub async fn alerts(&self, limit: usize) -> Result<Vec<Alert>, EngineError> {
        let episodes = self.inner.store.alert_episodes(false, limit).await?;
        let cfg = &self.inner.config.alerts;
        Ok(episodes.into_iter().map(|e| view(cfg, e)).collect())
    }

    /// Evaluate every rule once now and send what is owed (tests; the engine does this every
    /// `[alerts] interval` on its own).
    pub async fn evaluate_alerts(&self) -> Result<(), EngineError> {
        let mut state = State::default();
        state.evaluate(&self.inner).await?;
        state.notify(&self.inner).await;
        Ok(())
    }
}

fn view(cfg: &AlertsConfig, e: AlertEpisode) -> Alert {
    let rule = cfg.rules.iter().find(|r| r.name == e.rule);
    let notified = e.pending_notices().is_empty();
    Alert {
        id: e.id,
        condition: rule.map(|r| r.condition.as_str().to_owned()),
        threshold: rule.map(|r| r.condition.threshold()),
        state: if e.is_open() { "firing" } else { "resolved" }.to_owned(),
        rule: e.rule,
        subject: e.subject,
        since: e.since,
        resolved_at: e.resolved_at,
        value: e.value,
        summary: e.summary,
        notified,
    }
}

/// The evaluator's memory between rounds.
#[derive(Default)]
struct State {
    /// Endpoint → when its breaker was first seen not closed (cleared when seen closed).
    breaker_open_since: BTreeMap<String, Millis>,
    /// Failed notifications: (episode, notice) → (failures so far, next attempt at).
    retries: BTreeMap<(AlertId, AlertNotice), (u32, Millis)>,
    client: Option<reqwest::Client>,
}

/// The evaluator task: evaluate every `interval`, send owed notifications in between as their
/// retries fall due, until shutdown.
pub(crate) async fn run(inner: Arc<Inner>) {
    let cfg = inner.config.alerts.clone();
    let mut state = State::default();
    let mut shutdown = inner.shutdown.subscribe();
    let mut next_eval = inner.now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = inner.now();
        if now >= next_eval {
            if let Err(e) = state.evaluate(&inner).await {
                tracing::warn!(error = %e, "alert evaluation failed; trying again next interval");
            }
            next_eval = inner.now() + cfg.interval.as_millis() as Millis;
        }
        // A slow receiver never holds up shutdown: a notification cut short is not marked
        // delivered and goes out again after the restart.
        let next_retry = tokio::select! {
            r = state.notify(&inner) => r,
            _ = shutdown.changed() => return,
        };
        let wake = next_retry.map_or(next_eval, |r| r.min(next_eval));
        let wait = (wake - inner.now()).clamp(10, 60_000) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

impl State {
    /// Measure every rule, open or update the episodes that hold, resolve the ones that stopped.
    async fn evaluate(&mut self, inner: &Inner) -> Result<(), StoreError> {
        let now = inner.now();
        let observed = self.observe(inner, now).await?;
        let open = inner.store.alert_episodes(true, EPISODE_LIMIT).await?;
        let was_open: BTreeSet<(&str, &str)> = open
            .iter()
            .map(|e| (e.rule.as_str(), e.subject.as_str()))
            .collect();
        let mut holding = BTreeSet::new();
        for o in observed {
            let new = !was_open.contains(&(o.rule.as_str(), o.subject.as_str()));
            holding.insert((o.rule.clone(), o.subject.clone()));
            let e = inner.store.observe_alert(o, now).await?;
            if new {
                tracing::warn!(rule = %e.rule, subject = %e.subject, "ALERT firing: {}", e.summary);
            }
        }
        metrics::gauge!("concord_alerts_firing").set(holding.len() as f64);
        for open in &open {
            if holding.contains(&(open.rule.clone(), open.subject.clone())) {
                continue;
            }
            if let Some(e) = inner
                .store
                .resolve_alert(&open.rule, &open.subject, now)
                .await?
            {
                tracing::info!(rule = %e.rule, subject = %e.subject, "alert resolved: {}", e.summary);
            }
        }
        Ok(())
    }

    async fn observe(
        &mut self,
        inner: &Inner,
        now: Millis,
    ) -> Result<Vec<AlertObservation>, StoreError> {
        let rules = &inner.config.alerts.rules;
        // Breakers are tracked whether or not a rule asks, so that `open_for` counts from the
        // first sighting.
        for ep in inner.endpoints.values() {
            if ep.health().breaker == "closed" {
                self.breaker_open_since.remove(&ep.name);
            } else {
                self.breaker_open_since
                    .entry(ep.name.clone())
                    .or_insert(now);
            }
        }
        let mut out = Vec::new();
        let needs_stats = rules.iter().any(|r| {
            matches!(
                r.condition,
                AlertCondition::Lag { .. } | AlertCondition::DeadLetters { .. }
            )
        });
        let stats = if needs_stats {
            Some(inner.store.stats().await?)
        } else {
            None
        };
        for rule in rules {
            let obs =
                |subject: &str, value: f64, summary: String, since: Millis| AlertObservation {
                    rule: rule.name.clone(),
                    subject: subject.to_owned(),
                    value,
                    summary,
                    since,
                };
            match rule.condition {
                AlertCondition::DeadLetters { above } => {
                    let n = match &rule.endpoint {
                        None => stats.as_ref().map_or(0, |s| s.dead_letters_open),
                        Some(ep) => inner
                            .store
                            .dead_letters(DeadLetterFilter {
                                endpoint: Some(ep.clone()),
                                limit: Some(100_000),
                                ..DeadLetterFilter::default()
                            })
                            .await?
                            .len() as u64,
                    };
                    if n > above {
                        let at = rule
                            .endpoint
                            .as_ref()
                            .map(|e| format!(" at {e}"))
                            .unwrap_or_default();
                        out.push(obs(
                            rule.endpoint.as_deref().unwrap_or(""),
                            n as f64,
                            format!("{n} open dead letter(s){at} (alert above {above})"),
                            now,
                        ));
                    }
                }
                AlertCondition::Lag { above } => {
                    for q in stats.iter().flat_map(|s| &s.queues) {
                        if !applies(rule, &q.dest) {
                            continue;
                        }
                        let Some(oldest) = q.oldest_captured_at else {
                            continue;
                        };
                        let lag_ms = (now - oldest).max(0);
                        if lag_ms as u128 > above.as_millis() {
                            out.push(obs(
                                &q.dest,
                                lag_ms as f64 / 1000.0,
                                format!(
                                    "{} is {} behind: its oldest waiting item was captured then ({} waiting, alert above {})",
                                    q.dest,
                                    human(lag_ms),
                                    q.pending + q.inflight + q.parked,
                                    humantime::format_duration(above)
                                ),
                                oldest + above.as_millis() as Millis,
                            ));
                        }
                    }
                }
                AlertCondition::BreakerOpen { longer_than } => {
                    for (ep, since) in &self.breaker_open_since {
                        if !applies(rule, ep) {
                            continue;
                        }
                        let open_ms = now - since;
                        if open_ms as u128 >= longer_than.as_millis() {
                            out.push(obs(
                                ep,
                                open_ms as f64 / 1000.0,
                                format!(
                                    "the circuit breaker of {ep} has been open for {} (alert after {})",
                                    human(open_ms),
                                    humantime::format_duration(longer_than)
                                ),
                                *since,
                            ));
                        }
                    }
                }
                AlertCondition::Drift { above } => {
                    for ((flow, dest), n) in inner.drift.latest() {
                        if !applies(rule, &dest) || n <= above {
                            continue;
                        }
                        out.push(obs(
                            &format!("{flow}:{dest}"),
                            n as f64,
                            format!(
                                "the latest reconciliation of flow `{flow}` found {n} drifted key(s) at {dest} (alert above {above}): GET /api/v1/reconcile"
                            ),
                            now,
                        ));
                    }
                }
                AlertCondition::OversoldRisk { above } => {
                    let positions = match inner.store.oversold_positions(EPISODE_LIMIT).await {
                        Ok(p) => p,
                        Err(StoreError::Unsupported(_)) => Vec::new(),
                        Err(e) => return Err(e),
                    };
                    for l in positions {
                        let short = l.committed + l.held - l.on_hand;
                        if short > 0 && short as u64 > above {
                            out.push(obs(
                                &format!("{}@{}", l.sku, l.location),
                                short as f64,
                                format!(
                                    "oversold risk: {} at {}: the ERP's on hand {} is {short} below committed {} + held {}",
                                    l.sku, l.location, l.on_hand, l.committed, l.held
                                ),
                                now,
                            ));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Send every owed notification whose retry is due. Returns when the next retry is due.
    async fn notify(&mut self, inner: &Inner) -> Option<Millis> {
        let cfg = &inner.config.alerts;
        let owed = match inner.store.unnotified_alerts(EPISODE_LIMIT).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "could not read owed alert notifications");
                return None;
            }
        };
        let owed_keys: BTreeSet<(AlertId, AlertNotice)> = owed
            .iter()
            .flat_map(|e| e.pending_notices().into_iter().map(move |n| (e.id, n)))
            .collect();
        self.retries.retain(|k, _| owed_keys.contains(k));
        let mut next_retry: Option<Millis> = None;
        for e in owed {
            for notice in e.pending_notices() {
                let now = inner.now();
                let Some(url) = &cfg.webhook_url else {
                    // Nothing to deliver to: shown only (log, API, dashboard).
                    let _ = inner.store.mark_alert_notified(e.id, notice, now).await;
                    continue;
                };
                if let Some((_, at)) = self.retries.get(&(e.id, notice)) {
                    if *at > now {
                        next_retry = Some(next_retry.map_or(*at, |n| n.min(*at)));
                        // Keep the order within an episode: no resolved before its firing.
                        break;
                    }
                }
                let body = payload(cfg, &e, notice);
                match self
                    .post(url, cfg.webhook_secret.as_ref(), cfg.timeout, &body)
                    .await
                {
                    Ok(()) => {
                        self.retries.remove(&(e.id, notice));
                        if let Err(err) = inner
                            .store
                            .mark_alert_notified(e.id, notice, inner.now())
                            .await
                        {
                            tracing::warn!(error = %err, episode = e.id, "alert notification sent but not recorded; it may be sent again");
                        }
                    }
                    Err(why) => {
                        let failures = self.retries.get(&(e.id, notice)).map_or(0, |r| r.0);
                        let at =
                            NOTIFY_BACKOFF.next_attempt_at(now, failures, fastrand::f64(), None);
                        tracing::warn!(episode = e.id, rule = %e.rule, attempt = failures + 1,
                            "alert notification not accepted ({why}); retrying in {} ms", at - now);
                        self.retries.insert((e.id, notice), (failures + 1, at));
                        next_retry = Some(next_retry.map_or(at, |n| n.min(at)));
                        break;
                    }
                }
            }
        }
        next_retry
    }

    /// POST one notification (signed when a secret is set). The reason of a failure names the
    /// webhook by its host only.
    async fn post(
        &mut self,
        url: &str,
        secret: Option<&crate::secret::Secret>,
        timeout: Duration,
        body: &Value,
    ) -> Result<(), String> {
        let host = crate::outbound::url_host(url);
        let client = match &self.client {
            Some(c) => c.clone(),
            None => {
                let c = crate::outbound::client(timeout).map_err(|e| e.to_string())?;
                self.client = Some(c.clone());
                c
            }
        };
        let bytes = serde_json::to_vec(body).map_err(|e| format!("encoding: {e}"))?;
        let mut req = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = secret {
            // Wall-clock time, not the engine's clock: the receiver compares it with its own.
            let now = chrono::Utc::now().timestamp();
            req = req.header(
                SIGNATURE_HEADER,
                signature(secret.expose().as_bytes(), now, &bytes),
            );
        }
        // The receiver's answer body is never needed: nothing of it is read.
        let resp = req.body(bytes).send().await.map_err(|e| {
            // Only the host: the URL's path or query may be the webhook's secret.
            let kind = match crate::outbound::error(&e) {
                crate::outbound::OutboundError::Timeout(_) => "timed out",
                crate::outbound::OutboundError::Connect(_) => "cannot connect",
                _ => "request failed",
            };
            format!("{kind} (webhook at {host})")
        })?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            Err(format!(
                "HTTP {status} from the webhook at {host}: redirects are never followed; set webhook_url to the final address"
            ))
        } else {
            Err(format!("HTTP {status} from the webhook at {host}"))
        }
    }
}

fn applies(rule: &AlertRule, endpoint: &str) -> bool {
    rule.endpoint.as_deref().is_none_or(|e| e == endpoint)
}

/// `1234` → `"1.2s"`, `61_000` → `"1m 1s"`.
fn human(ms: i64) -> String {
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        humantime::format_duration(Duration::from_secs((ms / 1000) as u64)).to_string()
    }
}

fn rfc3339(ms: Millis) -> Value {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

/// The JSON body of a notification (documented on `RawAlerts`).
fn payload(cfg: &AlertsConfig, e: &AlertEpisode, notice: AlertNotice) -> Value {
    let rule = cfg.rules.iter().find(|r| r.name == e.rule);
    json!({
        "status": match notice { AlertNotice::Firing => "firing", AlertNotice::Resolved => "resolved" },
        "episode": e.id,
        "rule": e.rule,
        "condition": rule.map(|r| r.condition.as_str()),
        "subject": e.subject,
        "summary": e.summary,
        "value": e.value,
        "threshold": rule.map(|r| r.condition.threshold()),
        "since": rfc3339(e.since),
        "resolved_at": match notice {
            AlertNotice::Firing => Value::Null,
            AlertNotice::Resolved => e.resolved_at.map(rfc3339).unwrap_or(Value::Null),
        },
    })
}

//! The delivery state of one destination endpoint: its circuit breaker, pacing
//! ([`super::limits`]), in-flight count, pause (Retry-After, 429), backoff and attempt limits,
//! and the health figures the admin API shows; and [`InFlight`], the guard that gives the
//! in-flight count back however a delivery ends.
//!
//! Must never decide an outcome: the dispatcher (`super`) settles deliveries; this only keeps
//! the figures they are decided with.

use super::limits::{Aimd, Bucket};
use crate::config::EngineSettings;
use crate::connector::Connector;
use crate::runtime::EndpointHealth;
use concord_core::retry::{Admit, Backoff, Breaker, BreakerConfig};
use concord_core::Millis;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Delivery state of one destination endpoint.
pub(crate) struct EndpointRuntime {
    pub name: String,
    pub connector: Arc<dyn Connector>,
    pub notify: Notify,
    pub(super) breaker: Mutex<Breaker>,
    pub(super) aimd: Mutex<Aimd>,
    pub(super) bucket: Option<Mutex<Bucket>>,
    pub(super) inflight: AtomicUsize,
    pub(super) paused_until: AtomicI64,
    pub(super) last_success: AtomicI64,
    pub(super) last_error: Mutex<Option<String>>,
    pub(super) rate_limited: AtomicU64,
    pub(super) backoff: Backoff,
    pub(super) max_attempts: u32,
    pub(super) lease: Duration,
    /// `[engine] retry_after_max`: the longest `Retry-After` honoured.
    retry_after_max: Duration,
}

impl EndpointRuntime {
    pub fn new(name: String, connector: Arc<dyn Connector>, s: &EngineSettings) -> Self {
        let profile = connector.capabilities().rate_limit;
        let max = profile
            .max_concurrency
            .map(|m| m.min(s.endpoint_concurrency))
            .unwrap_or(s.endpoint_concurrency);
        let bucket = profile
            .requests_per_sec
            .filter(|r| *r > 0.0)
            .map(|per_sec| {
                Mutex::new(Bucket {
                    per_sec,
                    tokens: per_sec.max(1.0),
                    last: Instant::now(),
                })
            });
        let mut aimd = Aimd::new(max);
        if !profile.adaptive {
            aimd.limit = aimd.max;
        }
        EndpointRuntime {
            name,
            connector,
            notify: Notify::new(),
            breaker: Mutex::new(Breaker::new(BreakerConfig {
                failure_threshold: s.breaker_threshold.max(1),
                open_ms: s.breaker_open.as_millis() as u64,
                max_open_ms: s.breaker_max_open.as_millis() as u64,
            })),
            aimd: Mutex::new(aimd),
            bucket,
            inflight: AtomicUsize::new(0),
            paused_until: AtomicI64::new(0),
            last_success: AtomicI64::new(0),
            last_error: Mutex::new(None),
            rate_limited: AtomicU64::new(0),
            backoff: Backoff {
                base_ms: s.backoff_base.as_millis() as u64,
                cap_ms: s.backoff_cap.as_millis() as u64,
            },
            max_attempts: s.max_attempts.max(1),
            lease: s.lease,
            retry_after_max: s.retry_after_max,
        }
    }

    /// How long to honour an endpoint's `Retry-After`, in ms: cut to `[engine]
    /// retry_after_max`, whatever a connector reported.
    pub(super) fn retry_after_ms(&self, retry_after: Option<Duration>) -> Option<i64> {
        retry_after
            .map(|d| i64::try_from(d.min(self.retry_after_max).as_millis()).unwrap_or(i64::MAX))
    }

    /// How long a read of this endpoint outside delivery (reconciliation, `runtime/reconcile`)
    /// must wait first: the same request budget (token bucket, a token taken) and the same
    /// pause after a 429 or `Retry-After` as its deliveries, so reads and writes share one
    /// budget.
    pub(crate) fn read_wait(&self, now: Millis) -> Duration {
        let paused = self.paused_until.load(Ordering::Relaxed);
        let pause = Duration::from_millis(u64::try_from(paused.saturating_sub(now)).unwrap_or(0));
        let budget = self
            .bucket
            .as_ref()
            .and_then(|b| b.lock().ok().map(|mut b| b.wait()))
            .unwrap_or_default();
        pause.max(budget)
    }

    /// A read was answered "slow down": pause this endpoint's deliveries too until `until`.
    pub(crate) fn read_rate_limited(&self, until: Millis) {
        self.paused_until.fetch_max(until, Ordering::Relaxed);
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub fn health(&self) -> EndpointHealth {
        let breaker = self
            .breaker
            .lock()
            .map(|b| match b.state {
                concord_core::retry::BreakerState::Closed { .. } => "closed",
                concord_core::retry::BreakerState::Open { .. } => "open",
                concord_core::retry::BreakerState::HalfOpen { .. } => "half_open",
            })
            .unwrap_or("unknown")
            .to_string();
        let paused = self.paused_until.load(Ordering::Relaxed);
        let last = self.last_success.load(Ordering::Relaxed);
        EndpointHealth {
            endpoint: self.name.clone(),
            breaker,
            concurrency_limit: self.aimd.lock().map(|a| a.limit).unwrap_or(1.0),
            inflight: self.inflight.load(Ordering::Relaxed),
            paused_until: (paused > 0).then_some(paused),
            last_success: (last > 0).then_some(last),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }

    /// A half-open probe ended without a verdict on the endpoint's health (nothing to probe
    /// with, or only back-pressure): let the next admission probe again. Without this the
    /// breaker would stay half-open with a probe "in flight" forever and admit nothing.
    pub(super) fn release_probe(&self) {
        if let Ok(mut b) = self.breaker.lock() {
            if let concord_core::retry::BreakerState::HalfOpen { open_ms, .. } = b.state {
                b.state = concord_core::retry::BreakerState::HalfOpen {
                    probing: false,
                    open_ms,
                };
            }
        }
    }

    pub(super) fn admit(&self, now: Millis) -> Admit {
        self.breaker
            .lock()
            .map(|mut b| b.admit(now))
            .unwrap_or(Admit::Yes)
    }
}

/// One delivery in flight at an endpoint, counted in `EndpointRuntime::inflight` from
/// [`InFlight::start`] until the guard is dropped — however the delivery ends: settled, an
/// early return, a panic, or its task dropped unpolled at shutdown. The count limits
/// concurrency and gates shutdown, so a count that leaked would stall the endpoint for good.
pub(crate) struct InFlight {
    ep: Arc<EndpointRuntime>,
    /// This delivery is the breaker's half-open probe and has not given its verdict yet.
    probe: bool,
}

impl InFlight {
    pub(crate) fn start(ep: &Arc<EndpointRuntime>, probe: bool) -> InFlight {
        ep.inflight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            ep: Arc::clone(ep),
            probe,
        }
    }

    /// The delivery ran to its end (its outcomes were given to the breaker).
    pub(super) fn finished(mut self) {
        self.probe = false;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.probe {
            // A probe that ended without a verdict: let the breaker probe again.
            self.ep.release_probe();
        }
        self.ep.inflight.fetch_sub(1, Ordering::AcqRel);
        self.ep.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::{WriteOp, WriteOutcome};

    /// A connector that is never called: the guard test only needs an endpoint runtime.
    struct Idle;

    #[async_trait::async_trait]
    impl Connector for Idle {
        fn connector_type(&self) -> &'static str {
            "idle"
        }
        fn capabilities(&self) -> crate::connector::Capabilities {
            crate::connector::Capabilities::default()
        }
        async fn write(&self, ops: Vec<WriteOp>) -> Vec<WriteOutcome> {
            ops.iter().map(|_| WriteOutcome::NoMatch).collect()
        }
    }

    fn endpoint() -> Arc<EndpointRuntime> {
        Arc::new(EndpointRuntime::new(
            "ep".into(),
            Arc::new(Idle),
            &EngineSettings::default(),
        ))
    }

    /// Issue 12: a delivery task that panicked never gave its in-flight count back. The guard
    /// gives it back however the delivery ends: finished, panicked, returned early, or its task
    /// dropped before it ever ran; a probe that ends without a verdict frees the breaker.
    #[tokio::test]
    async fn the_inflight_count_returns_to_zero_however_a_delivery_ends() {
        let ep = endpoint();
        // Finished normally.
        let g = InFlight::start(&ep, false);
        assert_eq!(ep.inflight.load(Ordering::Acquire), 1);
        g.finished();
        assert_eq!(ep.inflight.load(Ordering::Acquire), 0);
        // Panicked inside its task.
        let g = InFlight::start(&ep, false);
        let task = tokio::spawn(async move {
            let _g = g;
            panic!("a delivery bug");
        });
        assert!(task.await.unwrap_err().is_panic());
        assert_eq!(ep.inflight.load(Ordering::Acquire), 0);
        // An early return that never reaches `finished`.
        let early = |ep: &Arc<EndpointRuntime>| -> Result<(), &'static str> {
            let g = InFlight::start(ep, false);
            Err("bail")?;
            g.finished();
            Ok(())
        };
        assert!(early(&ep).is_err());
        assert_eq!(ep.inflight.load(Ordering::Acquire), 0);
        // Its task dropped unpolled (a runtime shutting down).
        let g = InFlight::start(&ep, false);
        drop(async move {
            let _g = g;
        });
        assert_eq!(ep.inflight.load(Ordering::Acquire), 0);
        // Several at once, some panicking.
        let mut tasks = Vec::new();
        for i in 0..16 {
            let g = InFlight::start(&ep, false);
            tasks.push(tokio::spawn(async move {
                tokio::task::yield_now().await;
                assert!(i % 2 == 0, "odd deliveries panic");
                g.finished();
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        assert_eq!(ep.inflight.load(Ordering::Acquire), 0);
        // A half-open probe that panicked lets the breaker probe again.
        if let Ok(mut b) = ep.breaker.lock() {
            b.state = concord_core::retry::BreakerState::HalfOpen {
                probing: true,
                open_ms: 1_000,
            };
        }
        let g = InFlight::start(&ep, true);
        let _ = tokio::spawn(async move {
            let _g = g;
            panic!("the probe's delivery panicked");
        })
        .await;
        assert_eq!(ep.inflight.load(Ordering::Acquire), 0);
        assert!(matches!(
            ep.breaker.lock().unwrap().state,
            concord_core::retry::BreakerState::HalfOpen { probing: false, .. }
        ));
    }
}

//! Retry arithmetic: exponential backoff with full jitter and a circuit breaker. Pure: time comes
//! in as [`Millis`], randomness as a number in `[0, 1)`. The engine owns the clock and the random
//! source; this module never sleeps.

use crate::Millis;

/// Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
/// Jitter"): `delay = random(0, min(cap, base * 2^attempt))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_ms: u64,
    pub cap_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 200,
            cap_ms: 30_000,
        }
    }
}

impl Backoff {
    /// The ceiling of the delay after `attempt` failures (attempt 0 = first retry).
    pub fn ceiling_ms(&self, attempt: u32) -> u64 {
        let exp = self.base_ms.saturating_mul(1u64 << attempt.min(40));
        exp.min(self.cap_ms)
    }

    /// Full-jitter delay; `rand01` must be in `[0, 1)`.
    pub fn delay_ms(&self, attempt: u32, rand01: f64) -> u64 {
        let r = rand01.clamp(0.0, 1.0);
        (self.ceiling_ms(attempt) as f64 * r) as u64
    }

    /// When to try again: a server's Retry-After wins over our own backoff when it is given.
    pub fn next_attempt_at(
        &self,
        now: Millis,
        attempt: u32,
        rand01: f64,
        retry_after_ms: Option<u64>,
    ) -> Millis {
        let wait = match retry_after_ms {
            Some(ra) => ra,
            None => self.delay_ms(attempt, rand01),
        };
        // Saturating: a `wait` beyond i64 would turn negative with `as` (due at once).
        now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// First open period; doubles on each failed probe up to `max_open_ms`.
    pub open_ms: u64,
    pub max_open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_ms: 1_000,
            max_open_ms: 30_000,
        }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Millis,
        open_ms: u64,
    },
    /// One probe is allowed through; its outcome closes or reopens the breaker.
    HalfOpen {
        probing: bool,
        open_ms: u64,
    },
}

/// What the breaker lets through now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Normal traffic.
    Yes,
    /// A single probe; the caller must report its outcome.
    Probe,
    /// Nothing until `until`.
    No { until: Millis },
}

/// A per-endpoint circuit breaker (closed → open → half-open → closed).
#[derive(Debug, Clone)]
pub struct Breaker {
    pub config: BreakerConfig,
    pub state: BreakerState,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            state: BreakerState::Closed { failures: 0 },
        }
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, BreakerState::Closed { .. })
    }

    pub fn admit(&mut self, now: Millis) -> Admit {
        match self.state {
            BreakerState::Closed { .. } => Admit::Yes,
            BreakerState::Open { until, open_ms } => {
                if now >= until {
                    self.state = BreakerState::HalfOpen {
                        probing: true,
                        open_ms,
                    };
                    Admit::Probe
                } else {
                    Admit::No { until }
                }
            }
            BreakerState::HalfOpen { probing, open_ms } => {
                if probing {
                    Admit::No {
                        until: now + 50.min(open_ms as i64),
                    }
                } else {
                    self.state = BreakerState::HalfOpen {
                        probing: true,
                        open_ms,
                    };
                    Admit::Probe
                }
            }
        }
    }

    /// Returns true when this success closed an open breaker.
    pub fn on_success(&mut self) -> bool {
        let was_open = self.is_open();
        self.state = BreakerState::Closed { failures: 0 };
        was_open
    }

    /// Record a failure that says the endpoint is unwell (timeout, 5xx, connection refused).
    /// Returns true when this failure opened the breaker.
    pub fn on_failure(&mut self, now: Millis) -> bool {
        match self.state {
            BreakerState::Closed { failures } => {
                let failures = failures + 1;
                if failures >= self.config.failure_threshold {
                    let open_ms = self.config.open_ms;
                    self.state = BreakerState::Open {
                        until: now + open_ms as i64,
                        open_ms,
                    };
                    true
                } else {
                    self.state = BreakerState::Closed { failures };
                    false
                }
            }
            BreakerState::HalfOpen { open_ms, .. } => {
                let open_ms = (open_ms * 2).min(self.config.max_open_ms);
                self.state = BreakerState::Open {
                    until: now + open_ms as i64,
                    open_ms,
                };
                false
            }
            BreakerState::Open { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn retry_after_wins_over_backoff() {
        let b = Backoff::default();
        assert_eq!(b.next_attempt_at(1_000, 3, 0.99, Some(2_000)), 3_000);
        assert!(b.next_attempt_at(1_000, 3, 0.5, None) <= 1_000 + 1_600);
    }

    proptest! {
        /// A wait of any length is never due before now (a `u64` past `i64` used to wrap).
        #[test]
        fn the_next_attempt_is_never_before_now(now in 0i64..=i64::MAX, ra in any::<u64>()) {
            let b = Backoff::default();
            prop_assert!(b.next_attempt_at(now, 0, 0.5, Some(ra)) >= now);
        }
    }

    proptest! {
        #[test]
        fn full_jitter_stays_within_the_capped_ceiling(attempt in 0u32..100, r in 0.0f64..1.0) {
            let b = Backoff { base_ms: 100, cap_ms: 10_000 };
            let d = b.delay_ms(attempt, r);
            prop_assert!(d <= b.ceiling_ms(attempt));
            prop_assert!(b.ceiling_ms(attempt) <= 10_000);
            prop_assert!(b.ceiling_ms(attempt) >= b.ceiling_ms(attempt.saturating_sub(1)));
        }
    }

    #[test]
    fn breaker_opens_probes_and_recovers() {
        let mut br = Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_ms: 1_000,
            max_open_ms: 4_000,
        });
        assert_eq!(br.admit(0), Admit::Yes);
        assert!(!br.on_failure(0));
        assert!(!br.on_failure(0));
        assert!(br.on_failure(10));
        assert_eq!(br.admit(500), Admit::No { until: 1_010 });
        assert_eq!(br.admit(1_010), Admit::Probe);
        assert!(
            matches!(br.admit(1_011), Admit::No { .. }),
            "one probe at a time"
        );
        br.on_failure(1_020); // failed probe: open again, twice as long
        assert_eq!(
            br.state,
            BreakerState::Open {
                until: 3_020,
                open_ms: 2_000
            }
        );
        assert_eq!(br.admit(3_020), Admit::Probe);
        assert!(br.on_success());
        assert_eq!(br.admit(3_021), Admit::Yes);
    }
}

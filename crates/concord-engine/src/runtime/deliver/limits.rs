//! The two pacing controls of a destination, pure and clock-driven only through `Instant`:
//! adaptive concurrency (AIMD, Vector's way) and a token bucket for APIs that publish a request
//! budget.
//!
//! Must never sleep or block: they only say how many deliveries may be in flight and how long
//! the next request should wait; the dispatcher does the waiting.

use std::time::{Duration, Instant};

/// Adaptive concurrency: additive increase while round-trip times stay normal and the limit is
/// in use, multiplicative decrease (×0.9) on back-pressure or a round-trip time beyond mean +
/// 2.5 σ (Vector's `adaptive_concurrency` controller, simplified to per-response updates).
#[derive(Debug, Clone)]
pub(super) struct Aimd {
    pub limit: f64,
    pub max: f64,
    mean_ms: f64,
    var_ms: f64,
    samples: u64,
    last_decrease: Option<Instant>,
}

impl Aimd {
    pub fn new(max: usize) -> Self {
        Aimd {
            limit: 1.0,
            max: max.max(1) as f64,
            mean_ms: 0.0,
            var_ms: 0.0,
            samples: 0,
            last_decrease: None,
        }
    }

    pub fn permits(&self) -> usize {
        self.limit.floor().max(1.0) as usize
    }

    pub fn on_response(&mut self, rtt_ms: f64, back_pressure: bool, saturated: bool) {
        let too_slow = self.samples >= 5 && rtt_ms > self.mean_ms + 2.5 * self.var_ms.sqrt() + 1.0;
        // Exponentially weighted mean and variance of the round-trip time.
        let alpha = 0.1;
        if self.samples == 0 {
            self.mean_ms = rtt_ms;
        } else {
            let diff = rtt_ms - self.mean_ms;
            self.mean_ms += alpha * diff;
            self.var_ms = (1.0 - alpha) * (self.var_ms + alpha * diff * diff);
        }
        self.samples += 1;
        if back_pressure || too_slow {
            // At most one decrease per 100 ms: a burst of failures from one window is one signal.
            let recent = self
                .last_decrease
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100));
            if !recent {
                self.limit = (self.limit * 0.9).max(1.0);
                self.last_decrease = Some(Instant::now());
            }
        } else if saturated {
            self.limit = (self.limit + 1.0 / self.limit).min(self.max);
        }
    }
}

/// A token bucket for APIs that publish a request budget.
#[derive(Debug)]
pub(super) struct Bucket {
    pub(super) per_sec: f64,
    pub(super) tokens: f64,
    pub(super) last: Instant,
}

impl Bucket {
    /// How long to wait before a request may go out (and take its token if zero).
    pub(super) fn wait(&mut self) -> Duration {
        let now = Instant::now();
        let burst = self.per_sec.max(1.0);
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_sec).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Duration::ZERO
        } else {
            // Bounded (and never a panic) whatever budget a connector declares.
            Duration::try_from_secs_f64((1.0 - self.tokens) / self.per_sec)
                .unwrap_or(Duration::MAX)
                .min(Duration::from_secs(3600))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aimd_grows_when_saturated_and_backs_off_on_pressure() {
        let mut a = Aimd::new(8);
        for _ in 0..50 {
            a.on_response(10.0, false, true);
        }
        assert!(a.limit > 4.0, "limit grew to {}", a.limit);
        let before = a.limit;
        a.on_response(10.0, true, true);
        assert!((a.limit - before * 0.9).abs() < 1e-9);
        a.on_response(10.0, true, true);
        assert!(
            (a.limit - before * 0.9).abs() < 1e-9,
            "one decrease per window"
        );
        let mut idle = Aimd::new(8);
        for _ in 0..50 {
            idle.on_response(10.0, false, false);
        }
        assert_eq!(idle.limit, 1.0, "no growth without saturation");
    }
}

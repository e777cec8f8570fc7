//! In-process counters and the lag window behind the demo's one-line summary, `concord status`
//! and the Prometheus metrics. Must never block the delivery path: plain atomics and one short
//! mutex around the lag samples.

use concord_core::Millis;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const LAG_SAMPLES: usize = 20_000;

/// Counters since this process started.
#[derive(Debug, Default)]
pub struct Stats {
    pub captured: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub processed: AtomicU64,
    pub planned: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub rate_limited: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub skipped: AtomicU64,
    pub conflicts: AtomicU64,
    pub poll_errors: AtomicU64,
    pub api_calls: AtomicU64,
    /// Write requests to destinations (one per batch handed to a connector; a part of
    /// `api_calls`, which also counts reads).
    pub write_calls: AtomicU64,
    lags: Mutex<VecDeque<(Millis, u64)>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsSnapshot {
    pub captured: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub processed: u64,
    pub planned: u64,
    pub delivered: u64,
    pub retried: u64,
    pub rate_limited: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    pub conflicts: u64,
    pub poll_errors: u64,
    pub api_calls: u64,
    pub write_calls: u64,
    /// Capture-to-delivery lag over the recent window, in milliseconds.
    pub lag_p50_ms: u64,
    pub lag_p99_ms: u64,
    pub lag_max_ms: u64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn record_lag(&self, now: Millis, lag_ms: u64) {
        if let Ok(mut lags) = self.lags.lock() {
            if lags.len() >= LAG_SAMPLES {
                lags.pop_front();
            }
            lags.push_back((now, lag_ms));
        }
    }

    /// Counters, with lag percentiles over samples newer than `since` (all when `None`).
    pub fn snapshot(&self, since: Option<Millis>) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut lags: Vec<u64> = self
            .lags
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(at, _)| since.is_none_or(|s| *at >= s))
                    .map(|(_, lag)| *lag)
                    .collect()
            })
            .unwrap_or_default();
        lags.sort_unstable();
        let pct = |p: f64| -> u64 {
            if lags.is_empty() {
                0
            } else {
                let idx = ((lags.len() as f64 - 1.0) * p).round() as usize;
                lags[idx.min(lags.len() - 1)]
            }
        };
        StatsSnapshot {
            captured: g(&self.captured),
            duplicates: g(&self.duplicates),
            rejected: g(&self.rejected),
            processed: g(&self.processed),
            planned: g(&self.planned),
            delivered: g(&self.delivered),
            retried: g(&self.retried),
            rate_limited: g(&self.rate_limited),
            dead_lettered: g(&self.dead_lettered),
            skipped: g(&self.skipped),
            conflicts: g(&self.conflicts),
            poll_errors: g(&self.poll_errors),
            api_calls: g(&self.api_calls),
            write_calls: g(&self.write_calls),
            lag_p50_ms: pct(0.50),
            lag_p99_ms: pct(0.99),
            lag_max_ms: lags.last().copied().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_over_a_window() {
        let s = Stats::default();
        for i in 1..=100 {
            s.record_lag(i, i as u64);
        }
        let all = s.snapshot(None);
        assert_eq!(
            (all.lag_p50_ms, all.lag_p99_ms, all.lag_max_ms),
            (51, 99, 100)
        );
        let recent = s.snapshot(Some(91));
        assert_eq!(recent.lag_max_ms, 100);
        assert_eq!(recent.lag_p50_ms, 96);
    }
}

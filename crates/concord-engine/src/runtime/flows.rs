//! Per-flow operator state: paused or not, run-now requests for batch flows, the last read run,
//! and events (deliveries) per minute over the last half hour for the dashboard's sparklines.
//!
//! **Pause holds deliveries.** A paused flow keeps capturing and planning (the hub's state stays
//! current and nothing accepted is lost), but its outbox items are not claimed: the store's
//! `claim` skips items of flows in its `paused_flows` table, so the pause is durable across a
//! restart. State kinds coalesce meanwhile, so on resume each key gets one write of its newest
//! state; command kinds keep their order. Items of other flows for the same (destination, key)
//! wait behind a held one (per-key order is never broken).
//!
//! Must never block the delivery path: a short mutex per flow, no I/O.

use concord_core::{Kind, Millis};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::watch;

/// Minutes of history kept for sparklines.
pub const MINUTES: usize = 30;

/// One read run of a flow (a poll cycle or a batch snapshot).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlowRun {
    pub started_at: Millis,
    pub finished_at: Millis,
    /// Records journaled by this run.
    pub stored: usize,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// `schedule`, `poll`, `migration` or `manual` (run now).
    pub trigger: String,
}

/// Run-time state of one flow.
pub(crate) struct FlowState {
    pub paused: AtomicBool,
    /// Bumped by "run now"; every reader task of the flow watches it.
    pub run_now: watch::Sender<u64>,
    pub delivered: AtomicU64,
    last_run: Mutex<Option<FlowRun>>,
    /// (minute number since the epoch, deliveries in it), oldest first.
    minutes: Mutex<VecDeque<(i64, u64)>>,
    /// Lag of the last delivery of this flow, ms.
    pub last_lag_ms: AtomicU64,
}

impl Default for FlowState {
    fn default() -> Self {
        FlowState {
            paused: AtomicBool::new(false),
            run_now: watch::channel(0).0,
            delivered: AtomicU64::new(0),
            last_run: Mutex::new(None),
            minutes: Mutex::new(VecDeque::with_capacity(MINUTES + 1)),
            last_lag_ms: AtomicU64::new(0),
        }
    }
}

impl FlowState {
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Count `n` deliveries at `now`.
    pub fn record_delivered(&self, now: Millis, n: u64, lag_ms: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
        self.last_lag_ms.store(lag_ms, Ordering::Relaxed);
        let minute = now.div_euclid(60_000);
        if let Ok(mut m) = self.minutes.lock() {
            match m.back_mut() {
                Some((at, count)) if *at == minute => *count += n,
                Some((at, _)) if *at > minute => {} // clock went back: drop
                _ => {
                    m.push_back((minute, n));
                    while m.len() > MINUTES {
                        m.pop_front();
                    }
                }
            }
        }
    }

    /// Deliveries per minute for the last [`MINUTES`] minutes, oldest first, the last entry
    /// being the current (incomplete) minute.
    pub fn per_minute(&self, now: Millis) -> Vec<u64> {
        let current = now.div_euclid(60_000);
        let mut out = vec![0; MINUTES];
        if let Ok(m) = self.minutes.lock() {
            for (minute, count) in m.iter() {
                let age = current - minute;
                if (0..MINUTES as i64).contains(&age) {
                    out[MINUTES - 1 - age as usize] += count;
                }
            }
        }
        out
    }

    pub fn set_last_run(&self, run: FlowRun) {
        if let Ok(mut l) = self.last_run.lock() {
            *l = Some(run);
        }
    }

    pub fn last_run(&self) -> Option<FlowRun> {
        self.last_run.lock().ok().and_then(|l| l.clone())
    }
}

/// A flow as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlowView {
    pub name: String,
    pub kind: Kind,
    /// `broadcast`, `aggregation`, `bidirectional`, `correlation`, `migration`.
    pub pattern: String,
    /// `realtime`, `delta`, `batch`, `migration`.
    pub mode: String,
    pub from: Vec<String>,
    pub to: Vec<String>,
    /// Cron schedule of a batch flow.
    pub schedule: Option<String>,
    /// Poll interval of a delta flow (or a realtime flow's safety-net poll), ms.
    pub poll_interval_ms: Option<u64>,
    /// Deliveries held (see the pause semantics in the engine docs).
    pub paused: bool,
    /// The last read run (poll cycle or batch snapshot) since this process started.
    pub last_run: Option<FlowRun>,
    /// When the next read run is due (batch: the schedule; polling: last run + interval).
    pub next_run: Option<Millis>,
    /// Deliveries since this process started.
    pub delivered: u64,
    /// Deliveries per minute, the last 30 minutes, oldest first (the last entry is the
    /// current minute).
    pub events_per_minute: Vec<u64>,
    /// Deliveries in the last complete minute.
    pub throughput_per_minute: u64,
    /// Items waiting (pending, in flight) and parked for this flow's destinations.
    pub queue_pending: u64,
    pub queue_parked: u64,
    /// Age of the oldest waiting item at this flow's destinations, ms (0 when none).
    pub lag_ms: u64,
    /// Capture-to-delivery lag of this flow's last delivery, ms.
    pub last_delivery_lag_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    #[test]
    fn per_minute_counts_slide_over_thirty_minutes() {
        let f = FlowState::default();
        let t0 = 1_000 * MIN;
        f.record_delivered(t0, 2, 10);
        f.record_delivered(t0 + 30_000, 3, 20);
        f.record_delivered(t0 + MIN, 1, 5);
        let now = t0 + MIN + 1;
        let m = f.per_minute(now);
        assert_eq!(m.len(), MINUTES);
        assert_eq!(
            &m[MINUTES - 2..],
            &[5, 1],
            "previous minute, current minute"
        );
        assert_eq!(m.iter().sum::<u64>(), 6);
        assert_eq!(f.delivered.load(Ordering::Relaxed), 6);
        assert_eq!(f.last_lag_ms.load(Ordering::Relaxed), 5);
        // Half an hour later the first minute has slid out of the window.
        let later = t0 + (MINUTES as i64) * MIN;
        assert_eq!(f.per_minute(later).iter().sum::<u64>(), 1);
        assert_eq!(f.per_minute(later + MIN).iter().sum::<u64>(), 0);
        // The ring keeps at most MINUTES entries however long it runs.
        for i in 0..100 {
            f.record_delivered(later + i * MIN, 1, 1);
        }
        assert!(f.minutes.lock().map(|m| m.len()).unwrap_or(0) <= MINUTES);
        assert_eq!(
            f.per_minute(later + 99 * MIN).iter().sum::<u64>(),
            MINUTES as u64
        );
    }

    #[test]
    fn a_clock_going_back_drops_the_sample() {
        let f = FlowState::default();
        f.record_delivered(10 * MIN, 1, 0);
        f.record_delivered(9 * MIN, 1, 0);
        assert_eq!(f.per_minute(10 * MIN).iter().sum::<u64>(), 1);
    }
}

//! Failed-authentication throttle: a token bucket per client address, so that a client
//! presenting wrong tokens or keys gets a few tries and then `429 Too Many Requests` with
//! `Retry-After`, instead of tens of thousands of guesses a second.
//!
//! Each client starts with `[admin] failed_attempts` tries (default [`DEFAULT_BURST`]); every
//! failed attempt (an unknown admin token, storefront key or metrics token; a failed login)
//! takes one, and one comes back every `[admin] failed_attempts_refill` (default
//! [`DEFAULT_REFILL`]). With none left, *every* attempt of that client to authenticate is refused
//! unchecked — a correct token too, since checking it would tell a guesser when it is right —
//! until a try has come back. Other clients are unaffected.
//!
//! Clients are told apart by the connection's IP address; IPv6 addresses by their /64 (one
//! machine usually holds a whole /64). Behind a reverse proxy every request comes from the
//! proxy's address, so all clients share one bucket. Memory is bounded: at most
//! [`MAX_CLIENTS`] buckets; when full, buckets that have refilled completely are dropped (they
//! hold nothing), then the least recently used one.
//!
//! Must never: block, allocate per request beyond its bounded table, or record a credential.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts a client may make in a row, by default.
pub const DEFAULT_BURST: u32 = 10;
/// How often one try comes back, by default (10 a minute).
pub const DEFAULT_REFILL: Duration = Duration::from_secs(6);
/// Most clients tracked at once.
pub const MAX_CLIENTS: usize = 10_000;

/// Who is throttled: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key of `ip` (`None`: the connection's address is unknown — in-process tests —
    /// and all such requests share one bucket).
    pub fn of(ip: Option<IpAddr>) -> ClientKey {
        let ip = match ip {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
            Some(v4) => v4,
        };
        ClientKey(ip)
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

/// One client's state, as in the generic cell rate algorithm: `tat` (theoretical arrival time)
/// moves one refill period into the future per failure, never starting before now. The client
/// has a try left while `tat` is at most `(burst - 1) × refill` ahead of now; it is back to a full
/// set of tries once `tat` has passed. Exact in `Instant`s, no floating point.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tat: Instant,
    /// Last failure (least recently used eviction).
    used: Instant,
    /// The throttle of this spell was reported (one audit row per spell).
    reported: bool,
}

impl Bucket {
    /// `Some(wait)` when no try is left at `now` (`slack`: [`Throttle::slack`]).
    fn wait(&self, now: Instant, slack: Duration) -> Option<Duration> {
        let ahead = self.tat.saturating_duration_since(now);
        ahead.checked_sub(slack).filter(|w| !w.is_zero())
    }
}

/// What a failed attempt did to its client's bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    /// It used the client's last try: from now on it is throttled (report this once).
    pub now_throttled: bool,
}

/// The per-client buckets.
#[derive(Debug)]
pub struct Throttle {
    buckets: Mutex<HashMap<ClientKey, Bucket>>,
    burst: u32,
    refill: Duration,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(DEFAULT_BURST, DEFAULT_REFILL)
    }
}

impl Throttle {
    /// `burst` tries per client (at least 1), one back every `refill`.
    pub fn new(burst: u32, refill: Duration) -> Throttle {
        Throttle {
            buckets: Mutex::new(HashMap::new()),
            burst: burst.max(1),
            refill,
        }
    }

    /// Tries per client.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// How often a try comes back.
    pub fn refill(&self) -> Duration {
        self.refill
    }

    /// How far ahead of now a client's `tat` may be while it has a try left.
    fn slack(&self) -> Duration {
        self.refill.saturating_mul(self.burst - 1)
    }

    /// `Err(wait)` when `client` has no try left: refuse without checking its credential and
    /// tell it to come back after `wait` (whole seconds, at least 1).
    pub fn check(&self, client: ClientKey, now: Instant) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let Some(b) = buckets.get_mut(&client) else {
            return Ok(());
        };
        match b.wait(now, self.slack()) {
            None => {
                b.reported = false;
                Ok(())
            }
            Some(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(Duration::from_secs(secs.max(1)))
            }
        }
    }

    /// Count a failed attempt of `client`.
    pub fn fail(&self, client: ClientKey, now: Instant) -> Failed {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Failed {
                now_throttled: false,
            };
        };
        if !buckets.contains_key(&client) && buckets.len() >= MAX_CLIENTS {
            make_room(&mut buckets, now);
        }
        let b = buckets.entry(client).or_insert(Bucket {
            tat: now,
            used: now,
            reported: false,
        });
        let slack = self.slack();
        if b.wait(now, slack).is_none() {
            b.reported = false;
        }
        b.tat = b.tat.max(now) + self.refill;
        b.used = now;
        let now_throttled = b.wait(now, slack).is_some() && !b.reported;
        if now_throttled {
            b.reported = true;
        }
        Failed { now_throttled }
    }

    /// Clients tracked (tests).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map_or(0, |b| b.len())
    }
}

/// Drop the buckets that are back to a full set of tries (they hold nothing); if none is, the
/// least recently used one.
fn make_room(buckets: &mut HashMap<ClientKey, Bucket>, now: Instant) {
    buckets.retain(|_, b| b.tat > now);
    if buckets.len() >= MAX_CLIENTS {
        if let Some(oldest) = buckets.iter().min_by_key(|(_, b)| b.used).map(|(k, _)| *k) {
            buckets.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> ClientKey {
        ClientKey::of(Some(s.parse().expect("ip")))
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_for_the_refill() {
        let t = Throttle::default();
        let start = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..DEFAULT_BURST {
            assert!(t.check(a, start).is_ok(), "try {i}");
            let f = t.fail(a, start);
            assert_eq!(f.now_throttled, i + 1 == DEFAULT_BURST, "try {i}");
        }
        let wait = t.check(a, start).expect_err("throttled after the burst");
        assert_eq!(wait, DEFAULT_REFILL);
        // Another client is unaffected.
        assert!(t.check(ip("192.0.2.2"), start).is_ok());
        // Still throttled just before a try comes back, free right after.
        assert!(t
            .check(a, start + DEFAULT_REFILL - Duration::from_millis(1))
            .is_err());
        assert!(t.check(a, start + DEFAULT_REFILL).is_ok());
        // A failure with the one try it got back throttles it again, reported once more.
        assert!(t.fail(a, start + DEFAULT_REFILL).now_throttled);
        assert!(
            !t.fail(a, start + DEFAULT_REFILL).now_throttled,
            "reported once per spell"
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:bbbb::2"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(ip("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(ClientKey::of(None).to_string(), "0.0.0.0");
    }

    #[test]
    fn memory_is_bounded() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 500) {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            t.fail(ClientKey::of(Some(IpAddr::V4(addr))), now);
        }
        assert_eq!(t.tracked(), MAX_CLIENTS);
        // Once the old buckets have refilled, they make room at once.
        let later = now + DEFAULT_REFILL * DEFAULT_BURST;
        t.fail(ip("192.0.2.9"), later);
        assert_eq!(t.tracked(), 1);
    }
}

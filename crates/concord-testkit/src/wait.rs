//! The one wait of the workspace's tests: poll a condition until it holds, under a deadline.
//!
//! Must never sleep without a condition, nor wait without a deadline.

use std::time::{Duration, Instant};

/// The usual deadline: generous, because the machines that run the suite are small and shared
/// (a condition that holds returns at the first poll that sees it, so this costs nothing).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(10);

/// Poll `probe` every [`POLL`] until it returns `Some`, or `None` once `deadline` has passed.
/// The one loop every wait below is built on.
async fn poll<T>(deadline: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Poll `cond` until it holds; panic naming `what` once `deadline` has passed.
///
/// A synchronous condition is written `async || cond()`.
pub async fn wait_until(what: &str, deadline: Duration, mut cond: impl AsyncFnMut() -> bool) {
    if poll(deadline, async || cond().await.then_some(()))
        .await
        .is_none()
    {
        panic!("timed out after {deadline:?} waiting until {what}");
    }
}

/// Poll `cond` until it holds (`true`) or `deadline` passes (`false`): for a caller that adds
/// what it knows (the state it waited on, a child process's output) before failing.
pub async fn try_wait_until(deadline: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    poll(deadline, async || cond().await.then_some(()))
        .await
        .is_some()
}

/// Poll `probe` until it returns `Some(value)` and return the value; panic naming `what` once
/// `deadline` has passed.
pub async fn wait_for_some<T>(
    what: &str,
    deadline: Duration,
    probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    match poll(deadline, probe).await {
        Some(v) => v,
        None => panic!("timed out after {deadline:?} waiting until {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_until_the_condition_holds() {
        let start = Instant::now();
        let mut n = 0;
        wait_until("the third poll", DEADLINE, async || {
            n += 1;
            n == 3
        })
        .await;
        assert_eq!(n, 3);
        assert!(start.elapsed() < DEADLINE);
        let mut m = 0;
        let v = wait_for_some("a value", DEADLINE, async || {
            m += 1;
            (m == 2).then_some("v")
        })
        .await;
        assert_eq!((v, m), ("v", 2));
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline() {
        let start = Instant::now();
        assert!(!try_wait_until(Duration::from_millis(50), async || false).await);
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 30ms waiting until never")]
    async fn a_timeout_names_what_was_awaited() {
        wait_until("never", Duration::from_millis(30), async || false).await;
    }
}

//! Admission of writes when the store is saturated: wait (back-pressure) or fail fast.
//!
//! A store bounds the writes waiting for it (SQLite: `[store] write_queue`, the single writer's
//! queue). When that bound is reached, a write either *waits* for room — the default, right for
//! the engine's own tasks (processor, dispatchers, pollers), which simply slow down — or *fails
//! fast* with [`crate::StoreError::Busy`], right for a caller that answers someone outside who
//! can retry later (a webhook sender, a checkout): the HTTP server wraps every request in
//! [`fail_fast`] and answers `503` with `Retry-After` instead of queueing without bound.
//!
//! The mode is carried by a tokio task-local, so it reaches the store through every layer of
//! the engine without widening each method's signature; it covers exactly the futures polled
//! inside [`fail_fast`], and a task spawned from there waits again (spawned work is the
//! engine's, not the caller's). A store implementation must honour it for every write that can
//! wait on a bounded queue, and must never fail a write with `Busy` outside it.

use std::future::Future;

tokio::task_local! {
    static FAIL_FAST: ();
}

/// Run `f` with writes that fail with [`crate::StoreError::Busy`] instead of waiting when the
/// store's write queue is full.
pub async fn fail_fast<F: Future>(f: F) -> F::Output {
    FAIL_FAST.scope((), f).await
}

/// True inside [`fail_fast`]: a saturated store must refuse rather than wait.
pub fn fails_fast() -> bool {
    FAIL_FAST.try_with(|_| ()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_mode_covers_exactly_the_wrapped_future() {
        assert!(!fails_fast());
        assert!(fail_fast(async { fails_fast() }).await);
        assert!(!fails_fast());
        // Work spawned from inside is the engine's own: it waits.
        let spawned = fail_fast(async { tokio::spawn(async { fails_fast() }).await }).await;
        assert!(!spawned.unwrap());
    }
}

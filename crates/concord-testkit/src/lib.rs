//! Test support for the whole workspace, so that every test waits, starts a hub and meets a
//! real system the same way:
//!
//! - [`wait_until`] (and [`try_wait_until`], [`wait_for_some`]): the only way a test waits — a
//!   condition polled every [`POLL`] under a deadline the caller gives, failing with what was
//!   awaited. Never a bare sleep hoping something happened.
//! - [`real`]: the harness of the tests against real systems (Tryton, Vendure, Medusa): a
//!   missing system is a loud skip on a workstation and a failure under `CI`.
//! - [`free_port`]: a free local port, for a child process that must be told its address.
//! - [`sandbox`] (feature `sandbox`): the sandbox ERP and storefronts started the way a hub's
//!   tests wire them (webhooks to the hub, checkouts through it), the listener a hub is served
//!   on, and the config stanzas that name them. (The running hub itself stays with
//!   `concord-server`'s tests, `tests/support/mod.rs`, whose files extend it with their own
//!   `impl Hub` blocks.)
//!
//! A dev-dependency only (`publish = false`): must never be a dependency of production code,
//! and must never hide a failure (every helper panics with what it waited for).

pub mod real;
#[cfg(feature = "sandbox")]
pub mod sandbox;
mod wait;

pub use wait::{try_wait_until, wait_for_some, wait_until, DEADLINE, POLL};

/// A local port free at the time of the call (bound, then released), for a child process
/// (`concord run`) that must be given its address in its config. Tests in-process bind port 0
/// and keep the listener instead.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

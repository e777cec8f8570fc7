//! The harness of the tests against real systems (Tryton, Vendure, Medusa; started by
//! `scripts/test.sh`, found through `CONCORD_*_URL`): without its system a test skips loudly on
//! a workstation and fails under CI, and each test that reached its system says so in a line
//! `scripts/test.sh` counts.
//!
//! Must never let a missing system pass silently under CI.

/// A real system this test needs is not configured. In CI (`CI` set, not `false`/`0`) that is a
/// failure — a skip would hide a broken install — unless `scripts/test.sh` runs this file in its
/// own step later (`CONCORD_REAL_SYSTEMS_LATER=1` in its general pass). Elsewhere: a loud skip
/// (`what` printed).
pub fn missing(what: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    let later = std::env::var_os("CONCORD_REAL_SYSTEMS_LATER").is_some();
    if ci && !later {
        panic!("{what} — CI is set, so a missing real system fails the suite instead of skipping");
    }
    eprintln!("{what}");
}

/// Printed once per test that reached its real system: `scripts/test.sh` counts these lines.
pub fn ran(suite: &str) {
    eprintln!(
        "REAL-SYSTEM TEST RAN: {suite}::{}",
        std::thread::current().name().unwrap_or("?")
    );
}

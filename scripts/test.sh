#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, starts the servers
# they need, runs every test, stops the servers. `.ci/run` calls exactly this.
#
#   ./scripts/test.sh            # everything
#   SKIP_LINT=1 ./scripts/test.sh   # skip rustfmt/clippy (quicker local runs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\n== %s\n' "$*" >&2; }

# --- toolchain -------------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "cargo not found: install the Rust toolchain (https://rustup.rs), then run this again" >&2
    exit 1
  fi
fi
if ! command -v cc >/dev/null 2>&1; then
  log "installing a C compiler (bundled SQLite is compiled from source)"
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential >/dev/null
  fi
fi

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_INCREMENTAL=0

# --- lint --------------------------------------------------------------------------------------
if [ -z "${SKIP_LINT:-}" ]; then
  log "cargo fmt --check"
  cargo fmt --all -- --check
  log "cargo clippy (warnings are errors)"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
fi

# --- tests -------------------------------------------------------------------------------------
log "building"
cargo build --workspace --all-targets --quiet
log "cargo test (unit, conformance, engine, HTTP, crash and CLI tests)"
cargo test --workspace --quiet -- --test-threads=2
log "all tests passed"

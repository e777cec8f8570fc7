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

# --- a real Tryton for the integration tests (crates/concord-connectors/tests/tryton.rs) --------
# Installed under target/tryton (pinned versions: scripts/tryton/requirements.txt), started on
# 127.0.0.1:$TRYTON_PORT, seeded, and stopped again however this script exits.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  log "installing python3-venv (the Tryton test server runs in a venv)"
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
fi
export TRYTON_DIR="${TRYTON_DIR:-$PWD/target/tryton}" TRYTON_PORT="${TRYTON_PORT:-8011}"
export TRYTON_DB="${TRYTON_DB:-concord}" TRYTON_ADMIN_PASSWORD="${TRYTON_ADMIN_PASSWORD:-admin}"
log "Tryton: setup, start, seed ($TRYTON_DIR, port $TRYTON_PORT)"
t0=$(date +%s)
./scripts/tryton/setup.sh
trap './scripts/tryton/stop.sh || true' EXIT
./scripts/tryton/start.sh
"$TRYTON_DIR/venv/bin/python" scripts/tryton/seed.py >/dev/null
export CONCORD_TRYTON_URL="http://127.0.0.1:$TRYTON_PORT"
log "Tryton ready in $(( $(date +%s) - t0 ))s"

# --- tests -------------------------------------------------------------------------------------
log "building"
cargo build --workspace --all-targets --quiet
log "cargo test (unit, conformance, engine, HTTP, crash and CLI tests)"
cargo test --workspace --quiet --no-fail-fast -- --test-threads=2
log "real-Tryton tests (timed; they ran above too, this prints their latency line)"
t0=$(date +%s)
out="$(mktemp)"
if ! cargo test -p concord-connectors --test tryton --quiet -- --test-threads=1 --nocapture >"$out" 2>&1; then
  cat "$out" >&2; exit 1
fi
grep -E 'LATENCY|SKIPPED|test result' "$out" >&2 || true
rm -f "$out"
log "real-Tryton tests took $(( $(date +%s) - t0 ))s"
log "all tests passed"

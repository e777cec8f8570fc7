#!/usr/bin/env bash
# The demo, from a fresh machine: builds Concord and runs `concord demo` on the embedded SQLite
# store (sandbox ERP + two sandbox storefronts). Extra arguments go to `concord demo`, e.g.
#   ./scripts/demo.sh --seconds 30
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "cargo not found: install the Rust toolchain (https://rustup.rs), then run this again" >&2
    exit 1
  fi
fi
if ! command -v cc >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential >/dev/null
fi
cargo build --release --quiet -p concord-cli
exec ./target/release/concord demo "$@"

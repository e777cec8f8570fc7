#!/usr/bin/env bash
# The dashboard browser test: headless Debian Chromium, driven by playwright-core (pinned in
# scripts/browser/package-lock.json, installed with `npm ci` into target/browser), against a
# running `concord demo --keep-serving`. Logs in, sees the flows, replays a dead letter and sees
# it delivered, runs a reconciliation from the Drift page and sees a product renamed in a store
# (to HTML markup, shown as text) reported; screenshots in target/screenshots/. Called by
# scripts/test.sh; runs alone too:
#
#   ./scripts/browser-test.sh
#
# Installs Chromium (`apt-get install -y chromium`, as root) when /usr/bin/chromium is missing.
# Needs Node.js >= 20 and npm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '[browser-test] %s\n' "$*" >&2; }

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  log "installing Debian's chromium"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
command -v node >/dev/null && command -v npm >/dev/null || { log "node (>= 20) and npm are required"; exit 1; }
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] || { log "node >= 20 required, have $(node -v)"; exit 1; }

dir="$PWD/target/browser"
mkdir -p "$dir"
cp scripts/browser/package.json scripts/browser/package-lock.json scripts/browser/dashboard.test.mjs "$dir/"
stamp="$dir/node_modules/.concord-lock.sha"
want="$(sha256sum scripts/browser/package-lock.json | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "npm ci in $dir"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi

if [ -z "${CONCORD_BIN:-}" ]; then
  cargo build -p concord-cli --quiet
  CONCORD_BIN="$PWD/target/debug/concord"
fi
rm -rf target/screenshots
CONCORD_BIN="$CONCORD_BIN" CHROMIUM="$CHROMIUM" SCREENSHOT_DIR="$PWD/target/screenshots" \
  node "$dir/dashboard.test.mjs"
log "screenshots: $(ls target/screenshots | tr '\n' ' ')"

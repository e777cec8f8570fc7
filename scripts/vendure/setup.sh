#!/usr/bin/env bash
# Install a real Vendure 3.7 (SQLite, GraphQL Admin + Shop APIs, no admin UI) for Concord's
# integration tests into $VENDURE_DIR: the project's package.json + package-lock.json (exact
# versions), `npm ci`, and this folder's JS files. Idempotent: node_modules is reinstalled only
# when the lock file changed; the JS files are re-copied every time (cheap).
#
#   ./scripts/vendure/setup.sh          then start.sh, then `node $VENDURE_DIR/seed.js`
# Env: see env.sh. Needs node >= 20 and npm (Debian: apt-get install -y nodejs npm), and for
# better-sqlite3 (compiled from source: the prebuilt download from GitHub may be unreachable)
# g++, make, python3 and the Node headers (Debian's nodejs ships them under /usr/include/node).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[vendure/setup] $*" >&2; }

command -v node >/dev/null && command -v npm >/dev/null || {
  log "node (>= 20) and npm are required (Debian: apt-get install -y nodejs npm)"; exit 1; }
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] || {
  log "node >= 20 required, have $(node -v)"; exit 1; }

mkdir -p "$VENDURE_DIR/log"
t0=$(date +%s)
for f in package.json package-lock.json vendure-config.js index.js lib.js seed.js concord-reservations.js concord-refunds.js; do
  cp "$VENDURE_SCRIPTS/$f" "$VENDURE_DIR/$f"
done

# node-gyp: use the local Node headers instead of downloading them.
if [ -z "${npm_config_nodedir:-}" ]; then
  node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  for d in "$node_prefix" /usr; do
    if [ -f "$d/include/node/node_api.h" ]; then export npm_config_nodedir="$d"; break; fi
  done
fi

stamp="$VENDURE_DIR/node_modules/.concord-lock.sha"
want="$(sha256sum "$VENDURE_SCRIPTS/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -d "$VENDURE_DIR/node_modules/@vendure/core" ]; then
  log "npm ci in $VENDURE_DIR (compiles better-sqlite3; a few minutes on a cold cache)"
  (cd "$VENDURE_DIR" && npm ci --no-audit --no-fund --loglevel=error >"$VENDURE_DIR/log/npm-ci.log" 2>&1) || {
    log "npm ci failed; tail of $VENDURE_DIR/log/npm-ci.log:"; tail -40 "$VENDURE_DIR/log/npm-ci.log" >&2; exit 1; }
  echo "$want" > "$stamp"
  log "npm ci took $(( $(date +%s) - t0 ))s"
else
  log "node_modules up to date"
fi
(cd "$VENDURE_DIR" && node -e 'const D=require("better-sqlite3"); new D(":memory:").prepare("select 1").get();') || {
  log "better-sqlite3 does not load (rebuild: rm -rf $VENDURE_DIR/node_modules and run again)"; exit 1; }
log "@vendure/core $(cd "$VENDURE_DIR" && node -p 'require("@vendure/core/package.json").version'), node $(node -v); done in $(( $(date +%s) - t0 ))s"

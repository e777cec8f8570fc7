#!/usr/bin/env bash
# Start the project's Vendure (scripts/vendure/setup.sh installed it) in the background on
# 127.0.0.1:$VENDURE_PORT, record its pid in $VENDURE_DIR/vendure.pid and wait until the Shop
# API answers. Idempotent: a server from the pid file that answers is left as it is.
#   ./scripts/vendure/start.sh        (stop with ./scripts/vendure/stop.sh)
# Env: see env.sh; VENDURE_START_TIMEOUT (seconds, default 120). CONCORD_URL / CONCORD_CHANNEL
# are passed through to the reservation plugin.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[vendure/start] $*" >&2; }
TIMEOUT="${VENDURE_START_TIMEOUT:-120}"

alive() { [ -s "$VENDURE_PIDFILE" ] && kill -0 "$(cat "$VENDURE_PIDFILE")" 2>/dev/null; }
ping_server() {
  curl -sf -m 2 -H 'Content-Type: application/json' -d '{"query":"{ activeChannel { code } }"}' \
    "$VENDURE_URL/shop-api" 2>/dev/null | grep -q '"code"'
}

[ -d "$VENDURE_DIR/node_modules/@vendure/core" ] || { log "not installed: run scripts/vendure/setup.sh first"; exit 1; }
if alive; then
  if ping_server; then log "already running (pid $(cat "$VENDURE_PIDFILE")) on port $VENDURE_PORT"; exit 0; fi
  log "pid $(cat "$VENDURE_PIDFILE") alive but not answering on $VENDURE_PORT; stopping it"
  "$VENDURE_SCRIPTS/stop.sh"
fi
if ping_server; then
  log "port $VENDURE_PORT already answers but not from our pid file: refusing to start a second server"
  exit 1
fi

t0=$(date +%s%N)
rm -f "$VENDURE_PIDFILE"
(cd "$VENDURE_DIR" && VENDURE_DISABLE_TELEMETRY=true exec setsid nohup node index.js \
   >>"$VENDURE_DIR/log/vendure.log" 2>&1 < /dev/null) &
echo $! > "$VENDURE_PIDFILE"

deadline=$(( $(date +%s) + TIMEOUT ))
until ping_server; do
  if ! alive; then
    log "server exited; tail of $VENDURE_DIR/log/vendure.log:"; tail -40 "$VENDURE_DIR/log/vendure.log" >&2; exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    log "not ready after ${TIMEOUT}s"; tail -40 "$VENDURE_DIR/log/vendure.log" >&2; exit 1
  fi
  sleep 0.2
done
log "ready on $VENDURE_URL/admin-api and /shop-api (pid $(cat "$VENDURE_PIDFILE"), $(( ($(date +%s%N) - t0) / 1000000 )) ms)"

#!/usr/bin/env bash
# Start the project's Medusa (scripts/medusa/setup.sh installed it) and its PostgreSQL in the
# background on 127.0.0.1:$MEDUSA_PORT, record its pid in $MEDUSA_DIR/medusa.pid and wait until
# GET /health answers. Idempotent: a server from the pid file that answers is left as it is.
#   ./scripts/medusa/start.sh         (stop with ./scripts/medusa/stop.sh)
# Env: see env.sh; MEDUSA_START_TIMEOUT (seconds, default 180).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[medusa/start] $*" >&2; }
TIMEOUT="${MEDUSA_START_TIMEOUT:-180}"

alive() { [ -s "$MEDUSA_PIDFILE" ] && kill -0 "$(cat "$MEDUSA_PIDFILE")" 2>/dev/null; }
ping_server() { curl -sf -m 2 "$MEDUSA_URL/health" 2>/dev/null | grep -q OK; }

[ -d "$MEDUSA_APP/node_modules/@medusajs/medusa" ] || { log "not installed: run scripts/medusa/setup.sh first"; exit 1; }
medusa_pg start
if alive; then
  if ping_server; then log "already running (pid $(cat "$MEDUSA_PIDFILE")) on port $MEDUSA_PORT"; exit 0; fi
  log "pid $(cat "$MEDUSA_PIDFILE") alive but not answering on $MEDUSA_PORT; stopping it"
  MEDUSA_KEEP_PG=1 "$MEDUSA_SCRIPTS/stop.sh"
fi
if ping_server; then
  log "port $MEDUSA_PORT already answers but not from our pid file: refusing to start a second server"
  exit 1
fi

medusa_env
t0=$(date +%s%N)
rm -f "$MEDUSA_PIDFILE"
(cd "$MEDUSA_APP" && NODE_ENV="${NODE_ENV:-production}" exec setsid nohup \
   ./node_modules/.bin/medusa start --host 127.0.0.1 --port "$MEDUSA_PORT" \
   >>"$MEDUSA_DIR/log/medusa.log" 2>&1 < /dev/null) &
echo $! > "$MEDUSA_PIDFILE"

deadline=$(( $(date +%s) + TIMEOUT ))
until ping_server; do
  if ! alive; then
    log "server exited; tail of $MEDUSA_DIR/log/medusa.log:"; tail -40 "$MEDUSA_DIR/log/medusa.log" >&2; exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    log "not ready after ${TIMEOUT}s"; tail -40 "$MEDUSA_DIR/log/medusa.log" >&2; exit 1
  fi
  sleep 0.2
done
log "ready on $MEDUSA_URL (/admin, /store, /auth; pid $(cat "$MEDUSA_PIDFILE"), $(( ($(date +%s%N) - t0) / 1000000 )) ms)"

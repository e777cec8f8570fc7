#!/usr/bin/env bash
# Start the project's Tryton (scripts/tryton/setup.sh installed it) in the background on
# 127.0.0.1:$TRYTON_PORT, record its pid in $TRYTON_DIR/trytond.pid and wait until it answers
# JSON-RPC. Idempotent: a server from the pid file that answers is left as it is.
#   ./scripts/tryton/start.sh         (stop with ./scripts/tryton/stop.sh)
# Env: see env.sh; TRYTON_START_TIMEOUT (seconds, default 60).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[tryton/start] $*" >&2; }
TIMEOUT="${TRYTON_START_TIMEOUT:-60}"

alive() { [ -s "$TRYTON_PIDFILE" ] && kill -0 "$(cat "$TRYTON_PIDFILE")" 2>/dev/null; }
ping_server() { # common.server.version needs no login and no database
  curl -sf -m 2 -H 'Content-Type: application/json' \
    -d '{"id":0,"method":"common.server.version","params":[]}' \
    "http://127.0.0.1:$TRYTON_PORT/rpc/" >/dev/null 2>&1
}

[ -x "$TRYTON_VENV/bin/trytond" ] || { log "not installed: run scripts/tryton/setup.sh first"; exit 1; }
if alive; then
  if ping_server; then log "already running (pid $(cat "$TRYTON_PIDFILE")) on port $TRYTON_PORT"; exit 0; fi
  log "pid $(cat "$TRYTON_PIDFILE") alive but not answering on $TRYTON_PORT; stopping it"
  "$TRYTON_SCRIPTS/stop.sh"
fi
if ping_server; then
  log "port $TRYTON_PORT already answers but not from our pid file: refusing to start a second server"
  exit 1
fi

t0=$(date +%s%N)
rm -f "$TRYTON_PIDFILE"
# TRYTOND_<SECTION>__<KEY> env vars configure what the config file leaves out. TZ=UTC: the
# SQLite backend stamps create_date/write_date with the server's local time, and Concord reads
# them as UTC.
TZ=UTC TRYTOND_WEB__LISTEN="127.0.0.1:$TRYTON_PORT" \
  setsid nohup "$TRYTON_VENV/bin/trytond" -c "$TRYTON_CONF" -d "$TRYTON_DB" \
  >>"$TRYTON_DIR/log/trytond.log" 2>&1 < /dev/null &
echo $! > "$TRYTON_PIDFILE"

deadline=$(( $(date +%s) + TIMEOUT ))
until ping_server; do
  if ! alive; then
    log "server exited; tail of $TRYTON_DIR/log/trytond.log:"; tail -30 "$TRYTON_DIR/log/trytond.log" >&2; exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    log "not ready after ${TIMEOUT}s"; tail -30 "$TRYTON_DIR/log/trytond.log" >&2; exit 1
  fi
  sleep 0.1
done
log "ready on ${TRYTON_URL}$TRYTON_DB/rpc/ (pid $(cat "$TRYTON_PIDFILE"), $(( ($(date +%s%N) - t0) / 1000000 )) ms)"

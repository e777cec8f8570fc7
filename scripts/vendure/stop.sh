#!/usr/bin/env bash
# Stop the Vendure that start.sh started (by the pid in $VENDURE_DIR/vendure.pid, nothing else):
# SIGTERM, up to 10 s, then SIGKILL. Idempotent.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ -s "$VENDURE_PIDFILE" ] && kill -0 "$(cat "$VENDURE_PIDFILE")" 2>/dev/null; then
  pid="$(cat "$VENDURE_PIDFILE")"
  kill "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  echo "[vendure/stop] stopped pid $pid" >&2
else
  echo "[vendure/stop] not running" >&2
fi
rm -f "$VENDURE_PIDFILE"

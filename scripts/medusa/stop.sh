#!/usr/bin/env bash
# Stop the Medusa that start.sh started (by the pid in $MEDUSA_DIR/medusa.pid, nothing else):
# SIGTERM, up to 15 s, then SIGKILL; then its PostgreSQL unless MEDUSA_KEEP_PG=1 (the outage
# test stops Medusa alone). Idempotent.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ -s "$MEDUSA_PIDFILE" ] && kill -0 "$(cat "$MEDUSA_PIDFILE")" 2>/dev/null; then
  pid="$(cat "$MEDUSA_PIDFILE")"
  kill "$pid"
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  echo "[medusa/stop] stopped pid $pid" >&2
else
  echo "[medusa/stop] not running" >&2
fi
rm -f "$MEDUSA_PIDFILE"
[ -n "${MEDUSA_KEEP_PG:-}" ] || medusa_pg stop

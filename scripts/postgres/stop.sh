#!/usr/bin/env bash
# Stop the PostgreSQL in $PG_DIR (pg_ctl stop -m fast: open transactions are rolled back,
# committed data is kept). Idempotent.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if pg_running; then
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -m fast stop >/dev/null
  pg_log "stopped ($PG_DATA)"
else
  pg_log "not running ($PG_DATA)"
fi

#!/usr/bin/env bash
# Start a private PostgreSQL on 127.0.0.1:$PG_PORT with its data in $PG_DIR/data (initdb on the
# first run: UTF-8, trust authentication for user `postgres`, loopback only). Idempotent: a
# running server is left as it is. Durability settings are for tests (fsync off).
#   PG_DIR=... PG_PORT=... ./scripts/postgres/start.sh        (stop with stop.sh)
#   ./scripts/postgres/start.sh --createdb NAME                (also create database NAME if missing)
# Env: see env.sh. Needs Debian's `postgresql` package (apt-get install -y postgresql).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
[ -x "$PG_BIN/initdb" ] || { pg_log "server binaries not found (set PG_BIN; Debian: apt-get install -y postgresql)"; exit 1; }

mkdir -p "$PG_DATA" "$PG_SOCK"
touch "$PG_LOG"
if [ "$(id -u)" = 0 ]; then
  chown "$PG_USER" "$PG_DATA" "$PG_SOCK" "$PG_LOG"
  chmod 700 "$PG_DATA"
fi
if [ ! -f "$PG_DATA/PG_VERSION" ]; then
  pg_log "initdb $PG_DATA"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
    || as_pg "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres -E UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
fi
if ! pg_running; then
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -t 60 -l "$PG_LOG" \
    -o "-p $PG_PORT -k $PG_SOCK -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { tail -20 "$PG_LOG" >&2; exit 1; }
  pg_log "up on 127.0.0.1:$PG_PORT (data $PG_DATA)"
fi
if [ "${1:-}" = "--createdb" ] && [ -n "${2:-}" ]; then
  if [ -z "$(pg_psql -d postgres -c "select 1 from pg_database where datname='$2'")" ]; then
    pg_psql -d postgres -c "create database \"$2\""
    pg_log "created database $2"
  fi
fi

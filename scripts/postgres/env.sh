# Sourced by the scripts in this folder: one private PostgreSQL server (Debian's `postgresql`
# package, run through its own initdb/pg_ctl, never the Debian service), listening on loopback
# only, with trust authentication for user `postgres`. Medusa's scripts use it today; the
# PostgreSQL store will use the same scripts.
#   PG_DIR   where it lives: data/, sock/, postgres.log (required: each user picks its own)
#   PG_PORT  TCP port on 127.0.0.1 (default 55432)
#   PG_BIN   server binaries (default: the newest /usr/lib/postgresql/*/bin, else pg_config --bindir)
#   PG_USER  OS user that owns and runs the server when these scripts run as root (default postgres)
: "${PG_DIR:?PG_DIR must name the directory of this PostgreSQL instance}"
PG_PORT="${PG_PORT:-55432}"
PG_USER="${PG_USER:-postgres}"
if [ -z "${PG_BIN:-}" ]; then
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
  [ -n "$PG_BIN" ] || PG_BIN="$(pg_config --bindir 2>/dev/null || true)"
fi
PG_DATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/sock"
PG_LOG="$PG_DIR/postgres.log"
export PG_DIR PG_PORT PG_USER PG_BIN

pg_log() { echo "[postgres] $*" >&2; }

# Run a server command as the owner of the data dir (initdb and postgres refuse to run as root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

pg_running() { [ -f "$PG_DATA/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

# psql as user postgres over TCP on loopback: quiet, unaligned, stops at the first error.
pg_psql() { "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtAX "$@"; }

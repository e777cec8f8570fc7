# Sourced by the scripts in this folder: where the project's Medusa lives and how to reach it.
#   MEDUSA_DIR      data dir: app/ (package.json, node_modules), pg/ (its PostgreSQL), logs, pid
#                   file (default <repo>/target/medusa)
#   MEDUSA_PORT     HTTP port on 127.0.0.1 (default 9011)
#   MEDUSA_PG_PORT  port of its private PostgreSQL on 127.0.0.1 (default 55411)
#   MEDUSA_DB       database name (default medusa)
#   MEDUSA_ADMIN_EMAIL / MEDUSA_ADMIN_PASSWORD  the admin user (default admin@example.com / supersecret)
#   PG_BIN, PG_USER  see scripts/postgres/env.sh
MEDUSA_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$MEDUSA_SCRIPTS/../.." && pwd)"
MEDUSA_DIR="${MEDUSA_DIR:-$REPO_ROOT/target/medusa}"
MEDUSA_PORT="${MEDUSA_PORT:-9011}"
MEDUSA_PG_PORT="${MEDUSA_PG_PORT:-55411}"
MEDUSA_DB="${MEDUSA_DB:-medusa}"
MEDUSA_ADMIN_EMAIL="${MEDUSA_ADMIN_EMAIL:-admin@example.com}"
MEDUSA_ADMIN_PASSWORD="${MEDUSA_ADMIN_PASSWORD:-supersecret}"
MEDUSA_APP="$MEDUSA_DIR/app"
MEDUSA_PIDFILE="$MEDUSA_DIR/medusa.pid"
MEDUSA_URL="http://127.0.0.1:$MEDUSA_PORT"
export MEDUSA_DIR MEDUSA_PORT MEDUSA_PG_PORT MEDUSA_DB MEDUSA_ADMIN_EMAIL MEDUSA_ADMIN_PASSWORD MEDUSA_URL
mkdir -p "$MEDUSA_DIR/log"

# The private PostgreSQL (scripts/postgres/), in $MEDUSA_DIR/pg on $MEDUSA_PG_PORT.
medusa_pg() { PG_DIR="$MEDUSA_DIR/pg" PG_PORT="$MEDUSA_PG_PORT" "$REPO_ROOT/scripts/postgres/$1.sh" "${@:2}"; }
medusa_psql() {
  (PG_DIR="$MEDUSA_DIR/pg" PG_PORT="$MEDUSA_PG_PORT"; . "$REPO_ROOT/scripts/postgres/env.sh"; pg_psql "$@")
}

# What `medusa` needs in its environment (medusa-config.js reads these).
medusa_env() {
  export DATABASE_URL="postgres://postgres@127.0.0.1:$MEDUSA_PG_PORT/$MEDUSA_DB"
  export MEDUSA_DISABLE_TELEMETRY=true
  export JWT_SECRET="${JWT_SECRET:-supersecret}" COOKIE_SECRET="${COOKIE_SECRET:-supersecret}"
}

# Sourced by the scripts in this folder: where the project's Vendure lives and how to reach it.
#   VENDURE_DIR   data dir: node_modules, vendure.sqlite, logs, pid file (default <repo>/target/vendure)
#   VENDURE_PORT  HTTP port on 127.0.0.1 (default 3011)
#   VENDURE_SUPERADMIN / VENDURE_SUPERADMIN_PASSWORD  (default superadmin / superadmin)
#   CONCORD_URL, CONCORD_CHANNEL  (optional) the hub the reservation plugin calls at checkout
#   CONCORD_KEY  (optional) the hub's storefront key for that channel ([[commerce.keys]])
VENDURE_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$VENDURE_SCRIPTS/../.." && pwd)"
VENDURE_DIR="${VENDURE_DIR:-$REPO_ROOT/target/vendure}"
VENDURE_PORT="${VENDURE_PORT:-3011}"
VENDURE_SUPERADMIN="${VENDURE_SUPERADMIN:-superadmin}"
VENDURE_SUPERADMIN_PASSWORD="${VENDURE_SUPERADMIN_PASSWORD:-superadmin}"
VENDURE_PIDFILE="$VENDURE_DIR/vendure.pid"
VENDURE_URL="http://127.0.0.1:$VENDURE_PORT"
export VENDURE_DIR VENDURE_PORT VENDURE_SUPERADMIN VENDURE_SUPERADMIN_PASSWORD VENDURE_URL

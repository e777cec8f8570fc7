# Sourced by the scripts in this folder: where the project's Tryton lives and how to reach it.
#   TRYTON_DIR   data dir: venv, config, db, logs, pid file (default <repo>/target/tryton)
#   TRYTON_PORT  HTTP port on 127.0.0.1 (default 8011)
#   TRYTON_DB    database name (default concord)
#   TRYTON_ADMIN_PASSWORD  password of user "admin" (default admin)
#   PYTHON       python >= 3.10 with venv (default python3)
TRYTON_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$TRYTON_SCRIPTS/../.." && pwd)"
TRYTON_DIR="${TRYTON_DIR:-$REPO_ROOT/target/tryton}"
TRYTON_PORT="${TRYTON_PORT:-8011}"
TRYTON_DB="${TRYTON_DB:-concord}"
TRYTON_ADMIN_PASSWORD="${TRYTON_ADMIN_PASSWORD:-admin}"
PYTHON="${PYTHON:-python3}"
TRYTON_VENV="$TRYTON_DIR/venv"
TRYTON_CONF="$TRYTON_DIR/trytond.conf"
TRYTON_PIDFILE="$TRYTON_DIR/trytond.pid"
TRYTON_URL="http://127.0.0.1:$TRYTON_PORT/"
export TRYTON_DIR TRYTON_PORT TRYTON_DB TRYTON_ADMIN_PASSWORD

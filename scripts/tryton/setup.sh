#!/usr/bin/env bash
# Install a real Tryton ERP for Concord's integration tests: a venv with the pinned modules of
# requirements.txt, a server config, and an SQLite database with party, company, product,
# stock, account, sale, product_price_list, sale_price_list, sale_history and sale_amendment
# activated. Idempotent: what exists is kept (the venv is rebuilt only when requirements.txt
# changes; the database is initialised only if never completed, and modules added to MODULES
# since are activated in it — run this with the server stopped, as test.sh does).
#
#   ./scripts/tryton/setup.sh          then start.sh, then seed.py
# Env: see env.sh (TRYTON_DIR, TRYTON_PORT, TRYTON_DB, TRYTON_ADMIN_PASSWORD, PYTHON).
# Needs python3 >= 3.10 with venv (Debian: apt-get install -y python3-venv) and network access
# to PyPI on the first run.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[tryton/setup] $*" >&2; }

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
  log "trytond 8.2 needs Python >= 3.10 ($PYTHON is $("$PYTHON" -V 2>&1))"; exit 1; }
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || {
  log "$PYTHON lacks venv/ensurepip (Debian: apt-get install -y python3-venv)"; exit 1; }

mkdir -p "$TRYTON_DIR/db" "$TRYTON_DIR/log"
t0=$(date +%s)
stamp="$TRYTON_VENV/.requirements-$(sha256sum "$TRYTON_SCRIPTS/requirements.txt" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  log "creating venv $TRYTON_VENV"
  rm -rf "$TRYTON_VENV"
  "$PYTHON" -m venv "$TRYTON_VENV"
  "$TRYTON_VENV/bin/pip" install --quiet --disable-pip-version-check \
    -r "$TRYTON_SCRIPTS/requirements.txt"
  touch "$stamp"
  log "pip install took $(( $(date +%s) - t0 ))s"
fi

# Rewritten every time (cheap; follows the env). [web] listen is left out on purpose: values
# in this file override TRYTOND_* env vars, and start.sh passes the port as TRYTOND_WEB__LISTEN.
cat > "$TRYTON_CONF" <<CONF
[database]
uri = sqlite://
path = $TRYTON_DIR/db

[session]
timeout = 86400
max_attempt = 100

[password]
length = 4
forbidden =
entropy = 0
CONF

DBFILE="$TRYTON_DIR/db/$TRYTON_DB.sqlite"
DONE="$TRYTON_DIR/db/.$TRYTON_DB.activated"
MODULES="party company currency product stock account sale product_price_list sale_price_list sale_history sale_amendment"
activate() {
  # shellcheck disable=SC2086 # MODULES is a word list
  "$TRYTON_VENV/bin/trytond-admin" -c "$TRYTON_CONF" -d "$TRYTON_DB" \
    -u $MODULES --activate-dependencies >>"$TRYTON_DIR/log/admin-init.log" 2>&1 \
    || { tail -30 "$TRYTON_DIR/log/admin-init.log" >&2; exit 1; }
  printf '%s\n' "$MODULES" > "$DONE"
}
# A marker without its database (the file removed by hand) is stale: start over.
[ -f "$DBFILE" ] || rm -f "$DONE" "$DBFILE-wal" "$DBFILE-shm"
if [ ! -f "$DONE" ]; then
  t1=$(date +%s)
  log "initialising database $DBFILE"
  rm -f "$DBFILE"
  : > "$DBFILE"   # the sqlite backend wants the file to exist before trytond-admin runs
  pw="$TRYTON_DIR/.adminpass"
  printf '%s' "$TRYTON_ADMIN_PASSWORD" > "$pw"
  TRYTONPASSFILE="$pw" "$TRYTON_VENV/bin/trytond-admin" -c "$TRYTON_CONF" -d "$TRYTON_DB" \
    --all --email admin@example.com -l en >"$TRYTON_DIR/log/admin-init.log" 2>&1 \
    || { rm -f "$pw"; tail -30 "$TRYTON_DIR/log/admin-init.log" >&2; exit 1; }
  rm -f "$pw"
  activate
  log "database ready in $(( $(date +%s) - t1 ))s"
elif [ "$(cat "$DONE")" != "$MODULES" ]; then
  # A database set up before a module was added to MODULES: activate what is missing.
  t1=$(date +%s)
  log "activating modules: $MODULES"
  activate
  log "modules activated in $(( $(date +%s) - t1 ))s"
fi
log "ready: $TRYTON_DIR (db '$TRYTON_DB'); total $(( $(date +%s) - t0 ))s"

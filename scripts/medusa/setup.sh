#!/usr/bin/env bash
# Install a real Medusa v2 (2.21.2: REST Admin + Store APIs, no admin dashboard) for Concord's
# integration tests into $MEDUSA_DIR, with its own PostgreSQL (scripts/postgres/). Idempotent:
#  - copies package.json, package-lock.json and medusa-config.js into $MEDUSA_DIR/app and runs
#    `npm ci` (exact versions from the committed lock file) only when the lock file changed
#  - starts PostgreSQL (initdb on the first run) and creates the database if missing
#  - `medusa db:migrate` (a no-op when up to date), the admin user when missing
# PostgreSQL is left running; stop.sh stops it.
#   ./scripts/medusa/setup.sh     then start.sh, then `node scripts/medusa/seed.js`
# Env: see env.sh. Needs node >= 20.19 and npm, and Debian's `postgresql` package.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[medusa/setup] $*" >&2; }

command -v node >/dev/null && command -v npm >/dev/null || {
  log "node (>= 20.19) and npm are required (Debian: apt-get install -y nodejs npm)"; exit 1; }
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' || {
  log "Medusa 2.x needs node ^20.19 || >=22.12, have $(node -v)"; exit 1; }

t0=$(date +%s)
mkdir -p "$MEDUSA_APP"
cp "$MEDUSA_SCRIPTS/package.json" "$MEDUSA_SCRIPTS/package-lock.json" "$MEDUSA_SCRIPTS/medusa-config.js" "$MEDUSA_APP/"
stamp="$MEDUSA_APP/node_modules/.concord-lock.sha"
want="$(cat "$MEDUSA_SCRIPTS/package.json" "$MEDUSA_SCRIPTS/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -d "$MEDUSA_APP/node_modules/@medusajs/medusa" ]; then
  log "npm ci in $MEDUSA_APP (about a minute with a warm npm cache)"
  (cd "$MEDUSA_APP" && npm ci --no-audit --no-fund --loglevel=error >"$MEDUSA_DIR/log/npm-ci.log" 2>&1) || {
    log "npm ci failed; tail of $MEDUSA_DIR/log/npm-ci.log:"; tail -40 "$MEDUSA_DIR/log/npm-ci.log" >&2; exit 1; }
  echo "$want" > "$stamp"
  log "npm ci took $(( $(date +%s) - t0 ))s"
else
  log "node_modules up to date"
fi

medusa_pg start --createdb "$MEDUSA_DB"
medusa_env
cd "$MEDUSA_APP"
t1=$(date +%s)
./node_modules/.bin/medusa db:migrate >"$MEDUSA_DIR/log/migrate.log" 2>&1 || {
  log "db:migrate failed; tail of $MEDUSA_DIR/log/migrate.log:"; tail -40 "$MEDUSA_DIR/log/migrate.log" >&2; exit 1; }
log "db:migrate took $(( $(date +%s) - t1 ))s"
if [ -z "$(medusa_psql -d "$MEDUSA_DB" -c "select 1 from \"user\" where email='$MEDUSA_ADMIN_EMAIL' and deleted_at is null")" ]; then
  ./node_modules/.bin/medusa user -e "$MEDUSA_ADMIN_EMAIL" -p "$MEDUSA_ADMIN_PASSWORD" >"$MEDUSA_DIR/log/user.log" 2>&1 || {
    log "creating the admin user failed:"; tail -20 "$MEDUSA_DIR/log/user.log" >&2; exit 1; }
  log "admin user $MEDUSA_ADMIN_EMAIL created"
fi
log "@medusajs/medusa $(node -p 'require("@medusajs/medusa/package.json").version'), node $(node -v); done in $(( $(date +%s) - t0 ))s"

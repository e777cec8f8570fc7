#!/usr/bin/env bash
# Property-based API test of the admin API: schemathesis (PyPI, exact pin below, installed in
# target/venv-tools) reads /api/v1/openapi.json of a running `concord demo` (sandbox ERP, two
# storefronts, live traffic) and sends generated requests — valid and invalid — to every
# operation with the demo's operator token. It fails on any server error (5xx) and on answers
# that do not match the document (status codes, content types, response schemas).
#
#   ./scripts/schemathesis.sh                 # builds concord if needed
#   CONCORD_BIN=target/release/concord SCHEMATHESIS_MAX_EXAMPLES=50 ./scripts/schemathesis.sh
#
# Called from scripts/test.sh. Needs python3 with venv; only talks to 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCHEMATHESIS_VERSION="4.32.5"
VENV="${SCHEMATHESIS_VENV:-$PWD/target/venv-tools}"
BIN="${CONCORD_BIN:-$PWD/target/debug/concord}"
WORK="$PWD/target/schemathesis"
TOKEN="concord-demo-operator"   # the demo's fixed operator token (demo only; see demo.toml)

if [ ! -x "$VENV/bin/schemathesis" ] \
  || [ "$("$VENV/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  echo "installing schemathesis==$SCHEMATHESIS_VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
if [ ! -x "$BIN" ]; then
  cargo build --quiet -p concord-cli
fi

rm -rf "$WORK"
mkdir -p "$WORK"
"$BIN" demo --seconds 3600 --dir "$WORK/demo" >"$WORK/demo.log" 2>&1 &
demo=$!
stop_demo() {
  kill "$demo" 2>/dev/null || true
  wait "$demo" 2>/dev/null || true
}
trap stop_demo EXIT

# The demo prints the hub's address once it serves.
hub=""
for _ in $(seq 1 300); do
  hub="$(grep -o 'hub   http://[0-9.:]*' "$WORK/demo.log" | awk '{print $2}' || true)"
  if [ -n "$hub" ] && curl -fsS "$hub/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$demo" 2>/dev/null; then
    echo "concord demo exited before serving:" >&2
    cat "$WORK/demo.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$hub" ]; then
  echo "concord demo did not serve within 30 s:" >&2
  cat "$WORK/demo.log" >&2
  exit 1
fi
echo "schemathesis $SCHEMATHESIS_VERSION against $hub/api/v1/openapi.json" >&2

# negative_data_rejection / positive_data_acceptance judge which generated inputs the API
# should accept; they are left out because the document cannot express every rule the API
# enforces (e.g. `from` <= `to`, at most 1000 ids). Everything else, including
# not_a_server_error, is checked.
# Run from target/schemathesis: schemathesis keeps its caches in ./.schemathesis.
cd "$WORK"
"$VENV/bin/schemathesis" run "$hub/api/v1/openapi.json" \
  --url "$hub" \
  --header "Authorization: Bearer $TOKEN" \
  --checks all \
  --exclude-checks negative_data_rejection,positive_data_acceptance \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-30}" \
  --workers 2 \
  --seed 1 \
  --generation-database none \
  --no-color \
  --report junit --report-dir "$WORK/report" \
  2>&1 | tee "$WORK/schemathesis.log"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  echo "schemathesis found problems (log: $WORK/schemathesis.log, hub log: $WORK/demo.log)" >&2
fi
exit "$status"

#!/usr/bin/env bash
# The README's first command: set up, migrate an SQLite store, run `tidewise serve` (API and
# rollup/retention jobs in one process), feed it a bundled slice of a real trace (Azure LLM
# inference 2023, code service, binned per second, CC BY 4.0), print where to look, and keep
# serving until Ctrl-C. It also replays a bundled trace (runs/demo-replay, shown on the
# dashboard) and declares a scaling target the daemon forecasts and decides on.
#   TIDEWISE_DEMO_EXIT=1   exit after feeding (used by the test of this script)
#   TIDEWISE_DEMO_SETUP=0  skip scripts/setup.sh (the environment is set up already)
#   TIDEWISE_DEMO_REPLAY   folder of the demo replay (default runs/demo-replay)
#   TIDEWISE_DEMO_PYTHON   the Python with Tidewise installed (default .venv/bin/python);
#                          the CLI is run as `$TIDEWISE_DEMO_PYTHON -m service.cli`
#   TIDEWISE_DB_URL, TIDEWISE_HOST, TIDEWISE_PORT   as for `tidewise serve`
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${TIDEWISE_DEMO_SETUP:-1}" != "0" ]; then
  bash scripts/setup.sh
fi
export TIDEWISE_DB_URL="${TIDEWISE_DB_URL:-sqlite:///./tidewise.db}"
export TIDEWISE_HOST="${TIDEWISE_HOST:-127.0.0.1}"
export TIDEWISE_PORT="${TIDEWISE_PORT:-8080}"
BASE="http://${TIDEWISE_HOST}:${TIDEWISE_PORT}"
PY="${TIDEWISE_DEMO_PYTHON:-.venv/bin/python}"
TW=("$PY" -m service.cli)  # = .venv/bin/tidewise, without needing the console script
DEMO_REPLAY="${TIDEWISE_DEMO_REPLAY:-runs/demo-replay}"

"${TW[@]}" db upgrade
# A replay of a bundled real trace through our policy and the peers', so the dashboard has a
# comparison to show (runs/ is git-ignored).
"${TW[@]}" replay --trace alibaba-datacenter-10s --scenario vm --policy hpa,kpa,bayes,oracle \
  --out "$DEMO_REPLAY" >/dev/null
export TIDEWISE_REPLAY_REPORT="${TIDEWISE_REPLAY_REPORT:-$DEMO_REPLAY}"
"${TW[@]}" serve &
SERVER=$!
cleanup() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Wait until the daemon answers /readyz (or has died, e.g. because the port is taken).
"$PY" - "$BASE" "$SERVER" <<'PY'
import os, sys, time
import httpx
base, pid = sys.argv[1], int(sys.argv[2])
for _ in range(300):
    try:
        if httpx.get(base + "/readyz", timeout=1).status_code == 200:
            sys.exit(0)
    except httpx.TransportError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("demo: tidewise serve exited; is the port taken? set TIDEWISE_PORT")
    time.sleep(0.1)
sys.exit("demo: tidewise serve did not become ready in 30 s")
PY

"${TW[@]}" feed --trace azure-llm-code --shift-to-now --url "$BASE"

# Declare what to manage: the LLM service, one replica per 2 requests/s, decided by `bayes`.
# The forecast job (every TIDEWISE_FORECAST_INTERVAL_S) then forecasts and decides on it.
"$PY" - "$BASE" <<'PY'
import sys
import httpx
target = {"kind": "scaling", "name": "llm-api", "entity": "azure-llm-code",
          "metric": "requests", "capacity": 2.0, "min_replicas": 1, "max_replicas": 100,
          "target_violation": 0.01, "boot_s": 60, "policy": "bayes"}
r = httpx.post(sys.argv[1] + "/v1/targets", json=target, timeout=10)
if r.status_code not in (200, 201):
    sys.exit(f"demo: declaring the target failed: {r.status_code} {r.text}")
PY

DB_FILE=""
case "$TIDEWISE_DB_URL" in
  sqlite*:///*) DB_FILE="$(realpath -m "${TIDEWISE_DB_URL#*:///}")" ;;
esac
cat <<MSG

Tidewise is serving ${TIDEWISE_DB_URL}${DB_FILE:+ (file ${DB_FILE})}
  dashboard       ${BASE}/dashboard/
  API docs        ${BASE}/docs
  entities        ${BASE}/v1/entities
  raw series      ${BASE}/v1/series/azure-llm-code/requests
  per minute      ${BASE}/v1/series/azure-llm-code/requests?step=60
  tokens, 5 min   ${BASE}/v1/series/azure-llm-code/tokens_in?step=300&agg=sum
  forecast        ${BASE}/v1/forecasts/azure-llm-code?metric=requests
  recommendation  ${BASE}/v1/recommendations/llm-api   (after the first forecast job, ~15 s)
  action log      ${BASE}/v1/actions
  replay report   ${DEMO_REPLAY}/report.json (+ cost_vs_sla.png, timeline.png)
  readiness       ${BASE}/readyz
MSG
if [ "${TIDEWISE_DEMO_EXIT:-0}" = "1" ]; then
  exit 0
fi
echo "Serving in the foreground; press Ctrl-C to stop."
wait "$SERVER"

#!/usr/bin/env bash
# `make serve`: a local Prefect server (SQLite) on 127.0.0.1:4200, the work pools, every deployment of
# prefect.yaml, and a process worker for CPU flows. Ctrl-C stops the worker and the server.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="$PWD/.venv/bin"
export FADA_HOME="$PWD" PREFECT_SERVER_ANALYTICS_ENABLED=false RAY_USAGE_STATS_ENABLED=0
export PREFECT_API_URL="http://127.0.0.1:4200/api"

"$BIN/prefect" server start --host 127.0.0.1 --port 4200 > .prefect-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  if curl -fs "$PREFECT_API_URL/health" > /dev/null; then break; fi
  sleep 1
done
curl -fs "$PREFECT_API_URL/health" > /dev/null || { echo "Prefect server did not start; see .prefect-server.log" >&2; exit 1; }

for pool in cpu-pool gpu-pool; do
  "$BIN/prefect" work-pool inspect "$pool" > /dev/null 2>&1 || "$BIN/prefect" work-pool create "$pool" --type process
done
"$BIN/prefect" --no-prompt deploy --all

echo
echo "Prefect UI: http://127.0.0.1:4200  (deployments: dataset-refresh [daily 03:00 UTC], refilter)"
echo "A worker for cpu-pool runs here; start one for gpu-pool on a GPU machine:"
echo "  PREFECT_API_URL=$PREFECT_API_URL $BIN/prefect worker start --pool gpu-pool --type process"
echo
"$BIN/prefect" worker start --pool cpu-pool --type process

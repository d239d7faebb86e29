#!/usr/bin/env bash
# `make serve`: a local Prefect server (SQLite) on 127.0.0.1:4200, the work pools (create-pools.sh), every
# deployment of prefect.yaml, and one process worker per pool: cpu-pool (dataset-refresh, refilter) and
# gpu-pool (train-teacher, distill-student, generate, evaluate; on this machine's GPU when it has one, else
# its CPU). Ctrl-C stops the workers and the server.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="$PWD/.venv/bin"
export FADA_HOME="$PWD" PREFECT_SERVER_ANALYTICS_ENABLED=false RAY_USAGE_STATS_ENABLED=0
export PREFECT_API_URL="http://127.0.0.1:4200/api"

"$BIN/prefect" server start --host 127.0.0.1 --port 4200 > .prefect-server.log 2>&1 &
server=$!
pids=("$server")
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  if curl -fs "$PREFECT_API_URL/health" > /dev/null; then break; fi
  sleep 1
done
curl -fs "$PREFECT_API_URL/health" > /dev/null || { echo "Prefect server did not start; see .prefect-server.log" >&2; exit 1; }

PREFECT="$BIN/prefect" bash infra/prefect/create-pools.sh
"$BIN/prefect" --no-prompt deploy --all

echo
echo "Prefect UI: http://127.0.0.1:4200"
echo "  cpu-pool: dataset-refresh [daily 03:00 UTC], refilter"
echo "  gpu-pool: train-teacher, distill-student, generate, evaluate (on demand)"
echo "Workers for both pools run here (gpu-pool's output is prefixed [gpu-pool])."
echo "On a GPU machine elsewhere instead: PREFECT_API_URL=$PREFECT_API_URL $BIN/prefect worker start --pool gpu-pool --type process"
echo "Set RAY_ADDRESS for the workers to send the model work to a Ray cluster's GPU nodes."
echo
"$BIN/prefect" worker start --pool gpu-pool --type process > >(sed -u 's/^/[gpu-pool] /') 2>&1 &
pids+=("$!")
"$BIN/prefect" worker start --pool cpu-pool --type process

#!/usr/bin/env bash
# Create FADA's Prefect work pools on the server at PREFECT_API_URL and set their concurrency limits.
#
#   cpu-pool  (process)  ingest, dataset-refresh, refilter: a worker on any CPU machine; their
#                        fan-out runs on Ray, so a few concurrent flow runs are enough
#   gpu-pool  (process)  train-teacher, distill-student, generate, evaluate: workers only on GPU machines; one flow
#                        run at a time per GPU box unless you raise the limit
#
# Idempotent: an existing pool is kept (its type is checked) and only its limit is set again.
#
#   PREFECT_API_URL=http://127.0.0.1:4200/api infra/prefect/create-pools.sh
#   CPU_POOL_LIMIT=8 GPU_POOL_LIMIT=2 infra/prefect/create-pools.sh
#
# Environment: PREFECT_API_URL (default http://127.0.0.1:4200/api, the `make serve` server),
# CPU_POOL / GPU_POOL (pool names), CPU_POOL_LIMIT (default 4) / GPU_POOL_LIMIT (default 1),
# PREFECT (the prefect executable; default: `prefect` on PATH, else the repository's .venv/bin/prefect),
# WAIT_S (how long to wait for the server to answer, default 120).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PREFECT:-}" ]]; then
  if command -v prefect > /dev/null; then PREFECT=prefect; else PREFECT="$root/.venv/bin/prefect"; fi
fi
if ! command -v "$PREFECT" > /dev/null; then
  echo "create-pools: no prefect executable ($PREFECT); run 'make test' once or set PREFECT=/path/to/prefect" >&2
  exit 1
fi

export PREFECT_API_URL="${PREFECT_API_URL:-http://127.0.0.1:4200/api}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
CPU_POOL="${CPU_POOL:-cpu-pool}"
GPU_POOL="${GPU_POOL:-gpu-pool}"
CPU_POOL_LIMIT="${CPU_POOL_LIMIT:-4}"
GPU_POOL_LIMIT="${GPU_POOL_LIMIT:-1}"
WAIT_S="${WAIT_S:-120}"

# The server may still be starting (compose starts this right after its health check, a user right after
# `prefect server start`): wait for /health.
health_url="${PREFECT_API_URL%/}/health"
python_bin="$(dirname "$(command -v "$PREFECT")")/python"
[[ -x "$python_bin" ]] || python_bin=python3
deadline=$((SECONDS + WAIT_S))
until "$python_bin" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" "$health_url" 2> /dev/null; do
  if (( SECONDS >= deadline )); then
    echo "create-pools: no Prefect server answers at $health_url after ${WAIT_S}s" >&2
    exit 1
  fi
  sleep 2
done

ensure_pool() {
  local name="$1" limit="$2" details
  if details="$("$PREFECT" work-pool inspect "$name" 2> /dev/null)"; then
    if ! grep -Eq "type='process'|\"type\": ?\"process\"" <<< "$details"; then
      echo "create-pools: work pool '$name' exists but is not of type process:" >&2
      echo "$details" >&2
      exit 1
    fi
    echo "work pool '$name' exists (process)"
  else
    "$PREFECT" work-pool create "$name" --type process
  fi
  "$PREFECT" work-pool set-concurrency-limit "$name" "$limit"
}

ensure_pool "$CPU_POOL" "$CPU_POOL_LIMIT"
ensure_pool "$GPU_POOL" "$GPU_POOL_LIMIT"
echo "work pools ready on $PREFECT_API_URL: $CPU_POOL (limit $CPU_POOL_LIMIT), $GPU_POOL (limit $GPU_POOL_LIMIT)"

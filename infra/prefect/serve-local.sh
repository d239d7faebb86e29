#!/usr/bin/env bash
# `make serve`: a local Prefect server on 127.0.0.1:4200, the work pools (create-pools.sh), every deployment
# of prefect.yaml (with its automations), and one process worker per pool: cpu-pool (dataset-refresh,
# refilter) and gpu-pool (train-teacher, distill-student, generate, evaluate; on this machine's GPU when it
# has one, else its CPU).
#
# State: PREFECT_HOME (default .prefect/ in this checkout) holds the server's SQLite database (flow runs,
# deployments, artifacts, events); the server's log is .prefect/server.log. To start from scratch, stop
# `make serve` and delete .prefect/. Set PREFECT_API_DATABASE_CONNECTION_URL for PostgreSQL (infra/README.md).
#
# Stopping: one Ctrl-C (or SIGTERM) stops the workers and the server: each runs in its own process group,
# which gets SIGINT, then SIGTERM after 10 s, then SIGKILL after 20 s, so nothing outlives this script.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="$PWD/.venv/bin"
export FADA_HOME="$PWD" PREFECT_SERVER_ANALYTICS_ENABLED=false RAY_USAGE_STATS_ENABLED=0
export PREFECT_HOME="${PREFECT_HOME:-$PWD/.prefect}"
export PREFECT_API_URL="http://127.0.0.1:4200/api"
mkdir -p "$PREFECT_HOME"
log="$PREFECT_HOME/server.log"

groups=()  # process-group ids of the server and the workers (each started with setsid)

start_group() {  # start_group LOGFILE|- COMMAND...: run COMMAND in a new process group, remember its id
  local out="$1"; shift
  if [[ "$out" == - ]]; then setsid "$@" & else setsid "$@" > "$out" 2>&1 & fi
  groups+=("$!")
}

# A group is alive while any of its processes is; its leader (the pid started) may not have called setsid yet.
group_alive() { kill -0 -- "-$1" 2> /dev/null || kill -0 "$1" 2> /dev/null; }
alive() { local g; for g in "${groups[@]}"; do group_alive "$g" && return 0; done; return 1; }
all_alive() { local g; for g in "${groups[@]}"; do group_alive "$g" || return 1; done; return 0; }

stop_all() {
  trap - INT TERM EXIT
  ((${#groups[@]})) || exit 0
  echo; echo "stopping the workers and the Prefect server …"
  local signal wait_s g
  for signal in INT TERM KILL; do
    for g in "${groups[@]}"; do kill "-$signal" -- "-$g" 2> /dev/null || kill "-$signal" "$g" 2> /dev/null || true; done
    [[ $signal == KILL ]] && break
    for wait_s in $(seq 1 20); do alive || break; sleep 0.5; done
    alive || break
  done
  echo "stopped."
  exit 0
}
trap stop_all INT TERM EXIT

start_group "$log" "$BIN/prefect" server start --host 127.0.0.1 --port 4200
for _ in $(seq 1 120); do
  if "$BIN/python" -c "import urllib.request; urllib.request.urlopen('$PREFECT_API_URL/health', timeout=2)" 2> /dev/null; then break; fi
  alive || { echo "Prefect server exited; see $log" >&2; exit 1; }
  sleep 1
done
"$BIN/python" -c "import urllib.request; urllib.request.urlopen('$PREFECT_API_URL/health', timeout=2)" 2> /dev/null \
  || { echo "Prefect server did not start within 120 s; see $log" >&2; exit 1; }

PREFECT="$BIN/prefect" bash infra/prefect/create-pools.sh
# `prefect deploy` ends with advice to start workers: this script starts them below, so keep its log instead.
"$BIN/prefect" --no-prompt deploy --all > "$PREFECT_HOME/deploy.log" 2>&1 \
  || { cat "$PREFECT_HOME/deploy.log" >&2; exit 1; }
grep -E "^Deployment '|Successfully created/updated" "$PREFECT_HOME/deploy.log" | sed 's/^/  /' || true

start_group - bash -c "exec '$BIN/prefect' worker start --pool gpu-pool --type process 2>&1 | sed -u 's/^/[gpu-pool] /'"
start_group - bash -c "exec '$BIN/prefect' worker start --pool cpu-pool --type process 2>&1 | sed -u 's/^/[cpu-pool] /'"

echo
echo "Prefect UI: http://127.0.0.1:4200     (state: $PREFECT_HOME; server log: $log)"
echo "  cpu-pool: dataset-refresh [daily 03:00 UTC], refilter"
echo "  gpu-pool: train-teacher, distill-student, generate, evaluate (on demand)"
echo "Workers for both pools run here. Ctrl-C stops everything."
echo "On a GPU machine elsewhere instead: PREFECT_API_URL=$PREFECT_API_URL $BIN/prefect worker start --pool gpu-pool --type process"
echo "Set RAY_ADDRESS for the workers to send the model work to a Ray cluster's GPU nodes."
echo

while all_alive; do sleep 1; done
echo "a worker or the server exited; stopping the rest" >&2

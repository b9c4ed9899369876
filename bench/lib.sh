# Sourced by the bench scripts: what several of them set up the same way.
#
# - PROFILE, BIN and build_host: which build of the host programs runs;
# - WORK, a scratch directory removed on exit, and PIDS, the processes
#   started in the background, stopped on exit (or earlier by stop_all);
# - need, wait_for, wait_port: preconditions and waiting for servers;
# - tasker_app, kvbench_app, qbench_app: the apps more than one bench runs.

. bench/profile.sh

WORK=$(mktemp -d)
PIDS=()
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT

# need COMMAND HOW-TO-INSTALL
need() { command -v "$1" >/dev/null || { echo "bench: $1 is not installed ($2)" >&2; exit 1; }; }

# wait_for COMMAND...: runs it until it succeeds, for 30 s at most.
wait_for() {
  for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "bench: gave up waiting for: $*" >&2
  return 1
}

# wait_port PORT: until something listens on 127.0.0.1:PORT.
wait_port() { wait_for bash -c "echo > /dev/tcp/127.0.0.1/$1"; }

# tasker_app DIR WASM: an app whose every route goes to the tasker test
# component, which may start tasks on itself.
tasker_app() {
  mkdir -p "$1"
  cat > "$1/nubo.toml" <<TOML
[app]
name = "tbench"
[component.tasker]
source = "$2"
tasks = ["tasker"]
limits = { timeout_ms = 600000 }
[[http]]
route = "/..."
component = "tasker"
TOML
}

# kvbench_app DIR WASM: the kvbench test component on every route, with
# key-value store `default`.
kvbench_app() {
  mkdir -p "$1"
  cat > "$1/nubo.toml" <<TOML
[app]
name = "kvbench"
[component.kvbench]
source = "$2"
key_value_stores = ["default"]
[[http]]
route = "/..."
component = "kvbench"
TOML
}

# qbench_app DIR WASM CONCURRENCY BATCH_SIZE: queue `jobs`, published to
# by POST /enqueue and consumed by the qbench test component, which keeps
# a latency histogram in key-value.
qbench_app() {
  mkdir -p "$1"
  cat > "$1/nubo.toml" <<TOML
[app]
name = "qbench"
[component.qbench]
source = "$2"
key_value_stores = ["default"]
[queue.jobs]
consumer = "qbench"
path = "/consume"
concurrency = $3
batch_size = $4
[[http]]
route = "/enqueue"
queue = "jobs"
TOML
}

# clear_latencies CONTROL TOKEN: deletes qbench's latency records, which a
# warm-up leaves and which would count as deliveries of the run.
# A page holds 10,000 keys; a run of single-message deliveries leaves more.
clear_latencies() {
  local k keys
  while keys=$(curl -sf -H "authorization: Bearer $2" "http://$1/v1/apps/qbench/kv/default?prefix=lat-&limit=10000" | grep -o 'lat-[0-9-]*') && [ -n "$keys" ]; do
    for k in $keys; do
      curl -sf -X DELETE -H "authorization: Bearer $2" "http://$1/v1/apps/qbench/kv/default/$k" >/dev/null
    done
  done
}

# serve BIN DIR [PATH]: a node of BIN serving app DIR on $ADDR (control
# API on $CONTROL), fresh state each time; up once GET PATH answers.
serve() {
  rm -rf "$WORK/state"
  NUBO_LOG=warn "$1" up "$2" --no-build --listen "$ADDR" --control "$CONTROL" --state "$WORK/state" >"$WORK/node.log" 2>&1 &
  PIDS+=("$!")
  wait_for curl -sf "http://$ADDR/${3:-}"
}

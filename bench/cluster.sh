#!/usr/bin/env bash
# Cluster mode (issue 6), side by side in one run, release builds.
#
# 1. A CPU-bound task job (CHUNKS tasks of `burn`, about 0.25 s each) on
#    1, 2 and 3 nodes of one cluster. This machine has 2 cores, so the
#    nodes share them: once pinned one core per node (`taskset`, node 3
#    shares core 0 with node 1), which is what adding a machine adds; and
#    once unpinned, where one node already uses both cores.
# 2. Trivial tasks (TASKS spawned at once, awaited): an embedded node
#    (SQLite) against one node of a cluster (every task a few JetStream
#    round trips).
# 3. Durable queues through a node, embedded against JetStream-backed,
#    each beside raw JetStream from a Rust client (bench/queue-bench).
#
# NATS is one nats-server (Debian 2.9.10, JetStream, file storage) on the
# same machine; a cluster of three would add replication on the same two
# cores.
#
# Usage: bench/cluster.sh [CHUNKS] [TASKS] [MESSAGES]   (defaults 12 2000 10000)
# Needs: nats-server, taskset (util-linux)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
CHUNKS="${1:-12}"
TASKS="${2:-2000}"
MESSAGES="${3:-10000}"
WORK_WASM="${WORK_WASM:-150000000}"
need nats-server "apt-get install nats-server"

echo "== building ($PROFILE)" >&2
build_host -p nubo -p queue-bench
(cd tests/components && cargo build --release -q --target wasm32-wasip2 -p tasker -p qbench)
TASKER="$PWD/tests/components/target/wasm32-wasip2/release/tasker.wasm"
QBENCH="$PWD/tests/components/target/wasm32-wasip2/release/qbench.wasm"
NUBO="$PWD/$BIN/nubo"
TOKEN=bench-token

tasker_app "$WORK/tasks" "$TASKER"
qbench_app "$WORK/queue" "$QBENCH" 16 100

NATS_PORT=3430
start_nats() {
  rm -rf "$WORK/nats"
  nats-server -js -p "$NATS_PORT" -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
  PIDS+=("$!")
  wait_port "$NATS_PORT"
}

# start_node I [CPU] [--nats]: node I on 127.0.0.1:345I (apps) and :346I (control).
start_node() {
  local i="$1" cpu="$2" nats="${3:-}"
  local pin=()
  [ -n "$cpu" ] && pin=(taskset -c "$cpu")
  local extra=()
  [ -n "$nats" ] && extra=(--nats "nats://127.0.0.1:$NATS_PORT" --node-id "n$i" --cluster-key "bench-cluster-key-0123456789abcdef0123")
  NUBO_LOG=warn "${pin[@]}" "$NUBO" node --state "$WORK/state$i" --listen "127.0.0.1:345$i" \
    --control "127.0.0.1:346$i" --token "$TOKEN" "${extra[@]}" >"$WORK/node$i.log" 2>&1 &
  PIDS+=("$!")
  wait_for curl -sf "http://127.0.0.1:346$i/readyz"
}

apply() { "$NUBO" apply "$1" --node "http://127.0.0.1:346$2" --token "$TOKEN" --auto-approve >/dev/null; }

# Waits until node I serves PATH.
serving() { wait_for curl -sf "http://127.0.0.1:345$1$2"; }

field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }

cpu_job() { # NODES PINNED(yes|no)
  local n="$1" pinned="$2"
  rm -rf "$WORK"/state*
  start_nats
  for i in $(seq 1 "$n"); do
    local cpu=""
    [ "$pinned" = yes ] && cpu=$(( (i - 1) % 2 ))
    start_node "$i" "$cpu" --nats
  done
  apply "$WORK/tasks" 1
  for i in $(seq 1 "$n"); do serving "$i" "/rtt?1"; done
  curl -sf "http://127.0.0.1:3451/cpu?2,1000000" >/dev/null
  local out
  out=$(curl -sf "http://127.0.0.1:3451/cpu?$CHUNKS,$WORK_WASM")
  stop_all
  echo "$out"
}

echo "== 1. CPU-bound job: $CHUNKS x burn($WORK_WASM)" >&2
declare -A CPU
for pinned in yes no; do
  for n in 1 2 3; do
    echo "   $n node(s), pinned=$pinned" >&2
    CPU[$pinned$n]=$(cpu_job "$n" "$pinned")
  done
done

echo "== 2. trivial tasks: $TASKS at once" >&2
trivial_run() { # --nats or "": the burst's answer, then the round trip's, one per line
  rm -rf "$WORK"/state*
  [ -n "$1" ] && start_nats
  start_node 1 "" "$1"
  apply "$WORK/tasks" 1
  serving 1 "/rtt?1"
  curl -sf "http://127.0.0.1:3451/burst?500" >/dev/null
  curl -sf "http://127.0.0.1:3451/burst?$TASKS"; echo
  curl -sf "http://127.0.0.1:3451/rtt?200"; echo
  stop_all
}
# $(...), not < <(...): a process substitution is not waited for, and its
# nodes and NATS were still being stopped while the next run started its own.
EMB=$(trivial_run "")
CL=$(trivial_run --nats)
EMB_BURST=$(sed -n 1p <<<"$EMB"); EMB_RTT=$(sed -n 2p <<<"$EMB")
CL_BURST=$(sed -n 1p <<<"$CL"); CL_RTT=$(sed -n 2p <<<"$CL")

echo "== 3. queues: $MESSAGES messages, embedded and JetStream-backed" >&2
queue_run() { # --nats or ""
  rm -rf "$WORK"/state*
  start_nats
  start_node 1 "" "$1"
  apply "$WORK/queue" 1
  wait_for curl -sf -H "authorization: Bearer $TOKEN" "http://127.0.0.1:3461/v1/apps/qbench"
  $BIN/queue-bench 127.0.0.1:3451 127.0.0.1:3461 "$TOKEN" "nats://127.0.0.1:$NATS_PORT" 1000 16 >/dev/null
  clear_latencies 127.0.0.1:3461 "$TOKEN"
  $BIN/queue-bench 127.0.0.1:3451 127.0.0.1:3461 "$TOKEN" "nats://127.0.0.1:$NATS_PORT" "$MESSAGES" 16
  stop_all
}
Q_EMB=$(queue_run "")
Q_CL=$(queue_run --nats)

echo
echo "### 1. CPU-bound task job, $CHUNKS tasks of about 0.25 s (machine: 2 cores)"
echo
echo "| nodes | pinned one core each: parallel s | tasks/s | vs 1 node | unpinned (share 2 cores): parallel s | tasks/s | vs 1 node |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for n in 1 2 3; do
  py=$(field "${CPU[yes$n]}" par_s); p1=$(field "${CPU[yes1]}" par_s)
  uy=$(field "${CPU[no$n]}" par_s); u1=$(field "${CPU[no1]}" par_s)
  python3 - "$n" "$CHUNKS" "$py" "$p1" "$uy" "$u1" <<'PY'
import sys
n, k, p, p1, u, u1 = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:])
print(f"| {n} | {p:.2f} | {k/p:.1f} | {p1/p:.2f}× | {u:.2f} | {k/u:.1f} | {u1/u:.2f}× |")
PY
done
echo
echo "sequential in one handler: $(field "${CPU[yes1]}" seq_s) s (pinned), $(field "${CPU[no1]}" seq_s) s (unpinned)"
echo
echo "### 2. Trivial tasks on one node: embedded (SQLite) and cluster (JetStream)"
echo
echo "| backend | $TASKS tasks: tasks/s | round trip p50 µs |"
echo "| --- | ---: | ---: |"
echo "| embedded | $(field "$EMB_BURST" tasks_per_s) | $(field "$EMB_RTT" p50_us) |"
echo "| cluster (1 NATS server) | $(field "$CL_BURST" tasks_per_s) | $(field "$CL_RTT" p50_us) |"
echo
echo "### 3. Durable queues through a node"
echo
echo "embedded node:"
echo "$Q_EMB"
echo
echo "cluster node (queues on JetStream):"
echo "$Q_CL"

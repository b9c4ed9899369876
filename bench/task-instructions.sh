#!/usr/bin/env bash
# Instructions the whole node executes per trivial task, counted by
# callgrind, for two builds: a count that the VM's noise does not move,
# where bench/ab.sh's CPU time per task spreads by 10-30% between rounds.
# Each build serves the tasker test component under valgrind twice, for
# bursts of 500 and 2,500 tasks; the difference of the two totals over
# 2,000 tasks leaves out start-up and the requests around the bursts.
#
# Usage: bench/task-instructions.sh BEFORE_BIN AFTER_BIN [ROUNDS]   (default 2)
# Needs: valgrind, curl. About 30 s per burst on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE="$1"; AFTER="$2"; ROUNDS="${3:-2}"
. bench/lib.sh
need valgrind "apt-get install valgrind"
(cd tests/components && cargo build --release -q --target wasm32-wasip2 -p tasker)
W="$WORK"
tasker_app "$W/app" "$PWD/tests/components/target/wasm32-wasip2/release/tasker.wasm"
export NUBO_CACHE_DIR="$W/cache" NUBO_LOG=warn
ADDR=127.0.0.1:39411
# burst BIN N: the node's instruction total for a burst of N tasks.
burst() {
  rm -rf "$W/state"
  valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" "$1" up "$W/app" --no-build \
    --listen "$ADDR" --control 127.0.0.1:39412 --state "$W/state" >"$W/node.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 600); do curl -sf "http://$ADDR/rtt?1" >/dev/null 2>&1 && break; sleep 1; done
  curl -sf "http://$ADDR/burst?$2" >/dev/null
  kill -INT "$pid"; wait "$pid" || true
  PIDS=()
  awk '/^summary:/ {print $2}' "$W/cg.out"
}
# The first start compiles the component into the cache; not counted.
burst "$BEFORE" 1 >/dev/null
echo "| round | build | instructions per task |"
echo "| --- | --- | --- |"
for r in $(seq 1 "$ROUNDS"); do
  for b in "$BEFORE" "$AFTER"; do
    small=$(burst "$b" 500); big=$(burst "$b" 2500)
    echo "| $r | $b | $(( (big - small) / 2000 )) |"
  done
done

#!/usr/bin/env bash
# Durable queues, side by side in one run: publish→consume through a Nubo
# node (an `[[http]] queue` route, SQLite backend, the qbench component as
# consumer) and through NATS JetStream (nats-server from Debian, file
# storage, a durable pull consumer) from a Rust client (bench/queue-bench).
#
# Both keep messages comparably: acknowledged once written to the
# operating system (Nubo: SQLite WAL, synchronous=NORMAL; JetStream: its
# file store, which fsyncs on an interval), so both survive a killed
# process and neither promises to survive a power cut.
#
# Nubo's consumer takes up to BATCH_SIZE messages per delivery (the
# queue's `batch_size`), as JetStream's pull consumer fetches in batches.
#
# The run is repeated ROUNDS times, each round Nubo then JetStream, and
# the summary gives each round's ratio and the median: on a shared VM one
# round can swing either way by half.
#
# Usage: bench/queue.sh [MESSAGES] [PUBLISHERS] [CONSUMER_CONCURRENCY] [BATCH_SIZE] [ROUNDS]   (defaults 20000 16 16 100 5)
# Needs: nats-server (apt-get install nats-server)
# NUBO_BIN=PATH runs another build of the node (for A/B runs of two builds
# against the same client and JetStream).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
MESSAGES="${1:-20000}"
PUBLISHERS="${2:-16}"
CONCURRENCY="${3:-16}"
BATCH_SIZE="${4:-100}"
ROUNDS="${5:-5}"
need nats-server "apt-get install nats-server"

echo "== building ($PROFILE)" >&2
build_host -p nubo -p queue-bench
(cd tests/components && cargo build --release -q --target wasm32-wasip2 -p qbench)
WASM="$PWD/tests/components/target/wasm32-wasip2/release/qbench.wasm"

qbench_app "$WORK" "$WASM" "$CONCURRENCY" "$BATCH_SIZE"

NUBO_ADDR=127.0.0.1:3410; CONTROL=127.0.0.1:3411; NATS_PORT=3412
NUBO_LOG=warn "${NUBO_BIN:-$BIN/nubo}" up "$WORK" --no-build --listen "$NUBO_ADDR" --control "$CONTROL" --state "$WORK/state" >"$WORK/nubo.log" 2>&1 &
PIDS+=("$!"); export NUBO_PID=$!
nats-server -js -p "$NATS_PORT" -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
PIDS+=("$!"); export NATS_PID=$!
# Up once it has written its token and loaded the app.
app_loaded() { [ -s "$WORK/state/token" ] && curl -sf -H "authorization: Bearer $(cat "$WORK/state/token")" "http://$CONTROL/v1/apps/qbench"; }
wait_for app_loaded
wait_port "$NATS_PORT"
TOKEN=$(cat "$WORK/state/token")

# Warm-up: compile caches, SQLite pages, JetStream's store.
$BIN/queue-bench "$NUBO_ADDR" "$CONTROL" "$TOKEN" "nats://127.0.0.1:$NATS_PORT" 1000 "$PUBLISHERS" >/dev/null
echo "nubo consumer: concurrency $CONCURRENCY, batch_size $BATCH_SIZE; $ROUNDS rounds"
for r in $(seq 1 "$ROUNDS"); do
  clear_latencies "$CONTROL" "$TOKEN"
  echo
  echo "== round $r"
  $BIN/queue-bench "$NUBO_ADDR" "$CONTROL" "$TOKEN" "nats://127.0.0.1:$NATS_PORT" "$MESSAGES" "$PUBLISHERS" | tee "$WORK/round.$r"
done

# One line per round: ratio, then server and client CPU per message (µs),
# nubo / jetstream.
for r in $(seq 1 "$ROUNDS"); do
  awk '/throughput:/ {gsub("×", "", $NF); ratio = $NF}
       /CPU per message/ {print ratio, $5, $8, $11, $14}' "$WORK/round.$r"
done > "$WORK/summary"
echo
echo "| round | nubo / jetstream | server CPU µs/msg nubo / jetstream | client CPU µs/msg nubo / jetstream |"
echo "| ---: | ---: | ---: | ---: |"
awk '{printf "| %d | %s× | %s / %s | %s / %s |\n", NR, $1, $2, $3, $4, $5}' "$WORK/summary"
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo
echo "median nubo / jetstream throughput: $(awk '{print $1}' "$WORK/summary" | median)×" \
  "(server CPU per message, medians: nubo $(awk '{print $2}' "$WORK/summary" | median) µs," \
  "jetstream $(awk '{print $3}' "$WORK/summary" | median) µs)"

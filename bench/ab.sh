#!/usr/bin/env bash
# Two builds of the node side by side in one run: what a change costs.
#   HTTP: wrk at 64 and 1 connections against tests/components/hello;
#   tasks: spawn+await round trips and a burst of trivial tasks (tasker,
#   timed inside the guest, as bench/tasks.sh does);
#   key-value: four callers each setting 5,000 new 100-byte keys through
#   tests/components/kvbench (embedded SQLite store);
#   queues: 20,000 messages from 16 publishers through a queue route to
#   tests/components/qbench (batch_size 100, concurrency 16), timed by
#   bench/queue-bench until every message is consumed.
# The builds alternate round by round, so drift on the machine hits both;
# the table gives each round and the median ratio AFTER / BEFORE.
# Besides rates, it reports the node's own CPU time (user + system, from
# /proc) per request and per task: it does not count the load generator
# or the time the node waits, so it moves less with the VM's drift.
#
# Usage: bench/ab.sh BEFORE_BIN AFTER_BIN [ROUNDS] [SECONDS]   (defaults 3 5)
#   e.g. git worktree add /tmp/base REV && (cd /tmp/base && cargo build --profile dist -p nubo)
#        bench/ab.sh /tmp/base/target/dist/nubo target/dist/nubo
# Needs: wrk (apt-get install wrk), nats-server (queue-bench also times
# JetStream; only Nubo's rows are used here).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BEFORE="$1"; AFTER="$2"; ROUNDS="${3:-3}"; DURATION="${4:-5}"
need wrk "apt-get install wrk"
need nats-server "apt-get install nats-server"
(cd tests/components && cargo build --release -q --target wasm32-wasip2 -p hello -p tasker -p kvbench -p qbench)
cargo build --release -q -p queue-bench
QCLIENT="$PWD/target/release/queue-bench"
QBENCH="$PWD/tests/components/target/wasm32-wasip2/release/qbench.wasm"
HELLO="$PWD/tests/components/target/wasm32-wasip2/release/hello.wasm"
TASKER="$PWD/tests/components/target/wasm32-wasip2/release/tasker.wasm"
KVBENCH="$PWD/tests/components/target/wasm32-wasip2/release/kvbench.wasm"
mkdir -p "$WORK/hello"
cat > "$WORK/hello/nubo.toml" <<TOML
[app]
name = "bench"
[component.hello]
source = "$HELLO"
limits = { max_instances = 1000 }
[[http]]
route = "/..."
component = "hello"
TOML
tasker_app "$WORK/tasker" "$TASKER"
kvbench_app "$WORK/kv" "$KVBENCH"
qbench_app "$WORK/q" "$QBENCH" 16 100
# One JetStream for the whole run, apart from the nodes stop_all stops.
nats-server -js -p 3502 -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!
trap 'kill "$NATS_PID" 2>/dev/null || true; stop_all; rm -rf "$WORK"' EXIT
wait_port 3502

ADDR=127.0.0.1:3500; CONTROL=127.0.0.1:3501
# serve_app BIN DIR APP: like serve, for an app with no route to GET; up
# once the control API lists the app.
serve_app() {
  rm -rf "$WORK/state"
  NUBO_LOG=warn "$1" up "$2" --no-build --listen "$ADDR" --control "$CONTROL" --state "$WORK/state" >"$WORK/node.log" 2>&1 &
  PIDS+=("$!")
  wait_for bash -c "[ -s '$WORK/state/token' ] && curl -sf -H \"authorization: Bearer \$(cat '$WORK/state/token')\" http://$CONTROL/v1/apps/$3"
}
rps() { wrk -t1 -c"$1" -d"${DURATION}s" "http://$ADDR/" | awk '/Requests\/sec/ {print $2}'; }
# CPU seconds the node (the last process started) has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/${PIDS[-1]}/stat"; }

: > "$WORK/results"
for round in $(seq 1 "$ROUNDS"); do
  for which in before after; do
    bin=$BEFORE; [ "$which" = after ] && bin=$AFTER
    echo "== round $round: $which" >&2
    serve "$bin" "$WORK/hello"
    wrk -t1 -c64 -d1s "http://$ADDR/" >/dev/null
    before_cpu=$(cpu)
    requests=$(wrk -t1 -c64 -d"${DURATION}s" "http://$ADDR/" | awk '/requests in/ {print $1}')
    req_us=$(python3 -c "print(($(cpu) - $before_cpu) * 1e6 / $requests)")
    c64=$(python3 -c "print($requests / $DURATION)")
    c1=$(rps 1)
    stop_all
    serve "$bin" "$WORK/tasker" "rtt?1"
    curl -sf "http://$ADDR/burst?2000" >/dev/null
    rtt=$(curl -sf "http://$ADDR/rtt?500" | python3 -c 'import json,sys; print(json.load(sys.stdin)["mean_us"])')
    burst=$(curl -sf "http://$ADDR/burst?5000" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tasks_per_s"])')
    before_cpu=$(cpu)
    for _ in 1 2 3 4; do curl -sf "http://$ADDR/burst?5000" >/dev/null; done
    task_us=$(python3 -c "print(($(cpu) - $before_cpu) * 1e6 / 20000)")
    stop_all
    serve "$bin" "$WORK/kv" "?op=get&n=1"
    curl -sf "http://$ADDR/?op=set&n=2000&prefix=warm" >/dev/null
    before_cpu=$(cpu)
    started=$(date +%s.%N)
    callers=()
    for c in 1 2 3 4; do curl -sf "http://$ADDR/?op=set&n=5000&prefix=c$c-" >/dev/null & callers+=("$!"); done
    wait "${callers[@]}"
    sets=$(python3 -c "print(20000 / ($(date +%s.%N) - $started))")
    set_us=$(python3 -c "print(($(cpu) - $before_cpu) * 1e6 / 20000)")
    stop_all
    serve_app "$bin" "$WORK/q" qbench
    token=$(cat "$WORK/state/token")
    NUBO_PID=${PIDS[-1]} "$QCLIENT" "$ADDR" "$CONTROL" "$token" nats://127.0.0.1:3502 1000 16 >/dev/null
    clear_latencies "$CONTROL" "$token"
    NUBO_PID=${PIDS[-1]} "$QCLIENT" "$ADDR" "$CONTROL" "$token" nats://127.0.0.1:3502 20000 16 >"$WORK/q.out"
    qrate=$(awk '$2 == "nubo" && $4 ~ /^[0-9]+$/ {print $8}' "$WORK/q.out")
    qcpu=$(awk '/CPU per message/ {print $5}' "$WORK/q.out")
    stop_all
    echo "$round $which $c64 $c1 $rtt $burst $req_us $task_us $sets $set_us $qrate $qcpu" >> "$WORK/results"
  done
done

python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, which, *v in rows:
    by.setdefault(r, {})[which] = [float(x) for x in v]
names = ["HTTP req/s, 64 conns", "HTTP req/s, 1 conn", "task round trip, mean µs", "trivial tasks/s",
         "node CPU per request, µs", "node CPU per trivial task, µs",
         "key-value sets/s, 4 callers", "node CPU per key-value set, µs",
         "queue messages/s, publish to consume", "node CPU per queue message, µs"]
print("| measure | before | after | after / before (median) |")
print("| --- | --- | --- | --- |")
for i, name in enumerate(names):
    b = [by[r]["before"][i] for r in sorted(by)]
    a = [by[r]["after"][i] for r in sorted(by)]
    ratios = [x / y for x, y in zip(a, b)]
    fmt = lambda xs: ", ".join(f"{x:,.1f}" if x < 100 else f"{x:,.0f}" for x in xs)
    print(f"| {name} | {fmt(b)} | {fmt(a)} | {statistics.median(ratios):.3f}× |")
PY

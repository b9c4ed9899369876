#!/usr/bin/env bash
# Durable tasks against Ray, side by side in one run (issue 5).
#
# Nubo: a release `nubo up` with the tasker test component; every number
# is timed inside the guest, the way Ray's are timed in its driver:
#   - round trip of one spawn+await of a trivial task (`noop`), N times;
#   - throughput of TASKS trivial tasks spawned at once and awaited;
#   - a CPU-bound fan-out: CHUNKS calls of `burn` one after another, then
#     as CHUNKS tasks; and the wordcount example (64 documents, one task
#     each, against the same count done one after another).
# Every Nubo task is durable: its spawn, start and result are committed to
# SQLite before anyone is told. Ray's tasks live in memory.
# Ray: bench/tasks/ray_bench.py, `ray.init(num_cpus=2)`, the same shapes.
#
# Usage: bench/tasks.sh [ROUND_TRIPS] [TASKS] [CHUNKS]   (defaults 1000 10000 8)
# Needs: python3 with ray (pip install ray)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RTT="${1:-1000}"
TASKS="${2:-10000}"
CHUNKS="${3:-8}"
# Work per chunk, about 0.25 s each on this machine: wasm runs the loop
# about a hundred times faster than CPython.
WORK_WASM="${WORK_WASM:-150000000}"
WORK_PY="${WORK_PY:-2000000}"
python3 -c "import ray" 2>/dev/null || { echo "bench: ray is not installed (pip install ray)" >&2; exit 1; }

echo "== building ($PROFILE)" >&2
build_host -p nubo
(cd tests/components && cargo build --release -q --target wasm32-wasip2 -p tasker)
(cd examples/wordcount/counter && cargo build --release -q --target wasm32-wasip2)
WASM="$PWD/tests/components/target/wasm32-wasip2/release/tasker.wasm"

tasker_app "$WORK" "$WASM"

ADDR=127.0.0.1:3420; CONTROL=127.0.0.1:3421
NUBO_LOG=warn $BIN/nubo up "$WORK" --no-build --listen "$ADDR" --control "$CONTROL" --state "$WORK/state" >"$WORK/nubo.log" 2>&1 &
PIDS+=("$!")
wait_for curl -sf "http://$ADDR/rtt?1"

echo "== nubo: warm-up" >&2
curl -sf "http://$ADDR/burst?2000" >/dev/null
curl -sf "http://$ADDR/rtt?100" >/dev/null
echo "== nubo: $RTT round trips, 3 x $TASKS tasks, $CHUNKS x burn($WORK_WASM)" >&2
N_RTT=$(curl -sf "http://$ADDR/rtt?$RTT")
N_B1=$(curl -sf "http://$ADDR/burst?$TASKS")
N_B2=$(curl -sf "http://$ADDR/burst?$TASKS")
N_B3=$(curl -sf "http://$ADDR/burst?$TASKS")
N_CPU=$(curl -sf "http://$ADDR/cpu?$CHUNKS,$WORK_WASM")
N_RSS=$(awk '/VmRSS/ {print $2}' "/proc/${PIDS[0]}/status")
stop_all

echo "== nubo: the wordcount example, 64 documents" >&2
NUBO_LOG=warn $BIN/nubo up examples/wordcount --no-build --listen "$ADDR" --control "$CONTROL" --state "$WORK/wc" >"$WORK/wc.log" 2>&1 &
PIDS+=("$!")
wait_for curl -sf "http://$ADDR/"
curl -sf "http://$ADDR/api/count?docs=4" >/dev/null
N_WC=$(curl -sf "http://$ADDR/api/count?docs=64")
stop_all

echo "== ray: the same" >&2
RAY=$(python3 bench/tasks/ray_bench.py --latency "$RTT" --tasks "$TASKS" --chunks "$CHUNKS" --work "$WORK_PY")

python3 - "$N_RTT" "$N_B1" "$N_B2" "$N_B3" "$N_CPU" "$RAY" "$N_RSS" "$N_WC" <<'PY'
import json, sys
rtt, b1, b2, b3, cpu, ray = (json.loads(a) for a in sys.argv[1:7])
rss = int(sys.argv[7]) / 1024
wc = json.loads(sys.argv[8])
best = max(b["tasks_per_s"] for b in (b1, b2, b3))
runs = ", ".join(f'{b["tasks_per_s"]:,.0f}' for b in (b1, b2, b3))
rruns = ", ".join(f"{x:,.0f}" for x in ray["throughput_runs"])
print(f"| | Nubo (durable) | Ray {ray['ray_version']} (in memory) | ratio |")
print("| --- | --- | --- | --- |")
print(f"| spawn+await round trip, mean | {rtt['mean_us']:,.0f} µs | {ray['latency_us_mean']:,.0f} µs | {ray['latency_us_mean'] / rtt['mean_us']:.1f}× faster |")
print(f"| spawn+await round trip, p50 | {rtt['p50_us']:,.0f} µs | {ray['latency_us_p50']:,.0f} µs | {ray['latency_us_p50'] / rtt['p50_us']:.1f}× faster |")
print(f"| spawn+await round trip, p99 | {rtt['p99_us']:,.0f} µs | {ray['latency_us_p99']:,.0f} µs | {ray['latency_us_p99'] / rtt['p99_us']:.1f}× faster |")
print(f"| {b1['tasks']:,} trivial tasks, best of 3 (tasks/s) | {best:,.0f} ({runs}) | {ray['throughput_best']:,.0f} ({rruns}) | {best / ray['throughput_best']:.1f}× |")
print(f"| CPU fan-out, {cpu['chunks']} chunks: sequential → parallel | {cpu['seq_s']:.2f} s → {cpu['par_s']:.2f} s | {ray['cpu_seq_s']:.2f} s → {ray['cpu_par_s']:.2f} s | |")
print(f"| CPU fan-out speedup on 2 cores | {cpu['speedup']:.2f}× | {ray['cpu_speedup']:.2f}× | |")
print(f"| one chunk's work inside a task vs inline (the same compiled function) | {cpu['task_us'] / 1e3:,.0f} ms vs {cpu['inline_us'] / 1e3:,.0f} ms: {cpu['task_vs_inline']:.2f}× | | |")
print(f"| wordcount example, {wc['documents']} documents: sequential → parallel | {wc['sequential_ms'] / 1000:.2f} s → {wc['parallel_ms'] / 1000:.2f} s, {wc['speedup']:.2f}× | | |")
print(f"\nnubo node resident memory after the runs above: {rss:.0f} MiB")
PY

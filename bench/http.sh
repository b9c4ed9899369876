#!/usr/bin/env bash
# HTTP throughput and latency, side by side in one run:
#   nubo up         serving tests/components/hello (a standard wasi:http component)
#   nubo static     the same node serving the same answer as a static file
#   wasmtime serve  serving the same .wasm
#   native-hello    a native hyper server (the ceiling)
# with wrk at 1 and 64 connections. Prints req/s, p50, p99 and ratios, and
# the resident memory of the nubo node idle and under load.
#
# Usage: bench/http.sh [DURATION_SECONDS]   (default 10)
# Needs: wrk (apt-get install wrk), wasmtime (cargo install wasmtime-cli --version 48.0.8)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DURATION="${1:-10}"
need wrk "apt-get install wrk"
need wasmtime "cargo install wasmtime-cli --version 48.0.8"

echo "== building ($PROFILE)" >&2
build_host -p nubo -p native-hello
(cd tests/components && cargo build --release -q --target wasm32-wasip2 -p hello)
WASM="$PWD/tests/components/target/wasm32-wasip2/release/hello.wasm"

cat > "$WORK/nubo.toml" <<TOML
[app]
name = "bench"
[component.hello]
source = "$WASM"
limits = { max_instances = 1000 }
[[http]]
route = "/..."
component = "hello"
[[static]]
route = "/static/..."
dir = "public"
TOML
mkdir -p "$WORK/public"; printf 'Hello, world!\n' > "$WORK/public/hello.txt"

NUBO_ADDR=127.0.0.1:3100; WASMTIME_ADDR=127.0.0.1:3101; NATIVE_ADDR=127.0.0.1:3102
# The control API's port is given: by default it is the next one, wasmtime's.
NUBO_LOG=warn $BIN/nubo up "$WORK" --listen "$NUBO_ADDR" --control 127.0.0.1:3103 --state "$WORK/state" >"$WORK/nubo.log" 2>&1 &
NUBO_PID=$!; PIDS+=("$NUBO_PID")
wasmtime serve -Scli --addr "$WASMTIME_ADDR" "$WASM" >"$WORK/wasmtime.log" 2>&1 &
PIDS+=("$!")
$BIN/native-hello "$NATIVE_ADDR" >"$WORK/native.log" 2>&1 &
PIDS+=("$!")

for addr in "$NUBO_ADDR" "$WASMTIME_ADDR" "$NATIVE_ADDR"; do wait_for curl -sf "http://$addr/"; done
declare -A URL=(
  [nubo]="http://$NUBO_ADDR/" [static]="http://$NUBO_ADDR/static/hello.txt"
  [wasmtime]="http://$WASMTIME_ADDR/" [native]="http://$NATIVE_ADDR/"
)

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
IDLE_RSS=$(rss_kb "$NUBO_PID")

# run NAME ADDR CONNS -> "rps p50 p99"
run() {
  local out
  out=$(wrk -t1 -c"$3" -d"${DURATION}s" --latency "$2" 2>&1)
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  echo "$rps $p50 $p99"
}

declare -A R
PEAK_RSS=$IDLE_RSS
for c in 1 64; do
  for name in nubo static wasmtime native; do
    addr=${URL[$name]}
    wrk -t1 -c"$c" -d2s "$addr" >/dev/null 2>&1   # warm-up
    if [ "$name" = nubo ]; then
      ( sleep "$((DURATION / 2))"; rss_kb "$NUBO_PID" > "$WORK/rss.$c" ) &
      SAMPLER=$!
    fi
    R[$name,$c]=$(run "$name" "$addr" "$c")
    if [ "$name" = nubo ]; then
      wait "$SAMPLER"
      r=$(cat "$WORK/rss.$c"); [ "$r" -gt "$PEAK_RSS" ] && PEAK_RSS=$r
    fi
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
printf "\n%-6s %-10s %12s %10s %10s\n" conns server "req/s" p50 p99
for c in 1 64; do
  for name in nubo static wasmtime native; do
    read -r rps p50 p99 <<<"${R[$name,$c]}"
    printf "%-6s %-10s %12s %10s %10s\n" "$c" "$name" "$rps" "$p50" "$p99"
  done
done
echo
for c in 1 64; do
  read -r n _ <<<"${R[nubo,$c]}"; read -r w _ <<<"${R[wasmtime,$c]}"; read -r h _ <<<"${R[native,$c]}"
  read -r st _ <<<"${R[static,$c]}"
  echo "ratio at $c conn(s): nubo/wasmtime-serve = $(ratio "$n" "$w")   nubo/native-hyper = $(ratio "$n" "$h")   static/native-hyper = $(ratio "$st" "$h")"
done
echo "nubo resident memory: idle $((IDLE_RSS / 1024)) MiB, under load $((PEAK_RSS / 1024)) MiB"
echo "(duration ${DURATION}s per run, wrk -t1, $(nproc) cores shared by client and servers)"

#!/usr/bin/env bash
# Serving while applying, side by side in one run: wrk against a `nubo node`
# serving tests/components/hello, first with the app left alone, then while
# `nubo apply` changes the app over and over (a variable the component
# reads, so every apply starts a new instance set and drains the old).
# Prints req/s, p50, p99, errors and the ratio, plus how long `nubo plan`
# (nothing to change) and `nubo apply` (one change) take.
#
# Usage: bench/apply.sh [DURATION_SECONDS]   (default 10)
# Needs: wrk (apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/profile.sh
DURATION="${1:-10}"
command -v wrk >/dev/null || { echo "bench: wrk is not installed" >&2; exit 1; }

echo "== building ($PROFILE)" >&2
build_host -p nubo
(cd tests/components && cargo build --release -q --target wasm32-wasip2 -p hello)
WASM="$PWD/tests/components/target/wasm32-wasip2/release/hello.wasm"
NUBO="$PWD/$BIN/nubo"

WORK=$(mktemp -d)
NODE_PID=""
cleanup() { [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$WORK/app"
cat > "$WORK/app/nubo.toml" <<TOML
[app]
name = "bench"
[variables]
greeting = { default = "hello" }
[component.hello]
source = "$WASM"
config = { greeting = "{{ greeting }}" }
limits = { max_instances = 1000 }
[[http]]
route = "/..."
component = "hello"
TOML

NUBO_LOG=warn "$NUBO" node --state "$WORK/state" --listen 127.0.0.1:3200 --control 127.0.0.1:3201 >"$WORK/node.log" 2>&1 &
NODE_PID=$!
export NUBO_NODE=http://127.0.0.1:3201 NUBO_STATE="$WORK/state"
for _ in $(seq 1 100); do [ -f "$WORK/state/token" ] && curl -s -o /dev/null http://127.0.0.1:3201/ && break; sleep 0.1; done
"$NUBO" apply "$WORK/app" --auto-approve --no-build >/dev/null 2>&1

ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
PLAN_MS=$(ms "$NUBO" plan "$WORK/app")
APPLY_MS=$(NUBO_VAR_GREETING=x ms "$NUBO" apply "$WORK/app" --auto-approve --no-build)

run() {  # -> "rps p50 p99 non2xx"
  local out
  out=$(wrk -t1 -c16 -d"${DURATION}s" --latency http://127.0.0.1:3200/ 2>&1)
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') \
$(echo "$out" | awk '$1=="50%" {print $2}') \
$(echo "$out" | awk '$1=="99%" {print $2}') \
$(echo "$out" | awk '/Non-2xx/ {print $NF} END {}' | tail -1)"
}

wrk -t1 -c16 -d2s http://127.0.0.1:3200/ >/dev/null 2>&1   # warm-up
read -r S_RPS S_P50 S_P99 S_BAD <<<"$(run)"

# Apply a new value every ~200 ms for the whole run.
(
  end=$(( $(date +%s) + DURATION ))
  i=0
  while [ "$(date +%s)" -lt "$end" ]; do
    i=$((i + 1))
    NUBO_VAR_GREETING="v$i" "$NUBO" apply "$WORK/app" --auto-approve --no-build >/dev/null 2>&1 || echo "apply $i failed" >&2
    sleep 0.2
  done
  echo "$i" > "$WORK/applies"
) &
APPLIER=$!
read -r A_RPS A_P50 A_P99 A_BAD <<<"$(run)"
wait "$APPLIER"
APPLIES=$(cat "$WORK/applies")

echo
echo "| run | req/s | p50 | p99 | non-2xx |"
echo "| --- | ---: | ---: | ---: | ---: |"
echo "| steady (no applies) | $S_RPS | $S_P50 | $S_P99 | ${S_BAD:-0} |"
echo "| $APPLIES applies during the run | $A_RPS | $A_P50 | $A_P99 | ${A_BAD:-0} |"
awk -v a="$A_RPS" -v s="$S_RPS" 'BEGIN { printf "\nthroughput while applying / steady: %.2fx\n", a / s }'
echo "nubo plan (no change): ${PLAN_MS} ms; nubo apply (one variable): ${APPLY_MS} ms"

#!/usr/bin/env bash
# WebSocket fan-out: one node, CLIENTS browsers-worth of WebSockets on a
# topic, MESSAGES published one after another from a component. Prints the
# publish→receive latency over every (client, message) pair, the node's
# resident memory idle and with the clients connected, the same run with
# 100 clients, and the same CLIENTS on a baseline: a minimal broadcast
# server on the same stack (bench/fanout/src/bin/fanout-baseline.rs).
#
# Usage: bench/sockets.sh [CLIENTS] [MESSAGES]   (defaults 10000 20)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/profile.sh
CLIENTS="${1:-10000}"
MESSAGES="${2:-20}"

echo "== building ($PROFILE)" >&2
build_host -p nubo -p fanout --bins
(cd tests/components && cargo build --release -q --target wasm32-wasip2 -p probe)
WASM="$PWD/tests/components/target/wasm32-wasip2/release/probe.wasm"

WORK=$(mktemp -d)
NODE_PID=""; BASE_PID=""
cleanup() { for p in $NODE_PID $BASE_PID; do kill "$p" 2>/dev/null; done; rm -rf "$WORK"; }
trap cleanup EXIT
cat > "$WORK/nubo.toml" <<TOML
[app]
name = "fanout"
[component.probe]
source = "$WASM"
topics = ["chat"]
[[http]]
route = "/probe/..."
component = "probe"
[[websocket]]
route = "/ws"
topics = ["chat"]
TOML
ADDR=127.0.0.1:3500
NUBO_LOG=warn $BIN/nubo up "$WORK" --no-build --listen "$ADDR" --control 127.0.0.1:3501 --state "$WORK/state" >"$WORK/nubo.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 1 300); do curl -sf "http://$ADDR/probe/echo" >/dev/null && break; sleep 0.1; done
BASE_ADDR=127.0.0.1:3502
$BIN/fanout-baseline "$BASE_ADDR" >"$WORK/baseline.log" 2>&1 &
BASE_PID=$!
rss() { awk '/VmRSS/ {print $2}' "/proc/${2:-$NODE_PID}/status"; }
IDLE=$(rss)

run() {  # CLIENTS [ADDR PID] -> prints the fanout line, records RSS with clients connected
  local tag="$1${2:+.base}"
  $BIN/fanout "${2:-$ADDR}" "$1" "$MESSAGES" "$WORK/go.$tag" > "$WORK/out.$tag" &
  local pid=$!
  until grep -q '^ready' "$WORK/out.$tag" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/out.$tag" >&2; exit 1; }
    sleep 0.2
  done
  rss x "${3:-$NODE_PID}" > "$WORK/rss.$tag"
  touch "$WORK/go.$tag"
  wait "$pid"
  grep deliveries "$WORK/out.$tag"
}
SMALL=$(run 100)
BIG=$(run "$CLIENTS")
BASE=$(run "$CLIENTS" "$BASE_ADDR" "$BASE_PID")
echo
echo "| server | clients | result | RSS with them connected |"
echo "| --- | ---: | --- | ---: |"
echo "| nubo | 100 | $SMALL | $(( $(cat "$WORK/rss.100") / 1024 )) MiB |"
echo "| nubo | $CLIENTS | $BIG | $(( $(cat "$WORK/rss.$CLIENTS") / 1024 )) MiB |"
echo "| baseline | $CLIENTS | $BASE | $(( $(cat "$WORK/rss.$CLIENTS.base") / 1024 )) MiB |"
echo
echo "node idle: $(( IDLE / 1024 )) MiB; per connection: $(( ($(cat "$WORK/rss.$CLIENTS") - IDLE) / CLIENTS )) KiB"
p99() { echo "$1" | sed -E 's/.*p99 ([0-9.]+) ms.*/\1/'; }
p50() { echo "$1" | sed -E 's/.*p50 ([0-9.]+) ms.*/\1/'; }
last() { echo "$1" | sed -E 's/.*last client \(mean\) ([0-9.]+) ms.*/\1/'; }
awk -v a="$(p99 "$BIG")" -v b="$(p99 "$SMALL")" 'BEGIN { printf "p99 at %s clients / p99 at 100: %.1fx\n", "'"$CLIENTS"'", a / b }'
awk -v a="$(p50 "$BIG")" -v b="$(p50 "$BASE")" -v c="$(p99 "$BIG")" -v d="$(p99 "$BASE")" -v e="$(last "$BIG")" -v f="$(last "$BASE")" \
  'BEGIN { printf "nubo / baseline at %s clients: p50 %.2fx, p99 %.2fx, last client %.2fx\n", "'"$CLIENTS"'", a / b, c / d, e / f }'

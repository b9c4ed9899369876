#!/usr/bin/env bash
# WebSocket fan-out: one node, CLIENTS browsers-worth of WebSockets on a
# topic, MESSAGES published one after another from a component. Prints the
# publish→receive latency over every (client, message) pair, the node's
# resident memory idle and with the clients connected, and the ratios
# against the same run with 100 clients.
#
# Usage: bench/sockets.sh [CLIENTS] [MESSAGES]   (defaults 10000 20)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${1:-10000}"
MESSAGES="${2:-20}"

echo "== building (release)" >&2
cargo build --release -q -p nubo -p fanout
(cd tests/components && cargo build --release -q --target wasm32-wasip2 -p probe)
WASM="$PWD/tests/components/target/wasm32-wasip2/release/probe.wasm"

WORK=$(mktemp -d)
NODE_PID=""
cleanup() { [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null; rm -rf "$WORK"; }
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
NUBO_LOG=warn target/release/nubo up "$WORK" --no-build --listen "$ADDR" --control 127.0.0.1:3501 --state "$WORK/state" >"$WORK/nubo.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 1 300); do curl -sf "http://$ADDR/probe/echo" >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$NODE_PID/status"; }
IDLE=$(rss)

run() {  # CLIENTS -> prints the fanout line, records RSS with clients connected
  target/release/fanout "$ADDR" "$1" "$MESSAGES" "$WORK/go.$1" > "$WORK/out.$1" &
  local pid=$!
  until grep -q '^ready' "$WORK/out.$1" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/out.$1" >&2; exit 1; }
    sleep 0.2
  done
  rss > "$WORK/rss.$1"
  touch "$WORK/go.$1"
  wait "$pid"
  grep deliveries "$WORK/out.$1"
}
SMALL=$(run 100)
BIG=$(run "$CLIENTS")
echo
echo "| clients | result | node RSS with them connected |"
echo "| ---: | --- | ---: |"
echo "| 100 | $SMALL | $(( $(cat "$WORK/rss.100") / 1024 )) MiB |"
echo "| $CLIENTS | $BIG | $(( $(cat "$WORK/rss.$CLIENTS") / 1024 )) MiB |"
echo
echo "node idle: $(( IDLE / 1024 )) MiB; per connection: $(( ($(cat "$WORK/rss.$CLIENTS") - IDLE) / CLIENTS )) KiB"
p99() { echo "$1" | sed -E 's/.*p99 ([0-9.]+) ms.*/\1/'; }
awk -v a="$(p99 "$BIG")" -v b="$(p99 "$SMALL")" 'BEGIN { printf "p99 at %s clients / p99 at 100: %.1fx\n", "'"$CLIENTS"'", a / b }'

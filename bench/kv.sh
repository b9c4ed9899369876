#!/usr/bin/env bash
# Key-value operations, side by side in one run: through a Nubo component
# (tests/components/kvbench, store `default`, SQLite backend) and on Redis
# (redis-server from Debian) from a Rust client (bench/kv-bench).
#
# Both sides keep data comparably: Nubo's store is SQLite in WAL mode with
# synchronous=NORMAL (survives a killed process; fsync at checkpoints);
# Redis runs with appendonly yes, appendfsync everysec (the same promise).
#
# Usage: bench/kv.sh [OPS_PER_CALLER] [CALLERS]   (defaults 20000 4)
# Needs: redis-server (apt-get install redis-server)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
OPS="${1:-20000}"
CALLERS="${2:-4}"
need redis-server "apt-get install redis-server"

echo "== building ($PROFILE)" >&2
build_host -p nubo -p kv-bench
(cd tests/components && cargo build --release -q --target wasm32-wasip2 -p kvbench)
WASM="$PWD/tests/components/target/wasm32-wasip2/release/kvbench.wasm"

kvbench_app "$WORK" "$WASM"

NUBO_ADDR=127.0.0.1:3400; REDIS_PORT=3402
NUBO_LOG=warn $BIN/nubo up "$WORK" --no-build --listen "$NUBO_ADDR" --control 127.0.0.1:3401 --state "$WORK/state" >"$WORK/nubo.log" 2>&1 &
PIDS+=("$!")
redis-server --port "$REDIS_PORT" --dir "$WORK" --appendonly yes --appendfsync everysec --save "" >"$WORK/redis.log" 2>&1 &
PIDS+=("$!")
wait_for curl -sf "http://$NUBO_ADDR/?op=get&n=1"
wait_for redis-cli -p "$REDIS_PORT" ping

# Warm-up: fill the keys both sides read.
$BIN/kv-bench "$NUBO_ADDR" "127.0.0.1:$REDIS_PORT" 2000 "$CALLERS" >/dev/null
echo
$BIN/kv-bench "$NUBO_ADDR" "127.0.0.1:$REDIS_PORT" "$OPS" "$CALLERS"

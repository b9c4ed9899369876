#!/usr/bin/env bash
# SQL statements, side by side in one run: through a Nubo component
# (tests/components/sqlbench, database `main`) and from a native Rust
# program (bench/sql-bench) with the same statements on the same SQLite
# file (rusqlite, opened as Nubo opens it) and the same PostgreSQL server
# (tokio-postgres, statements prepared once).
#
# Each figure is nanoseconds per statement, timed inside the component
# (N statements in one request, so the HTTP request is not in it) and
# inside the native program. A SQLite file takes one process at a time
# (Nubo opens it with exclusive locking), so the node stops while the
# native program runs; rounds alternate the two and the ratio given is
# the median over the rounds of component / native.
#
# Usage: bench/sql.sh [N] [ROUNDS]   (defaults 5000 5)
# Needs: postgresql (apt-get install postgresql)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
N="${1:-5000}"
ROUNDS="${2:-5}"
ROWS=10000
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "bench: PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }

echo "== building ($PROFILE)" >&2
build_host -p nubo -p sql-bench
(cd tests/components && cargo build --release -q --target wasm32-wasip2 -p sqlbench)
WASM="$PWD/tests/components/target/wasm32-wasip2/release/sqlbench.wasm"
ADDR=127.0.0.1:3410; CONTROL=127.0.0.1:3411; PGPORT=3412
OPS="point insert join"

# sqlbench_app DIR [ENGINE LINES]: the sqlbench component on every route.
sqlbench_app() {
  mkdir -p "$1"
  cat > "$1/nubo.toml" <<TOML
[app]
name = "sqlbench"
[sql.main]
timeout_ms = 60000
max_size_mb = 4096
${2:-}
[component.sqlbench]
source = "$WASM"
sql = ["main"]
limits = { timeout_ms = 600000 }
[[http]]
route = "/..."
component = "sqlbench"
TOML
}

NODE=""
start_node() {
  NUBO_LOG=warn $BIN/nubo up "$1" --no-build --listen "$ADDR" --control "$CONTROL" --state "$2" >>"$WORK/node.log" 2>&1 &
  NODE=$!
  PIDS+=("$NODE")
  wait_for curl -sf "http://$ADDR/?op=none&n=0"
}
stop_node() { kill "$NODE"; wait "$NODE" 2>/dev/null || true; }
through_nubo() { curl -sf "http://$ADDR/?op=$1&n=$2&rows=$ROWS"; }

# The PostgreSQL server: a throwaway data directory, run as `postgres`
# when this script runs as root (PostgreSQL refuses root).
chmod 755 "$WORK"
mkdir -p "$WORK/pg"
as_pg=()
if [ "$(id -u)" = 0 ]; then chown postgres "$WORK/pg"; as_pg=(runuser -u postgres --); fi
"${as_pg[@]}" "$PGBIN/initdb" -D "$WORK/pg/data" -A trust -U nubo -E UTF8 --no-locale >/dev/null
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w \
  -o "-p $PGPORT -k $WORK/pg -c listen_addresses=127.0.0.1" start >/dev/null
trap '"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true; stop_all; rm -rf "$WORK"' EXIT
PGURL="postgres://nubo@127.0.0.1:$PGPORT/postgres"

results="$WORK/results"
: > "$results"
record() { echo "$1 $2 $3 $4" >> "$results"; }   # engine op side ns

echo "== SQLite: $ROUNDS rounds of $N statements per kind" >&2
sqlbench_app "$WORK/lite"
LITE_STATE="$WORK/lite-state"
start_node "$WORK/lite" "$LITE_STATE"
curl -sf -X POST "http://$ADDR/setup?rows=$ROWS&pg=0" >/dev/null
stop_node
FILE="$LITE_STATE/sql/sqlbench/main.db"
for r in $(seq 1 "$ROUNDS"); do
  start_node "$WORK/lite" "$LITE_STATE"
  for op in $OPS; do
    through_nubo "$op" 200 >/dev/null
    record sqlite "$op" nubo "$(through_nubo "$op" "$N")"
  done
  stop_node
  for op in $OPS; do
    record sqlite "$op" native "$($BIN/sql-bench sqlite "$FILE" "$op" "$N" "$ROWS")"
  done
done

echo "== PostgreSQL: $ROUNDS rounds of $N statements per kind" >&2
sqlbench_app "$WORK/pg-app" "engine = \"postgres\"
url = \"$PGURL\""
start_node "$WORK/pg-app" "$WORK/pg-state"
curl -sf -X POST "http://$ADDR/setup?rows=$ROWS&pg=1" >/dev/null
for r in $(seq 1 "$ROUNDS"); do
  for op in $OPS; do
    through_nubo "$op" 200 >/dev/null
    record pg "$op" nubo "$(through_nubo "$op" "$N")"
    record pg "$op" native "$($BIN/sql-bench pg "$PGURL" "$op" "$N" "$ROWS")"
  done
done
stop_node

python3 - "$results" "$ROUNDS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
rounds = int(sys.argv[2])
print("| engine | statement | component (µs) | native (µs) | component / native (median of rounds) |")
print("| --- | --- | --- | --- | --- |")
names = {"point": "point read", "insert": "insert (autocommit)", "join": "join (1 user, 5 orders)"}
for engine in ("sqlite", "pg"):
    for op in ("point", "insert", "join"):
        nubo = [int(r[3]) for r in rows if r[:3] == [engine, op, "nubo"]]
        native = [int(r[3]) for r in rows if r[:3] == [engine, op, "native"]]
        ratios = [a / b for a, b in zip(nubo, native)]
        print(f"| {'SQLite' if engine == 'sqlite' else 'PostgreSQL'} | {names[op]} | "
              f"{statistics.median(nubo) / 1000:.1f} | {statistics.median(native) / 1000:.1f} | "
              f"{statistics.median(ratios):.2f}× ({', '.join(f'{x:.2f}' for x in ratios)}) |")
PY

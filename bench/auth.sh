#!/usr/bin/env bash
# What sign-in and rate limits cost per request, side by side in one run
# on one node: the hello component behind
#   public    a route that asks for no sign-in,
#   signed    a route with auth = "required", reached with a session cookie,
#   limited   a public route with a [[rate_limit]] (by address, high enough
#             never to refuse, so every request is counted),
#   both      a required route with a rate limit, reached with the cookie,
# each beside a run of `public`, over ROUNDS rounds of wrk at 1 and 64
# connections, with the node's CPU time per request on each; ratios are
# to `public`, the median over the rounds. Then sign-in: how long one
# login takes (argon2id m=19 MiB, t=2, p=1) and how many a node does per
# second at 2 connections.
#
# Usage: bench/auth.sh [ROUNDS] [SECONDS]   (defaults 5 5)
# Needs: wrk (apt-get install wrk), curl
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS="${1:-5}"
SECS="${2:-5}"
need wrk "apt-get install wrk"

echo "== building ($PROFILE)" >&2
build_host -p nubo
(cd tests/components && cargo build --release -q --target wasm32-wasip2 -p hello)
WASM="$PWD/tests/components/target/wasm32-wasip2/release/hello.wasm"
ADDR=127.0.0.1:3420; CONTROL=127.0.0.1:3421

mkdir -p "$WORK/app"
cat > "$WORK/app/nubo.toml" <<TOML
[app]
name = "authbench"
[auth]
accounts = true
[component.hello]
source = "$WASM"
limits = { max_instances = 1000 }
[[http]]
route = "/public/..."
component = "hello"
[[http]]
route = "/signed/..."
component = "hello"
auth = "required"
[[http]]
route = "/limited/..."
component = "hello"
[[http]]
route = "/both/..."
component = "hello"
auth = "required"
[[rate_limit]]
route = "/limited/..."
rate = "100000000/s"
[[rate_limit]]
route = "/both/..."
rate = "100000000/s"
TOML
NUBO_LOG=warn $BIN/nubo up "$WORK/app" --no-build --listen "$ADDR" --control "$CONTROL" --state "$WORK/state" >"$WORK/node.log" 2>&1 &
NODE=$!; PIDS+=("$NODE")
wait_for curl -sf "http://$ADDR/public/"

CREDS='{"email":"bench@example.com","password":"correct horse battery"}'
COOKIE=$(curl -s -o /dev/null -D - -X POST "http://$ADDR/auth/signup" -H "content-type: application/json" -d "$CREDS" \
  | awk -F'[ ;]' 'tolower($1)=="set-cookie:" {print $2}')
[ -n "$COOKIE" ] || { echo "bench: sign-up gave no cookie" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "http://$ADDR/both/")" = 200 ] \
  || { echo "bench: the session does not reach the required route" >&2; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$NODE/stat"; }
TICK=$(getconf CLK_TCK)

# run PATH CONNS [HEADER] -> "req/s µs-of-node-CPU-per-request"
run() {
  local before after out rps reqs
  before=$(cpu_ticks)
  if [ -n "${3:-}" ]; then
    out=$(wrk -t1 -c"$2" -d"${SECS}s" -H "$3" "http://$ADDR$1" 2>&1)
  else
    out=$(wrk -t1 -c"$2" -d"${SECS}s" "http://$ADDR$1" 2>&1)
  fi
  after=$(cpu_ticks)
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  if echo "$out" | grep -q "Non-2xx"; then echo "bench: $1 answered non-2xx" >&2; exit 1; fi
  echo "$rps $(awk -v t=$((after - before)) -v n="$reqs" -v hz="$TICK" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')"
}

declare -A RPS CPU
ROUTES="signed limited both"
for c in 1 64; do
  for r in public $ROUTES; do
    wrk -t1 -c"$c" -d2s -H "Cookie: $COOKIE" "http://$ADDR/$r/" >/dev/null 2>&1   # warm-up
  done
  for round in $(seq 1 "$ROUNDS"); do
    line="round $round, $c conn(s):"
    for r in $ROUTES; do
      # Only the routes that need a session are sent the cookie.
      h="Cookie: $COOKIE"; [ "$r" = limited ] && h=""
      # Each route runs right beside a run of `public`, first or second by
      # turns, so that a drift of the machine's speed and the order of runs
      # fall on both sides of the ratio alike.
      if (( round % 2 )); then
        read -r p pc <<<"$(run /public/ "$c")"
        read -r x xc <<<"$(run "/$r/" "$c" "$h")"
      else
        read -r x xc <<<"$(run "/$r/" "$c" "$h")"
        read -r p pc <<<"$(run /public/ "$c")"
      fi
      RPS[$r,$c]+="$x/$p "; CPU[$r,$c]+="$xc/$pc "
      line+=" $r $x/$p req/s ($xc/$pc µs CPU)"
    done
    echo "$line" >&2
  done
done

# median of "a/b a/b …" as the ratios a/b
median_ratio() {
  tr ' ' '\n' <<<"$1" | awk -F/ 'NF==2 && $2 > 0 { print $1 / $2 }' | sort -g \
    | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f", m }'
}
echo
for c in 1 64; do
  for r in $ROUTES; do
    echo "$c conn(s), $r / public: req/s $(median_ratio "${RPS[$r,$c]}")x, node CPU per request $(median_ratio "${CPU[$r,$c]}")x"
  done
done

# Sign-in: one at a time, then as many as 2 connections get.
LOGIN_MS=$(for _ in $(seq 1 20); do
  curl -s -o /dev/null -w '%{time_total}\n' -X POST "http://$ADDR/auth/login" -H "content-type: application/json" -d "$CREDS"
done | sort -g | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] * 1000 }')
printf '%s' "$CREDS" > "$WORK/creds.json"
cat > "$WORK/login.lua" <<LUA
wrk.method = "POST"
wrk.body = '$CREDS'
wrk.headers["Content-Type"] = "application/json"
LUA
LOGINS=$(wrk -t1 -c2 -d"${SECS}s" -s "$WORK/login.lua" "http://$ADDR/auth/login" | awk '/Requests\/sec/ {print $2}')
echo "sign-in: median $LOGIN_MS ms per login (20, one at a time); $LOGINS logins/s at 2 connections"
echo "(wrk -t1, ${SECS}s per run, $ROUNDS rounds, $(nproc) cores shared by client and node, $PROFILE build)"

#!/usr/bin/env bash
# Task round trips only, two builds of the node alternating: ROUNDS
# rounds, each a fresh node of each build running the tasker component,
# warmed up, then three samples of 2,000 spawn+await round trips (timed
# inside the guest). One sample per round, as bench/ab.sh takes, swings by
# 20% on a shared VM; this gives the task row of ab.sh more samples.
# Prints "BUILD ROUND MEAN_US" lines and then the medians and the median
# of the per-round ratios AFTER / BEFORE.
#
# Usage: bench/rtt.sh BEFORE_BIN AFTER_BIN [ROUNDS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BEFORE="$1"; AFTER="$2"; ROUNDS="${3:-10}"
(cd tests/components && cargo build --release -q --target wasm32-wasip2 -p tasker)
TASKER="$PWD/tests/components/target/wasm32-wasip2/release/tasker.wasm"
tasker_app "$WORK/tasker" "$TASKER"
trap 'stop_all; rm -rf "$WORK"' EXIT
ADDR=127.0.0.1:3510; CONTROL=127.0.0.1:3511
: > "$WORK/rtt"
for round in $(seq 1 "$ROUNDS"); do
  for which in before after; do
    bin=$BEFORE; [ "$which" = after ] && bin=$AFTER
    serve "$bin" "$WORK/tasker" "rtt?1"
    curl -sf "http://$ADDR/burst?2000" >/dev/null
    curl -sf "http://$ADDR/rtt?500" >/dev/null
    for s in 1 2 3; do
      rtt=$(curl -sf "http://$ADDR/rtt?2000" | python3 -c 'import json,sys; print(json.load(sys.stdin)["mean_us"])')
      echo "$which $round $rtt" | tee -a "$WORK/rtt"
    done
    stop_all
  done
done
python3 - "$WORK/rtt" <<'PY'
import statistics, sys
per = {}
for line in open(sys.argv[1]):
    which, rnd, us = line.split()
    per.setdefault((which, int(rnd)), []).append(float(us))
for which in ("before", "after"):
    all_ = [v for (w, _), vs in per.items() if w == which for v in vs]
    print(f"{which}: median {statistics.median(all_):.1f} us over {len(all_)} samples")
rounds = sorted({r for (_, r) in per})
ratios = [statistics.median(per[("after", r)]) / statistics.median(per[("before", r)]) for r in rounds]
print(f"after / before, median of per-round ratios: {statistics.median(ratios):.3f}")
PY

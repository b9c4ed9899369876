#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on the
# stable toolchain and runs each for SECONDS (default 30), starting from
# the corpus checked in under fuzz/corpus/TARGET; new inputs that reach
# new code are added there. A crash leaves fuzz/artifacts/TARGET/crash-*
# and fails the run.
#
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
#   fuzz/run.sh 30              every target for 30 s (what CI runs)
#   fuzz/run.sh 3600 manifest   one target for an hour
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-30}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(manifest route static_path sse batch)
# The flags cargo-fuzz passes, minus its sanitizer (which needs nightly):
# Rust code is memory safe, and what this looks for is panics.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks -Dwarnings"
export CARGO_TARGET_DIR="$PWD/target"
# An explicit target keeps the flags off build scripts and proc macros,
# which run on the host without libFuzzer's runtime.
HOST=$(rustc -vV | sed -n 's/^host: //p')
echo "== building fuzz targets" >&2
cargo build --release --locked -q --bins --target "$HOST"
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== fuzzing $t for ${SECONDS_EACH}s" >&2
  "target/$HOST/release/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$SECONDS_EACH" -max_len=8192 -print_final_stats=1 2>"artifacts/$t.log" \
    || { tail -40 "artifacts/$t.log" >&2; echo "fuzz: $t found a crash (artifacts/$t)" >&2; exit 1; }
  grep -E "stat::number_of_executed_units|cov:" "artifacts/$t.log" | tail -2 >&2
done

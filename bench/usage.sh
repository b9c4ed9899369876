#!/usr/bin/env bash
# What usage metering costs (issue 27): the same node build with metering
# on and off (NUBO_NO_METERING=true), side by side in one run by bench/ab.sh
# (HTTP at 64 and 1 connections on the hello component, the task round
# trip and trivial tasks, key-value sets, queue messages; BEFORE is off,
# AFTER is on), then the disk one app's day of usage takes in usage.db
# (crates/nubo-usage/examples/day.rs).
#
# Usage: bench/usage.sh [ROUNDS] [SECONDS]   (defaults 5 5)
# Needs what bench/ab.sh needs: wrk, nats-server.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/profile.sh
echo "== building ($PROFILE)" >&2
build_host -p nubo
OFF=$(mktemp)
trap 'rm -f "$OFF"' EXIT
printf '#!/bin/sh\nNUBO_NO_METERING=true exec %s "$@"\n' "$PWD/$BIN/nubo" > "$OFF"
chmod +x "$OFF"
bench/ab.sh "$OFF" "$PWD/$BIN/nubo" "${1:-5}" "${2:-5}"
# Bytes on disk do not depend on the build: the debug build will do.
cargo run -q -p nubo-usage --example day

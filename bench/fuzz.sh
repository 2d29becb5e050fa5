#!/usr/bin/env bash
# Longer runs of the property tests ("fuzzing") of the DAG loader and the CSV/JSON readers
# (tests/integration/fuzz.rs), which `cargo test` runs briefly with a fixed seed.
#
#   bash bench/fuzz.sh [CASES] [SEED]
#
# CASES per property (default 20000) with a random seed (or SEED, to replay a run), in a
# release build. Prints the seed first; a failure prints the smallest failing input.
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-20000}"
seed="${2:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "fuzz: $cases case(s) per property, seed $seed (replay: bash bench/fuzz.sh $cases $seed)"
start=$(date +%s)
PROPTEST_CASES="$cases" PROPTEST_RNG_SEED="$seed" \
  cargo test --release --test integration fuzz:: -- --nocapture --test-threads 2
echo "fuzz: done in $(( $(date +%s) - start )) s"

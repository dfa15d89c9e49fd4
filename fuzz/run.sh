#!/usr/bin/env bash
# Runs every cargo-fuzz target for a while (default 60 s each), seeded with the
# valid inputs the test suite builds. Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
# Usage (from the repository root): fuzz/run.sh [seconds per target]
# A crash is saved under fuzz/artifacts/<target>/: fix it, then add the input to
# the mutation fuzzer's seeds in tests/integration.rs so it stays fixed.
set -euo pipefail
secs=${1:-60}
corpus=$(pwd)/fuzz/corpus
SWEEP_FUZZ_SEEDS=$corpus cargo test --test integration -- file_parsers_survive_mutated_input
cd fuzz
for target in $(cargo +nightly fuzz list); do
  dir=$(echo "$target" | tr -d _)
  mkdir -p "$corpus/$dir"
  cargo +nightly fuzz run "$target" "$corpus/$dir" -- -max_total_time="$secs" -rss_limit_mb=4096
done

#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (FUZZ_SECONDS each, default 60). Not part of CI:
# it needs cargo-fuzz (`cargo install cargo-fuzz`) and nightly compiler features, enabled here on
# the stable toolchain with RUSTC_BOOTSTRAP=1. Findings land in fuzz/artifacts/<target>/.
#
# Every unit must finish within FUZZ_UNIT_SECONDS (default 2): an input that takes longer fails
# the run (libFuzzer's slow-unit limit), so an algorithmic blow-up is a finding, not a slow day.
# `detector_work` repeats each input to 64 KiB for the secret detectors, where a linear scan takes
# about a millisecond.
#
# Usage: scripts/fuzz.sh [target...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
unit_seconds=${FUZZ_UNIT_SECONDS:-2}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
  exit 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi
for target in "${targets[@]}"; do
  printf '\n==> fuzz %s for %ss\n' "$target" "$seconds"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$seconds" -timeout="$unit_seconds" -rss_limit_mb=2048
done

#!/usr/bin/env bash
# The whole test suite, runnable on a fresh machine: formatting, lints, docs, every test, and a
# smoke test of the demo driven over HTTP the way scripts and users drive it.
#
# Usage: scripts/test.sh
# It starts what the tests need and stops it again on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features, -D warnings)"
cargo clippy --all-targets --all-features --locked -- -D warnings

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features --locked

step "demo smoke test (examples/secure_api.rs over HTTP)"
scripts/demo_smoke.sh

step "cargo test (unit, integration, property and doc tests)"
cargo test --all-features --locked

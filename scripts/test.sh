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

step "real OpenID provider for the end-to-end tests (tests/oidc-provider, oidc-provider pinned)"
(cd tests/oidc-provider && npm ci --no-audit --no-fund --loglevel=error)
op_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
op_log=$(mktemp)
node tests/oidc-provider/server.mjs "$op_port" >"$op_log" 2>&1 &
op_pid=$!
trap 'kill $op_pid 2>/dev/null || true; rm -f "$op_log"' EXIT
export PORTCULLIS_TEST_OIDC_ISSUER="http://127.0.0.1:$op_port"
for _ in $(seq 1 100); do
  curl -fsS "$PORTCULLIS_TEST_OIDC_ISSUER/.well-known/openid-configuration" >/dev/null 2>&1 && break
  sleep 0.1
done
if ! curl -fsS "$PORTCULLIS_TEST_OIDC_ISSUER/.well-known/openid-configuration" >/dev/null; then
  echo "the OpenID provider did not start:"; cat "$op_log"; exit 1
fi
echo "provider at $PORTCULLIS_TEST_OIDC_ISSUER"

step "demo smoke test (examples/secure_api.rs over HTTP)"
scripts/demo_smoke.sh

step "cargo test (unit, integration, property, end-to-end and doc tests)"
cargo test --all-features --locked

#!/usr/bin/env bash
# The whole test suite, runnable on a fresh machine: formatting, lints, docs, every test, and a
# smoke test of the demo driven over HTTP the way scripts and users drive it.
#
# Usage: scripts/test.sh
# It starts what the tests need and stops it again on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# --- Services the tests need -------------------------------------------------------------
cleanup() {
  for pid in ${started_pids:-}; do kill "$pid" 2>/dev/null || true; done
  for file in ${temp_files:-}; do rm -f "$file"; done
}
trap cleanup EXIT
started_pids=""
temp_files=""

# A free TCP port on localhost.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Whether a Redis answers PING on 127.0.0.1:$1.
redis_answers() {
  python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)
    s.settimeout(2)
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}

step "Redis (the rate-limit backend tests talk to a real server)"
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found: installing Debian's redis-server"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if [ -z "${REDIS_URL:-}" ]; then
  if redis_answers 6379; then
    export REDIS_URL="redis://127.0.0.1:6379/"
  else
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
    started_pids="$started_pids $!"
    for _ in $(seq 1 100); do redis_answers "$port" && break; sleep 0.1; done
    redis_answers "$port" || { echo "could not start redis-server"; exit 1; }
    export REDIS_URL="redis://127.0.0.1:$port/"
  fi
fi
echo "REDIS_URL=$REDIS_URL"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features, -D warnings)"
cargo clippy --all-targets --all-features --locked -- -D warnings

step "each layer's feature alone, no default features, the default set (cargo check, -D warnings)"
for features in "" auth auth-jwt auth-basic rbac rate-limit validate redact audit transport oidc redis metrics test-util; do
    RUSTFLAGS="-D warnings" cargo check --lib --locked --no-default-features --features "$features" \
        --target-dir target/features
done
RUSTFLAGS="-D warnings" cargo check --all-targets --locked --target-dir target/features

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features --locked

step "real OpenID provider for the end-to-end tests (tests/oidc-provider, oidc-provider pinned)"
(cd tests/oidc-provider && npm ci --no-audit --no-fund --loglevel=error)
op_port=$(free_port)
op_log=$(mktemp)
node tests/oidc-provider/server.mjs "$op_port" >"$op_log" 2>&1 &
op_pid=$!
started_pids="$started_pids $op_pid"
temp_files="$temp_files $op_log"
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

step "two demo processes sharing limits and lockouts through Redis (scripts/replicas_smoke.sh)"
scripts/replicas_smoke.sh

step "cargo test (unit, integration, property, end-to-end and doc tests)"
cargo test --all-features --locked

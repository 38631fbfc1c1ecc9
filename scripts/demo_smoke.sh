#!/usr/bin/env bash
# Drives the demo like a user would: start it, mint tokens with its `token` subcommand, and check
# the contract of the Foundation issue route by route. Exits non-zero on the first mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --example secure_api --features oidc --locked --quiet
bin=target/debug/examples/secure_api

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
log=$(mktemp)
BIND_ADDR="127.0.0.1:$port" "$bin" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT

for _ in $(seq 1 100); do
  curl -fsS "$base/health" >/dev/null 2>&1 && break
  sleep 0.1
done

reader=$("$bin" token reader)
writer=$("$bin" token writer)
admin=$("$bin" token admin)

failures=0
passed=0
expect() { # expect STATUS DESCRIPTION curl-args...
  local want=$1 what=$2; shift 2
  local got
  got=$(curl -s -o /dev/null -w '%{http_code}' "$@")
  if [ "$got" = "$want" ]; then
    passed=$((passed + 1))
  else
    echo "FAIL: $what: expected $want, got $got"; failures=$((failures + 1))
  fi
}
auth() { printf 'Authorization: Bearer %s' "$1"; }

expect 200 "health is public"               "$base/health"
expect 401 "me needs a token"               "$base/me"
expect 200 "me with a reader token"         -H "$(auth "$reader")" "$base/me"
expect 401 "garbage token"                  -H "Authorization: Bearer not.a.token" "$base/me"
expect 401 "token in the query is ignored"  "$base/me?access_token=$reader"
expect 200 "reader lists items"             -H "$(auth "$reader")" "$base/items"
expect 200 "reader gets item 1"             -H "$(auth "$reader")" "$base/items/1"
expect 404 "missing item"                   -H "$(auth "$reader")" "$base/items/999"
expect 403 "reader cannot create"           -H "$(auth "$reader")" -H 'Content-Type: application/json' -d '{"name":"x"}' "$base/items"
expect 201 "writer creates"                 -H "$(auth "$writer")" -H 'Content-Type: application/json' -d '{"name":"x"}' "$base/items"
expect 422 "unknown fields are refused"     -H "$(auth "$writer")" -H 'Content-Type: application/json' -d '{"name":"x","admin":true}' "$base/items"
expect 415 "JSON only"                      -H "$(auth "$writer")" -d 'name=x' "$base/items"
expect 403 "writer cannot delete"           -X DELETE -H "$(auth "$writer")" "$base/items/1"
expect 204 "admin deletes"                  -X DELETE -H "$(auth "$admin")" "$base/items/1"
expect 403 "reader cannot read the audit"   -H "$(auth "$reader")" "$base/admin/audit"
expect 200 "admin reads the audit"          -H "$(auth "$admin")" "$base/admin/audit"
expect 403 "writer cannot read the audit"   -H "$(auth "$writer")" "$base/admin/audit"
expect 200 "admin reads the route inventory" -H "$(auth "$admin")" "$base/admin/routes"
expect 403 "reader cannot read the inventory" -H "$(auth "$reader")" "$base/admin/routes"
expect 401 "anonymous items are refused"    "$base/items"
expect 405 "unlisted method on a known route" -X PUT -H "$(auth "$admin")" "$base/items"
expect 404 "unknown route"                  -H "$(auth "$admin")" "$base/nowhere"

allow=$(curl -s -o /dev/null -D - -X PUT -H "$(auth "$admin")" "$base/items" | tr -d '\r' | grep -i '^allow:' || true)
if [ "$allow" = "allow: GET, HEAD, POST" ]; then passed=$((passed + 1)); else
  echo "FAIL: 405 Allow header: '$allow'"; failures=$((failures + 1)); fi
inventory=$(curl -s -H "$(auth "$admin")" "$base/admin/routes")
case "$inventory" in
  *'"path":"/health","policy":"public","public":true'*) passed=$((passed + 1)) ;;
  *) echo "FAIL: inventory: $inventory"; failures=$((failures + 1)) ;;
esac

body=$(curl -s "$base/me")
case "$body" in
  *'"type":"urn:portcullis:problem:missing-credentials"'*) passed=$((passed + 1)) ;;
  *) echo "FAIL: 401 body is not problem+json: $body"; failures=$((failures + 1)) ;;
esac
# The banner prints its own dev tokens on purpose; ES256 signatures are randomised, so the tokens
# minted above can only appear in the log if a request logged its credentials.
for token in "$reader" "$writer" "$admin"; do
  if grep -qF -e "${token##*.}" "$log"; then
    echo "FAIL: a token was written to the log"; failures=$((failures + 1))
  else
    passed=$((passed + 1))
  fi
done

# Start-up refuses bad settings with a message instead of serving.
for bad in "nope" "0.0.0.0:$port"; do
  if BIND_ADDR="$bad" "$bin" >/dev/null 2>&1; then
    echo "FAIL: BIND_ADDR=$bad was accepted"; failures=$((failures + 1))
  else
    passed=$((passed + 1))
  fi
done

for bad in "nope" "http://issuer.example" ""; do
  if OIDC_ISSUER_URL="$bad" BIND_ADDR="127.0.0.1:$port" "$bin" >/dev/null 2>&1; then
    echo "FAIL: OIDC_ISSUER_URL=$bad was accepted"; failures=$((failures + 1))
  else
    passed=$((passed + 1))
  fi
done

# With a real provider (scripts/test.sh starts one): its RFC 9068 tokens work, dev tokens do not.
if [ -n "${PORTCULLIS_TEST_OIDC_ISSUER:-}" ]; then
  kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
  OIDC_ISSUER_URL="$PORTCULLIS_TEST_OIDC_ISSUER" API_AUDIENCE="urn:portcullis:test-api" \
    BIND_ADDR="127.0.0.1:$port" "$bin" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -fsS "$base/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  provider_token=$(curl -s -u portcullis-test:portcullis-test-secret-0123456789abcdef \
    -d 'grant_type=client_credentials&scope=read%3Aitems&resource=urn%3Aportcullis%3Atest-api' \
    "$PORTCULLIS_TEST_OIDC_ISSUER/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  expect 200 "provider token reads items"     -H "$(auth "$provider_token")" "$base/items"
  expect 403 "provider token cannot create"   -H "$(auth "$provider_token")" -H 'Content-Type: application/json' -d '{"name":"x"}' "$base/items"
  expect 401 "dev token refused with a provider" -H "$(auth "$reader")" "$base/items"
else
  echo "note: PORTCULLIS_TEST_OIDC_ISSUER not set, demo not tried against a provider"
fi

echo "demo smoke: $passed passed, $failures failed"
[ "$failures" -eq 0 ]

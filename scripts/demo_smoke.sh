#!/usr/bin/env bash
# Drives the demo like a user would: start it, mint tokens with its `token` subcommand, and check
# the contract of the Foundation and validation issues route by route. Exits non-zero if any
# check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --example secure_api --example audit_verify --features oidc,redis --locked --quiet
# This run keeps its limits in memory; scripts/replicas_smoke.sh runs two demos on Redis.
unset REDIS_URL
bin=target/debug/examples/secure_api
verify=target/debug/examples/audit_verify

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
log=$(mktemp)
audit_dir=$(mktemp -d)
big=$(mktemp)
mid=$(mktemp)
# A 70 KB body (over the default 64 KiB limit) and a valid 5 KB item (under it).
python3 -c 'print("[" * 70000)' >"$big"
python3 -c 'import json; print(json.dumps({"name":"x","sku":"X-100","price":1,"quantity":1,"notes":"n"*1000,"tags":["t"*32]*10,"contact_email":"a"*60+"@example.com"}).ljust(5000))' >"$mid"
# Generous limits here: this script fires requests faster than a person would.
BIND_ADDR="127.0.0.1:$port" RATE_LIMIT_PER_SECOND=1000 RATE_LIMIT_BURST=1000 "$bin" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log" "$big" "$mid"; rm -rf "$audit_dir"' EXIT

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

# Responses are redacted (RedactLayer): a reader never sees a full card number or an owner's
# e-mail address; an admin sees the e-mail address, still not the card number.
check_body() { # check_body DESCRIPTION BODY present|absent TEXT
  case "$2" in
    *"$4"*) [ "$3" = present ] && passed=$((passed + 1)) || { echo "FAIL: $1: $4 in $2"; failures=$((failures + 1)); } ;;
    *) [ "$3" = absent ] && passed=$((passed + 1)) || { echo "FAIL: $1: no $4 in $2"; failures=$((failures + 1)); } ;;
  esac
}
body=$(curl -s -H "$(auth "$reader")" "$base/items")
check_body "reader: no card number" "$body" absent "4111 1111 1111 1111"
check_body "reader: no card number" "$body" absent "5500 0000 0000 0004"
check_body "reader: card last four" "$body" present '"card_number":"****1111"'
check_body "reader: no owner e-mail" "$body" absent "keeper@castle.example"
check_body "reader: no e-mail at all" "$body" absent "@"
check_body "reader: e-mail masked" "$body" present '"owner_email":"[REDACTED]"'
body=$(curl -s -H "$(auth "$reader")" "$base/items/2")
check_body "reader item 2: no card number" "$body" absent "5500 0000 0000 0004"
check_body "reader item 2: no e-mail" "$body" absent "warden@castle.example"
body=$(curl -s -H "$(auth "$admin")" "$base/items")
check_body "admin sees the owner e-mail" "$body" present '"owner_email":"keeper@castle.example"'
check_body "admin: no card number" "$body" absent "4111 1111 1111 1111"
item='{"name":"x","sku":"X-100","price":9.5,"quantity":3}'
json='Content-Type: application/json'
expect 403 "reader cannot create"           -H "$(auth "$reader")" -H "$json" -d "$item" "$base/items"
expect 201 "writer creates"                 -H "$(auth "$writer")" -H "$json" -d "$item" "$base/items"
expect 422 "unknown fields are refused"     -H "$(auth "$writer")" -H "$json" -d '{"name":"x","sku":"X-100","price":9.5,"quantity":3,"admin":true}' "$base/items"
expect 415 "JSON only"                      -H "$(auth "$writer")" -d 'name=x' "$base/items"
expect 400 "malformed JSON"                 -H "$(auth "$writer")" -H "$json" -d '{"name":' "$base/items"
expect 422 "wrong type"                     -H "$(auth "$writer")" -H "$json" -d '{"name":"x","sku":"X-100","price":"9.5","quantity":3}' "$base/items"
expect 400 "duplicate keys"                 -H "$(auth "$writer")" -H "$json" -d '{"name":"x","name":"y","sku":"X-100","price":9.5,"quantity":3}' "$base/items"
expect 413 "body over the default 64 KiB"  -H "$(auth "$writer")" -H "$json" --data-binary "@$big" "$base/items"
expect 201 "5 KB item under the default"    -H "$(auth "$writer")" -H "$json" --data-binary "@$mid" "$base/items"
expect 405 "unknown methods never reach a handler" -X FOO -H "$(auth "$admin")" "$base/items"
expect 400 "no body on GET"                 -H "$(auth "$reader")" -X GET -H "$json" -d "$item" "$base/items"
expect 201 "writer creates an item with owner and card" -H "$(auth "$writer")" -H "$json" \
  -d '{"name":"Moat","sku":"MOAT-1","price":1,"quantity":1,"owner_email":"moat@castle.example","card_number":"4012-8888-8888-1881"}' "$base/items"
expect 422 "card numbers are Luhn-checked" -H "$(auth "$writer")" -H "$json" \
  -d '{"name":"Moat","sku":"MOAT-1","price":1,"quantity":1,"card_number":"4012-8888-8888-1882"}' "$base/items"

# POST /items answers 201 with the stored item, and a field error with every problem at once,
# without echoing what was sent.
body=$(curl -s -H "$(auth "$writer")" -H "$json" \
  -d '{"name":"Gate","sku":"GATE-7","price":12.5,"quantity":4,"tags":["iron"],"contact_email":"ops@example.com","notes":"two\nlines"}' \
  "$base/items")
case "$body" in
  *'"id":'*'"name":"Gate","sku":"GATE-7","price":12.5,"quantity":4,"tags":["iron"],"contact_email":"ops@example.com","notes":"two\nlines"}') passed=$((passed + 1)) ;;
  *) echo "FAIL: 201 body is not the stored item: $body"; failures=$((failures + 1)) ;;
esac
body=$(curl -s -H "$(auth "$writer")" -H "$json" \
  -d '{"name":"","sku":"lower-secret","price":-1,"quantity":10001,"tags":["a","b","c","d","e","f","g","h","i","j","k"],"contact_email":"nope-secret","notes":"x"}' \
  "$base/items")
for want in '"status":422' '"errors":[' '"field":"/name"' '"field":"/sku"' '"field":"/price"' \
            '"field":"/quantity"' '"field":"/tags"' '"field":"/contact_email"'; do
  case "$body" in
    *"$want"*) passed=$((passed + 1)) ;;
    *) echo "FAIL: 422 body lacks $want: $body"; failures=$((failures + 1)) ;;
  esac
done
case "$body" in
  *secret*|*10001*) echo "FAIL: 422 body echoes the submitted values: $body"; failures=$((failures + 1)) ;;
  *) passed=$((passed + 1)) ;;
esac
expect 403 "writer cannot delete"           -X DELETE -H "$(auth "$writer")" "$base/items/1"
expect 204 "admin deletes"                  -X DELETE -H "$(auth "$admin")" "$base/items/1"
expect 403 "reader cannot read the audit"   -H "$(auth "$reader")" "$base/admin/audit"
expect 200 "admin reads the audit"          -H "$(auth "$admin")" "$base/admin/audit"
expect 403 "writer cannot read the audit"   -H "$(auth "$writer")" "$base/admin/audit"
expect 200 "admin reads the route inventory" -H "$(auth "$admin")" "$base/admin/routes"
expect 403 "reader cannot read the inventory" -H "$(auth "$reader")" "$base/admin/routes"
# Revocation by jti (in this process: no REDIS_URL here).
doomed=$("$bin" token reader)
doomed_jti=$(python3 -c 'import base64,json,sys; p=sys.argv[1].split(".")[1]; print(json.loads(base64.urlsafe_b64decode(p+"="*(-len(p)%4)))["jti"])' "$doomed")
expect 200 "a token before its revocation"  -H "$(auth "$doomed")" "$base/me"
expect 403 "a writer cannot revoke"         -H "$(auth "$writer")" -H "$json" -d "{\"jti\":\"$doomed_jti\"}" "$base/admin/revocations"
expect 422 "a revocation without a jti"     -H "$(auth "$admin")" -H "$json" -d '{"iss":"x"}' "$base/admin/revocations"
expect 201 "admin revokes a token"          -H "$(auth "$admin")" -H "$json" -d "{\"jti\":\"$doomed_jti\"}" "$base/admin/revocations"
expect 401 "the revoked token is refused"   -H "$(auth "$doomed")" "$base/me"
expect 200 "other tokens still work"        -H "$(auth "$reader")" "$base/me"
dev_key='X-Api-Key: pcl_dev_ci_key_DEVELOPMENT_ONLY_do_not_deploy'
expect 200 "the development API key reads"  -H "$dev_key" "$base/items"
expect 403 "... but does not write"         -H "$dev_key" -H "$json" -d '{}' "$base/items"
expect 422 "one of jti and api_key_id"      -H "$(auth "$admin")" -H "$json" -d '{"jti":"a","api_key_id":"b"}' "$base/admin/revocations"
expect 201 "admin revokes the API key"      -H "$(auth "$admin")" -H "$json" -d '{"api_key_id":"dev-ci"}' "$base/admin/revocations"
expect 401 "the revoked API key is refused" -H "$dev_key" "$base/items"
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

ratelimit=$(curl -s -o /dev/null -D - "$base/health" | tr -d '\r' | grep -i '^ratelimit-policy:' || true)
if [ "$ratelimit" = 'ratelimit-policy: "per-client";q=1000;w=1' ]; then passed=$((passed + 1)); else
  echo "FAIL: RateLimit-Policy header: '$ratelimit'"; failures=$((failures + 1)); fi

# Start-up refuses bad settings with a message instead of serving.
for bad in "BIND_ADDR=nope" "BIND_ADDR=0.0.0.0:$port" "RATE_LIMIT_PER_SECOND=0" "RATE_LIMIT_BURST=many"; do
  if env "$bad" "$bin" >/dev/null 2>&1; then
    echo "FAIL: $bad was accepted"; failures=$((failures + 1))
  else
    passed=$((passed + 1))
  fi
done
# MAX_BODY_BYTES sets the limit: the same 5 KB item is too large for a 4096-byte server.
port2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BIND_ADDR="127.0.0.1:$port2" MAX_BODY_BYTES=4096 "$bin" >/dev/null 2>&1 &
pid2=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port2/health" >/dev/null 2>&1 && break
  sleep 0.1
done
expect 413 "MAX_BODY_BYTES=4096 refuses 5 KB" -H "$(auth "$writer")" -H "$json" --data-binary "@$mid" "http://127.0.0.1:$port2/items"
kill $pid2 2>/dev/null || true
for bad in "" "0" "-1" "64k" "99999999999"; do
  if out=$(BIND_ADDR="127.0.0.1:$port" MAX_BODY_BYTES="$bad" "$bin" 2>&1); then
    echo "FAIL: MAX_BODY_BYTES=$bad was accepted"; failures=$((failures + 1))
  else
    case "$out" in
      *MAX_BODY_BYTES*) passed=$((passed + 1)) ;;
      *) echo "FAIL: MAX_BODY_BYTES=$bad: no clear message: $out"; failures=$((failures + 1)) ;;
    esac
  fi
done

# A tight limit: the third quick request from one client is refused with Retry-After.
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
BIND_ADDR="127.0.0.1:$port" RATE_LIMIT_PER_SECOND=1 RATE_LIMIT_BURST=2 "$bin" >>"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS "$base/health" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 2 # let the probe's spent budget come back
codes=""
for _ in 1 2 3; do codes="$codes $(curl -s -o /dev/null -w '%{http_code}' "$base/health")"; done
if [ "$codes" = " 200 200 429" ]; then passed=$((passed + 1)); else
  echo "FAIL: tight limit answered$codes"; failures=$((failures + 1)); fi

# Five bad tokens lock the address out, even for a valid token.
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
BIND_ADDR="127.0.0.1:$port" RATE_LIMIT_PER_SECOND=1000 RATE_LIMIT_BURST=1000 "$bin" >>"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS "$base/health" >/dev/null 2>&1 && break; sleep 0.1; done
for _ in 1 2 3 4 5; do curl -s -o /dev/null -H "Authorization: Bearer bad.token.value" "$base/me"; done
expect 429 "locked out after failed logins" -H "$(auth "$reader")" "$base/me"

# The audit trail (AuditLayer): request ids echoed, recent records for admins, a hash-chained
# file that survives a clean shutdown and reveals tampering.
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
audit_file="$audit_dir/audit.jsonl"
AUDIT_LOG_FILE="$audit_file" BIND_ADDR="127.0.0.1:$port" RATE_LIMIT_PER_SECOND=1000 RATE_LIMIT_BURST=1000 \
  "$bin" >"$audit_dir/stdout" 2>>"$log" &
pid=$!
for _ in $(seq 1 100); do curl -fsS "$base/health" >/dev/null 2>&1 && break; sleep 0.1; done
echoed=$(curl -s -o /dev/null -D - -H "X-Request-Id: smoke-audit-1" -H "$(auth "$reader")" "$base/items" | tr -d '\r' | grep -i '^x-request-id:' || true)
if [ "$echoed" = "x-request-id: smoke-audit-1" ]; then passed=$((passed + 1)); else
  echo "FAIL: X-Request-Id not echoed: '$echoed'"; failures=$((failures + 1)); fi
generated=$(curl -s -o /dev/null -D - -H 'X-Request-Id: {"bad":1}' "$base/health" | tr -d '\r' | grep -i '^x-request-id:' || true)
case "$generated" in
  "x-request-id: "[0-9a-f]*) passed=$((passed + 1)) ;;
  *) echo "FAIL: unsafe X-Request-Id not replaced: '$generated'"; failures=$((failures + 1)) ;;
esac
expect 401 "audited refusal" -H "X-Request-Id: smoke-audit-2" -H "Authorization: Bearer bad.token.value" "$base/items"
# A 4 KiB path of digits and dashes and a 4 KiB User-Agent of digits and spaces (the inputs that
# cost the secret detectors seconds each when they were not linear): answered at once, and the
# audit record of the next request is there at once too (the audit thread is not held up).
hostile_path="/items/$(python3 -c 'print("1-" * 2048)')"
hostile_agent="$(python3 -c 'print("1 " * 2047 + "1")')"
expect 401 "a 4 KiB digit-and-dash path is answered" --max-time 5 -A "$hostile_agent" "$base$hostile_path"
expect 200 "the request after it" --max-time 5 -H "X-Request-Id: smoke-audit-3" -H "$(auth "$reader")" "$base/items"
found_next=""
for _ in $(seq 1 20); do
  case "$(curl -s -H "$(auth "$admin")" "$base/admin/audit")" in
    *'"request_id":"smoke-audit-3"'*) found_next=1; break ;;
  esac
  sleep 0.1
done
if [ -n "$found_next" ]; then passed=$((passed + 1)); else
  echo "FAIL: the audit record after a hostile request was not written within 2 s"; failures=$((failures + 1)); fi
recent=$(curl -s -H "$(auth "$admin")" "$base/admin/audit")
for want in '"audit_enabled":true' '"request_id":"smoke-audit-1"' '"outcome":"unauthenticated"' '"subject":"dev-reader"'; do
  case "$recent" in
    *"$want"*) passed=$((passed + 1)) ;;
    *) echo "FAIL: /admin/audit lacks $want: $recent"; failures=$((failures + 1)) ;;
  esac
done
kill "$pid" 2>/dev/null || true   # SIGTERM: drain, flush the audit trail, exit
wait "$pid" 2>/dev/null || true
if grep -q '"request_id":"smoke-audit-2"' "$audit_dir/stdout"; then passed=$((passed + 1)); else
  echo "FAIL: no audit line on standard output"; failures=$((failures + 1)); fi
lines=$(wc -l <"$audit_file")
if [ "$lines" -ge 5 ] && "$verify" --dev-key "$audit_file" >/dev/null; then passed=$((passed + 1)); else
  echo "FAIL: audit file ($lines lines) does not verify: $("$verify" --dev-key "$audit_file")"; failures=$((failures + 1)); fi
for token in "$reader" "$admin"; do
  if grep -qF -e "${token##*.}" "$audit_file" "$audit_dir/stdout"; then
    echo "FAIL: a token reached the audit trail"; failures=$((failures + 1))
  else
    passed=$((passed + 1))
  fi
done
cp "$audit_file" "$audit_dir/headless.jsonl"
sed -i 1d "$audit_dir/headless.jsonl"
case "$("$verify" --dev-key "$audit_dir/headless.jsonl")" in
  *"starts at record 2"*) passed=$((passed + 1)) ;;
  *) echo "FAIL: a log missing its first record verified"; failures=$((failures + 1)) ;;
esac
sed -i '2s/"status":[0-9]*/"status":299/' "$audit_file"
if out=$("$verify" --dev-key "$audit_file"); then
  echo "FAIL: an edited audit file verified"; failures=$((failures + 1))
else
  case "$out" in *"BROKEN at $audit_file:2"*) passed=$((passed + 1)) ;;
    *) echo "FAIL: tampering reported as: $out"; failures=$((failures + 1)) ;; esac
fi
for bad in "AUDIT_HMAC_KEY=short" "AUDIT_LOG_FILE=$audit_dir/missing/dir/audit.jsonl"; do
  if out=$(env "$bad" BIND_ADDR="127.0.0.1:$port" "$bin" 2>&1); then
    echo "FAIL: $bad was accepted"; failures=$((failures + 1))
  else
    case "$out" in *"${bad%%=*}"*) passed=$((passed + 1)) ;;
      *) echo "FAIL: $bad: no clear message: $out"; failures=$((failures + 1)) ;; esac
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

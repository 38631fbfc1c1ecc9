#!/usr/bin/env bash
# Two demo processes on two ports against one real Redis, checked from outside over HTTP: they
# act as one service (issue 20). Shared per-client limit and lockout, Redis stopped and started
# mid-run, and both audit trails verified. Exits non-zero if any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --example secure_api --example audit_verify --features oidc,redis --locked --quiet
bin=target/debug/examples/secure_api
verify=target/debug/examples/audit_verify
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

dir=$(mktemp -d)
redis_port=$(free_port)
redis_pid=
demo_pids=()
cluster_pids=()
cluster_demos=()
batch_demos=()
cleanup() {
  for pid in "${demo_pids[@]}" "${cluster_demos[@]}" "${batch_demos[@]}" "${cluster_pids[@]}" $redis_pid; do
    kill "$pid" 2>/dev/null || true
  done
  [ -n "${KEEP_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT

# A Redis of this script's own, so that it can be stopped and started again.
start_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
  redis_pid=$!
  for _ in $(seq 1 100); do
    redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  echo "could not start redis-server"; exit 1
}
start_redis

prefix="replicas-$$-$RANDOM"
ports=()
for name in a b; do
  port=$(free_port)
  ports+=("$port")
  BIND_ADDR="127.0.0.1:$port" REDIS_URL="redis://127.0.0.1:$redis_port/" REDIS_PREFIX="$prefix" \
    RATE_LIMIT_PER_SECOND=1 RATE_LIMIT_BURST=50 AUDIT_LOG_FILE="$dir/$name.jsonl" \
    AUDIT_REPLICA_ID="$name" RUST_LOG=warn \
    "$bin" >"$dir/$name.out" 2>"$dir/$name.err" &
  demo_pids+=($!)
done
a="http://127.0.0.1:${ports[0]}"
b="http://127.0.0.1:${ports[1]}"
for base in "$a" "$b"; do
  for _ in $(seq 1 100); do curl -fsS "$base/health" >/dev/null 2>&1 && break; sleep 0.1; done
done

failures=0
passed=0
check() { # check DESCRIPTION CONDITION...
  local what=$1; shift
  if "$@"; then passed=$((passed + 1)); else echo "FAIL: $what"; failures=$((failures + 1)); fi
}
between() { [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
one_budget() { # one_budget RA RB: B's remaining budget is one less than A's just before
  [ "$1" != none ] && [ "$2" != none ] && [ "$2" -eq $(($1 - 1)) ]
}
remaining() { # remaining URL: the r= of the RateLimit header, or "none"
  curl -s -o /dev/null -D - --max-time 3 "$1/health" | tr -d '\r' \
    | sed -n 's/^ratelimit: .*;r=\([0-9]*\);.*/\1/Ip' | head -1 | grep . || echo none
}

until_refused() { # until_refused URL HEADER: "yes" once the URL answers 401, "no" after ~1 s
  for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "$2" "$1")" = 401 ] && { echo yes; return; }
    sleep 0.01
  done
  echo no
}

# A token revoked through one replica is refused by the other within a second.
reader=$("$bin" token reader)
admin=$("$bin" token admin)
revoked=$("$bin" token reader)
jti=$(python3 -c 'import base64,json,sys; p=sys.argv[1].split(".")[1]; print(json.loads(base64.urlsafe_b64decode(p+"="*(-len(p)%4)))["jti"])' "$revoked")
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $revoked" "$b/me")
check "the token works on b before it is revoked (got $status)" [ "$status" = 200 ]
answer=$(curl -s -w ' %{http_code}' -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d "{\"jti\":\"$jti\"}" "$a/admin/revocations")
check "revoked through a: $answer" grep -q '"shared":true}.* 201$' <<<"$answer"
started=$(date +%s%N)
refused=$(until_refused "$b/me" "Authorization: Bearer $revoked")
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
check "b refuses the token revoked through a ($refused, after ${elapsed_ms} ms)" \
  [ "$refused" = yes ]
check "... within a second (${elapsed_ms} ms)" [ "$elapsed_ms" -lt 1000 ]
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $reader" "$b/me")
check "another token of the same user still works (got $status)" [ "$status" = 200 ]
# An API key revoked through one replica is refused by the other too.
dev_key='X-Api-Key: pcl_dev_ci_key_DEVELOPMENT_ONLY_do_not_deploy'
status=$(curl -s -o /dev/null -w '%{http_code}' -H "$dev_key" "$b/items")
check "the API key works on b before it is revoked (got $status)" [ "$status" = 200 ]
answer=$(curl -s -w ' %{http_code}' -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d '{"api_key_id":"dev-ci"}' "$a/admin/revocations")
check "API key revoked through a: $answer" grep -q '"shared":true}.* 201$' <<<"$answer"
refused=$(until_refused "$b/items" "$dev_key")
check "b refuses the API key revoked through a" [ "$refused" = yes ]

# Failed logins spread over both replicas lock the address out on both.
for base in "$a" "$b" "$a" "$b" "$a"; do
  curl -s -o /dev/null -H "Authorization: Bearer not.a.token" "$base/me"
done
for base in "$a" "$b"; do
  answer=$(curl -s -w ' %{http_code}' -H "Authorization: Bearer $reader" "$base/me" || true)
  # The lockout's 429, not the rate limit's: its reason is in the body.
  check "a valid token from the locked-out address is refused by $base: $answer" \
    grep -q '"reason":"locked_out".* 429$' <<<"$answer"
done

# The RateLimit headers agree: one budget counted down by both (tried three times: the refill of
# one a second may land between the two requests).
for _ in 1 2 3; do
  ra=$(remaining "$a"); rb=$(remaining "$b")
  one_budget "$ra" "$rb" && break
done
check "the replicas count one budget ($ra then $rb)" one_budget "$ra" "$rb"
[ "$rb" = none ] && rb=0

# A burst spread evenly over both replicas is held to the one shared quota (refilled at one a
# second while the burst runs).
allowed=0
burst_started=$(date +%s)
for i in $(seq 1 70); do
  base=$a; [ $((i % 2)) = 0 ] && base=$b
  status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$base/health")
  [ "$status" = 200 ] && allowed=$((allowed + 1))
done
# Two budgets of 50 would have let all 70 through.
burst_seconds=$(($(date +%s) - burst_started + 1))
check "a burst over both replicas got $allowed answers; the shared quota allows $((rb - 1)) to $((rb + 1 + burst_seconds))" \
  between "$allowed" $((rb - 1)) $((rb + 1 + burst_seconds))

# Redis stops: each replica follows the configured policy (local limits), nothing hangs.
kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
sleep 2 # let the quota refill enough for the local limiters to show
for base in "$a" "$b"; do
  for _ in 1 2 3; do
    status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/health" || echo hung)
    check "$base answers while Redis is down (got $status)" [ "$status" = 200 ]
  done
done
outages=$(cat "$dir/a.err" "$dir/b.err" | grep -c "the failure policy applies" || true)
# Once per replica, not per request (a slow answer before the stop may add one outage each).
check "each replica logged the outage once, not per request ($outages lines)" between "$outages" 2 4

# Redis comes back (empty): the shared budget is used again.
start_redis
shared=no
for _ in $(seq 1 50); do
  ra=$(remaining "$a"); rb=$(remaining "$b")
  if one_budget "$ra" "$rb"; then shared=yes; break; fi
  sleep 0.2
done
check "after Redis returns the replicas share one budget again" [ "$shared" = yes ]

# Both audit trails verify once the processes have flushed them.
for pid in "${demo_pids[@]}"; do kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; done
demo_pids=()
verifies() { "$verify" --dev-key "$@" >/dev/null; }
for name in a b; do
  check "replica $name's audit trail verifies" verifies "$dir/$name.jsonl"
done
# A collector's merged stream of both (lines interleaved): verified replica by replica.
paste -d '\n' "$dir/a.jsonl" "$dir/b.jsonl" | grep -v '^$' >"$dir/merged.jsonl"
report=$("$verify" --dev-key --replicas=a,b "$dir/merged.jsonl" || true)
check "the merged stream verifies replica by replica: $report" \
  grep -q "^ok: replica a: .*" <<<"$report"
check "... replica b too" grep -q "^ok: replica b: .*" <<<"$report"
# One of b's records removed from the merged stream: the break names replica b.
grep -v '"seq":3,"replica":"b"' "$dir/merged.jsonl" >"$dir/cut.jsonl"
report=$("$verify" --dev-key "$dir/cut.jsonl" || true)
check "a record cut from b's chain is reported with its replica: $report" \
  grep -q "replica b: expected record 3, found 4" <<<"$report"

# Once more against a real three-node Redis Cluster: the demos take its nodes as a seed list,
# and the per-client budget and the lockout are shared as on one node (every key of a client
# sits in one hash slot).
cluster_ports=()
for _ in 1 2 3; do
  # A node's cluster bus listens on its port + 10000, which must be a port too.
  port=$(free_port)
  while [ "$port" -gt 55000 ]; do port=$(free_port); done
  cluster_ports+=("$port")
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --cluster-enabled yes --cluster-config-file "nodes-$port.conf" >/dev/null 2>&1 &
  cluster_pids+=($!)
done
for port in "${cluster_ports[@]}"; do
  for _ in $(seq 1 100); do redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${cluster_ports[@]}") --cluster-replicas 0 \
  --cluster-yes >/dev/null 2>&1 || true
for port in "${cluster_ports[@]}"; do
  for _ in $(seq 1 100); do
    redis-cli -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
    sleep 0.1
  done
done
seeds=$(printf 'redis://127.0.0.1:%s/,' "${cluster_ports[@]}"); seeds=${seeds%,}
cluster_bases=()
for name in c d; do
  port=$(free_port)
  cluster_bases+=("http://127.0.0.1:$port")
  BIND_ADDR="127.0.0.1:$port" REDIS_URL="$seeds" REDIS_PREFIX="$prefix-cluster" \
    RATE_LIMIT_PER_SECOND=1 RATE_LIMIT_BURST=50 RUST_LOG=warn \
    "$bin" >"$dir/$name.out" 2>"$dir/$name.err" &
  cluster_demos+=($!)
done
for base in "${cluster_bases[@]}"; do
  for _ in $(seq 1 100); do curl -fsS "$base/health" >/dev/null 2>&1 && break; sleep 0.1; done
done
c=${cluster_bases[0]}; d=${cluster_bases[1]}
for _ in 1 2 3; do
  rc=$(remaining "$c"); rd=$(remaining "$d")
  one_budget "$rc" "$rd" && break
done
check "on a Redis Cluster the replicas count one budget ($rc then $rd)" one_budget "$rc" "$rd"
for base in "$c" "$d" "$c" "$d" "$c"; do
  curl -s -o /dev/null -H "Authorization: Bearer not.a.token" "$base/me"
done
for base in "$c" "$d"; do
  answer=$(curl -s -w ' %{http_code}' -H "Authorization: Bearer $reader" "$base/me" || true)
  check "on a Redis Cluster the lockout is shared ($base): $answer" \
    grep -q '"reason":"locked_out".* 429$' <<<"$answer"
done
kill "${cluster_demos[@]}" "${cluster_pids[@]}" 2>/dev/null || true

# Batched (REDIS_BATCH=5): each replica takes five requests' worth of the budget at a time and
# spends it without a round trip; a burst over both is still held to the one quota, less what a
# replica holds unspent (a batch and a half at most) and plus the refill of one a second.
batch_bases=()
for name in e f; do
  port=$(free_port)
  batch_bases+=("http://127.0.0.1:$port")
  BIND_ADDR="127.0.0.1:$port" REDIS_URL="redis://127.0.0.1:$redis_port/" \
    REDIS_PREFIX="$prefix-batch" REDIS_BATCH=5 RATE_LIMIT_PER_SECOND=1 RATE_LIMIT_BURST=50 \
    RUST_LOG=warn "$bin" >"$dir/$name.out" 2>"$dir/$name.err" &
  batch_demos+=($!)
done
for base in "${batch_bases[@]}"; do
  for _ in $(seq 1 100); do curl -fsS "$base/health" >/dev/null 2>&1 && break; sleep 0.1; done
done
batched=0
burst_started=$(date +%s)
for i in $(seq 1 70); do
  base=${batch_bases[0]}; [ $((i % 2)) = 0 ] && base=${batch_bases[1]}
  status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$base/health")
  [ "$status" = 200 ] && batched=$((batched + 1))
done
burst_seconds=$(($(date +%s) - burst_started + 1))
# The health checks above spent at most one request's worth each, before the burst.
check "batched replicas: a burst over both got $batched answers; the shared quota allows $((50 - 2 * 7 - 2)) to $((50 + burst_seconds))" \
  between "$batched" $((50 - 2 * 7 - 2)) $((50 + burst_seconds))
kill "${batch_demos[@]}" 2>/dev/null || true

# A Redis that does not answer at start-up stops start-up with a message.
closed=$(free_port)
if out=$(BIND_ADDR="127.0.0.1:$(free_port)" REDIS_URL="redis://127.0.0.1:$closed/" \
  timeout 20 "$bin" 2>&1 >/dev/null); then code=0; else code=$?; fi
check "an unreachable Redis stops start-up with a message (exit $code: $out)" \
  grep -q "REDIS_URL: redis://127.0.0.1:$closed/" <<<"$out"
check "and the exit code says configuration (2), got $code" [ "$code" = 2 ]

# Every record of one replica removed: named as missing when the replicas are listed.
grep -v '"replica":"b"' "$dir/merged.jsonl" >"$dir/only-a.jsonl"
report=$("$verify" --dev-key --replicas=a,b "$dir/only-a.jsonl" || true)
check "a replica without any record is reported: $report" \
  grep -q "replica b: no record at all" <<<"$report"

echo "replicas smoke: $passed passed, $failures failed (burst: $allowed of 70 answered; batched: $batched of 70)"
[ "$failures" = 0 ]

#!/usr/bin/env bash
# The load test of benches/load.rs driven by wrk (an outside, lighter load generator) instead of
# the built-in one: the bench binary serves every variant on one runtime thread, and wrk (one
# thread, 32 connections) drives them one after the other, round by round.
#
# Usage: scripts/load_wrk.sh [seconds per run, default 3] [rounds, default 3]
# Needs wrk (Debian: apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3}
rounds=${2:-3}
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)"; exit 1; }
cargo bench --bench load --no-run 2>/dev/null
bin=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)
list=$(mktemp)
# Long enough for every variant (ten today, twelve counted) in every round.
LOAD_SERVE_ONLY=$((seconds * rounds * 12 + 30)) "$bin" --bench >"$list" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$list"' EXIT
for _ in $(seq 1 300); do grep -q '^# ready' "$list" && break; sleep 0.2; done
grep -q '^# ready' "$list" || { echo "the load bench did not start serving"; exit 1; }
sed -i "/^# ready/d" "$list"
declare -A total
for round in $(seq 1 "$rounds"); do
  while IFS=$'\t' read -r addr header name; do
    args=(-t1 -c32 -d"${seconds}s" --latency)
    [ "$header" != "-" ] && args+=(-H "Authorization: $header")
    rps=$(wrk "${args[@]}" "http://$addr/items" | awk '/Requests\/sec/ {print $2}')
    echo "round $round: $name: $rps req/s" >&2
    total[$name]=$(python3 -c "print(${total[$name]:-0} + $rps)")
  done <"$list"
done
bare=""
echo "| variant | requests/s | vs bare |"
echo "|---|---:|---:|"
while IFS=$'\t' read -r _ _ name; do
  rps=$(python3 -c "print(round(${total[$name]} / $rounds))")
  [ -z "$bare" ] && bare=$rps
  echo "| $name | $rps | $(python3 -c "print(round(100 * $rps / $bare))") % |"
done <"$list"

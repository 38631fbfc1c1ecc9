#!/usr/bin/env bash
# The demo as a user runs it, against bare axum answering the same JSON, in one run: each server
# process pinned to core 1 (so the audit thread's CPU counts), wrk pinned to core 0.
#
# Usage: scripts/load_demo.sh [seconds per run, default 5] [rounds, default 3]
# With DEMO_BEFORE=<path of another build's secure_api binary>, that binary runs too, pinned the
# same way and measured in the same rounds: on a shared machine only such side-by-side figures
# compare two builds (the same binary moves by several points from one run to the next).
# Needs wrk (Debian: apt-get install wrk) and taskset.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
rounds=${2:-3}
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)"; exit 1; }
cargo build --release --example secure_api --example bare_json >/dev/null
bin=${CARGO_TARGET_DIR:-target}/release/examples
work=$(mktemp -d)
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
pids=()
trap cleanup EXIT

BIND_ADDR=127.0.0.1:3100 taskset -c 1 "$bin/bare_json" &
pids+=($!)
# As a user runs it: warnings only, limits far above the load, the audit trail to a file.
RUST_LOG=warn RATE_LIMIT_PER_SECOND=10000000 RATE_LIMIT_BURST=10000000 BIND_ADDR=127.0.0.1:3101 \
    taskset -c 1 "$bin/secure_api" >"$work/audit.jsonl" 2>"$work/demo.log" &
pids+=($!)
ports=(3100 3101)
if [ -n "${DEMO_BEFORE:-}" ]; then
    RUST_LOG=warn RATE_LIMIT_PER_SECOND=10000000 RATE_LIMIT_BURST=10000000 BIND_ADDR=127.0.0.1:3102 \
        taskset -c 1 "$DEMO_BEFORE" >"$work/audit-before.jsonl" 2>"$work/demo-before.log" &
    pids+=($!)
    ports+=(3102)
fi
token=$("$bin/secure_api" token reader)
for port in "${ports[@]}"; do
    for _ in $(seq 50); do
        curl -fs -o /dev/null -H "authorization: Bearer $token" "http://127.0.0.1:$port/me" && break
        sleep 0.1
    done
done

run() { # port path -> requests/s
    taskset -c 0 wrk -t1 -c32 -d"${seconds}s" -H "authorization: Bearer $token" \
        "http://127.0.0.1:$1$2" | awk '/Requests\/sec/ {print $2}'
}
declare -A total
for round in $(seq "$rounds"); do
    for path in /me /items; do
        for port in "${ports[@]}"; do
            rps=$(run "$port" "$path")
            total[$port$path]=$(echo "${total[$port$path]:-0} + $rps" | bc)
            echo "round $round $path port $port: $rps requests/s"
        done
    done
done
for path in /me /items; do
    bare=$(echo "${total[3100$path]} / $rounds" | bc)
    demo=$(echo "${total[3101$path]} / $rounds" | bc)
    echo "GET $path: bare $bare, demo $demo requests/s: $(echo "100 * $demo / $bare" | bc) % of bare"
    if [ -n "${DEMO_BEFORE:-}" ]; then
        before=$(echo "${total[3102$path]} / $rounds" | bc)
        echo "GET $path: DEMO_BEFORE $before requests/s: $(echo "100 * $before / $bare" | bc) % of bare"
    fi
done
echo "audit records written: $(wc -l <"$work/audit.jsonl")"

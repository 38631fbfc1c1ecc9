#!/usr/bin/env bash
# Instructions per request of each case of benches/stack.rs, counted by valgrind (callgrind) over
# every thread of the process, the audit thread included: unlike a time, the count does not move
# with the machine's load, so two builds can be compared on a noisy machine.
#
# Usage: scripts/instructions.sh [case ...]   (default: every case)
# Needs valgrind (Debian: apt-get install valgrind). Takes about a minute per case.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)"; exit 1; }
cargo bench --bench stack --no-run 2>/dev/null
bin=$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/stack-* | grep -v '\.d$' | head -1)
cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
    cases=(bare audit_file transport rate_limit_ip validate auth_es256_cached auth_lockout
        auth_rate_limit_subject auth_rbac redact redact_except_roles full_stack)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
count() { # case requests -> instructions of the whole run
    STACK_ALLOCATIONS_ONLY=$1 STACK_REQUESTS=$2 valgrind --tool=callgrind \
        --callgrind-out-file="$work/out" "$bin" --bench >/dev/null 2>"$work/log"
    awk '/^summary:/ {print $2}' "$work/out"
}
printf '%-26s %12s\n' case "instructions/request"
for case in "${cases[@]}"; do
    few=$(count "$case" 500)
    many=$(count "$case" 2500)
    printf '%-26s %12d\n' "$case" $(( (many - few) / 2000 ))
done

#!/usr/bin/env bash
# Instructions per request of each case of benches/stack.rs, counted by valgrind (callgrind) over
# every thread of the process, the audit thread included: unlike a time, the count does not move
# with the machine's load, so two builds can be compared on a noisy machine. SHA-256 runs in
# software under valgrind (no SHA extensions), so the token digest and the audit chain's HMAC
# count for several times what they cost on hardware that has them.
#
# Usage: scripts/instructions.sh [case ...]   (default: every case)
# Needs valgrind (Debian: apt-get install valgrind). Takes about a minute per case; the counts
# move by a few hundred instructions per request from run to run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)"; exit 1; }
# The bench binary this build made, as cargo names it (not whichever is newest on disk).
bin=$(cargo bench --bench stack --no-run --message-format=json |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "stack" and m.get("executable"):
        print(m["executable"])')
[ -x "$bin" ] || { echo "could not build benches/stack.rs"; exit 1; }
known=(bare audit_file transport rate_limit_ip validate auth_es256_cached auth_lockout
    auth_rate_limit_subject auth_rbac redact redact_except_roles full_nested full_stack)
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=("${known[@]}")
for case in "${cases[@]}"; do
    [[ " ${known[*]} " == *" $case "* ]] || { echo "unknown case: $case (known: ${known[*]})"; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
count() { # case requests -> instructions of the whole run
    STACK_ALLOCATIONS_ONLY=$1 STACK_REQUESTS=$2 valgrind --tool=callgrind \
        --callgrind-out-file="$work/out" "$bin" --bench >"$work/stdout" 2>"$work/log"
    grep -q "^  $1 " "$work/stdout" || { echo "the bench did not run $1" >&2; exit 1; }
    awk '/^summary:/ {print $2}' "$work/out"
}
printf '%-26s %12s\n' case "instructions/request"
for case in "${cases[@]}"; do
    # 8000 requests apart: the set-up's own count moves by up to a few million instructions
    # from run to run (timing-driven entropy and clock calibration), about 300 per request here.
    few=$(count "$case" 1000)
    many=$(count "$case" 9000)
    printf '%-26s %12d\n' "$case" $(( (many - few) / 8000 ))
done

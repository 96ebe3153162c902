#!/usr/bin/env bash
# Run every benchmark with its default (short) settings; one JSON object per line goes to
# bench/results/ALL-<date>.jsonl and to stdout. Bounded: each benchmark has its own
# timeout, and the whole run takes under 15 minutes on a 2-core machine.
#
#   bench/run_all.sh            # all of them
#   bench/run_all.sh memory     # only those named
set -u
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
PY=${PYTHON:-python}
mkdir -p bench/results
out="bench/results/ALL-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
benches=("$@")
if [ ${#benches[@]} -eq 0 ]; then
    benches=(throughput lookup_sim lookup_swarm crawl memory routing_closest)
fi
# seconds each may take before it is stopped (the sum stays under 15 minutes)
declare -A limit=(
    [throughput]=140 [lookup_sim]=240 [lookup_swarm]=140 [crawl]=140 [memory]=200
    [routing_closest]=20
)
status=0
start=$(date +%s)
for b in "${benches[@]}"; do
    t0=$(date +%s)
    if timeout --kill-after=10 "${limit[$b]:-300}" "$PY" "bench/$b.py" >"$out.tmp" 2>"$out.err"; then
        cat "$out.tmp" | tee -a "$out"
    else
        rc=$?
        status=1
        msg=$(tail -n 3 "$out.err" | tr '\n' ' ' | tr '"' "'")
        echo "{\"bench\": \"$b\", \"failed\": true, \"exit_status\": $rc, \"stderr_tail\": \"$msg\"}" | tee -a "$out"
    fi
    echo "# $b: $(( $(date +%s) - t0 )) s" >&2
done
rm -f "$out.tmp" "$out.err"
echo "# all: $(( $(date +%s) - start )) s; results in $out" >&2
exit $status

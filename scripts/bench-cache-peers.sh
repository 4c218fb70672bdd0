#!/usr/bin/env bash
# The cache comparison of BENCHMARKS.md ("Response cache beside Caffeine"): hit ratios of sluice's
# ResponseCache (defaults; one shard; the segmented LRU without admission), a plain LRU and
# Caffeine 3.3.1, all replaying the SAME trace files with the SAME bytes charged per entry
# (benchmarks/cache_traces/trace.h). Hit ratio = hits / requests; a miss is followed by a Put.
#
#   scripts/bench-cache-peers.sh               1,000,000 requests per trace, budgets 8 and 32 MiB
#   QUICK=1 scripts/bench-cache-peers.sh       200,000 requests per trace
#   BUDGETS_MIB="8 32 128" REQUESTS=500000 scripts/bench-cache-peers.sh
#   KEEP_TRACES=dir scripts/bench-cache-peers.sh   writes the traces into dir and keeps them
#
# Prints one markdown table. The goal column: sluice (default) within 1 point of the better of
# plain LRU and Caffeine. Needs java 17 and Maven (apt-get install default-jdk-headless maven);
# Caffeine comes from Maven Central (benchmarks/java/caffeine_peer/pom.xml pins it).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in java mvn; do
  command -v "$tool" >/dev/null || {
    echo "bench-cache-peers: $tool is missing; install Java 17 and Maven:" >&2
    echo "  apt-get install default-jdk-headless maven" >&2
    exit 1
  }
done
BUDGETS_MIB="${BUDGETS_MIB:-8 32}"
if [[ "${QUICK:-0}" == 1 ]]; then REQUESTS="${REQUESTS:-200000}"; else REQUESTS="${REQUESTS:-1000000}"; fi
# <row name>:<shape>:<seed>; shifting and recency (the issue's traces) twice, with two seeds.
TRACES=(zipf-0.8:zipf-0.8:1 zipf-0.99:zipf-0.99:1 scan:scan:1 shifting:shifting:1
        shifting-s2:shifting:2 recency:recency:1 recency-s2:recency:2 loop:loop:1
        mix-change:mix-change:1 trending:trending:1 zipf-0.6:zipf-0.6:1)

cmake --preset dev -DSLUICE_BUILD_BENCHMARKS=ON >/dev/null
cmake --build --preset dev -j "${JOBS:-2}" --target cache_trace_gen cache_trace_replay >/dev/null
(cd benchmarks/java/caffeine_peer && mvn -q -B package)
peer=benchmarks/java/caffeine_peer/target/caffeine-peer.jar

if [[ -n "${KEEP_TRACES:-}" ]]; then
  traces="$KEEP_TRACES"; mkdir -p "$traces"
else
  traces="$(mktemp -d)"; trap 'rm -rf "$traces"' EXIT
fi
budgets=()
for mib in $BUDGETS_MIB; do budgets+=("$((mib << 20))"); done
results="$traces/results.txt"
: >"$results"
for entry in "${TRACES[@]}"; do
  IFS=: read -r name shape seed <<<"$entry"
  file="$traces/$name.trace"
  build/dev/benchmarks/cache_trace_gen "$shape" "$seed" "$REQUESTS" "$file"
  build/dev/benchmarks/cache_trace_replay "$file" "${budgets[@]}" | sed "s/^/$name /" >>"$results"
  java -jar "$peer" "$file" "${budgets[@]}" | sed "s/^/$name /" >>"$results"
done

python3 - "$results" "$REQUESTS" "$(git rev-parse --short HEAD)" <<'PY'
import sys
results, requests, commit = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ratio, rows = {}, []
for line in open(results):
    trace, column, budget, hits, n = line.split()
    ratio[(trace, int(budget), column)] = 100.0 * int(hits) / int(n)
    if (trace, int(budget)) not in rows:
        rows.append((trace, int(budget)))
rows.sort(key=lambda r: r[1])  # every trace at the smaller budget first
columns = ["lru", "sluice", "sluice-1shard", "sluice-slru", "caffeine"]
print(f"Hit ratio (%), {requests:,} requests per trace, sluice at {commit}\n")
print("| trace | budget | plain LRU | sluice (default) | sluice (1 shard) | sluice SLRU alone "
      "| Caffeine 3.3.1 | goal: >= max(LRU, Caffeine) - 1 |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
missed = 0
for trace, budget in rows:
    r = {c: ratio[(trace, budget, c)] for c in columns}
    met = r["sluice"] >= max(r["lru"], r["caffeine"]) - 1
    missed += not met
    cells = " | ".join("%.1f" % r[c] for c in columns)
    print(f"| {trace} | {budget >> 20} MiB | {cells} | {'yes' if met else 'MISSED'} |")
print(f"\nGoal met on {len(rows) - missed} of {len(rows)} rows.")
PY

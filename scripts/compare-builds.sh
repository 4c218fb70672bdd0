#!/usr/bin/env bash
# Before and after, on this machine, back to back: builds two git refs of sluice side by side
# (the C++ micro benchmarks and the Python module), runs the limiter, balancer, cache and
# fallback benchmarks and benchmarks/python/bench_hot_paths.py for each ref in turn, ROUNDS times,
# and prints every benchmark's median per ref and the ratio after / before.
#
#   scripts/compare-builds.sh <before-ref> [<after-ref>]      (after: the working tree's HEAD)
#
# ROUNDS (default 3), WORK (default /tmp/sluice-compare). Timing is noisy on a shared 2-core VM
# (about +-15% run to run): read ratios near 1 as "no change", and look at the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:?usage: scripts/compare-builds.sh <before-ref> [<after-ref>]}
AFTER=${2:-HEAD}
ROUNDS=${ROUNDS:-3}
WORK=${WORK:-/tmp/sluice-compare}
JOBS=${JOBS:-$(nproc)}
BENCHES=(limiter_bench balancer_bench cache_bench fallback_bench)
HOT_PATHS="$PWD/benchmarks/python/bench_hot_paths.py"

rm -rf "$WORK" && mkdir -p "$WORK/results"
for side in before after; do
  ref=$BEFORE; [ "$side" = after ] && ref=$AFTER
  echo "== building $side ($ref: $(git rev-parse --short "$ref"))" >&2
  mkdir -p "$WORK/$side"
  git archive "$ref" | tar -x -C "$WORK/$side"
  (cd "$WORK/$side" && cmake --preset dev -DSLUICE_BUILD_BENCHMARKS=ON -DSLUICE_BUILD_TESTS=OFF \
      -DSLUICE_BUILD_EXAMPLES=OFF >/dev/null && \
   cmake --build --preset dev -j "$JOBS" --target "${BENCHES[@]}" >/dev/null)
  python3 -m venv --system-site-packages "$WORK/venv-$side"
  (cd "$WORK/$side" && PIP_ROOT_USER_ACTION=ignore "$WORK/venv-$side/bin/pip" install --quiet \
      --disable-pip-version-check --no-build-isolation . >/dev/null)
done

for round in $(seq 1 "$ROUNDS"); do
  for bench in "${BENCHES[@]}"; do
    for side in before after; do
      echo "== round $round: $bench ($side)" >&2
      "$WORK/$side/build/dev/benchmarks/$bench" --benchmark_min_time=0.3 \
          --benchmark_format=json --benchmark_out_format=json \
          --benchmark_out="$WORK/results/$side.$bench.$round.json" >/dev/null 2>&1
    done
  done
  for side in before after; do
    echo "== round $round: bench_hot_paths.py ($side)" >&2
    (cd "$WORK" && "$WORK/venv-$side/bin/python" "$HOT_PATHS" --json \
        > "$WORK/results/$side.python.$round.json")
  done
done

python3 - "$WORK/results" "$BEFORE" "$AFTER" <<'PY'
import glob, json, os, statistics, sys
results, before_ref, after_ref = sys.argv[1:4]
table = {}  # (suite, name) -> side -> [ns]
for path in glob.glob(os.path.join(results, "*.json")):
    side, suite, _ = os.path.basename(path).split(".", 2)
    data = json.load(open(path))
    if suite == "python":
        for name, ns in data.items():
            table.setdefault(("python", name), {}).setdefault(side, []).append(ns)
        continue
    for b in data.get("benchmarks", []):
        if b.get("run_type") == "aggregate":
            continue
        scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
        table.setdefault((suite, b["name"]), {}).setdefault(side, []).append(b["real_time"] * scale)
print(f"before = {before_ref}, after = {after_ref}; median of the rounds, ns per iteration")
print(f"{'benchmark':78s} {'before':>10s} {'after':>10s} {'after/before':>12s}")
for (suite, name), sides in sorted(table.items()):
    if "before" not in sides or "after" not in sides:
        print(f"{suite + ': ' + name:78.78s} (only in {'before' if 'before' in sides else 'after'})")
        continue
    b, a = statistics.median(sides["before"]), statistics.median(sides["after"])
    print(f"{suite + ': ' + name:78.78s} {b:10.1f} {a:10.1f} {a / b:12.2f}")
PY

#!/usr/bin/env bash
# The clock comparison of BENCHMARKS.md ("A cheaper clock"): sluice's hot-key Allow, 2-thread and
# 1M-key cases on the steady, coarse and timestamp-counter clocks, beside the Rust `governor`
# crate (its default clock: the timestamp counter through `quanta`) in the same run. The two
# programs run in alternating rounds (ROUNDS, default 3) and each cell is the median of the
# rounds, so a busy moment hits both sides alike.
#
# Needs cargo (rustup, or Debian's `cargo` package: apt-get install cargo); the governor crate
# comes from crates.io (benchmarks/rust/governor_peer/Cargo.lock pins it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
command -v cargo >/dev/null || { echo "bench-clock-peers: cargo is missing (apt-get install cargo)" >&2; exit 1; }
cmake --preset dev -DSLUICE_BUILD_BENCHMARKS=ON >/dev/null
cmake --build --preset dev -j "${JOBS:-2}" --target limiter_bench >/dev/null
cargo build --quiet --release --manifest-path benchmarks/rust/governor_peer/Cargo.toml
peer=benchmarks/rust/governor_peer/target/release/governor_peer
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
filter='HotKey_Allow/|HotKey_CoarseClock|HotKey_TscClock|ClockRead_|RateLimiter_1MKeys'
for round in $(seq "$ROUNDS"); do
  build/dev/benchmarks/limiter_bench --benchmark_filter="$filter" --benchmark_min_time=0.5 \
      --benchmark_format=json >"$out/sluice-$round.json" 2>/dev/null
  REPS=1 "$peer" >"$out/governor-$round.txt"
done
python3 - "$out" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
sl, gov = {}, {}
for r in range(1, rounds + 1):
    for b in json.load(open(f"{out}/sluice-{r}.json"))["benchmarks"]:
        sl.setdefault(b["name"], []).append((b["real_time"], b["cpu_time"]))
        if b["name"].startswith("BM_RateLimiter_HotKey_TscClock"):
            tsc = b.get("tsc", 0)
    for line in open(f"{out}/governor-{r}.txt"):
        name, wall, cpu = line.split()
        gov.setdefault(name, []).append((float(wall), float(cpu)))
def cell(series):
    if not series:
        return "—"
    return "%.1f / %.1f" % (statistics.median(w for w, _ in series), statistics.median(c for _, c in series))
rows = [
    ("clock read", "BM_ClockRead_Steady", "BM_ClockRead_CoarseSteady", "BM_ClockRead_Tsc", "clock_read"),
    ("hot-key Allow, 1 thread", "BM_RateLimiter_HotKey_Allow/real_time/threads:1",
     "BM_RateLimiter_HotKey_CoarseClock", "BM_RateLimiter_HotKey_TscClock/real_time/threads:1", "hot_key"),
    ("hot-key Allow, 2 threads", "BM_RateLimiter_HotKey_Allow/real_time/threads:2", None,
     "BM_RateLimiter_HotKey_TscClock/real_time/threads:2", "hot_key_2t"),
    ("1M keys Allow", "BM_RateLimiter_1MKeys/1000000", None, "BM_RateLimiter_1MKeys_TscClock/1000000", "keys_1m"),
]
print(f"ns per decision, wall / CPU, median of {rounds} alternating rounds"
      f" (sluice Clock::Tsc() {'reads the TSC' if tsc else 'fell back to CLOCK_MONOTONIC'})\n")
print("| case | sluice Steady | sluice CoarseSteady | sluice Tsc | governor (quanta TSC) |")
print("|---|---|---|---|---|")
for label, steady, coarse, tscname, g in rows:
    print(f"| {label} | {cell(sl.get(steady))} | {cell(sl.get(coarse) if coarse else None)} | "
          f"{cell(sl.get(tscname))} | {cell(gov.get(g))} |")
PY

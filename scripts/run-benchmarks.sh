#!/usr/bin/env bash
# Every figure of BENCHMARKS.md: the C++ micro benchmarks (Google Benchmark), host-scope
# throughput, the harness's burst through host and cluster scopes, the fleet simulator and the
# balancer's pick cost, the fallback policy's overhead and amplification, the response cache's
# hit ratio and costs, the Governor's whole request path, and the Python peer comparisons (each
# run that needs Redis starts its own redis-server on a free loopback port and stops it).
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore  # CI runs as root; pip's warning about it is noise
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset dev -DSLUICE_BUILD_BENCHMARKS=ON >/dev/null
cmake --build --preset dev -j "${JOBS:-$(nproc)}" --target limiter_bench host_scope_bench \
    sluice_harness sluice_fleet_sim balancer_bench fallback_bench cache_bench cache_hit_ratio \
    governor_bench >/dev/null
build/dev/benchmarks/limiter_bench --benchmark_min_time=0.5 --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true
build/dev/benchmarks/host_scope_bench
build/dev/benchmarks/sluice_harness --scope=host
build/dev/benchmarks/sluice_harness --scope=cluster --start-redis
build/dev/benchmarks/sluice_fleet_sim
build/dev/benchmarks/sluice_fleet_sim --kv-blocks=6000
build/dev/benchmarks/balancer_bench --benchmark_min_time=0.2
build/dev/benchmarks/fallback_bench --benchmark_min_time=0.5 --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true
build/dev/benchmarks/cache_bench --benchmark_min_time=0.3 --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true
build/dev/benchmarks/cache_hit_ratio
build/dev/benchmarks/governor_bench --benchmark_min_time=0.5 --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true
"${PYTHON:-python3}" -m pip install --quiet --disable-pip-version-check .
# The peers only bench_governor.py and bench_async_fast_path.py measure (litellm is heavy: kept
# out of requirements-dev.txt).
"${PYTHON:-python3}" -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
"${PYTHON:-python3}" benchmarks/python/bench_peers.py "$@"
"${PYTHON:-python3}" benchmarks/python/bench_cluster.py "$@"
"${PYTHON:-python3}" benchmarks/python/bench_balancer.py
"${PYTHON:-python3}" benchmarks/python/bench_fallback.py
"${PYTHON:-python3}" benchmarks/python/bench_cache.py
"${PYTHON:-python3}" benchmarks/python/bench_governor.py
"${PYTHON:-python3}" benchmarks/python/bench_async_fast_path.py
cmake --build --preset dev -j "${JOBS:-$(nproc)}" --target usage_bench estimate_tokens_cli >/dev/null
build/dev/benchmarks/usage_bench --benchmark_min_time=0.3
"${PYTHON:-python3}" benchmarks/python/bench_token_estimate.py

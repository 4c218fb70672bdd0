#!/usr/bin/env bash
# The second fleet simulator (issue 15, BENCHMARKS.md "a second simulator"): sluice's Balancer
# strategies and an SGLang-router-style peer on vLLM-like replicas, over RAG, agentic,
# heterogeneous, bursty and several-worker workloads and a KV sweep, several seeds.
#
#   scripts/bench-fleet2.sh --quick     2 seeds, smaller workloads: ~1 min (what run-harness.sh runs)
#   scripts/bench-fleet2.sh --json build/fleet2/report.json --plot build/fleet2/ttft.png   ~2-3 min
#
# sluice comes from scripts/bench-venv.sh (this tree); numpy and matplotlib, at the versions
# requirements-bench.txt pins, are installed into the same venv.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-venv.sh
"$py" -m pip install --quiet --disable-pip-version-check \
  $(grep -E '^(numpy|matplotlib)==' requirements-bench.txt)
exec "$py" benchmarks/fleet2/run.py "$@"

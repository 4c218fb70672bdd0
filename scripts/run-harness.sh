#!/usr/bin/env bash
# Sets everything up and runs sluice's main job: the harness, a Dify-like burst driven through the
# admission objects in-process (the embedded default: no server needed), a provider-outage
# fallback drill and repeated questions through the response cache, then the fleet simulator
# (the Balancer's strategies on simulated vLLM replicas), then the second fleet simulator's quick
# run (scripts/bench-fleet2.sh --quick: untuned workloads beside an SGLang-style peer), then the
# quick Dify end to end
# (scripts/bench-dify-e2e.sh --quick: Gunicorn + gevent, Dify's Redis logic beside sluice host and
# cluster scope; it installs this tree's sluice into a venv under build/, ~1 min once built;
# SLUICE_HARNESS_DIFY_E2E=0 skips it). Extra arguments go to the harness (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset dev -DSLUICE_BUILD_BENCHMARKS=ON >/dev/null
cmake --build --preset dev -j "${JOBS:-$(nproc)}" --target sluice_harness sluice_fleet_sim >/dev/null
build/dev/benchmarks/sluice_harness "$@"
echo
build/dev/benchmarks/sluice_fleet_sim
echo
# The second simulator's workloads (RAG, agentic, heterogeneous, bursty, several workers, a KV
# sweep) against an SGLang-router-style peer; SLUICE_HARNESS_FLEET2=0 skips it.
if [[ "${SLUICE_HARNESS_FLEET2:-1}" == 0 ]]; then
  echo "Second fleet simulator: skipped (SLUICE_HARNESS_FLEET2=0)"
elif ! "${PYTHON:-python3}" -c "import ensurepip" 2>/dev/null; then
  echo "Second fleet simulator: skipped (${PYTHON:-python3} lacks venv support: Debian's python3-venv)"
else
  bash scripts/bench-fleet2.sh --quick
fi
echo
if [[ "${SLUICE_HARNESS_DIFY_E2E:-1}" == 0 ]]; then
  echo "Dify end to end: skipped (SLUICE_HARNESS_DIFY_E2E=0)"
elif ! "${PYTHON:-python3}" -c "import flask, gunicorn, gevent, redis, ensurepip" 2>/dev/null; then
  echo "Dify end to end: skipped (${PYTHON:-python3} lacks flask, gunicorn, gevent, redis or" \
       "venv support; scripts/install-deps.sh installs the first four, Debian's python3-venv" \
       "the last)"
else
  bash scripts/bench-dify-e2e.sh --quick
fi

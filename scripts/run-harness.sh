#!/usr/bin/env bash
# Sets everything up and runs sluice's main job: the harness, a Dify-like burst driven through the
# admission objects in-process (the embedded default: no server needed), a provider-outage
# fallback drill and repeated questions through the response cache, then the fleet simulator
# (the Balancer's strategies on simulated vLLM replicas). Extra arguments go to the harness (see
# --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset dev -DSLUICE_BUILD_BENCHMARKS=ON >/dev/null
cmake --build --preset dev -j "${JOBS:-$(nproc)}" --target sluice_harness sluice_fleet_sim >/dev/null
build/dev/benchmarks/sluice_harness "$@"
echo
build/dev/benchmarks/sluice_fleet_sim

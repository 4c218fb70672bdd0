#!/usr/bin/env bash
# Sets everything up and runs every test: Catch2 through ctest and the C tests (plain, then under
# AddressSanitizer + UndefinedBehaviorSanitizer with undefined behaviour fatal), every fuzz target
# coverage-guided for a bounded time (clang + libFuzzer), the concurrency tests under
# ThreadSanitizer, a consumer project built against the *installed* package with
# find_package(sluice), and pytest against the pip-installed Python package (the hostile-input
# suite among it). Exits non-zero on the first failure.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore  # CI runs as root; pip's warning about it is noise
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-$(nproc)}"

step() { printf '\n==== %s\n' "$*"; }

step "dependencies"
bash scripts/install-deps.sh

step "dev build + ctest (Catch2, C ABI test)"
cmake --preset dev -DSLUICE_BUILD_BENCHMARKS=ON -DSLUICE_BUILD_EXAMPLES=ON >/dev/null
cmake --build --preset dev -j "$JOBS"
ctest --preset dev -j "$JOBS"

step "asan+ubsan build + ctest"
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$JOBS"
ctest --preset asan -j "$JOBS"

step "coverage-guided fuzzing (clang + libFuzzer + ASan/UBSan, SLUICE_FUZZ_SECONDS per target)"
bash scripts/run-fuzz.sh

step "tsan build + ctest (tests labelled 'concurrency')"
cmake --preset tsan >/dev/null
cmake --build --preset tsan -j "$JOBS"
ctest --preset tsan

step "install + find_package(sluice) consumer"
prefix="$PWD/build/dev-install"
rm -rf "$prefix" build/consumer
cmake --install build/dev --prefix "$prefix" >/dev/null
cmake -S tests/consumer -B build/consumer -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build build/consumer
ctest --test-dir build/consumer --output-on-failure

step "pip install . + pytest"
"$PYTHON" -m pip install --quiet --disable-pip-version-check .
"$PYTHON" -m pytest tests/python -q
PYTHON="$PYTHON" bash scripts/check-python-stubs.sh

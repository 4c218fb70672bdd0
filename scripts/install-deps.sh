#!/usr/bin/env bash
# Installs everything sluice needs on a fresh Debian 12 machine: the C++ libraries and tools
# from Debian, the Python build and test packages from PyPI. Safe to run again; it is what the
# README commands and .ci/run call first, so nothing installed by hand is ever assumed.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore  # CI runs as root; pip's warning about it is noise

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

debian_packages=(
  build-essential cmake ninja-build pkg-config git
  libabsl-dev          # Status/StatusOr, Mutex, flat_hash_map, Duration
  libhiredis-dev       # Redis client (cluster scope)
  libssl-dev           # OpenSSL 3: TLS to Redis (Debian's hiredis 0.14 has none)
  openssl              # the openssl CLI: the TLS tests make their certificates with it
  libxxhash-dev        # XXH3 key hashing (private to lib/)
  libsimdjson-dev      # JSON request / usage parsing
  libyaml-cpp-dev      # policy files (sluice/policy.h): YAML with line marks for errors; JSON is YAML
  catch2               # Catch2 v2 single-header tests
  libbenchmark-dev     # Google Benchmark micro benchmarks
  redis-server         # real Redis for the integration tests and peer benchmarks
  clang-14             # scripts/run-fuzz.sh: coverage-guided fuzzing with libFuzzer
  libclang-rt-14-dev   # ... whose runtime (libclang_rt.fuzzer, ASan, UBSan) clang-14 needs
)

missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian redis-server package starts a system instance; tests start their own on free ports.

PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -r "$(dirname "$0")/../requirements-dev.txt"

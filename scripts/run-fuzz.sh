#!/usr/bin/env bash
# Coverage-guided fuzzing: builds every fuzz target of tests/fuzz with clang + libFuzzer +
# AddressSanitizer + UndefinedBehaviorSanitizer (the library and the C ABI instrumented too, in
# build/fuzz), then runs each for SLUICE_FUZZ_SECONDS seconds (default 25) from its seed corpus
# tests/fuzz/<target>.corpus. Fails if any target crashes, leaks, trips a sanitizer, breaks one of
# its invariants or takes over 10 s on one input; the input is kept in build/fuzz/artifacts/.
#
# The repo's corpora are only read: what libFuzzer finds goes to a temporary directory. With
# --update-corpus, the new inputs of at most SLUICE_FUZZ_SEED_BYTES bytes (default 1024) that add
# coverage are merged into tests/fuzz/<target>.corpus (libFuzzer -set_cover_merge=1: a small set
# that covers as much); commit the ones worth keeping as regression seeds.
#
# Usage: scripts/run-fuzz.sh [--update-corpus] [target ...]   (targets: see tests/CMakeLists.txt)
# Environment: SLUICE_FUZZ_SECONDS (per target), SLUICE_FUZZ_SEED_BYTES, JOBS (build),
# CC / CXX (default clang-14).
set -euo pipefail
cd "$(dirname "$0")/.."

update_corpus=0
targets=()
for arg in "$@"; do
  case "$arg" in
    --update-corpus) update_corpus=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "run-fuzz: unknown option $arg" >&2; exit 2 ;;
    *) targets+=("$arg") ;;
  esac
done
if ((${#targets[@]} == 0)); then
  targets=(llm_request engine_metrics provider_error canonical_json sse_replay sse_stream
           cache_record capi usage policy redis_url routes)
fi
seconds="${SLUICE_FUZZ_SECONDS:-25}"
seed_bytes="${SLUICE_FUZZ_SEED_BYTES:-1024}"
jobs="${JOBS:-$(nproc)}"
cc="${CC:-clang-14}"
cxx="${CXX:-clang++-14}"
if ! command -v "$cxx" >/dev/null; then
  echo "run-fuzz: $cxx not found (scripts/install-deps.sh installs clang-14 and libclang-rt-14-dev)" >&2
  exit 2
fi

build=build/fuzz
# No NDEBUG: the library's asserted preconditions are checked while fuzzing.
sanitize="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"
cmake -S . -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE= \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_C_FLAGS="$sanitize -O1 -g -fno-omit-frame-pointer" \
  -DCMAKE_CXX_FLAGS="$sanitize -O1 -g -fno-omit-frame-pointer" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DSLUICE_BUILD_LIBFUZZER=ON -DSLUICE_BUILD_TESTS=ON \
  -DSLUICE_BUILD_BENCHMARKS=OFF -DSLUICE_BUILD_EXAMPLES=OFF -DSLUICE_INSTALL=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target "${targets[@]/#/fuzz_}"

artifacts="$build/artifacts"
mkdir -p "$artifacts"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
failed=()
for t in "${targets[@]}"; do
  corpus="tests/fuzz/$t.corpus"
  found="$scratch/$t"
  mkdir -p "$found"
  printf '\n==== fuzz_%s: %s s from %s\n' "$t" "$seconds" "$corpus"
  # The first directory receives new inputs; the repo's corpus is read only.
  if ! "$build/tests/fuzz_$t" "$found" "$corpus" -max_total_time="$seconds" -timeout=10 \
         -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
         -artifact_prefix="$artifacts/$t-" 2>"$scratch/$t.log"; then
    tail -n 60 "$scratch/$t.log"
    failed+=("$t")
    continue
  fi
  grep -E '^(#[0-9]+[[:space:]]+DONE|Done )' "$scratch/$t.log" || true
  if ((update_corpus)); then
    small="$scratch/$t.small"
    mkdir -p "$small"
    find "$found" -type f -size -"$((seed_bytes + 1))"c -exec cp {} "$small/" \;
    "$build/tests/fuzz_$t" -set_cover_merge=1 "$corpus" "$small" 2>>"$scratch/$t.log" >/dev/null
    echo "merged into $corpus: $(ls "$corpus" | wc -l) files"
  fi
done

if ((${#failed[@]})); then
  echo "run-fuzz: FAILED: ${failed[*]} (inputs in $artifacts)" >&2
  exit 1
fi
echo "run-fuzz: ${#targets[@]} targets, ${seconds} s each, no crash"

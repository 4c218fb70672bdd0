#!/usr/bin/env bash
# The type stubs of the native extension, bindings/python/sluice/_core.pyi, are generated from the
# built module with pybind11-stubgen (requirements-dev.txt pins its version: another version
# words the same module differently). This regenerates them into a temporary directory from the
# *installed* sluice package and fails, showing the diff, if the checked-in file differs.
#
#   bash scripts/check-python-stubs.sh            # check (scripts/run-tests.sh runs it)
#   bash scripts/check-python-stubs.sh --update   # after changing bindings/python/src: rewrite
#
# The command itself: python -m pybind11_stubgen sluice._core --exit-code -o <dir>
# (run outside the source tree, so that `sluice` is the installed package with its _core).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
checked_in="$PWD/bindings/python/sluice/_core.pyi"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
(cd "$out" && "$PYTHON" -m pybind11_stubgen sluice._core --exit-code -o "$out/stubs" >/dev/null)
generated="$out/stubs/sluice/_core.pyi"
if [[ "${1:-}" == "--update" ]]; then
  cp "$generated" "$checked_in"
  echo "updated $checked_in"
  exit 0
fi
if ! diff -u "$checked_in" "$generated"; then
  echo "bindings/python/sluice/_core.pyi is not what pybind11-stubgen makes of the built module;" >&2
  echo "run: bash scripts/check-python-stubs.sh --update" >&2
  exit 1
fi
echo "_core.pyi matches the built module"

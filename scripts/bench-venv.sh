# Sourced by the Python benchmarks' scripts: sets `py` to an interpreter that has this tree's
# sluice. sluice is installed (pip install --no-build-isolation .) into build/bench-venv, a venv
# made with --system-site-packages, so a benchmark always measures this tree; its CMake build dir
# is pyproject's build/python/<tag>, the one scripts/run-tests.sh's pip install keeps, so a rerun
# only rebuilds what changed. BENCH_PYTHON=/path/to/python uses an interpreter that has this
# tree's sluice already (nothing is installed). Run from the repository's root.
export PIP_ROOT_USER_ACTION=ignore
if [[ -n "${BENCH_PYTHON:-}" ]]; then
  py="$BENCH_PYTHON"
else
  venv="build/bench-venv"
  if [[ ! -x "$venv/bin/python" ]]; then
    "${PYTHON:-python3}" -m venv --system-site-packages "$venv" || {
      rm -rf "$venv"
      echo "bench-venv: ${PYTHON:-python3} -m venv failed (Debian: apt-get install python3-venv)" >&2
      exit 1
    }
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation .
  py="$venv/bin/python"
fi

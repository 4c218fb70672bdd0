#!/usr/bin/env bash
# Dify end to end (issue 17, BENCHMARKS.md "Dify end to end"): a Dify-shaped Flask app under
# Gunicorn with 3 gevent workers, a mock OpenAI upstream with 429 storms, a bounded client; the
# same load through Dify's current Redis logic, sluice in host scope and sluice in cluster scope,
# one markdown table. Loopback only; each setup starts its own redis-server on a free port.
#
#   scripts/bench-dify-e2e.sh              ~3 min
#   scripts/bench-dify-e2e.sh --quick      ~1 min (what scripts/run-harness.sh runs)
#
# sluice is installed (pip install --no-build-isolation .) into a venv under build/ made with
# --system-site-packages, so the benchmark always measures this tree; its CMake build dir is
# pyproject's build/python/<tag>, the one scripts/run-tests.sh's pip install keeps, so a rerun
# only rebuilds what changed. DIFY_E2E_PYTHON=/path/to/python uses an interpreter that has this
# tree's sluice already (nothing is installed). Needs flask, gunicorn, gevent and redis (from
# requirements-dev.txt: scripts/install-deps.sh) and redis-server.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore
cd "$(dirname "$0")/.."
if [[ -n "${DIFY_E2E_PYTHON:-}" ]]; then
  py="$DIFY_E2E_PYTHON"
else
  venv="build/dify-e2e-venv"
  if [[ ! -x "$venv/bin/python" ]]; then
    "${PYTHON:-python3}" -m venv --system-site-packages "$venv" || {
      rm -rf "$venv"
      echo "bench-dify-e2e: ${PYTHON:-python3} -m venv failed (Debian: apt-get install python3-venv)" >&2
      exit 1
    }
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation .
  py="$venv/bin/python"
fi
if ! "$py" -c "import flask, gunicorn, gevent, redis, sluice.dify" 2>/dev/null; then
  echo "bench-dify-e2e: $py lacks flask, gunicorn, gevent, redis or sluice.dify;" \
       "run scripts/install-deps.sh" >&2
  exit 1
fi
exec "$py" benchmarks/dify_e2e/run.py "$@"

#!/usr/bin/env bash
# Dify end to end (issue 17, BENCHMARKS.md "Dify end to end"): a Dify-shaped Flask app under
# Gunicorn with 3 gevent workers, a mock OpenAI upstream with 429 storms, a bounded client; the
# same load through Dify's current Redis logic, sluice in host scope and sluice in cluster scope,
# one markdown table. Loopback only; each setup starts its own redis-server on a free port.
#
#   scripts/bench-dify-e2e.sh              ~3 min
#   scripts/bench-dify-e2e.sh --quick      ~1 min (what scripts/run-harness.sh runs)
#
# sluice comes from scripts/bench-venv.sh (this tree, installed into build/bench-venv;
# BENCH_PYTHON=/path/to/python uses an interpreter that has it already). Needs flask, gunicorn,
# gevent and redis (from requirements-dev.txt: scripts/install-deps.sh) and redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-venv.sh
if ! "$py" -c "import flask, gunicorn, gevent, redis, sluice.dify" 2>/dev/null; then
  echo "bench-dify-e2e: $py lacks flask, gunicorn, gevent, redis or sluice.dify;" \
       "run scripts/install-deps.sh" >&2
  exit 1
fi
exec "$py" benchmarks/dify_e2e/run.py "$@"

#!/usr/bin/env bash
# Set up (if needed) and run the test suite on CPU: every lane, or --fast for the unit lane alone
# (under a minute on 2 cores; it refuses subprocesses, sleeps and ZenML: tests/unit/conftest.py).
# Other arguments go to pytest, e.g. -m "not slow" or a test path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export GX_ANALYTICS_ENABLED=false ZENML_ANALYTICS_OPT_IN=false
# One pytest-xdist worker per core (at most 4), a test module to one worker (its shared runs stay
# shared); tests/conftest.py gives each worker its share of the cores' threads.
parallel=(-n auto --maxprocesses 4 --dist loadfile)
if [ "${1:-}" = "--fast" ]; then
  shift
  exec .venv/bin/python -m pytest -q "${parallel[@]}" tests/unit "$@"
fi
exec .venv/bin/python -m pytest -q "${parallel[@]}" --durations=20 "$@"   # the 20 slowest tests, for every contributor to see

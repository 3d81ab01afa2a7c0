#!/usr/bin/env bash
# Set up (if needed) and run the test suite on CPU: every lane, or --fast for the unit lane alone
# (under 2 minutes on 2 cores). Other arguments go to pytest, e.g. -m "not slow" or a test path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export GX_ANALYTICS_ENABLED=false ZENML_ANALYTICS_OPT_IN=false
if [ "${1:-}" = "--fast" ]; then
  shift
  exec .venv/bin/python -m pytest -q tests/unit "$@"
fi
exec .venv/bin/python -m pytest -q "$@"

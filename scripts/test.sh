#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export GX_ANALYTICS_ENABLED=false ZENML_ANALYTICS_OPT_IN=false
exec .venv/bin/python -m pytest -q "$@"

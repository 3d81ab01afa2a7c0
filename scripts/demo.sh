#!/usr/bin/env bash
# Set up (if needed) and run the main job: DCJT + baselines on the synthetic world, on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python run.py demo "$@"

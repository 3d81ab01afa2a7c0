#!/usr/bin/env bash
# Curated mutation check (see scripts/mutation.py): prints one line per mutant, then killed: K/N.
# Needs the environment of scripts/test.sh (.venv). Took 14.5 min on 2 cores (35 mutants).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
exec .venv/bin/python scripts/mutation.py "$@"

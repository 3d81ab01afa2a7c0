#!/usr/bin/env bash
# Curated mutation check (see scripts/mutation.py): prints one line per mutant, then killed: K/N.
# Needs the environment of scripts/test.sh (.venv). Takes about a quarter of an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
exec .venv/bin/python scripts/mutation.py "$@"

#!/usr/bin/env bash
# The team stack on one machine: every step in its own container, an MLflow server on PostgreSQL
# with basic auth, no shared disk between steps (app/team/stack.py says how).
#   scripts/team_stack.sh up       build the images, start PostgreSQL and the MLflow server, register the ZenML stack
#   scripts/team_stack.sh run ...  the main job on it (options as for run.py demo)
#   scripts/team_stack.sh down     stop and remove all of it (--keep-images keeps the built images)
#   scripts/team_stack.sh check    down, up, run, compare with a run in one process, down; non-zero on any difference
# Credentials from the environment: MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD, TEAM_DB_PASSWORD
# (check makes throwaway ones when they are unset).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ZENML_ANALYTICS_OPT_IN=false GX_ANALYTICS_ENABLED=false
exec .venv/bin/python -m app.team.cli "$@"

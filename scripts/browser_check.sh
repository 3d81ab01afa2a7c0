#!/usr/bin/env bash
# The MLflow UI as a team sees it after the main job, in Chromium (Playwright): a fresh browser
# opens the training runs, the run's description is its comparison table, the registry version
# shows its baselines, per-emotion quality and a working model-card link; ZenML's dashboard
# (run.py dashboard) shows the run, every stage step, a rendered stage report with its Great
# Expectations result and the run's links. Screenshots land in docs/images/ui-*.png and
# zenml-*.png; exit code = number of failed checks. Needs Debian's chromium
# (apt-get install chromium) and a finished main job in DCJT_HOME (python run.py demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -c "import playwright" 2>/dev/null || .venv/bin/python -m pip install --quiet -e '.[browser]'
exec .venv/bin/python scripts/browser_check.py "$@"

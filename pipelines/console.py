"""What a run prints: the pipeline's progress and results; third-party chatter goes to a log file.

Great Expectations announces its setup at INFO (``Skipping registering function ...``, temporary
docs sites, datasource dumps), MLflow logs its database migrations, progress bars and registry
messages, and imported libraries raise FutureWarnings about Python versions. None of it tells the
user anything about the run, so it is written to ``$DCJT_HOME/logs/third-party.log`` instead.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

THIRD_PARTY_LOGGERS = ("great_expectations", "mlflow", "alembic", "py.warnings", "urllib3", "httpx", "git")


def third_party_log(home: Path) -> Path:
    return home / "logs" / "third-party.log"


def quiet_third_party(home: Path) -> Path:
    """Send the third-party loggers and Python warnings to the log file (call after importing
    MLflow, which installs its own console handler when imported)."""
    path = third_party_log(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
    logging.captureWarnings(True)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return path

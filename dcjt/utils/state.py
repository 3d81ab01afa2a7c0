"""Where a run's state lives: ``DCJT_HOME`` (default ``./state`` in the repository)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def state_home() -> Path:
    """Where ZenML, MLflow, image caches and checkpoints live (``DCJT_HOME``, default ./state)."""
    return Path(os.environ.get("DCJT_HOME", REPO_ROOT / "state")).resolve()

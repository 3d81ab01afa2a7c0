"""What every step shares: the cache policy and the MLflow helpers.

ZenML's cache key covers a step's own source, parameters and inputs, not the core code it
calls; every step therefore lists the files of ``dcjt/``, ``models/`` and ``steps/`` (helpers beside
the step functions) as file dependencies, so a change in any of them invalidates cached results. The MLflow parent run id is an input that
the cache key ignores (it changes every run; the work does not).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from zenml.config.cache_policy import CachePolicy

REPO_ROOT = Path(__file__).resolve().parents[1]
CORE_FILES = sorted(str(p.relative_to(REPO_ROOT)) for d in ("dcjt", "models", "steps") for p in (REPO_ROOT / d).glob("*.py"))
PARENT_RUN = "parent_run_id"


def core_cache_policy() -> CachePolicy:
    return CachePolicy(file_dependencies=CORE_FILES, ignored_inputs=[PARENT_RUN])


@contextlib.contextmanager
def child_run(parent_run_id: str, name: str):
    """An MLflow run nested under the pipeline's parent run (works across processes)."""
    parent = mlflow.get_run(parent_run_id)
    with mlflow.start_run(experiment_id=parent.info.experiment_id, run_name=name,
                          tags={"mlflow.parentRunId": parent_run_id, "dcjt.stage": name}) as run:  # fmt: skip
        yield run


def log_json(obj, name: str) -> None:
    mlflow.log_dict(json.loads(json.dumps(obj, default=_jsonable)), name)


def log_frame(frame: pd.DataFrame, name: str) -> None:
    folder, _, filename = name.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        frame.to_csv(path, index=True)
        mlflow.log_artifact(str(path), artifact_path=folder or None)


def log_figure(fig, name: str) -> None:
    import matplotlib.pyplot as plt

    mlflow.log_figure(fig, name)
    plt.close(fig)


def _jsonable(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)

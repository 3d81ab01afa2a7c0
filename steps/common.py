"""What every step shares: the cache policy and the MLflow helpers.

ZenML's cache key covers a step's own source, parameters and inputs, not the code it calls.
Every step's policy therefore adds ``code_digest()``: a hash of the sources of the core package
(``dcjt/``) and of ``steps/``, computed when a key is computed (never at import), so a change in
any of them invalidates cached results. The MLflow parent run id is an input that the cache key
ignores (it changes every run; the work does not).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from zenml.config.cache_policy import CachePolicy

REPO_ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("dcjt", "steps")
PARENT_RUN = "parent_run_id"


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """Hash of every Python source under ``CODE_FOLDERS`` (paths and contents)."""
    h = hashlib.sha256()
    for folder in CODE_FOLDERS:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            h.update(str(path.relative_to(REPO_ROOT)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def core_cache_policy() -> CachePolicy:
    return CachePolicy(cache_func="steps.common.code_digest", ignored_inputs=[PARENT_RUN])


@contextlib.contextmanager
def child_run(parent_run_id: str, name: str):
    """An MLflow run nested under the pipeline's parent run (works across processes)."""
    parent = mlflow.get_run(parent_run_id)
    tags = {"mlflow.parentRunId": parent_run_id, "dcjt.stage": name}
    with mlflow.start_run(experiment_id=parent.info.experiment_id, run_name=name, tags=tags) as run:
        yield run


def log_json(obj, name: str) -> None:
    mlflow.log_dict(json.loads(json.dumps(obj, default=_jsonable)), name)


def log_frame(frame: pd.DataFrame, name: str) -> None:
    folder, _, filename = name.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        frame.to_csv(path, index=True)
        mlflow.log_artifact(str(path), artifact_path=folder or None)


def _jsonable(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)

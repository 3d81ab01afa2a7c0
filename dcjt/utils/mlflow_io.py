"""MLflow helpers shared by the steps, the registry and the studies (no ZenML): child runs under a
pipeline's parent run, JSON / CSV artifacts, label tables as MLflow datasets."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import mlflow
import pandas as pd

from dcjt.utils.runtime import provenance


@contextlib.contextmanager
def stderr_to_log(name: str = "mlflow"):
    """Library code that prints to stderr (MLflow's ``Successfully registered model``) logs instead."""
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        yield
    for line in buffer.getvalue().splitlines():
        if line.strip():
            logging.getLogger(name).info(line)


@contextlib.contextmanager
def child_run(parent_run_id: str, name: str):
    """An MLflow run nested under the pipeline's parent run (works across processes)."""
    parent = mlflow.get_run(parent_run_id)
    tags = {"mlflow.parentRunId": parent_run_id, "dcjt.stage": name, **provenance()}
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


def table_source(rows: pd.DataFrame) -> str:
    """The folder every image of ``rows`` lies under (the dataset root), for MLflow's dataset source."""
    images = rows["image"].astype(str)
    return os.path.commonpath(images.tolist()) if len(images) else ""


def log_tables(tables: list[tuple[str, pd.DataFrame, str]], classes: tuple[str, ...] = ()) -> dict[str, str]:
    """Attach label tables to the active run as MLflow dataset inputs: (name, rows, context) each,
    context ``train`` / ``validation`` / ``test`` / ``evaluation``, tagged with the rows per class.
    Returns name -> digest."""
    digests = {}
    for name, rows, context in tables:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow's integer-column schema hint, once per table
            dataset = mlflow.data.from_pandas(rows.reset_index(drop=True), source=table_source(rows), name=name)
            log_input_shared(dataset, context=context, tags=class_counts(rows, classes))
        digests[name] = dataset.digest
    return digests


def log_input_shared(dataset, context: str, tags: dict[str, str], attempts: int = 5) -> None:
    """``mlflow.log_input`` that survives a second run logging the same table at the same moment.

    MLflow's SQL store looks an experiment's datasets up and then inserts the missing ones; two runs
    (two pipelines at once on one store) can both miss the row and the second insert fails on the
    (experiment, name, digest) unique key, rolled back. Trying again finds the row the other run
    wrote and links to it, which is what one run alone would have done."""
    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context=context, tags=tags)
            return
        except mlflow.exceptions.MlflowException as error:
            duplicate = "UNIQUE constraint failed: datasets." in str(error) or '"dataset_pk"' in str(error)  # SQLite, Postgres
            if not duplicate or attempt == attempts - 1:
                raise


def class_counts(rows: pd.DataFrame, classes: tuple[str, ...]) -> dict[str, str]:
    """Rows per class (``rows.anger``...; ``classes`` in label order) for a dataset input's tags:
    the class balance a team checks first, shown beside the dataset in the UI."""
    if "label" not in rows or not classes:
        return {}
    counts = rows["label"].astype(int).value_counts()
    tags = {f"rows.{e}": str(int(counts.get(i, 0))) for i, e in enumerate(classes)}
    return tags | {"rows": str(len(rows))}


def table_name(rows: pd.DataFrame, part: str) -> str:
    """``rafdb train`` style names: the dataset(s) the rows come from and which part they are."""
    datasets = "+".join(sorted(rows["dataset"].astype(str).unique())) if "dataset" in rows and len(rows) else "table"
    return f"{datasets} {part}"

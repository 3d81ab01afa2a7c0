"""The rows a registered version trained on, kept beside its training run: the promotion gate
refuses to score a champion on rows it trained on (``dcjt.data.identity.row_keys``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from dcjt.data.identity import keys_digest, row_keys
from dcjt.data.labels import split_rows
from dcjt.registry.lifecycle import current_champion

TRAINING_ROWS = "training_rows.npy"  # the training run's record of the rows a model trained on


def training_row_keys(target_table: pd.DataFrame, extra_table: pd.DataFrame) -> np.ndarray:
    """Keys of the rows a DCN trained on: A's train rows and every train row of the extras."""
    a = row_keys(split_rows(target_table, "train"), target_table)
    b = row_keys(split_rows(extra_table, "train"), extra_table) if len(extra_table) else np.zeros(0, np.uint64)
    return np.union1d(a, b)


def record_training_rows(run_id: str, keys: np.ndarray) -> dict[str, str]:
    """Store the keys beside the model's training run; the version tags that point at them."""
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
        path = Path(tmp) / TRAINING_ROWS
        np.save(path, np.asarray(keys, dtype=np.uint64))
        mlflow.log_artifact(str(path))
    return {
        "training_rows.uri": f"runs:/{run_id}/{TRAINING_ROWS}",
        "training_rows.digest": keys_digest(keys),
        "training_rows.count": str(len(keys)),
    }


def champion_training_rows(champion) -> np.ndarray | None:
    """The champion's recorded training-row keys (None: registered before they were recorded)."""
    uri = champion.tags.get("training_rows.uri")
    if not uri:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return np.load(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp), allow_pickle=False)


def unrecorded_champion(model_name: str) -> str | None:
    """Why the current champion cannot be gated (no record of its training rows), or None."""
    champion = current_champion(mlflow.MlflowClient(), model_name)
    if champion is None or champion.tags.get("training_rows.uri"):
        return None
    return (
        f"promotion: champion version {champion.version} of {model_name} has no record of its training rows "
        "(registered before they were recorded), so the gate cannot check that it never trained on the rows it would "
        "be scored on; rerun with --force-promote to replace it with this run's model, or --set register_model=false"
    )


def overlap_problem(champion, own_keys: np.ndarray | None, eval_keys: np.ndarray, split: str) -> str | None:
    """Why the champion cannot be compared on ``eval_keys`` (it trained on some of them), or None."""
    if own_keys is None:
        return f"champion version {champion.version} has no record of its training rows: not comparable on this run's rows"
    shared = np.intersect1d(own_keys, eval_keys)
    if not len(shared):
        return None
    return (
        f"champion version {champion.version} trained on {len(shared)} of the {len(eval_keys)} {split} rows it would be "
        f"scored on (its training rows {keys_digest(own_keys)}, this run's {split} rows {keys_digest(eval_keys)}): "
        "not comparable"
    )

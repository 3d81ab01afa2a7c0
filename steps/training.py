"""Training steps: M_A (classifier), M_B (multi-task on B's subset), the straight-combination
baseline, and the DCN with the DCJT joint schedule. One helper runs and tracks all four."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Annotated, NamedTuple

import mlflow
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict

from dcjt.config import BudgetConfig, MethodConfig, NetworkConfig, TrainConfig
from dcjt.data.labels import EMOTIONS, SOFT_COLUMNS, split_rows
from dcjt.method import m_b_rows, training_rows
from dcjt.train.budget import reference_steps, row_recipe
from dcjt.train.checkpoint import read_latest
from dcjt.train.distributed import train_distributed, train_job
from dcjt.train.loop import uncut_folder
from dcjt.train.warmup import seal, warmup_key, warmup_recipe
from dcjt.utils.mlflow_io import child_run, log_frame, log_tables, table_name
from steps.common import dcjt_step
from steps.handoff import CacheRef, folder_or_scratch


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, pd.DataFrame):
            cols = [c for c in ("dataset", "image", "split", "label", "valence", "arousal", *SOFT_COLUMNS) if c in p]
            h.update(pd.util.hash_pandas_object(p[cols], index=False).values.tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class TrainingSetup(BaseModel):
    """What a training step trains with: the network, the recipe, where checkpoints go (empty:
    this pod's scratch folder), whether the test split is scored after every epoch (the papers'
    curve, never used to select) and the row's name (``role``: the MLflow child run, the
    checkpoint folder)."""

    model_config = ConfigDict(extra="forbid")

    role: str
    network: NetworkConfig
    train_cfg: TrainConfig
    checkpoint_root: str = ""
    test_curve: bool = False


class RowSetup(TrainingSetup):
    """A reported row (DCJT or a baseline): its data (``method``) and the budget every row shares."""

    method: MethodConfig
    budget: BudgetConfig


EPOCH_KEYS = {"images_seen": "epoch.images_seen", "steps": "epoch.steps"}  # per-epoch names in MLflow


class Fitted(NamedTuple):
    model: torch.nn.Module
    metrics: dict
    history: pd.DataFrame
    checkpoint: bytes  # the last checkpoint file (a warm-up hands it on)


def _fit(setup: TrainingSetup, rows: dict[str, pd.DataFrame | None], caches: list[str], parent_run_id: str, warm_start=None):
    """Train (one process or DDP) inside an MLflow child run; checkpoints in a folder per training.
    ``rows``: ``train``, ``val``, ``extra`` (B's rows of the joint schedule) and ``curve``;
    ``warm_start``: (a warm-up's checkpoint, this training's key), ``dcjt.train.warmup``."""
    role, network, train_cfg = setup.role, setup.network, setup.train_cfg
    train_rows, val_rows, extra_rows = rows["train"], rows.get("val"), rows.get("extra")
    recipe = (network.model_dump(), train_cfg.identity())  # a run cut short shares its recipe's folder
    ckpt = (
        folder_or_scratch(setup.checkpoint_root, "checkpoints")
        / f"{role}-{_digest(*recipe, train_rows, extra_rows if extra_rows is not None else 0)}"
    )
    job = dict(
        network=network,
        train_cfg=train_cfg,
        cache_paths=caches,
        rows=rows,
        checkpoint_dir=ckpt,
        desc=role,
    )
    if warm_start is not None and train_cfg.devices == 1:
        job["warm_start"] = warm_start
    with child_run(parent_run_id, role) as run:
        params = {f"train.{k}": v for k, v in train_cfg.to_dict().items()} | {
            f"network.{k}": v for k, v in network.model_dump().items()
        }
        mlflow.log_params(params)
        mlflow.log_params(
            {
                "rows.train": len(train_rows),
                "rows.extra": 0 if extra_rows is None else len(extra_rows),
                "rows.val": 0 if val_rows is None else len(val_rows),
                "checkpoint_dir": str(ckpt),
            }
        )
        tables = [(table_name(train_rows, "train"), train_rows, "train")]
        if extra_rows is not None:
            tables.append((table_name(extra_rows, "train (extra)"), extra_rows, "train"))
        if val_rows is not None and len(val_rows):
            tables.append((table_name(val_rows, "validation"), val_rows, "validation"))
        log_tables(tables, EMOTIONS)

        logged = set()

        def log(epoch: int, row: dict) -> None:
            # the epoch's own images_seen / steps get their own keys: the run's totals (logged
            # below under the plain names, as comparison.csv has them) must not share a series
            values = {EPOCH_KEYS.get(k, k): float(v) for k, v in row.items() if k != "epoch"}
            mlflow.log_metrics(values, step=epoch)
            logged.add(epoch)

        if train_cfg.devices > 1:  # DDP processes cannot reach this run: its history is logged below
            result = train_distributed(train_cfg.devices, **job)
        else:
            result = train_job(**job, on_epoch_end=log)
        # the epochs not logged as they ended: those it went on from (a warm-up, a rung, an interruption; DDP: all)
        earlier = [row for row in result.history.to_dict("records") if int(row["epoch"]) not in logged]
        for row in earlier:
            log(int(row["epoch"]), row)
        if train_cfg.devices == 1:  # of its history, the epochs trained before this run (DDP ranks do not say)
            mlflow.log_metric("resumed_epochs", len(earlier))
        mlflow.log_metrics({k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))})
        mlflow.set_tag("stop_reason", result.metrics.get("stop_reason", ""))
        log_frame(result.history, f"{role}_history.csv")
        if len(result.checks):
            log_frame(result.checks, f"{role}_checks.csv")
        data = b""  # a run cut short that trained without its folder (a later checkpoint there) has none of its own
        if uncut_folder(ckpt, train_cfg) is not None:
            record, data = read_latest(ckpt)  # consistent even while a run beside this one writes the folder
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / record["file"]).write_bytes(data)
                mlflow.log_artifact(str(Path(tmp) / record["file"]), artifact_path="checkpoint")
        metrics = dict(result.metrics, role=role, mlflow_run_id=run.info.run_id)
    return Fitted(result.model, metrics, result.history, data)


def _curve(table: pd.DataFrame, enabled: bool) -> pd.DataFrame | None:
    return split_rows(table, "test") if enabled else None


OUTPUTS = tuple[Annotated[torch.nn.Module, "model"], Annotated[dict, "metrics"], Annotated[pd.DataFrame, "history"]]


@dcjt_step()
def train_classifier(target_table: pd.DataFrame, target_cache: CacheRef, setup: TrainingSetup, parent_run_id: str) -> OUTPUTS:
    """A classifier on A's discrete labels: stage 1's M_A (step ``train_m_a``) or a fine-tuning run
    (``role`` finetune, step ``train_finetune``)."""
    rows = {
        "train": split_rows(target_table, "train"),
        "val": split_rows(target_table, "val"),
        "curve": _curve(target_table, setup.test_curve),
    }
    cfg = setup.model_copy(update={"train_cfg": setup.train_cfg.model_copy(update={"lam": 0.0})})
    model, metrics, history, _ = _fit(cfg, rows, [target_cache.path], parent_run_id)
    return model, metrics, history  # a tuple literal: ZenML reads three outputs from it


@dcjt_step()
def train_m_b(
    extra_marked: pd.DataFrame,
    extra_cache: CacheRef,
    pseudo_from: str,
    val_fraction: float,
    setup: TrainingSetup,
    parent_run_id: str,
) -> OUTPUTS:
    """Stage 2: multi-task M_B on B's selected subset (``pseudo_from="subset"``) or on all of B."""
    rows = m_b_rows(extra_marked, pseudo_from, val_fraction, setup.train_cfg.seed)
    model, metrics, history, _ = _fit(
        setup, {"train": split_rows(rows, "train"), "val": split_rows(rows, "val")}, [extra_cache.path], parent_run_id
    )
    return model, metrics, history  # a tuple literal: ZenML reads three outputs from it


@dcjt_step()
def train_row(
    target_pseudo: pd.DataFrame,
    extra_prepared: pd.DataFrame,
    extra_marked: pd.DataFrame,
    target_cache: CacheRef,
    extra_cache: CacheRef,
    setup: RowSetup,
    parent_run_id: str,
    warmup: bytes | None = None,
) -> OUTPUTS:
    """Stage 4, and every row reported beside it: the DCN's recipe and budget on the row's data
    (``setup.method``): CE + lambda x MSE, warm-up on A then joint passes over B (or A and B pooled).
    ``warmup``: the seed's shared warm-up (``train_warmup``), gone on from where the row's recipe
    agrees with it through the warm-up."""
    a_rows, b_rows = training_rows(target_pseudo, extra_prepared, setup.method)
    recipe = _recipe(setup, target_pseudo, extra_marked, a_rows, b_rows)
    rows = {
        "train": a_rows,
        "val": split_rows(target_pseudo, "val"),
        "extra": b_rows,
        "curve": _curve(target_pseudo, setup.test_curve),
    }
    caches = [target_cache.path, extra_cache.path]
    warm = None if warmup is None else (warmup, warmup_key(recipe, *_identity(setup, rows)))
    model, metrics, history, _ = _fit(setup.model_copy(update={"train_cfg": recipe}), rows, caches, parent_run_id, warm)
    return model, metrics, history  # a tuple literal: ZenML reads three outputs from it


def _recipe(setup: RowSetup, target_pseudo, extra_marked, a_rows: pd.DataFrame, b_rows: pd.DataFrame | None) -> TrainConfig:
    """The row's recipe under the run's budget (``row_recipe``) for its A and B rows; a step budget's
    reference is the DCJT row's steps (A and all of B at the configured epochs)."""
    full_b = split_rows(extra_marked, "train")["label"].to_numpy()
    reference = reference_steps(setup.train_cfg, len(split_rows(target_pseudo, "train")), full_b)
    b_labels = None if b_rows is None else b_rows["label"].to_numpy()
    return row_recipe(setup.train_cfg, setup.budget, setup.method, len(a_rows), b_labels, reference)


def _identity(setup: RowSetup, rows: dict) -> tuple:
    """Besides the recipe, what a warm-up's key holds: the network, A's training and validation
    rows, and whether the test curve is scored."""
    return setup.network.model_dump(), _digest(rows["train"]), _digest(rows["val"]), rows["curve"] is not None


@dcjt_step()
def train_warmup(
    target_pseudo: pd.DataFrame, extra_marked: pd.DataFrame, target_cache: CacheRef, setup: RowSetup, parent_run_id: str
) -> Annotated[bytes, "warmup"]:
    """The DCN's warm-up on A (``setup.method``: DCJT as published), trained once per seed; the rows
    whose recipe agrees through it go on from its last checkpoint (``dcjt.train.warmup``). Its
    inputs are stages 1-2's, so every run of a selection at this seed finds it in ZenML's cache."""
    a_rows, _ = training_rows(target_pseudo, extra_marked, setup.method.model_copy(update={"extra_use": "none"}))
    recipe = _recipe(setup, target_pseudo, extra_marked, a_rows, split_rows(extra_marked, "train"))  # as DCJT's row
    warm = warmup_recipe(recipe)
    if warm is None:
        raise ValueError(f"train_warmup: the recipe has no warm-up to share (dcn.warmup_epochs {recipe.warmup_epochs})")
    rows = {"train": a_rows, "val": split_rows(target_pseudo, "val"), "curve": _curve(target_pseudo, setup.test_curve)}
    fitted = _fit(setup.model_copy(update={"train_cfg": warm}), rows, [target_cache.path], parent_run_id)
    return seal(fitted.checkpoint, warmup_key(recipe, *_identity(setup, rows)))

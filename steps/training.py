"""Training steps: M_A (classifier), M_B (multi-task on B's subset), the straight-combination
baseline, and the DCN with the DCJT joint schedule. One helper does the work for all four."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Tuple

import mlflow
import pandas as pd
import torch
from zenml import step

from dcjt.distributed import run_distributed, train_job
from dcjt.labels import SUBSET_COLUMN, stratified_val_split
from dcjt.method import straight_combination
from dcjt.training import TrainConfig
from steps.common import child_run, core_cache_policy, log_frame



def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, pd.DataFrame):
            cols = [c for c in ("dataset", "image", "split", "label", "valence", "arousal") if c in p]
            h.update(pd.util.hash_pandas_object(p[cols], index=False).values.tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _fit(role: str, *, train_rows: pd.DataFrame, val_rows: pd.DataFrame | None, test_rows: pd.DataFrame | None,
         extra_rows: pd.DataFrame | None, caches: list[str], network: dict, train_cfg: dict,
         image_size: int, checkpoint_root: str, parent_run_id: str):  # fmt: skip
    cfg = TrainConfig(**train_cfg)
    ckpt = Path(checkpoint_root) / f"{role}-{_digest(network, train_cfg, image_size, train_rows, extra_rows if extra_rows is not None else 0)}"
    job = dict(network=network, train_cfg=train_cfg, image_size=image_size, cache_paths=caches, train_rows=train_rows,
               val_rows=val_rows, test_rows=test_rows, extra_rows=extra_rows, checkpoint_dir=ckpt, desc=role)  # fmt: skip
    with child_run(parent_run_id, role) as run:
        mlflow.log_params({f"train.{k}": v for k, v in train_cfg.items()} | {f"network.{k}": v for k, v in network.items()})
        mlflow.log_params({"rows.train": len(train_rows), "rows.extra": 0 if extra_rows is None else len(extra_rows),
                           "rows.val": 0 if val_rows is None else len(val_rows), "checkpoint_dir": str(ckpt)})  # fmt: skip
        log = lambda epoch, row: mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"}, step=epoch)  # noqa: E731
        if cfg.devices > 1:  # DDP processes cannot reach this run: log the history afterwards
            result = run_distributed(train_job, cfg.devices, **job)
            for row in result.history.to_dict("records"):
                log(int(row["epoch"]), row)
        else:
            result = train_job(**job, on_epoch_end=log)
        mlflow.log_metrics({k: float(v) for k, v in result.metrics.items()})
        log_frame(result.history, f"{role}_history.csv")
        mlflow.log_artifact(str(ckpt / "last.pt"), artifact_path="checkpoint")
        metrics = dict(result.metrics, role=role, mlflow_run_id=run.info.run_id)
    return result.model, metrics, result.history


def _split(table: pd.DataFrame, split: str) -> pd.DataFrame:
    return table[table["split"] == split].reset_index(drop=True)


@step(cache_policy=core_cache_policy())
def train_m_a(target_table: pd.DataFrame, network: dict, train_cfg: dict, image_size: int, target_cache: str,
              checkpoint_root: str, parent_run_id: str) -> Tuple[Annotated[torch.nn.Module, "model"], Annotated[dict, "metrics"], Annotated[pd.DataFrame, "history"]]:  # fmt: skip
    """Stage 1: classifier M_A on A's discrete labels (also the target-only baseline)."""
    model, metrics, history = _fit("M_A", train_rows=_split(target_table, "train"), val_rows=_split(target_table, "val"),
                test_rows=_split(target_table, "test"), extra_rows=None, caches=[target_cache], network=network,
                train_cfg=dict(train_cfg, lam=0.0), image_size=image_size,
                checkpoint_root=checkpoint_root, parent_run_id=parent_run_id)  # fmt: skip
    return model, metrics, history


@step(cache_policy=core_cache_policy())
def train_m_b(extra_marked: pd.DataFrame, pseudo_from: str, val_fraction: float, network: dict, train_cfg: dict,
              image_size: int, extra_cache: str, checkpoint_root: str, parent_run_id: str) -> Tuple[Annotated[torch.nn.Module, "model"], Annotated[dict, "metrics"], Annotated[pd.DataFrame, "history"]]:  # fmt: skip
    """Stage 2: multi-task M_B on B's selected subset (``pseudo_from="subset"``) or on all of B."""
    rows = _split(extra_marked, "train")
    if pseudo_from == "subset":
        rows = rows[rows[SUBSET_COLUMN]].reset_index(drop=True)
    elif pseudo_from != "all":
        raise ValueError(f"pseudo_from must be 'subset' or 'all', got {pseudo_from!r}")
    rows = stratified_val_split(rows.assign(split="train"), val_fraction, TrainConfig(**train_cfg).seed)
    model, metrics, history = _fit("M_B", train_rows=_split(rows, "train"), val_rows=_split(rows, "val"), test_rows=_split(extra_marked, "test"),
                extra_rows=None, caches=[extra_cache], network=network, train_cfg=train_cfg, image_size=image_size,
                checkpoint_root=checkpoint_root, parent_run_id=parent_run_id)  # fmt: skip
    return model, metrics, history


@step(cache_policy=core_cache_policy())
def train_straight(target_table: pd.DataFrame, extra_table: pd.DataFrame, network: dict, train_cfg: dict,
                   image_size: int, target_cache: str, extra_cache: str, checkpoint_root: str, parent_run_id: str) -> Tuple[Annotated[torch.nn.Module, "model"], Annotated[dict, "metrics"], Annotated[pd.DataFrame, "history"]]:  # fmt: skip
    """Baseline: A and B merged as they are, discrete labels only."""
    merged = straight_combination(_split(target_table, "train"), _split(extra_table, "train"))
    model, metrics, history = _fit("straight", train_rows=merged, val_rows=_split(target_table, "val"), test_rows=_split(target_table, "test"),
                extra_rows=None, caches=[target_cache, extra_cache], network=network, train_cfg=dict(train_cfg, lam=0.0),
                image_size=image_size, checkpoint_root=checkpoint_root, parent_run_id=parent_run_id)  # fmt: skip
    return model, metrics, history


@step(cache_policy=core_cache_policy())
def train_dcn(target_pseudo: pd.DataFrame, extra_prepared: pd.DataFrame, role: str, network: dict, train_cfg: dict,
              image_size: int, target_cache: str, extra_cache: str, checkpoint_root: str, parent_run_id: str) -> Tuple[Annotated[torch.nn.Module, "model"], Annotated[dict, "metrics"], Annotated[pd.DataFrame, "history"]]:  # fmt: skip
    """Stage 4: the Discrete-Continuous Net, CE + lambda x MSE, warm-up on A then joint passes over B."""
    model, metrics, history = _fit(role, train_rows=_split(target_pseudo, "train"), val_rows=_split(target_pseudo, "val"),
                test_rows=_split(target_pseudo, "test"), extra_rows=_split(extra_prepared, "train"),
                caches=[target_cache, extra_cache], network=network, train_cfg=train_cfg, image_size=image_size,
                checkpoint_root=checkpoint_root, parent_run_id=parent_run_id)  # fmt: skip
    return model, metrics, history



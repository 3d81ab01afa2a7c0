"""Evaluation of a trained model on A's validation and test splits: every reported row is scored here."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import torch
from zenml import step

from dcjt.config import GatesConfig
from dcjt.data.cache import load_cache
from dcjt.method.health import gate_report, row_gates
from dcjt.train.predict import split_report
from steps.common import core_cache_policy
from steps.handoff import CacheRef

SPENT = ("images_seen", "epochs_run", "steps", "selected_epoch", "selected_step", "b_passes", "stop_reason")


@step(cache_policy=core_cache_policy())
def evaluate_model(
    model: torch.nn.Module,
    target_table: pd.DataFrame,
    target_cache: CacheRef,
    variant: str,
    training: dict,
    row: str = "dcjt",
    joint: bool = False,
    min_b_passes: int = 0,
    gates: GatesConfig | None = None,
) -> Annotated[dict, "evaluation"]:
    """Validation and test metrics of the validation-selected model (V/A against the hidden truth
    where known), the training budget it had (images seen, epochs, steps, passes over B), and the
    row's health: it must beat always predicting A's majority class, and a joint row must have made
    ``min_b_passes`` passes over B (``gates.mode``: stop the run, or warn)."""
    images = load_cache(target_cache.path)
    spent = {k: training[k] for k in SPENT if k in training}
    report = {"variant": variant, "row": row, **spent}
    report.update(split_report(model, target_table, images, split="val"))
    report.update(split_report(model, target_table, images, split="test"))
    gates = gates or GatesConfig()
    report["gates"] = gate_report(f"row {row}", row_gates(row, report, joint, min_b_passes), gates.mode)
    report["degenerate"] = report["val_accuracy"] <= report["val_majority_rate"]
    return report

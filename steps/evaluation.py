"""Evaluation of a trained model on A's validation and test splits: every reported row is scored here."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import torch

from dcjt.config import GatesConfig
from dcjt.data.cache import load_cache
from dcjt.method.health import gate_report, row_gates
from dcjt.train.evaluation import RowEvaluation, row_evaluation
from steps.common import dcjt_step
from steps.handoff import CacheRef


@dcjt_step()
def evaluate_model(
    model: torch.nn.Module,
    target_table: pd.DataFrame,
    target_cache: CacheRef,
    training: dict,
    row: str,
    variant: str,
    joint: bool = False,
    min_b_passes: int = 0,
    gates: GatesConfig | None = None,
) -> Annotated[RowEvaluation, "evaluation"]:
    """Validation and test scores of the validation-selected model (V/A against the hidden truth
    where known), the training budget it had (images seen, epochs, steps, passes over B), and the
    row's health: it must beat always predicting A's majority class, and a joint row must have made
    ``min_b_passes`` passes over B (``gates.mode``: stop the run, or warn)."""
    evaluation = row_evaluation(model, target_table, load_cache(target_cache.path), row=row, variant=variant, training=training)
    mode = (gates or GatesConfig()).mode
    evaluation.gates = gate_report(f"row {row}", row_gates(row, evaluation, joint, min_b_passes), mode)
    return evaluation

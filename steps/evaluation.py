"""Evaluation of a trained model on A's validation and test splits: every reported row is scored here."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from dcjt.config import GatesConfig
from dcjt.data.cache import load_cache
from dcjt.method.health import gate_report, row_gates
from dcjt.train.scoring import RowEvaluation, row_evaluation
from steps.common import dcjt_step
from steps.handoff import CacheRef


class RowScoring(BaseModel):
    """What the evaluation step checks a row against: its id and display name, whether it trains
    on B in joint passes (then it must make ``min_b_passes`` of them) and the gates' mode."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    row: str
    variant: str
    joint: bool = False
    min_b_passes: int = 0
    gates: GatesConfig = Field(default_factory=GatesConfig)


@dcjt_step()
def evaluate_model(
    model: torch.nn.Module, target_table: pd.DataFrame, target_cache: CacheRef, training: dict, scoring: RowScoring
) -> Annotated[RowEvaluation, "evaluation"]:
    """Validation and test scores of the validation-selected model (V/A against the hidden truth
    where known), the training budget it had (images seen, epochs, steps, passes over B), and the
    row's health: it must beat always predicting A's majority class, and a joint row must have made
    ``min_b_passes`` passes over B (``gates.mode``: stop the run, or warn)."""
    row = scoring.row
    images = load_cache(target_cache.path)
    evaluation = row_evaluation(model, target_table, images, row=row, variant=scoring.variant, training=training)
    checks = row_gates(row, evaluation, scoring.joint, scoring.min_b_passes)
    evaluation.gates = gate_report(f"row {row}", checks, scoring.gates.mode)
    return evaluation

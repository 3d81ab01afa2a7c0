"""Evaluation of a trained model on A's test split: every reported row is scored here."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import torch
from zenml import step

from dcjt.data.cache import load_cache
from dcjt.train.predict import split_report
from steps.common import core_cache_policy
from steps.handoff import CacheRef


@step(cache_policy=core_cache_policy())
def evaluate_model(
    model: torch.nn.Module, target_table: pd.DataFrame, target_cache: CacheRef, variant: str, training: dict
) -> Annotated[dict, "evaluation"]:
    """Test-split metrics of the validation-selected model (and V/A against the hidden truth if
    known), with the training budget it had (images seen, epochs, steps)."""
    spent = {
        k: training[k] for k in ("images_seen", "epochs_run", "steps", "selected_epoch", "val_accuracy_selected") if k in training
    }
    return {"variant": variant, **spent, **split_report(model, target_table, load_cache(target_cache.path))}

"""Evaluation of a trained model on A's test split."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import torch
from zenml import step

from dcjt.cache import load_cache
from dcjt.metrics import classification_report, confusion_matrix, va_report
from dcjt.training import predict, samples_from
from steps.common import core_cache_policy


@step(cache_policy=core_cache_policy())
def evaluate_model(model: torch.nn.Module, target_table: pd.DataFrame, target_cache: str, variant: str) -> Annotated[dict, "evaluation"]:
    """Test-split metrics of the validation-selected model (and V/A against the hidden truth if known)."""
    test = target_table[target_table["split"] == "test"].reset_index(drop=True)
    probs, va = predict(model, samples_from(test, load_cache(target_cache)))
    pred = probs.argmax(1)
    out = {"variant": variant, "n_test": int(len(test)), **{f"test_{k}": v for k, v in classification_report(test["label"], pred).items()}}
    out["confusion"] = confusion_matrix(test["label"], pred).tolist()
    if "truth_valence" in test:
        truth = test[["truth_valence", "truth_arousal"]].to_numpy(dtype=float)
        out.update({f"test_truth_{k}": v for k, v in va_report(truth, va).items()})
    return out

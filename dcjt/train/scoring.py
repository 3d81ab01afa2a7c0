"""How a trained model scores on a split of A, and a reported row's evaluation: typed records
(pydantic) the evaluation step returns and every reader (tracking, registry, studies) shares.

Each split's record keeps the per-image correctness, so two models scored on the same rows can be
compared pairwise (the promotion gate, a study's intervals).
"""

from __future__ import annotations

import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from dcjt.data.labels import split_rows
from dcjt.method.calibration import folds
from dcjt.method.reports import GateReport
from dcjt.train.batches import samples_from
from dcjt.train.metrics import classification_report, confusion_matrix, va_report
from dcjt.train.predict import predict


class SplitScores(BaseModel):
    """A model on one split of A: classification metrics, the confusion matrix (truth x
    prediction), each image's correctness and, on the synthetic world, V/A against the truth."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    split: str
    n: int
    accuracy: float
    mean_class_accuracy: float
    macro_f1: float
    kappa: float
    majority_rate: float
    confusion: list[list[int]]
    correct: list[int]
    fold: list[int] = Field(default_factory=list)  # per image: its fold (dcjt.method.calibration.folds)
    va_truth: dict[str, float] = Field(default_factory=dict)


class RowEvaluation(BaseModel):
    """A reported row (DCJT or a baseline): its scores on A's validation and test splits, the
    budget it spent, and its health gates."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    row: str
    variant: str
    val: SplitScores
    test: SplitScores
    images_seen: int | None = None
    epochs_run: int | None = None
    steps: int | None = None
    selected_epoch: int | None = None
    selected_step: int | None = None
    b_passes: int | None = None
    b_passes_selected: int | None = None  # passes over B up to the selected check's epoch
    warmup_steps: int | None = None  # of ``steps``, those it went on from: the seed's shared warm-up trained them
    stop_reason: str = ""
    training_run_id: str = ""  # the MLflow run that trained it (holds its checkpoint, then its logged model)
    gates: GateReport | None = None

    @property
    def selected_before_b(self) -> bool:
        """A joint row whose selected check precedes its first pass over B: the model it reports
        trained on A alone (never registered as promoted DCJT: ``dcjt.registry.gate``)."""
        return bool(self.b_passes) and self.b_passes_selected == 0

    @property
    def degenerate(self) -> bool:
        """No better on validation than always predicting A's majority class."""
        return self.val.accuracy <= self.val.majority_rate


def score_split(model: torch.nn.Module, table: pd.DataFrame, *caches, split: str = "test") -> SplitScores:
    """``model`` on one split of ``table`` (images from ``caches``)."""
    rows = split_rows(table, split)
    probs, va = predict(model, samples_from(rows, *caches))
    pred, truth = probs.argmax(1), rows["label"].to_numpy()
    report = classification_report(truth, pred)
    va_truth = {}
    if "truth_valence" in rows:
        va_truth = va_report(rows[["truth_valence", "truth_arousal"]].to_numpy(dtype=float), va)
    return SplitScores(
        split=split,
        n=len(rows),
        **report,
        confusion=confusion_matrix(truth, pred).tolist(),
        correct=(pred == truth).astype(int).tolist(),
        fold=folds(rows).tolist(),
        va_truth=va_truth,
    )


SPENT = ("images_seen", "epochs_run", "steps", "selected_epoch", "selected_step", "b_passes", "b_passes_selected", "warmup_steps")


def row_evaluation(
    model: torch.nn.Module, table: pd.DataFrame, images, *, row: str, variant: str, training: dict
) -> RowEvaluation:
    """A row's scores on A's validation and test splits with the budget its training spent."""
    spent = {k: int(training[k]) for k in SPENT if training.get(k) is not None}
    return RowEvaluation(
        row=row,
        variant=variant,
        val=score_split(model, table, images, split="val"),
        test=score_split(model, table, images, split="test"),
        stop_reason=str(training.get("stop_reason", "")),
        training_run_id=str(training.get("mlflow_run_id", "")),
        **spent,
    )

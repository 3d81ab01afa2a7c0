"""Stage 1 (paper 3.2): keep the rows of B whose label M_A agrees with."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dcjt.data.labels import EMOTIONS, M_A_COLUMN, M_A_PROB_COLUMNS, NUM_CLASSES, SUBSET_COLUMN, stratified_sample
from dcjt.method.gaussian import label_confusion, matrix_record
from dcjt.method.reports import SubsetReport
from dcjt.method.truth import subset_truth


def with_m_a_probabilities(table: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """``table`` with M_A's class probabilities (``m_a_p_<emotion>``) and its argmax
    (``m_a_label``): the evidence stage 3b's posterior and latent relabeling weigh."""
    probs = np.asarray(probs, dtype=float)
    if probs.shape != (len(table), NUM_CLASSES):
        raise ValueError(f"M_A probabilities: shape {probs.shape}, expected ({len(table)}, {NUM_CLASSES})")
    out = table.copy()
    for k, col in enumerate(M_A_PROB_COLUMNS):
        out[col] = probs[:, k]
    out[M_A_COLUMN] = probs.argmax(axis=1).astype("int64")
    return out


def select_subset(extra: pd.DataFrame, predictions) -> tuple[pd.DataFrame, SubsetReport]:
    """Mark rows of B where M_A's prediction equals B's human label (``in_subset``). Given class
    probabilities, they are kept beside the argmax (``with_m_a_probabilities``)."""
    pred = np.asarray(predictions.to_numpy() if isinstance(predictions, pd.Series) else predictions)
    probs = pred if pred.ndim == 2 else None
    if probs is not None:
        pred = pred.argmax(axis=1)
    if len(pred) != len(extra):
        raise ValueError(f"select_subset: {len(pred)} predictions for {len(extra)} rows of the extra table")
    if len(pred) and (pred.min() < 0 or pred.max() >= NUM_CLASSES):
        raise ValueError(f"select_subset: predictions must be class ids 0..{NUM_CLASSES - 1}")
    labels = extra["label"].to_numpy()
    keep = pred.astype(int) == labels
    out = extra.copy() if probs is None else with_m_a_probabilities(extra, probs)
    out[SUBSET_COLUMN] = keep
    out[M_A_COLUMN] = pred.astype("int64")
    agreement = label_confusion(labels, pred)
    totals = np.bincount(labels, minlength=NUM_CLASSES)
    kept = np.bincount(labels[keep], minlength=NUM_CLASSES)
    report = SubsetReport(
        n_rows=len(out),
        n_kept=int(keep.sum()),
        kept_fraction=float(keep.mean()) if len(keep) else 0.0,
        kept_per_class=dict(zip(EMOTIONS, kept.tolist())),
        total_per_class=dict(zip(EMOTIONS, totals.tolist())),
        agreement=matrix_record(agreement, "extra label", "M_A prediction"),
        truth=subset_truth(out),
    )
    return out, report


def take_fraction(extra: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A seeded, stratified ``fraction`` of B's train rows (other splits kept): paper Table 8."""
    if not 0 < fraction <= 1:
        raise ValueError(f"extra_fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return extra
    train = extra["split"].to_numpy() == "train"
    keep = stratified_sample(extra[train], fraction, seed)
    return pd.concat([keep, extra[~train]]).sort_index().reset_index(drop=True)

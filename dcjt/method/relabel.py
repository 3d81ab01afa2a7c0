"""Stage 3b (paper 3.4, Eqs. 2-3): relabel B - subB by the class centres of A.

- ``nearest`` (the paper): the new label is the class whose centre of A's pseudo valence/arousal
  is nearest.
- ``gated`` (beyond the paper): valence/arousal alone cannot separate fear, anger, surprise and
  disgust, so a label changes only where the nearest centre is clearly nearer than the original
  class's centre (``distance_new < gate_ratio x distance_old``) and, if ``gate_m_a``, M_A's
  prediction for the image agrees with the new label.
- ``oracle`` (synthetic world only): every row of B gets its hidden true emotion (the ceiling).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dcjt.data.labels import EMOTIONS, M_A_COLUMN, NUM_CLASSES
from dcjt.method.gaussian import has_va, label_confusion, matrix_record, remaining_rows, va_array
from dcjt.method.reports import RelabelReport
from dcjt.method.truth import relabel_truth

RELABEL_MODES = ("none", "nearest", "gated", "oracle")


def class_centres(target: pd.DataFrame) -> np.ndarray:
    """Mean pseudo valence/arousal of A per class (Eq. 2); NaN rows for absent classes."""
    has = has_va(target)
    x, labels = va_array(target)[has], target["label"].to_numpy()[has]
    sums = np.zeros((NUM_CLASSES, 2))
    np.add.at(sums, labels, x)
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def _squared_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N, 7) squared distances to each class centre; inf for absent classes."""
    d = np.full((len(x), NUM_CLASSES), np.inf)
    for k in np.flatnonzero(~np.isnan(centres).any(axis=1)):  # one pass per class: no (N, 7, 2) temporary
        d[:, k] = (x[:, 0] - centres[k, 0]) ** 2 + (x[:, 1] - centres[k, 1]) ** 2
    return d


def _with_labels(
    extra: pd.DataFrame, new: np.ndarray, rows: np.ndarray, centres: np.ndarray, mode: str, **settings
) -> tuple[pd.DataFrame, RelabelReport]:
    old = extra["label"].to_numpy()
    changed = new != old
    out = extra.copy()
    out["label"] = new.astype("int64")
    out["label_origin"] = out["label_origin"].mask(changed, "relabeled")
    present = ~np.isnan(centres).any(axis=1)
    report = RelabelReport(
        mode=mode,
        enabled=True,
        n_considered=int(rows.sum()),
        n_changed=int(changed.sum()),
        changed_fraction=float(changed[rows].mean()) if rows.any() else 0.0,
        centres={EMOTIONS[i]: centres[i].tolist() for i in np.flatnonzero(present)},
        absent_classes=[EMOTIONS[i] for i in np.flatnonzero(~present)],
        transition=matrix_record(label_confusion(old[rows], new[rows]), "old label", "new label"),
        truth=relabel_truth(extra, out),
        **settings,
    )
    return out, report


def _centres_or_fail(target: pd.DataFrame, who: str) -> np.ndarray:
    centres = class_centres(target)
    if np.isnan(centres).all():
        raise ValueError(f"{who}: the target table has no valence/arousal to compute class centres")
    return centres


def relabel_nearest(extra: pd.DataFrame, target: pd.DataFrame) -> tuple[pd.DataFrame, RelabelReport]:
    """New discrete label of B - subB = nearest class centre of A in valence/arousal (Eq. 3)."""
    centres = _centres_or_fail(target, "relabel_nearest")
    rows = remaining_rows(extra) & has_va(extra)
    new = extra["label"].to_numpy().copy()
    if rows.any():
        new[rows] = _squared_distances(va_array(extra)[rows], centres).argmin(axis=1)
    return _with_labels(extra, new, rows, centres, "nearest")


def relabel_gated(
    extra: pd.DataFrame, target: pd.DataFrame, ratio: float = 0.8, require_m_a: bool = True
) -> tuple[pd.DataFrame, RelabelReport]:
    """Relabel only where V/A can decide: the nearest centre is nearer than ``ratio`` x the original
    class's centre (distances, not squared) and, with ``require_m_a``, M_A predicted the new label."""
    if not 0 < ratio <= 1:
        raise ValueError(f"gate ratio must be in (0, 1], got {ratio}")
    if require_m_a and M_A_COLUMN not in extra:
        raise ValueError(f"relabel_gated: column {M_A_COLUMN!r} (M_A's prediction, set by stage 1) is missing")
    centres = _centres_or_fail(target, "relabel_gated")
    rows = remaining_rows(extra) & has_va(extra)
    old = extra["label"].to_numpy()
    new = old.copy()
    vetoed = {"by_distance": 0, "by_m_a": 0}
    if rows.any():
        d = _squared_distances(va_array(extra)[rows], centres)
        best = d.argmin(axis=1)
        d_old = d[np.arange(len(d)), old[rows]]
        clear = np.sqrt(d[np.arange(len(d)), best]) < ratio * np.sqrt(d_old)
        agree = extra[M_A_COLUMN].to_numpy()[rows] == best if require_m_a else np.ones(len(best), bool)
        wants = best != old[rows]
        vetoed = {"by_distance": int((wants & ~clear).sum()), "by_m_a": int((wants & clear & ~agree).sum())}
        new[rows] = np.where(clear & agree, best, old[rows])
    return _with_labels(extra, new, rows, centres, "gated", gate_ratio=ratio, gate_m_a=require_m_a, vetoed=vetoed)


def relabel_oracle(extra: pd.DataFrame) -> tuple[pd.DataFrame, RelabelReport]:
    """Every row of B gets its hidden true emotion (synthetic world only): the ceiling of relabeling."""
    if "truth_label" not in extra:
        raise ValueError("the oracle needs the synthetic world's truth_label column")
    rows = np.ones(len(extra), dtype=bool)
    return _with_labels(extra, extra["truth_label"].to_numpy(dtype="int64"), rows, np.full((NUM_CLASSES, 2), np.nan), "oracle")


def relabel(
    extra: pd.DataFrame, target: pd.DataFrame, mode: str, *, gate_ratio: float = 0.8, gate_m_a: bool = True
) -> tuple[pd.DataFrame, RelabelReport]:
    """Stage 3b in the configured ``mode`` (``none`` passes B through)."""
    if mode == "none":
        return extra, RelabelReport(mode="none")
    if mode == "nearest":
        return relabel_nearest(extra, target)
    if mode == "gated":
        return relabel_gated(extra, target, gate_ratio, gate_m_a)
    if mode == "oracle":
        return relabel_oracle(extra)
    raise ValueError(f"unknown relabel mode {mode!r}; choose from {RELABEL_MODES}")

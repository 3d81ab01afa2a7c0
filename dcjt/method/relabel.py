"""Stage 3b (paper 3.4, Eqs. 2-3): relabel B - subB by the nearest class centre of A."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dcjt.data.labels import EMOTIONS, NUM_CLASSES
from dcjt.method.gaussian import has_va, label_confusion, matrix_record, remaining_rows, va_array
from dcjt.method.truth import relabel_truth


def class_centres(target: pd.DataFrame) -> np.ndarray:
    """Mean pseudo valence/arousal of A per class (Eq. 2); NaN rows for absent classes."""
    has = has_va(target)
    x, labels = va_array(target)[has], target["label"].to_numpy()[has]
    sums = np.zeros((NUM_CLASSES, 2))
    np.add.at(sums, labels, x)
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def relabel_nearest(extra: pd.DataFrame, target: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """New discrete label of B - subB = nearest class centre of A in valence/arousal (Eq. 3)."""
    centres = class_centres(target)
    present = ~np.isnan(centres).any(axis=1)
    if not present.any():
        raise ValueError("relabel_nearest: the target table has no valence/arousal to compute class centres")
    out = extra.copy()
    rows = remaining_rows(extra) & has_va(extra)
    old = extra["label"].to_numpy()
    new = old.copy()
    if rows.any():
        x = va_array(extra)[rows]
        best, best_d = np.full(len(x), -1), np.full(len(x), np.inf)
        for k in np.flatnonzero(present):  # one pass per class: no (N, 7, 2) temporary
            d = (x[:, 0] - centres[k, 0]) ** 2 + (x[:, 1] - centres[k, 1]) ** 2
            closer = d < best_d
            best[closer], best_d[closer] = k, d[closer]
        new[rows] = best
    changed = new != old
    out["label"] = new.astype("int64")
    out["label_origin"] = out["label_origin"].mask(changed, "relabeled")
    stats = {
        "n_considered": int(rows.sum()),
        "n_changed": int(changed.sum()),
        "changed_fraction": float(changed[rows].mean()) if rows.any() else 0.0,
        "centres": {EMOTIONS[i]: centres[i].tolist() for i in np.flatnonzero(present)},
        "absent_classes": [EMOTIONS[i] for i in np.flatnonzero(~present)],
        "transition": matrix_record(label_confusion(old[rows], new[rows]), "old label", "new label"),
        "truth": relabel_truth(extra, out),
    }
    return out, stats

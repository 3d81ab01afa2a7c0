"""Diagnostics against the synthetic world's hidden truth (``truth_*`` columns).

Only the synthetic world fills those columns; on real data every function returns ``{}``.
Training never reads them: they say how well each stage recovers what it aims at.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dcjt.data.labels import SUBSET_COLUMN


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if len(mask) else float("nan")


def subset_truth(extra_marked: pd.DataFrame) -> dict:
    """Stage 1: share of the selected subset whose label is the true emotion (purity)."""
    if "truth_label" not in extra_marked:
        return {}
    sub = extra_marked[extra_marked[SUBSET_COLUMN]]
    rest = extra_marked[~extra_marked[SUBSET_COLUMN]]
    return {
        "subset_purity": _share(sub["label"].to_numpy() == sub["truth_label"].to_numpy()),
        "remaining_purity": _share(rest["label"].to_numpy() == rest["truth_label"].to_numpy()),
    }


def pseudo_truth(target_pseudo: pd.DataFrame) -> dict:
    """Stage 2: RMSE of A's pseudo valence/arousal against the true ones."""
    if "truth_valence" not in target_pseudo:
        return {}
    err = target_pseudo[["valence", "arousal"]].to_numpy(float) - target_pseudo[["truth_valence", "truth_arousal"]].to_numpy(
        float
    )
    return {"pseudo_rmse": float(np.sqrt(np.mean(err**2)))}


def relabel_truth(extra_before: pd.DataFrame, extra_after: pd.DataFrame) -> dict:
    """Stage 3b: how many of the labels relabeling changed are right, and B - subB before/after."""
    if "truth_label" not in extra_after:
        return {}
    rest = ~extra_after[SUBSET_COLUMN].to_numpy(dtype=bool) if SUBSET_COLUMN in extra_after else np.ones(len(extra_after), bool)
    truth = extra_after["truth_label"].to_numpy()
    before, after = extra_before["label"].to_numpy(), extra_after["label"].to_numpy()
    changed = after != before
    return {
        "remaining_correct_before": _share(before[rest] == truth[rest]),
        "remaining_correct_after": _share(after[rest] == truth[rest]),
        "relabel_precision": _share(after[changed] == truth[changed]),
        "n_relabeled": int(changed.sum()),
    }

"""Diagnostics against the synthetic world's hidden truth (``truth_*`` columns).

Only the synthetic world fills those columns; on real data every function returns ``{}``.
Training never reads them: they say how well each stage recovers what it aims at.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dcjt.data.labels import SUBSET_COLUMN
from dcjt.method.gaussian import remaining_rows


def remaining_part(extra: pd.DataFrame) -> pd.DataFrame:
    """The rows of B outside the selected subset (all rows when no subset is marked)."""
    return extra[remaining_rows(extra)]


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


def relabel_truth(extra_before: pd.DataFrame, extra_after: pd.DataFrame, resolved: np.ndarray | None = None) -> dict:
    """Stage 3b: how many of the labels relabeling changed are right (precision), the share of
    B - subB it changed, and B - subB's correct labels before/after; with ``resolved`` (the rows
    the rule decided, changed or confirmed: every considered row for ``nearest``, the gate's rows
    for ``gated``, the sure ones for ``posterior`` and ``latent``) their share of B - subB
    (coverage), their accuracy, and the accuracy of the confirmed ones (decided, unchanged)."""
    if "truth_label" not in extra_after:
        return {}
    rest = remaining_rows(extra_after)
    truth = extra_after["truth_label"].to_numpy()
    before, after = extra_before["label"].to_numpy(), extra_after["label"].to_numpy()
    changed = after != before
    out = {
        "remaining_correct_before": _share(before[rest] == truth[rest]),
        "remaining_correct_after": _share(after[rest] == truth[rest]),
        "relabel_precision": _share(after[changed] == truth[changed]),
        "relabel_changed_share": _share(changed[rest]),
        "n_relabeled": int(changed.sum()),
    }
    if resolved is not None:
        out["relabel_coverage"] = _share(resolved[rest])
        out["resolved_correct"] = _share(after[resolved] == truth[resolved])
        confirmed = resolved & ~changed
        out["relabel_confirmed_precision"] = _share(after[confirmed] == truth[confirmed])
    return out


def criteria_report(target_train: pd.DataFrame, extra_before: pd.DataFrame, extra_after: pd.DataFrame) -> tuple[dict, dict]:
    """Stage 3's effect on B - subB: the labeling-criteria audits against A's pseudo V/A (before and
    after mapping + relabeling) and their summary numbers; on the synthetic world also the mean
    per-emotion 2-Wasserstein distance to A's true criteria (A's true V/A per emotion)."""
    from dcjt.data.labels import EMOTIONS
    from dcjt.method.gaussian import criteria_audit

    before, after = remaining_part(extra_before), remaining_part(extra_after)
    audits = {"before": criteria_audit(target_train, before), "after": criteria_audit(target_train, after)}
    numbers = {}
    for when, audit in audits.items():
        numbers[f"w2_global_{when}"] = float(audit.loc["global", "w2"])
        numbers[f"w2_mean_emotion_{when}"] = float(np.nanmean(audit.loc[list(EMOTIONS), "w2"]))
    if "truth_valence" in target_train:
        truth = target_train.assign(valence=target_train["truth_valence"], arousal=target_train["truth_arousal"])
        for when, b in (("before", before), ("after", after)):
            numbers[f"w2_truth_mean_emotion_{when}"] = float(np.nanmean(criteria_audit(truth, b).loc[list(EMOTIONS), "w2"]))
    return audits, numbers

"""Label steps (stages 1-3): subset selection, pseudo valence/arousal, mapping, relabeling.

Each step that changes labels re-validates its table with the GX suite and returns the summary.
"""

from __future__ import annotations

from typing import Annotated, Tuple

import pandas as pd
import torch
from zenml import step

from dcjt.cache import load_cache
from dcjt.labelmaths import map_continuous, relabel_nearest, select_subset, va_stats
from dcjt.method import relabel_truth_report, train_rows, with_pseudo_va
from dcjt.training import predict, samples_from
from dcjt.validation import assert_valid
from steps.common import core_cache_policy


def _gx(table: pd.DataFrame, name: str) -> dict:
    report = assert_valid(table, name=name, require_all_classes=False)
    return {"table": name, "success": report.success, "statistics": report.result_json.get("statistics", {})}


@step(cache_policy=core_cache_policy())
def select_extra_subset(m_a: torch.nn.Module, extra_table: pd.DataFrame, extra_cache: str) -> Tuple[
    Annotated[pd.DataFrame, "extra_marked"], Annotated[dict, "subset_stats"]
]:
    """Stage 1: M_A predicts every image of B; keep the rows where it agrees with B's label."""
    probs, _ = predict(m_a, samples_from(extra_table, load_cache(extra_cache)))
    marked, stats = select_subset(extra_table, probs)
    stats["gx"] = _gx(marked, "extra after subset selection")
    if "truth_label" in marked:
        sub = marked[marked["in_subset"]]
        stats["subset_purity_vs_truth"] = float((sub["label"] == sub["truth_label"]).mean()) if len(sub) else float("nan")
    return marked, stats


@step(cache_policy=core_cache_policy())
def pseudo_label_target(m_b: torch.nn.Module, target_table: pd.DataFrame, target_cache: str) -> Tuple[
    Annotated[pd.DataFrame, "target_pseudo"], Annotated[dict, "pseudo_stats"]
]:
    """Stage 2: M_B predicts valence/arousal for every image of A (its pseudo continuous labels)."""
    _, va = predict(m_b, samples_from(target_table, load_cache(target_cache)))
    pseudo = with_pseudo_va(target_table, va)
    stats = {"va_stats": va_stats(train_rows(pseudo)).reset_index().to_dict("records"), "gx": _gx(pseudo, "target with pseudo V/A")}
    if "truth_valence" in pseudo:
        import numpy as np

        err = pseudo[["valence", "arousal"]].to_numpy() - pseudo[["truth_valence", "truth_arousal"]].to_numpy()
        stats["pseudo_rmse_vs_truth"] = float(np.sqrt((err**2).mean()))
    return pseudo, stats


@step(cache_policy=core_cache_policy())
def map_extra_continuous(extra_marked: pd.DataFrame, target_pseudo: pd.DataFrame, mapping: str, b_stats_from: str) -> Tuple[
    Annotated[pd.DataFrame, "extra_mapped"], Annotated[dict, "mapping_stats"]
]:
    """Stage 3a: map B - subB's valence/arousal onto A's per-emotion Gaussians."""
    mapped, stats = map_continuous(train_rows(extra_marked), train_rows(target_pseudo), mapping, b_stats_from=b_stats_from)
    stats["gx"] = _gx(mapped, "extra after mapping")
    return mapped, stats


@step(cache_policy=core_cache_policy())
def relabel_extra(extra_mapped: pd.DataFrame, target_pseudo: pd.DataFrame, enabled: bool) -> Tuple[
    Annotated[pd.DataFrame, "extra_prepared"], Annotated[dict, "relabel_stats"]
]:
    """Stage 3b: relabel B - subB by the nearest class centre of A's pseudo labels (or pass through)."""
    if not enabled:
        return extra_mapped, {"enabled": False}
    relabeled, stats = relabel_nearest(extra_mapped, train_rows(target_pseudo))
    stats["enabled"] = True
    stats["gx"] = _gx(relabeled, "extra after relabeling")
    stats["truth"] = relabel_truth_report(extra_mapped, relabeled)
    return relabeled, stats

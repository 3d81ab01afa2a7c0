"""Stage 2 (paper 3.2): train M_B on B's subset (or all of B) and give A pseudo valence/arousal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dcjt.data.labels import SUBSET_COLUMN, split_rows, stratified_val_split
from dcjt.method.extras import va_datasets
from dcjt.method.gaussian import va_stats
from dcjt.method.reports import PseudoReport
from dcjt.method.truth import pseudo_truth
from dcjt.modes import PSEUDO_SOURCES


def m_b_rows(extra_marked: pd.DataFrame, pseudo_from: str, val_fraction: float, seed: int) -> pd.DataFrame:
    """B's training rows for M_B (the selected subset, or all of B; of the extras that publish
    valence/arousal), with a carved ``val`` split."""
    if pseudo_from not in PSEUDO_SOURCES:
        raise ValueError(f"pseudo_from must be one of {PSEUDO_SOURCES}, got {pseudo_from!r}")
    rows = split_rows(extra_marked, "train")
    rows = rows[rows["dataset"].astype(str).isin(va_datasets(extra_marked)).to_numpy()]  # extras with published V/A
    if pseudo_from == "subset":
        rows = rows[rows[SUBSET_COLUMN]].reset_index(drop=True)
    return stratified_val_split(rows.assign(split="train"), val_fraction, seed)


def with_pseudo_va(table: pd.DataFrame, va: np.ndarray) -> pd.DataFrame:
    """A's table carrying M_B's predictions as pseudo valence/arousal (clipped to [-1, 1])."""
    out = table.copy()
    va = np.clip(np.asarray(va, dtype=float), -1, 1)
    out["valence"], out["arousal"] = va[:, 0], va[:, 1]
    out["va_origin"] = "pseudo"
    return out


def pseudo_label(target: pd.DataFrame, va: np.ndarray) -> tuple[pd.DataFrame, PseudoReport]:
    """Stage 2's result: A with M_B's valence/arousal, their per-emotion Gaussians and, on the
    synthetic world, their error against the truth."""
    pseudo = with_pseudo_va(target, va)
    stats = va_stats(split_rows(pseudo, "train")).reset_index().to_dict("records")
    return pseudo, PseudoReport(va_stats=stats, truth=pseudo_truth(pseudo))

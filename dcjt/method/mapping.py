"""Stage 3a (paper 3.3, Algorithms 1-2): map B - subB's valence/arousal onto A's Gaussians."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from dcjt.data.labels import EMOTIONS
from dcjt.method.gaussian import (
    MIN_COUNT,
    cholesky_map,
    has_va,
    ot_map,
    regularised,
    remaining_rows,
    stats_row,
    va_array,
    va_stats,
)
from dcjt.method.reports import MappingReport
from dcjt.modes import B_STATS_SOURCES, MAPPING_MODES

log = logging.getLogger(__name__)


def map_continuous(
    extra: pd.DataFrame,
    target: pd.DataFrame,
    mode: str = "emotion",
    *,
    b_stats_from: str = "all",
) -> tuple[pd.DataFrame, MappingReport]:
    """Map valence/arousal of B - subB onto A's (pseudo) per-emotion Gaussians.

    ``mode``: none | global (Algorithm 1) | emotion (Algorithm 2) | emotion_ot (Bures-Wasserstein
    map per emotion). ``b_stats_from``: statistics of B from ``all`` of B (the paper's reading)
    or from the ``remaining`` rows only. Mapped values are clipped to [-1, 1] and counted.
    """
    if mode not in MAPPING_MODES:
        raise ValueError(f"unknown mapping mode {mode!r}; choose from {MAPPING_MODES}")
    if b_stats_from not in B_STATS_SOURCES:
        raise ValueError(f"b_stats_from must be one of {B_STATS_SOURCES}, got {b_stats_from!r}")
    out = extra.copy()
    rows = remaining_rows(extra) & has_va(extra)
    report = MappingReport(mode=mode, b_stats_from=b_stats_from)
    fallbacks = report.fallbacks
    if mode == "none" or not rows.any():
        return out, report

    source = extra[has_va(extra) & (remaining_rows(extra) if b_stats_from == "remaining" else True)]
    a_stats, b_stats = va_stats(target), va_stats(source)
    report.target_stats = a_stats.reset_index().to_dict("records")
    report.extra_stats = b_stats.reset_index().to_dict("records")
    builder = ot_map if mode == "emotion_ot" else cholesky_map

    def transform(key_a: str, key_b: str, what: str):
        mu_a, cov_a, n_a = stats_row(a_stats, key_a)
        mu_b, cov_b, n_b = stats_row(b_stats, key_b)
        if n_a < MIN_COUNT or n_b < MIN_COUNT:
            return None, (n_a, n_b)
        cov_a = regularised(cov_a, f"{what} target", fallbacks)
        cov_b = regularised(cov_b, f"{what} extra", fallbacks)
        return (builder(cov_a, cov_b), mu_a, mu_b), (n_a, n_b)

    glob, counts = transform("global", "global", "global")
    if glob is None:
        fallbacks.append({"what": "global", "action": "identity (too few samples)", "counts": list(counts)})
        log.warning("global map: too few samples (target %d, extra %d); labels left unchanged", *counts)
        return out, report

    x = va_array(extra)
    mapped = x.copy()
    labels = extra["label"].to_numpy()
    keys = list(EMOTIONS) if mode in ("emotion", "emotion_ot") else ["global"]
    for key in keys:
        sel = rows & (labels == EMOTIONS.index(key)) if key != "global" else rows
        if not sel.any():
            continue
        t, counts = (glob, None) if key == "global" else transform(key, key, key)
        if t is None:
            fallbacks.append(
                {
                    "what": key,
                    "action": "global map used",
                    "counts": list(counts),
                    "reason": "class absent from target" if counts[0] == 0 else f"fewer than {MIN_COUNT} samples",
                }
            )
            log.warning("class %s: %s samples (target, extra); global map used", key, counts)
            t = glob
        m, mu_a, mu_b = t
        mapped[sel] = (x[sel] - mu_b) @ m.T + mu_a
        report.transforms[key] = {
            "matrix": m.tolist(),
            "mu_target": mu_a.tolist(),
            "mu_extra": mu_b.tolist(),
            "n": int(sel.sum()),
            "fallback": t is glob and key != "global",
        }
    clipped = rows & ((np.abs(mapped) > 1).any(axis=1))
    mapped = np.clip(mapped, -1.0, 1.0)
    out["valence"] = np.where(rows, mapped[:, 0], x[:, 0])
    out["arousal"] = np.where(rows, mapped[:, 1], x[:, 1])
    out["va_origin"] = out["va_origin"].mask(rows, "mapped")
    report.n_mapped, report.n_clipped = int(rows.sum()), int(clipped.sum())
    return out, report

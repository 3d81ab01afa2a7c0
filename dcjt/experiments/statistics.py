"""Intervals for "row X minus the reference row" that include the seed-to-seed variance.

A study runs every row on several seeds; each seed gives a per-image correctness vector on the
test split. Resampling test images within each seed and averaging the seeds (the old interval)
ignores that another seed gives another model: with a seed spread of 1.5-2.9 points and no true
difference it covered the truth 42-70 % of the time. Here:

- ``seed_differences``: the per-seed accuracy differences (the unit of replication);
- ``t_interval``: mean, Student-t 95 % interval and two-sided p-value over the seeds;
- ``two_level_bootstrap``: resample seeds, then test images within each drawn seed; where every
  seed scores the same test images (a dataset on disk: the test split is the dataset's), one
  image draw is shared by all seeds, so the pairing across seeds is kept;
- ``holm``: Holm's step-down adjustment of a table's p-values (many rows, one reference);
- ``paired_bootstrap``: one pair of models on the same rows (the promotion gate: one run, one split).
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps


def seed_differences(row: list[np.ndarray], reference: list[np.ndarray]) -> np.ndarray:
    """Accuracy of ``row`` minus accuracy of ``reference``, one value per seed (same images per seed)."""
    if len(row) != len(reference):
        raise ValueError(f"{len(row)} seeds of the row but {len(reference)} of the reference")
    out = []
    for a, b in zip(row, reference):
        a, b = np.asarray(a, float), np.asarray(b, float)
        if len(a) != len(b):
            raise ValueError(f"a seed scored {len(a)} images for the row and {len(b)} for the reference")
        out.append(a.mean() - b.mean())
    return np.asarray(out)


def t_interval(diffs: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, low, high, two-sided p) of the per-seed differences, Student-t with n - 1 degrees of
    freedom. One seed: no interval (NaN) and p = NaN; no spread: a point interval, p 0 or 1."""
    d = np.asarray(diffs, float)
    mean = float(d.mean()) if len(d) else float("nan")
    if len(d) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    se = float(d.std(ddof=1) / np.sqrt(len(d)))
    if se == 0:
        return mean, mean, mean, 1.0 if mean == 0 else 0.0
    half = float(sps.t.ppf(0.5 + level / 2, len(d) - 1)) * se
    p = float(2 * sps.t.sf(abs(mean) / se, len(d) - 1))
    return mean, mean - half, mean + half, p


def two_level_bootstrap(
    row: list[np.ndarray],
    reference: list[np.ndarray],
    *,
    shared_images: bool,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean, low, high) of the mean per-seed difference: each resample draws seeds with
    replacement, then test images with replacement within each drawn seed (one draw shared by all
    seeds when ``shared_images``: every seed scored the same images in the same order)."""
    rng = np.random.default_rng(seed)
    diffs = [np.asarray(a, float) - np.asarray(b, float) for a, b in zip(row, reference)]
    if not diffs:
        return float("nan"), float("nan"), float("nan")
    point = float(np.mean([d.mean() for d in diffs]))
    n_seeds = len(diffs)
    picks = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    if shared_images:
        sizes = {len(d) for d in diffs}
        if len(sizes) != 1:
            raise ValueError("shared_images: every seed must score the same number of images")
        matrix = np.stack(diffs)  # (seeds, images)
        idx = rng.integers(0, matrix.shape[1], size=(n_boot, matrix.shape[1]))
        per_seed = np.stack([matrix[:, i].mean(axis=1) for i in idx])  # (n_boot, seeds): one image draw per resample
        boot = np.take_along_axis(per_seed, picks, axis=1).mean(axis=1)
    else:
        # Each drawn seed's images resampled on their own: resample every seed's mean once per slot.
        boot = np.zeros(n_boot)
        for j in range(n_seeds):
            for s in range(n_seeds):
                chosen = picks[:, j] == s
                k = int(chosen.sum())
                if k:
                    d = diffs[s]
                    boot[chosen] += d[rng.integers(0, len(d), size=(k, len(d)))].mean(axis=1)
        boot /= n_seeds
    lo, hi = np.percentile(boot, [50 - 50 * level, 50 + 50 * level])
    return point, float(lo), float(hi)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input order; NaN stays NaN."""
    p = np.asarray(pvalues, float)
    out = np.full(len(p), np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def paired_bootstrap(
    correct_row: list[np.ndarray], correct_ref: list[np.ndarray], n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean over seeds of (row accuracy - reference accuracy) and its 95 % interval.

    Each resample draws test images with replacement within every seed (the same images for both
    rows: paired) and averages the per-seed differences.
    """
    rng = np.random.default_rng(seed)
    diffs = [np.asarray(a, float) - np.asarray(b, float) for a, b in zip(correct_row, correct_ref)]
    point = float(np.mean([d.mean() for d in diffs]))
    boot = np.zeros(n_boot)
    for d in diffs:
        idx = rng.integers(0, len(d), size=(n_boot, len(d)))
        boot += d[idx].mean(axis=1)
    boot /= len(diffs)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return point, float(lo), float(hi)

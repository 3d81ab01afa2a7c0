"""Intervals with seed variance: by hand, and their coverage when the true difference is zero."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from dcjt.experiments.statistics import holm, paired_bootstrap, seed_differences, t_interval, two_level_bootstrap
from dcjt.experiments.study_summary import best_on_validation, markdown, summarise


def test_t_interval_and_holm_by_hand():
    d = np.array([0.01, 0.03, -0.01, 0.02, 0.00])
    mean, lo, hi, p = t_interval(d)
    se = d.std(ddof=1) / np.sqrt(5)
    assert mean == pytest.approx(0.01) and hi - mean == pytest.approx(2.776445 * se, rel=1e-5)
    assert p == pytest.approx(sps.ttest_1samp(d, 0).pvalue)
    assert t_interval(np.array([0.02]))[1:] != t_interval(np.array([0.02]))[1:]  # one seed: no interval (NaN)
    assert t_interval(np.zeros(3))[3] == 1.0
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm([0.01, float("nan")])[1])


def test_seed_differences_need_paired_seeds():
    assert seed_differences([np.ones(4), np.zeros(2)], [np.zeros(4), np.zeros(2)]).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="2 seeds of the row but 1"):
        seed_differences([np.ones(2), np.ones(2)], [np.ones(2)])
    with pytest.raises(ValueError, match="scored 3 images for the row and 2"):
        seed_differences([np.ones(3)], [np.ones(2)])


def _null_study(rng, seeds: int, images: int, seed_sd: float, shared: bool):
    """Per-seed correctness of two rows whose true accuracies are equal on average over seeds,
    each seed moving the row's model by a random effect of ``seed_sd``."""
    row, ref = [], []
    base = rng.random(images) if shared else None
    for _ in range(seeds):
        u = base if shared else rng.random(images)
        effect = rng.normal(0, seed_sd)
        same = rng.random(images) < 0.7  # the two models get most images right or wrong together
        v = np.where(same, u, rng.random(images))
        ref.append((u < 0.75).astype(float))
        row.append((v < 0.75 + effect).astype(float))
    return row, ref


@pytest.mark.parametrize("shared", [False, True])
def test_intervals_cover_a_null_difference_with_seed_spread(shared):
    """No true difference, a seed spread of 2.5 points, 5 seeds of 1,000 test images: the t-interval covers 0 about 95 %
    of the time and the two-level bootstrap at least 80 %; the old within-seed bootstrap far less."""
    rng = np.random.default_rng(0)
    hits = {"t": 0, "boot": 0, "old": 0}
    sims = 160
    for k in range(sims):
        row, ref = _null_study(rng, 5, 1000, 0.025, shared)
        _, lo, hi, _ = t_interval(seed_differences(row, ref))
        hits["t"] += lo <= 0 <= hi
        _, lo, hi = two_level_bootstrap(row, ref, shared_images=shared, n_boot=400, seed=k)
        hits["boot"] += lo <= 0 <= hi
        _, lo, hi = paired_bootstrap(row, ref, n_boot=400, seed=k)
        hits["old"] += lo <= 0 <= hi
    cover = {k: v / sims for k, v in hits.items()}
    assert 0.88 <= cover["t"] <= 0.995, cover
    assert cover["boot"] >= 0.78, cover
    assert cover["old"] < 0.75, cover  # what the study printed before: intervals that miss the seed spread


def test_summary_marks_the_best_row_on_validation_and_flags_the_majority_class():
    records = pd.DataFrame(
        [
            {"row": r, "seed": s, "accuracy": acc, "val_accuracy": val, "images_seen": 10, "epochs_run": 2, "degenerate": deg}
            for r, acc, val, deg in (("ref", 0.70, 0.70, False), ("high test", 0.80, 0.60, False), ("flat", 0.39, 0.39, True))
            for s in (0, 1)
        ]
    )
    correct = {
        (r, s): np.r_[np.ones(int(100 * a)), np.zeros(100 - int(100 * a))]
        for r, a in (("ref", 0.7), ("high test", 0.8), ("flat", 0.39))
        for s in (0, 1)
    }
    summary = summarise(records, correct, "ref")
    assert best_on_validation(summary) == "ref"  # not the row with the highest test accuracy
    text = markdown(summary, "ref", "t")
    assert "Best on validation (what this table calls best; the test split never chooses): **ref**" in text
    assert "- flat: 2 of 2 seeds no better than always predicting the majority class" in text
    bounded = markdown(summary, "ref", "t", bounds=("ref",))  # an upper bound from the truth is never best
    assert "**high test** (ref: an upper bound from the hidden truth, not a candidate)" in bounded
    assert {"p_holm", "boot_lo", "diff_std"} <= set(summary.columns)

"""The synthetic world: determinism, annotator criteria, hidden truth, real on-disk layouts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dcjt.synthetic.annotators import ExtraCriteria, annotate_extra
from dcjt.synthetic.render import ANGER, DISGUST, FEAR, HAPPINESS, NEUTRAL, SADNESS, SURPRISE
from dcjt.synthetic.world import WorldSpec, generate_world, sample_latents


def test_world_is_deterministic_and_keeps_truth_apart():
    spec = WorldSpec(n_target=120, n_extra=150)
    a, b = generate_world(spec, 32, 4), generate_world(spec, 32, 4)
    for role in ("target", "extra"):
        pd.testing.assert_frame_equal(a[role][0], b[role][0])
        assert np.array_equal(a[role][1], b[role][1])
        assert a[role][1].shape == (len(a[role][0]), 32, 32, 3)
    other = generate_world(spec, 32, 5)
    assert not np.array_equal(a["target"][1], other["target"][1])
    target, extra = a["target"][0], a["extra"][0]
    assert {"truth_label", "truth_valence", "truth_arousal", "truth_intensity"} <= set(target.columns)
    assert target["valence"].isna().all() and (target["va_origin"] == "none").all()  # target: discrete only
    assert extra["valence"].notna().all() and (extra["va_origin"] == "human").all()


def test_extra_annotators_follow_their_criteria():
    rng = np.random.default_rng(0)
    lat = sample_latents(20_000, rng)
    c = ExtraCriteria(noise=0.0, va_noise=0.0)
    labels, va = annotate_extra(lat, c, rng)
    e, i, ar = lat["emotion"].to_numpy(), lat["intensity"].to_numpy(), lat["arousal"].to_numpy()
    weak = ((e == HAPPINESS) | (e == SADNESS)) & (i < c.weak_to_neutral)
    assert (labels[weak] == NEUTRAL).all()
    assert (labels[(e == FEAR) & (ar > c.fear_to_surprise_arousal)] == SURPRISE).all()
    anger = e == ANGER
    assert abs((labels[anger] == DISGUST).mean() - c.anger_to_disgust) < 0.02
    strong_happy = (e == HAPPINESS) & (i >= c.weak_to_neutral)
    assert (labels[strong_happy] == HAPPINESS).all()
    # valence/arousal distortion: happiness valence shifted up by the per-emotion shift
    delta = va[strong_happy, 0] - np.clip(lat["valence"].to_numpy()[strong_happy] * c.va_scale[0] + c.va_shift[0] + 0.1, -1, 1)
    assert np.abs(delta).max() < 1e-9
    assert (np.abs(va) <= 1).all()

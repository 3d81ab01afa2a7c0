"""The world suite: every preset generates and its B agrees with the truth as its description
says; presets load by name, under --set keys; bad names and combinations are refused; the regret
of a row and of choosing on validation on a hand-made table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcjt.config_files import ConfigError, load_config
from dcjt.experiments import regret
from dcjt.synthetic.annotators import ExtraCriteria, annotate_extra
from dcjt.synthetic.suite import AFFECTNET_PRIORS, WORLDS, parse_worlds, preset_values
from dcjt.synthetic.world import WorldSpec, sample_latents, world_tables


def test_the_suite_has_at_least_eight_described_worlds():
    assert len(WORLDS) >= 8 and "demo" in WORLDS
    assert all(len(w.description) > 30 for w in WORLDS.values())


@pytest.mark.parametrize("name", list(WORLDS))
def test_each_preset_generates_and_b_agrees_with_the_truth_as_stated(name):
    world = WORLDS[name]
    low, high = world.b_agreement
    for seed in (0, 1):
        tables = world_tables(WorldSpec(**preset_values(name)), seed)
        target, extra = tables["target"][0], tables["extra"][0]
        assert len(target) == world.values["n_target"] and len(extra) == world.values["n_extra"]
        agree = float((extra["label"] == extra["truth_label"]).mean())
        assert low <= agree <= high, (name, seed, agree)
        assert set(extra["label"]) == set(range(7))  # every class present in B


def test_close_world_agrees_with_the_truth_and_the_demo_world_does_not():
    close = world_tables(WorldSpec(**preset_values("close")), 0)["extra"][0]
    demo = world_tables(WorldSpec(**preset_values("demo")), 0)["extra"][0]
    assert (close["label"] == close["truth_label"]).mean() > 0.93
    assert (demo["label"] == demo["truth_label"]).mean() < 0.5


def test_affectnet_priors_shift_b_and_leave_a_alone():
    shifted = world_tables(WorldSpec(**preset_values("affectnet-priors")), 0)
    plain = world_tables(WorldSpec(**preset_values("demo")), 0)
    share = shifted["extra"][0]["truth_label"].value_counts(normalize=True)
    want = np.asarray(AFFECTNET_PRIORS) / sum(AFFECTNET_PRIORS)
    assert abs(share[3] - want[3]) < 0.03 and abs(share[2] - want[2]) < 0.01  # happiness ~47 %, disgust ~1 %
    pd.testing.assert_series_equal(shifted["target"][0]["truth_label"], plain["target"][0]["truth_label"])


def test_random_swaps_ignore_the_latents():
    """A swap drawn at random hits weak and strong faces alike (V/A cannot reveal it)."""
    rng = np.random.default_rng(0)
    lat = sample_latents(20000, rng)
    crit = ExtraCriteria(
        weak_to_neutral=0, fear_to_surprise_arousal=2, anger_to_disgust=0, noise=0, random_swaps={"sadness": ("neutral", 0.5)}
    )
    label, _ = annotate_extra(lat, crit, rng)
    sad = lat["emotion"].to_numpy() == 4
    swapped = label[sad] == 6
    weak = lat["intensity"].to_numpy()[sad] < np.median(lat["intensity"].to_numpy()[sad])
    assert abs(swapped.mean() - 0.5) < 0.03 and abs(swapped[weak].mean() - swapped[~weak].mean()) < 0.05


@settings(max_examples=20, deadline=None)
@given(st.floats(0.0, 1.0))
def test_instance_noise_falls_with_intensity(rate):
    rng = np.random.default_rng(1)
    lat = sample_latents(6000, rng)
    crit = ExtraCriteria(weak_to_neutral=0, fear_to_surprise_arousal=2, anger_to_disgust=0, noise=0, instance_noise=rate)
    label, _ = annotate_extra(lat, crit, rng)
    wrong = label != lat["emotion"].to_numpy()
    i = lat["intensity"].to_numpy()
    assert abs(wrong.mean() - rate * (1 - i).mean()) < 0.03
    if rate > 0.3:
        assert wrong[i < 0.3].mean() > wrong[i > 0.7].mean()


def test_a_bad_swap_is_refused_by_key():
    with pytest.raises(ValueError, match="random_swaps: unknown class 'joy'"):
        ExtraCriteria(random_swaps={"joy": ("neutral", 0.2)})
    with pytest.raises(ValueError, match="extra_priors"):
        WorldSpec(extra_priors=(1, 2, 3))


def test_a_preset_is_the_whole_world_under_set_keys():
    cfg = load_config("demo", ["data.world.preset=small-a"])
    assert (cfg.data.world.n_target, cfg.data.world.n_extra) == (800, 8000)  # not the demo file's 2500 / 5000
    cfg = load_config("demo", ["data.world.preset=close", "data.world.n_target=420", "data.world.extra.noise=0.2"])
    assert cfg.data.world.n_target == 420 and cfg.data.world.extra.noise == 0.2
    assert cfg.data.world.extra.weak_to_neutral == 0.0  # the preset's criteria under the --set key
    assert load_config("demo", [], {"data.world.preset": "mixed"}).data.world.extra_priors == AFFECTNET_PRIORS
    assert load_config("demo", ["data.world.preset=close"]).data.world.extra.noise == 0.04  # the preset was not changed


def test_the_demo_world_keeps_its_image_names():
    """The default world's names (and so its validation split) never change; other worlds' differ."""
    plain = world_tables(WorldSpec(n_target=50, n_extra=60), 0)["target"][0]["image"]
    demo = world_tables(WorldSpec(n_target=50, n_extra=60, preset="demo"), 0)["target"][0]["image"]
    other = world_tables(WorldSpec(n_target=50, n_extra=60, preset="close"), 0)["target"][0]["image"]
    assert plain[0] == demo[0] == "synth-target-0/000000.png" and other[0] != plain[0]


def test_an_unknown_world_and_a_world_on_files_are_refused():
    with pytest.raises(ConfigError, match=r"unknown world 'nowhere'; worlds: demo, close"):
        load_config("demo", ["data.world.preset=nowhere"])
    with pytest.raises(ConfigError, match=r"data.world.preset \(demo\).*data.kind is 'files'"):
        load_config("rafdb", ["data.world.preset=demo"])
    with pytest.raises(ValueError, match="unknown world"):
        parse_worlds("demo,atlantis")
    assert parse_worlds("suite") == list(WORLDS) and parse_worlds("close, demo") == ["close", "demo"]


def _records(acc: dict, val: dict) -> pd.DataFrame:
    lines = []
    for (world, seed, row), a in acc.items():
        lines.append({"world": world, "seed": seed, "row": row, "accuracy": a, "val_accuracy": val[(world, seed, row)]})
    return pd.DataFrame(lines)


def test_regret_on_a_hand_made_table():
    # world w1: A best on test at both seeds; world w2: B best at seed 0, A at seed 1.
    acc = {
        ("w1", 0, "A"): 0.80, ("w1", 0, "B"): 0.70,
        ("w1", 1, "A"): 0.82, ("w1", 1, "B"): 0.76,
        ("w2", 0, "A"): 0.60, ("w2", 0, "B"): 0.70,
        ("w2", 1, "A"): 0.66, ("w2", 1, "B"): 0.64,
    }  # fmt: skip
    # validation prefers B in w1 at seed 0 (a wrong pick), A elsewhere in w1; B in w2 on average
    val = {
        ("w1", 0, "A"): 0.70, ("w1", 0, "B"): 0.75,
        ("w1", 1, "A"): 0.80, ("w1", 1, "B"): 0.70,
        ("w2", 0, "A"): 0.60, ("w2", 0, "B"): 0.72,
        ("w2", 1, "A"): 0.65, ("w2", 1, "B"): 0.64,
    }  # fmt: skip
    long = regret.regret_table(_records(acc, val))
    summary = regret.regret_summary(long).set_index("row")
    assert summary.loc["A", "regret_mean"] == pytest.approx((0 + 0 + 10 + 0) / 4)
    assert summary.loc["B", "regret_mean"] == pytest.approx((10 + 6 + 0 + 2) / 4)
    assert summary.loc["B", "regret_worst"] == pytest.approx(10) and summary.loc["A", "best_share"] == 0.75
    # per seed: w1 s0 -> B (10), w1 s1 -> A (0), w2 s0 -> B (0), w2 s1 -> A (0)
    assert summary.loc[regret.SELECT_SEED, "regret_mean"] == pytest.approx(10 / 4)
    # pooled: w1 mean val A 75 vs B 72.5 -> A; w2 A 62.5 vs B 68 -> B: regrets 0, 0, 0, 2
    assert regret.select_regret(long) == pytest.approx(2 / 4)
    assert regret.chosen_rows(long).loc["w2", "seeds pooled"] == "B"
    by_world = regret.regret_by_world(long)
    assert by_world.loc["A", "w2"] == pytest.approx(5) and by_world.loc["B", "w1"] == pytest.approx(8)
    lo, hi = regret.two_level_regret(long[long["row"] == "B"])
    assert 0 <= lo <= summary.loc["B", "regret_mean"] <= hi <= 10


def test_regret_refuses_an_incomplete_table():
    acc = {("w1", 0, "A"): 0.8, ("w1", 0, "B"): 0.7, ("w1", 1, "A"): 0.8}
    with pytest.raises(ValueError, match="every row on every"):
        regret.regret_table(_records(acc, acc))


def test_rows_with_a_third_population_are_refused_on_the_suite():
    from dcjt.experiments.tables import StudyError, check_world_rows, study_rows

    rows, _ = study_rows("extras")
    with pytest.raises(StudyError, match=r"need a third population \(C\).*demo, close"):
        check_world_rows("extras", rows, ["demo", "close"])
    check_world_rows("select", study_rows("select")[0], ["demo"])  # no third population: accepted

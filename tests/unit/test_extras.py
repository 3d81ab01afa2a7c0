"""Several extra datasets: configuration, the third synthetic population, stages 1-3 dataset by
dataset, the joint pass over several extras, and their bad inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dcjt.config import TrainConfig
from dcjt.config_files import ConfigError, load_config
from dcjt.data.labels import NUM_CLASSES, SUBSET_COLUMN, make_table
from dcjt.method import m_b_rows, map_continuous, relabel
from dcjt.method.extras import (
    ExtraDatasetError,
    check_class_overlap,
    contributions,
    map_by_dataset,
    relabel_by_dataset,
    va_datasets,
)
from dcjt.method.health import GateError, extra_subset_gates, gate_report
from dcjt.modes import RelabelRule
from dcjt.synthetic.world import WorldSpec, world_tables
from dcjt.train.batches import Samples, epoch_plan


# --- configuration ---------------------------------------------------------------------------------
def test_extras_list_the_shorthand_and_their_bad_inputs(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    for d in (a, b, c):
        d.mkdir()
    one = load_config("rafdb", [f"data.target.root={a}", f"data.extra.root={b}"])
    assert [(s.dataset, s.root) for s in one.data.extras] == [("affectnet", str(b))]  # shorthand into the list
    two = load_config(
        "rafdb", [f"data.target.root={a}", f"data.extras.0.root={b}", "data.extras.1.dataset=caers", f"data.extras.1.root={c}"]
    )
    assert [s.label for s in two.data.extras] == ["affectnet", "caers"]
    with pytest.raises(ConfigError, match=r"data.extras.1.root is the same folder as data.extras.0.root"):
        load_config(
            "rafdb",
            [f"data.target.root={a}", f"data.extras.0.root={b}", "data.extras.1.dataset=caers", f"data.extras.1.root={b}"],
        )
    with pytest.raises(ConfigError, match=r"data.extras.0.root is the same folder as data.target.root"):
        load_config("rafdb", [f"data.target.root={a}", f"data.extra.root={a}"])
    with pytest.raises(ConfigError, match=r"both named 'affectnet': set data.extras.1.name"):
        load_config(
            "rafdb",
            [f"data.target.root={a}", f"data.extras.0.root={b}", "data.extras.1.dataset=affectnet", f"data.extras.1.root={c}"],
        )
    named = load_config(
        "rafdb",
        [
            f"data.target.root={a}",
            f"data.extras.0.root={b}",
            "data.extras.1.dataset=affectnet",
            f"data.extras.1.root={c}",
            "data.extras.1.name=affectnet-2",
        ],
    )
    assert [s.label for s in named.data.extras] == ["affectnet", "affectnet-2"]
    with pytest.raises(ConfigError, match=r"none has valence/arousal labels"):
        load_config("rafdb", [f"data.target.root={a}", "data.extras.0.dataset=caers", f"data.extras.0.root={b}"])
    with pytest.raises(ConfigError, match=r"data.extra is shorthand for a single extra dataset"):
        load_config(
            "rafdb", [f"data.target.root={a}", "data.extras.1.dataset=caers", f"data.extras.1.root={c}", f"data.extra.root={b}"]
        )
    with pytest.raises(ConfigError, match=r"'5' is not an index of a list of 1"):
        load_config("rafdb", ["data.extras.5.root=/x"])


# --- the third population ----------------------------------------------------------------------------
def test_third_population_is_discrete_only_and_leaves_the_others_unchanged():
    base = world_tables(WorldSpec(n_target=200, n_extra=300), seed=0)
    more = world_tables(WorldSpec(n_target=200, n_extra=300, n_extra2=250), seed=0)
    assert list(base) == ["target", "extra"] and list(more) == ["target", "extra", "extra2"]
    for role in base:
        pd.testing.assert_frame_equal(base[role][0], more[role][0])  # adding C changes neither A nor B
    c = more["extra2"][0]
    assert len(c) == 250 and c["valence"].isna().all() and (c["va_origin"] == "none").all()
    assert (c["dataset"] == "synth_extra2").all() and c["image"].str.startswith("synth-extra2-0/").all()
    agree = (c["label"] == c["truth_label"]).mean()
    assert 0.5 < agree < 0.95  # its own criteria: most labels right, many not
    other = world_tables(WorldSpec(n_target=200, n_extra=300, salt=1), seed=0)["target"][0]
    assert other["image"].str.startswith("synth-target-0-s1/").all() and not other["label"].equals(base["target"][0]["label"])


# --- stages 1-3, dataset by dataset ----------------------------------------------------------------------
def _extras(rng, n=120):
    lab = rng.integers(0, NUM_CLASSES, n)
    va = rng.uniform(-0.8, 0.8, (n, 2))
    b = make_table("b", "train", [f"b{i}" for i in range(n)], lab, va[:, 0], va[:, 1])
    b2 = make_table("b2", "train", [f"c{i}" for i in range(n)], lab, va[:, 0] * 0.5 + 0.3, va[:, 1] * 0.5)  # other scale
    d = make_table("d", "train", [f"d{i}" for i in range(n)], lab)  # discrete only
    table = pd.concat([b, b2, d], ignore_index=True)
    table[SUBSET_COLUMN] = rng.random(len(table)) < 0.4
    return table


def _target(rng, n=200):
    lab = rng.integers(0, NUM_CLASSES, n)
    centres = np.linspace(-0.7, 0.7, NUM_CLASSES)
    return make_table("a", "train", [f"a{i}" for i in range(n)], lab, centres[lab] + rng.normal(0, 0.05, n), -centres[lab])


def test_each_extra_is_mapped_with_its_own_statistics_and_pseudo_rows_pass():
    rng = np.random.default_rng(0)
    extra, target = _extras(rng), _target(rng)
    assert va_datasets(extra) == ["b", "b2"]
    pseudo = extra.copy()
    d = (pseudo["dataset"] == "d").to_numpy()
    pseudo.loc[d, ["valence", "arousal"]] = rng.uniform(-0.5, 0.5, (d.sum(), 2))
    pseudo.loc[d, "va_origin"] = "pseudo"
    mapped, stats = map_by_dataset(pseudo, target, "emotion")
    for name in ("b", "b2"):
        rows = (pseudo["dataset"] == name).to_numpy()
        alone, own = map_continuous(pseudo[rows], target, "emotion")
        np.testing.assert_allclose(
            mapped.loc[rows, ["valence", "arousal"]].to_numpy(float), alone[["valence", "arousal"]].to_numpy(float)
        )
        assert stats.per_dataset[name].n_mapped == own.n_mapped
    pd.testing.assert_frame_equal(mapped[d], pseudo[d])  # pseudo V/A are on A's scale already: not mapped
    assert stats.n_mapped == sum(s.n_mapped for s in stats.per_dataset.values())
    relabeled, rstats = relabel_by_dataset(mapped, target, RelabelRule("nearest"))
    whole, _ = relabel(mapped, target, RelabelRule("nearest"))
    pd.testing.assert_frame_equal(relabeled, whole)  # a rule per row: the same labels as one pass
    assert set(rstats.per_dataset) == {"b", "b2", "d"} and rstats.per_dataset["d"].n_changed > 0
    contrib = contributions(extra, relabeled).set_index("dataset")
    assert contrib.loc["d", "va"] == "pseudo (M_B)" and contrib.loc["d", "mapped_rows"] == 0
    assert contrib.loc["b", "subset_rows"] == int(extra.loc[extra["dataset"] == "b", SUBSET_COLUMN].sum())
    assert set(m_b_rows(extra, "subset", 0.1, 0)["dataset"]) == {"b", "b2"}  # M_B learns from published V/A only


def test_single_extra_stages_are_unchanged():
    rng = np.random.default_rng(1)
    extra, target = _extras(rng), _target(rng)
    b = extra[extra["dataset"] == "b"].reset_index(drop=True)
    mapped, stats = map_by_dataset(b, target, "emotion")
    alone, own = map_continuous(b, target, "emotion")
    pd.testing.assert_frame_equal(mapped, alone)
    assert stats == own and not stats.per_dataset  # one extra: exactly the single-extra stage's report
    assert not relabel_by_dataset(mapped, target, RelabelRule("nearest"))[1].per_dataset


def test_an_extra_with_no_class_in_common_or_an_empty_subset_stops_the_run():
    rng = np.random.default_rng(2)
    target = _target(rng)
    target = target[target["label"] != 1]  # A has no fear
    only_fear = make_table("fear_only", "train", ["f0", "f1"], [1, 1])
    with pytest.raises(ExtraDatasetError, match=r"extra dataset 'fear_only'.*\['fear'\].*remove it from data.extras"):
        check_class_overlap(target, only_fear)
    report = check_class_overlap(target, _extras(rng))
    assert report["d"]["missing_target_classes"] == []
    from dcjt.config import GatesConfig
    from dcjt.data.labels import EMOTIONS
    from dcjt.method.gaussian import matrix_record
    from dcjt.method.reports import SubsetReport

    stats = SubsetReport(
        n_rows=70,
        n_kept=0,
        kept_fraction=0.0,
        kept_per_class=dict.fromkeys(EMOTIONS, 0),
        total_per_class=dict.fromkeys(EMOTIONS, 10),
        agreement=matrix_record(np.zeros((7, 7), int), "extra label", "M_A prediction"),
    )
    with pytest.raises(GateError, match=r"caers: rows in the subset = 0 \(must be >= 1\)"):
        gate_report("stage 1", extra_subset_gates("caers", stats, GatesConfig()), "stop")


def test_extra_only_trains_on_the_extras_alone_and_refuses_nothing_to_train_on():
    from dcjt.config import MethodConfig
    from dcjt.method import training_rows

    rng = np.random.default_rng(3)
    target, extra = _target(rng), _extras(rng)
    method = load_config("demo", ["baselines=[extra_only]"]).method_for("extra_only")
    rows, none = training_rows(target, extra, method)
    assert none is None and set(rows["dataset"]) == set(extra["dataset"])
    assert len(rows) == int((extra["split"] == "train").sum())
    assert rows["valence"].isna().all()  # discrete labels as published
    assert method.variant_name.endswith("no-target")
    with pytest.raises(ValueError, match="leaves no training rows"):
        MethodConfig(target_use=False, extra_use="none", combine="merged")
    with pytest.raises(ValueError, match="needs method.combine: merged"):
        MethodConfig(target_use=False)


# --- the joint pass over several extras ------------------------------------------------------------------
def test_each_extra_gets_an_equal_share_of_the_pass_when_asked():
    labels = np.r_[np.zeros(900, np.int64), np.arange(100) % NUM_CLASSES]  # a big extra of one class + a small one
    groups = np.r_[np.zeros(900, np.int64), np.ones(100, np.int64)]
    s = Samples(np.zeros((1000, 4, 4, 3), np.uint8), np.arange(1000), labels, np.zeros((1000, 2), np.float32), groups=groups)
    cfg = TrainConfig(epochs=2, batch_size=50, joint_frequency=1)
    rows = np.concatenate([r for src, r in epoch_plan(0, cfg, 10, s.balance_keys("each")) if src == "B"])
    share_small = (groups[rows] == 1).mean()
    assert 0.4 < share_small < 0.6  # each dataset half the pass
    union = np.concatenate([r for src, r in epoch_plan(0, cfg, 10, s.balance_keys("union")) if src == "B"])
    assert (groups[union] == 1).mean() > 0.7  # balanced over classes only: the small extra holds 6 of 7 classes
    assert load_config("demo").dcn.extra_balance == "union"


# --- end to end on real layouts: RAF-DB + AffectNet + CAER-S, one planted duplicate ----------------------

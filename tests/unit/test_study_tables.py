"""Studies: rows, budgets, statistics, bad input, and a two-row study on a tiny world end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dcjt.config import BudgetConfig, MethodConfig
from dcjt.config_files import ConfigError, load_config
from dcjt.data.labels import M_A_COLUMN, make_table
from dcjt.experiments.statistics import paired_bootstrap
from dcjt.experiments.tables import TABLES, StudyError, parse_seeds, study_rows
from dcjt.method import relabel_gated, relabel_nearest
from dcjt.models.nets import build_model
from dcjt.train.batches import steps_per_epoch
from dcjt.train.budget import reference_steps, row_recipe
from dcjt.train.loop import set_seed, train
from helpers.training import small_cfg, toy_samples


# --- rows and inputs ------------------------------------------------------------------------------
def test_tables_have_the_papers_rows_with_unique_names():
    assert len(TABLES["1"]) == 6 and len(TABLES["2"]) == 12 + 3 and len(TABLES["8"]) == 1 + 3
    assert TABLES["8"][0].name == "target only (A, DL)" == study_rows("8")[1]  # Table 8's "A only" row, its reference
    assert "straight A + B, class-balanced" in [r.name for r in TABLES["main"]]
    rows, reference = study_rows("all")
    assert len({r.name for r in rows}) == len(rows) and reference == "target only (A, DL)"
    for row in rows:  # every row is a valid config
        load_config("demo", values=row.values)
    rows, _ = study_rows("main", synthetic=False)
    assert all("oracle" not in r.name for r in rows)


def test_bad_study_input_is_named():
    with pytest.raises(StudyError, match="unknown table '9'"):
        study_rows("9")
    with pytest.raises(StudyError, match=r"unknown row\(s\) \['DCJT\+'\]"):
        study_rows("main", ["DCJT+"])
    with pytest.raises(StudyError, match="expected integers"):
        parse_seeds("0,a")
    with pytest.raises(StudyError, match="distinct"):
        parse_seeds("1,1")
    for bad in ("-1", "0-100000", "5-2000"):
        with pytest.raises(StudyError, match="at most 1000 seeds, each in 0..99999"):
            parse_seeds(bad)
    assert parse_seeds("0-2") == [0, 1, 2] and parse_seeds("3, 5") == [3, 5]
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="method.extra_fraction"):
            load_config("demo", values={"method.extra_fraction": bad})


def test_paired_bootstrap_by_hand():
    same = [np.array([1, 0, 1, 1])]
    assert paired_bootstrap(same, same) == (0.0, 0.0, 0.0)
    better = [np.ones(200), np.ones(200)]
    worse = [np.r_[np.ones(100), np.zeros(100)], np.r_[np.ones(150), np.zeros(50)]]
    d, lo, hi = paired_bootstrap(better, worse)
    assert d == pytest.approx((0.5 + 0.25) / 2) and lo < d < hi and lo > 0.2


# --- gated relabeling ----------------------------------------------------------------------------
def test_gated_relabel_changes_only_clear_and_agreed_labels():
    # A's centres: surprise (0) at (0, 1), happiness (3) at (1, 0), neutral (6) at (0, 0).
    target = make_table("a", "train", [f"a{i}" for i in range(6)], [0, 0, 3, 3, 6, 6], [0, 0, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0])
    # B - subB, all labelled neutral: row 0 sits on happiness (clear), row 1 halfway (not clear),
    # row 2 on surprise but M_A says neutral (no agreement).
    extra = make_table("b", "train", ["b0", "b1", "b2"], [6, 6, 6], [0.95, 0.5, 0.0], [0.0, 0.0, 0.95])
    extra["in_subset"] = False
    extra[M_A_COLUMN] = [3, 3, 6]
    out, stats = relabel_gated(extra, target, ratio=0.8)
    assert out["label"].tolist() == [3, 6, 6]
    assert stats.vetoed == {"by_distance": 1, "by_m_a": 1} and stats.n_changed == 1
    nearest, _ = relabel_nearest(extra, target)
    assert nearest["label"].tolist() == [3, 3, 0]  # the paper's rule changes all three
    free, _ = relabel_gated(extra, target, ratio=0.8, require_m_a=False)
    assert free["label"].tolist() == [3, 6, 0]


# --- budgets -------------------------------------------------------------------------------------
def test_step_budget_gives_every_row_the_same_optimiser_steps():
    cfg = small_cfg(epochs=6, batch_size=8, warmup_epochs=2, joint_frequency=2, lam=1.0)
    b_labels = np.arange(40) % 7
    ref = reference_steps(cfg, 32, b_labels)
    assert ref == sum(steps_per_epoch(cfg, 32, b_labels, 6)) == 6 * 4 + 2 * 5
    budget = BudgetConfig(mode="steps")
    target_only = row_recipe(cfg, budget, MethodConfig(extra_use="none", continuous=False), 32, None, ref)
    assert target_only.lam == 0.0 and target_only.max_steps == ref and target_only.epochs == 9  # 34 steps / 4 per epoch
    set_seed(0)
    result = train(build_model("tiny", "linear", 32), toy_samples(32), cfg=target_only, val=toy_samples(16, seed=1))
    assert result.metrics["steps"] == ref and result.metrics["epochs_run"] == 9
    converged = row_recipe(cfg, BudgetConfig(patience=2), MethodConfig(), 32, b_labels, ref)
    assert converged.patience == 2 and converged.epochs == 6 and converged.lam == 1.0


def test_patience_stops_training():
    set_seed(0)
    cfg = small_cfg(epochs=30, lr=1e-9, patience=2)  # a learning rate that cannot improve validation accuracy
    result = train(build_model("tiny", "linear", 32), toy_samples(32), cfg=cfg, val=toy_samples(16, seed=1))
    assert result.metrics["epochs_run"] == result.selected_epoch + 3 < 30


def test_a_joint_run_that_selects_a_warm_up_check_reports_it_selected_before_b():
    """A learning rate that cannot improve validation keeps the first check (warm-up epoch 0): the
    run passes over B, its reported model never did; the flag needs both."""
    from dcjt.train.scoring import RowEvaluation

    set_seed(0)
    cfg = small_cfg(epochs=4, lr=1e-9, warmup_epochs=2, joint_frequency=1, lam=1.0)
    model = build_model("tiny", "linear", 32)
    stuck = train(model, toy_samples(32), cfg=cfg, extra=toy_samples(24, seed=5), val=toy_samples(16, seed=1))
    assert stuck.selected_epoch == 0 and stuck.metrics["b_passes"] == 2 and stuck.metrics["b_passes_selected"] == 0
    scores = {"val": None, "test": None}
    assert RowEvaluation.model_construct(row="dcjt", variant="v", **scores, b_passes=2, b_passes_selected=0).selected_before_b
    assert not RowEvaluation.model_construct(row="dcjt", variant="v", **scores, b_passes=2, b_passes_selected=1).selected_before_b
    assert not RowEvaluation.model_construct(row="t", variant="v", **scores, b_passes=0, b_passes_selected=0).selected_before_b


# --- a two-row study end to end ------------------------------------------------------------------


def test_budget_flags_mark_rows_still_improving_at_the_cap_and_joint_rows_chosen_before_b():
    from dcjt.config_files import load_config
    from dcjt.experiments.study_summary import flag_budget, markdown, summarise

    cfg = load_config("demo")  # 10 epochs, warm-up 2, joint every 2 epochs, patience 3 cycles = 6 epochs
    records = pd.DataFrame(
        {
            "row": ["A", "A", "J", "J"],
            "seed": [0, 1, 0, 1],
            "accuracy": [0.7, 0.72, 0.75, 0.74],
            "val_accuracy": [0.7, 0.7, 0.7, 0.7],
            "images_seen": [1, 1, 2, 2],
            "epochs_run": [10, 7, 10, 10],
            "stop_reason": ["all 10 epochs run", "no gain for 3 cycles", "all 10 epochs run", "all 10 epochs run"],
            "selected_epoch": [9, 1, 1, 3],
            "b_passes": [0, 0, 4, 4],
            "selected_before_b": [False, False, True, False],  # from each row's evaluation
        }
    )
    flagged = flag_budget(records, cfg)
    assert flagged["not_converged"].tolist() == [True, False, False, False]
    summary = summarise(flagged, {}, "A")
    text = markdown(summary, "A", "t")
    assert "| not converged 1/2 |" in text and "| selected before B 1/2 |" in text and "*not converged*" in text


def test_a_study_runs_at_equal_optimiser_steps_unless_told_otherwise():
    from app.commands import STUDY_BUDGET, study_shortcuts

    assert STUDY_BUDGET == "steps" and study_shortcuts({"budget": None, "threads": 2}, ()) == {"budget": "steps", "threads": 2}
    assert study_shortcuts({"budget": "converged"}, ())["budget"] == "converged"
    assert study_shortcuts({"budget": None}, ("budget.mode=converged",))["budget"] is None  # the --set value stands

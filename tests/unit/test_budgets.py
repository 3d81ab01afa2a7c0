"""Budgets that reach the joint stage: the stop rule, step budgets, balanced passes, ranks that stop together."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcjt.config import BudgetConfig, MethodConfig
from dcjt.config_files import ConfigError, load_config
from dcjt.models.nets import build_model
from dcjt.schedule import first_joint_epoch, joint_epochs
from dcjt.train.batches import epoch_plan
from dcjt.train.budget import BudgetError, reference_steps, row_recipe
from dcjt.train.loop import set_seed, train
from dcjt.train.optim import make_optimizer, make_scheduler, schedule_factor
from dcjt.train.stopping import patience_spent
from helpers.training import small_cfg, toy_samples

PAPER = dict(warmup_epochs=30, joint_frequency=10, stop_every=10)  # configs/rafdb.yaml's schedule, patience in cycles


def stop_epoch(curve: list[float], patience: int, min_epochs: int = 0, **shape) -> int:
    """Run the stop rule over a validation curve: the epoch after which training stops."""
    best, best_epoch = -np.inf, -1
    for epoch, value in enumerate(curve):
        if value > best:
            best, best_epoch = value, epoch
        if patience_spent(best_epoch, epoch, patience=patience, min_epochs=min_epochs, **shape):
            return epoch
    return len(curve) - 1


# --- the stop rule -----------------------------------------------------------------------------------------
def test_joint_epochs_by_brute_force():
    for epochs, warmup, freq in [(120, 30, 10), (150, 100, 5), (10, 2, 2), (5, 0, 1), (30, 31, 10), (7, 3, 2)]:
        brute = sum(e >= warmup and e % freq == 0 for e in range(epochs))
        assert joint_epochs(epochs, warmup, freq) == brute
    assert first_joint_epoch(3, 2) == 4 and first_joint_epoch(30, 10) == 30


@settings(max_examples=300, deadline=None)
@given(curve=st.lists(st.floats(0.1, 0.9), min_size=120, max_size=120), patience=st.integers(1, 4))
def test_paper_shape_never_stops_before_its_passes_over_b(curve, patience):
    """Warm-up 30, frequency 10: whatever the validation curve (flat, noisy, an early peak), a row
    stops only at the end of a joint cycle, after at least ``patience`` passes over B."""
    end = stop_epoch(curve, patience, **PAPER)
    passes = sum(e >= 30 and e % 10 == 0 for e in range(end + 1))
    assert passes >= min(patience, 9)
    assert end == 119 or (end + 1) % 10 == 0  # a check closes each cycle (epochs 39, 49, ...)
    assert end >= 30 + 10 * patience - 1


def test_flat_and_early_peak_curves_at_the_papers_shape():
    flat = [0.389] * 120  # the majority-class plateau that used to end runs after 4 epochs
    assert stop_epoch(flat, 3, **PAPER) == 59  # three whole cycles after the first joint epoch (30)
    peak = [0.5] * 5 + [0.9] + [0.5] * 114
    assert stop_epoch(peak, 3, **PAPER) == 59
    late = [0.5] * 44 + [0.9] + [0.5] * 75  # a best in the cycle 40-49: three whole cycles after it
    assert stop_epoch(late, 3, **PAPER) == 79
    assert stop_epoch(flat, 3, min_epochs=80, **PAPER) == 79  # a minimum share of the budget first


def test_without_a_warm_up_the_rule_is_plain_patience_in_epochs():
    curve = [0.1, 0.5, 0.4, 0.45, 0.3, 0.6]
    assert stop_epoch(curve, 2, warmup_epochs=0, joint_frequency=1, stop_every=1) == 3  # best 1, then 2 and 3 worse
    assert stop_epoch(curve, 2, warmup_epochs=0, joint_frequency=1, stop_every=1, min_epochs=5) == 4


# --- budgets ----------------------------------------------------------------------------------------------
def test_converged_budget_counts_cycles_after_the_warm_up():
    cfg = small_cfg(epochs=120, **{k: v for k, v in PAPER.items() if k != "stop_every"})
    recipe = row_recipe(cfg, BudgetConfig(), MethodConfig(), 32, np.arange(40) % 7, 1)
    assert (recipe.patience, recipe.stop_every, recipe.min_epochs) == (3, 10, 60)
    per_epoch = row_recipe(cfg, BudgetConfig(patience=20, patience_unit="epochs"), MethodConfig(), 32, None, 1)
    assert (per_epoch.patience, per_epoch.stop_every) == (20, 1)


def test_step_budget_schedule_and_checks_are_fractions_of_the_budget():
    """Two rows with the same step budget but different epoch lengths get the same learning rate at
    the same share of the budget, and validation checks at the same steps."""
    cfg = small_cfg(epochs=6, batch_size=8, warmup_epochs=2, joint_frequency=2, scheduler="step", step_size=2, gamma=0.5)
    b_labels = np.arange(40) % 7
    ref = reference_steps(cfg, 32, b_labels)
    budget = BudgetConfig(mode="steps", checks=4)
    dcjt = row_recipe(cfg, budget, MethodConfig(), 32, b_labels, ref)
    target = row_recipe(cfg, budget, MethodConfig(extra_use="none", continuous=False), 32, None, ref)
    assert dcjt.schedule_steps == target.schedule_steps == ref and dcjt.epochs != target.epochs
    assert dcjt.check_every_steps == target.check_every_steps == -(-ref // 4)
    lrs = []
    for recipe in (dcjt, target):
        net = build_model("tiny", "linear", 32)
        opt = make_optimizer(net, recipe)
        sched = make_scheduler(opt, recipe)
        seen = []
        for _ in range(ref):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        lrs.append(seen)
    assert lrs[0] == lrs[1]  # the same schedule per step for both rows
    assert lrs[0][0] == cfg.lr and lrs[0][-1] == pytest.approx(cfg.lr * 0.5**2)  # steps 2/6 and 4/6 of the budget halve it
    assert schedule_factor(dcjt, 0.5) == 0.5 and schedule_factor(dcjt.model_copy(update={"scheduler": "cosine"}), 0.5) == 0.5
    set_seed(0)
    result = train(build_model("tiny", "linear", 32), toy_samples(32), cfg=target, val=toy_samples(16, seed=1))
    assert result.metrics["steps"] == ref
    every = target.check_every_steps
    assert result.checks["step"].tolist() == sorted({*range(every, ref + 1, every), ref})
    assert result.metrics["selected_step"] in result.checks["step"].tolist()


def test_a_step_budget_too_small_for_the_passes_over_b_is_refused():
    cfg = small_cfg(epochs=6, batch_size=8, warmup_epochs=4, joint_frequency=2)
    with pytest.raises(BudgetError, match=r"budget.steps: 10 optimiser steps make 3 epochs, 0 of them with a pass over B"):
        row_recipe(cfg, BudgetConfig(mode="steps", steps=10), MethodConfig(), 32, np.arange(40) % 7, 99)


def test_budgets_that_cannot_reach_the_joint_stage_are_refused():
    with pytest.raises(ConfigError, match=r"budget.min_b_passes: the joint schedule .* passes over B 4 time\(s\), fewer than"):
        load_config("demo", values={"budget.min_b_passes": 5})
    with pytest.raises(ConfigError, match=r"budget.patience: 1 epochs is shorter than one joint cycle"):
        load_config("demo", values={"budget.patience": 1, "budget.patience_unit": "epochs"})
    load_config("demo", values={"budget.patience": 2, "budget.patience_unit": "epochs"})  # one cycle of 2 epochs
    load_config("demo", values={"budget.min_b_passes": 5, "method.extra_use": "none"})  # no joint row: nothing to reach
    for name in ("rafdb", "caers"):  # the paper's schedules reach B
        cfg = load_config(name, values={"data.kind": "synthetic", "data.target": None, "data.extras": []})
        assert joint_epochs(cfg.dcn.epochs, cfg.dcn.warmup_epochs, cfg.dcn.joint_frequency) >= cfg.budget.min_b_passes


def test_balanced_main_pass_draws_classes_evenly():
    labels = np.r_[np.zeros(900, int), np.full(100, 3)]
    cfg = small_cfg(batch_size=50, balanced=True)
    rows = np.concatenate([r for _, r in epoch_plan(0, cfg, len(labels), None, labels)])
    share = np.mean(labels[rows] == 3)
    assert len(rows) == 1000 and 0.45 < share < 0.55
    with pytest.raises(ValueError, match="needs the labels"):
        epoch_plan(0, cfg, len(labels), None)
    plain = np.concatenate([r for _, r in epoch_plan(0, cfg.model_copy(update={"balanced": False}), len(labels), None)])
    assert sorted(plain) == list(range(1000))


# --- ranks that stop together ---------------------------------------------------------------------------

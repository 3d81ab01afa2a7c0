"""A race's rung (``budget.rung``): a row cut short, then the whole recipe going on from its
checkpoint, trains exactly as the row trained in one go; a cut-short run never goes on from a
later checkpoint of its recipe (nor writes over it)."""

from __future__ import annotations

import pytest
import torch

from dcjt.config import BudgetConfig, MethodConfig
from dcjt.models.nets import build_model
from dcjt.train.budget import cut, row_recipe
from dcjt.train.checkpoint import latest_epoch
from dcjt.train.loop import set_seed, train
from helpers.training import small_cfg, toy_samples

A, B, VAL = toy_samples(64), toy_samples(48, seed=7), toy_samples(32, seed=4)
RECIPES = {
    "epoch schedule": small_cfg(epochs=6, warmup_epochs=1, scheduler="cosine"),
    "step budget": small_cfg(epochs=6, warmup_epochs=1, max_steps=25, schedule_steps=25, schedule_epochs=5, check_every_steps=4),
}


def _train(cfg, folder=None, seed=0):
    set_seed(seed)
    return train(build_model("tiny", "linear", 32), A, cfg=cfg, extra=B, val=VAL, checkpoint_dir=folder)


def _same(a, b):
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(x, y)
    assert a.history.equals(b.history) and a.checks.equals(b.checks) and a.metrics == b.metrics


@pytest.mark.parametrize("name", list(RECIPES))
def test_a_row_cut_at_its_rung_then_finished_equals_the_row_trained_in_one_go(name, tmp_path):
    cfg = RECIPES[name]
    rung = cut(cfg, 1 / 3)
    assert rung.stop_after_epochs == 2 and rung.identity() == cfg.identity()
    alone = _train(cfg)
    short = _train(rung, tmp_path / "row")
    assert len(short.history) == 2 and latest_epoch(tmp_path / "row") == 1
    assert short.metrics["steps"] < alone.metrics["steps"]
    finished = _train(cfg, tmp_path / "row", seed=123)  # another process state: the checkpoint carries everything
    _same(alone, finished)
    again = _train(rung, tmp_path / "row")  # the whole recipe ran first: the rung trains without its folder
    _same(short, again)
    assert latest_epoch(tmp_path / "row") == alone.history["epoch"].iloc[-1]  # the later checkpoint kept


def test_the_rung_is_its_share_of_each_rows_epochs_or_no_cut_at_all():
    assert cut(small_cfg(epochs=10, warmup_epochs=2), 1 / 3).stop_after_epochs == 3
    assert cut(small_cfg(epochs=10, warmup_epochs=2), 0.1).stop_after_epochs == 1  # no B after a warm-up: no floor
    assert cut(small_cfg(epochs=6, warmup_epochs=2), 1 / 3).stop_after_epochs == 2  # the demo's straight merge: 2 of 6
    assert cut(small_cfg(epochs=10, warmup_epochs=2), 0.01).stop_after_epochs == 1  # at least one epoch
    assert cut(small_cfg(epochs=3, warmup_epochs=0), 0.6).stop_after_epochs == 2
    assert cut(small_cfg(epochs=3, warmup_epochs=0), 0.9).stop_after_epochs is None  # all its epochs: no rung
    assert cut(small_cfg(epochs=1, warmup_epochs=0), 0.5).stop_after_epochs is None
    assert cut(small_cfg(epochs=10), None).stop_after_epochs is None
    budget = BudgetConfig(mode="steps", rung=0.25)
    a_only = row_recipe(small_cfg(epochs=8, warmup_epochs=1), budget, MethodConfig(extra_use="none"), 64, None, 40)
    assert a_only.stop_after_epochs == round(0.25 * a_only.epochs) and a_only.epochs > 8  # its own epochs at the budget's steps


def test_a_joint_row_is_cut_where_its_cycle_stands_at_its_end():
    """The project's schedule (10 epochs, warm-up 2, B every 2nd epoch: epochs 2, 4, 6, 8 with B,
    the last, 9, on A after a pass over B): a third is 3 epochs, ending on the pass over B; the
    joint row's rung is 4, ending as its budget ends, on A after a pass."""
    demo = small_cfg(epochs=10, warmup_epochs=2, joint_frequency=2)
    assert cut(demo, 1 / 3, joint=True).stop_after_epochs == 4
    assert cut(demo.model_copy(update={"epochs": 9}), 1 / 3, joint=True).stop_after_epochs == 3  # ends on a pass
    late = small_cfg(epochs=12, warmup_epochs=3, joint_frequency=4)  # B first at epoch 4 (then 8), the last on A
    assert cut(late, 0.1, joint=True).stop_after_epochs == 8  # after its first pass over B, ending as epoch 11 does
    assert cut(small_cfg(epochs=6, warmup_epochs=2, joint_frequency=1), 1 / 3, joint=True).stop_after_epochs == 3
    assert cut(small_cfg(epochs=10, warmup_epochs=2, joint_frequency=8), 0.5, joint=True).stop_after_epochs is None
    budget, method = BudgetConfig(rung=1 / 3), MethodConfig()
    assert row_recipe(demo, budget, method, 64, B.labels, 40).stop_after_epochs == 4
    assert row_recipe(demo, budget, method, 64, None, 40).stop_after_epochs == 3  # no B: no cycle to keep

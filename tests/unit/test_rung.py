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


def test_the_rung_is_its_share_of_each_rows_epochs_past_the_warm_up_and_never_all_of_them():
    assert cut(small_cfg(epochs=10, warmup_epochs=2), 1 / 3).stop_after_epochs == 3
    assert cut(small_cfg(epochs=10, warmup_epochs=2), 0.1).stop_after_epochs == 3  # the warm-up and one pass over B
    assert cut(small_cfg(epochs=3, warmup_epochs=0), 0.9).stop_after_epochs == 2
    assert cut(small_cfg(epochs=1, warmup_epochs=0), 0.5).stop_after_epochs is None
    assert cut(small_cfg(epochs=10), None).stop_after_epochs is None
    budget = BudgetConfig(mode="steps", rung=0.25)
    a_only = row_recipe(small_cfg(epochs=8, warmup_epochs=1), budget, MethodConfig(extra_use="none"), 64, None, 40)
    assert a_only.stop_after_epochs == round(0.25 * a_only.epochs) and a_only.epochs > 8  # its own epochs at the budget's steps

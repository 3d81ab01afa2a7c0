"""A row that goes on from a shared warm-up trains exactly as one that warmed up itself."""

from __future__ import annotations

import pytest
import torch

from dcjt.models.nets import build_model
from dcjt.train.checkpoint import read_latest
from dcjt.train.loop import fingerprint_of, set_seed, train
from dcjt.train.warmup import branch, seal, shares, warmup_key, warmup_recipe
from helpers.training import small_cfg, toy_samples

A, VAL = toy_samples(64), toy_samples(32, seed=4)
RECIPES = {
    "epoch schedule": small_cfg(epochs=4, warmup_epochs=2, scheduler="cosine"),
    # a step budget with checks inside epochs: the rows' epochs and budgets differ, their schedule does not
    "step budget": small_cfg(epochs=5, warmup_epochs=2, max_steps=15, schedule_steps=15, schedule_epochs=4, check_every_steps=3),
}


def _row(cfg, extra, folder=None):
    set_seed(0)
    return train(build_model("tiny", "linear", 32), A, cfg=cfg, extra=extra, val=VAL, checkpoint_dir=folder)


@pytest.mark.parametrize("name", list(RECIPES))
def test_a_row_branched_from_the_shared_warm_up_equals_the_row_trained_alone(name, tmp_path):
    cfg = RECIPES[name]
    set_seed(0)  # the warm-up: A alone, stopped after its warm-up epochs
    train(build_model("tiny", "linear", 32), A, cfg=warmup_recipe(cfg), val=VAL, checkpoint_dir=tmp_path / "warm")
    warm = seal(read_latest(tmp_path / "warm")[1], warmup_key(cfg, "A"))
    for size, seed in ((32, 9), (48, 7)):  # two rows whose B differs (the epochs of a step budget too)
        extra = toy_samples(size, seed=seed)
        row_cfg = cfg.model_copy(update={"epochs": 6}) if cfg.schedule_steps and size == 48 else cfg
        alone = _row(row_cfg, extra)
        model = build_model("tiny", "linear", 32)
        own = fingerprint_of(row_cfg, model, A, extra)
        assert branch(tmp_path / f"row-{size}", warm, warmup_key(row_cfg, "A"), own)
        set_seed(123)  # another process state: the checkpoint carries everything
        branched = train(model, A, cfg=row_cfg, extra=extra, val=VAL, checkpoint_dir=tmp_path / f"row-{size}")
        for a, b in zip(alone.model.state_dict().values(), branched.model.state_dict().values()):
            assert torch.equal(a, b)
        assert alone.history.equals(branched.history) and alone.checks.equals(branched.checks)
        assert alone.metrics == branched.metrics


def test_a_row_whose_recipe_differs_or_that_has_its_own_checkpoint_does_not_branch(tmp_path):
    cfg = RECIPES["epoch schedule"]
    set_seed(0)
    train(build_model("tiny", "linear", 32), A, cfg=warmup_recipe(cfg), val=VAL, checkpoint_dir=tmp_path / "warm")
    warm = seal(read_latest(tmp_path / "warm")[1], warmup_key(cfg, "A"))
    own = fingerprint_of(cfg, build_model("tiny", "linear", 32), A, toy_samples(32, seed=9))
    assert not branch(tmp_path / "lam", warm, warmup_key(cfg.model_copy(update={"lam": 0.0}), "A"), own)
    assert not shares(warm, warmup_key(cfg.model_copy(update={"lam": 0.0}), "A"))
    assert not branch(tmp_path / "rows", warm, warmup_key(cfg, "other A rows"), own)
    _row(cfg, toy_samples(32, seed=9), tmp_path / "done")  # a row that trained (or was interrupted) resumes from its own
    assert not branch(tmp_path / "done", warm, warmup_key(cfg, "A"), own)
    assert shares(warm, warmup_key(cfg, "A"))  # still the seed's warm-up's epochs: counted once (``warmup_steps``)
    assert warmup_recipe(cfg.model_copy(update={"warmup_epochs": 0})) is None

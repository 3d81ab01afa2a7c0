"""Toy training data, a small recipe, a BatchNorm-free net for DDP on CPU."""

from __future__ import annotations

import numpy as np
from torch import nn

from dcjt.config import TrainConfig
from dcjt.train.batches import Samples
from dcjt.train.loop import set_seed, train


def toy_samples(n=96, size=32, seed=0, va=True) -> Samples:
    """Images whose colour encodes the class: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, n)
    imgs = rng.integers(0, 60, (n, size, size, 3), dtype=np.uint8)
    for i, k in enumerate(labels):
        imgs[i, :, :, k % 3] += np.uint8(25 * (k + 1))
    vas = np.c_[(labels - 3) / 4, rng.uniform(-0.5, 0.5, n)].astype(np.float32) if va else np.full((n, 2), np.nan, np.float32)
    return Samples(imgs, np.arange(n), labels.astype(np.int64), vas)


def small_cfg(**kw) -> TrainConfig:
    """A 3-epoch recipe for toy data (``kw`` overrides any field)."""
    base = dict(epochs=3, batch_size=16, lr=3e-3, lam=1.0, scheduler="step", step_size=2, seed=3)
    base.update(kw)
    return TrainConfig(**base)


class NoNormNet(nn.Module):
    """BatchNorm-free: on CPU DDP cannot synchronise BatchNorm (GPUs use SyncBatchNorm)."""

    image_size = 32

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, 2, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 9),
        )

    def forward(self, x):
        return self.body(x)


def fit_until_stop(**kw) -> dict:
    """A training that rank 0 stops early (patience or a step budget): epochs and steps run."""
    set_seed(0)
    cfg = TrainConfig(epochs=12, batch_size=16, lam=1.0, seed=5, scheduler="none", **kw)
    r = train(NoNormNet(), toy_samples(64), cfg=cfg, extra=toy_samples(32, seed=8), val=toy_samples(16, seed=2))
    return {"epochs": len(r.history), "steps": int(r.metrics.get("steps", -1))}  # ranks > 0 keep no history

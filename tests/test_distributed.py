"""DistributedDataParallel on CPU (gloo, 2 processes) equals one process on the same data."""

from __future__ import annotations

import torch
from test_models_training import toy_samples
from torch import nn

from dcjt.config import TrainConfig
from dcjt.train.distributed import run_distributed
from dcjt.train.loop import set_seed, train


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


def fit() -> dict:
    set_seed(0)
    net = NoNormNet()
    initial = {f"_initial.{k}": v.detach().clone() for k, v in net.state_dict().items()}
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2, lam=1.0, warmup_epochs=1, joint_frequency=1, seed=5, scheduler="none")
    result = train(net, toy_samples(64), cfg=cfg, extra=toy_samples(32, seed=8), val=toy_samples(16, seed=2))
    return {k: v.clone() for k, v in result.model.state_dict().items()} | {"_history": result.history.to_dict("list")} | initial


def test_two_gloo_processes_match_one_process():
    one = fit()
    two = run_distributed(fit, 2)
    for key, value in one.items():
        if key == "_history":
            assert list(value["epoch"]) == list(two[key]["epoch"])
            continue
        torch.testing.assert_close(two[key], value, rtol=1e-4, atol=1e-5)
    for key in ("body.0.weight", "body.6.weight"):  # both trained: the weights moved from the same net's start
        assert not torch.allclose(two[key], two[f"_initial.{key}"], atol=1e-4)
        assert not torch.allclose(one[key], one[f"_initial.{key}"], atol=1e-4)


def fit_until_stop(**kw) -> dict:
    """A training that rank 0 stops early (patience or a step budget): epochs and steps run."""
    set_seed(0)
    cfg = TrainConfig(epochs=12, batch_size=16, lam=1.0, seed=5, scheduler="none", **kw)
    r = train(NoNormNet(), toy_samples(64), cfg=cfg, extra=toy_samples(32, seed=8), val=toy_samples(16, seed=2))
    return {"epochs": len(r.history), "steps": int(r.metrics.get("steps", -1))}  # ranks > 0 keep no history

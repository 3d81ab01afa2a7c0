"""DistributedDataParallel on CPU (gloo, 2 processes) equals one process on the same data."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from dcjt.config import TrainConfig
from dcjt.train.distributed import run_distributed
from dcjt.train.loop import set_seed, train
from helpers import ROOT
from helpers.training import NoNormNet, toy_samples

pytestmark = pytest.mark.slow


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


DDP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from helpers.training import fit_until_stop
from dcjt.train.distributed import run_distributed

for kw in (dict(lr=1e-12, patience=1), dict(lr=1e-2, max_steps=9)):
    one, two = fit_until_stop(**kw), run_distributed(fit_until_stop, 2, **kw)
    assert one == two, (kw, one, two)
    assert two["epochs"] < 12, two
    print("stopped together", kw, two)
"""


def test_two_ranks_stop_together_under_patience_and_a_step_budget():
    """Rank 0 decides to stop (patience 1 on a flat curve, or a spent step budget); every rank
    leaves the loop at the same epoch and step. A hang would end in the timeout."""
    code = textwrap.dedent(DDP_SCRIPT.format(tests=str(ROOT / "tests")))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("stopped together") == 2, proc.stdout
    assert "'max_steps': 9} {'epochs': 2, 'steps': 9}" in proc.stdout

"""Training runs that take a while: torch.compile on the CPU, a killed run resumed to the same
weights, SCN relabeling kept across a resume, and the paper's schedule reaching its passes over B."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from dcjt.config import SCNConfig, TrainConfig
from dcjt.models.nets import build_model
from dcjt.train.checkpoint import latest
from dcjt.train.feed import Feed
from dcjt.train.loop import Reporting, set_seed, train
from helpers import ROOT
from helpers.training import small_cfg, toy_samples

pytestmark = pytest.mark.slow

PAPER = dict(warmup_epochs=30, joint_frequency=10, stop_every=10)  # configs/rafdb.yaml's schedule, patience in cycles

RESUME_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path[:0] = [{tests!r}]
    from helpers.training import small_cfg, toy_samples
    from dcjt.train.loop import Reporting, set_seed, train
    from dcjt.models.nets import build_model
    set_seed(0)
    def die(epoch, row):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGKILL)
    train(build_model("tiny", "linear", 32), toy_samples(64), cfg=small_cfg(epochs=4, warmup_epochs=1),
          extra=toy_samples(32, seed=9), val=toy_samples(32, seed=4), checkpoint_dir={ckpt!r}, report=Reporting(on_epoch_end=die))
    """
)


def test_killed_training_resumes_to_the_same_result(tmp_path):
    kw = dict(cfg=small_cfg(epochs=4, warmup_epochs=1), extra=toy_samples(32, seed=9), val=toy_samples(32, seed=4))
    set_seed(0)
    straight = train(build_model("tiny", "linear", 32), toy_samples(64), **kw)
    script = RESUME_SCRIPT.format(tests=str(ROOT / "tests"), ckpt=str(tmp_path / "ck"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert torch.load(latest(tmp_path / "ck"), weights_only=True)["epoch"] == 1
    set_seed(123)  # a different process state: the checkpoint must carry everything
    resumed = train(build_model("tiny", "linear", 32), toy_samples(64), checkpoint_dir=tmp_path / "ck", **kw)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.history.drop(columns="lr").equals(resumed.history.drop(columns="lr"))


def test_torch_compile_trains_on_cpu():
    set_seed(0)
    result = train(
        build_model("tiny", "linear", 32),
        toy_samples(48),
        cfg=small_cfg(epochs=1, compile=True, scheduler="none"),
        feed=Feed(torch.device("cpu")),
    )
    assert np.isfinite(result.history["A_loss"]).all()


def _scn_cfg() -> TrainConfig:
    """SCN from the second epoch, with a margin toy data can pass."""
    scn = SCNConfig(enabled=True, relabel_epoch=1, relabel_margin=0.05)
    return TrainConfig(epochs=3, batch_size=16, lr=3e-3, scheduler="none", erase_p=0.0, amp=False, prefetch=0, scn=scn)


def test_scn_training_relabels_and_keeps_the_new_labels(tmp_path):
    samples = toy_samples(96, size=32, va=False)
    flipped = samples.labels.copy()
    flipped[:30] = (flipped[:30] + 3) % 7  # noisy labels for SCN to cure
    samples.labels = original = flipped.copy()
    torch.manual_seed(0)
    res = train(build_model("tiny", "linear", 32, scn=True), samples, cfg=_scn_cfg(), val=toy_samples(32, seed=1))
    hist = res.history
    assert hist.loc[0, "scn_relabeled"] == 0 and hist["scn_relabeled"].iloc[1:].sum() > 0  # from relabel_epoch on
    assert (original == flipped).all()  # the table's labels are not rewritten: training works on a copy
    assert (samples.labels != flipped).any()  # the training rows carry the cured labels
    # The loss holds the rank regularisation: A_loss >= A_ce.
    assert (hist["A_loss"] >= hist["A_ce"] - 1e-6).all()


def test_scn_resume_gives_the_same_result(tmp_path):
    class Killed(Exception):
        pass

    def kill_after_second(epoch: int, row: dict) -> None:
        if epoch == 1:
            raise Killed

    def run(folder: str, hook=None):
        torch.manual_seed(0)
        net = build_model("tiny", "linear", 32, scn=True)
        return train(
            net,
            toy_samples(96, size=32, va=False),
            cfg=_scn_cfg(),
            checkpoint_dir=tmp_path / folder,
            report=Reporting(on_epoch_end=hook),
        )

    with pytest.raises(Killed):
        run("ck", kill_after_second)  # killed after two epochs (relabeling began in the second)
    resumed, fresh = run("ck"), run("fresh")
    assert resumed.history["scn_relabeled"].tolist() == fresh.history["scn_relabeled"].tolist()
    for a, b in zip(resumed.model.state_dict().values(), fresh.model.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_a_row_at_the_papers_shape_trains_its_joint_epochs():
    """A real training run on tiny data, warm-up 30, frequency 10, patience 3 cycles, a learning
    rate that cannot move validation accuracy (a flat curve): B is trained on 3 times."""
    set_seed(0)
    cfg = small_cfg(epochs=100, lr=1e-12, scheduler="none", batch_size=32, patience=3, **PAPER)
    result = train(
        build_model("tiny", "linear", 32), toy_samples(64), cfg=cfg, extra=toy_samples(40, seed=4), val=toy_samples(32, seed=1)
    )
    assert result.metrics["epochs_run"] == 60 and result.metrics["b_passes"] == 3
    assert result.history.loc[result.history["joint"], "epoch"].tolist() == [30, 40, 50]
    assert "cycles of 10 epochs" in result.metrics["stop_reason"]

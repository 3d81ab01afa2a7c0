"""The GPU check, rehearsed on the CPU, and the device check it relies on."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dcjt.config import TrainConfig
from dcjt.models.nets import build_model
from dcjt.train.feed import DeviceCheckError, check_on_device
from dcjt.train.loop import train
from dcjt.train.predict import predict
from helpers import ROOT  # noqa: E402
from helpers.training import toy_samples

pytestmark = pytest.mark.slow


def test_gpu_check_dry_run_passes_every_check_on_the_cpu(tmp_path):
    users_store = tmp_path.parent / f"{tmp_path.name}-users-mlflow.db"
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path), "MLFLOW_TRACKING_URI": f"sqlite:///{users_store}"}
    proc = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for check in ("training: gpu_training_images_per_s:", "loader: data_wait_share:", "pipeline: comparison:"):
        assert f"gpu_check {check}" in out, out
    assert "gpu_training    arm" in out and out.rstrip().endswith("gpu_check: passed on cpu")
    assert not list(tmp_path.iterdir())  # its work folder is gone
    assert not users_store.exists()  # the check registered nothing in the caller's MLflow


def test_device_check_names_the_device_and_stray_tensors(monkeypatch):
    model = build_model("tiny", "linear", 32)
    cpu = torch.device("cpu")
    monkeypatch.setenv("DCJT_DEVICE_CHECK", "cpu")
    check_on_device(cpu, model, torch.zeros(2), where="step")
    with pytest.raises(DeviceCheckError, match=r"step: 1 tensors not on cpu, e.g. \['tensor 1 \(meta\)'\]"):
        check_on_device(cpu, model, torch.zeros(2), torch.empty(2, device="meta"), where="step")
    train(model, toy_samples(32), cfg=TrainConfig(epochs=1, batch_size=16, scheduler="none"))  # all on the CPU: passes
    monkeypatch.setenv("DCJT_DEVICE_CHECK", "cuda")
    with pytest.raises(DeviceCheckError, match="training batch 1: runs on cpu, DCJT_DEVICE_CHECK=cuda"):
        train(model, toy_samples(32), cfg=TrainConfig(epochs=1, batch_size=16, scheduler="none"))
    with pytest.raises(DeviceCheckError, match="prediction: runs on cpu"):
        predict(model, toy_samples(8))
    monkeypatch.delenv("DCJT_DEVICE_CHECK")
    probs, _ = predict(model, toy_samples(8))
    assert np.allclose(probs.sum(1), 1, atol=1e-5)

"""On a CUDA machine: a training step and a prediction keep every tensor on the GPU (the device
check raises on any stray one), and the GPU's predictions agree with the CPU's. Skipped without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcjt.models.nets import build_model
from dcjt.train.feed import feed_for
from dcjt.train.loop import set_seed, train
from dcjt.train.predict import predict
from helpers.training import small_cfg, toy_samples

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_training_and_prediction_stay_on_the_gpu(monkeypatch):
    monkeypatch.setenv("DCJT_DEVICE_CHECK", "cuda")
    set_seed(0)
    cuda = torch.device("cuda")
    result = train(
        build_model("tiny", "linear", 32),
        toy_samples(64),
        cfg=small_cfg(epochs=2),
        val=toy_samples(32, seed=1),
        feed=feed_for(cuda, small_cfg()),
    )
    assert np.isfinite(result.history["A_loss"]).all() and result.metrics["val_accuracy_selected"] > 0
    samples = toy_samples(32, seed=2)
    on_gpu, va_gpu = predict(result.model, samples, device=cuda, amp=False)
    monkeypatch.setenv("DCJT_DEVICE_CHECK", "cpu")
    on_cpu, va_cpu = predict(result.model, samples, device=torch.device("cpu"))
    assert np.abs(on_gpu - on_cpu).max() < 1e-3 and np.abs(va_gpu - va_cpu).max() < 1e-3

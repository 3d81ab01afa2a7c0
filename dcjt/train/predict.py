"""Predictions and metrics of a model over table rows on their image caches."""

from __future__ import annotations

import numpy as np
import torch

from dcjt.data.labels import NUM_CLASSES
from dcjt.models.inference import forward_uint8
from dcjt.train.batches import Samples
from dcjt.train.feed import check_on_device, device_default
from dcjt.train.metrics import classification_report, va_report


def predict(
    model: torch.nn.Module, samples: Samples, batch_size: int = 256, device: torch.device | None = None, amp: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, 7) and valence/arousal (N, 2) for every row, in row order.

    Runs on ``device`` (default: the GPU when there is one, whatever device the model was loaded
    on; it is moved back afterwards), so stage predictions and evaluations use the accelerator."""
    device = device or device_default()
    home = next(model.parameters()).device
    model.to(device)
    check_on_device(device, model, where="prediction")
    was_training = model.training
    model.eval()
    probs = np.zeros((len(samples), NUM_CLASSES), np.float32)
    vas = np.zeros((len(samples), 2), np.float32)
    for start in range(0, len(samples), batch_size):
        images, rows = samples.gather(np.arange(start, min(start + batch_size, len(samples))))
        probs[rows], vas[rows] = forward_uint8(model, images, device, amp)
    model.train(was_training)
    model.to(home)
    return probs, vas


def evaluate(model: torch.nn.Module, samples: Samples | None, batch_size: int = 256) -> dict:
    """Accuracy, balanced accuracy, macro-F1 and valence/arousal metrics (where labels exist)."""
    if samples is None or len(samples) == 0:
        return {}
    probs, va = predict(model, samples, batch_size)
    return {**classification_report(samples.labels, probs.argmax(1)), **va_report(samples.va, va)}

"""The one forward pass from uint8 images to class probabilities and valence/arousal.

Training (validation, pseudo labels, evaluation) and serving both call ``forward_uint8``, so a
served image is normalised exactly as in training. Imports no training code.
"""

from __future__ import annotations

import numpy as np
import torch

from dcjt.models.emotions import NUM_CLASSES  # logits first, then (valence, arousal)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 NHWC (already on its device) -> float NCHW with ImageNet normalisation."""
    x = x.permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def forward_uint8(
    model: torch.nn.Module, images: np.ndarray, device: torch.device | None = None, amp: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, 7) and raw valence/arousal (N, 2) of uint8 NHWC ``images``.

    On CUDA: bf16 autocast and channels_last (as in training); on CPU: float32.
    """
    device = device or next(model.parameters()).device
    cuda = device.type == "cuda"
    x = normalise(torch.from_numpy(np.ascontiguousarray(images)).to(device, non_blocking=True), channels_last=cuda)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and cuda):
        out = model(x).float()
    probs = torch.softmax(out[:, :NUM_CLASSES], dim=1).cpu().numpy()
    return probs, out[:, NUM_CLASSES:].cpu().numpy()

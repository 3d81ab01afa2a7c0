"""Per-epoch checkpoints written atomically, and resuming from them.

A checkpoint holds the model, optimiser, scheduler, RNG state, history and the best state so
far, plus a fingerprint of the recipe, network and data sizes: a checkpoint of another training
is refused instead of silently resumed.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import torch

from dcjt.config import TrainConfig


def fingerprint(cfg: TrainConfig, model: torch.nn.Module, sizes: tuple) -> dict:
    spec = model.spec() if hasattr(model, "spec") else {}
    return {"config": cfg.to_dict(), "model": spec, "sizes": list(sizes)}


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temp file, then rename: a kill never leaves half a checkpoint. The temp
    name is unique per process: two runs training the same row at once never take each other's."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path, expected_fingerprint: dict, device: torch.device) -> dict | None:
    """The checkpoint at ``path`` if there is one; refuses one of another training."""
    if not path.exists():
        return None
    ck = torch.load(path, map_location=device, weights_only=False)
    if ck["fingerprint"] != expected_fingerprint:
        raise ValueError(f"checkpoint {path} belongs to another training (config or data differ); use a new folder")
    return ck

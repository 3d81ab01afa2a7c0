"""Planted pickles for the trust tests: a payload that writes a marker file when unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dcjt.config import TrainConfig
from dcjt.models.nets import build_model
from dcjt.train.checkpoint import fingerprint
from dcjt.utils.files import file_sha256


class Payload:
    """Unpickling this runs ``os.system``-like code: it writes ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def plant_checkpoint(folder: Path, marker: Path, *, record: dict | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "epoch-0003.pt"
    torch.save({"model": Payload(marker), "epoch": 3}, path)
    if record is not None:
        (folder / "last.json").write_text(json.dumps({**record, "file": path.name, "sha256": file_sha256(path)}))
    return path


def tiny_fingerprint():
    return fingerprint(TrainConfig(), build_model("tiny", "linear", 32), (10, 0))

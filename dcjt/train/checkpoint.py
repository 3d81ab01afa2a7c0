"""Per-epoch checkpoints written atomically, resumed only when they are provably this training's.

A checkpoint folder holds ``epoch-NNNN.pt`` (model, optimiser, scheduler, RNG state, history and
the best state so far: tensors and plain types only) and ``last.json``, the record that points at
the newest one with its SHA-256 and the fingerprint of the training (recipe, network, data sizes).
Resuming reads the JSON record first: a checkpoint of another training, or a file that is not the
one recorded (planted, swapped, truncated), is refused before anything is unpickled, and the file
itself is read with ``torch.load(weights_only=True)``, which runs no code. The record is replaced
in one rename after the new file is complete, so a kill at any moment leaves a consistent pair.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import torch

from dcjt.config import TrainConfig
from dcjt.digest import file_sha256

RECORD = "last.json"
FILE_NAME = re.compile(r"epoch-\d{4,}\.pt")


class CheckpointError(ValueError):
    """A checkpoint that is not this training's, or not the file its record describes."""


def fingerprint(cfg: TrainConfig, model: torch.nn.Module, sizes: tuple) -> dict:
    spec = model.spec() if hasattr(model, "spec") else {}
    return json.loads(json.dumps({"config": cfg.to_dict(), "model": spec, "sizes": list(sizes)}))


def _replace_atomic(write, path: Path) -> None:
    """``write(tmp)`` then rename: a kill never leaves half a file. The temp name is unique per
    process, so two runs writing the same folder never take each other's."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_atomic(obj, path: Path) -> None:
    _replace_atomic(lambda tmp: torch.save(obj, tmp), path)


def latest(folder: Path) -> Path | None:
    """The checkpoint file the record points at (None when there is no record)."""
    record = Path(folder) / RECORD
    if not record.is_file():
        return None
    name = json.loads(record.read_text()).get("file", "")
    return Path(folder) / name if FILE_NAME.fullmatch(name) else None


def save_checkpoint_file(folder: Path, epoch: int, payload: dict, fp: dict) -> Path:
    """Write epoch ``epoch``'s checkpoint, then the record that points at it; drop older files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"epoch-{epoch:04d}.pt"
    save_atomic({**payload, "epoch": epoch}, path)
    record = {"file": path.name, "sha256": file_sha256(path), "epoch": epoch, "fingerprint": fp}
    _replace_atomic(lambda tmp: tmp.write_text(json.dumps(record)), folder / RECORD)
    for old in folder.glob("epoch-*.pt"):
        if old.name != path.name:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(folder: Path, expected_fingerprint: dict, device: torch.device) -> dict | None:
    """This training's newest checkpoint, or None when there is none yet."""
    folder = Path(folder)
    record_path = folder / RECORD
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint record {record_path} is not valid JSON ({exc}); use a new folder") from None
    if record.get("fingerprint") != json.loads(json.dumps(expected_fingerprint)):
        raise CheckpointError(f"checkpoint {record_path} belongs to another training (config or data differ); use a new folder")
    name = str(record.get("file", ""))
    if not FILE_NAME.fullmatch(name):
        raise CheckpointError(f"checkpoint record {record_path} names {name!r}, not a checkpoint file of this folder")
    path = folder / name
    if not path.is_file() or file_sha256(path) != record.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is not the file its record {record_path} describes (changed or missing)")
    return torch.load(path, map_location=device, weights_only=True)

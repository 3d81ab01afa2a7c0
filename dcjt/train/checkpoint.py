"""Per-epoch checkpoints written atomically, resumed only when they are provably this training's.

A checkpoint folder holds ``epoch-NNNN-<hash>.pt`` (model, optimiser, scheduler, RNG state, history and
the best state so far: tensors and plain types only) and ``last.json``, the record that points at
the newest one with its SHA-256 and the fingerprint of the training (recipe, network, data sizes).
Resuming reads the JSON record first: a checkpoint of another training, or a file that is not the
one recorded (planted, swapped, truncated), is refused before anything is unpickled, and the file
itself is read with ``torch.load(weights_only=True)``, which runs no code. The record is replaced
in one rename after the new file is complete, so a kill at any moment leaves a consistent pair.
File names carry the first 12 hex digits of their SHA-256, so two runs of the same training in one
folder never overwrite each other's file under a name the other's record points at, and writers
take turns under a lock on the folder, so one never deletes the file the other's record just named.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from pathlib import Path

import torch

from dcjt.config import TrainConfig
from dcjt.utils.files import folder_lock, replace_atomic

RECORD = "last.json"
FILE_NAME = re.compile(r"epoch-\d{4,}(-[0-9a-f]{12})?\.pt")
SETTLE_S = 2.0  # how long a record may point at a missing or other file before it is refused


class CheckpointError(ValueError):
    """A checkpoint that is not this training's, or not the file its record describes."""


def fingerprint(cfg: TrainConfig, model: torch.nn.Module, sizes: tuple) -> dict:
    spec = model.spec() if hasattr(model, "spec") else {}
    return json.loads(json.dumps({"config": cfg.identity(), "model": spec, "sizes": list(sizes)}))


def latest(folder: Path) -> Path | None:
    """The checkpoint file the record points at (None when there is no record)."""
    record = Path(folder) / RECORD
    if not record.is_file():
        return None
    name = json.loads(record.read_text()).get("file", "")
    return Path(folder) / name if FILE_NAME.fullmatch(name) else None


def save_checkpoint_file(folder: Path, epoch: int, payload: dict, fp: dict) -> Path:
    """Write epoch ``epoch``'s checkpoint, then the record that points at it, then drop the other
    files, all under the folder's lock: a run writing beside this one (same training, same folder)
    waits its turn, so the record never names a file that the other run has removed."""
    folder = Path(folder)
    buffer = io.BytesIO()
    torch.save({**payload, "epoch": epoch}, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = folder / f"epoch-{epoch:04d}-{digest[:12]}.pt"
    record = {"file": path.name, "sha256": digest, "epoch": epoch, "fingerprint": fp}
    with folder_lock(folder):
        replace_atomic(lambda tmp: tmp.write_bytes(data), path)
        replace_atomic(lambda tmp: tmp.write_text(json.dumps(record)), folder / RECORD)
        for old in folder.glob("epoch-*.pt"):
            if old.name != path.name:
                old.unlink(missing_ok=True)
    return path


def _record(folder: Path) -> tuple[str, dict] | None:
    path = folder / RECORD
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return text, json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint record {path} is not valid JSON ({exc}); use a new folder") from None


def latest_epoch(folder: Path) -> int | None:
    """The epoch of the folder's newest checkpoint, as its record says (None: no record)."""
    found = _record(Path(folder))
    return None if found is None else int(found[1].get("epoch", -1))


def read_latest(folder: Path, expected_fingerprint: dict | None = None) -> tuple[dict, bytes] | None:
    """(record, file bytes) of the newest checkpoint, verified against the record; None if none.

    Checks the fingerprint (when given) and the file name before reading, and the SHA-256 of the
    bytes read. When another process replaced the checkpoint in between (the record moved on),
    it reads again; a file that does not match a record unchanged for ``SETTLE_S`` is refused."""
    folder = Path(folder)
    mismatch_since = None
    for _ in range(200):
        found = _record(folder)
        if found is None:
            return None
        text, record = found
        if expected_fingerprint is not None and record.get("fingerprint") != json.loads(json.dumps(expected_fingerprint)):
            raise CheckpointError(
                f"checkpoint {folder / RECORD} belongs to another training (config or data differ); use a new folder"
            )
        name = str(record.get("file", ""))
        if not FILE_NAME.fullmatch(name):
            raise CheckpointError(f"checkpoint record {folder / RECORD} names {name!r}, not a checkpoint file of this folder")
        try:
            data = (folder / name).read_bytes()
        except FileNotFoundError:
            data = None
        if data is not None and hashlib.sha256(data).hexdigest() == record.get("sha256"):
            return record, data
        again = _record(folder)
        if again is None or again[0] != text:
            mismatch_since = None
            continue
        mismatch_since = mismatch_since or time.monotonic()
        if time.monotonic() - mismatch_since < SETTLE_S:
            time.sleep(0.02)
            continue
        raise CheckpointError(
            f"checkpoint {folder / name} is not the file its record {folder / RECORD} describes (changed or missing)"
        )
    raise CheckpointError(f"checkpoint folder {folder} keeps changing under this run; use a new folder")


def load_checkpoint(folder: Path, expected_fingerprint: dict, device: torch.device) -> dict | None:
    """This training's newest checkpoint (``read_latest``), loaded without running any code."""
    found = read_latest(folder, expected_fingerprint)
    if found is None:
        return None
    return torch.load(io.BytesIO(found[1]), map_location=device, weights_only=True)

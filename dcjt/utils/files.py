"""Small file helpers shared by checkpoints and weights: SHA-256 of a file, atomic replacement."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path


def file_sha256(path: Path) -> str:
    """Read in blocks: weights files and checkpoints are hundreds of MB."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def replace_atomic(write, path: Path) -> None:
    """``write(tmp)`` then rename onto ``path``: a kill never leaves half a file. The temp name is
    unique per process, so two runs writing the same folder never take each other's."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

"""Small file helpers shared by checkpoints, caches and weights: SHA-256 of a file, atomic
replacement, a lock on a folder."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import threading
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


@contextlib.contextmanager
def folder_lock(folder: Path):
    """An exclusive ``flock`` on the folder itself while the block runs: writers of one folder
    (threads or processes) take turns; readers that verify what they read need no lock."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def sigterm_unwinds():
    """Inside, SIGTERM raises ``KeyboardInterrupt`` (main thread, when nothing else handles it),
    so ``finally`` blocks run and remove their temp files; Python's default would end the process
    on the spot. The previous handler comes back afterwards."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous not in (signal.SIG_DFL, None):
        yield
        return

    def unwind(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

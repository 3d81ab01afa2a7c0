"""Worker processes that import this very ``dcjt``.

Workers are spawned, not forked: the callers (ZenML steps, test sessions) have threads, and a
forked child can inherit a lock one of them held (a forked cache-build worker hung in the full
test suite). A spawned worker imports its function from ``sys.path`` as it stands when the
worker starts, and a loaded MLflow model puts its packaged, partial copy of ``dcjt`` (the
serving closure, with a ``dcjt/data`` of its own) in front of ours, so ``dcjt.data.cache`` was
not found there; while the pool lives, the folder that holds this package goes first.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the folder that holds dcjt/


@contextmanager
def spawned_pool(workers: int, initializer: Callable[[], None] | None = None) -> Iterator[ProcessPoolExecutor]:
    saved = list(sys.path)
    sys.path.insert(0, PACKAGE_PARENT)
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=initializer) as pool:
            yield pool
    finally:
        sys.path[:] = saved

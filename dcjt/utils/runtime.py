"""How much of the machine a run takes (``runtime.threads``, ``runtime.workers``).

The runner puts both into the environment of every step (``DCJT_THREADS``, ``DCJT_WORKERS``);
each step applies the thread budget when it starts, and every pool (cache build, image checks,
the synthetic renderer) asks ``workers()`` how many processes it may start. Unset: every core.
"""

from __future__ import annotations

import os

THREADS_ENV, WORKERS_ENV = "DCJT_THREADS", "DCJT_WORKERS"


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def threads() -> int | None:
    """The CPU threads a step's computations may use (None: the library's default, every core)."""
    return _env_int(THREADS_ENV)


def workers(limit: int | None = None) -> int:
    """Worker processes a pool may start: ``runtime.workers``, else ``runtime.threads``, else
    every core; at most ``limit``."""
    n = _env_int(WORKERS_ENV) or threads() or os.cpu_count() or 1
    return max(1, min(n, limit) if limit else n)


def apply_threads() -> None:
    """Limit PyTorch (and OpenCV) to the run's thread budget, if one is set."""
    n = threads()
    if n is None:
        return
    import cv2
    import torch

    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # only settable before the first parallel work of the process
        pass


def environment(threads_: int | None, workers_: int | None) -> dict[str, str]:
    """The environment variables that carry the runtime settings to every step."""
    env = {}
    if threads_:
        env[THREADS_ENV] = str(threads_)
    if workers_:
        env[WORKERS_ENV] = str(workers_)
    return env

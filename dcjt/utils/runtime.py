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


def provenance() -> dict[str, str]:
    """What the same seed's numbers depend on, as run tags: thread counts, the CPU (model and the
    instruction set PyTorch's kernels use), the device, library versions, determinism settings.
    Reproducing a run's numbers needs the same CPU model and the same ``--threads``."""
    import platform

    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "runtime.threads": str(torch.get_num_threads()),
        "runtime.interop_threads": str(torch.get_num_interop_threads()),
        "runtime.threads_setting": os.environ.get(THREADS_ENV, "unset (every core)"),
        "runtime.cpu": cpu,
        "runtime.cpu_count": str(os.cpu_count()),
        "runtime.cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "runtime.device": device,
        "runtime.torch": torch.__version__,
        "runtime.numpy": numpy.__version__,
        "runtime.deterministic_algorithms": str(torch.are_deterministic_algorithms_enabled()),
        "runtime.cudnn_deterministic": str(torch.backends.cudnn.deterministic),
    }

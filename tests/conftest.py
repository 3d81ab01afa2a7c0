"""Shared fixtures: isolated state folders and tiny real-format datasets; the markers by lane.

Lanes: ``tests/unit`` (fast: ``bash scripts/test.sh --fast``) and ``tests/integration`` (pipelines,
the registry, servers, subprocesses, several processes). Markers: ``e2e`` (a whole pipeline, study
or command), ``slow`` (over about 20 s on 2 cores), ``gpu`` (needs CUDA; skipped without it).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from helpers import ROOT
from helpers.data import ALL_LABELS, random_images

_STATE = pytest.StashKey[Path]()


def _memory_backed_root() -> str | None:
    """``/dev/shm`` when it can hold a session (tmpfs, 8 GiB free, programs may run from it).

    The suite writes about 10 GB (stores, image caches, checkpoints, artifacts) and rewrites
    SQLite files at every step; kept in memory, none of it waits on or fills a disk. (It did not
    make a serial run measurably faster on this 2-core machine: its 48 % ``wa`` in ``top`` was an
    idle core, not a slow disk.) A user's own ``TMPDIR`` wins."""
    if os.environ.get("TMPDIR") or not os.path.isdir("/dev/shm"):
        return None
    try:
        fs = os.statvfs("/dev/shm")
    except OSError:
        return None
    roomy = fs.f_bavail * fs.f_frsize >= 8 * 2**30
    return "/dev/shm" if roomy and not fs.f_flag & os.ST_NOEXEC and os.access("/dev/shm", os.W_OK) else None


def _share_the_cores() -> None:
    """Under pytest-xdist each worker (and every process it starts) computes on its share of the
    cores. PyTorch's threads wait for each other at every operation: two workers of two threads
    each on two cores slowed a training test five fold (27 s alone, 143 s beside one busy process)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    share = str(max(1, (os.cpu_count() or 1) // workers))
    for name in ("DCJT_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, share)
    from dcjt.utils.runtime import apply_threads

    apply_threads()  # this worker's PyTorch and OpenCV, as every step does with DCJT_THREADS


def pytest_configure(config) -> None:
    """Every test session gets its own state: ZenML store, MLflow store, caches, checkpoints, and
    its temporary folders (``tmp_path`` and every subprocess's ``TMPDIR``), in memory where it can."""
    session = Path(tempfile.mkdtemp(prefix="dcjt-test-", dir=_memory_backed_root()))
    config.stash[_STATE] = session
    state, scratch = session / "state", session / "tmp"
    state.mkdir()
    scratch.mkdir()
    os.environ["TMPDIR"] = tempfile.tempdir = str(scratch)  # pytest's tmp_path and child processes
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    os.environ.setdefault("AUTO_OPEN_DASHBOARD", "false")
    os.environ["DCJT_HOME"] = str(state)
    os.environ["ZENML_CONFIG_PATH"] = str(state / "zenml")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{state / 'mlflow.db'}"
    os.environ["TORCH_HOME"] = str(state / "torch")  # torchvision's weight cache: empty unless a test fills it
    os.environ["DCJT_OFFLINE"] = "1"  # tests never download
    _share_the_cores()
    # ZenML finds its source root from __main__'s file; pytest-xdist's workers have none
    os.environ.setdefault("ZENML_CUSTOM_SOURCE_ROOT", str(ROOT))
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(state / "inductor")  # torch.compile's cache goes with the rest


def pytest_unconfigure(config) -> None:
    """Remove the session's state and temporary folders (2-3 GB, in memory where it could) unless
    asked to keep them.

    Leaving them behind filled the disk after a few hundred runs; DCJT_KEEP_TEST_STATE=1 keeps them
    for inspecting a failure.
    """
    state = config.stash.get(_STATE, None)
    if state is None or os.environ.get("DCJT_KEEP_TEST_STATE") == "1":
        return
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(autouse=True)
def _restore_sys_path():
    """A test that loads a registered model in this process (``mlflow.pyfunc.load_model``) gets
    the model's code folder put first on ``sys.path`` by MLflow; later tests' spawned processes
    would import that part of ``dcjt`` as the whole package. Each test leaves ``sys.path`` as found."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torchvision weight cache (TORCH_HOME) for one test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


@pytest.fixture
def rafdb_root(tmp_path):
    from dcjt.synthetic.layouts import write_rafdb

    labels = ALL_LABELS + ALL_LABELS[:7]
    splits = ["train"] * len(ALL_LABELS) + ["test"] * 7
    write_rafdb(tmp_path / "rafdb", random_images(len(labels)), labels, splits)
    return tmp_path / "rafdb", labels, splits

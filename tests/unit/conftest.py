"""The unit lane stays fast and in-process: a unit test that starts a subprocess, sleeps, or
imports ZenML fails here, naming what it did; such a test belongs in ``tests/integration``.

The guard patches the entry points every subprocess and sleep goes through (``subprocess.Popen``,
``os.fork``/``os.posix_spawn``, ``multiprocessing``'s process start, ``time.sleep``) in the test's
own thread and refuses a first import of ``zenml`` while a unit test runs.
"""

from __future__ import annotations

import multiprocessing.process
import os
import subprocess
import sys
import threading
import time

import mlflow  # noqa: F401  its import runs `uname -p` (platform.processor) once: here, not inside the first test that imports it
import pytest


class UnitLaneViolation(AssertionError):
    """A unit test did what only the integration lane may."""


def _refuse(what: str, original, test_thread: threading.Thread):
    """``original`` refused in the test's own thread. Other threads keep it: a library's
    background thread that sleeps between retries (MLflow's, ZenML's, left from an earlier test)
    would otherwise spin on the refusal and slow every test after it."""

    def refused(*args, **kwargs):
        if threading.current_thread() is not test_thread:
            return original(*args, **kwargs)
        raise UnitLaneViolation(f"unit lane: this test {what}; move it to tests/integration (tests/unit/conftest.py)")

    return refused


class _NoZenml:
    """A meta-path finder that refuses ``zenml`` (and its submodules) to unit tests."""

    def find_spec(self, name, path=None, target=None):
        if name == "zenml" or name.startswith("zenml."):
            raise UnitLaneViolation(f"unit lane: this test imports {name}; move it to tests/integration (tests/unit/conftest.py)")
        return None


def pytest_collection_modifyitems(config, items) -> None:
    """Refuse ZenML already at collection: a unit module that imports it at module level."""
    unit_only = all("tests/unit/" in str(i.path).replace(os.sep, "/") for i in items)
    if unit_only and "zenml" in sys.modules:
        raise UnitLaneViolation("unit lane: collecting the unit tests imported zenml; move that module to tests/integration")


@pytest.fixture(autouse=True)
def _unit_lane_guard(monkeypatch):
    here = threading.current_thread()
    refusals = [
        (subprocess.Popen, "__init__", "starts a subprocess (subprocess.Popen)"),
        (os, "fork", "forks (os.fork)"),
        (os, "posix_spawn", "spawns a process (os.posix_spawn)"),
        (multiprocessing.process.BaseProcess, "start", "starts a process (multiprocessing)"),
        (time, "sleep", "sleeps (time.sleep)"),
    ]
    for owner, name, what in refusals:
        monkeypatch.setattr(owner, name, _refuse(what, getattr(owner, name), here))
    finder = None
    if not any(m == "zenml" or m.startswith("zenml.") for m in sys.modules):
        finder = _NoZenml()
        sys.meta_path.insert(0, finder)
    yield
    if finder is not None:
        sys.meta_path.remove(finder)

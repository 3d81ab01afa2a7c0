"""The unit lane stays fast and in-process: a unit test that starts a subprocess, sleeps, or
imports ZenML fails here, naming what it did; such a test belongs in ``tests/integration``.

The guard patches the entry points every subprocess and sleep goes through (``subprocess.Popen``,
``os.fork``/``os.posix_spawn``, ``multiprocessing``'s process start, ``time.sleep``) and refuses a
first import of ``zenml`` while a unit test runs.
"""

from __future__ import annotations

import multiprocessing.process
import os
import subprocess
import sys
import time

import pytest


class UnitLaneViolation(AssertionError):
    """A unit test did what only the integration lane may."""


def _refuse(what: str):
    def refused(*args, **kwargs):
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
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("starts a subprocess (subprocess.Popen)"))
    monkeypatch.setattr(os, "fork", _refuse("forks (os.fork)"))
    monkeypatch.setattr(os, "posix_spawn", _refuse("spawns a process (os.posix_spawn)"))
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", _refuse("starts a process (multiprocessing)"))
    monkeypatch.setattr(time, "sleep", _refuse("sleeps (time.sleep)"))
    finder = None
    if not any(m == "zenml" or m.startswith("zenml.") for m in sys.modules):
        finder = _NoZenml()
        sys.meta_path.insert(0, finder)
    yield
    if finder is not None:
        sys.meta_path.remove(finder)

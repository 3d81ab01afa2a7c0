"""Fixtures of the integration lane: a model registry on a temporary store."""

from __future__ import annotations

import pytest

from helpers.registry import make_registry


@pytest.fixture
def registry(tmp_path, monkeypatch):
    yield from make_registry(tmp_path, monkeypatch)

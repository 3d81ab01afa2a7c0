"""The team stack's parts that need no Docker engine: its one-line stops, the code digest that
proves a step image is fresh, and the run configuration that builds the code into every step image."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from docker.errors import ContainerError

from app.console import StepContainerFailed, known_stop
from app.team import stack as ts

ROOT = Path(__file__).resolve().parents[2]


def _container_error(exit_status: int, stderr: bytes, step: str = "train_m_a") -> ContainerError:
    command = ["--entrypoint_config_source", "zenml.x", "--step_name", step, "--snapshot_id", "1"]
    return ContainerError(None, exit_status, command, "dcjt-team-steps:x", stderr)


def test_a_step_that_fails_in_its_container_is_one_line_naming_the_step_and_its_error():
    said = b"Step train_m_a has started.\n\xe2\x94\x82 frame\n"
    said += b"GateError: stage 1 (M_A): kappa 0.1 < 0.2; --set gates.min_kappa=0.1\n"
    assert known_stop(RuntimeError("x")) is None  # an unknown error stays a traceback
    wrapped = RuntimeError("pipeline failed")
    wrapped.__cause__ = _container_error(1, said)
    stop = known_stop(wrapped)
    assert isinstance(stop, StepContainerFailed)
    assert str(stop).startswith("step train_m_a failed in its container (exit 1): GateError: stage 1 (M_A): kappa 0.1")
    assert "rerun resumes" in str(stop) and "\n" not in str(stop)


def test_a_killed_step_container_says_it_was_killed():
    stop = known_stop(_container_error(137, b"", step="train_dcn"))
    assert "step train_dcn failed in its container (exit 137): killed" in str(stop)


def test_missing_credentials_are_named(monkeypatch):
    for key in ts.CREDENTIALS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "team")
    with pytest.raises(ts.TeamStackError, match="set MLFLOW_TRACKING_PASSWORD, TEAM_DB_PASSWORD in the environment"):
        ts.credentials()


def test_a_docker_engine_that_does_not_answer_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(ts.TeamStackError, match=r"Docker engine: not running or not reachable .*start it"):
        ts.docker_engine()


def test_the_code_digest_follows_every_code_file(tmp_path):
    for folder in ts.CODE_FOLDERS:
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    before = ts.code_digest(tmp_path)
    assert before == ts.code_digest(ROOT)
    target = tmp_path / "steps" / "training.py"
    target.write_text(target.read_text() + "\n# changed\n")
    assert ts.code_digest(tmp_path) != before
    target.rename(tmp_path / "steps" / "moved.py")  # same bytes, other name: another tree
    assert ts.code_digest(tmp_path) != before

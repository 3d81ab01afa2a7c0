"""The preflight against a real MLflow server behind its basic-auth app: a wrong account, no
account and a server that is gone are each one line before any step (the team stack's server runs
the same app on PostgreSQL; a database that is down is drilled by scripts/team_stack.sh check)."""

from __future__ import annotations

import os
import sys

import pytest

from app.preflight import PreflightError, check_tracking_server
from helpers.servers import free_port, server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("auth-server")
    ini = folder / "basic_auth.ini"
    ini.write_text(f"[mlflow]\ndefault_permission = NO_PERMISSIONS\ndatabase_uri = sqlite:///{folder / 'auth.db'}\n")
    port = free_port()
    env = dict(os.environ) | {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": "team",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "right-password",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only",
    }
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    cmd += ["--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with server(cmd, f"http://127.0.0.1:{port}/health", env=env):
        yield f"http://127.0.0.1:{port}"


def test_the_right_account_passes(auth_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "team")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "right-password")
    check_tracking_server(auth_server)


def test_a_wrong_password_is_one_line_naming_the_account(auth_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "team")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    with pytest.raises(PreflightError, match=r"refused user team \(HTTP 401\): set MLFLOW_TRACKING_USERNAME"):
        check_tracking_server(auth_server)


def test_no_account_says_the_variable_is_unset(auth_server, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with pytest.raises(PreflightError, match="refused no credentials .MLFLOW_TRACKING_USERNAME is unset"):
        check_tracking_server(auth_server)


def test_a_server_that_is_gone_is_unreachable():
    with pytest.raises(PreflightError, match=r"MLflow tracking server http://127.0.0.1:\d+ is unreachable"):
        check_tracking_server(f"http://127.0.0.1:{free_port()}")

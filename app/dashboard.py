"""``run.py dashboard``: ZenML's dashboard on the project's own store (``DCJT_HOME/zenml``).

ZenML's own ``zenml login --local`` starts a server and points the client at it, so the next
pipeline run would go through that server (and fail once it is stopped). This command runs the
same server (``zenml.zen_server``, ZenML's local deployment: no login, one user) in the foreground
with a configuration folder of its own (``DCJT_HOME/zenml-dashboard``) on the same SQLite store,
and leaves the client's configuration as it was; Ctrl-C stops it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click

SERVER_APP = "zenml.zen_server.zen_server_api:app"
SERVER_MODULES = ("uvicorn", "fastapi", "jwt", "multipart")  # what zenml[server] adds that the server imports


def store_file(config_dir: Path) -> Path:
    return config_dir / "local_stores" / "default_zen_store" / "zenml.db"


def store_problem(config_dir: Path) -> str | None:
    """Why the store cannot be served: missing, not a ZenML store, or another ZenML version's."""
    import zenml

    db = store_file(config_dir)
    if not db.is_file():
        return f"no ZenML store at {db}: run the main job first (bash scripts/demo.sh), or set DCJT_HOME to a state folder"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            version = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error as exc:
        return f"{db}: not a ZenML store ({exc})"
    if not version or version[0] != zenml.__version__:
        found = version[0] if version else "none"
        return (
            f"{db}: a store of ZenML {found}, this environment has ZenML {zenml.__version__}: run a pipeline with this "
            "environment once (it migrates the store), or use the environment that made it"
        )
    return None


def port_problem(host: str, port: int) -> str | None:
    """Why the server cannot listen on ``host:port``: something answers there, or it cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        if probe.connect_ex((host, port)) == 0:
            return f"port {port} on {host} is taken (something answers there): another dashboard or server; choose --port"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closed server's TIME_WAIT is free
        try:
            sock.bind((host, port))
        except OSError as exc:
            return f"port {port} on {host} is taken ({exc.strerror}): another dashboard or server; choose --port"
    return None


def server_env(home: Path, config_dir: Path) -> dict[str, str]:
    """The environment ZenML's own local deployment gives its server (``zen_server.deploy.daemon``)."""
    own = home / "zenml-dashboard"
    own.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "ZENML_SERVER": "true",
        "ZENML_SERVER_ALLOW_LOCAL_FILE_ACCESS": "true",
        "ZENML_CONFIG_PATH": str(own),
        "ZENML_LOCAL_STORES_PATH": str(config_dir / "local_stores"),
        "ZENML_SERVER_AUTH_SCHEME": "NO_AUTH",
        "ZENML_SERVER_DEPLOYMENT_TYPE": "local",
        "ZENML_DISABLE_DATABASE_MIGRATION": "True",
        "ZENML_SERVER_AUTO_ACTIVATE": "True",
        "ZENML_ANALYTICS_OPT_IN": "false",
    }


def wait_until_up(url: str, proc: subprocess.Popen, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/info", timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def skip_survey(url: str) -> None:
    """The dashboard greets a user who never answered ZenML's sign-up survey with it (name, email,
    newsletter) instead of the runs. The store's local user answers "no newsletter" once, with no
    name or email, so a team opening its own runs sees them; nothing leaves this machine."""
    import json

    with urllib.request.urlopen(f"{url}/api/v1/current-user", timeout=10) as answer:
        user = json.loads(answer.read())
    answered = dict(user["metadata"].get("user_metadata") or {})
    if user["body"].get("email_opted_in") is None or not answered.get("finished_onboarding_survey"):
        answered["finished_onboarding_survey"] = True
        body = json.dumps({"email_opted_in": False, "user_metadata": answered}).encode()
        request = urllib.request.Request(f"{url}/api/v1/current-user", body, {"Content-Type": "application/json"}, method="PUT")
        urllib.request.urlopen(request, timeout=10).close()


def _die_with_parent() -> None:
    """The server goes when this command goes, even if it is killed (Linux: PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: Ctrl-C and SIGTERM still stop it


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def dashboard(host: str, port: int) -> None:
    from app.console import third_party_log
    from app.environment import prepare_environment

    prepare_environment()
    from dcjt.utils.state import state_home

    home = state_home()
    config_dir = Path(os.environ["ZENML_CONFIG_PATH"])
    # ZenML's server extra, looked up without importing the server (its import opens the store)
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise click.ClickException(
            f"ZenML's server is not installed here (no {', '.join(missing)}): pip install 'zenml[server]==0.98.0'"
        )
    for problem in (store_problem(config_dir), port_problem(host, port)):
        if problem:
            raise click.ClickException(problem)
    log = third_party_log(home).with_name("zenml-dashboard.log")
    url = f"http://{host}:{port}"
    cmd = [sys.executable, "-m", "uvicorn", SERVER_APP, "--host", host, "--port", str(port), "--no-server-header"]
    with open(log, "a") as out:
        proc = subprocess.Popen(
            cmd, env=server_env(home, config_dir), stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
    # Ctrl-C and `kill` (or a service manager) stop it the same way. SIGINT is installed too: a
    # script's background job starts with SIGINT ignored, Python then raises nothing on it, and a
    # `kill -INT` left the server running (seen under pytest-xdist, launched from such a job).
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, _interrupt)
    try:
        if not wait_until_up(url, proc):
            proc.terminate()
            raise click.ClickException(f"ZenML's server did not start: its log is {log}")
        skip_survey(url)
        click.echo(f"ZenML dashboard: {url}  (store {store_file(config_dir)}; Ctrl-C stops it; server log {log})")
        proc.wait()
        raise click.ClickException(f"ZenML's server stopped (exit {proc.returncode}): its log is {log}")
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        click.echo("ZenML dashboard stopped")

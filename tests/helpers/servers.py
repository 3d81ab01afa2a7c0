"""Local servers for tests: a free port, a server process that must answer before the test goes
on (and is stopped after), MLflow's REST API."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(cmd: list[str], ready_url: str, env: dict | None = None):
    """Start a server process, wait until ``ready_url`` answers, stop it afterwards."""
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env or dict(os.environ))
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=2)
                break
            except OSError as exc:
                if time.time() > deadline or server.poll() is not None:
                    raise AssertionError(
                        f"server did not come up: {server.stderr.read()[-2000:] if server.poll() is not None else ''}"
                    ) from exc
                time.sleep(1)
        yield
    finally:
        server.terminate()
        server.wait(timeout=30)


def rest(port: int, path: str, body: dict | None = None) -> dict:
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/{path}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=60).read())

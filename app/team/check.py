"""``scripts/team_stack.sh check``: the team stack from nothing, the main job in it, the same job
in one process, every difference, the faults a team meets, and the cost; non-zero on any
difference. The last line is ``container_overhead: X`` (wall time in containers / in one process)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

import pandas as pd

from app.team import stack as ts
from dcjt.utils.state import REPO_ROOT

MODEL = "dcjt-synthetic"
COMPARED = ("accuracy", "val_accuracy", "images_seen", "epochs_run", "steps", "b_passes")


def _timed(cmd: list[str], env: dict, log: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    return rc, time.perf_counter() - t0


def _last_line(log: Path) -> str:
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    return lines[-1] if lines else ""


def local_env(home: Path) -> dict:
    """A run in one process: its own DCJT_HOME with SQLite, nothing of the team stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ZENML_CONFIG"))}
    return env | {"DCJT_HOME": str(home)}


def team_env(settings: ts.Settings, bridge: str) -> dict:
    return {**os.environ, **settings.env(bridge)}


def registry_state(env: dict) -> dict:
    """Version 1 of the model in the registry ``env`` points at: its aliases and val accuracy."""
    script = (
        f"import json, mlflow; c = mlflow.MlflowClient(); v = c.get_model_version({MODEL!r}, '1'); "
        "print(json.dumps({'aliases': sorted(v.aliases), 'val_accuracy': v.tags.get('val_accuracy'), "
        "'source_run': bool(v.run_id)}))"
    )
    if "MLFLOW_TRACKING_URI" not in env:
        env = env | {"MLFLOW_TRACKING_URI": f"sqlite:///{env['DCJT_HOME']}/mlflow.db"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"error": out.stderr.strip()[-300:]}


def predict_lines(env: dict, model: str, images: list[str]) -> list[str]:
    if "MLFLOW_TRACKING_URI" not in env:
        env = env | {"MLFLOW_TRACKING_URI": f"sqlite:///{env['DCJT_HOME']}/mlflow.db"}
    out = subprocess.run(
        [sys.executable, "run.py", "predict", "--model", model, *images], env=env, capture_output=True, text=True, cwd=REPO_ROOT
    )
    return [x for x in out.stdout.splitlines() if x.strip()] if out.returncode == 0 else [f"error: {out.stderr.strip()[-300:]}"]


def rest_view(uri: str) -> list[str]:
    """What the MLflow UI shows, read over the server's REST API with the team's account: the
    assertions of tests/integration/test_pipeline_e2e.py's REST test, against PostgreSQL."""
    headers = {
        "Authorization": "Basic "
        + b64encode(f"{os.environ['MLFLOW_TRACKING_USERNAME']}:{os.environ['MLFLOW_TRACKING_PASSWORD']}".encode()).decode(),
        "Content-Type": "application/json",
    }

    def rest(path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{uri}/api/2.0/mlflow/{path}", data=data, headers=headers)
        return json.loads(urllib.request.urlopen(request, timeout=60).read())

    problems = []
    experiment = rest(f"experiments/get-by-name?experiment_name={MODEL}")["experiment"]
    if {"key": "mlflow.experimentKind", "value": "custom_model_development"} not in experiment.get("tags", []):
        problems.append("REST: the experiment is not a training experiment")
    runs = rest("runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 1000})["runs"]
    parents = [r for r in runs if any(t["key"] == "zenml.run_name" for t in r["data"].get("tags", []))]
    inputs = [i for r in parents for i in r.get("inputs", {}).get("dataset_inputs", [])]
    contexts = {t["value"] for i in inputs for t in i.get("tags", []) if t["key"] == "mlflow.data.context"}
    if not {"train", "validation", "test"} <= contexts:
        problems.append(f"REST: the parent run's dataset inputs have contexts {sorted(contexts)}")
    version = rest(f"model-versions/get?name={MODEL}&version=1")["model_version"]
    vtags = {t["key"] for t in version.get("tags", [])}
    if "test accuracy" not in version.get("description", "") or "Promotion:" not in version.get("description", ""):
        problems.append("REST: version 1's description lacks its test accuracy or promotion")
    if not {"promotion.verdict", "promotion.metric", "promotion.val_digest"} <= vtags:
        problems.append(f"REST: version 1's tags lack the promotion record: {sorted(vtags)}")
    artifacts = rest(f"artifacts/list?run_id={version['run_id']}")
    if "model_card.md" not in {f["path"] for f in artifacts.get("files", [])}:
        problems.append("REST: the DCN's run has no model_card.md")
    return problems


def serve_answer(env: dict, model: str, image: str, port: int = 5071) -> str:
    """One request to ``run.py serve`` of ``model`` (loaded through the MLflow server)."""
    proc = subprocess.Popen(
        [sys.executable, "run.py", "serve", "--model", model, "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        body = json.dumps({"dataframe_records": [{"image_bytes": b64encode(Path(image).read_bytes()).decode()}]}).encode()
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
                )
                return urllib.request.urlopen(request, timeout=30).read().decode()
            except OSError:
                if proc.poll() is not None:
                    return "error: the server exited"
                time.sleep(2)
        return "error: no answer in 180 s"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_images(home: Path, n: int = 4) -> list[str]:
    """A few of the synthetic target's image files, as the run wrote them to its artifact store."""
    return sorted(str(p) for p in home.rglob("synth-target*/*.png"))[:n]


def check(settings: ts.Settings, args: list[str]) -> int:
    for key in ts.CREDENTIALS:  # throwaway credentials, kept in this process's environment only
        os.environ.setdefault(key, "team" if key == "MLFLOW_TRACKING_USERNAME" else secrets.token_hex(16))
    problems: list[str] = []
    client = ts.docker_engine()
    ts.say("down: from nothing")
    ts.down(settings)
    settings.home.mkdir(parents=True)
    logs = settings.home / "check"
    logs.mkdir()

    started = ts.up(settings)
    _, warm = ts.build_deps(settings)
    ts.say(f"deps image rebuilt warm in {warm:.1f} s")
    base_mb, deps_mb = ts.image_size_mb(client, settings.base_image), ts.image_size_mb(client, started.deps_image)

    # The main job in containers, then in one process (same seed, same config, same machine).
    cmd = [sys.executable, "run.py", "demo", "--set", "paths.handoff=artifact_store", "--run-config", str(ts.RUN_CONFIG)]
    rc_team, team_s = _timed(cmd, team_env(settings, started.bridge), logs / "team-run.log")
    ts.say(f"main job in containers: exit {rc_team}, {team_s:.0f} s ({logs / 'team-run.log'})")
    if rc_team:
        problems.append(f"the run in containers failed: {_last_line(logs / 'team-run.log')}")
    local_home = settings.home / "in-process"
    rc_local, local_s = _timed([sys.executable, "run.py", "demo"], local_env(local_home), logs / "in-process-run.log")
    ts.say(f"main job in one process: exit {rc_local}, {local_s:.0f} s")
    if rc_local:
        problems.append(f"the run in one process failed: {_last_line(logs / 'in-process-run.log')}")

    if not (rc_team or rc_local):
        team_table = pd.read_csv(settings.dcjt_home / "outputs" / "comparison.csv").set_index("variant")
        local_table = pd.read_csv(local_home / "outputs" / "comparison.csv").set_index("variant")
        print("\nin containers:\n" + team_table[list(COMPARED)].to_string())
        print("\nin one process:\n" + local_table[list(COMPARED)].to_string() + "\n")
        for variant in local_table.index:
            for column in COMPARED:
                a, b = team_table.at[variant, column], local_table.at[variant, column]
                if a != b:
                    problems.append(f"{variant}.{column}: {a} in containers, {b} in one process")
        team_reg, local_reg = registry_state(team_env(settings, started.bridge)), registry_state(local_env(local_home))
        ts.say(f"registry: version 1 in containers {team_reg}, in one process {local_reg}")
        if team_reg != local_reg:
            problems.append(f"registered version differs: {team_reg} vs {local_reg}")
        images = test_images(settings.dcjt_home)
        model = f"models:/{MODEL}/1"
        served_from = predict_lines(team_env(settings, started.bridge), model, images)
        local_pred = predict_lines(local_env(local_home), model, images)
        ts.say(
            f"predict through the MLflow server: {len(served_from)} lines, the same as from SQLite: {served_from == local_pred}"
        )
        if served_from != local_pred or not served_from or served_from[0].startswith("error"):
            problems.append(f"predict differs: {served_from[:2]} vs {local_pred[:2]}")
        view = rest_view(started.uri)
        ts.say(f"REST view of the run and version 1 through the server: {'as on SQLite' if not view else view}")
        problems += view
        answer = serve_answer(team_env(settings, started.bridge), model, images[0])
        ts.say(f"serve through the MLflow server answered: {answer[:160]}")
        if answer.startswith("error") or '"label"' not in answer:
            problems.append(f"serve: {answer[:200]}")

    # The step images carry this working tree's code, not a stale copy.
    tree = ts.code_digest(REPO_ROOT)
    built = ts.step_images(client)
    if not built:
        problems.append("no step image was built")
    step_mb = ts.image_size_mb(client, built[0]) if built else 0.0
    for image in built:
        inside = ts.image_code_digest(client, image)
        ts.say(f"step image {image}: code {'matches' if inside == tree else 'DIFFERS from'} the working tree ({inside[:12]})")
        if inside != tree:
            problems.append(f"step image {image} carries other code than the working tree")

    problems += faults(settings, started, logs)
    ts.say("down")
    ts.down(settings)
    leftovers = [t for image in client.images.list() for t in image.tags if t.split(":")[0] in (ts.STEP_REPO, ts.DEPS_REPO)]
    if leftovers or settings.home.exists():
        problems.append(f"down left {leftovers or settings.home}")

    print(f"\nimage sizes: base {base_mb:.0f} MB, deps {deps_mb:.0f} MB, step image {step_mb:.0f} MB (deps + the code)")
    print(f"builds: base {started.base_seconds:.0f} s cold, deps {started.deps_seconds:.0f} s cold, {warm:.1f} s warm")
    print(f"main job: {team_s:.0f} s in containers (step images built by ZenML included), {local_s:.0f} s in one process")
    for p in problems:
        print(f"DIFFERENCE: {p}")
    print(f"check: {'passed' if not problems else f'{len(problems)} difference(s)'}")
    print(f"container_overhead: {team_s / local_s:.2f}")
    return 1 if problems else 0


def faults(settings: ts.Settings, started: ts.Up, logs: Path) -> list[str]:
    """What a team meets: each must stop the run in one line naming the component, before any step
    (credentials, database) or at the step (a killed container), and a rerun must resume."""
    problems = []
    env = team_env(settings, started.bridge)
    tiny = [
        sys.executable,
        "run.py",
        "pipeline",
        "--config",
        "tiny",
        "--set",
        "paths.handoff=artifact_store",
        "--run-config",
        str(ts.RUN_CONFIG),
    ]

    def expect(name: str, rc: int, log: Path, needle: str) -> None:
        line = _last_line(log)
        ok = rc != 0 and needle in line and "Traceback" not in log.read_text()
        ts.say(f"fault {name}: exit {rc}: {line[:220]}")
        if not ok:
            problems.append(f"fault {name}: expected one line with {needle!r}, got exit {rc}: {line[:200]}")

    rc, _ = _timed(tiny, env | {"MLFLOW_TRACKING_PASSWORD": "wrong"}, logs / "fault-credentials.log")
    expect("wrong credentials", rc, logs / "fault-credentials.log", "refused user")
    ts.postgres_down(settings)
    rc, _ = _timed(tiny, env, logs / "fault-database.log")
    expect("database down", rc, logs / "fault-database.log", "backend store")
    ts.postgres_up(settings)

    # A killed step container: the run stops naming the step; the rerun takes the finished steps from the cache.
    proc = subprocess.Popen(tiny, cwd=REPO_ROOT, env=env, stdout=open(logs / "fault-kill.log", "w"), stderr=subprocess.STDOUT)
    client = ts.docker_engine()
    killed = None
    deadline = time.time() + 600
    while killed is None and proc.poll() is None and time.time() < deadline:
        for c in client.containers.list():
            if "train_m_a" in (c.attrs.get("Args") or []):
                time.sleep(3)
                c.kill()
                killed = "train_m_a"
                break
        time.sleep(1)
    rc = proc.wait()
    expect("killed container", rc, logs / "fault-kill.log", "train_m_a failed in its container")
    # The rerun, with the MLflow server restarted under it: MLflow's client retries while the
    # server is away; should a step fail anyway, one more rerun must finish from the cache.
    proc = subprocess.Popen(tiny, cwd=REPO_ROOT, env=env, stdout=open(logs / "fault-rerun.log", "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline:
        if any("train_m_b" in (c.attrs.get("Args") or []) for c in client.containers.list()):
            ts.mlflow_down(settings)
            ts.mlflow_up(settings, started.bridge)
            ts.say("MLflow server restarted during train_m_b of the rerun")
            break
        time.sleep(1)
    rc = proc.wait()
    ts.say(f"rerun after the kill, server restarted: exit {rc}: {_last_line(logs / 'fault-rerun.log')[:200]}")
    if rc != 0:
        rc, _ = _timed(tiny, env, logs / "fault-rerun-2.log")
        ts.say(f"one more rerun: exit {rc}")
    cached = (logs / "fault-rerun.log").read_text().count("cached")
    ts.say(f"the rerun found {cached} cached steps")
    if rc != 0 or cached == 0:
        problems.append(f"rerun after a killed container: exit {rc}, {cached} cached steps")
    return problems

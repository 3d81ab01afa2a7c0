"""The registered model in a clean environment made from its own requirements (no torch): build it,
measure it, predict with it, and compare with the torch network.

    .venv/bin/python -m scripts.serving_env [--model models:/dcjt-synthetic@champion] [IMAGE ...]

Downloads the model folder (project environment), creates a fresh virtual environment and installs
the model's ``requirements.txt`` into it from the package index (needs the network: a script, not a
test), checks that ``import torch`` fails there, runs ``mlflow models predict --env-manager local``
in it on the images (default: the first four of the demo's target folder) and compares each row
with the torch network's answer (``dcjt.serving.network``). Last line: ``serving_env_mb: X``.

``--image``: also build ``docker/Dockerfile.serve`` from the model folder (on the team stack's
Debian base, ``scripts/team_stack.sh up`` makes it), start it, send the images as ``image_bytes``
to its scoring server and compare the same way; then ``serving_image_mb: X`` is the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models:/dcjt-synthetic@champion")
    parser.add_argument("--image", action="store_true", help="also build and check the serving image")
    parser.add_argument("images", nargs="*", type=Path)
    args = parser.parse_args()
    from app.environment import prepare_environment, state_home

    demo = state_home() / "data" / "synth-target-0"
    images = args.images or sorted(demo.glob("*.png"))[:4]
    if not images:
        sys.exit(f"no images: run the main job first (it writes {demo}) or name some")

    prepare_environment()
    import mlflow

    from dcjt.serving.inputs import IMAGE_ROOTS_ENV, predict_inputs
    from dcjt.serving.network import TorchScorer, load_network

    work = Path(tempfile.mkdtemp(prefix="dcjt-serving-env-"))
    model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=args.model, dst_path=str(work / "model")))
    network = load_network(args.model)
    min_side = json.loads((model_dir / "artifacts" / "spec.json").read_text())["min_side"]
    os.environ[IMAGE_ROOTS_ENV] = os.pathsep.join(str(p.resolve().parent) for p in images)
    reference = predict_inputs(TorchScorer(network), [str(p) for p in images], min_side)

    env = work / "venv"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(model_dir / "requirements.txt")], check=True)
    built = time.perf_counter() - started
    no_torch = subprocess.run([str(env / "bin" / "python"), "-c", "import torch"], capture_output=True).returncode != 0
    (work / "input.csv").write_text(pd.DataFrame({"image": [str(p.resolve()) for p in images]}).to_csv(index=False))
    served = subprocess.run(
        [str(env / "bin" / "mlflow"), "models", "predict", "-m", str(model_dir), "-i", str(work / "input.csv"), "-t", "csv"]
        + ["--env-manager", "local", "-o", str(work / "out.json")],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{env / 'bin'}{os.pathsep}{os.environ['PATH']}"},
    )
    if served.returncode != 0:
        sys.exit(f"mlflow models predict failed in the clean environment: {served.stderr[-2000:]}")
    answer = json.loads((work / "out.json").read_text())
    rows = pd.DataFrame(answer["predictions"] if isinstance(answer, dict) else answer)
    probs = [c for c in reference if c.startswith("prob_")]
    diff = float(np.abs(rows[probs].to_numpy(float) - reference[probs].to_numpy(float)).max())
    same = rows["label"].tolist() == reference["label"].tolist()
    for path, row in zip(images, rows.itertuples()):
        print(f"{path.name}\t{row.emotion}\tlabel={row.label}\tvalence={row.valence:+.3f}\tarousal={row.arousal:+.3f}")
    mb = folder_mb(env)
    print(f"model {args.model}; environment {env} built in {built:.0f} s from {model_dir / 'requirements.txt'}")
    print(f"torch importable there: {not no_torch}; same labels as the torch network: {same}; max |p diff| {diff:.1e}")
    print(f"serving_env_mb: {mb:.0f}")
    ok = no_torch and same and diff <= 1e-4
    if args.image:
        rows = served_by_image(model_dir, images)
        image_diff = float(np.abs(rows[probs].to_numpy(float) - reference[probs].to_numpy(float)).max())
        image_same = rows["label"].tolist() == reference["label"].tolist()
        print(f"serving image: same labels as the torch network: {image_same}; max |p diff| {image_diff:.1e}")
        print(f"serving_image_mb: {IMAGE_SIZE_MB[0]:.0f}")
        ok = ok and image_same and image_diff <= 1e-4
    return 0 if ok else 1


IMAGE_TAG = "dcjt-serve:check"
IMAGE_SIZE_MB = [0.0]


def served_by_image(model_dir: Path, images: list[Path]) -> pd.DataFrame:
    """Build the serving image from ``model_dir``, run it, and ask its scoring server about ``images``."""
    import base64
    import urllib.request

    from app.team.stack import BASE_TAG, buildkit_cli, ca_bundle, docker_engine

    root = Path(__file__).resolve().parents[1]
    cli, env = buildkit_cli()
    cmd = [*cli, "-f", str(root / "docker" / "Dockerfile.serve"), "-t", IMAGE_TAG, "--build-arg", f"BASE_IMAGE={BASE_TAG}"]
    ca = ca_bundle()
    if ca:
        cmd += ["--secret", f"id=ca,src={ca}"]
    started = time.perf_counter()
    built = subprocess.run([*cmd, str(model_dir)], env=env, capture_output=True, text=True)
    if built.returncode != 0:
        sys.exit(f"docker build of the serving image failed: {built.stderr[-2000:]}")
    client = docker_engine()
    IMAGE_SIZE_MB[0] = client.images.get(IMAGE_TAG).attrs["Size"] / 1e6
    print(f"serving image {IMAGE_TAG} built in {time.perf_counter() - started:.0f} s: {IMAGE_SIZE_MB[0]:.0f} MB")
    container = client.containers.run(IMAGE_TAG, detach=True, ports={"8080/tcp": ("127.0.0.1", 0)})
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        data = [[base64.b64encode(p.read_bytes()).decode()] for p in images]
        body = json.dumps({"dataframe_split": {"columns": ["image_bytes"], "data": data}}).encode()
        for _ in range(120):  # the server takes a few seconds to start
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return pd.DataFrame(json.loads(answer.read())["predictions"])
            except OSError:
                time.sleep(1)
        sys.exit(f"the serving image's server did not answer: {container.logs()[-2000:].decode(errors='replace')}")
    finally:
        container.remove(force=True)


if __name__ == "__main__":
    sys.exit(main())

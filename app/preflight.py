"""Checks that need no step: what a run needs is there and answers, found before any step runs
(each failure one line naming the component and the fix)."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from dcjt.config import PipelineConfig


class PreflightError(RuntimeError):
    """Something the run needs is missing or unreachable; found before any step runs."""


def check_tracking_store(uri: str) -> None:
    """The MLflow store must be writable (SQLite) or answer (a server), else one clear line."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        folder = next(p for p in (db.parent, *db.parent.parents) if p.exists())
        if not folder.is_dir():
            raise PreflightError(f"MLflow tracking store {uri}: {folder} is a file, not a folder")
        try:  # a real write, not os.access: permission bits say nothing for root or read-only mounts
            with tempfile.TemporaryFile(dir=folder):
                pass
            if db.exists():
                with open(db, "r+b"):
                    pass
        except OSError as exc:
            raise PreflightError(f"MLflow tracking store {uri}: cannot write {exc.filename or folder}: {exc.strerror}") from None
        if db.exists() and (problem := sqlite_problem(db)):
            raise PreflightError(
                f"MLflow tracking store {db}: {problem}; move it away to start an empty store (or set MLFLOW_TRACKING_URI)"
            )
    elif uri.startswith(("http://", "https://")):
        check_tracking_server(uri)


def sqlite_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable SQLite database, or None (read-only: nothing is changed)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        return f"not an SQLite database ({exc})"
    return None


def check_zenml_store() -> None:
    """ZenML's local config and store (``ZENML_CONFIG_PATH``) must be readable before ZenML is
    imported (it would stop with a traceback): one line naming the file."""
    import os

    import yaml

    folder = Path(os.environ.get("ZENML_CONFIG_PATH", ""))
    if not folder.name:
        return
    config = folder / "config.yaml"
    if config.is_file():
        try:
            data = yaml.safe_load(config.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            data = exc
        if data is not None and not isinstance(data, dict):
            raise PreflightError(
                f"ZenML config {config}: not a ZenML configuration ({type(data).__name__}); move the folder {folder} "
                "away to start an empty ZenML store"
            )
    db = folder / "local_stores" / "default_zen_store" / "zenml.db"
    if db.is_file() and (problem := sqlite_problem(db)):
        raise PreflightError(f"ZenML store {db}: {problem}; move the folder {folder} away to start an empty ZenML store")


def check_tracking_server(uri: str) -> None:
    """The server answers, takes this account (``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` when
    set) and reaches its database: one request that needs all three."""
    import base64
    import os
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5)
    except (urllib.error.URLError, OSError) as exc:
        raise PreflightError(f"MLflow tracking server {uri} is unreachable: {getattr(exc, 'reason', exc)}") from None
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    headers = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()} if user else {}
    request = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1", headers=headers)
    try:
        urllib.request.urlopen(request, timeout=15)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            who = f"user {user}" if user else "no credentials (MLFLOW_TRACKING_USERNAME is unset)"
            raise PreflightError(
                f"MLflow tracking server {uri} refused {who} (HTTP {exc.code}): set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD to an account of the server"
            ) from None
        raise PreflightError(
            f"MLflow tracking server {uri} answered HTTP {exc.code} ({exc.reason}): its backend store (the database) "
            "is down or refuses it; see the server's log"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise PreflightError(f"MLflow tracking server {uri} did not answer: {getattr(exc, 'reason', exc)}") from None


def check_champion_record(cfg: PipelineConfig) -> None:
    """A champion the promotion gate could not compare fairly (no record of its training rows)
    stops the run before any training, unless the run replaces it anyway (``--force-promote``)."""
    if not cfg.register_model or cfg.promotion.force:
        return
    from dcjt.registry.record import unrecorded_champion

    problem = unrecorded_champion(cfg.model_name)
    if problem:
        raise PreflightError(problem)


def resolve_network_weights(cfg: PipelineConfig) -> None:
    """Fetch or find the starting weights before any step runs, and pin them in the config (an
    alias becomes a version, a file gets its digest) so ZenML's cache key follows what is loaded."""
    from dcjt.train.weights import WeightsError, resolve_weights
    from dcjt.utils.files import file_sha256

    try:
        pinned = resolve_weights(cfg.network.weights)
    except WeightsError as exc:
        raise PreflightError(f"network.weights: {exc}") from None
    is_file = pinned not in ("imagenet", "none") and not pinned.startswith("models:/")
    digest = file_sha256(Path(pinned)) if is_file else None
    cfg.network = cfg.network.model_copy(update={"weights": pinned, "weights_digest": digest})


def check_dataset_roots(cfg: PipelineConfig) -> None:
    """Each dataset root holds its release's layout: a few file checks, so the command line makes
    them before torch, ZenML or the stores load (a wrong folder is refused in about a second, and
    no state folder is made for it)."""
    from dcjt.data.readers import DatasetFormatError, check_layout

    if cfg.data.kind != "files":
        return
    roles = [("target", cfg.data.target)] + [(f"extras.{k}", s) for k, s in enumerate(cfg.data.extras)]
    for role, spec in roles:
        try:
            check_layout(spec.dataset, spec.root)
        except DatasetFormatError as exc:
            raise PreflightError(f"data.{role}: {exc}") from None


def preflight(cfg: PipelineConfig) -> None:
    """Checks that need no step, once the stores are open: the champion's record, the caches' room
    and the network's starting weights (before the stores: ``check_dataset_roots`` and
    ``app.runner.check_stores``)."""
    check_champion_record(cfg)
    check_cache_size(cfg)
    resolve_network_weights(cfg)  # last: it may download


CACHE_WARN_BYTES = 20 << 30  # above this, a run says how big its image caches will be


def cache_estimate(cfg: PipelineConfig) -> tuple[int, int]:
    """(images, bytes) of the decoded-image caches a run builds: every image of every dataset at
    ``network.image_size`` squared, RGB."""
    import os

    from dcjt.models.images import IMAGE_SUFFIXES

    if cfg.data.kind == "synthetic":
        w = cfg.data.world
        images = w.n_target + w.n_extra + w.n_extra2
    else:
        images = 0
        for spec in (cfg.data.target, *cfg.data.extras):
            listing = Path(spec.root) / "fer2013new.csv"
            if spec.dataset == "ferplus" and listing.is_file():  # its images are rows of a CSV
                with open(listing, "rb") as fh:
                    images += max(0, sum(1 for _ in fh) - 1)
                continue
            images += sum(1 for _, _, files in os.walk(spec.root) for name in files if name.lower().endswith(IMAGE_SUFFIXES))
    return images, images * cfg.network.image_size**2 * 3


def check_cache_size(cfg: PipelineConfig, warn=None) -> None:
    """Refuse a run whose new image caches cannot fit the cache folder's disk, and say how big
    they will be above ``CACHE_WARN_BYTES`` (``network.image_size`` grows them with its square)."""
    import shutil
    import sys

    images, need = cache_estimate(cfg)
    folder = Path(cfg.paths.cache_dir)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    have = sum(f.stat().st_size for f in folder.glob("*.npy")) if folder.is_dir() else 0  # caches kept from earlier runs
    free = shutil.disk_usage(existing).free
    gib = lambda n: f"{n / (1 << 30):.1f} GiB"  # noqa: E731
    what = f"{images:,} images at network.image_size={cfg.network.image_size}"
    if need - have > free:
        raise PreflightError(
            f"image caches need about {gib(need)} ({what}) and {existing} has {gib(free)} free: lower --image-size, "
            "or set paths.cache_dir on a larger disk"
        )
    if need > CACHE_WARN_BYTES:
        (warn or (lambda line: print(line, file=sys.stderr)))(f"warning: image caches of about {gib(need)} ({what})")


def check_handoff(flavor: str, cfg: PipelineConfig, run_config: dict | None) -> None:
    """Stop at submission when steps would hand each other image caches and checkpoints by path
    on a disk they do not share (``paths.handoff: shared_disk`` is right only for the local
    orchestrator and for Kubernetes pods that mount one volume holding both folders)."""
    p = cfg.paths
    if p.handoff == "artifact_store" or flavor == "local":
        return
    fix = "run with --set paths.handoff=artifact_store (caches travel through the artifact store)"
    if flavor != "kubernetes":
        raise PreflightError(
            f"the {flavor} orchestrator gives each step its own disk (Kubeflow ignores volume mounts), so an image "
            f"cache built in one step would be missing in the next: {fix}"
        )
    settings = [((run_config or {}).get("settings") or {}, "the run configuration")]
    settings += [((s or {}).get("settings") or {}, f"step {name}") for name, s in ((run_config or {}).get("steps") or {}).items()]
    for block, where in settings:
        pod = (block.get("orchestrator.kubernetes") or {}).get("pod_settings") or {}
        mounts = [m.get("mountPath", "") for m in pod.get("volume_mounts") or []]
        if where != "the run configuration" and not mounts:
            continue  # the step keeps the run's pods settings
        for key in ("cache_dir", "checkpoint_root"):
            folder = Path(getattr(p, key))
            if not any(m and folder.is_relative_to(m) for m in mounts):
                raise PreflightError(
                    f"paths.{key} = {folder} is on no volume that {where} mounts ({mounts or 'none'}): each pod "
                    f"would have its own copy; set paths.{key} under a mounted volume, or {fix}"
                )


def docker_engine(needed_by: str = ""):
    """The Docker engine's client, or one line saying it does not answer (and what needs it)."""
    try:
        import docker

        engine = docker.from_env()
        engine.ping()
    except Exception as exc:
        needed = f", needed by {needed_by}" if needed_by else ""
        raise PreflightError(
            f"Docker engine: not running or not reachable ({type(exc).__name__}){needed}: "
            "start it (dockerd, or systemctl start docker)"
        ) from None
    return engine


def check_container_side(stack, run_config: dict | None) -> None:
    """A stack that builds or runs step images: the Docker engine answers, the parent image of the
    run configuration is on this machine (a local build) and the container registry answers, each
    before any step (one line naming the component and the fix)."""
    import urllib.error
    import urllib.request

    settings = ((run_config or {}).get("settings") or {}).get("docker") or {}
    # The local orchestrator builds nothing, although ZenML gives a stack with a deployer (the
    # default stack has one) a temporary local image builder once it validates it.
    builds = stack.orchestrator.flavor != "local" or stack.step_operator is not None
    local_build = stack.image_builder is None or stack.image_builder.flavor == "local"
    if builds and (stack.orchestrator.flavor == "local_docker" or local_build):
        import docker

        engine = docker_engine(f"the stack's {stack.orchestrator.flavor} orchestrator")
        parent = settings.get("parent_image")
        if parent and stack.container_registry is None:
            try:
                engine.images.get(parent)
            except docker.errors.ImageNotFound:
                raise PreflightError(
                    f"parent image {parent} (settings.docker.parent_image of the run configuration) is not on this machine: "
                    "build it (scripts/team_stack.sh up builds dcjt-cpu-deps:team) or docker pull it"
                ) from None
    if stack.container_registry is not None:
        uri = stack.container_registry.config.uri
        host = uri.split("//")[-1].split("/")[0]
        try:
            urllib.request.urlopen(f"https://{host}/v2/", timeout=10)
        except urllib.error.HTTPError:
            pass  # it answers (401 until docker login): reachable
        except (urllib.error.URLError, OSError) as exc:
            raise PreflightError(
                f"container registry {uri}: unreachable ({getattr(exc, 'reason', exc)}): the step images cannot be pushed; "
                "check its address in the stack, or docker login"
            ) from None

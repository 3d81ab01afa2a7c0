"""Checks that need no step: what a run needs is there and answers, found before any step runs
(each failure one line naming the component and the fix)."""

from __future__ import annotations

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
    elif uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5)
        except (urllib.error.URLError, OSError) as exc:
            raise PreflightError(f"MLflow tracking server {uri} is unreachable: {getattr(exc, 'reason', exc)}") from None


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


def preflight(cfg: PipelineConfig, uri: str) -> None:
    """Checks that need no step: the tracking store, each dataset root's release layout, and the
    network's starting weights."""
    from dcjt.data.readers import DatasetFormatError, check_layout

    check_tracking_store(uri)
    check_champion_record(cfg)
    if cfg.data.kind == "files":
        roles = [("target", cfg.data.target)] + [(f"extras.{k}", s) for k, s in enumerate(cfg.data.extras)]
        for role, spec in roles:
            try:
                check_layout(spec.dataset, spec.root)
            except DatasetFormatError as exc:
                raise PreflightError(f"data.{role}: {exc}") from None
    resolve_network_weights(cfg)  # last: it may download


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

"""Run a configured pipeline locally (or on the active ZenML stack) with MLflow tracking.

State (ZenML store, MLflow SQLite store and artifacts, image caches, checkpoints) lives under
``DCJT_HOME`` (default ``./state``) unless ``ZENML_CONFIG_PATH`` / ``MLFLOW_TRACKING_URI`` say
otherwise. Call ``prepare_environment`` before importing ZenML.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from dcjt.config import REPO_ROOT, PipelineConfig, fingerprint, state_home


class ScheduleNotSupported(RuntimeError):
    pass


class PreflightError(RuntimeError):
    """Something the run needs is missing or unreachable; found before any step runs."""


@contextlib.contextmanager
def state_lock(home: Path):
    """An exclusive lock on the state folder while its stores are initialised: two runs started
    at once on a fresh folder would otherwise both create ZenML's and MLflow's databases."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".init.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
    from steps.registry import unrecorded_champion

    problem = unrecorded_champion(cfg.model_name)
    if problem:
        raise PreflightError(problem)


def resolve_network_weights(cfg: PipelineConfig) -> None:
    """Fetch or find the starting weights before any step runs, and pin them in the config (an
    alias becomes a version, a file gets its digest) so ZenML's cache key follows what is loaded."""
    from dcjt.files import file_sha256
    from dcjt.weights import WeightsError, resolve_weights

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


def prepare_environment(cfg: PipelineConfig | None = None) -> str:
    """Point ZenML and MLflow at their stores; returns the MLflow tracking URI."""
    home = state_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ZENML_CONFIG_PATH", str(home / "zenml"))
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    os.environ.setdefault("ZENML_LOGGING_COLORS_DISABLED", "true")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("AUTO_OPEN_DASHBOARD", "false")
    configured = cfg.mlflow.tracking_uri if cfg is not None else None
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    from pipelines.console import quiet_third_party, route_stops

    quiet_third_party(home)
    route_stops(home)
    mlflow.set_tracking_uri(uri)
    return uri


# MLflow 3's UI opens an experiment on its GenAI overview unless it carries this kind.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(name: str) -> None:
    """Create the experiment (artifacts under DCJT_HOME when the store is local) as a classic
    machine-learning experiment, so the UI opens on its training runs."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        local = mlflow.get_tracking_uri().startswith("sqlite:")
        location = (state_home() / "mlartifacts" / name).as_uri() if local else None
        mlflow.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
    elif experiment.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND["mlflow.experimentKind"]:
        for key, value in EXPERIMENT_KIND.items():
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)


@dataclass
class RunOutcome:
    run_name: str
    tracking_uri: str
    model_uri: str
    comparison_path: str
    comparison: object
    promotion: dict | None
    summary: dict
    seconds: float


def initialise_stores(experiment: str) -> None:
    """Create ZenML's store and stack and MLflow's database and experiment, one process at a time."""
    with state_lock(state_home()):
        from zenml.client import Client

        _ = Client().active_stack_model  # creates the store, the default user and stack if new
        ensure_experiment(experiment)


def run_pipeline(cfg: PipelineConfig, *, schedule: str | None = None, run_config: str | None = None) -> RunOutcome | None:
    uri = prepare_environment(cfg)
    preflight(cfg, uri)
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(REPO_ROOT))
    from pipelines.dcjt import dcjt_pipeline

    initialise_stores(cfg.experiment)
    pipe = _configured(dcjt_pipeline, cfg, run_config)
    fingerprint_datasets(cfg)
    if schedule:
        return _schedule(pipe, cfg, schedule)
    run, seconds = _launch(pipe, cfg, cfg.name)
    report = run.steps["report_run"]
    comparison = report.outputs["comparison"][0].load()
    promote = run.steps.get("register_and_promote")
    promotion = promote.outputs["promotion"][0].load() if promote is not None else None
    return RunOutcome(
        run_name=run.name,
        tracking_uri=uri,
        model_uri=f"models:/{cfg.model_name}@champion",
        comparison_path=report.outputs["comparison_csv"][0].load(),
        comparison=comparison,
        promotion=promotion,
        summary=report.outputs["summary"][0].load(),
        seconds=seconds,
    )


@dataclass
class FinetuneOutcome:
    run_name: str
    tracking_uri: str
    evaluation: dict
    promotion: dict | None
    seconds: float


def run_finetune(cfg: PipelineConfig, source: str, *, run_config: str | None = None) -> FinetuneOutcome:
    """Fine-tune ``source`` (``models:/NAME@alias`` or a checkpoint file) on ``cfg``'s target;
    ``run_config``: a ZenML run configuration for a remote stack, as for the DCJT pipeline."""
    from dcjt.finetune import FinetuneError, check_source

    uri = prepare_environment(cfg)
    cfg.network = cfg.network.model_copy(update={"weights": source})
    try:
        check_source(source, cfg)
    except FinetuneError as exc:
        raise PreflightError(str(exc)) from None
    preflight(cfg, uri)  # pins models:/NAME@alias to its version, a file to its digest
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(REPO_ROOT))
    from pipelines.finetune import finetune_pipeline

    initialise_stores(cfg.experiment)
    pipe = _configured(finetune_pipeline, cfg, run_config)
    fingerprint_datasets(cfg)
    run, seconds = _launch(pipe, cfg, f"{cfg.name}-finetune")
    summary = run.steps["close_finetune"].outputs["summary"][0].load()
    return FinetuneOutcome(run.name, uri, summary["evaluation"], summary["promotion"], seconds)


def _configured(pipe, cfg: PipelineConfig, run_config: str | None):
    """``pipe`` with the run configuration applied, once the handoff suits the active orchestrator."""
    from zenml.client import Client

    flavor = Client().active_stack.orchestrator.flavor
    check_handoff(flavor, cfg, yaml.safe_load(Path(run_config).read_text()) if run_config else None)
    return pipe.with_options(config_path=run_config) if run_config else pipe


def fingerprint_datasets(cfg: PipelineConfig) -> None:
    """Dataset folders' identities into the config: changed files change ZenML's cache keys."""
    if cfg.data.kind == "files":
        for spec in (cfg.data.target, *cfg.data.extras):
            spec.fingerprint = fingerprint(spec.root)


def _launch(pipe, cfg: PipelineConfig, prefix: str):
    """Run ``pipe`` under a fresh run name; (the finished run, seconds). A failed run's MLflow
    parent run is marked failed."""
    run_name = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    try:
        run = pipe.with_options(run_name=run_name)(config=cfg)
    except BaseException:
        _fail_parent_run(run_name)
        raise
    return _refresh(run), time.perf_counter() - t0


def _refresh(run):
    from zenml.client import Client

    return Client().get_pipeline_run(run.id)


def _fail_parent_run(run_name: str) -> None:
    """Mark the MLflow parent run of a failed pipeline run as FAILED (if it was opened)."""
    try:
        import mlflow

        for r in mlflow.search_runs(
            search_all_experiments=True, filter_string=f"tags.`zenml.run_name` = '{run_name}'", output_format="list"
        ):
            mlflow.MlflowClient().set_terminated(r.info.run_id, "FAILED")
    except Exception as exc:  # never hide the pipeline's own error
        print(f"warning: could not mark MLflow run of {run_name} failed: {exc}", file=sys.stderr)


def crontab_line(cron: str, argv: list[str]) -> str:
    args = [a for i, a in enumerate(argv) if a != "--schedule" and (i == 0 or argv[i - 1] != "--schedule")]
    return f"{cron} cd {shlex.quote(str(REPO_ROOT))} && {shlex.quote(sys.executable)} run.py {' '.join(map(shlex.quote, args))}"


def _schedule(pipe, cfg: PipelineConfig, cron: str):
    from zenml.client import Client
    from zenml.config.schedule import Schedule

    stack = Client().active_stack
    if not stack.orchestrator.config.is_schedulable:
        raise ScheduleNotSupported(
            f"the active ZenML stack '{stack.name}' (orchestrator '{stack.orchestrator.flavor}') cannot schedule runs; "
            "register a Kubernetes or Kubeflow stack (see README), or use cron:"
        )
    pipe.with_options(schedule=Schedule(cron_expression=cron, name=f"{cfg.name}-schedule"))(config=cfg)
    return None

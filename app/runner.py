"""Run a configured pipeline locally (or on the active ZenML stack) with MLflow tracking: the
DCJT pipeline, fine-tuning, a schedule; what a finished run hands back."""

from __future__ import annotations

import hashlib
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from app.environment import initialise_stores, prepare_environment
from app.preflight import (
    PreflightError,
    check_container_side,
    check_dataset_roots,
    check_handoff,
    check_tracking_store,
    check_zenml_store,
    preflight,
)
from app.schedule import ScheduleNotSupported
from dcjt.config import PipelineConfig
from dcjt.data.identity import fingerprint
from dcjt.experiments.records import RunSummary
from dcjt.registry.lifecycle import PromotionOutcome
from dcjt.train.scoring import RowEvaluation
from dcjt.utils.runtime import environment as runtime_environment
from dcjt.utils.state import REPO_ROOT, state_home


@dataclass
class RunOutcome:
    run_name: str
    tracking_uri: str
    model_uri: str
    comparison_path: str
    comparison: pd.DataFrame
    promotion: PromotionOutcome | None
    summary: RunSummary
    seconds: float

    def model_line(self) -> str:
        return model_line(self.promotion, self.model_uri)


def model_line(promotion: PromotionOutcome | None, model_uri: str) -> str:
    """What to load after a registration: the champion, or the registered version while nothing
    answers to ``@champion`` (registered, not promoted, and no champion before)."""
    if promotion is not None and promotion.champion_version is None:
        return f"no champion yet; this run's version: models:/{promotion.model_name}/{promotion.version}"
    return model_uri


@dataclass
class FinetuneOutcome:
    run_name: str
    tracking_uri: str
    evaluation: RowEvaluation
    promotion: PromotionOutcome | None
    seconds: float


def _output(run, step: str, name: str):
    return run.steps[step].outputs[name][0].load()


def run_pipeline(
    cfg: PipelineConfig, *, schedule: str | None = None, run_config: str | None = None, cache: bool = True
) -> RunOutcome | None:
    """The DCJT pipeline on ``cfg`` (or a cron schedule of it); what it reported. ``cache=False``
    runs every step again (``run.py --no-cache``)."""
    check_dataset_roots(cfg)  # a wrong folder makes no state folder
    uri = prepare_environment(cfg)  # before ZenML is imported: it reads its settings once
    check_stores(uri)
    initialise_stores(cfg.experiment)  # before the preflight reads the registry: one process at a time
    preflight(cfg)
    from pipelines.dcjt import GPU_STEPS, dcjt_pipeline

    pipe = _prepared(dcjt_pipeline, cfg, run_config, GPU_STEPS)
    pipe = pipe if cache else pipe.with_options(enable_cache=False)
    if schedule:
        return _schedule(pipe, cfg, schedule)
    run, seconds = _launch(pipe, cfg, f"{cfg.name}-{cfg.method.variant_name}-s{cfg.seed}")
    promote = run.steps.get("register_and_promote")
    # Written here from the artifact: the step's own file is on its container's disk when the
    # steps run elsewhere (the same content when they share this one).
    comparison, comparison_path = _output(run, "report_run", "comparison"), Path(cfg.paths.outputs) / "comparison.csv"
    comparison_path.parent.mkdir(parents=True, exist_ok=True)
    comparison.to_csv(comparison_path, index=False)
    return RunOutcome(
        run_name=run.name,
        tracking_uri=uri,
        model_uri=f"models:/{cfg.model_name}@champion",
        comparison_path=str(comparison_path),
        comparison=comparison,
        promotion=promote.outputs["promotion"][0].load() if promote is not None else None,
        summary=_output(run, "report_run", "summary"),
        seconds=seconds,
    )


def check_stores(uri: str) -> None:
    """Before anything opens them: a down server, a wrong account, a garbage database or ZenML
    config in one line (the libraries would stop with a traceback)."""
    check_tracking_store(uri)
    check_zenml_store()


def run_finetune(cfg: PipelineConfig, source: str, *, run_config: str | None = None) -> FinetuneOutcome:
    """Fine-tune ``source`` (``models:/NAME@alias`` or a checkpoint file) on ``cfg``'s target;
    ``run_config``: a ZenML run configuration for a remote stack, as for the DCJT pipeline."""
    from dcjt.train.finetune import FinetuneError, check_source

    check_dataset_roots(cfg)
    uri = prepare_environment(cfg)  # before ZenML is imported: it reads its settings once
    check_stores(uri)
    initialise_stores(cfg.experiment)
    cfg.network = cfg.network.model_copy(update={"weights": source})
    try:
        check_source(source, cfg)
    except FinetuneError as exc:
        raise PreflightError(str(exc)) from None
    preflight(cfg)  # pins models:/NAME@alias to its version, a file to its digest
    from pipelines.finetune import GPU_STEPS, finetune_pipeline

    pipe = _prepared(finetune_pipeline, cfg, run_config, GPU_STEPS)
    run, seconds = _launch(pipe, cfg, f"{cfg.name}-finetune-s{cfg.seed}")
    summary = _output(run, "close_finetune", "summary")
    promotion = PromotionOutcome(**summary["promotion"]) if summary["promotion"] else None
    return FinetuneOutcome(run.name, uri, RowEvaluation(**summary["evaluation"]), promotion, seconds)


def _prepared(pipe, cfg: PipelineConfig, run_config: str | None, gpu_steps: tuple[str, ...]):
    """``pipe`` ready to run on initialised stores: the run configuration expanded (its
    ``gpu_step`` settings applied to every step of ``gpu_steps``) once the handoff suits the active
    orchestrator, the runtime settings in every step's environment, the datasets fingerprinted."""
    from zenml.client import Client
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(REPO_ROOT))
    expanded = expand_run_config(yaml.safe_load(Path(run_config).read_text()), gpu_steps) if run_config else None
    check_handoff(Client().active_stack.orchestrator.flavor, cfg, expanded)
    check_container_side(Client().active_stack, expanded)
    env = runtime_environment(cfg.runtime.threads, cfg.runtime.workers)
    pipe = pipe.with_options(environment=env) if env else pipe
    if expanded is not None:
        path = state_home() / "run-configs" / f"{cfg.name}-{Path(run_config).stem}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(expanded, sort_keys=False))
        pipe = pipe.with_options(config_path=str(path))
    fingerprint_datasets(cfg)
    return pipe


def expand_run_config(run_config: dict, gpu_steps: tuple[str, ...]) -> dict:
    """A run configuration whose ``gpu_step`` block (the GPU image, a GPU, node selectors) is
    given to exactly the steps that train or run a network (``GPU_STEPS``, derived from the one
    list of rows): the YAML names no step."""
    out = dict(run_config)
    gpu = out.pop("gpu_step", None)
    if gpu is not None:
        steps = dict(out.get("steps") or {})
        for name in gpu_steps:
            steps[name] = {**gpu, **(steps.get(name) or {})}
        out["steps"] = steps
    return out


def fingerprint_datasets(cfg: PipelineConfig) -> None:
    """Dataset folders' identities into the config: changed files change ZenML's cache keys."""
    if cfg.data.kind == "files":
        for spec in (cfg.data.target, *cfg.data.extras):
            spec.fingerprint = fingerprint(spec.root)
            if spec.audit and Path(spec.audit).is_file():  # an edited audit changes the key too
                spec.fingerprint += "-" + hashlib.sha256(Path(spec.audit).read_bytes()).hexdigest()[:12]


def _launch(pipe, cfg: PipelineConfig, prefix: str):
    """Run ``pipe`` under a fresh run name that reads in MLflow's runs table (config, variant and
    seed first, then the time); (the finished run, seconds). A failed run's MLflow parent run is
    marked failed."""
    run_name = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    try:
        run = pipe.with_options(run_name=run_name)(config=cfg)
    except BaseException as exc:
        _fail_parent_run(run_name, exc)
        raise
    return _refresh(run), time.perf_counter() - t0


def _refresh(run):
    from zenml.client import Client

    return Client().get_pipeline_run(run.id)


def _fail_parent_run(run_name: str, exc: BaseException | None = None) -> None:
    """Mark the MLflow parent run of a failed pipeline run FAILED (if it was opened), with why:
    the one-line stop (a gate's stage, measure, value, limit and the ``--set`` that overrides it)
    as tags and as the run's description, so the UI says what the console said."""
    from app.console import known_stop

    stop = known_stop(exc) if exc is not None else None  # a signal too: the console's interrupted line
    if stop is not None:
        reason = str(stop)
    elif exc is not None:
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    else:
        reason = "unknown"
    tags = {"failure.reason": reason[:4900], "failure.kind": type(stop or exc).__name__ if exc is not None else "unknown"}
    tags["mlflow.note.content"] = f"**This run stopped.** {reason}"
    tags_of_gate, metrics = gate_record(stop)
    try:
        import mlflow

        client = mlflow.MlflowClient()
        for r in mlflow.search_runs(
            search_all_experiments=True, filter_string=f"tags.`zenml.run_name` = '{run_name}'", output_format="list"
        ):
            stamp = int(time.time() * 1000)
            client.log_batch(
                r.info.run_id,
                metrics=[mlflow.entities.Metric(k, v, stamp, 0) for k, v in metrics.items()],
                tags=[mlflow.entities.RunTag(k, v) for k, v in (tags | tags_of_gate).items()],
            )
            try:
                _log_screened_tables(run_name, r.info.run_id)
            except Exception as err:  # the tables are a courtesy; the failure is what matters
                print(f"warning: could not log the datasets of failed run {run_name}: {err}", file=sys.stderr)
            client.set_terminated(r.info.run_id, "FAILED")
    except Exception as err:  # never hide the pipeline's own error
        print(f"warning: could not mark MLflow run of {run_name} failed: {err}", file=sys.stderr)


def gate_record(stop: BaseException | None) -> tuple[dict[str, str], dict[str, float]]:
    """A failed health gate as the failed run's tags (stage, measure, value, limit, fix: what the
    UI's runs table can show as columns) and metrics (every gate of that stage, observed and limit)."""
    from dcjt.method.health import GateError

    report = getattr(stop, "report", None) if isinstance(stop, GateError) else None
    if report is None:
        return {}, {}
    failed = next(g for g in report.gates if not g.passed)
    tags = {
        "failure.stage": report.stage,
        "failure.measure": failed.name,
        "failure.value": f"{failed.observed:.4g}",
        "failure.limit": f"{failed.rule} {failed.threshold:.4g}",
        "failure.fix": f"--set {failed.key}=VALUE or --set gates.mode=warn",
    }
    slug = lambda name: re.sub(r"[^0-9A-Za-z_./ -]+", "_", name).strip("_ ")  # noqa: E731  MLflow's key alphabet
    metrics = {}
    for g in report.gates:
        metrics |= {f"gate.{slug(g.name)}.observed": g.observed, f"gate.{slug(g.name)}.limit": g.threshold}
    return tags, metrics


def _log_screened_tables(run_name: str, mlflow_run_id: str) -> None:
    """The label tables the failed run had read (A and B after the leakage screen), as the MLflow
    run's dataset inputs: a run that stopped at a gate still says what it was trained on."""
    import mlflow
    from zenml.client import Client

    from dcjt.data.labels import EMOTIONS, split_rows
    from dcjt.utils.mlflow_io import log_tables, table_name

    try:
        step = Client().get_pipeline_run(run_name).steps.get("screen_datasets")
    except KeyError:
        return
    if step is None or str(step.status) not in ("completed", "cached"):
        return
    tables = []
    for output, splits in (("target_screened", ("train", "val", "test")), ("extra_screened", ("train",))):
        table = step.outputs[output][0].load()
        tables += [(table_name(split_rows(table, s), s), split_rows(table, s), s.replace("val", "validation")) for s in splits]
    with mlflow.start_run(run_id=mlflow_run_id):
        log_tables([t for t in tables if len(t[1])], EMOTIONS)


def _schedule(pipe, cfg: PipelineConfig, cron: str):
    from zenml.client import Client
    from zenml.config.schedule import Schedule

    stack = Client().active_stack
    if not stack.orchestrator.config.is_schedulable:
        raise ScheduleNotSupported(
            f"the active ZenML stack '{stack.name}' (orchestrator '{stack.orchestrator.flavor}') cannot schedule runs; "
            "register a Kubernetes or Kubeflow stack (docs/how-to/clusters.md), or use cron:"
        )
    pipe.with_options(schedule=Schedule(cron_expression=cron, name=f"{cfg.name}-schedule"))(config=cfg)
    return None

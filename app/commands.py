"""What each command of ``run.py`` does (``run.py`` only declares the options): load the config,
run, print what a user needs, and end every known failure in one line (``app.console``)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import click

from app.console import stop_in_one_line
from dcjt.utils.runtime import apply_threads
from dcjt.utils.runtime import environment as runtime_environment

# CLI shortcuts: option name -> config field they set (``--set`` reaches every other field).
SHORTCUTS = {
    "target_root": "data.target.root",
    "extra_root": "data.extra.root",
    "image_size": "network.image_size",
    "backbone": "network.backbone",
    "head": "network.head",
    "weights": "network.weights",
    "mapping": "method.mapping",
    "seed": "seed",
    "world": "data.world.preset",
    "force_promote": "promotion.force",
    "threads": "runtime.threads",
    "budget": "budget.mode",
}


def shortcut_values(shortcuts: dict) -> dict:
    """The config fields the given shortcut options set (``SHORTCUTS``; options not given: none)."""
    return {SHORTCUTS[name]: value for name, value in shortcuts.items() if value is not None}


def config_from(config_name: str, overrides, shortcuts: dict):
    """The run's configuration: the file, ``--set`` values, then the shortcut options given."""
    from dcjt.config_files import ConfigError, load_config

    try:
        return load_config(config_name, overrides, shortcut_values(shortcuts))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def echo_promotion(promo) -> None:
    if promo:
        verdict = "promoted to champion" if promo.promoted else "the current champion stays"
        click.echo(f"\nregistered {promo.model_name} version {promo.version} ({promo.verdict}): {verdict}")
        click.echo(f"promotion gate: {promo.reason}")


def pipeline(config_name: str, overrides, *, schedule: str | None, run_config: str | None, **shortcuts) -> None:
    """Run the DCJT pipeline (DCJT + the configured baselines), register and promote the model."""
    from app.schedule import ScheduleNotSupported, check_cron, crontab_line

    no_cache = bool(shortcuts.pop("no_cache", None))
    if schedule is not None:  # refused before anything runs, prints or is attached
        try:
            check_cron(schedule)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    cfg = config_from(config_name, overrides, shortcuts)
    from app.preflight import PreflightError, check_dataset_roots

    try:
        check_dataset_roots(cfg)  # before torch or ZenML load (run_pipeline checks again, for its other callers)
    except PreflightError as exc:
        stop_in_one_line(exc)
    from app.console import echo_outcome
    from app.runner import run_pipeline

    try:
        outcome = run_pipeline(cfg, schedule=schedule, run_config=run_config, cache=not no_cache)
    except ScheduleNotSupported as exc:
        click.echo(f"error: {exc}", err=True)
        click.echo(crontab_line(schedule, sys.argv[1:]), err=True)
        sys.exit(2)
    except (Exception, KeyboardInterrupt) as exc:  # a signal stops in one line too
        stop_in_one_line(exc)
    if outcome is None:
        click.echo(f"schedule attached: {schedule}")
        return
    echo_outcome(cfg, outcome)
    echo_promotion(outcome.promotion)
    echo_outcome_paths(outcome)


def echo_outcome_paths(outcome) -> None:
    from app.console import third_party_log
    from dcjt.utils.links import mlflow_run_url
    from dcjt.utils.state import state_home

    click.echo(f"pipeline wall time: {outcome.seconds:.0f} s")
    if outcome.tracking_uri.startswith("sqlite:"):
        ui = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", outcome.tracking_uri]
        click.echo(f"open the MLflow UI: {shlex.join(ui)}")
    elif outcome.tracking_uri.startswith(("http://", "https://")):
        click.echo(f"open the MLflow UI: {outcome.tracking_uri}")
    summary = getattr(outcome, "summary", None)
    run = None
    if summary is not None:
        import mlflow

        run = mlflow.get_run(summary.mlflow_run_id)
    # the runs view directly: MLflow 3's UI opens an experiment on its GenAI overview otherwise
    url = mlflow_run_url(outcome.tracking_uri, run.info.experiment_id, run.info.run_id) if run is not None else None
    if url:
        click.echo(f"this run in the UI: {url} (all runs: {url.rsplit('/', 1)[0]})")
    zenml = Path(sys.executable).with_name("zenml")
    store = os.environ.get("ZENML_CONFIG_PATH", str(state_home() / "zenml"))
    click.echo(f"ZenML runs: ZENML_CONFIG_PATH={shlex.quote(store)} {shlex.quote(str(zenml))} pipeline runs list")
    if run is not None:
        page = run.data.tags.get("zenml.dashboard_url")
        click.echo(f"ZenML dashboard: {shlex.quote(sys.executable)} run.py dashboard, then this run: {page}")
    click.echo(f"library messages: {third_party_log(state_home())}")
    click.echo(f"tracking_uri: {outcome.tracking_uri}")
    click.echo(f"model: {outcome.model_line()}")
    click.echo(f"comparison: {outcome.comparison_path}")


# A study compares rows: by default each gets the same optimiser steps. At the demo's 10 epochs the
# converged budget stopped no row early, so target only saw half of DCJT's steps (results 2026-12-07).
STUDY_BUDGET = "steps"


def study_shortcuts(shortcuts: dict, overrides) -> dict:
    """A study's ``--budget``: as given, else ``STUDY_BUDGET`` unless ``--set budget.mode=...``."""
    if shortcuts.get("budget") is None and not any(o.startswith("budget.mode=") for o in overrides):
        return {**shortcuts, "budget": STUDY_BUDGET}
    return shortcuts


def study(config_name: str, table: str, seeds: str, only, name, overrides, worlds=None, **shortcuts) -> None:
    """Run a paper table as pipeline runs (rows x seeds); write study.csv and study.md, print the
    table; with ``worlds``, on each world of the suite, then the cross-world regret summary.
    ``shortcuts``: ``budget`` and ``threads`` (``SHORTCUTS``)."""
    from dcjt.experiments.tables import StudyError, parse_seeds, study_rows
    from dcjt.synthetic.suite import parse_worlds

    try:
        seed_list = parse_seeds(seeds)
        study_rows(table, list(only) or None)
        values = shortcut_values(study_shortcuts(shortcuts, overrides))
        from app.study import StudySpec, run_study, run_world_study

        spec = StudySpec(config_name, table, seed_list, tuple(overrides), values, list(only) or None, name)
        if worlds:
            try:
                world_list = parse_worlds(worlds)
            except ValueError as exc:
                raise StudyError(str(exc)) from None
            if any(o.startswith("data.world.preset=") for o in overrides):
                raise StudyError("--worlds and --world (data.world.preset) both name the world: give one of them")
            outcome = run_world_study(spec, world_list, progress=click.echo)
        else:
            outcome = run_study(spec, progress=click.echo)
    except StudyError as exc:
        raise click.ClickException(str(exc)) from exc
    except (Exception, KeyboardInterrupt) as exc:  # a signal stops in one line too
        stop_in_one_line(exc)
    click.echo("\n" + outcome.markdown)
    click.echo(f"study wall time: {outcome.seconds:.0f} s")
    if worlds:
        click.echo(f"study_csv: {outcome.csv_path}")
        click.echo(f"study_md: {outcome.md_path}")
        click.echo(f"select_regret: {outcome.select_regret:.2f}")
        return
    click.echo(f"mlflow_study_run: {outcome.mlflow_run_id}")
    click.echo(f"study_csv: {outcome.csv_path}")
    click.echo(f"study_md: {outcome.md_path}")


def select(config_name: str, seeds: str, candidates, overrides, threads=None, **race) -> None:
    """Race the candidate variants over seeds, register the one that wins on validation from its own
    run. ``race``: ``strategy``, ``alpha``, ``rung``, ``parallel`` (``app.select.run_select``)."""
    from dcjt.experiments.tables import StudyError, parse_seeds

    try:
        seed_list = parse_seeds(seeds)
        from app.select_request import CANDIDATES, RaceSettings, check_request, threads_per_run

        settings = RaceSettings(**race)  # checked before torch or ZenML load (the CUDA devices: in run_select)
        check_request(list(candidates) or list(CANDIDATES), seed_list, settings)
        threads_per_run(settings.parallel, threads, os.cpu_count() or 1, devices=0)
        from app.select import run_select

        values = shortcut_values(study_shortcuts({"threads": threads}, overrides))  # candidates race at equal steps
        outcome = run_select(
            config_name,
            seed_list,
            candidates=list(candidates) or None,
            race=settings,
            overrides=overrides,
            values=values,
            progress=click.echo,
        )
    except StudyError as exc:
        raise click.ClickException(str(exc)) from exc
    except (Exception, KeyboardInterrupt) as exc:  # a signal stops in one line too
        stop_in_one_line(exc)
    click.echo("\n" + outcome.markdown)
    click.echo(f"selected: {outcome.evidence.summary()}")
    echo_promotion(outcome.promotion)
    click.echo(f"model: {outcome.model_line()}")


def finetune(source: str, config_name: str, overrides, threads, run_config) -> None:
    """Fine-tune a registered model or a checkpoint on another target (paper Table 7)."""
    from app.runner import run_finetune

    cfg = config_from(config_name, overrides, {"threads": threads})
    try:
        outcome = run_finetune(cfg, source, run_config=run_config)
    except (Exception, KeyboardInterrupt) as exc:  # a signal stops in one line too
        stop_in_one_line(exc)
    test = outcome.evaluation.test
    click.echo(
        f"fine-tuned {source} on {cfg.name}: test accuracy {100 * test.accuracy:.2f} % "
        f"(epoch {outcome.evaluation.selected_epoch} selected on validation, {outcome.evaluation.images_seen} images seen)"
    )
    echo_promotion(outcome.promotion)
    click.echo(f"tracking_uri: {outcome.tracking_uri}")
    click.echo(f"test_accuracy: {100 * test.accuracy:.2f}")


def limit_threads(threads: int | None) -> None:
    """``--threads`` for a command that runs in this process (ingest, leakage): its pools start at
    most that many workers and PyTorch / OpenCV use that many threads (``dcjt.utils.runtime``)."""
    if threads:
        os.environ.update(runtime_environment(threads, None))
        apply_threads()


def ingest(dataset, root, out, val_fraction, split_seed, max_bad_fraction, no_image_check) -> None:
    """Read a dataset root into a validated label table and print counts per split and class."""
    from dcjt.data.labels import counts_by_split_and_class
    from dcjt.data.readers import ingest as read_release
    from dcjt.data.validation import write_valid_table

    try:
        df, report = read_release(
            dataset,
            root,
            val_fraction=val_fraction,
            split_seed=split_seed,
            max_bad_fraction=max_bad_fraction,
            check=not no_image_check,
        )
        write_valid_table(df, out)
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(counts_by_split_and_class(df).to_string())
    for reason, n in report.excluded.items():
        if n:
            click.echo(f"excluded: {reason}: {n}")
    for note in report.notes:
        click.echo(f"note: {note}")
    for path in report.skipped_images:
        click.echo(f"skipped unreadable image: {path}")
    click.echo(f"table: {out}")


def leakage(target, extras, max_distance, image_size) -> None:
    """Count the training images that duplicate a test image of the target. Last line: leaked: N."""
    from app.leakage import LeakageInputError, check_leakage

    try:
        lines, leaked = check_leakage(target, list(extras), max_distance=max_distance, image_size=image_size)
    except LeakageInputError as exc:
        raise click.ClickException(str(exc)) from None
    for line in lines:
        click.echo(line)
    click.echo(f"leaked: {leaked}")


def cannot_load(model_uri: str, exc: Exception) -> click.ClickException:
    return click.ClickException(f"cannot load {model_uri}: {str(exc).splitlines()[0][:300]}")


def onnx_refusal(model_uri: str) -> None:
    """Stop in one line when ``model_uri`` cannot be found or has no ONNX graph to serve."""
    import mlflow

    from dcjt.registry.served import onnx_problem

    try:
        problem = onnx_problem(model_uri)
    except mlflow.exceptions.MlflowException as exc:
        raise cannot_load(model_uri, exc) from None
    if problem:
        raise click.ClickException(problem)


def load_served_model(model_uri: str):
    """The registered model as it is served: its ONNX graph under ONNX Runtime (refused without one)."""
    import mlflow

    onnx_refusal(model_uri)
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except mlflow.exceptions.MlflowException as exc:
        raise cannot_load(model_uri, exc) from None


def export_onnx(model_uri: str, images) -> None:
    """Register a version without ONNX again with its ONNX graph; aliases move to it."""
    from app.environment import prepare_environment

    prepare_environment()
    from dcjt.registry.served import ExportInputError, without_onnx

    try:
        source = without_onnx(model_uri)  # a bad URI or a version that has one: refused before torch loads
    except ExportInputError as exc:
        raise click.ClickException(str(exc)) from None
    from dcjt.registry.exporting import add_onnx
    from dcjt.serving.export import ServingExportError

    try:
        name, version, moved = add_onnx(model_uri, Path(images) if images else None, source)
    except (ExportInputError, ServingExportError) as exc:
        raise click.ClickException(str(exc)) from None
    aliases = f"; aliases moved to it: {', '.join(moved)}" if moved else ""
    click.echo(f"registered {name} version {version}: the network of {model_uri} with its ONNX graph{aliases}")


def predict(model_uri: str, inputs, fmt: str = "text") -> None:
    """Print label and valence/arousal for each image (files, or folders of images)."""
    from app.environment import prepare_environment

    prepare_environment()
    import pandas as pd

    from dcjt.models.images import IMAGE_SUFFIXES
    from dcjt.serving.inputs import IMAGE_ROOTS_ENV

    paths = []
    for item in map(Path, inputs):
        paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if item.is_dir() else [item]
    if not paths:
        raise click.ClickException("no images found")
    # The files named on this command line are the only ones the model may read.
    os.environ[IMAGE_ROOTS_ENV] = os.pathsep.join(str(p.resolve().parent) for p in paths)
    model = load_served_model(model_uri)
    out = model.predict(pd.DataFrame({"image": [str(p) for p in paths]}))
    if fmt == "text":
        for path, row in zip(paths, out.itertuples()):
            if row.error:
                click.echo(f"{path}\terror: {row.error}", err=True)
            else:
                click.echo(f"{path}\t{row.emotion}\tlabel={row.label}\tvalence={row.valence:+.3f}\tarousal={row.arousal:+.3f}")
    else:  # one row per image, every column of the model's output
        table = out.assign(image=[str(p) for p in paths])[["image", *out.columns]]
        if fmt == "csv":
            click.echo(table.to_csv(index=False), nl=False)
        else:  # strict JSON: refused rows hold null, never NaN
            records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
            click.echo(json.dumps(records, indent=1, allow_nan=False))
    failed = int((out["error"] != "").sum())
    if failed:
        click.echo(f"{failed} of {len(paths)} images could not be classified", err=True)
        sys.exit(1)


def serve(model_uri: str, host: str, port: int, image_roots) -> None:
    """MLflow's scoring server on the project's tracking store, from this environment (``uvicorn``
    from this virtual environment on PATH, so it works from a fresh shell)."""
    from app.environment import prepare_environment
    from dcjt.serving.inputs import IMAGE_ROOTS_ENV

    uri = prepare_environment()
    onnx_refusal(model_uri)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env[IMAGE_ROOTS_ENV] = os.pathsep.join(str(Path(r).resolve()) for r in image_roots)
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        host,
        "-p",
        str(port),
    ]
    os.execvpe(cmd[0], cmd, env)


def weights_import(file: Path, any_hash: bool) -> None:
    from dcjt.train.weights import WeightsError, import_imagenet

    try:
        target = import_imagenet(file, any_hash=any_hash)
    except WeightsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"installed: {target}")


def weights_where() -> None:
    from dcjt.train.weights import imagenet_file

    path = imagenet_file()
    click.echo(f"{path}\t{'present' if path.is_file() else 'missing'}")


def synth(out: Path, layout, n_target: int, n_extra: int, size: int, seed: int) -> None:
    from dcjt.synthetic.disk import write_world

    for line in write_world(out, layout, n_target=n_target, n_extra=n_extra, size=size, seed=seed):
        click.echo(line)


def worlds() -> None:
    """The world suite, a line each."""
    from dcjt.synthetic.suite import WORLDS

    width = max(map(len, WORLDS))
    for w in WORLDS.values():
        click.echo(f"{w.name:<{width}}  {w.description}")
    click.echo(f"\n{len(WORLDS)} worlds: --world NAME on pipeline, study and select; study --worlds suite runs a table on all")

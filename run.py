"""DCJT command line. With no arguments: the demo (DCJT + baselines on the synthetic world, CPU).

Subcommands: ingest, synth, pipeline, predict. ``python run.py COMMAND --help`` for details.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from dcjt.config import DATASETS

# CLI shortcuts: option name -> config field they set (``--set`` reaches every other field).
SHORTCUTS = {
    "target_root": "data.target.root",
    "extra_root": "data.extra.root",
    "image_size": "image_size",
    "backbone": "network.backbone",
    "head": "network.head",
    "weights": "network.weights",
    "mapping": "method.mapping",
    "seed": "seed",
    "force_promote": "promotion.force",
}


PIPELINE_OPTIONS = [
    click.option("--config", "config_name", default="demo", show_default=True, help="configs/NAME.yaml or a YAML path"),
    click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override any config value, e.g. dcn.lam=15"),
    click.option("--target-root", type=click.Path(file_okay=False), help="target dataset folder (data.target.root)"),
    click.option("--extra-root", type=click.Path(file_okay=False), help="extra dataset folder (data.extra.root)"),
    click.option("--image-size", type=int, help="image side in pixels (image_size)"),
    click.option("--backbone", help="network.backbone: resnet18 | tiny"),
    click.option("--head", help="network.head: linear | arm"),
    click.option(
        "--weights", metavar="SOURCE", help="network.weights: imagenet | none | FILE | models:/NAME@champion (fine-tune)"
    ),
    click.option("--mapping", help="method.mapping: none | global | emotion | emotion_ot"),
    click.option("--seed", type=int, help="seed of data splits, initialisation and shuffles"),
    click.option("--force-promote", is_flag=True, default=None, help="promote the new model even if the gate keeps the champion"),
    click.option("--schedule", metavar="CRON", help="attach a cron schedule instead of running now"),
    click.option("--threads", type=click.IntRange(min=1), help="CPU threads for training (default: all cores)"),
    click.option(
        "--run-config",
        type=click.Path(dir_okay=False, exists=True),
        help="ZenML run configuration for a remote stack, e.g. configs/remote-kubernetes.yaml",
    ),
]


def pipeline_options(f):
    for option in reversed(PIPELINE_OPTIONS):
        f = option(f)
    return f


def set_threads(threads: int | None) -> None:
    """Limit PyTorch's CPU threads, so several runs on one machine do not each take every core."""
    if threads:
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)


@click.group(invoke_without_command=True)
@pipeline_options
@click.pass_context
def cli(ctx: click.Context, **kwargs) -> None:
    """DCJT: train FER models on datasets whose annotators disagree.

    With no command: run the pipeline (the demo unless --config says otherwise).
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    if ctx.invoked_subcommand is None:
        ctx.invoke(pipeline_cmd, **kwargs)


@cli.command("ingest")
@click.option("--dataset", type=click.Choice(DATASETS), required=True)
@click.option("--root", type=click.Path(path_type=Path), required=True, help="dataset root in its release layout")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="label table to write (.parquet)")
@click.option("--val-fraction", default=0.1, show_default=True, help="validation share carved from train if none")
@click.option("--split-seed", type=int, default=None, help="seed of the carved validation split (default: fixed by the dataset)")
@click.option(
    "--max-bad-fraction",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="share of unreadable images that may be skipped",
)
@click.option("--no-image-check", is_flag=True, help="skip decoding every image at ingestion")
def ingest_cmd(dataset, root, out, val_fraction, split_seed, max_bad_fraction, no_image_check) -> None:
    """Read a dataset root into a validated label table and print counts per split and class."""
    from dcjt.data.labels import counts_by_split_and_class
    from dcjt.data.readers import ingest
    from dcjt.data.validation import write_valid_table

    try:
        df, report = ingest(
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


def stop_in_one_line(exc: BaseException) -> None:
    """A failure whose message says what to do ends the command in one line (exit code 1); its
    traceback goes to the error log. Anything else is raised as it is."""
    from dcjt.config import state_home
    from pipelines.console import known_stop, log_stop

    stop = known_stop(exc)
    if stop is None:
        raise exc
    path = log_stop(state_home(), exc)
    raise click.ClickException(f"{stop} (traceback: {path})") from None


def echo_promotion(promo: dict | None) -> None:
    if promo:
        verdict = "promoted to champion" if promo["promoted"] else "the current champion stays"
        click.echo(f"\nregistered {promo['model_name']} version {promo['version']} ({promo['verdict']}): {verdict}")
        click.echo(f"promotion gate: {promo['reason']}")


@cli.command("pipeline")
@pipeline_options
def pipeline_cmd(config_name, overrides, schedule, run_config, threads, **shortcuts) -> None:
    """Run the DCJT pipeline (DCJT + the configured baselines), register and promote the model."""
    from dcjt.config import ConfigError, load_config

    values = {SHORTCUTS[name]: value for name, value in shortcuts.items() if value is not None}
    try:
        cfg = load_config(config_name, overrides, values)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    from pipelines.runner import ScheduleNotSupported, crontab_line, run_pipeline

    set_threads(threads)
    try:
        outcome = run_pipeline(cfg, schedule=schedule, run_config=run_config)
    except ScheduleNotSupported as exc:
        click.echo(f"error: {exc}", err=True)
        click.echo(crontab_line(schedule, sys.argv[1:]), err=True)
        sys.exit(2)
    except Exception as exc:
        stop_in_one_line(exc)
    if outcome is None:
        click.echo(f"schedule attached: {schedule}")
        return
    table = outcome.comparison.assign(
        accuracy=lambda d: (d["accuracy"] * 100).round(2), val_accuracy=lambda d: (d["val_accuracy"] * 100).round(2)
    )
    budget = "until validation stops improving" if cfg.budget.mode == "converged" else "equal optimiser steps"
    click.echo(
        f"\nAccuracy (%) on the target's test split and, where every model was selected, its validation split; "
        f"every row: the DCN's recipe, {budget}:"
    )
    click.echo(table.to_string(index=False))
    echo_promotion(outcome.promotion)
    click.echo(f"pipeline wall time: {outcome.seconds:.0f} s")
    if outcome.tracking_uri.startswith("sqlite:"):
        click.echo(f"open the MLflow UI: {sys.executable} -m mlflow ui --backend-store-uri {outcome.tracking_uri}")
    from dcjt.config import state_home
    from pipelines.console import third_party_log

    click.echo(f"library messages: {third_party_log(state_home())}")
    click.echo(f"tracking_uri: {outcome.tracking_uri}")
    click.echo(f"model: {outcome.model_uri}")
    click.echo(f"comparison: {outcome.comparison_path}")


@cli.command("study")
@click.option("--config", "config_name", default="demo", show_default=True, help="configs/NAME.yaml or a YAML path")
@click.option(
    "--table",
    default="main",
    show_default=True,
    help="main | 1 | 2 | 8 | extras | all (paper Tables 1, 2, 8; extras: A + one or two extras, SCN)",
)
@click.option("--seeds", default="0-4", show_default=True, help="e.g. 0,1,2 or 0-4 (at most 1,000 runs; 0..99999)")
@click.option("--row", "only", multiple=True, help="only this row (repeatable); names as in the table")
@click.option("--name", help="study name (MLflow tag; default CONFIG-table-TABLE)")
@click.option("--budget", type=click.Choice(["converged", "steps"]), help="budget.mode for every row")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override any config value")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for training (default: all cores)")
def study_cmd(config_name, table, seeds, only, name, budget, overrides, threads) -> None:
    """Run a paper table as pipeline runs (rows x seeds); write study.csv and study.md, print the table."""
    from dcjt.study import StudyError, parse_seeds, study_rows

    set_threads(threads)
    try:
        seed_list = parse_seeds(seeds)
        study_rows(table, list(only) or None)
        values = {"budget.mode": budget} if budget else {}
        from pipelines.study import run_study

        outcome = run_study(
            config_name,
            table,
            seed_list,
            overrides=overrides,
            values=values,
            only=list(only) or None,
            name=name,
            progress=click.echo,
        )
    except StudyError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:
        stop_in_one_line(exc)
    click.echo("\n" + outcome.markdown)
    click.echo(f"study wall time: {outcome.seconds:.0f} s")
    click.echo(f"mlflow_study_run: {outcome.mlflow_run_id}")
    click.echo(f"study_csv: {outcome.csv_path}")
    click.echo(f"study_md: {outcome.md_path}")


@cli.command("finetune")
@click.option("--from", "source", required=True, help="models:/NAME@alias (a registered DCJT model) or a checkpoint file")
@click.option("--config", "config_name", required=True, help="the target to fine-tune on: configs/NAME.yaml or a YAML path")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override any config value")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for training (default: all cores)")
@click.option(
    "--run-config",
    type=click.Path(dir_okay=False, exists=True),
    help="ZenML run configuration for a remote stack, e.g. configs/remote-kubernetes.yaml",
)
def finetune_cmd(source, config_name, overrides, threads, run_config) -> None:
    """Fine-tune a registered model or a checkpoint on another target (paper Table 7): train on its
    train split (recipe: the config's finetune section), score its test split, register and promote."""
    from dcjt.config import ConfigError, load_config
    from pipelines.runner import run_finetune

    try:
        cfg = load_config(config_name, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    set_threads(threads)
    try:
        outcome = run_finetune(cfg, source, run_config=run_config)
    except Exception as exc:
        stop_in_one_line(exc)
    ev = outcome.evaluation
    click.echo(
        f"fine-tuned {source} on {cfg.name}: test accuracy {100 * ev['test_accuracy']:.2f} % "
        f"(epoch {ev.get('selected_epoch')} selected on validation, {ev.get('images_seen')} images seen)"
    )
    echo_promotion(outcome.promotion)
    click.echo(f"tracking_uri: {outcome.tracking_uri}")
    click.echo(f"test_accuracy: {100 * ev['test_accuracy']:.2f}")


@cli.command("leakage")
@click.option("--target", "target", required=True, metavar="DATASET=ROOT", help="the target dataset (its test split)")
@click.option("--extra", "extras", multiple=True, metavar="DATASET=ROOT", help="an extra dataset (repeatable)")
@click.option("--max-distance", type=int, default=None, help="Hamming distance of 256 bits (default: leakage.max_distance)")
@click.option("--image-size", type=int, default=224, show_default=True, help="image cache size (shared with training)")
def leakage_cmd(target, extras, max_distance, image_size) -> None:
    """Count the training images of the target and of each extra that duplicate a test image of
    the target (the pipeline's leakage guard, without training). Last line: leaked: N."""
    from dcjt.leakage_check import LeakageInputError, check_leakage

    try:
        lines, leaked = check_leakage(target, list(extras), max_distance=max_distance, image_size=image_size)
    except LeakageInputError as exc:
        raise click.ClickException(str(exc)) from None
    for line in lines:
        click.echo(line)
    click.echo(f"leaked: {leaked}")


@cli.command("predict")
@click.option("--model", "model_uri", required=True, help="e.g. models:/dcjt-synthetic@champion")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
def predict_cmd(model_uri, inputs) -> None:
    """Print label and valence/arousal for each image (files, or folders of images)."""
    from pipelines.runner import prepare_environment

    prepare_environment()
    import mlflow
    import pandas as pd

    paths = []
    for item in map(Path, inputs):
        paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")) if item.is_dir() else [item]
    if not paths:
        raise click.ClickException("no images found")
    from dcjt.serving import IMAGE_ROOTS_ENV

    # The files named on this command line are the only ones the model may read.
    os.environ[IMAGE_ROOTS_ENV] = os.pathsep.join(str(p.resolve().parent) for p in paths)
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except mlflow.exceptions.MlflowException as exc:
        raise click.ClickException(f"cannot load {model_uri}: {exc}") from exc
    out = model.predict(pd.DataFrame({"image": [str(p) for p in paths]}))
    failed = 0
    for path, row in zip(paths, out.itertuples()):
        if getattr(row, "error", ""):
            failed += 1
            click.echo(f"{path}\terror: {row.error}", err=True)
            continue
        click.echo(f"{path}\t{row.emotion}\tlabel={row.label}\tvalence={row.valence:+.3f}\tarousal={row.arousal:+.3f}")
    if failed:
        click.echo(f"{failed} of {len(paths)} images could not be classified", err=True)
        sys.exit(1)


@cli.command("serve")
@click.option("--model", "model_uri", default="models:/dcjt-synthetic@champion", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5001, show_default=True)
@click.option(
    "--image-root",
    "image_roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="also accept image paths under this folder (default: clients send image_bytes only)",
)
def serve_cmd(model_uri, host, port, image_roots) -> None:
    """Serve a registered model over HTTP (MLflow's scoring server) from this environment.

    ``mlflow models serve --env-manager local`` starts ``uvicorn`` from PATH, which holds the
    virtual environment only when it is activated; this command puts it there and uses the
    project's tracking store, so it works from a fresh shell.
    """
    from pipelines.runner import prepare_environment

    uri = prepare_environment()
    bin_dir = str(Path(sys.executable).parent)
    from dcjt.serving import IMAGE_ROOTS_ENV

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


@cli.group("weights")
def weights_group() -> None:
    """Pretrained weights in torchvision's cache (TORCH_HOME)."""


@weights_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--any-hash", is_flag=True, help="install a file whose SHA-256 differs from torchvision's published one")
def weights_import_cmd(file, any_hash) -> None:
    """Check a ResNet-18 ImageNet weights FILE (keys, shapes, hash) and install it where torchvision looks."""
    from dcjt.weights import WeightsError, import_imagenet

    try:
        target = import_imagenet(file, any_hash=any_hash)
    except WeightsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"installed: {target}")


@weights_group.command("where")
def weights_where_cmd() -> None:
    """Print where torchvision looks for the ResNet-18 ImageNet weights, and whether they are there."""
    from dcjt.weights import imagenet_file

    path = imagenet_file()
    click.echo(f"{path}\t{'present' if path.is_file() else 'missing'}")


@cli.command("synth")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option(
    "--layout",
    type=click.Choice(["rafdb", "affectnet", "affectnet-npy"]),
    multiple=True,
    required=True,
    help="rafdb writes the target set, affectnet / affectnet-npy the extra set",
)
@click.option("--n-target", default=2500, show_default=True)
@click.option("--n-extra", default=5000, show_default=True)
@click.option("--size", default=100, show_default=True, help="image side (RAF-DB aligned faces are 100)")
@click.option("--seed", default=0, show_default=True)
def synth_cmd(out, layout, n_target, n_extra, size, seed) -> None:
    """Write the synthetic world in the real releases' layouts (plus truth.parquet)."""
    from dcjt.synthetic.disk import write_world

    for line in write_world(out, layout, n_target=n_target, n_extra=n_extra, size=size, seed=seed):
        click.echo(line)


if __name__ == "__main__":
    cli()

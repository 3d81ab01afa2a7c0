"""DCJT command line: the options of each command; what each does is in ``app.commands``.

    python run.py demo                     # the main job: DCJT + baselines on the synthetic world, CPU
    python run.py pipeline --config rafdb --target-root DIR --extra-root DIR
    python run.py study --table main       # a paper table over seeds, with intervals
    python run.py select --config NAME     # register the variant that wins on your validation split
    python run.py finetune --from models:/NAME@champion --config NAME
    python run.py predict | serve          # the registered model on images, over HTTP
    python run.py score --model URI FOLDER --out table.parquet   # a folder of faces into a table
    python run.py worlds                   # the synthetic world suite (--world NAME, study --worlds suite)
    python run.py dashboard                # ZenML's dashboard on the project's store
    python run.py ingest | leakage | synth | weights import | weights where

``python run.py COMMAND --help`` for each command's options.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import click

from dcjt.config import DATASETS
from dcjt.experiments.tables import SELECT_CANDIDATES
from dcjt.selection import ALPHA as RACE_ALPHA
from dcjt.selection import RUNG as RACE_RUNG
from dcjt.selection import STRATEGIES as SELECT_STRATEGIES

# Options every command that runs something shares: declared once.
SET_OPTION = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override any config value, e.g. dcn.lam=15"
)
THREADS_OPTION = click.option(
    "--threads", type=click.IntRange(min=1), help="CPU threads and worker processes (runtime.threads; default: every core)"
)


def config_option(required: bool = False, help: str = "configs/NAME.yaml or a YAML path"):
    """``--config``: a config name or path (default ``demo`` unless the command needs one named)."""
    if required:
        return click.option("--config", "config_name", required=True, help=help)
    return click.option("--config", "config_name", default="demo", show_default=True, help=help)


RUN_OPTIONS = [
    SET_OPTION,
    click.option("--target-root", type=click.Path(file_okay=False), help="target dataset folder (data.target.root)"),
    click.option("--extra-root", type=click.Path(file_okay=False), help="extra dataset folder (data.extra.root)"),
    click.option("--image-size", type=int, help="image side in pixels (network.image_size)"),
    click.option("--backbone", help="network.backbone: resnet18 | tiny"),
    click.option("--head", help="network.head: linear | arm"),
    click.option(
        "--weights", metavar="SOURCE", help="network.weights: imagenet | none | FILE | models:/NAME@champion (fine-tune)"
    ),
    click.option("--mapping", help="method.mapping: none | global | emotion | emotion_ot"),
    click.option("--seed", type=int, help="seed of the synthetic world, initialisation and shuffles"),
    click.option("--world", metavar="NAME", help="a synthetic world of the suite (data.world.preset; run.py worlds lists them)"),
    click.option("--force-promote", is_flag=True, default=None, help="promote the new model even if the gate keeps the champion"),
    click.option("--schedule", metavar="CRON", help="attach a cron schedule instead of running now"),
    THREADS_OPTION,
    click.option(
        "--no-cache",
        "no_cache",
        is_flag=True,
        default=None,
        help="run every step again, ignoring ZenML's cache (e.g. after a cache folder was removed)",
    ),
    click.option(
        "--run-config",
        type=click.Path(dir_okay=False, exists=True),
        help="ZenML run configuration for a remote stack, e.g. configs/remote-kubernetes.yaml",
    ),
]


def with_world(overrides, world: str | None) -> tuple:
    """``--world NAME`` is ``--set data.world.preset=NAME`` (before the other --set values)."""
    return ((f"data.world.preset={world}",) if world else ()) + tuple(overrides)


def run_options(f):
    for option in reversed(RUN_OPTIONS):
        f = option(f)
    return f


@click.group()
def cli() -> None:
    """DCJT: train FER models on datasets whose annotators disagree. Start with: python run.py demo"""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    from app.environment import check_home_location
    from app.preflight import PreflightError
    from dcjt.utils.state import state_home

    try:
        check_home_location(state_home())  # every command: a moved state folder in one line
    except PreflightError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("demo")
@run_options
def demo_cmd(overrides, schedule, run_config, **shortcuts) -> None:
    """The main job: the DCJT pipeline and its baselines on the embedded synthetic world, on CPU."""
    from app import commands

    commands.pipeline("demo", overrides, schedule=schedule, run_config=run_config, **shortcuts)


@cli.command("pipeline")
@config_option()
@run_options
def pipeline_cmd(config_name, overrides, schedule, run_config, **shortcuts) -> None:
    """Run the DCJT pipeline (DCJT + the configured baselines), register and promote the model."""
    from app import commands

    commands.pipeline(config_name, overrides, schedule=schedule, run_config=run_config, **shortcuts)


@cli.command("study")
@config_option()
@click.option(
    "--table",
    default="main",
    show_default=True,
    help="main | 1 | 2 | 8 | extras | relabel | select | calibration | all (paper Tables 1, 2, 8; extras: A + one or "
    "two extras, SCN; relabel: where a better stage 3b's gain comes from; select: the candidates of run.py select; "
    "calibration: the posterior rules' confidence, with --set data.world.audit_rows=N)",
)
@click.option("--seeds", default="0-4", show_default=True, help="e.g. 0,1,2 or 0-4 (at most 1,000 runs; 0..99999)")
@click.option("--row", "only", multiple=True, help="only this row (repeatable): its id, or its name in the table")
@click.option("--name", help="study name (MLflow tag; default CONFIG-table-TABLE)")
@click.option(
    "--budget",
    type=click.Choice(["converged", "steps"]),
    help="budget.mode for every row (default for a study: steps, every row the same optimiser steps, unless --set "
    "budget.mode; converged: each row until its validation accuracy stops improving, at most dcn.epochs)",
)
@click.option("--world", metavar="NAME", help="a synthetic world of the suite (data.world.preset; run.py worlds)")
@click.option(
    "--worlds",
    metavar="suite|A,B,...",
    help="run the table on each of these worlds (suite: all of them) and write the cross-world summary: each row's "
    "regret against the best row, and the regret of choosing on validation (last line: select_regret)",
)
@SET_OPTION
@THREADS_OPTION
def study_cmd(config_name, table, seeds, only, name, budget, world, worlds, overrides, threads) -> None:
    """Run a paper table as pipeline runs (rows x seeds); write study.csv and study.md, print the table."""
    from app import commands

    overrides = with_world(overrides, world)
    commands.study(config_name, table, seeds, only, name, overrides, worlds=worlds, budget=budget, threads=threads)


@cli.command("select")
@config_option()
@click.option("--seeds", default="0-2", show_default=True, help="e.g. 0,1,2 or 0-4: every candidate runs each seed")
@click.option(
    "--candidate",
    "candidates",
    multiple=True,
    help=f"a row of `study --table select`, by id (repeatable; default: all {len(SELECT_CANDIDATES)}: "
    f"{', '.join(r.id for r in SELECT_CANDIDATES)})",
)
@click.option(
    "--strategy",
    type=click.Choice(SELECT_STRATEGIES),
    default=SELECT_STRATEGIES[0],
    show_default=True,
    help="race: a candidate stops once it trails the leader beyond a bound; exhaustive: every candidate runs every seed",
)
@click.option(
    "--alpha",
    type=float,
    default=RACE_ALPHA,
    show_default=True,
    help="race: the chance per seed of stopping a candidate that is not behind (Bonferroni over the candidates)",
)
@click.option(
    "--rung",
    type=float,
    default=None,
    help=f"race: the candidates race on this share of each row's epochs, then the winner and the "
    f"baselines go on to the full budget at the first seed (default {Fraction(RACE_RUNG).limit_denominator(100)}; 1: "
    "race at the full budget)",
)
@click.option(
    "--parallel",
    type=int,
    default=1,
    show_default=True,
    help="candidate runs at once, each in its own process (cores / N threads each unless --threads)",
)
@click.option("--world", metavar="NAME", help="a synthetic world of the suite (data.world.preset; run.py worlds)")
@SET_OPTION
@THREADS_OPTION
def select_cmd(config_name, seeds, candidates, strategy, alpha, rung, parallel, world, overrides, threads) -> None:
    """Pick the variant that wins on your validation split: race the candidates (baselines included)
    seed by seed on a third of the budget, choose the best mean on half of the validation rows, finish
    the finalists, report the lead on the other half, and register the winner from its own run at the
    first seed (no training after the race)."""
    from app import commands

    race = dict(strategy=strategy, alpha=alpha, rung=rung, parallel=parallel)
    commands.select(config_name, seeds, candidates, with_world(overrides, world), threads, **race)


@cli.command("worlds")
def worlds_cmd() -> None:
    """List the synthetic worlds of the suite (--world NAME, study --worlds suite): what each varies."""
    from app import commands

    commands.worlds()


@cli.command("finetune")
@click.option("--from", "source", required=True, help="models:/NAME@alias (a registered DCJT model) or a checkpoint file")
@config_option(required=True, help="the target to fine-tune on: configs/NAME.yaml or a YAML path")
@SET_OPTION
@THREADS_OPTION
@click.option(
    "--run-config",
    type=click.Path(dir_okay=False, exists=True),
    help="ZenML run configuration for a remote stack, e.g. configs/remote-kubernetes.yaml",
)
def finetune_cmd(source, config_name, overrides, threads, run_config) -> None:
    """Fine-tune a registered model or a checkpoint on another target (paper Table 7): train on its
    train split (recipe: the config's finetune section), score its test split, register and promote."""
    from app import commands

    commands.finetune(source, config_name, overrides, threads, run_config)


@cli.command("ingest")
@click.option("--dataset", type=click.Choice(DATASETS), required=True)
@click.option("--root", type=click.Path(path_type=Path), required=True, help="dataset root in its release layout")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="label table to write (.parquet)")
@click.option("--val-fraction", default=0.1, show_default=True, help="validation share carved from train if none")
@click.option("--split-seed", type=int, default=None, help="seed of the carved validation split (default: fixed by the dataset)")
@click.option(
    "--max-bad-fraction", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="share of unreadable images skipped"
)
@click.option("--no-image-check", is_flag=True, help="skip decoding every image at ingestion")
@THREADS_OPTION
def ingest_cmd(dataset, root, out, val_fraction, split_seed, max_bad_fraction, no_image_check, threads) -> None:
    """Read a dataset root into a validated label table and print counts per split and class."""
    from app import commands

    commands.limit_threads(threads)
    commands.ingest(dataset, root, out, val_fraction, split_seed, max_bad_fraction, no_image_check)


@cli.command("leakage")
@click.option("--target", "target", required=True, metavar="DATASET=ROOT", help="the target dataset (its test split)")
@click.option("--extra", "extras", multiple=True, metavar="DATASET=ROOT", help="an extra dataset (repeatable)")
@click.option("--max-distance", type=int, default=None, help="Hamming distance of 256 bits (default: leakage.max_distance)")
@click.option("--image-size", type=int, default=224, show_default=True, help="image cache size (shared with training)")
@THREADS_OPTION
def leakage_cmd(target, extras, max_distance, image_size, threads) -> None:
    """Count the training images of the target and of each extra that duplicate a test image of
    the target (the pipeline's leakage guard, without training). Last line: leaked: N."""
    from app import commands

    commands.limit_threads(threads)
    commands.leakage(target, extras, max_distance, image_size)


@cli.command("predict")
@click.option("--model", "model_uri", required=True, help="e.g. models:/dcjt-synthetic@champion")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "csv", "json"]),
    default="text",
    show_default=True,
    help="csv / json: one row per image with every class probability, valence, arousal and error (null when refused)",
)
def predict_cmd(model_uri, inputs, fmt) -> None:
    """Print label and valence/arousal for each image (files, or folders of images)."""
    from app import commands

    commands.predict(model_uri, inputs, fmt)


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
    """Serve a registered model over HTTP (MLflow's scoring server) from this environment, from a fresh shell."""
    from app import commands

    commands.serve(model_uri, host, port, image_roots)


@cli.command("score")
@click.option("--model", "model_uri", required=True, help="e.g. models:/dcjt-synthetic@champion")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="the table to write (.parquet; must not exist)")
def score_cmd(model_uri, folder, out) -> None:
    """Score every image under FOLDER with a registered model (ONNX Runtime, as served): one row per
    image (refused images as rows with their error), logged to MLflow with the model version."""
    from app.score import score

    score(model_uri, folder, out)


@cli.command("export-onnx")
@click.option("--model", "model_uri", required=True, help="a registered version without ONNX: models:/NAME/VERSION or @ALIAS")
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False),
    help="a folder of faces the parity check runs on (its first 64 images; default: 64 seeded random images)",
)
def export_onnx_cmd(model_uri, images) -> None:
    """Register a version that predates ONNX exports again with its ONNX graph (same weights,
    parity-checked); its aliases move to the new version."""
    from app import commands

    commands.export_onnx(model_uri, images)


@cli.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8237, show_default=True, type=click.IntRange(1, 65535))
def dashboard_cmd(host, port) -> None:
    """ZenML's dashboard on the project's own store (DCJT_HOME): the runs, their DAGs, step logs,
    rendered stage reports and data checks, the models; Ctrl-C stops it."""
    from app.dashboard import dashboard

    dashboard(host, port)


@cli.group("weights")
def weights_group() -> None:
    """Pretrained weights in torchvision's cache (TORCH_HOME)."""


@weights_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--any-hash", is_flag=True, help="install a file whose SHA-256 differs from torchvision's published one")
def weights_import_cmd(file, any_hash) -> None:
    """Check a ResNet-18 ImageNet weights FILE (keys, shapes, hash) and install it where torchvision looks."""
    from app import commands

    commands.weights_import(file, any_hash)


@weights_group.command("where")
def weights_where_cmd() -> None:
    """Print where torchvision looks for the ResNet-18 ImageNet weights, and whether they are there."""
    from app import commands

    commands.weights_where()


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
    from app import commands

    commands.synth(out, layout, n_target, n_extra, size, seed)


if __name__ == "__main__":
    cli()

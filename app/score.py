"""``run.py score``: a registered model over a folder of faces, one row per image into a Parquet
table, logged as an MLflow run that names the model version it used.

A command rather than a ZenML pipeline: scoring is one step over files already on disk, and a
pipeline would copy the folder into ZenML's artifact store before reading it. It runs the model as
it is served (its ONNX graph under ONNX Runtime, the served model's input rules), batch by batch,
and writes the table only once every image is scored (nothing half-written on a failure).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

EXPERIMENT = "dcjt-scoring"
BATCH = 256


def images_of(folder: Path) -> tuple[list[Path], int]:
    """The images under ``folder`` (sorted) and how many other files it holds; refusals in one line."""
    from dcjt.models.images import IMAGE_SUFFIXES

    if not folder.exists():
        raise click.ClickException(f"{folder}: no such folder")
    if not folder.is_dir():
        raise click.ClickException(f"{folder}: a file, not a folder of images (run.py predict takes single files)")
    files = [p for p in folder.rglob("*") if p.is_file()]
    images = sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise click.ClickException(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or below it")
    return images, len(files) - len(images)


def output_path(out: Path) -> Path:
    if out.suffix != ".parquet":
        raise click.ClickException(f"--out {out}: the table is written as Parquet; name it *.parquet")
    if out.exists():
        raise click.ClickException(f"--out {out}: exists; choose a new path (a scored table is never overwritten)")
    if not out.parent.is_dir():
        raise click.ClickException(f"--out {out}: folder {out.parent} does not exist")
    return out


def score(model_uri: str, folder: Path, out: Path) -> None:
    from app.environment import ensure_experiment, prepare_environment

    out = output_path(out)
    images, others = images_of(folder)
    prepare_environment()
    import mlflow
    import pandas as pd
    from tqdm import tqdm

    from app.commands import load_served_model
    from dcjt.registry.served import ExportInputError, registered_version
    from dcjt.serving.inputs import IMAGE_ROOTS_ENV

    model = load_served_model(model_uri)
    try:
        version = registered_version(model_uri).version
    except ExportInputError:
        version = ""  # a runs:/ or logged-model URI: no registry version
    os.environ[IMAGE_ROOTS_ENV] = str(folder.resolve())  # the folder named is the only one the model reads
    ensure_experiment(EXPERIMENT)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"score {folder.name}") as run:
        mlflow.log_params({"model_uri": model_uri, "model_version": version, "folder": str(folder.resolve())})
        mlflow.set_tags({"dcjt.kind": "scoring", "model_uri": model_uri, "model_version": version})
        parts = []
        with tqdm(total=len(images), unit="image", desc="scoring", disable=None) as bar:
            for i in range(0, len(images), BATCH):
                batch = images[i : i + BATCH]
                parts.append(model.predict(pd.DataFrame({"image": [str(p) for p in batch]})))
                bar.update(len(batch))
        table = pd.concat(parts, ignore_index=True)
        table.insert(0, "image", [str(p.relative_to(folder)) for p in images])
        refused = int((table["error"] != "").sum())
        counts = table.loc[table["error"] == "", "emotion"].value_counts()
        mlflow.log_metrics({"images": len(table), "refused": refused, **{f"predicted.{e}": int(n) for e, n in counts.items()}})
        partial = out.with_name(f".{out.name}.partial")
        table.to_parquet(partial, index=False)
        os.replace(partial, out)
        mlflow.log_param("out", str(out.resolve()))
    named = f"version {version}" if version else model_uri
    skipped = f"; {others} other files skipped" if others else ""
    click.echo(f"scored {len(table)} images with {named} ({refused} refused{skipped}) -> {out}  (MLflow run {run.info.run_id})")

"""Run a study: every (row, seed) as one pipeline run, then the table, its CSV and its MLflow run.

Finished rows come from ZenML's cache when a study is run again (or resumed after an
interruption): only the tracking steps run, no training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from app.environment import ensure_experiment
from app.runner import run_pipeline
from dcjt.config import load_config
from dcjt.experiments.records import RunSummary
from dcjt.experiments.summary import STAGE3_DIAGNOSTICS, markdown, summarise
from dcjt.experiments.tables import study_rows


@dataclass
class StudyOutcome:
    name: str
    records: pd.DataFrame
    summary: pd.DataFrame
    markdown: str
    csv_path: Path
    md_path: Path
    mlflow_run_id: str
    seconds: float


def _record(row: str, seed: int, summary: RunSummary, uses_rest_of_b: bool) -> tuple[dict, np.ndarray]:
    ev = summary.row("dcjt")  # each study row is the DCJT row of its own pipeline run
    shown = {k: v for k, v in summary.diagnostics.items() if uses_rest_of_b or k not in STAGE3_DIAGNOSTICS}
    rec = {
        "row": row,
        "seed": seed,
        "accuracy": ev.test.accuracy,
        "val_accuracy": ev.val.accuracy,
        "degenerate": ev.degenerate,
        "b_passes": ev.b_passes,
        "stop_reason": ev.stop_reason,
        "macro_f1": ev.test.macro_f1,
        "mean_class_accuracy": ev.test.mean_class_accuracy,
        "images_seen": ev.images_seen,
        "epochs_run": ev.epochs_run,
        "steps": ev.steps,
        "selected_epoch": ev.selected_epoch,
        "variant": ev.variant,
        "mlflow_run_id": summary.mlflow_run_id,
        **shown,
    }
    return rec, np.asarray(ev.test.correct)


def run_study(
    config_name: str, table: str, seeds: list[int], *, overrides=(), values=None, only=None, name=None, progress=print
) -> StudyOutcome:
    """Train and score every row of ``table`` for every seed; write ``study.csv`` and ``study.md``."""
    base = load_config(config_name, overrides, values)  # fails early on a bad config
    rows, reference = study_rows(table, only, synthetic=base.data.kind == "synthetic")
    name = name or f"{base.name}-table-{table}"
    t0 = time.perf_counter()
    records, correct = [], {}
    for seed in seeds:
        for row in rows:
            tags = {"study": name, "table": table, "row": row.name}
            # A study explores variants: gates warn (their outcome is a column) unless --set says otherwise.
            warn = {} if any(o.startswith("gates.mode=") for o in overrides) else {"gates.mode": "warn"}
            run_values = {**warn, **(values or {}), **row.values, "seed": seed, "baselines": [], "register_model": False}
            cfg = load_config(config_name, overrides, {**run_values, "tracking_tags": tags})
            progress(f"study {name}: seed {seed}, row {row.name!r}")
            outcome = run_pipeline(cfg)
            rec, corr = _record(row.name, seed, outcome.summary, cfg.method.extra_use == "all")
            failed = outcome.summary.failed_gates
            rec["gates"] = "failed: " + "; ".join(failed) if failed else "passed"
            records.append(rec)
            correct[(row.name, seed)] = corr
            progress(f"  accuracy {100 * rec['accuracy']:.2f} %, {rec['images_seen']:,} images seen, {rec['epochs_run']} epochs")
    frame = pd.DataFrame(records)
    shared = base.data.kind == "files"  # a dataset on disk: every seed scores the same test split
    summary = summarise(frame, correct, reference, shared_images=shared)
    b = base.budget
    if b.mode == "converged":
        budget = f"converged (patience {b.patience} {b.patience_unit}, at least {b.min_share:.0%} of the epochs)"
    else:
        budget = f"equal optimiser steps ({b.steps or 'the DCJT row’s'}; schedule and {b.checks} checks as fractions of it)"
    test = "the same test split for every seed" if shared else "each seed its own world and test split"
    title = f"{name}: accuracy on the target's splits, seeds {','.join(map(str, seeds))} ({test}), budget: {budget}"
    text = markdown(summary, reference, title, bounds=tuple(r.name for r in rows if r.uses_truth))
    warned = frame[frame["gates"] != "passed"]
    if len(warned):
        text += "\nStage health gates that failed (the rows ran on with a warning):\n\n"
        text += "".join(f"- {r.row}, seed {r.seed}: {r.gates.removeprefix('failed: ')}\n" for r in warned.itertuples())
    out = Path(base.paths.outputs) / "studies" / name
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "study.csv", out / "study.md"
    frame.to_csv(csv_path, index=False)
    md_path.write_text(text)
    run_id = _track(base.experiment, name, table, frame, summary, text, csv_path, md_path, reference)
    return StudyOutcome(name, frame, summary, text, csv_path, md_path, run_id, time.perf_counter() - t0)


def _track(experiment: str, name: str, table: str, frame, summary, text, csv_path, md_path, reference) -> str:
    """One MLflow parent run for the study: tags, the table, the CSV and a bar chart with intervals."""
    import mlflow

    from dcjt.experiments.plots import study_figure

    ensure_experiment(experiment)
    exp = mlflow.get_experiment_by_name(experiment)
    with mlflow.start_run(
        experiment_id=exp.experiment_id, run_name=f"study {name}", tags={"study": name, "table": table, "dcjt.kind": "study"}
    ) as run:
        mlflow.log_params({"rows": len(summary), "seeds": frame["seed"].nunique(), "reference": reference})
        for _, r in summary.iterrows():
            key = "".join(c if c.isalnum() or c in "-_." else "_" for c in r["row"])
            mlflow.log_metric(f"accuracy_mean.{key}", r["accuracy_mean"])
        mlflow.log_artifact(str(csv_path))
        mlflow.log_artifact(str(md_path))
        mlflow.log_figure(study_figure(summary, reference), "study.png")
        mlflow.set_tag("mlflow.note.content", text)
    return run.info.run_id

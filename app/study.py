"""Run a study: every (row, seed) as one pipeline run, then the table, its CSV and its MLflow run.

Finished rows come from ZenML's cache when a study is run again (or resumed after an
interruption): only the tracking steps run, no training.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from app.environment import ensure_experiment
from app.runner import run_pipeline
from dcjt.config_files import load_config
from dcjt.experiments.records import RunSummary
from dcjt.experiments.study_summary import flag_budget, markdown, stage3_diagnostic, summarise
from dcjt.experiments.tables import Row, StudyError, check_world_rows, study_rows


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


def _record(row: Row, seed: int, summary: RunSummary, uses_rest_of_b: bool) -> tuple[dict, np.ndarray]:
    ev = summary.row("dcjt")  # each study row is the DCJT row of its own pipeline run
    shown = {k: v for k, v in summary.diagnostics.items() if uses_rest_of_b or not stage3_diagnostic(k)}
    rec = {
        "row": row.name,
        "row_id": row.id,
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
        "warmup_steps": ev.warmup_steps,  # of steps, those of the seed's shared warm-up (trained once)
        "selected_epoch": ev.selected_epoch,
        "selected_before_b": ev.selected_before_b,
        "variant": ev.variant,
        "mlflow_run_id": summary.mlflow_run_id,
        **shown,
    }
    return rec, np.asarray(ev.test.correct)


@dataclass(frozen=True)
class StudySpec:
    """What a study runs: the rows of ``table`` (all, or ``only``: ids or labels) for every seed, on
    a config with ``--set`` overrides and typed values; ``name`` defaults from the config and table."""

    config_name: str
    table: str
    seeds: list[int]
    overrides: tuple = ()
    values: dict | None = None
    only: list[str] | None = None
    name: str | None = None

    def base(self):
        """The configuration every run starts from (a bad one fails here, before any training)."""
        return load_config(self.config_name, self.overrides, self.values)


def exploring(overrides) -> dict:
    """A study (or select's race) explores variants: gates warn, their outcome recorded, and the rows
    that warm up alike go on from one warm-up per seed (``runtime.share_warmup``: the same numbers,
    ``dcjt.train.warmup``), unless ``--set`` says otherwise."""
    defaults = {"gates.mode": "warn", "runtime.share_warmup": True}
    return {k: v for k, v in defaults.items() if not any(o.startswith(f"{k}=") for o in overrides)}


def run_study(spec: StudySpec, progress=print) -> StudyOutcome:
    """Train and score every row of ``spec.table`` for every seed; write ``study.csv`` and ``study.md``."""
    config_name, table, seeds, overrides, values = spec.config_name, spec.table, spec.seeds, spec.overrides, spec.values
    base = spec.base()
    rows, reference = study_rows(table, spec.only, synthetic=base.data.kind == "synthetic")
    name = spec.name or f"{base.name}-table-{table}"
    t0 = time.perf_counter()
    records, correct = [], {}
    for seed in seeds:
        for row in rows:
            tags = {"study": name, "table": table, "row": row.name, "row_id": row.id}
            run_values = {
                **exploring(overrides),
                **(values or {}),
                **row.values,
                "seed": seed,
                "baselines": [],
                "register_model": False,
            }
            cfg = load_config(config_name, overrides, {**run_values, "tracking_tags": tags})
            progress(f"study {name}: seed {seed}, row {row.name!r}")
            outcome = run_pipeline(cfg)
            rec, corr = _record(row, seed, outcome.summary, cfg.method.extra_use == "all")
            failed = outcome.summary.failed_gates
            rec["gates"] = "failed: " + "; ".join(failed) if failed else "passed"
            records.append(rec)
            correct[(row.name, seed)] = corr
            progress(f"  accuracy {100 * rec['accuracy']:.2f} %, {rec['images_seen']:,} images seen, {rec['epochs_run']} epochs")
    frame = flag_budget(pd.DataFrame(records), base)
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
    outcome = StudyOutcome(name, frame, summary, text, csv_path, md_path, "", time.perf_counter() - t0)
    return dataclasses.replace(outcome, mlflow_run_id=_track(base.experiment, table, reference, outcome))


def _track(experiment: str, table: str, reference: str, study: StudyOutcome) -> str:
    """One MLflow parent run for the study: tags, the table, the CSV and a bar chart with intervals."""
    name, frame, summary, text = study.name, study.records, study.summary, study.markdown
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
        mlflow.log_artifact(str(study.csv_path))
        mlflow.log_artifact(str(study.md_path))
        mlflow.log_figure(study_figure(summary, reference), "study.png")
        mlflow.set_tag("mlflow.note.content", text)
    return run.info.run_id


@dataclass
class WorldStudyOutcome:
    name: str
    worlds: dict[str, StudyOutcome]
    records: pd.DataFrame  # every world's records (a ``world`` column), budget flags included
    long: pd.DataFrame  # regret per (world, seed, row), the selection rules included
    summary: pd.DataFrame
    markdown: str
    csv_path: Path
    md_path: Path
    select_regret: float
    seconds: float


def run_world_study(
    spec: StudySpec,
    worlds: list[str],
    progress=print,
) -> WorldStudyOutcome:
    """The table on every world (each its own study, shared stages from ZenML's cache), then the
    cross-world summary: each row's regret against the best row per (world, seed), and the regret
    of choosing on validation (``dcjt.experiments.regret``). Writes ``study.csv`` (every record,
    a ``world`` column), ``regret.csv``, ``study.md`` and ``regret.png``."""
    from dcjt.experiments import regret
    from dcjt.experiments.plots import regret_figure

    table, seeds = spec.table, spec.seeds
    base = spec.base()
    if base.data.kind != "synthetic":
        raise StudyError(f"--worlds runs the synthetic world suite; config {spec.config_name!r} trains on datasets on disk")
    rows, _ = study_rows(table, spec.only)
    check_world_rows(table, rows, worlds)
    name = spec.name or f"{base.name}-worlds-table-{table}"
    t0 = time.perf_counter()
    outcomes: dict[str, StudyOutcome] = {}
    for world in worlds:
        progress(f"world {world} ({len(outcomes) + 1} of {len(worlds)})")
        world_spec = dataclasses.replace(spec, overrides=(f"data.world.preset={world}", *spec.overrides), name=f"{name}-{world}")
        done = finished_study(Path(base.paths.outputs) / "studies" / f"{name}-{world}", rows, seeds)
        if done is not None:
            progress(f"  read back from {done.csv_path} (every row and seed finished; remove the folder to rerun)")
            outcomes[world] = done
            continue
        outcomes[world] = run_study(world_spec, progress)
    frame = flag_budget(pd.concat([o.records.assign(world=w) for w, o in outcomes.items()], ignore_index=True), base)
    candidates = [r.name for r in rows if not r.uses_truth]
    long = regret.regret_table(frame, candidates)
    summary = regret.regret_summary(long)
    out = Path(base.paths.outputs) / "studies" / name
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "study.csv", out / "study.md"
    seconds = time.perf_counter() - t0
    study = WorldStudyOutcome(name, outcomes, frame, long, summary, "", csv_path, md_path, regret.select_regret(long), seconds)
    text = world_markdown(base, spec, study)
    frame.to_csv(csv_path, index=False)
    long.to_csv(out / "regret.csv", index=False)
    fig = regret_figure(regret.regret_by_world(long))
    fig.savefig(out / "regret.png", dpi=110)
    md_path.write_text(text)
    _track_worlds(base.experiment, name, table, summary, study.select_regret, out, text)
    return dataclasses.replace(study, markdown=text)


def _track_worlds(
    experiment: str, name: str, table: str, summary: pd.DataFrame, select_regret: float, out: Path, text: str
) -> None:
    """One MLflow run for the cross-world summary: each row's mean regret, select_regret, the files."""
    import mlflow

    ensure_experiment(experiment)
    exp = mlflow.get_experiment_by_name(experiment)
    tags = {"study": name, "table": table, "dcjt.kind": "world-study"}
    with mlflow.start_run(experiment_id=exp.experiment_id, run_name=f"world study {name}", tags=tags):
        for _, r in summary.iterrows():
            key = "".join(c if c.isalnum() or c in "-_." else "_" for c in r["row"])
            mlflow.log_metric(f"regret_mean.{key}", r["regret_mean"])
        mlflow.log_metric("select_regret", select_regret)
        for file in ("study.csv", "regret.csv", "study.md", "regret.png"):
            mlflow.log_artifact(str(out / file))
        mlflow.set_tag("mlflow.note.content", text)


def finished_study(folder: Path, rows, seeds: list[int]) -> StudyOutcome | None:
    """A world's study that already holds exactly these rows and seeds (a cross-world study resumes
    there, or runs its worlds in several processes under one name); None otherwise."""
    csv_path, md_path = folder / "study.csv", folder / "study.md"
    if not (csv_path.is_file() and md_path.is_file()):
        return None
    frame = pd.read_csv(csv_path)
    want = {(r.name, s) for r in rows for s in seeds}
    if set(zip(frame["row"], frame["seed"])) != want or len(frame) != len(want):
        return None
    return StudyOutcome(folder.name, frame, pd.DataFrame(), md_path.read_text(), csv_path, md_path, "", 0.0)


def world_markdown(base, spec: StudySpec, study: WorldStudyOutcome) -> str:
    """The cross-world page: the regret summary, regret per world, what select chose, the truth
    diagnostics that say why, then each world's own table."""
    name, table, seeds, outcomes, seconds = study.name, spec.table, spec.seeds, study.worlds, study.seconds
    worlds, frame, long, summary = list(outcomes), study.records, study.long, study.summary
    from dcjt.experiments import regret
    from dcjt.synthetic.suite import WORLDS
    from dcjt.utils.markdown import markdown_table

    reused = [w for w, o in outcomes.items() if not o.mlflow_run_id]
    read_back = f" ({', '.join(reused)} read back from finished studies)" if reused else ""
    lines = [
        f"### {name}: regret across {len(worlds)} worlds, seeds {','.join(map(str, seeds))}",
        "",
        f"Table `{table}` on every world of the suite at the config's scale ({base.name}: "
        f"{base.network.backbone} network at {base.network.image_size} px, DCN {base.dcn.epochs} epochs, budget "
        f"{base.budget.mode}); every row the same recipe and budget, chosen on validation, scored on each world's "
        f"test split. Regret: the best row's test accuracy at that world and seed minus the row's own (points); "
        f"`select (seeds pooled)` is the row with the best mean validation accuracy per world (what `run.py select` "
        f"registers), `select (per seed)` the best at each seed. Interval: 95 % two-level bootstrap (worlds, then "
        f"seeds). Wall time of this call {seconds:,.0f} s{read_back}.",
        "",
    ]
    show = summary.assign(
        **{
            "test % (mean)": summary["accuracy_mean"].map("{:.2f}".format),
            "mean rank": summary["rank_mean"].map(lambda v: "" if pd.isna(v) else f"{v:.1f}"),
            "regret (mean)": summary["regret_mean"].map("{:.2f}".format),
            "95 % interval": [
                f"[{lo:.2f}, {hi:.2f}]" if pd.notna(lo) else "" for lo, hi in zip(summary["regret_lo"], summary["regret_hi"])
            ],
            "regret (worst)": summary["regret_worst"].map("{:.2f}".format),
            "worst at": summary["worst_at"],
            "best in": summary["best_share"].map("{:.0%}".format),
        }
    )
    cols = ["row", "test % (mean)", "mean rank", "regret (mean)", "95 % interval", "regret (worst)", "worst at", "best in"]
    lines += [markdown_table(show[cols], digits=2, index=False), ""]
    names = {
        "selected_epoch": "selected epoch (mean)",
        "not_converged": "not converged (share)",
        "selected_before_b": "selected before B (share)",  # absent from a world's study read back from before 2026-12-07
    }
    shown = [c for c in names if c in frame]
    flags = frame[shown].astype(float).groupby(frame["row"], sort=False).mean().rename(columns=names)
    lines += [
        f"The budget each row spent (all worlds and seeds): *not converged* = ran all {base.dcn.epochs} epochs with its "
        "selected check in the last patience window; *selected before B* = a joint row whose selected check precedes "
        "its first pass over B (the reported model never trained on B).",
        "",
        markdown_table(flags.round(2), digits=2),
        "",
    ]
    lines += ["Mean regret per world (points, mean over seeds; figure `regret.png`):", ""]
    lines += [markdown_table(regret.regret_by_world(long).round(2), digits=2), ""]
    lines += ["What choosing on validation picked:", "", markdown_table(regret.chosen_rows(long), index=True), ""]
    diag = [
        c
        for c in ("remaining_correct_after", "relabel_precision", "relabel_confirmed_precision", "relabel_coverage")
        if c in frame
    ]
    if diag:
        truth = frame.groupby(["world", "row"], sort=False)[diag].mean().dropna(how="all").round(3).reset_index()
        lines += [
            "Why (the synthetic world's truth, means over seeds): the share of B - subB correct after stage 3, the "
            "precision of the labels stage 3 changed and of those it confirmed, and its coverage (changed or "
            "confirmed rows):",
            "",
            markdown_table(truth, digits=3, index=False),
            "",
        ]
    lines += ["Worlds:", ""] + [f"- `{w}`: {WORLDS[w].description}" for w in worlds] + [""]
    for o in outcomes.values():
        lines += [o.markdown.replace("### ", "#### ", 1), ""]
    return "\n".join(lines) + "\n"

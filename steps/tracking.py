"""The MLflow parent run of a pipeline run: opened first, filled and closed last.

Both steps never cache: every pipeline run gets its own parent run holding the resolved config,
the label-mapping statistics, GX results, plots and the final metrics under stable names, even
when the work itself came from ZenML's cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import mlflow
import pandas as pd
from zenml import get_step_context, step

from dcjt.config import PipelineConfig
from dcjt.data.labels import split_rows
from dcjt.method import class_centres, va_stats
from dcjt.method.extras import contributions, transitions
from dcjt.method.health import failed_gates as health_failed_gates
from dcjt.method.truth import criteria_report, remaining_part
from dcjt.plots import confusion_figure, va_scatter
from steps.common import log_frame, log_json, log_tables, table_name

SPLIT_CONTEXTS = (("train", "train"), ("val", "validation"), ("test", "test"))


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


@step(enable_cache=False)
def open_tracking(config: PipelineConfig) -> Annotated[str, "parent_run_id"]:
    """Start the parent MLflow run (one per pipeline run); params = the resolved config."""
    client = mlflow.MlflowClient()
    exp = mlflow.set_experiment(config.experiment)
    run_name = get_step_context().pipeline_run.name
    tags = {"zenml.run_name": run_name, "dcjt.config": config.name, "variant": config.method.variant_name, **config.tracking_tags}
    run = client.create_run(exp.experiment_id, run_name=run_name, tags=tags)
    params = [mlflow.entities.Param(k, str(v)[:500]) for k, v in flatten(config.model_dump(mode="json")).items()]
    for i in range(0, len(params), 90):
        client.log_batch(run.info.run_id, params=params[i : i + 90])
    return run.info.run_id


def _log_stage_stats(stats: dict) -> None:
    """Counts, gate outcomes and agreement / transition plots of stages 1-3."""
    subset, relabel, mapping = stats["subset"], stats["relabel"], stats["mapping"]
    if subset:
        mlflow.log_metrics({"subset.kept": subset["n_kept"], "subset.kept_fraction": subset["kept_fraction"]})
        agreement = confusion_figure(subset["agreement"]["matrix"], "B label x M_A prediction", "B label", "M_A prediction")
        mlflow.log_figure(agreement, "plots/subset_agreement.png")
    if relabel.get("enabled"):
        mlflow.log_metrics({"relabel.changed": relabel["n_changed"], "relabel.changed_fraction": relabel["changed_fraction"]})
        transition = confusion_figure(relabel["transition"]["matrix"], "relabel transition", "old label", "new label")
        mlflow.log_figure(transition, "plots/relabel_transition.png")
    if mapping:
        counts = {"mapped": mapping["n_mapped"], "clipped": mapping["n_clipped"], "fallbacks": len(mapping["fallbacks"])}
        mlflow.log_metrics({f"mapping.{k}": v for k, v in counts.items()})
    mlflow.set_tag("gates", "failed (warned)" if failed_gates(stats) else "passed")


def gate_reports(stats: dict) -> list[dict]:
    """Every gate record of the run: stages 1-3 and each trained row."""
    reports = [part["gates"] for part in stats.values() if isinstance(part, dict) and "gates" in part]
    return reports + [ev["gates"] for ev in stats.get("evaluations", {}).values() if "gates" in ev]


def failed_gates(stats: dict) -> list[str]:
    """The health gates that failed (mode ``warn``) in the stages the run's rows use and in every
    trained row, each with the number it observed and its limit."""
    return health_failed_gates(gate_reports(stats))


def _log_criteria(target_pseudo: pd.DataFrame, extra_marked: pd.DataFrame, extra_prepared: pd.DataFrame) -> dict:
    """V/A statistics, the labeling-criteria audit before/after stage 3 and the V/A plots; returns
    the audit's summary numbers."""
    a = split_rows(target_pseudo, "train")
    before, after = split_rows(extra_marked, "train"), split_rows(extra_prepared, "train")
    audits, numbers = criteria_report(a, before, after)
    log_frame(va_stats(a), "va_stats/target_pseudo.csv")
    log_frame(va_stats(remaining_part(before)), "va_stats/extra_remaining_before.csv")
    log_frame(va_stats(remaining_part(after)), "va_stats/extra_remaining_after.csv")
    for when, audit in audits.items():
        log_frame(audit, f"audit/criteria_{when}.csv")
    mlflow.log_metrics({f"audit.{k}": v for k, v in numbers.items()})
    centres = class_centres(a)
    mlflow.log_figure(va_scatter({"A: pseudo V/A (by A label)": a}, centres), "plots/va_target_pseudo.png")
    panels = {"B - subB before mapping": remaining_part(before), "after mapping + relabeling": remaining_part(after)}
    mlflow.log_figure(va_scatter(panels, centres), "plots/va_extra_before_after.png")
    return numbers


COMPARISON_COLUMNS = ["variant", "accuracy", "val_accuracy", "images_seen", "epochs_run", "steps", "b_passes", "flag"]


def _comparison(evaluations: dict) -> pd.DataFrame:
    """One line per reported row: test and validation accuracy, the training budget it had, and a
    flag for a row no better than always predicting A's majority class (on validation)."""
    rows = [
        {
            "variant": name,
            "accuracy": float(r["test_accuracy"]),
            "val_accuracy": float(r["val_accuracy"]),
            **{c: r.get(c) for c in COMPARISON_COLUMNS[3:7]},
            "flag": "no better than the majority class" if r.get("degenerate") else "",
        }
        for name, r in evaluations.items()
    ]
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


@step(enable_cache=False)
def report_run(
    parent_run_id: str,
    dcjt_evaluation: dict,
    ingest_gx: dict,
    subset_stats: dict,
    pseudo_stats: dict,
    mapping_stats: dict,
    relabel_stats: dict,
    target_pseudo: pd.DataFrame,
    extra_marked: pd.DataFrame,
    extra_prepared: pd.DataFrame,
    comparison_path: str,
    m_a_metrics: dict,
    promotion: dict | None = None,
    target_only_evaluation: dict | None = None,
    straight_evaluation: dict | None = None,
    straight_balanced_evaluation: dict | None = None,
    oracle_evaluation: dict | None = None,
    scn_evaluation: dict | None = None,
    scn_target_evaluation: dict | None = None,
    extra_only_evaluation: dict | None = None,
    leakage: dict | None = None,
    extra_pseudo_stats: dict | None = None,
) -> tuple[Annotated[pd.DataFrame, "comparison"], Annotated[str, "comparison_csv"], Annotated[dict, "summary"]]:
    """Log stats, plots and final metrics into the parent run, write the comparison CSV, close the run.

    ``summary`` holds every row's evaluation and the stage diagnostics (the study reads it)."""
    rows = {
        "target_only": target_only_evaluation,
        "straight": straight_evaluation,
        "straight_balanced": straight_balanced_evaluation,
        "dcjt": dcjt_evaluation,
        "oracle": oracle_evaluation,
        "scn": scn_evaluation,
        "scn_target": scn_target_evaluation,
        "extra_only": extra_only_evaluation,
    }
    evaluations = {name: r for name, r in rows.items() if r is not None}
    promotion = promotion or {}
    comparison = _comparison(evaluations)
    stats = {
        "gx": ingest_gx,
        "subset": subset_stats,
        "pseudo": pseudo_stats,
        "mapping": mapping_stats,
        "relabel": relabel_stats,
        "m_a": m_a_metrics,
        "evaluations": evaluations,
        "promotion": promotion,
        "leakage": leakage or {},
        "extra_pseudo": extra_pseudo_stats or {},
    }
    with mlflow.start_run(run_id=parent_run_id):
        log_tables(
            [(table_name(split_rows(target_pseudo, s), s), split_rows(target_pseudo, s), c) for s, c in SPLIT_CONTEXTS]
            + [(table_name(split_rows(extra_prepared, "train"), "train"), split_rows(extra_prepared, "train"), "train")]
        )
        for name, value in stats.items():
            log_json(value, f"stats/{name}.json")
        for name, r in evaluations.items():
            mlflow.log_metric(f"test_accuracy.{name}", float(r["test_accuracy"]))
        mlflow.log_metrics(
            {f"final.{k}": float(v) for k, v in dcjt_evaluation.items() if k.startswith("test_") and isinstance(v, (int, float))}
        )
        _log_stage_stats(stats)
        extras = contributions(extra_marked, extra_prepared)
        log_frame(extras.set_index("dataset"), "extras_contribution.csv")
        moves = transitions(extra_marked, extra_prepared)
        log_json(moves, "stats/extras_relabel_transitions.json")
        for dataset, m in moves.items() if len(moves) > 1 else ():
            title = f"{dataset}: relabel transition (train rows)"
            mlflow.log_figure(
                confusion_figure(m["matrix"], title, "old label", "new label"), f"plots/relabel_transition_{dataset}.png"
            )
        diagnostics = _log_criteria(target_pseudo, extra_marked, extra_prepared)
        mlflow.log_figure(confusion_figure(dcjt_evaluation["confusion"], "DCN on A's test split"), "plots/confusion_dcn.png")
        log_frame(comparison.set_index("variant"), "comparison.csv")
        verdict = promotion.get("verdict", "not registered")
        registered = {"registered_model": promotion.get("model_name", ""), "registered_version": promotion.get("version", "")}
        reason = {"promotion.reason": promotion["reason"][:4900]} if promotion.get("reason") else {}
        mlflow.set_tags({**registered, "promotion": verdict, **reason})
    mlflow.MlflowClient().set_terminated(parent_run_id, "FINISHED")
    Path(comparison_path).parent.mkdir(parents=True, exist_ok=True)
    comparison.to_csv(comparison_path, index=False)
    for part in (subset_stats, pseudo_stats, relabel_stats):
        diagnostics.update({k: v for k, v in part.get("truth", {}).items() if isinstance(v, (int, float))})
    summary = {
        "evaluations": evaluations,
        "diagnostics": diagnostics,
        "mlflow_run_id": parent_run_id,
        "subset_kept_fraction": subset_stats.get("kept_fraction"),
        "failed_gates": failed_gates(stats),
        "gates": gate_reports(stats),
        "extras": extras.to_dict("records"),
        "leaked": (leakage or {}).get("leaked"),
    }
    return comparison, comparison_path, summary


@step(enable_cache=False)
def close_finetune(
    parent_run_id: str, evaluation: dict, leakage: dict, promotion: dict | None = None
) -> Annotated[dict, "summary"]:
    """Log the fine-tuned model's test numbers into the parent run and close it."""
    with mlflow.start_run(run_id=parent_run_id):
        log_json(leakage, "stats/leakage.json")
        mlflow.log_metrics(
            {f"final.{k}": float(v) for k, v in evaluation.items() if k.startswith("test_") and isinstance(v, (int, float))}
        )
        mlflow.log_figure(confusion_figure(evaluation["confusion"], "fine-tuned model on A's test split"), "plots/confusion.png")
        mlflow.set_tags({"promotion": (promotion or {}).get("verdict", "not registered")})
    mlflow.MlflowClient().set_terminated(parent_run_id, "FINISHED")
    return {"evaluation": evaluation, "promotion": promotion, "mlflow_run_id": parent_run_id}

"""The MLflow parent run of a pipeline run: opened first, given the stages' record, closed last.

These steps never cache: every pipeline run gets its own parent run holding the resolved config,
the label-mapping statistics, GX results, plots and the final metrics under stable names, even
when the work itself came from ZenML's cache.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Annotated

import mlflow
import pandas as pd
from zenml import get_step_context
from zenml.client import Client
from zenml.types import HTMLString, MarkdownString

from dcjt.config import PipelineConfig
from dcjt.data.labels import EMOTIONS, split_rows
from dcjt.data.validation import GXSummary, gx_markdown
from dcjt.experiments.plots import confusion_figure, latent_figure, reliability_figure, va_scatter
from dcjt.experiments.records import RunSummary
from dcjt.method import class_centres, va_stats
from dcjt.method.health import failed_gates
from dcjt.method.reports import StageSummary
from dcjt.method.truth import remaining_part
from dcjt.registry.lifecycle import PromotionOutcome
from dcjt.registry.run_page import comparison_table, run_description
from dcjt.train.scoring import RowEvaluation
from dcjt.utils.links import mlflow_run_url, zenml_run_url
from dcjt.utils.mlflow_io import log_frame, log_json, log_tables, table_name
from dcjt.utils.runtime import provenance
from steps.common import dcjt_step
from steps.visuals import report_headline, step_metadata

log = logging.getLogger(__name__)

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


@dcjt_step(cached=False)
def open_tracking(config: PipelineConfig) -> Annotated[str, "parent_run_id"]:
    """Start the parent MLflow run (one per pipeline run); params = the resolved config. The two
    runs link to each other: the MLflow run's tags name the ZenML run and its dashboard page, the
    ZenML run's metadata the MLflow run and its page in the UI."""
    client = mlflow.MlflowClient()
    exp = mlflow.set_experiment(config.experiment)
    pipeline_run = get_step_context().pipeline_run
    run_name = pipeline_run.name
    tags = {"zenml.run_name": run_name, "dcjt.config": config.name, "variant": config.method.variant_name, **config.tracking_tags}
    tags |= provenance()
    zenml_url = zenml_run_url(Client().get_project(pipeline_run.project_id).name, str(pipeline_run.id))
    tags |= {"zenml.run_id": str(pipeline_run.id), "zenml.dashboard_url": zenml_url}
    run = client.create_run(exp.experiment_id, run_name=run_name, tags=tags)
    params = [mlflow.entities.Param(k, str(v)[:500]) for k, v in flatten(config.model_dump(mode="json")).items()]
    for i in range(0, len(params), 90):
        client.log_batch(run.info.run_id, params=params[i : i + 90])
    mlflow_url = mlflow_run_url(mlflow.get_tracking_uri(), exp.experiment_id, run.info.run_id)
    links = {"mlflow_run_id": run.info.run_id, "mlflow_experiment": config.experiment, "mlflow_run_url": mlflow_url or ""}
    step_metadata(links, run_id_name_or_prefix=pipeline_run.id)
    return run.info.run_id


def stage_figures(
    stages: StageSummary, target_pseudo: pd.DataFrame, extra_marked: pd.DataFrame, extra_prepared: pd.DataFrame
) -> dict[str, object]:
    """Agreement and transition matrices and the V/A scatter before / after stage 3, by file name."""
    subset, relabel = stages.subset, stages.relabel
    figures = {
        "subset_agreement": confusion_figure(subset.agreement.matrix, "B label x M_A prediction", "B label", "M_A prediction")
    }
    if relabel.enabled and relabel.transition is not None:
        figures["relabel_transition"] = confusion_figure(
            relabel.transition.matrix, "relabel transition", "old label", "new label"
        )
    record = relabel.posterior
    if record is not None and (record.held_out is not None or record.truth is not None):
        curves = {f"{record.calibrated_on}, {record.calibration}": record.held_out, "B - subB against the truth": record.truth}
        figures["relabel_reliability"] = reliability_figure(curves, record.threshold)
    if relabel.latent is not None:
        figures["latent_confusions"] = latent_figure(relabel.latent.confusions, relabel.latent.truth_confusions)
    for dataset, m in stages.transitions.items() if len(stages.transitions) > 1 else ():
        title = f"{dataset}: relabel transition (train rows)"
        figures[f"relabel_transition_{dataset}"] = confusion_figure(m.matrix, title, "old label", "new label")
    a = split_rows(target_pseudo, "train")
    before, after = remaining_part(split_rows(extra_marked, "train")), remaining_part(split_rows(extra_prepared, "train"))
    centres = class_centres(a)
    figures["va_target_pseudo"] = va_scatter({"A: pseudo V/A (by A label)": a}, centres)
    panels = {"B - subB before mapping": before, "after mapping + relabeling": after}
    figures["va_extra_before_after"] = va_scatter(panels, centres)
    return figures


def drawn(figures: dict[str, object]) -> dict[str, bytes]:
    """Each figure as PNG bytes, drawn once for the run's ``plots/`` and the stage page alike
    (drawing is most of the stage report's time; every run logs it, cached or not)."""
    import io

    pngs = {}
    for name, figure in figures.items():
        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        pngs[name] = buf.getvalue()
    return pngs


def stage_page(stages: StageSummary, pngs: dict[str, bytes]) -> str:
    """Stages 1-3 on one HTML page (ZenML's dashboard shows it): the labeling-criteria audit, each
    stage's headline numbers and gates, and the figures (``drawn``), embedded."""
    import base64
    import html

    def table(frame: pd.DataFrame) -> str:
        return frame.to_html(float_format=lambda v: f"{v:.4f}", border=0, classes="dcjt")

    parts = ["<h1>Stages 1-3 of this run</h1>"]
    if stages.audit:
        parts += ["<h2>Labeling-criteria audit (W2 to A's per-emotion Gaussians)</h2>", table(pd.DataFrame([stages.audit]).T)]
    for name in ("subset", "pseudo", "mapping", "relabel"):
        report = getattr(stages, name)
        numbers = report_headline(report)
        parts.append(f"<h2>{html.escape(type(report).__name__)}</h2>")
        if numbers:
            parts.append(table(pd.DataFrame({"value": [str(v) for v in numbers.values()]}, index=list(numbers))))
        if report.gates is not None:
            parts.append(table(pd.DataFrame([g.model_dump() for g in report.gates.gates])) if report.gates.gates else "")
        if report.gx is not None:
            verdict = "passed" if report.gx.success else "FAILED"
            parts.append(f"<p>Great Expectations on <code>{html.escape(report.gx.table)}</code>: {verdict}</p>")
    for name, png in pngs.items():
        data = base64.b64encode(png).decode()
        parts += [
            f"<h2>{html.escape(name.replace('_', ' '))}</h2>",
            f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}"/>',
        ]
    return "<html><body>" + "\n".join(parts) + "</body></html>"


@dcjt_step(cached=False)
def log_stages(
    parent_run_id: str,
    stages: StageSummary,
    target_pseudo: pd.DataFrame,
    extra_marked: pd.DataFrame,
    extra_prepared: pd.DataFrame,
) -> Annotated[HTMLString, "stage_report"]:
    """Stages 1-3 into the parent run: the label tables as datasets (B before and after stage 3,
    each with its own digest), every report (``stats/``), counts, gate outcomes, the
    labeling-criteria audit and the plots; returns the page ZenML's dashboard shows of them."""
    subset, pseudo, mapping, relabel = stages.subset, stages.pseudo, stages.mapping, stages.relabel
    with mlflow.start_run(run_id=parent_run_id):
        b_before, b_after = split_rows(extra_marked, "train"), split_rows(extra_prepared, "train")
        tables = [(table_name(split_rows(target_pseudo, s), s), split_rows(target_pseudo, s), c) for s, c in SPLIT_CONTEXTS]
        tables += [(table_name(b_before, "train (as published)"), b_before, "train")]
        tables += [(table_name(b_after, "train (relabeled)"), b_after, "train")]
        log_tables(tables, EMOTIONS)
        for name, report in (("subset", subset), ("pseudo", pseudo), ("mapping", mapping), ("relabel", relabel)):
            log_json(report.as_json(), f"stats/{name}.json")
        log_json(stages.extras_pseudo.as_json(), "stats/extra_pseudo.json")
        log_json({d: m.as_json() for d, m in stages.transitions.items()}, "stats/extras_relabel_transitions.json")
        log_frame(pd.DataFrame(stages.extras).set_index("dataset"), "extras_contribution.csv")
        for when, audit in stages.criteria_tables().items():
            log_frame(audit, f"audit/criteria_{when}.csv")
        metrics = {"subset.kept": subset.n_kept, "subset.kept_fraction": subset.kept_fraction}
        metrics |= {
            "mapping.mapped": mapping.n_mapped,
            "mapping.clipped": mapping.n_clipped,
            "mapping.fallbacks": len(mapping.fallbacks),
        }
        if relabel.enabled:
            metrics |= {"relabel.changed": relabel.n_changed, "relabel.changed_fraction": relabel.changed_fraction}
            counts = {"resolved": relabel.n_resolved, "soft": relabel.n_soft, "ignored": relabel.n_ignored}
            metrics |= {f"relabel.{k}": v for k, v in counts.items()}
        if relabel.posterior is not None:
            metrics |= {"relabel.threshold": relabel.posterior.threshold}
            mlflow.set_tag("relabel.calibration", relabel.posterior.calibration)
            for name, rel in (("heldout", relabel.posterior.held_out), ("truth", relabel.posterior.truth)):
                if rel is not None:
                    metrics |= {f"relabel.{name}_precision": rel.precision, f"relabel.{name}_ece": rel.ece}
            if relabel.posterior.weight is not None:
                metrics |= {"relabel.weight": relabel.posterior.weight}
        for warning in relabel.warnings:
            mlflow.set_tag("relabel.warning", warning)
            log.warning("stage 3b: %s", warning)
        mlflow.log_metrics(metrics | {f"audit.{k}": v for k, v in stages.audit.items()})
        a = split_rows(target_pseudo, "train")
        before, after = remaining_part(split_rows(extra_marked, "train")), remaining_part(split_rows(extra_prepared, "train"))
        log_frame(va_stats(a), "va_stats/target_pseudo.csv")
        log_frame(va_stats(before), "va_stats/extra_remaining_before.csv")
        log_frame(va_stats(after), "va_stats/extra_remaining_after.csv")
        pngs = drawn(stage_figures(stages, target_pseudo, extra_marked, extra_prepared))
        with tempfile.TemporaryDirectory() as folder:
            for name, data in pngs.items():
                (Path(folder) / f"{name}.png").write_bytes(data)
            mlflow.log_artifacts(folder, "plots")
    step_metadata({f"audit.{k}": v for k, v in stages.audit.items()} | metrics)
    return HTMLString(stage_page(stages, pngs))


def run_gates(stages: StageSummary, rows: list[RowEvaluation]) -> list:
    """Every gate report of a run: stages 1-3 and each reported row's."""
    return stages.gate_reports() + [r.gates for r in rows if r.gates is not None]


def log_rows_on_their_runs(rows: list[RowEvaluation]) -> None:
    """Each reported row's scores on the child run that trained it, under the same keys for every
    row (``row.test_accuracy``...), so the runs table and charts line the rows up on one axis."""
    client = mlflow.MlflowClient()
    for r in rows:
        if not r.training_run_id:
            continue
        metrics = {"row.test_accuracy": r.test.accuracy, "row.val_accuracy": r.val.accuracy, "row.test_macro_f1": r.test.macro_f1}
        client.log_batch(
            r.training_run_id, metrics=[mlflow.entities.Metric(k, v, int(time.time() * 1000), 0) for k, v in metrics.items()]
        )
        client.set_tag(r.training_run_id, "dcjt.row", r.row)


def gx_results(report: dict) -> list[dict]:
    """The Great Expectations summaries in an ingest report (the synthetic world's roles, or a
    target and each extra dataset by name)."""
    found = []
    for key, value in report.items():
        if key == "gx" and isinstance(value, dict) and "table" in value:
            found.append(value)
        elif isinstance(value, dict):
            found += gx_results(value)
    return found


@dcjt_step(cached=False)
def report_run(
    parent_run_id: str,
    rows: list[RowEvaluation],
    stages: StageSummary,
    ingest: dict,
    leakage: dict,
    comparison_path: str,
    promotion: PromotionOutcome | None = None,
) -> tuple[
    Annotated[pd.DataFrame, "comparison"],
    Annotated[str, "comparison_csv"],
    Annotated[RunSummary, "summary"],
    Annotated[MarkdownString, "run_report"],
]:
    """Every row's scores, the gates, the promotion outcome into the parent run; the comparison
    CSV; close the run. ``summary`` is what the CLI and the studies read; ``run_report`` what
    ZenML's dashboard shows: the comparison, the registry's verdict, the gates and the Great
    Expectations results of the ingested tables."""
    comparison = comparison_table(rows)
    dcjt = next(r for r in rows if r.row == "dcjt")
    gates = run_gates(stages, rows)
    with mlflow.start_run(run_id=parent_run_id):
        log_json(ingest, "stats/gx.json")
        log_json(leakage, "stats/leakage.json")
        log_json({r.row: r.model_dump(mode="json") for r in rows}, "stats/evaluations.json")
        if promotion is not None:
            log_json(promotion.model_dump(mode="json"), "stats/promotion.json")
        mlflow.log_metrics({f"test_accuracy.{r.row}": r.test.accuracy for r in rows})
        final = {k: getattr(dcjt.test, k) for k in ("accuracy", "mean_class_accuracy", "macro_f1", "kappa")}
        mlflow.log_metrics(
            {f"final.test_{k}": v for k, v in final.items()} | {f"final.test_truth_{k}": v for k, v in dcjt.test.va_truth.items()}
        )
        mlflow.log_figure(confusion_figure(dcjt.test.confusion, "DCN on A's test split"), "plots/confusion_dcn.png")
        log_frame(comparison.set_index("variant"), "comparison.csv")
        failed = failed_gates(gates)
        tags = {"gates": "failed (warned)" if failed else "passed"}
        tags |= {"registered_model": promotion.model_name, "registered_version": promotion.version} if promotion else {}
        tags |= {"promotion": promotion.verdict if promotion else "not registered"}
        tags |= {"promotion.reason": promotion.reason[:4900]} if promotion else {}
        tags["mlflow.note.content"] = run_description(comparison, promotion, failed)
        mlflow.set_tags(tags)
    log_rows_on_their_runs(rows)
    mlflow.MlflowClient().set_terminated(parent_run_id, "FINISHED")
    Path(comparison_path).parent.mkdir(parents=True, exist_ok=True)
    comparison.to_csv(comparison_path, index=False)
    summary = RunSummary(
        mlflow_run_id=parent_run_id,
        rows=rows,
        diagnostics=stages.diagnostics(),
        gates=gates,
        failed_gates=failed,
        extras=stages.extras,
        leaked=leakage.get("leaked"),
    )
    step_metadata(
        {f"{r.row}.test_accuracy": r.test.accuracy for r in rows}
        | {f"{r.row}.val_accuracy": r.val.accuracy for r in rows}
        | {"gates": tags["gates"], "promotion": tags["promotion"]}
    )
    ingested = [gx_markdown(GXSummary.model_validate(found)) for found in gx_results(ingest)]
    page = "\n\n".join(["# This run", run_description(comparison, promotion, failed), "## Label tables as ingested", *ingested])
    return comparison, comparison_path, summary, MarkdownString(page)


@dcjt_step(cached=False)
def close_finetune(
    parent_run_id: str, evaluation: RowEvaluation, leakage: dict, promotion: PromotionOutcome | None = None
) -> Annotated[dict, "summary"]:
    """Log the fine-tuned model's test numbers into the parent run and close it."""
    with mlflow.start_run(run_id=parent_run_id):
        log_json(leakage, "stats/leakage.json")
        test = evaluation.test
        mlflow.log_metrics({f"final.test_{k}": getattr(test, k) for k in ("accuracy", "mean_class_accuracy", "macro_f1")})
        mlflow.log_figure(confusion_figure(test.confusion, "fine-tuned model on A's test split"), "plots/confusion.png")
        mlflow.set_tags({"promotion": promotion.verdict if promotion else "not registered"})
    mlflow.MlflowClient().set_terminated(parent_run_id, "FINISHED")
    return {
        "evaluation": evaluation.model_dump(mode="json"),
        "promotion": promotion.model_dump(mode="json") if promotion else None,
        "mlflow_run_id": parent_run_id,
    }

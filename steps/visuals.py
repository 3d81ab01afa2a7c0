"""What ZenML's dashboard shows of a run: stage reports rendered beside their artifacts, the Great
Expectations result of every label table a step validates, and headline numbers as step metadata.

The pages are built from the typed reports (``dcjt.method.reports.record_markdown``,
``dcjt.data.validation.gx_markdown``); nothing is computed here that the run does not already have.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pandas as pd
from zenml import get_step_context, log_metadata
from zenml.enums import ArtifactType, VisualizationType
from zenml.materializers.pydantic_materializer import PydanticMaterializer

from dcjt.data.validation import GXSummary, ValidationError, gx_summary
from dcjt.method.reports import StageReport, StageSummary, record_markdown

log = logging.getLogger(__name__)


class ReportMaterializer(PydanticMaterializer):
    """Stage reports and the stages' summary: stored as JSON (as before), shown as a Markdown page."""

    ASSOCIATED_TYPES = (StageReport, StageSummary)
    ASSOCIATED_ARTIFACT_TYPE = ArtifactType.DATA_ANALYSIS

    def save_visualizations(self, data: StageReport | StageSummary) -> dict[str, VisualizationType]:
        path = os.path.join(self.uri, "report.md")
        with self.artifact_store.open(path, "w") as f:
            f.write(record_markdown(data, type(data).__name__))
        return {path: VisualizationType.MARKDOWN}


def in_step() -> bool:
    try:
        get_step_context()
        return True
    except RuntimeError:
        return False


def step_metadata(metadata: dict[str, Any], **target) -> None:
    """Numbers on the running step, or on what ``target`` names (``run_id_name_or_prefix=``: the
    pipeline run); the dashboard's metadata tab compares them across runs. ZenML refuses ``:`` in
    keys and NaN values; a failure to record is logged, never stops the run."""
    clean = {k.replace(":", " -"): v for k, v in metadata.items() if v is not None and not (isinstance(v, float) and v != v)}
    if clean and in_step():
        try:
            log_metadata(metadata=clean, **target)
        except Exception as exc:  # what the dashboard shows never stops a run
            log.warning("run metadata not recorded: %s: %s", type(exc).__name__, str(exc)[:300])


def validated(table: pd.DataFrame, name: str, **kwargs) -> GXSummary:
    """``gx_summary`` that leaves its result on the step: the expectations and their outcome, and
    on a failure the failed expectations with sample rows, before the step stops."""
    try:
        summary = gx_summary(table, name, **kwargs)
    except ValidationError as exc:
        failures = [{k: str(v)[:300] for k, v in f.items()} for f in exc.report.failures]
        step_metadata({f"gx {name}": {"success": False, "rows": len(table), "failed": failures}})
        raise
    passed = sum(e["success"] for e in summary.expectations)
    step_metadata(
        {f"gx {name}": {"success": True, "rows": summary.rows, "expectations met": f"{passed}/{len(summary.expectations)}"}}
    )
    return summary


def report_headline(report: StageReport) -> dict[str, Any]:
    """A report's top-level numbers (kept share, counts, fractions) and its gates' verdict."""
    values = {name: getattr(report, name) for name in type(report).model_fields}
    numbers = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    numbers |= {f"truth.{k}": v for k, v in report.truth.items()}
    if report.gates is not None:
        numbers["gates passed"] = report.gates.passed
    return numbers

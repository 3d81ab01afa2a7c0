"""Great Expectations (1.x) guards for label tables.

GX runs in an ephemeral context (no files written). ZenML's GX integration needs GX < 1.0, so
the suite is used directly here and called from steps. Cross-row rules that GX's pandas
expectations cannot state (an image in both train and test) become helper columns of a
derived frame that GX then checks, so every rule is reported the same way.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from dcjt.data.labels import (
    EMOTIONS,
    LABEL_ORIGINS,
    M_A_PROB_COLUMNS,
    NUM_CLASSES,
    SOFT_COLUMNS,
    SPLITS,
    VA_ORIGINS,
    LabelTableError,
    check_table,
    write_table,
)
from dcjt.utils.markdown import markdown_table


@dataclass
class ValidationReport:
    """Outcome of one suite run: success, failures with samples, and GX's full JSON."""

    success: bool
    failures: list[dict] = field(default_factory=list)
    result_json: dict = field(default_factory=dict)
    expectations: list[dict] = field(default_factory=list)  # every expectation that ran: type, column, success, count

    def message(self, name: str) -> str:
        lines = [f"{name}: {len(self.failures)} expectation(s) failed"]
        for f in self.failures:
            said = f.get("detail") or f"{f['unexpected_count']} bad rows, e.g. {f['samples'] or f['observed']}"
            lines.append(f"  - {f['expectation']} {f['kwargs']}: {said}")
        return "\n".join(lines)


class ValidationError(LabelTableError):
    def __init__(self, report: ValidationReport, name: str):
        super().__init__(report.message(name))
        self.report = report


def _with_helper_columns(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in ("dataset", "split", "image", "label_origin", "va_origin"):
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    train = set(zip(df.loc[df["split"] == "train", "dataset"], df.loc[df["split"] == "train", "image"]))
    test_keys = list(zip(df["dataset"], df["image"]))
    is_test = (df["split"] == "test").to_numpy()
    out["train_test_overlap"] = [bool(t and k in train) for t, k in zip(is_test, test_keys)]
    out["va_pair"] = np.where(df["valence"].isna() == df["arousal"].isna(), "ok", "half_missing")
    out["distributions"] = _distribution_check(df)
    return out


def _distribution_check(df: pd.DataFrame) -> np.ndarray:
    """Per row, whether its class distributions hold: M_A's probabilities and a soft target each
    lie in [0, 1] and sum to 1 (a soft target: or to 0, ignored; NaN: none)."""
    ok = np.ones(len(df), dtype=bool)
    for columns, may_be_zero in ((M_A_PROB_COLUMNS, False), (SOFT_COLUMNS, True)):
        if not all(c in df for c in columns):
            continue
        p = df[list(columns)].to_numpy(dtype=float)
        unset = np.isnan(p).all(axis=1)
        total = np.nansum(p, axis=1)
        sums = np.isclose(total, 1.0, atol=1e-4) | (may_be_zero & np.isclose(total, 0.0, atol=1e-6))
        ok &= unset | (~np.isnan(p).any(axis=1) & (p >= 0).all(axis=1) & (p <= 1 + 1e-6).all(axis=1) & sums)
    return np.where(ok, "ok", "broken")


def _build_suite(require_all_classes: bool = True):
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    suite = gx.ExpectationSuite(name="label_table")
    add = suite.add_expectation
    add(gxe.ExpectColumnValuesToNotBeNull(column="image"))
    add(gxe.ExpectColumnValuesToNotBeNull(column="dataset"))
    add(gxe.ExpectCompoundColumnsToBeUnique(column_list=["dataset", "image"]))
    add(gxe.ExpectColumnValuesToNotBeNull(column="label"))
    add(gxe.ExpectColumnValuesToBeBetween(column="label", min_value=0, max_value=NUM_CLASSES - 1))
    add(gxe.ExpectColumnValuesToBeBetween(column="valence", min_value=-1.0, max_value=1.0))
    add(gxe.ExpectColumnValuesToBeBetween(column="arousal", min_value=-1.0, max_value=1.0))
    add(gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)))
    add(gxe.ExpectColumnValuesToBeInSet(column="label_origin", value_set=list(LABEL_ORIGINS)))
    add(gxe.ExpectColumnValuesToBeInSet(column="va_origin", value_set=list(VA_ORIGINS)))
    add(gxe.ExpectColumnValuesToBeInSet(column="va_pair", value_set=["ok"]))
    add(gxe.ExpectColumnValuesToBeInSet(column="distributions", value_set=["ok"]))
    for col in ("valence", "arousal"):
        add(gxe.ExpectColumnValuesToNotBeNull(column=col, row_condition=Column("va_origin") != "none"))
    add(gxe.ExpectColumnValuesToBeInSet(column="train_test_overlap", value_set=[False]))
    if require_all_classes:
        add(
            gxe.ExpectColumnDistinctValuesToContainSet(
                column="label", value_set=list(range(NUM_CLASSES)), row_condition=Column("split") == "train"
            )
        )
    return suite


def validate_table(df: pd.DataFrame, *, require_all_classes: bool = True) -> ValidationReport:
    """Check the table's structure, then run the GX suite and collect failures with sample rows."""
    check_table(df)
    return run_suite(df, require_all_classes=require_all_classes)


def run_suite(df: pd.DataFrame, *, require_all_classes: bool = True) -> ValidationReport:
    """The GX suite alone (``validate_table`` runs the cheap structural checks first)."""
    import great_expectations as gx

    frame = _with_helper_columns(df.reset_index(drop=True))
    from great_expectations.data_context.types.base import ProgressBarsConfig

    with contextlib.redirect_stdout(io.StringIO()):  # GX prints its ephemeral docs-site set-up
        context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("label_tables")
    batch_def = source.add_dataframe_asset(name="table").add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(_build_suite(require_all_classes and bool((frame["split"] == "train").any())))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="label_table", data=batch_def, suite=suite))
    result = definition.run(batch_parameters={"dataframe": frame}, result_format={"result_format": "COMPLETE"})
    failures, ran = [], []
    for r in result.results:
        cfg = r.expectation_config
        res = r.result or {}
        column = cfg.kwargs.get("column") or ", ".join(cfg.kwargs.get("column_list") or [])
        ran.append(
            {
                "expectation": cfg.type,
                "column": column,
                "success": bool(r.success),
                "unexpected": int(res.get("unexpected_count") or 0),
            }
        )
        if r.success:
            continue
        idx = res.get("unexpected_index_list") or []
        if idx and isinstance(idx[0], dict):
            idx = [d.get("index", d) for d in idx]
        try:
            samples = frame.loc[
                list(idx)[:5], [c for c in ("image", "split", "label", "valence", "arousal") if c in frame]
            ].to_dict("records")
        except (KeyError, TypeError):
            samples = res.get("partial_unexpected_list") or res.get("observed_value") or []
        kwargs = {
            k: v
            for k, v in cfg.kwargs.items()
            if k in ("column", "column_list", "value_set", "min_value", "max_value", "row_condition")
        }
        failures.append(
            {
                "expectation": cfg.type,
                "kwargs": kwargs,
                "unexpected_count": int(res.get("unexpected_count") or len(idx) or 0),
                "observed": res.get("observed_value"),
                "samples": samples if isinstance(samples, list) else [samples],
                "detail": _missing_classes(frame) if cfg.type == "expect_column_distinct_values_to_contain_set" else "",
            }
        )
    full = json.loads(json.dumps(result.to_json_dict(), default=str))
    return ValidationReport(success=bool(result.success), failures=failures, result_json=full, expectations=ran)


def _missing_classes(frame: pd.DataFrame) -> str:
    """The emotions the train split has no row of, by name (GX reports only the values it saw)."""
    present = set(frame.loc[frame["split"] == "train", "label"].dropna().astype(int))
    missing = [f"{EMOTIONS[k]} ({k})" for k in range(NUM_CLASSES) if k not in present]
    return f"the train split has no row of {', '.join(missing)}: every emotion needs training rows"


def assert_valid(df: pd.DataFrame, name: str = "table", *, require_all_classes: bool = True) -> ValidationReport:
    """Validate and raise ``ValidationError`` naming every failed expectation."""
    report = validate_table(df, require_all_classes=require_all_classes)
    if not report.success:
        raise ValidationError(report, name)
    return report


class GXSummary(BaseModel):
    """The suite's outcome on one label table, as stage reports and ingest reports keep it."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    table: str
    success: bool
    rows: int = 0
    failures: list[dict[str, Any]] = Field(default_factory=list)
    statistics: dict[str, Any] = Field(default_factory=dict)
    expectations: list[dict[str, Any]] = Field(default_factory=list)  # each that ran, with its outcome


def gx_summary(df: pd.DataFrame, name: str, *, require_all_classes: bool = False) -> GXSummary:
    """Validate a table (raises ``ValidationError`` on failure); the summary kept with its report."""
    report = assert_valid(df, name=name, require_all_classes=require_all_classes)
    return GXSummary(
        table=name,
        success=report.success,
        rows=len(df),
        failures=json.loads(json.dumps(report.failures, default=str)),
        statistics=report.result_json.get("statistics", {}),
        expectations=report.expectations,
    )


def write_valid_table(df: pd.DataFrame, path) -> ValidationReport:
    """Run the full suite, then write the table atomically: a failing table is never written."""
    report = assert_valid(df, name=str(path))
    write_table(df, path)
    return report


def gx_markdown(summary: GXSummary) -> str:
    """One validation as a team reads it: the verdict, every expectation that ran (with its
    outcome and bad-row count) and, for each failure, sample rows."""
    stats = summary.statistics
    verdict = "passed" if summary.success else "FAILED"
    lines = [
        f"**Great Expectations on `{summary.table}`: {verdict}** ({summary.rows:,} rows; "
        f"{stats.get('successful_expectations', '?')} of {stats.get('evaluated_expectations', '?')} expectations met)",
    ]
    if summary.expectations:
        frame = pd.DataFrame(summary.expectations)
        frame["success"] = frame["success"].map({True: "yes", False: "**no**"})
        lines.append(markdown_table(frame, index=False))
    for failure in summary.failures:
        said = failure.get("detail") or f"{failure.get('unexpected_count', 0)} bad rows, e.g. {failure.get('samples')}"
        lines.append(f"- failed `{failure['expectation']}` {failure.get('kwargs', {})}: {said}")
    return "\n\n".join(lines)

"""What one pipeline run hands to whoever reads it afterwards (the CLI, a study): every reported
row's evaluation, the stages' diagnostics and gates, what each extra contributed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dcjt.method.reports import GateReport
from dcjt.train.scoring import RowEvaluation


class RunSummary(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    mlflow_run_id: str
    rows: list[RowEvaluation]
    diagnostics: dict[str, float] = Field(default_factory=dict)
    gates: list[GateReport] = Field(default_factory=list)
    failed_gates: list[str] = Field(default_factory=list)
    extras: list[dict[str, Any]] = Field(default_factory=list)
    leaked: int | None = None

    def row(self, name: str) -> RowEvaluation:
        for r in self.rows:
            if r.row == name:
                return r
        raise KeyError(f"no row {name!r} in this run; rows: {[r.row for r in self.rows]}")

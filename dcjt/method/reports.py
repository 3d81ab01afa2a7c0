"""What each stage reports beside its table, as typed records (pydantic): read by attribute, not by
key paths in distant files, stored by ZenML as JSON, logged to MLflow as JSON.

Every stage report carries its health gates (``GateReport``), the Great Expectations summary of
its table (``GXSummary``), its diagnostics against the synthetic world's truth (``truth``: empty
on real data) and, with several extras, the same report for each of them (``per_dataset``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from dcjt.data.validation import GXSummary, gx_markdown
from dcjt.utils.markdown import markdown_table


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")  # NaN diagnostics survive a round trip

    def as_json(self) -> dict:
        return self.model_dump(mode="json")


class MatrixRecord(Record):
    """A 7 x 7 count matrix in the canonical emotion order (rows x columns)."""

    rows: str
    columns: str
    labels: list[str]
    matrix: list[list[int]]


class GateRecord(Record):
    name: str
    observed: float
    threshold: float
    passed: bool
    rule: str
    key: str = "gates.mode"
    basis: str = ""


class GateReport(Record):
    """One stage's (or row's) gates: ``mode`` stop | warn | not used (the run's rows skip the stage)."""

    stage: str
    passed: bool
    mode: str
    gates: list[GateRecord] = Field(default_factory=list)


class StageReport(Record):
    gates: GateReport | None = None
    gx: GXSummary | None = None
    truth: dict[str, float] = Field(default_factory=dict)


class SubsetReport(StageReport):
    """Stage 1: which rows of B M_A agrees with."""

    n_rows: int
    n_kept: int
    kept_fraction: float
    kept_per_class: dict[str, int]
    total_per_class: dict[str, int]
    agreement: MatrixRecord
    m_a: dict[str, float] = Field(default_factory=dict)  # M_A's selected-epoch validation scores
    per_dataset: dict[str, SubsetReport] = Field(default_factory=dict)


class PseudoReport(StageReport):
    """Stage 2: A's pseudo valence/arousal from M_B."""

    va_stats: list[dict[str, Any]] = Field(default_factory=list)
    m_b: dict[str, float] = Field(default_factory=dict)  # M_B's selected-epoch validation scores


class ExtrasPseudoReport(StageReport):
    """Stage 2 for extras without valence/arousal: M_B's pseudo V/A, per extra."""

    datasets: dict[str, dict[str, float]] = Field(default_factory=dict)


class MappingReport(StageReport):
    """Stage 3a: B - subB's valence/arousal mapped onto A's Gaussians."""

    mode: str
    b_stats_from: str = "all"
    n_mapped: int = 0
    n_clipped: int = 0
    transforms: dict[str, dict[str, Any]] = Field(default_factory=dict)
    fallbacks: list[dict[str, Any]] = Field(default_factory=list)
    target_stats: list[dict[str, Any]] = Field(default_factory=list)
    extra_stats: list[dict[str, Any]] = Field(default_factory=list)
    per_dataset: dict[str, MappingReport] = Field(default_factory=dict)

    @property
    def clipped_share(self) -> float:
        return self.n_clipped / self.n_mapped if self.n_mapped else 0.0


class Reliability(Record):
    """A confidence's calibration on rows with a known label (``dcjt.method.calibration``): ECE,
    precision and coverage at the rule's threshold, and per confidence bin [mean confidence,
    accuracy, rows]."""

    rows: int = 0
    ece: float = float("nan")
    precision: float = float("nan")
    coverage: float = 0.0
    bins: list[list[float]] = Field(default_factory=list)


class PosteriorRecord(Record):
    """Stage 3b's posterior (``posterior`` and ``latent`` modes): the evidence, M_A's weight and the
    threshold a new label must pass, each with where it came from (``chosen_on``: A's validation
    rows, or the config), and the validation scores they were chosen by.

    ``val_precision``/``val_coverage`` (what the relabel gate reads) are measured on rows the rule
    was not fitted on when ``calibration`` says ``cross-fitted`` (``held_out``: the whole
    reliability table); ``in_sample_precision`` is the same rule judged on the rows that chose it
    (the optimism cross-fitting removes); ``truth``: B - subB against the synthetic world's truth."""

    evidence: str
    weight: float | None = None
    threshold: float
    chosen_on: str
    val_rows: int = 0
    val_precision: float = float("nan")
    val_coverage: float = 0.0
    target_precision: float = 0.9
    reached: bool = True
    weight_scores: dict[str, float] = Field(default_factory=dict)
    calibration: str = "in-sample"
    calibrated_on: str = "A's validation rows"  # or B's audited rows (``method.relabel_calibration: audit``)
    in_sample_precision: float = float("nan")
    held_out: Reliability | None = None
    truth: Reliability | None = None


class LatentRecord(Record):
    """The latent-truth model's fit: each annotator's confusion (rows: true class, columns: its
    answer; shares), B's class prior, and how EM ended."""

    confusions: dict[str, list[list[float]]]
    truth_confusions: dict[str, list[list[float]]] = Field(default_factory=dict)  # synthetic world only
    prior: list[float]
    iterations: int
    converged: bool
    log_likelihood: float
    anchors: int


class RelabelReport(StageReport):
    """Stage 3b: B - subB relabeled (``mode``: by A's class centres, a class posterior or a latent
    true class), the rows resolved, trained on a soft target or ignored, and the rule's health on
    A's trusted validation rows."""

    mode: str
    enabled: bool = False
    n_considered: int = 0
    n_changed: int = 0
    changed_fraction: float = 0.0
    centres: dict[str, list[float]] = Field(default_factory=dict)
    absent_classes: list[str] = Field(default_factory=list)
    transition: MatrixRecord | None = None
    gate_ratio: float | None = None
    gate_m_a: bool | None = None
    vetoed: dict[str, int] = Field(default_factory=dict)
    n_resolved: int = 0  # rows of B - subB whose label the rule is sure of (changed or confirmed)
    n_soft: int = 0  # rows that train on their posterior (``unresolved: soft``)
    n_ignored: int = 0  # rows whose discrete term is dropped (``unresolved: ignore``)
    posterior: PosteriorRecord | None = None
    latent: LatentRecord | None = None
    warnings: list[str] = Field(default_factory=list)
    health: dict[str, float] = Field(default_factory=dict)
    per_dataset: dict[str, RelabelReport] = Field(default_factory=dict)


class StageSummary(Record):
    """Stages 1-3 of one run together: their reports, the labeling-criteria audit of B - subB
    before and after stage 3 (``audit``: 2-Wasserstein distances to A's pseudo, and on the
    synthetic world true, per-emotion Gaussians) and what each extra contributed."""

    subset: SubsetReport
    pseudo: PseudoReport
    mapping: MappingReport
    relabel: RelabelReport
    extras_pseudo: ExtrasPseudoReport = Field(default_factory=ExtrasPseudoReport)
    audit: dict[str, float] = Field(default_factory=dict)
    extras: list[dict[str, Any]] = Field(default_factory=list)
    transitions: dict[str, MatrixRecord] = Field(default_factory=dict)
    criteria: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description="the labeling-criteria audit tables (before / after stage 3), one row per emotion"
    )

    def criteria_tables(self) -> dict[str, pd.DataFrame]:
        """The criteria audits as tables, indexed by emotion (``global`` for all of B - subB)."""
        return {when: pd.DataFrame(rows).set_index("emotion") for when, rows in self.criteria.items()}

    def gate_reports(self) -> list[GateReport]:
        return [r.gates for r in (self.subset, self.pseudo, self.mapping, self.relabel) if r.gates is not None]

    def diagnostics(self) -> dict[str, float]:
        """The audit and every stage's truth diagnostics (the studies' columns)."""
        out = dict(self.audit)
        for part in (self.subset, self.pseudo, self.relabel):
            out.update(part.truth)
        record = self.relabel.posterior
        if record is not None:  # what stage 3b chose on A's validation rows, and how well it holds
            out["relabel_threshold"] = record.threshold
            if record.weight is not None:
                out["relabel_weight"] = record.weight
            out["relabel_insample_precision"] = record.in_sample_precision
            for name, rel in (("heldout", record.held_out), ("truth", record.truth)):
                if rel is not None:
                    out |= {f"relabel_{name}_precision": rel.precision, f"relabel_{name}_ece": rel.ece}
                    out[f"relabel_{name}_coverage"] = rel.coverage
        return out

    def card_numbers(self) -> dict[str, float]:
        """Stages 1-3 in numbers for the model card."""
        numbers = {
            "subset kept fraction": self.subset.kept_fraction,
            "relabeled fraction of B - subB": self.relabel.changed_fraction,
            "mapped rows clipped to [-1, 1]": float(self.mapping.n_clipped),
        }
        return {**numbers, **self.audit}


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def record_markdown(record: BaseModel, title: str, level: int = 2) -> str:
    """A report as a page: its numbers in a table, then its matrices, gates, Great Expectations
    result, per-class tables and per-extra reports, each under its own heading (ZenML's dashboard
    renders it beside the artifact; nothing here is computed anew)."""
    head = "#" * level
    parts = [f"{head} {title}"]
    if record.__doc__:
        parts.append(" ".join(record.__doc__.split()))
    values = {name: getattr(record, name) for name in type(record).model_fields}
    scalars = {k: v for k, v in values.items() if _scalar(v) and v not in ("", None)}
    if scalars:
        shown = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in scalars.values()]
        parts.append(markdown_table(pd.DataFrame({"value": shown}, index=list(scalars))))
    for name, value in values.items():
        sub = f"{head}# {name}"
        if isinstance(value, GXSummary):
            parts += [sub, gx_markdown(value)]
        elif isinstance(value, MatrixRecord):
            frame = pd.DataFrame(value.matrix, index=value.labels, columns=value.labels)
            parts += [f"{sub} (rows: {value.rows}; columns: {value.columns})", markdown_table(frame)]
        elif isinstance(value, GateReport):
            verdict = "passed" if value.passed else "FAILED"
            frame = pd.DataFrame([g.model_dump() for g in value.gates]) if value.gates else pd.DataFrame()
            parts += [
                f"{sub}: {value.stage} {verdict} (mode {value.mode})",
                markdown_table(frame, digits=4, index=False) if len(frame) else "",
            ]
        elif isinstance(value, Record):
            parts.append(record_markdown(value, name, level + 1))
        elif isinstance(value, dict) and value and all(isinstance(v, Record) for v in value.values()):
            parts += [record_markdown(v, f"{name}: {k}", level + 1) for k, v in value.items()]
        elif isinstance(value, dict) and value and all(_scalar(v) for v in value.values()):
            parts += [sub, markdown_table(pd.DataFrame({"value": list(value.values())}, index=list(value)), digits=4)]
        elif (
            isinstance(value, dict)
            and value
            and all(isinstance(v, dict) and all(map(_scalar, v.values())) for v in value.values())
        ):
            parts += [sub, markdown_table(pd.DataFrame.from_dict(value, orient="index"), digits=4)]
        elif isinstance(value, dict) and value and all(isinstance(v, list) and v for v in value.values()):
            for key, rows in value.items():  # tables by key (the criteria audits before / after stage 3)
                parts += [f"{sub}: {key}", markdown_table(pd.DataFrame(rows), digits=4, index=False)]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            parts += [sub, markdown_table(pd.DataFrame(value), digits=4, index=False)]
        elif isinstance(value, list) and value:
            parts += [sub, ", ".join(map(str, value))]
    return "\n\n".join(p for p in parts if p)

"""Stages 1-3 as steps: subset selection, pseudo valence/arousal, mapping, relabeling.

Each step runs a model where the stage needs one, calls the stage's function in
``dcjt.method``, re-validates the changed table with the GX suite and returns table + stats.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from dcjt.config import GatesConfig, MethodConfig
from dcjt.data.cache import load_cache
from dcjt.data.labels import M_B_VA_COLUMNS, SUBSET_COLUMN, split_rows
from dcjt.method import pseudo_label, relabel, select_subset, take_fraction, with_m_a_probabilities, with_pseudo_va
from dcjt.method.extras import datasets, map_by_dataset, relabel_by_dataset, subset_by_dataset, va_datasets
from dcjt.method.health import (
    extra_subset_gates,
    gate_report,
    mapping_gates,
    of_dataset,
    posterior_health,
    pseudo_gates,
    relabel_gates,
    relabel_health,
    subset_gates,
    trusted_rows,
)
from dcjt.method.relabel import validation_part
from dcjt.method.reports import ExtrasPseudoReport, MappingReport, PseudoReport, RelabelReport, StageSummary, SubsetReport
from dcjt.method.stage_summary import summarise_stages
from dcjt.method.truth import pseudo_truth
from dcjt.train.batches import samples_from
from dcjt.train.predict import predict
from steps.common import dcjt_step
from steps.handoff import CacheRef
from steps.visuals import report_headline, step_metadata, validated


class StageCheck(BaseModel):
    """A stage's health gates (``gates``) and whether the run's rows use the stage (``applies``):
    only then can its gates stop the run (``dcjt.plan.RunPlan.gates``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gates: GatesConfig = Field(default_factory=GatesConfig)
    applies: bool = True


@dcjt_step()
def select_extra_subset(
    m_a: torch.nn.Module,
    m_a_metrics: dict,
    extra_table: pd.DataFrame,
    extra_cache: CacheRef,
    extra_fraction: float,
    seed: int,
    check: StageCheck,
) -> tuple[Annotated[pd.DataFrame, "extra_marked"], Annotated[SubsetReport, "subset_report"]]:
    """Stage 1: M_A predicts every image of B (or of a seeded share of it, ``extra_fraction``);
    keep the rows where it agrees with B's label. ``applies``: the run's rows use stage 1, so its
    gates may stop the run."""
    extra = take_fraction(extra_table, extra_fraction, seed)
    probs, _ = predict(m_a, samples_from(extra, load_cache(extra_cache.path)))
    marked, report = select_subset(extra, probs)
    checks = subset_gates(m_a_metrics, report, check.gates)
    report.per_dataset = subset_by_dataset(extra, probs)
    for name, own in report.per_dataset.items():
        checks += extra_subset_gates(name, own, check.gates)
    report.m_a = {k: float(v) for k, v in m_a_metrics.items() if k.endswith("_selected")}
    report.gates = gate_report("stage 1 (M_A, subset)", checks, check.gates.mode, check.applies)
    report.gx = validated(marked, "extra after subset selection")
    step_metadata(report_headline(report) | {f"M_A {k}": v for k, v in report.m_a.items()})
    return marked, report


def published_va_rows(extra_marked: pd.DataFrame, pseudo_from: str) -> pd.DataFrame:
    """The rows of B whose published V/A M_B learns from (its subset, or all of B)."""
    rows = split_rows(extra_marked, "train")
    rows = rows[rows["va_origin"].astype(str).eq("human").to_numpy()]
    return rows[rows[SUBSET_COLUMN].to_numpy(dtype=bool)] if pseudo_from == "subset" else rows


@dcjt_step()
def pseudo_label_target(
    m_b: torch.nn.Module,
    m_b_metrics: dict,
    m_a: torch.nn.Module,
    target_table: pd.DataFrame,
    target_cache: CacheRef,
    extra_marked: pd.DataFrame,
    pseudo_from: str,
    check: StageCheck,
) -> tuple[Annotated[pd.DataFrame, "target_pseudo"], Annotated[PseudoReport, "pseudo_report"]]:
    """Stage 2: M_B predicts valence/arousal for every image of A (its pseudo continuous labels).
    M_A's probabilities for each row of A ride along: stage 3b chooses its posterior's weight and
    threshold, and its health gate applies the relabel rule, on A's validation rows (labels trusted)."""
    samples = samples_from(target_table, load_cache(target_cache.path))
    _, va = predict(m_b, samples)
    m_a_probs, _ = predict(m_a, samples)
    pseudo, report = pseudo_label(target_table, va)
    pseudo = with_m_a_probabilities(pseudo, m_a_probs)
    checks = pseudo_gates(pseudo, published_va_rows(extra_marked, pseudo_from), m_b_metrics, check.gates)
    report.m_b = {k: float(v) for k, v in m_b_metrics.items() if k.endswith("_selected")}
    report.gates = gate_report("stage 2 (M_B, pseudo V/A)", checks, check.gates.mode, check.applies)
    report.gx = validated(pseudo, "target with pseudo V/A")
    step_metadata(report_headline(report) | {f"M_B {k}": v for k, v in report.m_b.items()})
    return pseudo, report


@dcjt_step()
def pseudo_label_extras(
    m_b: torch.nn.Module, extra_marked: pd.DataFrame, extra_cache: CacheRef, every_row: bool = False
) -> tuple[Annotated[pd.DataFrame, "extra_with_va"], Annotated[ExtrasPseudoReport, "extras_pseudo_report"]]:
    """Stage 2 for the extras without valence/arousal: M_B predicts them (as it does for A), so
    their rows outside the subset can be relabeled by A's class centres. With ``every_row`` (a row
    relabels on ``method.relabel_va: predicted``) M_B's V/A for every row of B as well, in
    ``M_B_VA_COLUMNS``: the instrument that gave A's pseudo V/A."""
    discrete = extra_marked["dataset"].astype(str).isin([d for d in datasets(extra_marked) if d not in va_datasets(extra_marked)])
    asked = np.ones(len(extra_marked), dtype=bool) if every_row else discrete.to_numpy()
    if not asked.any():
        return extra_marked, ExtrasPseudoReport()
    _, va = predict(m_b, samples_from(extra_marked[asked], load_cache(extra_cache.path)))
    predicted = np.full((len(extra_marked), 2), np.nan)
    predicted[asked] = np.clip(np.asarray(va, dtype=float), -1, 1)
    out = extra_marked.copy()
    if every_row:
        out[list(M_B_VA_COLUMNS)] = predicted
    rows = discrete.to_numpy()
    part = with_pseudo_va(extra_marked[rows], predicted[rows])
    for col in ("valence", "arousal", "va_origin"):
        out.loc[rows, col] = part[col].to_numpy()
    names = dict.fromkeys(extra_marked["dataset"].astype(str)[rows])
    per = {d: {"rows": float((part["dataset"] == d).sum()), **pseudo_truth(part[part["dataset"] == d])} for d in names}
    return out, ExtrasPseudoReport(datasets=per, gx=validated(out, "extras with pseudo V/A"))


@dcjt_step()
def map_extra_continuous(
    extra_marked: pd.DataFrame, target_pseudo: pd.DataFrame, method: MethodConfig, check: StageCheck
) -> tuple[Annotated[pd.DataFrame, "extra_mapped"], Annotated[MappingReport, "mapping_report"]]:
    """Stage 3a: map B - subB's valence/arousal onto A's (per-emotion) Gaussians, each extra that
    publishes them with its own statistics."""
    target = split_rows(target_pseudo, "train")
    mapped, report = map_by_dataset(split_rows(extra_marked, "train"), target, method.mapping, b_stats_from=method.b_stats_from)
    checks = mapping_gates(report, check.gates)
    for name, own in report.per_dataset.items():
        checks += of_dataset(name, mapping_gates(own, check.gates))
    report.gates = gate_report("stage 3a (mapping)", checks, check.gates.mode, check.applies and method.mapping != "none")
    report.gx = validated(mapped, "extra after mapping")
    step_metadata(report_headline(report))
    return mapped, report


@dcjt_step()
def relabel_extra(
    extra_mapped: pd.DataFrame, target_pseudo: pd.DataFrame, method: MethodConfig, check: StageCheck
) -> tuple[Annotated[pd.DataFrame, "extra_prepared"], Annotated[RelabelReport, "relabel_report"]]:
    """Stage 3b: relabel B - subB (``method.relabel``: none, nearest, gated, posterior, latent,
    oracle); the posterior and latent modes choose and anchor on A's validation rows. Its health:
    the rule on A's validation rows, whose labels are trusted (``posterior_health`` for the
    posterior modes: the precision of their confident answers there)."""
    target, validation = split_rows(target_pseudo, "train"), validation_part(target_pseudo)
    rule = method.relabel_rule()
    extra = split_rows(extra_mapped, "train")  # B's training rows (mapped already, or not yet: relabel_first)
    relabeled, report = relabel_by_dataset(extra, target, rule, validation=validation)
    if rule.mode in ("nearest", "gated"):
        trusted = trusted_rows(target_pseudo)
        report.health = relabel_health(trusted, relabel(trusted, target, rule)[0]) if len(trusted) else {}
    elif rule.mode in ("posterior", "latent"):
        report.health = posterior_health(report.posterior, validation)
    if rule.mode in ("nearest", "gated", "posterior", "latent"):
        report.gates = gate_report(
            "stage 3b (relabeling)", relabel_gates(report.health, check.gates), check.gates.mode, check.applies
        )
    if report.enabled:
        report.gx = validated(relabeled, "extra after relabeling")
    step_metadata(report_headline(report) | {f"health.{k}": v for k, v in report.health.items()})
    return relabeled, report


@dcjt_step()
def summarise_stage_reports(
    subset: SubsetReport,
    pseudo: PseudoReport,
    mapping: MappingReport,
    relabel: RelabelReport,
    extras_pseudo: ExtrasPseudoReport,
    target_pseudo: pd.DataFrame,
    extra_marked: pd.DataFrame,
    extra_prepared: pd.DataFrame,
) -> Annotated[StageSummary, "stages"]:
    """Stages 1-3 as one artifact (``StageSummary``): their reports, the labeling-criteria audit
    of B - subB before and after stage 3 and what each extra contributed. The registry, the model
    card, the run's report and its MLflow record read it (``steps.tracking.log_stages``)."""
    return summarise_stages(subset, pseudo, mapping, relabel, extras_pseudo, target_pseudo, extra_marked, extra_prepared)

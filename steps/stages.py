"""Stages 1-3 as steps: subset selection, pseudo valence/arousal, mapping, relabeling.

Each step runs a model where the stage needs one, calls the stage's function in
``dcjt.method``, re-validates the changed table with the GX suite and returns table + stats.
"""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import torch
from zenml import step

from dcjt.config import GatesConfig, MethodConfig
from dcjt.data.cache import load_cache
from dcjt.data.labels import M_A_COLUMN, SUBSET_COLUMN, split_rows
from dcjt.data.validation import gx_summary
from dcjt.method import pseudo_label, relabel, select_subset, take_fraction, with_pseudo_va
from dcjt.method.extras import datasets, map_by_dataset, relabel_by_dataset, subset_by_dataset, va_datasets
from dcjt.method.health import (
    extra_subset_gates,
    gate_report,
    mapping_gates,
    of_dataset,
    pseudo_gates,
    relabel_gates,
    relabel_health,
    subset_gates,
    trusted_rows,
)
from dcjt.method.truth import pseudo_truth
from dcjt.train.batches import samples_from
from dcjt.train.predict import predict
from steps.common import core_cache_policy
from steps.handoff import CacheRef


@step(cache_policy=core_cache_policy())
def select_extra_subset(
    m_a: torch.nn.Module,
    m_a_metrics: dict,
    extra_table: pd.DataFrame,
    extra_cache: CacheRef,
    extra_fraction: float,
    seed: int,
    gates: GatesConfig,
    applies: bool = True,
) -> tuple[Annotated[pd.DataFrame, "extra_marked"], Annotated[dict, "subset_stats"]]:
    """Stage 1: M_A predicts every image of B (or of a seeded share of it, ``extra_fraction``);
    keep the rows where it agrees with B's label. ``applies``: the run's rows use stage 1, so its
    gates may stop the run."""
    extra = take_fraction(extra_table, extra_fraction, seed)
    probs, _ = predict(m_a, samples_from(extra, load_cache(extra_cache.path)))
    marked, stats = select_subset(extra, probs)
    checks = subset_gates(m_a_metrics, stats, gates)
    per = subset_by_dataset(extra, probs)
    for name, own in per.items():
        checks += extra_subset_gates(name, own, gates)
    if per:
        stats["per_dataset"] = per
    stats["m_a"] = {k: v for k, v in m_a_metrics.items() if k.endswith("_selected")}
    stats["gates"] = gate_report("stage 1 (M_A, subset)", checks, gates.mode, applies)
    stats["gx"] = gx_summary(marked, "extra after subset selection")
    return marked, stats


def published_va_rows(extra_marked: pd.DataFrame, pseudo_from: str) -> pd.DataFrame:
    """The rows of B whose published V/A M_B learns from (its subset, or all of B)."""
    rows = split_rows(extra_marked, "train")
    rows = rows[rows["va_origin"].astype(str).eq("human").to_numpy()]
    return rows[rows[SUBSET_COLUMN].to_numpy(dtype=bool)] if pseudo_from == "subset" else rows


@step(cache_policy=core_cache_policy())
def pseudo_label_target(
    m_b: torch.nn.Module,
    m_b_metrics: dict,
    m_a: torch.nn.Module,
    target_table: pd.DataFrame,
    target_cache: CacheRef,
    extra_marked: pd.DataFrame,
    pseudo_from: str,
    gates: GatesConfig,
    applies: bool = True,
) -> tuple[Annotated[pd.DataFrame, "target_pseudo"], Annotated[dict, "pseudo_stats"]]:
    """Stage 2: M_B predicts valence/arousal for every image of A (its pseudo continuous labels).
    M_A's prediction for each row of A rides along (``m_a_label``): stage 3b's health gate applies
    the relabel rule to A's validation rows, whose labels are trusted."""
    samples = samples_from(target_table, load_cache(target_cache.path))
    _, va = predict(m_b, samples)
    m_a_probs, _ = predict(m_a, samples)
    pseudo, stats = pseudo_label(target_table, va)
    pseudo[M_A_COLUMN] = m_a_probs.argmax(axis=1).astype("int64")
    checks = pseudo_gates(pseudo, published_va_rows(extra_marked, pseudo_from), m_b_metrics, gates)
    stats["m_b"] = {k: v for k, v in m_b_metrics.items() if k.endswith("_selected")}
    stats["gates"] = gate_report("stage 2 (M_B, pseudo V/A)", checks, gates.mode, applies)
    stats["gx"] = gx_summary(pseudo, "target with pseudo V/A")
    return pseudo, stats


@step(cache_policy=core_cache_policy())
def pseudo_label_extras(
    m_b: torch.nn.Module, extra_marked: pd.DataFrame, extra_cache: CacheRef
) -> tuple[Annotated[pd.DataFrame, "extra_with_va"], Annotated[dict, "extra_pseudo_stats"]]:
    """Stage 2 for the extras without valence/arousal: M_B predicts them (as it does for A), so
    their rows outside the subset can be relabeled by A's class centres."""
    discrete = [d for d in datasets(extra_marked) if d not in va_datasets(extra_marked)]
    if not discrete:
        return extra_marked, {}
    rows = extra_marked["dataset"].astype(str).isin(discrete).to_numpy()
    _, va = predict(m_b, samples_from(extra_marked[rows], load_cache(extra_cache.path)))
    out = extra_marked.copy()
    part = with_pseudo_va(extra_marked[rows], va)
    for col in ("valence", "arousal", "va_origin"):
        out.loc[rows, col] = part[col].to_numpy()
    stats = {d: {"rows": int((part["dataset"] == d).sum()), **pseudo_truth(part[part["dataset"] == d])} for d in discrete}
    return out, {"datasets": stats, "gx": gx_summary(out, "extras with pseudo V/A")}


@step(cache_policy=core_cache_policy())
def map_extra_continuous(
    extra_marked: pd.DataFrame, target_pseudo: pd.DataFrame, method: MethodConfig, gates: GatesConfig, applies: bool = True
) -> tuple[Annotated[pd.DataFrame, "extra_mapped"], Annotated[dict, "mapping_stats"]]:
    """Stage 3a: map B - subB's valence/arousal onto A's (per-emotion) Gaussians, each extra that
    publishes them with its own statistics."""
    target = split_rows(target_pseudo, "train")
    mapped, stats = map_by_dataset(split_rows(extra_marked, "train"), target, method.mapping, b_stats_from=method.b_stats_from)
    checks = mapping_gates(stats, gates)
    for name, own in stats.get("per_dataset", {}).items():
        checks += of_dataset(name, mapping_gates(own, gates))
    stats["gates"] = gate_report("stage 3a (mapping)", checks, gates.mode, applies and method.mapping != "none")
    stats["gx"] = gx_summary(mapped, "extra after mapping")
    return mapped, stats


@step(cache_policy=core_cache_policy())
def relabel_extra(
    extra_mapped: pd.DataFrame, target_pseudo: pd.DataFrame, method: MethodConfig, gates: GatesConfig, applies: bool = True
) -> tuple[Annotated[pd.DataFrame, "extra_prepared"], Annotated[dict, "relabel_stats"]]:
    """Stage 3b: relabel B - subB by A's class centres (``method.relabel``: none, nearest, gated,
    oracle). Its health: the same rule on A's validation rows, whose labels are trusted."""
    target = split_rows(target_pseudo, "train")
    kw = dict(gate_ratio=method.gate_ratio, gate_m_a=method.gate_m_a)
    relabeled, stats = relabel_by_dataset(extra_mapped, target, method.relabel, **kw)
    stats["enabled"] = method.relabel != "none"
    if method.relabel in ("nearest", "gated"):
        trusted = trusted_rows(target_pseudo)
        health = relabel_health(trusted, relabel(trusted, target, method.relabel, **kw)[0]) if len(trusted) else {}
        stats["health"] = health
        stats["gates"] = gate_report("stage 3b (relabeling)", relabel_gates(health, gates), gates.mode, applies)
    if stats["enabled"]:
        stats["gx"] = gx_summary(relabeled, "extra after relabeling")
    return relabeled, stats

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
from dcjt.data.labels import split_rows
from dcjt.data.validation import gx_summary
from dcjt.method import map_continuous, pseudo_label, relabel, select_subset, take_fraction
from dcjt.method.health import gate_report, mapping_gates, pseudo_gates, relabel_gates, subset_gates
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
) -> tuple[Annotated[pd.DataFrame, "extra_marked"], Annotated[dict, "subset_stats"]]:
    """Stage 1: M_A predicts every image of B (or of a seeded share of it, ``extra_fraction``);
    keep the rows where it agrees with B's label."""
    extra = take_fraction(extra_table, extra_fraction, seed)
    probs, _ = predict(m_a, samples_from(extra, load_cache(extra_cache.path)))
    marked, stats = select_subset(extra, probs)
    stats["gates"] = gate_report(
        "stage 1 (M_A, subset)", subset_gates(m_a_metrics["val_accuracy_selected"], stats, gates), gates.mode
    )
    stats["gx"] = gx_summary(marked, "extra after subset selection")
    return marked, stats


@step(cache_policy=core_cache_policy())
def pseudo_label_target(
    m_b: torch.nn.Module, target_table: pd.DataFrame, target_cache: CacheRef, gates: GatesConfig
) -> tuple[Annotated[pd.DataFrame, "target_pseudo"], Annotated[dict, "pseudo_stats"]]:
    """Stage 2: M_B predicts valence/arousal for every image of A (its pseudo continuous labels)."""
    _, va = predict(m_b, samples_from(target_table, load_cache(target_cache.path)))
    pseudo, stats = pseudo_label(target_table, va)
    stats["gates"] = gate_report("stage 2 (pseudo V/A)", pseudo_gates(pseudo, gates), gates.mode)
    stats["gx"] = gx_summary(pseudo, "target with pseudo V/A")
    return pseudo, stats


@step(cache_policy=core_cache_policy())
def map_extra_continuous(
    extra_marked: pd.DataFrame, target_pseudo: pd.DataFrame, method: MethodConfig, gates: GatesConfig
) -> tuple[Annotated[pd.DataFrame, "extra_mapped"], Annotated[dict, "mapping_stats"]]:
    """Stage 3a: map B - subB's valence/arousal onto A's (per-emotion) Gaussians."""
    target = split_rows(target_pseudo, "train")
    mapped, stats = map_continuous(split_rows(extra_marked, "train"), target, method.mapping, b_stats_from=method.b_stats_from)
    stats["gates"] = gate_report("stage 3a (mapping)", mapping_gates(stats, gates), gates.mode)
    stats["gx"] = gx_summary(mapped, "extra after mapping")
    return mapped, stats


@step(cache_policy=core_cache_policy())
def relabel_extra(
    extra_mapped: pd.DataFrame, target_pseudo: pd.DataFrame, method: MethodConfig, gates: GatesConfig
) -> tuple[Annotated[pd.DataFrame, "extra_prepared"], Annotated[dict, "relabel_stats"]]:
    """Stage 3b: relabel B - subB by A's class centres (``method.relabel``: none, nearest, gated, oracle)."""
    target = split_rows(target_pseudo, "train")
    relabeled, stats = relabel(extra_mapped, target, method.relabel, gate_ratio=method.gate_ratio, gate_m_a=method.gate_m_a)
    stats["enabled"] = method.relabel != "none"
    if method.relabel in ("nearest", "gated"):
        stats["gates"] = gate_report("stage 3b (relabeling)", relabel_gates(stats, gates), gates.mode)
    if stats["enabled"]:
        stats["gx"] = gx_summary(relabeled, "extra after relabeling")
    return relabeled, stats

"""Stage health gates: numbers each stage must meet before the next one may trust it.

DCJT's later stages trust stage 1: a weak M_A collapses the subset onto a few classes and
poisons everything after it, silently. Each gate records what it observed and the threshold
(as the GX suite does for label tables); ``gate_report`` raises ``GateError`` naming every failed
gate when the mode is ``stop``, so the run ends before a model is registered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from itertools import combinations

import numpy as np
import pandas as pd

from dcjt.data.labels import EMOTIONS, NUM_CLASSES, split_rows
from dcjt.method.relabel import class_centres


class GateError(RuntimeError):
    """A stage's output is too weak for the next stage; the message names gates and numbers."""


@dataclass
class Gate:
    name: str
    observed: float
    threshold: float
    passed: bool
    rule: str  # e.g. ">=", "<="


def _at_least(name: str, observed: float, threshold: float) -> Gate:
    return Gate(name, float(observed), float(threshold), bool(observed >= threshold), ">=")


def _at_most(name: str, observed: float, threshold: float) -> Gate:
    return Gate(name, float(observed), float(threshold), bool(observed <= threshold), "<=")


def of_dataset(dataset: str, gates: list[Gate]) -> list[Gate]:
    """The same gates applied to one extra dataset, named after it."""
    return [replace(g, name=f"{dataset}: {g.name}") for g in gates]


def extra_subset_gates(dataset: str, m_a_val_accuracy: float, subset_stats: dict, cfg) -> list[Gate]:
    """Stage 1 for one of several extras: M_A agrees with some of its rows (an extra it never
    agrees with has nothing in common with A's criteria), and its subset keeps its classes."""
    own = [_at_least("rows in the subset", subset_stats["n_kept"], 1)] + subset_gates(m_a_val_accuracy, subset_stats, cfg)[1:]
    return of_dataset(dataset, own)


def gate_report(stage: str, gates: list[Gate], mode: str) -> dict:
    """The stage's gate record (for MLflow); raises ``GateError`` on a failure in ``stop`` mode."""
    failed = [g for g in gates if not g.passed]
    report = {"stage": stage, "passed": not failed, "mode": mode, "gates": [asdict(g) for g in gates]}
    if failed and mode == "stop":
        lines = "; ".join(f"{g.name} = {g.observed:.4g} (must be {g.rule} {g.threshold:.4g})" for g in failed)
        raise GateError(f"{stage} health gate failed: {lines} (set gates.mode=warn to continue anyway)")
    return report


def subset_gates(m_a_val_accuracy: float, subset_stats: dict, cfg) -> list[Gate]:
    """Stage 1: M_A beats chance by a margin; the subset keeps every class of B."""
    gates = [_at_least("M_A validation accuracy", m_a_val_accuracy, 1 / NUM_CLASSES + cfg.m_a_margin)]
    kept = subset_stats["kept_per_class"]
    populated = sum(kept[e] >= max(cfg.subset_min_rows, 1) for e in EMOTIONS)
    gates.append(_at_least("classes held by the subset", populated, cfg.subset_min_classes))
    for emotion in EMOTIONS:
        total = subset_stats["total_per_class"][emotion]
        if total == 0:
            continue
        kept = subset_stats["kept_per_class"][emotion]
        gates.append(_at_least(f"subset rows of {emotion}", kept, cfg.subset_min_rows))
        gates.append(_at_least(f"subset share of {emotion}", kept / total, cfg.subset_min_share))
    return gates


def pseudo_gates(target_pseudo: pd.DataFrame, cfg) -> list[Gate]:
    """Stage 2: A's pseudo V/A are not collapsed and A's class centres are distinct."""
    train = split_rows(target_pseudo, "train")
    gates = []
    for k, emotion in enumerate(EMOTIONS):
        rows = train.loc[train["label"] == k, ["valence", "arousal"]].dropna()
        if len(rows) >= 2:
            gates.append(_at_least(f"pseudo V/A spread of {emotion}", float(rows.std(ddof=1).max()), cfg.pseudo_min_std))
    centres = class_centres(train)
    present = [k for k in range(NUM_CLASSES) if not np.isnan(centres[k]).any()]
    if len(present) >= 2:
        d = min(float(np.linalg.norm(centres[a] - centres[b])) for a, b in combinations(present, 2))
        gates.append(_at_least("smallest distance between class centres", d, cfg.centre_min_distance))
    return gates


def mapping_gates(mapping_stats: dict, cfg) -> list[Gate]:
    """Stage 3a: the map does not push many labels outside [-1, 1]."""
    mapped = mapping_stats.get("n_mapped", 0)
    share = mapping_stats.get("n_clipped", 0) / mapped if mapped else 0.0
    return [_at_most("share of mapped V/A clipped", share, cfg.max_clipped_share)]


def relabel_gates(relabel_stats: dict, cfg) -> list[Gate]:
    """Stage 3b: relabeling changes no more than a set share of B - subB."""
    return [_at_most("share of B - subB relabeled", relabel_stats.get("changed_fraction", 0.0), cfg.max_relabel_share)]

"""The promotion gate: challenger against champion, both scored in this run on the same rows.

Each model comes as its per-image correctness on the gate split (1 = right). The challenger wins
when its accuracy leads by more than ``min_margin`` and, if asked, the paired-bootstrap 95 %
interval of the difference lies above zero. An unusable champion (cannot be loaded, other input
size) is never silently replaced: only ``force`` promotes over it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from dcjt.config import PromotionConfig
from dcjt.data.cache import load_cache
from dcjt.experiments.statistics import paired_bootstrap
from dcjt.serving.network import load_network
from dcjt.train.scoring import RowEvaluation, SplitScores, score_split


@dataclass(frozen=True)
class Decision:
    promoted: bool
    # promoted | kept champion | forced | first version | champion unusable | not comparable
    # | loses to a baseline | gates failed | selected before B
    verdict: str
    reason: str
    challenger: float
    champion: float | None = None
    interval: tuple[float, float] | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def decide(
    challenger: np.ndarray,
    champion: np.ndarray | None,
    settings: PromotionConfig,
    *,
    problem: tuple[str, str] | None = None,
    seed: int = 0,
) -> Decision:
    """Promote or keep, by ``settings`` (metric, margin, bootstrap, force). ``champion`` is None
    when there is none; ``problem`` is (verdict, why) when an existing champion could not be scored
    (then ``champion`` is None too): ``champion unusable`` (cannot be loaded or takes other inputs)
    or ``not comparable`` (it trained on the rows it would be scored on)."""
    metric, min_margin, force = settings.metric, settings.min_margin, settings.force
    ours = float(np.mean(challenger)) if len(challenger) else 0.0
    if problem is not None:
        verdict, why = problem
        if force:
            return Decision(True, "forced", f"{verdict} ({why}); replaced by --force-promote", ours)
        return Decision(False, verdict, f"{why}; kept as champion: rerun with --force-promote to replace it", ours)
    if champion is None:
        return Decision(True, "first version", f"no champion yet; {metric} {ours:.4f}", ours)
    if len(champion) != len(challenger):
        raise ValueError(f"champion scored on {len(champion)} rows, challenger on {len(challenger)}: not the same data")
    theirs = float(np.mean(champion))
    diff = ours - theirs
    interval = None
    wins = diff > min_margin
    reason = f"{metric} {ours:.4f} vs champion {theirs:.4f} (difference {diff:+.4f}, margin {min_margin:.4f})"
    if settings.bootstrap:
        samples = settings.bootstrap_samples
        _, lo, hi = paired_bootstrap([np.asarray(challenger)], [np.asarray(champion)], n_boot=samples, seed=seed)
        interval = (lo, hi)
        wins = wins and lo > 0
        reason += f"; paired bootstrap 95% interval [{lo:+.4f}, {hi:+.4f}]"
    if force and not wins:
        return Decision(True, "forced", reason + "; promoted by --force-promote", ours, theirs, interval)
    return Decision(wins, "promoted" if wins else "kept champion", reason, ours, theirs, interval)


GATE_SPLITS = ("val", "test")


def score_champion(champion, model_name: str, image_size: int, table: pd.DataFrame, cache: str):
    """({split: scores}, None) for a usable champion, (None, why not) for one that cannot be scored here."""
    try:
        network = load_network(f"models:/{model_name}/{champion.version}")
    except Exception as exc:  # any load failure: the champion is reported, never deleted
        return None, f"champion version {champion.version} cannot be loaded: {type(exc).__name__}: {str(exc)[:300]}"
    if getattr(network, "image_size", None) != image_size:
        return None, (
            f"champion version {champion.version} takes {getattr(network, 'image_size', '?')} px images, "
            f"this run {image_size} px: not comparable on the same data"
        )
    images = load_cache(cache)
    return {split: score_split(network, table, images, split=split) for split in GATE_SPLITS}, None


def beaten_by(challenger: SplitScores, baselines: dict[str, SplitScores]) -> tuple[str, float] | None:
    """The run's own baseline row with the best score above the challenger's on the same rows."""
    better = {row: s.accuracy for row, s in baselines.items() if s.accuracy > challenger.accuracy}
    return max(better.items(), key=lambda kv: kv[1]) if better else None


def promotion_gate(
    evaluation: RowEvaluation,
    champion,
    champion_scores: dict[str, SplitScores] | None,
    problem: tuple[str, str] | None,
    settings: PromotionConfig,
    seed: int = 0,
    baselines: dict[str, SplitScores] | None = None,
    failed_gates: list[str] = (),
) -> tuple[Decision, dict[str, str]]:
    """Decide on the gate split and return the decision with the version tags that record it.
    ``evaluation``: the challenger's row; a joint row selected before its first pass over B is
    never promoted, not even forced (it would be the champion as DCJT without having seen B);
    ``problem``: (verdict, why) when the champion cannot be compared; ``baselines``: the run's other
    rows on the gate split: a challenger below one of them is not promoted (``beat_baselines``);
    ``failed_gates``: health gates the run failed in ``warn`` mode: registered, never promoted
    unless forced (or ``despite_failed_gates``)."""
    split = settings.metric.removesuffix("_accuracy")
    challenger = {s: getattr(evaluation, s) for s in GATE_SPLITS}
    decision = _against_champion(challenger, champion_scores, problem, settings, seed, split)
    if failed_gates and decision.promoted and not (settings.force or settings.despite_failed_gates):
        decision = Decision(
            False,
            "gates failed",
            f"this run failed {len(failed_gates)} health gate(s) in warn mode ({failed_gates[0]}"
            + (", ..." if len(failed_gates) > 1 else "")
            + "): registered as challenger, not promoted (--force-promote to promote anyway)",
            challenger[split].accuracy,
            decision.champion,
            decision.interval,
        )
    loser = beaten_by(challenger[split], baselines or {}) if settings.beat_baselines else None
    if loser is not None and decision.promoted and not settings.force:
        row, score = loser
        decision = Decision(
            False,
            "loses to a baseline",
            f"{settings.metric} {challenger[split].accuracy:.4f} below this run's {row} row ({score:.4f}): registered as "
            "challenger, not promoted (run.py select registers the variant that wins on validation)",
            challenger[split].accuracy,
            decision.champion,
            decision.interval,
        )
    if evaluation.selected_before_b and decision.promoted:
        decision = Decision(
            False,
            "selected before B",
            f"its selected check (epoch {evaluation.selected_epoch}) precedes its first pass over B: the model "
            "trained on A alone; registered as challenger, never promoted as DCJT, not even by --force-promote "
            "(lower dcn.warmup_epochs or raise the epochs, or run.py select to compare it with target only)",
            challenger[split].accuracy,
            decision.champion,
            decision.interval,
        )
    tags = {
        "promotion.metric": settings.metric,
        "selected_before_b": str(evaluation.selected_before_b).lower(),
        "promotion.verdict": decision.verdict,
        "promotion.reason": decision.reason[:4900],
        "promotion.champion_version": str(champion.version) if champion else "none",
    }
    for s in GATE_SPLITS:
        tags[f"promotion.challenger_{s}_accuracy"] = f"{challenger[s].accuracy:.6f}"
        tags[f"promotion.champion_{s}_accuracy"] = "none" if champion_scores is None else f"{champion_scores[s].accuracy:.6f}"
    if decision.interval is not None:
        tags["promotion.interval"] = f"[{decision.interval[0]:+.4f}, {decision.interval[1]:+.4f}]"
    return decision, tags


def _against_champion(challenger, champion_scores, problem, settings: PromotionConfig, seed: int, split: str) -> Decision:
    theirs = None if champion_scores is None else np.asarray(champion_scores[split].correct)
    return decide(np.asarray(challenger[split].correct), theirs, settings, problem=problem, seed=seed)

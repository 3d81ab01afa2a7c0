"""The promotion gate: challenger against champion, both scored in this run on the same rows.

Each model comes as its per-image correctness on the gate split (1 = right). The challenger wins
when its accuracy leads by more than ``min_margin`` and, if asked, the paired-bootstrap 95 %
interval of the difference lies above zero. An unusable champion (cannot be loaded, other input
size) is never silently replaced: only ``force`` promotes over it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from dcjt.study import paired_bootstrap


@dataclass(frozen=True)
class Decision:
    promoted: bool
    verdict: str  # promoted | kept champion | forced | first version | champion unusable | not comparable
    reason: str
    challenger: float
    champion: float | None = None
    interval: tuple[float, float] | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def decide(
    challenger: np.ndarray,
    champion: np.ndarray | None,
    *,
    metric: str,
    min_margin: float = 0.0,
    bootstrap: bool = False,
    samples: int = 2000,
    force: bool = False,
    champion_problem: str | None = None,
    problem_verdict: str = "champion unusable",
    seed: int = 0,
) -> Decision:
    """Promote or keep. ``champion`` is None when there is none; ``champion_problem`` says why an
    existing champion could not be scored (then ``champion`` is None too): ``problem_verdict``
    names the case (``champion unusable``: cannot be loaded or takes other inputs; ``not
    comparable``: it trained on the rows it would be scored on)."""
    ours = float(np.mean(challenger)) if len(challenger) else 0.0
    if champion_problem is not None:
        if force:
            return Decision(True, "forced", f"{problem_verdict} ({champion_problem}); replaced by --force-promote", ours)
        return Decision(
            False, problem_verdict, f"{champion_problem}; kept as champion: rerun with --force-promote to replace it", ours
        )
    if champion is None:
        return Decision(True, "first version", f"no champion yet; {metric} {ours:.4f}", ours)
    if len(champion) != len(challenger):
        raise ValueError(f"champion scored on {len(champion)} rows, challenger on {len(challenger)}: not the same data")
    theirs = float(np.mean(champion))
    diff = ours - theirs
    interval = None
    wins = diff > min_margin
    reason = f"{metric} {ours:.4f} vs champion {theirs:.4f} (difference {diff:+.4f}, margin {min_margin:.4f})"
    if bootstrap:
        _, lo, hi = paired_bootstrap([np.asarray(challenger)], [np.asarray(champion)], n_boot=samples, seed=seed)
        interval = (lo, hi)
        wins = wins and lo > 0
        reason += f"; paired bootstrap 95% interval [{lo:+.4f}, {hi:+.4f}]"
    if force and not wins:
        return Decision(True, "forced", reason + "; promoted by --force-promote", ours, theirs, interval)
    return Decision(wins, "promoted" if wins else "kept champion", reason, ours, theirs, interval)

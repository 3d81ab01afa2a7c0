"""How ``run.py select`` compares candidates: seed by seed, on half of A's validation rows, with a
paired racing test that stops a candidate once its deficit to the leader is beyond a bound.

Two folds of A's validation rows, fixed by image path (``dcjt.method.calibration.folds``): the
ranking fold (``RANK_FOLD``) ranks the candidates, stops the losers and picks the winner; the
other (``LEAD_FOLD``) never ranks, so the winner's lead measured there carries no selection
optimism (the ranking fold's lead is reported beside it to show how much there was). Both folds
still chose each run's checkpoint (training selects on all of A's validation rows).

The race runs on a rung, a third of each row's epochs by default (``budget.rung``; a joint row's
cut keeps the phase of its joint cycle: ``dcjt.train.budget.cut``), like successive halving's first
rung: after the last seed the winner and every baseline go on from their rung's checkpoint at the
first seed to the full budget (``finishing``), which costs only the steps beyond the rung. The
choice rests on the rung's scores over every seed; the full-budget runs are the registered model
and its promotion's baseline rows (and the winner's margin over the best of them, one seed):
nothing trains to the full budget that neither the choice nor the promotion reads.
A rung ranks rows by how far they get in part of their budget, so a row that learns late can be
stopped for it: ``bench/select_cost.py`` measures the regret against the exhaustive selection
(docs/results/2026-12-07-select-fair-rung.md: none on four worlds at one thread; on the project's
world at two threads the race stopped target only, the best row at the full budget: 1.2 points).

Why a paired racing test between seeds, not successive halving's drop by rank: ``select`` runs few
seeds (three by default) and the top candidates' validation gaps are mostly noise (0.1 points on
the project's world).
Successive halving drops a fixed share each round on rank alone, so among tied candidates it drops
at random; the test drops only a candidate whose deficit the evidence shows (a straight merge 20
points behind after one seed), and keeps racing the ties.

The bound after round k (seeds 1..k, every surviving candidate ran each of them): the mean over
seeds of the paired per-seed deficit d_s (candidate minus leader, ranking fold) plus z x se. se^2
is the larger of the rows' variance (sum over seeds of var(per-row difference) / n_s, over k^2)
and, from two seeds on, the seeds' variance var(d_s) / k. z is the one-sided normal quantile at
``ALPHA`` / m, Bonferroni over the m candidates compared with the leader that round. After one
seed only the rows' variance is seen, not the training noise: the bound drops only deficits far
outside it. A candidate is dropped when that upper bound is below zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from dcjt.experiments.statistics import t_interval
from dcjt.selection import ALPHA, CandidateScore, SelectionEvidence

RANK_FOLD, LEAD_FOLD = 0, 1


@dataclass(frozen=True)
class Scored:
    """One candidate's run at one seed: each validation row's correctness and fold, its test
    accuracy and the optimiser steps its training took (``shared``: of those, the steps of the
    seed's shared warm-up it went on from, trained once for every candidate: ``dcjt.train.warmup``)."""

    row: str
    seed: int
    val_correct: np.ndarray
    fold: np.ndarray
    test_accuracy: float
    steps: int
    shared: int = 0

    def accuracy(self, fold: int) -> float:
        """Validation accuracy on one fold's rows."""
        return float(self.val_correct[self.fold == fold].mean())


@dataclass(frozen=True)
class Drop:
    """A candidate the race stopped: after which seed, its deficit to the leader and the bound's
    upper end (validation points on the ranking fold)."""

    row: str
    seed: int
    leader: str
    deficit: float
    bound: float


def mean_accuracy(runs: list[Scored], fold: int = RANK_FOLD) -> float:
    return float(np.mean([r.accuracy(fold) for r in runs]))


def ranked(evidence: dict[str, list[Scored]], fold: int = RANK_FOLD) -> list[str]:
    """Candidates by mean accuracy on ``fold`` over the seeds they ran, best first (ties: the given order)."""
    return sorted(evidence, key=lambda row: -mean_accuracy(evidence[row], fold))


def paired_bound(mine: list[Scored], leader: list[Scored], z: float) -> tuple[float, float]:
    """(mean deficit, its upper bound) of ``mine`` against ``leader`` on the ranking fold, in points."""
    by_seed = {r.seed: r for r in leader}
    per_row = []
    for run in mine:
        other = by_seed[run.seed]
        if not np.array_equal(run.fold, other.fold) or len(run.val_correct) != len(other.val_correct):
            raise ValueError(f"seed {run.seed}: {run.row!r} and {other.row!r} were scored on different validation rows")
        keep = run.fold == RANK_FOLD
        per_row.append(run.val_correct[keep].astype(float) - other.val_correct[keep].astype(float))
    d = np.array([x.mean() for x in per_row])
    k = len(d)
    var = sum(x.var(ddof=1) / len(x) for x in per_row if len(x) > 1) / k**2
    if k > 1:
        var = max(var, float(d.var(ddof=1)) / k)
    mean = float(d.mean())
    return 100 * mean, 100 * (mean + z * float(np.sqrt(var)))


def drops(evidence: dict[str, list[Scored]], protected: frozenset[str] = frozenset(), alpha: float = ALPHA) -> list[Drop]:
    """The candidates to stop after the seeds in ``evidence`` (each candidate's runs, the same seeds
    for all): those whose deficit to the leader is below zero beyond the bound. ``protected``
    candidates are compared but never stopped."""
    order = ranked(evidence)
    lead, others = order[0], order[1:]
    if not others:
        return []
    z = float(stats.norm.ppf(1 - alpha / len(others)))
    out = []
    for row in others:
        deficit, bound = paired_bound(evidence[row], evidence[lead], z)
        if bound < 0 and row not in protected:
            out.append(Drop(row, evidence[row][-1].seed, lead, deficit, bound))
    return out


def standing(evidence: dict[str, list[Scored]], survivors: list[str], dropped: dict[str, Drop]) -> list[str]:
    """Every candidate, best first: the survivors by their mean on the ranking half, then the stopped ones."""
    return ranked({r: evidence[r] for r in survivors}) + ranked({r: evidence[r] for r in dropped})


def finishing(order: list[str], baselines) -> list[str]:
    """The candidates a race at a rung finishes at the full budget, at its first seed: the winner
    and every baseline (the winner's promotion compares it with them), in ``order``. Not the
    runner-up: its full run would show one seed's lead, which the rung's lead over every seed
    already gives with an interval (docs/results/2026-12-07-select-fair-rung.md)."""
    return [r for i, r in enumerate(order) if i == 0 or r in baselines]


def choose(
    evidence: dict[str, list[Scored]],
    survivors: list[str],
    dropped: dict[str, Drop],
    finished: dict[str, Scored] | None = None,
    **about,
):
    """The winner (best mean on the ranking half among the survivors), its runner-up and the lead
    measured on the held-out half, every candidate's scores. ``finished``: a race at a rung's
    finalists at the full budget, each gone on from its rung's run at that seed (so it costs the
    steps beyond the rung's); their scores there, and the winner's margin there over the best other
    finalist on the held-out half."""

    def percent(values) -> tuple[float, float]:
        v = 100 * np.asarray(values, float)
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0

    finished = finished or {}
    scores = []
    for row, runs in evidence.items():
        val_mean, val_sd = percent([r.accuracy(RANK_FOLD) for r in runs])
        test_mean, test_sd = percent([r.test_accuracy for r in runs])
        drop = dropped.get(row)
        steps = sum(r.steps - r.shared for r in runs)
        full = {}
        if row in finished:
            done = finished[row]
            rung = next(r for r in runs if r.seed == done.seed)
            steps += max(0, done.steps - rung.steps)
            full = {
                "full_val": 100 * done.accuracy(RANK_FOLD),
                "full_heldout": 100 * done.accuracy(LEAD_FOLD),
                "full_test": 100 * done.test_accuracy,
            }
        scores.append(
            CandidateScore(
                row=row,
                val_mean=val_mean,
                val_sd=val_sd,
                test_mean=test_mean,
                test_sd=test_sd,
                heldout_mean=mean_accuracy(runs, LEAD_FOLD) * 100,
                seeds=[r.seed for r in runs],
                steps=steps,
                dropped_after=drop.seed if drop else None,
                **full,
            )
        )
    order = standing(evidence, survivors, dropped)
    warmups = {r.seed: r.shared for runs in evidence.values() for r in runs if r.shared}  # one a seed
    steps = sum(c.steps for c in scores) + sum(warmups.values())
    out = SelectionEvidence(candidates=scores, winner=order[0], steps=steps, **about)
    others = [r for r in finished if r != order[0]]
    if order[0] in finished and others:
        best = max(others, key=lambda r: finished[r].accuracy(LEAD_FOLD))
        margin = finished[order[0]].accuracy(LEAD_FOLD) - finished[best].accuracy(LEAD_FOLD)
        out = out.model_copy(update={"full_lead": 100 * margin, "full_versus": best})
    if len(order) < 2:
        return out
    win, second = evidence[order[0]], {r.seed: r for r in evidence[order[1]]}
    pairs = [(r, second[r.seed]) for r in win if r.seed in second]
    lead = {f: np.array([a.accuracy(f) - b.accuracy(f) for a, b in pairs]) for f in (RANK_FOLD, LEAD_FOLD)}
    mean, lo, hi, _ = t_interval(lead[LEAD_FOLD])
    interval = {"lead_lo": 100 * lo, "lead_hi": 100 * hi} if np.isfinite(lo) else {}
    return out.model_copy(
        update={"runner_up": order[1], "lead": 100 * mean, "ranked_lead": 100 * float(lead[RANK_FOLD].mean()), **interval}
    )

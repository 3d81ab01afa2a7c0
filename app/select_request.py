"""What ``run.py select`` is asked to run, checked before torch, ZenML or a store loads: the
candidates (rows of the relabel table, at least one baseline, none that reads the hidden truth),
the race's settings and the cores or devices ``--parallel`` needs. ``app.select`` runs it."""

from __future__ import annotations

from dataclasses import dataclass

from dcjt.config import BASELINES
from dcjt.experiments.tables import SELECT_CANDIDATES, Row, StudyError, study_rows
from dcjt.selection import ALPHA, RUNG, STRATEGIES

# The default candidates: the ids of the rows of ``study --table select`` (one list, with the tables).
CANDIDATES = tuple(r.id for r in SELECT_CANDIDATES)
TABLE = "relabel"  # the candidates are rows of this study table (a name outside it is refused)


@dataclass(frozen=True)
class RaceSettings:
    """How ``select`` runs its candidates: ``race`` (losers stop at the bound, at ``alpha``; on
    ``rung`` of each row's epochs, default ``RUNG``, then the finalists finish) or ``exhaustive``
    (every candidate, every seed, the full budget); ``parallel`` runs at once."""

    strategy: str = "race"
    alpha: float = ALPHA
    rung: float | None = None
    parallel: int = 1

    def budget_share(self) -> float | None:
        """The share of each row's epochs the candidates race on (None: the full budget)."""
        if self.strategy != "race":
            return None
        rung = RUNG if self.rung is None else self.rung
        return None if rung == 1 else rung


def check_request(given: list[str], seeds: list[int], race: RaceSettings) -> list[Row]:
    """The candidates' rows, or a one-line refusal before any training."""
    truth_rows = [r for r in study_rows("all")[0] if r.uses_truth]
    truth = [n for n in given if any(n in (r.id, r.name) for r in truth_rows)]
    if truth:
        raise StudyError(f"--candidate {truth[0]!r} reads the synthetic world's hidden truth (an upper bound), never a candidate")
    rows, _ = study_rows(TABLE, given)  # unknown ids or labels are refused here, before any training
    ids = [r.id for r in rows]
    if not set(ids) & set(BASELINES):
        raise StudyError(
            f"--candidate: none of {ids} is a baseline ({', '.join(BASELINES)}); the winner is promoted only if it beats "
            "its own baseline, so at least one must run: add --candidate target_only"
        )
    if race.strategy not in STRATEGIES:
        raise StudyError(f"--strategy {race.strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if not 0 < race.alpha < 1:
        raise StudyError(f"--alpha {race.alpha}: expected a probability between 0 and 1 (the race's family-wise error per seed)")
    if race.rung is not None and race.strategy != "race":
        raise StudyError(f"--rung {race.rung} with --strategy {race.strategy}: only a race trains its candidates on a rung")
    if race.rung is not None and not 0 < race.rung <= 1:
        raise StudyError(f"--rung {race.rung}: expected a share of the epochs in (0, 1] (1: race at the full budget)")
    if race.strategy == "race" and len(seeds) < 2:
        raise StudyError(f"--strategy race with --seeds {seeds}: a race stops candidates between seeds, so it needs at least two")
    return rows


def threads_per_run(parallel: int, threads: int | None, cores: int, devices: int) -> int | None:
    """The CPU threads each of ``parallel`` concurrent runs gets (None: the config's), or a refusal
    when the machine has too few cores (or, with CUDA, devices) for them."""
    if parallel < 1:
        raise StudyError(f"--parallel {parallel}: expected 1 or more runs at once")
    if parallel == 1:
        return threads
    per_run = threads or max(1, cores // parallel)
    if parallel * per_run > cores:
        raise StudyError(
            f"--parallel {parallel} with {per_run} thread(s) a run needs {parallel * per_run} cores; this machine has "
            f"{cores}: lower --parallel or --threads"
        )
    if devices and parallel > devices:
        raise StudyError(f"--parallel {parallel}: this machine has {devices} CUDA device(s), one a run")
    return per_run

"""``run.py select``: the pipeline picks the variant that wins on the team's own validation split.

The candidates (target only and the straight merges among them: a DCN that loses to its own
baseline is never the one registered) run as a study over the same seeds, shared stages from the
cache; the winner is the best mean validation accuracy, reported with the seed-level t-interval
of its lead over the runner-up. Then the winner runs once more as a pipeline at the first seed,
with the stage gates on, and is registered as the challenger (promoted if it beats the champion)
with the evidence in its model card, its version tags and its MLflow run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.runner import RunOutcome, run_pipeline
from app.study import StudyOutcome, StudySpec, run_study
from dcjt.config import BASELINES
from dcjt.config_files import load_config
from dcjt.experiments.statistics import t_interval
from dcjt.experiments.tables import SELECT_CANDIDATES, StudyError, study_rows
from dcjt.selection import CandidateScore, SelectionEvidence

# The default candidates: the ids of the rows of ``study --table select`` (one list, with the tables).
CANDIDATES = tuple(r.id for r in SELECT_CANDIDATES)
TABLE = "relabel"  # the candidates are rows of this study table (a name outside it is refused)


@dataclass
class SelectOutcome:
    evidence: SelectionEvidence
    study: StudyOutcome
    run: RunOutcome


def choose(records, candidates: list[str], seeds: list[int], study: str) -> SelectionEvidence:
    """The candidate (a row id) with the best mean validation accuracy over ``seeds`` and its lead
    over the runner-up (per-seed differences, t-interval), from a study's records."""
    scores = []
    for row in candidates:
        mine = records[records["row_id"] == row].set_index("seed").loc[seeds]
        scores.append(
            CandidateScore(
                row=row,
                val_mean=100 * mine["val_accuracy"].mean(),
                val_sd=100 * mine["val_accuracy"].std(ddof=1) if len(seeds) > 1 else 0.0,
                test_mean=100 * mine["accuracy"].mean(),
                test_sd=100 * mine["accuracy"].std(ddof=1) if len(seeds) > 1 else 0.0,
            )
        )
    ranked = sorted(scores, key=lambda c: -c.val_mean)
    evidence = SelectionEvidence(study=study, seeds=seeds, candidates=scores, winner=ranked[0].row)
    if len(ranked) > 1:
        by_seed = records.set_index(["row_id", "seed"])["val_accuracy"]
        diffs = np.array([by_seed[(ranked[0].row, s)] - by_seed[(ranked[1].row, s)] for s in seeds])
        mean, lo, hi, _ = t_interval(diffs)
        interval = {"lead_lo": 100 * lo, "lead_hi": 100 * hi} if np.isfinite(lo) else {}
        evidence = evidence.model_copy(update={"runner_up": ranked[1].row, "lead": 100 * mean, **interval})
    return evidence


def run_select(
    config_name: str, seeds: list[int], *, candidates=None, overrides=(), values=None, progress=print
) -> SelectOutcome:
    """Score the candidates over ``seeds``, pick the winner on validation, register it."""
    given = list(candidates or CANDIDATES)
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
    base = load_config(config_name, overrides, values)
    spec = StudySpec(config_name, TABLE, seeds, tuple(overrides), values, ids, f"{base.name}-select")
    study = run_study(spec, progress)
    evidence = choose(study.records, ids, seeds, study.name)
    winner = next(r for r in rows if r.id == evidence.winner)
    progress(f"select: {evidence.summary()}; registering it (seed {seeds[0]})")
    run_values = {**(values or {}), **winner.values, "seed": seeds[0], "baselines": [], "selection": evidence.model_dump()}
    cfg = load_config(config_name, overrides, run_values)
    return SelectOutcome(evidence, study, run_pipeline(cfg))
